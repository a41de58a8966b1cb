/**
 * Granite 4.0 hybrids as GGUF (llama.cpp's `granitehybrid`), against llama.cpp's own
 * converter: `fixtures/llama_cpp/granite/<name>/llama_cpp_f32.gguf` was written by
 * `convert_hf_to_gguf.py` of llama.cpp 9725a313b (through `tools/llama_cpp_convert.py`)
 * from the transformers checkpoint beside it, whose logits transformers computed
 * (`tools/transformers_reference.py`). Kiln reads the converter's file to transformers'
 * logits, and writes from the checkpoint the tensors and model keys the converter wrote.
 * Granite 3's dense `granite` files are read the same way (as a Granite hybrid of attention
 * layers only).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { openWeights } from "../app/model/source.ts";
import { convertToGguf, ggufArchMetadata } from "../app/gguf/arch.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { gpu, withTmp } from "./_util.ts";
import { assertGreedyMatches, readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";

const DIR = new URL("./fixtures/llama_cpp/granite/", import.meta.url).pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
// A Mamba-2 + attention + experts hybrid, NoPE, μP multipliers; and one without
// experts (the shared MLP alone as ffn_gate/up/down) with attention biases.
const NAMES = ["granite_hybrid_conv", "granite_hybrid_conv_dense"];
// Granite 3's dense GraniteForCausalLM, which the converter writes as `granite`:
// Kiln reads it as a Granite hybrid of attention layers only.
const READ_ONLY = ["granite3_dense_conv"];

for (const name of [...NAMES, ...READ_ONLY]) {
  Deno.test(`granite gguf: llama.cpp's converter's ${name} gives transformers' logits and ids`, async () => {
    const { ref, logits } = await readTransformersRef(
      join(DIR, name, "ref.json"),
      join(DIR, name, "logits.f32"),
    );
    const model = await loadModel(join(DIR, name, "llama_cpp_f32.gguf"), {
      device: await gpu(),
      quiet: true,
      maxSeq: 64,
    });
    try {
      assert.equal(model.config.architecture, "GraniteMoeHybridForCausalLM");
      if (READ_ONLY.includes(name)) {
        assert.ok(model.config.pattern.every((l) => l.mixer === "attention" && l.ffn === "mlp"));
        assert.ok(model.config.attention!.ropeTheta > 0, "a granite file rotates q and k");
      }
      const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e < 1e-4, `${name}: max error ${e.toExponential(2)} of the logit rms`);
      await assertGreedyMatches(model, ref, name);
    } finally {
      model.dispose();
    }
  });

  if (READ_ONLY.includes(name)) continue;
  Deno.test(`granite gguf: Kiln writes ${name} as llama.cpp's converter does`, async () => {
    await withTmp(async (tmp) => {
      const config = JSON.parse(await Deno.readTextFile(join(DIR, name, "config.json")));
      const w = await openWeights(join(DIR, name), { config: parseConfig(config) });
      const out = join(tmp, "kiln.gguf");
      try {
        await convertToGguf(
          {
            config,
            tensors: w.tensors,
            readF32: async (n) => await w.readAs(n, "f32") as Float32Array,
          },
          out,
          { type: "f32" },
        );
      } finally {
        w.close();
      }
      using theirs = await GgufFile.open(join(DIR, name, "llama_cpp_f32.gguf"));
      using ours = await GgufFile.open(out);
      // Every tensor, by name, shape and value (A = −exp(A_log) to within an f32 ulp).
      assert.deepEqual([...ours.tensors.keys()].sort(), [...theirs.tensors.keys()].sort());
      for (const [t, info] of theirs.tensors) {
        assert.deepEqual(ours.info(t).shape, info.shape, t);
        const [a, b] = [await ours.readF32(t), await theirs.readF32(t)];
        const tol = t.endsWith("ssm_a") ? 1e-6 : 0;
        assert.ok(a.every((v, i) => Math.abs(v - b[i]) <= tol * Math.abs(b[i])), t);
      }
      // Every model key the converter wrote, with its value (f32s as f32s).
      const model = [...theirs.entries].filter(([k]) => k.startsWith("granitehybrid."));
      assert.ok(model.length >= 20);
      for (const [k, v] of model) {
        const mine = ours.entries.get(k);
        assert.ok(mine, `Kiln wrote no ${k}`);
        const norm = (e: typeof v) =>
          e.type === "f32" ? Math.fround(e.value as number) : JSON.stringify(e.value);
        assert.deepEqual(norm(mine), norm(v), k);
      }
    });
  });
}

Deno.test("granite gguf: configs llama.cpp's granitehybrid could not load are refused by name", () => {
  const config = JSON.parse(
    Deno.readTextFileSync(join(HF, "granite_hybrid_dense_nope", "config.json")),
  );
  assert.throws(
    () => ggufArchMetadata(config),
    /a Granite hybrid with mamba_proj_bias true \(llama\.cpp's granitehybrid projections have no biases\) has no GGUF form/,
  );
  const plain = { ...config, mamba_proj_bias: false };
  assert.throws(
    () => ggufArchMetadata({ ...plain, mamba_expand: 1, mamba_n_heads: 2 }),
    /mamba_expand 1 \(llama\.cpp's granitehybrid needs 2\)/,
  );
  assert.throws(
    () => ggufArchMetadata({ ...plain, layer_types: ["attention", "attention", "attention"] }),
    /no Mamba layer \(llama\.cpp's converter writes it as granite or granitemoe\)/,
  );
});
