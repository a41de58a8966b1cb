/**
 * LFM2 and LFM2-MoE beyond the logits and gradients of `hf_fixtures_test.ts` /
 * `hf_grads_test.ts` (which check the short convolutions, the attention and
 * the sigmoid + bias experts against transformers): the config classes'
 * fields and legacy names, the dense MLP's width rule, refusals by field, and
 * `kiln inspect` counting a model of LFM2-8B-A1B's shape.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { kiln } from "./fixtures/kiln_cli.ts";

/** LFM2-8B-A1B's shape: 24 layers, attention at six of them, 32 experts top-4 after 2 dense. */
const LFM2_MOE: Readonly<Record<string, unknown>> = {
  architectures: ["Lfm2MoeForCausalLM"],
  model_type: "lfm2_moe",
  vocab_size: 65536,
  hidden_size: 2048,
  intermediate_size: 7168,
  moe_intermediate_size: 1792,
  num_hidden_layers: 24,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  num_dense_layers: 2,
  num_experts: 32,
  num_experts_per_tok: 4,
  norm_topk_prob: true,
  routed_scaling_factor: 1.0,
  use_expert_bias: true,
  conv_L_cache: 3,
  conv_bias: false,
  norm_eps: 1e-5,
  rope_theta: 1000000.0,
  max_position_embeddings: 128000,
  tie_embedding: true,
  layer_types: Array.from(
    { length: 24 },
    (_, i) => ([2, 6, 10, 14, 18, 21].includes(i) ? "full_attention" : "conv"),
  ),
};

Deno.test("lfm2: LFM2-MoE's config field by field, and LFM2's layers and MLP width", () => {
  const cfg = parseConfig(LFM2_MOE);
  assert.deepEqual(cfg.pattern.slice(0, 4).map((l) => `${l.mixer}/${l.ffn}`), [
    "mamba/mlp",
    "mamba/mlp",
    "attention/moe",
    "mamba/moe",
  ]);
  assert.deepEqual(cfg.mamba!.shortConv, { bias: false });
  assert.equal(cfg.mamba!.convKernel, 3);
  const a = cfg.attention!;
  assert.deepEqual([a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.qkNormPerHead], [
    32,
    8,
    64,
    1e6,
    true,
  ]);
  const m = cfg.moe!;
  assert.deepEqual([m.experts, m.topK, m.normTopk, m.ff, m.router, m.routedScaling], [
    32,
    4,
    true,
    1792,
    "sigmoid_bias",
    1,
  ]);
  assert.deepEqual([cfg.intermediate, cfg.tieEmbeddings, cfg.normEps], [7168, true, 1e-5]);
  // Lfm2Config: attention at full_attn_idxs without layer_types; the MLP's width is
  // int(2/3 · 12288) = 8192, × 1.0, rounded up to 256: 8192; × 1.5 → 12288.
  const dense = parseConfig({
    architectures: ["Lfm2ForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    full_attn_idxs: [1, 3],
  });
  assert.deepEqual(dense.pattern.map((l) => l.mixer), ["mamba", "attention", "mamba", "attention"]);
  assert.equal(dense.intermediate, 8192);
  const base = { ...LFM2_MOE, architectures: ["Lfm2ForCausalLM"], intermediate_size: 1000 };
  const width = (edit: Record<string, unknown>) => parseConfig({ ...base, ...edit }).intermediate;
  assert.equal(width({}), 768, "int(2000/3) = 666, rounded up to 256");
  assert.equal(width({ block_ffn_dim_multiplier: 1.5, block_multiple_of: 64 }), 1024);
  assert.equal(width({ block_ffn_dim_multiplier: null }), 666, "no multiplier: no rounding");
  assert.equal(width({ block_auto_adjust_ff_dim: false }), 1000);
});

Deno.test("lfm2: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ layer_types: ["conv"] }, /layer_types has 1 entries, num_hidden_layers is 24/],
    [
      { layer_types: Array(24).fill("mamba") },
      /layer_types\[0\] "mamba" is not "conv" or "full_attention"/,
    ],
    [{ layer_types: undefined }, /layer_types/],
    [{ use_expert_bias: false }, /use_expert_bias false is not supported/],
    [{ num_experts_per_tok: 40 }, /num_experts_per_tok 40 must be between 1 and num_experts 32/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(() => parseConfig({ ...LFM2_MOE, ...edit }), pattern, JSON.stringify(edit));
  }
});

Deno.test("kiln inspect: an LFM2-8B-A1B-shaped model, 8.34B parameters, 1.56B active", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_lfm2_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(LFM2_MOE));
    const r = await kiln("inspect", dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /short conv: B·x through 3 causal taps, gated by C/);
    // By hand: one tied 65536 × 2048 table 134,217,728; 24 layers' two norms 98,304; 18 conv
    // layers of 12,582,912 + 6,144 + 4,194,304; 6 attention layers of 2 · 4,194,304 +
    // 2 · 1,048,576 + 128; 2 dense MLPs of 3 · 2048 · 7168; 22 MoE blocks of 65,536 + 32 +
    // 32 · 11,010,048; the final norm: 8,339,930,560. Active: 4 of 32 experts, 1,557,740,992.
    assert.match(r.stdout, /parameters: 8\.34B total, 1\.56B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
