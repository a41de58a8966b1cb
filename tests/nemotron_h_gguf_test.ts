/**
 * Nemotron-H and Nemotron 3 as GGUF (llama.cpp's `nemotron_h`, `nemotron_h_moe`),
 * against llama.cpp's own converter: `fixtures/llama_cpp/nemotron_h/<name>/llama_cpp_f32.gguf`
 * was written by `convert_hf_to_gguf.py` of llama.cpp 9725a313b (through
 * `tools/llama_cpp_convert.py`) from the transformers checkpoint beside it, whose logits
 * transformers computed (`tools/transformers_reference.py`, its `time_step_min` 1e-4 so
 * that transformers' floor on Δ, which llama.cpp does not apply, never binds). Kiln reads
 * the converter's file to transformers' logits and writes the same tensors and model
 * keys; a dense Nemotron-H round-trips through Kiln's `nemotron_h` file, its Δ floor kept
 * in Kiln's own key.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { ggufArchMetadata } from "../app/gguf/arch.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { gpu, withTmp } from "./_util.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { assertGreedyMatches, readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";
import { kilnWritesAsConverter, writeKilnGguf } from "./fixtures/gguf_compare.ts";

const CONV = new URL("./fixtures/llama_cpp/nemotron_h/nemotron_h_moe_conv/", import.meta.url)
  .pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;

const write = writeKilnGguf;

/** Loads `gguf` and holds its logits to the transformers reference of `refDir`. */
async function checkLogits(gguf: string, refDir: string, tol: number, what: string) {
  const { ref, logits } = await readTransformersRef(
    join(refDir, "ref.json"),
    join(refDir, "logits.f32"),
  );
  const model = await loadModel(gguf, { device: await gpu(), quiet: true, maxSeq: 64 });
  try {
    assert.equal(model.config.architecture, "NemotronHForCausalLM");
    const got = await model.forward(ref.ids);
    if (tol <= 1e-4) {
      const e = relToRms(got, logits, ref.logit_rms);
      assert.ok(e < tol, `${what}: max error ${e.toExponential(2)} of the logit rms`);
      await assertGreedyMatches(model, ref, what);
    } else {
      // Quantized: the RMS of the error (an expert choice a rounding flips moves one
      // position's logits by far more than the rest).
      let sq = 0;
      for (let i = 0; i < got.length; i++) sq += (got[i] - logits[i]) ** 2;
      const e = Math.sqrt(sq / got.length) / ref.logit_rms;
      assert.ok(e < tol, `${what}: RMS error ${e.toExponential(2)} of the logit rms`);
    }
    return model.config;
  } finally {
    model.dispose();
  }
}

Deno.test("nemotron-h gguf: llama.cpp's converter's nemotron_h_moe file gives transformers' logits and ids", async () => {
  const cfg = await checkLogits(join(CONV, "llama_cpp_f32.gguf"), CONV, 1e-4, "converter");
  assert.deepEqual(
    cfg.pattern.map((p) => `${p.mixer}/${p.ffn}`),
    ["mamba/none", "none/moe", "attention/none", "none/moe", "mamba/none"],
  );
  assert.deepEqual(
    [cfg.moe!.experts, cfg.moe!.topK, cfg.moe!.ff, cfg.moe!.sharedExpert, cfg.moe!.routedScaling],
    [8, 2, 32, { ff: 48, gated: false }, 2.5],
  );
  assert.deepEqual(cfg.mamba!.ssd!.dtLimit, [0, Infinity]); // llama.cpp's scan: no floor
});

Deno.test("nemotron-h gguf: Kiln writes nemotron_h_moe_conv as llama.cpp's converter does", async () => {
  await withTmp(async (tmp) => {
    const out = join(tmp, "kiln.gguf");
    // q and k in llama.cpp's row order, as the converter's undo_permute leaves them.
    await kilnWritesAsConverter(CONV, out, "nemotron_h_moe", 25);
    using ours = await GgufFile.open(out);
    // And the key llama.cpp's loader reads for the norms, which this converter leaves out.
    assert.equal(ours.entries.get("nemotron_h_moe.attention.layer_norm_rms_epsilon")?.type, "f32");
    await checkLogits(out, CONV, 1e-4, "Kiln's file");
    // Q8_0 experts, attention and projections: within 2% of the logit scale (RMS).
    const q8 = join(tmp, "kiln_q8_0.gguf");
    await write(CONV, q8, "q8_0");
    using qf = await GgufFile.open(q8);
    assert.equal(qf.info("blk.1.ffn_up_exps.weight").type.name, "q8_0");
    await checkLogits(q8, CONV, 0.02, "Kiln's Q8_0 file");
  });
});

