/**
 * Qwen3-Next (`Qwen3NextForCausalLM`) beyond the logits of
 * `hf_fixtures_test.ts` (which checks the Gated DeltaNet and gated attention
 * layers' numbers against transformers): Qwen3NextConfig's defaults and
 * Qwen3-Next-80B-A3B's published config read field by field, the refusals by
 * field, `kiln inspect` counting its parameters, and training refused by the
 * op that has no gradient yet.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { buildTrainingLM } from "../models/causal_lm_train.ts";
import { buildTrainStep } from "../compiler/train/step.ts";
import { TrainableBuilder } from "../compiler/train/trainable.ts";
import { sgd } from "../compiler/train/optimizers.ts";
import { kiln } from "./fixtures/kiln_cli.ts";
import { initParam } from "../app/train/init.ts";

/** Qwen/Qwen3-Next-80B-A3B-Instruct's config.json (transformers 4.57's layout). */
const QWEN3_NEXT_80B: Readonly<Record<string, unknown>> = {
  architectures: ["Qwen3NextForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  decoder_sparse_step: 1,
  eos_token_id: 151645,
  full_attention_interval: 4,
  head_dim: 256,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 5120,
  linear_conv_kernel_dim: 4,
  linear_key_head_dim: 128,
  linear_num_key_heads: 16,
  linear_num_value_heads: 32,
  linear_value_head_dim: 128,
  max_position_embeddings: 262144,
  mlp_only_layers: [],
  model_type: "qwen3_next",
  moe_intermediate_size: 512,
  norm_topk_prob: true,
  num_attention_heads: 16,
  num_experts: 512,
  num_experts_per_tok: 10,
  num_hidden_layers: 48,
  num_key_value_heads: 2,
  output_router_logits: false,
  partial_rotary_factor: 0.25,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 10000000,
  router_aux_loss_coef: 0.001,
  shared_expert_intermediate_size: 512,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.57.0.dev0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

Deno.test("qwen3_next: Qwen3-Next-80B-A3B's config, field by field", () => {
  const cfg = parseConfig(QWEN3_NEXT_80B);
  assert.equal(cfg.normOffset, 1, "Qwen3NextRMSNorm scales by 1 + weight");
  // Every fourth layer attends; every layer has experts.
  assert.deepEqual(
    cfg.pattern.slice(0, 8).map((l) => `${l.mixer}/${l.ffn}`),
    [..."mmmammma"].map((c) => (c === "a" ? "attention/moe" : "mamba/moe")),
  );
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.rotaryDim, a.qkNormPerHead, a.outputGate],
    [16, 2, 256, 1e7, 64, true, true],
  );
  assert.deepEqual(cfg.mamba!.gatedDelta, {
    keyHeads: 16,
    valueHeads: 32,
    keyDim: 128,
    valueDim: 128,
  });
  assert.equal(cfg.mamba!.convKernel, 4);
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.normTopk, m.ff, m.sharedExpert],
    [512, 10, true, 512, { ff: 512, gated: true }],
  );
  assert.deepEqual([cfg.eosTokenIds, cfg.normEps, cfg.tieEmbeddings], [[151645], 1e-6, false]);
});

