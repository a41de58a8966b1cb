/**
 * GGUF files written by llama.cpp's own converter (`convert_hf_to_gguf.py`) from
 * transformers checkpoints, loaded by Kiln and held to the logits transformers computed
 * for those checkpoints (`fixtures/llama_cpp/converted/`). The same files against
 * llama.cpp's answers (bit-exact tensors, logits, tokenization) run in
 * `llama_cpp_reference_test.ts` with the other recipes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { CONVERTED_DIR, CONVERTED_RECIPES } from "./fixtures/llama_cpp/converted.ts";
import { assertGreedyMatches, readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";
import { gpu, withTmp } from "./_util.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { convertToGguf } from "../app/gguf/arch.ts";
import { rewriteGgufF32 } from "./fixtures/gguf_mixed.ts";
import { GgufFile } from "../app/gguf/file.ts";

for (const recipe of CONVERTED_RECIPES.filter((r) => r.transformersTolerance !== undefined)) {
  const how = recipe.quantize
    ? `llama-quantize ${recipe.quantize}`
    : `convert_hf_to_gguf.py --outtype ${recipe.outtype}`;
  Deno.test(`llama.cpp-converted ${recipe.name} (${how}): logits match transformers`, async () => {
    const { ref, logits } = await readTransformersRef(
      join(CONVERTED_DIR, `${recipe.source}.ref.json`),
      join(CONVERTED_DIR, `${recipe.source}.logits.f32`),
    );
    const model = await loadModel(await recipe.build(""), {
      device: await gpu(),
      quiet: true,
      maxSeq: 64,
    });
    try {
      assert.equal(model.config.vocabSize, ref.vocab);
      const rel = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(
        rel <= recipe.transformersTolerance!,
        `${recipe.name}: max error ${rel.toExponential(2)} of the logit rms ` +
          `(tolerance ${recipe.transformersTolerance})`,
      );
      if (recipe.outtype !== "f32") return;
      await assertGreedyMatches(model, ref, recipe.name);
    } finally {
      model.dispose();
    }
  });
}

/** Max |a − b| over the rms of b. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let e = 0, r = 0;
  for (let i = 0; i < b.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    r += b[i] * b[i];
  }
  return e / Math.sqrt(r / b.length);
}

Deno.test("llama3 RoPE written as rope_freqs.weight: Kiln's files match the HF folder, and a converter-written file round-trips", async () => {
  const dev = await gpu();
  const open = (p: string) => loadModel(p, { device: dev, quiet: true, maxSeq: 64 });
  await withTmp(async (dir) => {
    // A Mixtral with Llama 3.1's scaling (head size 16: all three bands).
    const hf = join(dir, "hf");
    await writeRandomCheckpoint(hf, {
      architectures: ["MixtralForCausalLM"],
      vocab_size: 96,
      hidden_size: 64,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_local_experts: 3,
      num_experts_per_tok: 2,
      max_position_embeddings: 256,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
      rope_theta: 500000,
    }, { seed: 3 });
    const file = join(dir, "llama3.gguf");
    const config = JSON.parse(await Deno.readTextFile(join(hf, "config.json")));
    {
      using ckpt = await Checkpoint.open(hf);
      await convertToGguf(
        { config, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
        file,
        { type: "f32" },
      );
    }
    {
      using f = await GgufFile.open(file);
      // The converter's factors for these settings: 1 in the high band, 8 in the low.
      const freqs = Array.from(await f.readF32("rope_freqs.weight"));
      assert.deepEqual([freqs.slice(0, 4), freqs.slice(5)], [[1, 1, 1, 1], [8, 8, 8]]);
      assert.ok(freqs[4] > 1 && freqs[4] < 8);
    }
    const ids = [1, 5, 17, 42, 80, 7, 3, 64, 33, 11, 90, 2];
    const [a, b] = [await open(hf), await open(file)];
    try {
      const d = relDiff(await b.forward(ids), await a.forward(ids));
      assert.ok(d < 1e-5, `GGUF vs HF folder: ${d.toExponential(2)} of the logit rms`);
    } finally {
      a.dispose();
      b.dispose();
    }
    // llama.cpp's converter's file, read and written again: the same divisors.
    const conv = join(CONVERTED_DIR, "conv_mixtral_llama3_f32.gguf");
    const again = join(dir, "again.gguf");
    await rewriteGgufF32(conv, again);
    using f1 = await GgufFile.open(conv);
    using f2 = await GgufFile.open(again);
    assert.deepEqual(
      await f2.readF32("rope_freqs.weight"),
      await f1.readF32("rope_freqs.weight"),
    );
  }, "kiln_llama3_gguf_");
});
