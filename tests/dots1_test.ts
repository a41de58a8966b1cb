/**
 * dots.llm1 (`Dots1ForCausalLM`) beyond the logits and gradients of
 * `hf_fixtures_test.ts` / `hf_grads_test.ts`: a config at dots.llm1's published
 * sizes read field by field, Dots1Config's defaults (sliding layers derived
 * from `max_window_layers`, `norm_topk_prob` false), refusals by field, and
 * `kiln inspect` counting the 142B / 14B-active the dots.llm1 report states.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { kiln } from "./fixtures/kiln_cli.ts";

/** dots.llm1's shape (hidden 4096, 62 layers, 128 experts of 1408, top-6, 2 shared). */
const DOTS1_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["Dots1ForCausalLM"],
  attention_bias: false,
  first_k_dense_replace: 1,
  hidden_act: "silu",
  hidden_size: 4096,
  intermediate_size: 10944,
  max_position_embeddings: 32768,
  max_window_layers: 62,
  model_type: "dots1",
  moe_intermediate_size: 1408,
  n_group: 1,
  n_routed_experts: 128,
  n_shared_experts: 2,
  norm_topk_prob: true,
  num_attention_heads: 32,
  num_experts_per_tok: 6,
  num_hidden_layers: 62,
  num_key_value_heads: 32,
  rms_norm_eps: 1e-5,
  rope_theta: 10000000,
  routed_scaling_factor: 2.5,
  sliding_window: null,
  tie_word_embeddings: false,
  topk_group: 1,
  vocab_size: 152064,
};

Deno.test("dots1: a config at dots.llm1's sizes, field by field", () => {
  const cfg = parseConfig(DOTS1_CONFIG);
  assert.equal(cfg.layers, 62);
  assert.deepEqual(cfg.pattern[0], { mixer: "attention", ffn: "mlp", window: 0 });
  assert.ok(cfg.pattern.slice(1).every((l) => l.ffn === "moe" && l.window === 0));
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.qkvBias, a.outBias, a.qkNorm, a.qkNormPerHead],
    [32, 32, 128, 1e7, false, false, true, true],
  );
  assert.equal(a.rotaryDim, undefined, "RoPE over whole heads");
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.ff, m.router, m.routedScaling, m.normTopk, m.sharedExpert, m.groups],
    [128, 6, 1408, "sigmoid_bias", 2.5, true, { ff: 2816, gated: false }, undefined],
  );
  assert.equal(cfg.extraLayers, 0, "dots.llm1 has no multi-token-prediction layers");
  assert.equal(cfg.normEps, 1e-5);
  // attention_bias: biases on all four projections, unlike GLM-4.5's q/k/v only.
  const biased = parseConfig({ ...DOTS1_CONFIG, attention_bias: true }).attention!;
  assert.deepEqual([biased.qkvBias, biased.outBias], [true, true]);
});

Deno.test("dots1: Dots1Config's defaults — derived sliding layers, unnormalised weights", () => {
  const { sliding_window: _, norm_topk_prob: __, ...bare } = DOTS1_CONFIG;
  const small = { ...bare, num_hidden_layers: 4, max_window_layers: 2 };
  // sliding_window absent: Dots1Config's 4096, from layer max_window_layers on.
  assert.deepEqual(parseConfig(small).pattern.map((p) => p.window), [0, 0, 4096, 4096]);
  assert.deepEqual(
    parseConfig({ ...small, sliding_window: 9 }).pattern.map((p) => p.window),
    [0, 0, 9, 9],
  );
  assert.deepEqual(
    parseConfig({ ...small, sliding_window: null }).pattern.map((p) => p.window),
    [0, 0, 0, 0],
  );
  // max_window_layers absent: 62, so a 4-layer model slides nowhere.
  const { max_window_layers: ___, ...noMax } = small;
  assert.deepEqual(parseConfig(noMax).pattern.map((p) => p.window), [0, 0, 0, 0]);
  // A config's own layer_types wins over the derivation.
  const typed = parseConfig({
    ...small,
    sliding_window: 5,
    layer_types: ["sliding_attention", "full_attention", "full_attention", "sliding_attention"],
  });
  assert.deepEqual(typed.pattern.map((p) => p.window), [5, 0, 0, 5]);
  assert.equal(parseConfig(small).moe!.normTopk, false);
  // Grouped routing as DeepSeek-V3's.
  assert.deepEqual(
    parseConfig({ ...DOTS1_CONFIG, n_group: 8, topk_group: 2 }).moe!.groups,
    { count: 8, kept: 2 },
  );
});

Deno.test("dots1: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ n_group: 5, topk_group: 2 }, /"n_group" \(5\) must split the 128 experts into equal/],
    [{ hidden_act: "mish" }, /hidden_act "mish" is not supported/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
    [{ layer_types: ["full_attention"] }, /layer_types has 1 entries, num_hidden_layers is 62/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(() => parseConfig({ ...DOTS1_CONFIG, ...edit }), pattern, JSON.stringify(edit));
  }
});

Deno.test("kiln inspect: dots.llm1's 142B parameters, 14B active", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_dots1_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(DOTS1_CONFIG));
    const r = await kiln("inspect", dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /QK-norm per head/);
    // 62 attention blocks of 4 · 4096² with q/k norms of 128, and 124 norms of 4096; one
    // dense MLP of 3 · 4096 · 10944; 61 × (128 experts of 3 · 4096 · 1408 + router + selection
    // bias + shared experts of 3 · 4096 · 2816); two 152064 × 4096 tables.
    assert.match(r.stdout, /parameters: 142\.77B total, 14\.02B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