Deno.test("qwen3_next: Qwen3NextConfig's defaults where the config is silent", () => {
  const cfg = parseConfig({
    architectures: ["Qwen3NextForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    num_hidden_layers: 8,
    num_attention_heads: 2,
  });
  // head_dim 256, partial_rotary_factor 0.25, two KV heads, base 1e4, interval 4.
  const a = cfg.attention!;
  assert.deepEqual([a.headDim, a.rotaryDim, a.kvHeads, a.ropeTheta], [256, 64, 2, 1e4]);
  assert.deepEqual(
    cfg.pattern.map((l) => l.mixer),
    ["mamba", "mamba", "mamba", "attention", "mamba", "mamba", "mamba", "attention"],
  );
  assert.deepEqual(cfg.mamba!.gatedDelta, {
    keyHeads: 16,
    valueHeads: 32,
    keyDim: 128,
    valueDim: 128,
  });
  assert.deepEqual([cfg.moe!.experts, cfg.moe!.topK, cfg.moe!.normTopk], [512, 10, true]);
  // transformers 5's layer_types wins over the interval; mlp_only_layers makes dense layers.
  const listed = parseConfig({
    architectures: ["Qwen3NextForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    num_hidden_layers: 3,
    num_attention_heads: 2,
    layer_types: ["full_attention", "linear_attention", "full_attention"],
    mlp_only_layers: [1],
    num_experts: 4,
    num_experts_per_tok: 2,
  });
  assert.deepEqual(
    listed.pattern.map((l) => `${l.mixer}/${l.ffn}`),
    ["attention/moe", "mamba/mlp", "attention/moe"],
  );
});

Deno.test("qwen3_next: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { linear_num_value_heads: 24, linear_num_key_heads: 16 },
      /linear_num_value_heads 24 must be a multiple of linear_num_key_heads 16/,
    ],
    [{ layer_types: ["full_attention"] }, /layer_types has 1 entries, num_hidden_layers is 48/],
    [
      { layer_types: Array(48).fill("sliding_attention") },
      /layer_types\[0\] "sliding_attention" is not "linear_attention" or "full_attention"/,
    ],
    [{ use_sliding_window: true }, /use_sliding_window true is not supported/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
    [{ hidden_act: "mish" }, /hidden_act "mish" is not supported/],
    [{ full_attention_interval: 0 }, /full_attention_interval/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(() => parseConfig({ ...QWEN3_NEXT_80B, ...edit }), pattern, JSON.stringify(edit));
  }
});

Deno.test("kiln inspect: Qwen3-Next-80B-A3B's 80B parameters, 3.9B active", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_qwen3_next_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(QWEN3_NEXT_80B));
    const r = await kiln("inspect", dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /σ-gated output, RoPE over 64 of 256 values a head/);
    assert.match(r.stdout, /gated deltanet: 16 key heads × 128, 32 value heads × 128/);
    // Counted by hand from the modeling code: two 151936 × 2048 tables 622,329,856; a
    // DeltaNet layer 25,165,824 (in_proj_qkvz) + 131,072 (in_proj_ba) + 32,768 (conv)
    // + 64 + 128 + 8,388,608 (out_proj) = 33,718,464, 36 of them; an attention layer
    // 16,777,216 (q and gate) + 2 · 1,048,576 + 8,388,608 + 512 = 27,263,488, 12 of them;
    // a MoE block 512 · 3,145,728 + 1,048,576 (router) + 3,145,728 (shared) + 2048 (its
    // gate) = 1,614,809,088 and two norms of 2048, 48 of them; the final norm:
    // 79,674,391,296. Active: 10 of the 512 experts (35,653,632 a block): 3,874,929,408.
    assert.match(r.stdout, /parameters: 79\.67B total, 3\.87B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qwen3_next: training names the op without a gradient (the DeltaNet's), attention-only trains", () => {
  const tiny = {
    architectures: ["Qwen3NextForCausalLM"],
    vocab_size: 32,
    hidden_size: 16,
    intermediate_size: 8,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
    linear_num_key_heads: 1,
    linear_num_value_heads: 2,
    linear_key_head_dim: 4,
    linear_value_head_dim: 4,
    num_experts: 4,
    num_experts_per_tok: 2,
    moe_intermediate_size: 8,
    shared_expert_intermediate_size: 8,
  };
  const step = (config: Record<string, unknown>) => {
    const g = new TrainableBuilder();
    const { loss } = buildTrainingLM(g, parseConfig(config), { batch: 1, seq: 4 });
    buildTrainStep(g, loss, { optimizer: sgd(), schedule: { peak: 0.1, decay: "constant" } });
  };
  assert.throws(
    () => step({ ...tiny, layer_types: ["linear_attention", "full_attention"] }),
    /op "gated_delta" has no gradient rule \(Gated DeltaNet's backward/,
  );
  step({ ...tiny, layer_types: ["full_attention", "full_attention"] });
});

Deno.test("qwen3_next: fresh weights follow Qwen3NextPreTrainedModel._init_weights", () => {
  const cfg = parseConfig(QWEN3_NEXT_80B);
  const init = (name: string, n: number) => initParam(cfg, name, [n], { seed: 3 });
  // The decoder's norms scale by 1 + weight, so they start at 0; the DeltaNet's at 1.
  for (const name of ["model.norm.weight", "model.layers.3.self_attn.q_norm.weight"]) {
    assert.ok(init(name, 8).every((v) => v === 0), name);
  }
  assert.ok(init("model.layers.0.linear_attn.norm.weight", 8).every((v) => v === 1));
  assert.ok(init("model.layers.0.linear_attn.dt_bias", 8).every((v) => v === 1));
  const aLog = init("model.layers.0.linear_attn.A_log", 256);
  assert.ok(aLog.every((v) => v < Math.log(16)) && Math.max(...aLog) > Math.log(12));
});
