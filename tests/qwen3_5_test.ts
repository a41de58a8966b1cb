/**
 * Qwen3.5's language models beyond the logits of `hf_fixtures_test.ts`
 * (which checks the split DeltaNet projections, the MoE and dense classes and
 * the vision-language checkpoints against transformers): the config classes'
 * defaults field by field, a vision-language config read through its
 * `text_config`, and refusals that name the nested field.
 */

import assert from "node:assert/strict";
import { parseConfig, specOf } from "../models/architectures/mod.ts";

const TEXT = {
  vocab_size: 64,
  hidden_size: 32,
  num_hidden_layers: 4,
  num_attention_heads: 4,
};

Deno.test("qwen3_5: Qwen3_5MoeTextConfig's and Qwen3_5TextConfig's defaults", () => {
  const moe = parseConfig({ architectures: ["Qwen3_5MoeForCausalLM"], ...TEXT });
  assert.deepEqual(
    moe.pattern.map((l) => `${l.mixer}/${l.ffn}`),
    ["mamba/moe", "mamba/moe", "mamba/moe", "attention/moe"],
  );
  const m = moe.moe!;
  // The router renormalises whatever the config says (Qwen3_5MoeTopKRouter).
  assert.deepEqual([m.experts, m.topK, m.normTopk, m.ff, m.sharedExpert], [
    256,
    8,
    true,
    512,
    { ff: 512, gated: true },
  ]);
  assert.equal(moe.mamba!.gatedDelta!.split, true);
  assert.deepEqual([moe.attention!.kvHeads, moe.attention!.headDim, moe.attention!.rotaryDim], [
    2,
    256,
    64,
  ]);
  assert.equal(moe.normOffset, 1);
  const dense = parseConfig({ architectures: ["Qwen3_5ForCausalLM"], ...TEXT });
  assert.ok(dense.pattern.every((l) => l.ffn === "mlp"));
  assert.deepEqual([dense.intermediate, dense.attention!.kvHeads, dense.moe], [
    12288,
    4,
    undefined,
  ]);
});

Deno.test("qwen3_5: a vision-language config is read through its text_config", () => {
  const vl = parseConfig({
    architectures: ["Qwen3_5MoeForConditionalGeneration"],
    model_type: "qwen3_5_moe",
    text_config: {
      ...TEXT,
      num_experts: 8,
      num_experts_per_tok: 2,
      tie_word_embeddings: false,
      rope_parameters: {
        rope_type: "default",
        rope_theta: 1e7,
        partial_rotary_factor: 0.25,
        mrope_section: [11, 11, 10],
        mrope_interleaved: true,
      },
    },
    vision_config: { depth: 27 },
    tie_word_embeddings: true,
  });
  assert.equal(vl.architecture, "Qwen3_5MoeForConditionalGeneration");
  assert.deepEqual([vl.vocabSize, vl.hidden, vl.moe!.experts], [64, 32, 8]);
  assert.equal(vl.tieEmbeddings, true, "the class's own tie_word_embeddings wins");
  assert.equal(vl.attention!.ropeTheta, 1e7);
  const lay = specOf(vl).layout;
  assert.deepEqual([lay.embed, lay.layers, lay.finalNorm, lay.lmHead], [
    "model.language_model.embed_tokens",
    "model.language_model.layers",
    "model.language_model.norm",
    "lm_head",
  ]);
  assert.ok(specOf(vl).ignoredTensors!.test("model.visual.blocks.0.attn.qkv.weight"));
  assert.throws(
    () => parseConfig({ architectures: ["Qwen3_5ForConditionalGeneration"], text_config: 3 }),
    /field "text_config" must be an object, got 3/,
  );
  assert.throws(
    () =>
      parseConfig({
        architectures: ["Qwen3_5ForConditionalGeneration"],
        text_config: { ...TEXT, linear_num_key_heads: 3, linear_num_value_heads: 4 },
      }),
    /text_config: linear_num_value_heads 4 must be a multiple of linear_num_key_heads 3/,
  );
});
