/**
 * Hunyuan-A13B (`HunYuanMoEV1ForCausalLM`) beyond the logits and gradients of
 * `hf_fixtures_test.ts` / `hf_grads_test.ts`: a config with Hunyuan-A13B's
 * published sizes and fields (per-layer lists, `rope_scaling` with `alpha`,
 * the original code's switches) read field by field, the NTK-alpha base, the
 * refusals by field, and `kiln inspect` counting its 80B parameters, 13B
 * active.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { kiln } from "./fixtures/kiln_cli.ts";

const L = 32;
/** Hunyuan-A13B-Instruct's shape and switches, as its config.json writes them. */
const HUNYUAN_A13B_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["HunYuanMoEV1ForCausalLM"],
  attention_bias: false,
  attention_head_dim: 128,
  bos_token_id: 1,
  cla_share_factor: 2,
  eod_token_id: 127967,
  eos_token_id: 127960,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 4096,
  intermediate_size: 3072,
  max_position_embeddings: 32768,
  mlp_bias: false,
  model_type: "hunyuan_v1_moe",
  moe_intermediate_size: Array(L).fill(3072),
  moe_topk: Array(L).fill(8),
  norm_type: "rms",
  num_attention_heads: 32,
  num_experts: 64,
  num_hidden_layers: L,
  num_key_value_heads: 8,
  num_shared_expert: Array(L).fill(1),
  pad_token_id: 127961,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    alpha: 1000.0,
    beta_fast: 32,
    beta_slow: 1,
    factor: 1.0,
    mscale: 1.0,
    mscale_all_dim: 1.0,
    type: "dynamic",
  },
  rope_theta: 10000.0,
  tie_word_embeddings: true,
  use_cla: false,
  use_mixed_mlp_moe: true,
  use_mla: false,
  use_qk_norm: true,
  use_rotary_pos_emb: true,
  vocab_size: 128167,
};

Deno.test("hunyuan: Hunyuan-A13B's config, field by field", () => {
  const cfg = parseConfig(HUNYUAN_A13B_CONFIG);
  assert.equal(cfg.layers, 32);
  assert.ok(cfg.pattern.every((l) => l.mixer === "attention" && l.ffn === "moe"));
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.qkvBias, a.outBias, a.qkNormPerHead, a.qkNormAfterRope],
    [32, 8, 128, false, false, true, true],
  );
  // HunYuan's NTK alpha: θ · alpha^(d/(d−2)) = 1e4 · 1000^(128/126).
  assert.ok(Math.abs(a.ropeTheta / (1e4 * 1000 ** (128 / 126)) - 1) < 1e-12);
  assert.deepEqual([a.rope?.type, a.rope?.theta, a.rope?.factor], ["dynamic", a.ropeTheta, 1]);
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.ff, m.normTopk, m.sharedExpert, m.router ?? "softmax_topk"],
    [64, 8, 3072, true, { ff: 3072, gated: false }, "softmax_topk"],
  );
  assert.equal(cfg.intermediate, 3072);
  assert.equal(cfg.tieEmbeddings, true);
  assert.deepEqual(cfg.eosTokenIds, [127960]);
  // Without alpha the base is rope_theta's.
  const plain = parseConfig({
    ...HUNYUAN_A13B_CONFIG,
    rope_scaling: null,
  }).attention!;
  assert.deepEqual([plain.ropeTheta, plain.rope], [1e4, undefined]);
});

Deno.test("hunyuan: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ moe_topk: [8, 4, ...Array(L - 2).fill(8)] }, /moe_topk \[8,4,.*differs between layers/],
    [{ moe_intermediate_size: Array(L).fill(1536) }, /moe_intermediate_size .* builds experts of/],
    [{ num_shared_expert: Array(L).fill(2) }, /num_shared_expert .* one shared MLP/],
    [{ use_cla: true }, /use_cla true is not supported .*cross-layer attention/],
    [{ use_mla: true }, /use_mla true is not supported/],
    [{ use_qk_norm: false }, /use_qk_norm false is not supported/],
    [{ use_mixed_mlp_moe: false }, /use_mixed_mlp_moe false is not supported/],
    [{ norm_type: "layer" }, /norm_type "layer" is not supported .*RMSNorms/],
    [{ moe_topk: 65 }, /moe_topk 65 must be between 1 and num_experts 64/],
    [{ rope_scaling: { type: "dynamic", factor: 1.0, alpha: -2 } }, /alpha must be a positive/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => parseConfig({ ...HUNYUAN_A13B_CONFIG, ...edit }),
      pattern,
      JSON.stringify(edit),
    );
  }
});

Deno.test("kiln inspect: Hunyuan-A13B's 80B parameters, 13B active", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_hunyuan_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(HUNYUAN_A13B_CONFIG));
    const r = await kiln("inspect", dir);
    assert.equal(r.code, 0, r.stderr);
    // 32 × (64 experts of 3 · 4096 · 3072 + router 64 · 4096 + a shared MLP of 3 · 4096 · 3072
    // + attention 2 · 4096² + 2 · 4096 · 1024 + norms); one tied 128167 × 4096 table.
    assert.match(r.stdout, /QK-norm per head after RoPE/);
    assert.match(r.stdout, /parameters: 80\.39B total, 12\.75B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
