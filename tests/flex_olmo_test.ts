/**
 * FlexOlmo (`FlexOlmoForCausalLM`) beyond the logits and gradients of
 * `hf_fixtures_test.ts` / `hf_grads_test.ts` (which check the post-norm layers'
 * numbers): FlexOlmoConfig's defaults read field by field, and the refusals by
 * field.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../models/architectures/mod.ts";

/** A config with FlexOlmoConfig's defaults (its 7 experts of the 7x7B shape). */
const FLEX_OLMO_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["FlexOlmoForCausalLM"],
  model_type: "flex_olmo",
  vocab_size: 100352,
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  num_experts: 7,
  num_experts_per_tok: 5,
  norm_topk_prob: false,
  rms_norm_eps: 1e-6,
  rope_parameters: { rope_type: "default", rope_theta: 500000.0 },
  max_position_embeddings: 4096,
  pad_token_id: 100277,
  eos_token_id: 100257,
};

Deno.test("flex_olmo: FlexOlmoConfig's defaults, field by field", () => {
  const cfg = parseConfig(FLEX_OLMO_CONFIG);
  assert.equal(cfg.postNorm, true);
  assert.ok(cfg.pattern.every((l) => l.mixer === "attention" && l.ffn === "moe"));
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.qkNorm, a.qkNormPerHead, a.qkvBias],
    [32, 32, 128, 5e5, true, undefined, false],
  );
  const m = cfg.moe!;
  assert.deepEqual([m.experts, m.topK, m.normTopk, m.auxLossCoef], [7, 5, false, 0.01]);
  assert.deepEqual([cfg.paddingIdx, cfg.eosTokenIds, cfg.normEps], [100277, [100257], 1e-6]);
  // Absent, the base is FlexOlmoConfig's 500000.
  const { rope_parameters: _, ...noRope } = FLEX_OLMO_CONFIG;
  assert.equal(parseConfig(noRope).attention!.ropeTheta, 5e5);
});

Deno.test("flex_olmo: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ clip_qkv: 8 }, /clip_qkv 8 is not supported/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
    [{ num_experts_per_tok: 8 }, /num_experts_per_tok 8 must be between 1 and num_experts 7/],
    [{ hidden_act: "mish" }, /hidden_act "mish" is not supported/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => parseConfig({ ...FLEX_OLMO_CONFIG, ...edit }),
      pattern,
      JSON.stringify(edit),
    );
  }
});
