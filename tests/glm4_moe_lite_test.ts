/**
 * GLM-4.7-Flash (`Glm4MoeLiteForCausalLM`) beyond the logits and gradients of
 * `hf_fixtures_test.ts` / `hf_grads_test.ts`: Glm4MoeLiteConfig's defaults read
 * field by field, its dense layers (`mlp_layer_types`, else the first only,
 * whatever `first_k_dense_replace` says), and the refusals by field.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../models/architectures/mod.ts";

/** Glm4MoeLiteConfig's defaults on four layers (the heads written out, as saved configs do). */
const GLM_LITE_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["Glm4MoeLiteForCausalLM"],
  model_type: "glm4_moe_lite",
  vocab_size: 154880,
  hidden_size: 2048,
  num_hidden_layers: 4,
  num_attention_heads: 20,
  num_key_value_heads: 20,
};

Deno.test("glm4_moe_lite: Glm4MoeLiteConfig's defaults, field by field", () => {
  const cfg = parseConfig(GLM_LITE_CONFIG);
  assert.deepEqual(cfg.pattern.map((p) => p.ffn), ["mlp", "moe", "moe", "moe"]);
  assert.equal(cfg.intermediate, 10240);
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.rotaryDim],
    [20, 20, 192 + 64, 64],
  );
  assert.deepEqual(
    a.mla,
    { qLoraRank: 768, kvLoraRank: 512, nopeDim: 192, ropeDim: 64, vDim: 256, interleave: true },
  );
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.ff, m.router, m.routedScaling, m.normTopk, m.sharedExpert],
    [64, 4, 1536, "sigmoid_bias", 1.8, true, { ff: 1536, gated: false }],
  );
  assert.deepEqual([cfg.bosTokenId, cfg.eosTokenIds, cfg.normEps], [0, [1], 1e-5]);
});

Deno.test("glm4_moe_lite: dense layers by mlp_layer_types, never by first_k_dense_replace", () => {
  // Glm4MoeLiteConfig reads no first_k_dense_replace: the first layer alone is dense.
  const derived = parseConfig({ ...GLM_LITE_CONFIG, first_k_dense_replace: 3 });
  assert.deepEqual(derived.pattern.map((p) => p.ffn), ["mlp", "moe", "moe", "moe"]);
  const listed = parseConfig({
    ...GLM_LITE_CONFIG,
    mlp_layer_types: ["sparse", "dense", "dense", "sparse"],
  });
  assert.deepEqual(listed.pattern.map((p) => p.ffn), ["moe", "mlp", "mlp", "moe"]);
});

Deno.test("glm4_moe_lite: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ mlp_layer_types: ["dense"] }, /mlp_layer_types has 1 entries, num_hidden_layers is 4/],
    [{ mlp_layer_types: ["moe", "moe", "moe", "moe"] }, /mlp_layer_types\[0\] "moe" is not/],
    [{ num_key_value_heads: 4 }, /num_key_value_heads 4 must equal num_attention_heads 20/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => parseConfig({ ...GLM_LITE_CONFIG, ...edit }),
      pattern,
      JSON.stringify(edit),
    );
  }
});
