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
import { readTransformersRef, relToRms, tieFreeGreedy } from "./fixtures/transformers_ref.ts";
import { gpu } from "./_util.ts";

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
      const ids: number[] = [];
      for await (const id of model.generateIds(ref.ids, { maxTokens: ref.greedy.length })) {
        ids.push(id);
      }
      const want = tieFreeGreedy(ref);
      assert.deepEqual(ids.slice(0, want.length), want, recipe.name);
    } finally {
      model.dispose();
    }
  });
}