// Nemotron 3 Super's latent experts (moe_latent_size 32 of 64) under group-limited routing
// (1 of 2 groups), weights not renormalised.
const LATENT = new URL(
  "./fixtures/llama_cpp/nemotron_h/nemotron_h_latent_conv/",
  import.meta.url,
).pathname;

Deno.test("nemotron-h gguf: latent experts — the converter's file reads to transformers, Kiln writes it", async () => {
  const cfg = await checkLogits(join(LATENT, "llama_cpp_f32.gguf"), LATENT, 1e-4, "latent");
  assert.deepEqual([cfg.moe!.latent, cfg.moe!.groups, cfg.moe!.normTopk], [32, {
    count: 2,
    kept: 1,
  }, false]);
  await withTmp(async (tmp) => {
    const out = join(tmp, "kiln.gguf");
    await kilnWritesAsConverter(LATENT, out, "nemotron_h_moe", 25);
    using ours = await GgufFile.open(out);
    assert.deepEqual(ours.info("blk.1.ffn_up_exps.weight").shape, [8, 32, 32]);
    assert.deepEqual(ours.info("blk.1.ffn_latent_down.weight").shape, [32, 64]);
  });
});

Deno.test("nemotron-h gguf: a dense Nemotron-H round-trips as nemotron_h, its Δ floor kept", async () => {
  await withTmp(async (tmp) => {
    const out = join(tmp, "dense.gguf");
    const dir = join(HF, "nemotron_h");
    await write(dir, out);
    using f = await GgufFile.open(out);
    const v = (k: string) => f.entries.get(`nemotron_h.${k}`)?.value;
    assert.equal(f.entries.get("general.architecture")?.value, "nemotron_h");
    // The block kinds as llama.cpp's loader tells them: KV heads on attention blocks,
    // a width on MLP blocks, both 0 on Mamba-2 blocks.
    const cfg = parseConfig(JSON.parse(await Deno.readTextFile(join(dir, "config.json"))));
    const kv = cfg.pattern.map((p) => (p.mixer === "attention" ? cfg.attention!.kvHeads : 0));
    const ff = cfg.pattern.map((p) => (p.ffn === "mlp" ? cfg.intermediate : 0));
    assert.deepEqual((v("attention.head_count_kv") as { values: readonly unknown[] }).values, kv);
    assert.deepEqual((v("feed_forward_length") as { values: readonly unknown[] }).values, ff);
    assert.equal(Math.fround(v("ssm.time_step_min") as number), Math.fround(0.6));
    const read = await checkLogits(out, dir, 1e-4, "dense round trip");
    assert.deepEqual(read.mamba!.ssd!.dtLimit, [0.6, Infinity]); // f32 read back as its shortest decimal
  });
});

Deno.test("nemotron-h gguf: what llama.cpp's graph cannot hold is refused by name", () => {
  const config = JSON.parse(Deno.readTextFileSync(join(CONV, "config.json")));
  assert.throws(
    () => ggufArchMetadata({ ...config, use_bias: true }),
    /Nemotron-H with use_bias true \(llama\.cpp's Mamba-2 projections have no biases\)/,
  );
  assert.throws(
    () =>
      ggufArchMetadata({
        ...config,
        layers_block_type: ["full_attention", "moe", "full_attention"],
      }),
    /Nemotron-H with no Mamba-2 block/,
  );
  assert.throws(
    () => ggufArchMetadata({ ...config, mamba_hidden_act: "gelu" }),
    /hidden_act gelu cannot be written to GGUF/,
  );
});

Deno.test("nemotron-h gguf: attention-free models (Mamba-2 with MLP or expert blocks) round-trip exactly", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(HF, "nemotron_h_moe", "config.json")));
  const device = await gpu();
  for (
    const types of [
      ["linear_attention", "mlp", "linear_attention"],
      ["linear_attention", "moe", "linear_attention", "moe"],
    ]
  ) {
    await withTmp(async (tmp) => {
      await writeRandomCheckpoint(tmp, { ...config, layers_block_type: types }, { seed: 3 });
      await write(tmp, join(tmp, "m.gguf"));
      using f = await GgufFile.open(join(tmp, "m.gguf"));
      assert.equal(
        f.entries.get(`${f.entries.get("general.architecture")?.value}.attention.head_count`)
          ?.value,
        0,
      );
      const ids = [1, 5, 9, 3, 7];
      const [a, b] = [
        await loadModel(tmp, { device, quiet: true, maxSeq: 32 }),
        await loadModel(join(tmp, "m.gguf"), { device, quiet: true, maxSeq: 32 }),
      ];
      try {
        assert.deepEqual(await b.forward(ids), await a.forward(ids), types.join(","));
      } finally {
        a.dispose();
        b.dispose();
      }
    });
  }
});
