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
import { ggufArchMetadata } from "../app/gguf/arch.ts";
import { gpu, withTmp } from "./_util.ts";
import { assertGreedyMatches, readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";
import { kilnWritesAsConverter } from "./fixtures/gguf_compare.ts";

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
      await kilnWritesAsConverter(join(DIR, name), join(tmp, "kiln.gguf"), "granitehybrid", 20);
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
