/**
 * MiniMax-M2 (`MiniMaxM2ForCausalLM`) beyond the logits and gradients of
 * `hf_fixtures_test.ts` / `hf_grads_test.ts`: the hub's config.json read field
 * by field, MiniMaxM2Config's defaults (head_dim 128, base 5e6, `rotary_dim`
 * against `partial_rotary_factor`), refusals by field, the fixture rewritten
 * in the hub's form (top-level `rope_theta`, `rotary_dim` alone, the hub's
 * restating fields, multi-token-prediction modules after the last layer)
 * giving transformers' logits, and `kiln inspect` counting the 230B / 10B
 * active MiniMax states.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { loadModel } from "../app/model/mod.ts";
import { readSafetensors, writeSafetensors } from "../app/train/safetensors_write.ts";
import { kiln } from "./fixtures/kiln_cli.ts";
import { readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";
import { gpu } from "./_util.ts";

const FIXTURE = new URL("./fixtures/hf/minimax_m2/", import.meta.url).pathname;

/** The fields of MiniMaxAI/MiniMax-M2's config.json that restate what the class does. */
const HUB_FIELDS = {
  mtp_transformer_layers: 1,
  num_mtp_modules: 3,
  qk_norm_type: "per_layer",
  scoring_func: "sigmoid",
  shared_intermediate_size: 0,
  use_mtp: true,
  use_qk_norm: true,
  use_routing_bias: true,
};

/** MiniMaxAI/MiniMax-M2's config.json (its FP8 checkpoint's). */
const MINIMAX_M2_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["MiniMaxM2ForCausalLM"],
  attn_type_list: Array(62).fill(1),
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 3072,
  intermediate_size: 1536,
  max_position_embeddings: 196608,
  model_type: "minimax_m2",
  num_attention_heads: 48,
  num_experts_per_tok: 8,
  num_hidden_layers: 62,
  num_key_value_heads: 8,
  num_local_experts: 256,
  quantization_config: {
    activation_scheme: "dynamic",
    fmt: "float8_e4m3fn",
    quant_method: "fp8",
    weight_block_size: [128, 128],
    modules_to_not_convert: ["gate", "e_score_correction_bias", "lm_head"],
  },
  rms_norm_eps: 1e-6,
  rope_theta: 5000000,
  rotary_dim: 64,
  tie_word_embeddings: false,
  vocab_size: 200064,
  ...HUB_FIELDS,
};

Deno.test("minimax-m2: the hub's config, field by field", () => {
  const cfg = parseConfig(MINIMAX_M2_CONFIG);
  assert.equal(cfg.layers, 62);
  assert.ok(cfg.pattern.every((l) => l.mixer === "attention" && l.ffn === "moe"));
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.rotaryDim, a.qkvBias, a.outBias, a.qkNorm],
    [48, 8, 128, 5e6, 64, false, false, true],
  );
  assert.equal(a.qkNormPerHead, undefined, "one RMSNorm over the whole q and k projections");
  assert.equal(a.slidingWindow, 0);
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.router, m.normTopk, m.routedScaling, m.groups, m.sharedExpert, m.ff],
    [256, 8, "sigmoid_bias", true, undefined, undefined, undefined, undefined],
  );
  assert.equal(cfg.intermediate, 1536, "every expert is intermediate_size wide");
  assert.equal(cfg.extraLayers, 3, "num_mtp_modules after the last layer, not read");
  assert.deepEqual([cfg.normEps, cfg.tieEmbeddings, cfg.vocabSize], [1e-6, false, 200064]);
  // MiniMaxM2Config's token ids where the config gives none.
  assert.deepEqual([cfg.bosTokenId, cfg.eosTokenIds], [200034, [200020]]);
  assert.deepEqual(cfg.quantization, { method: "fp8", block: [128, 128], scaleFmt: "float" });
});

Deno.test("minimax-m2: MiniMaxM2Config's defaults, rotary_dim against partial_rotary_factor", () => {
  const bare = {
    architectures: ["MiniMaxM2ForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 16,
  };
  const cfg = parseConfig(bare);
  const a = cfg.attention!;
  // head_dim 128 (not hidden / heads), 8 KV heads, base 5e6, RoPE over the whole head.
  assert.deepEqual([a.headDim, a.kvHeads, a.ropeTheta, a.rotaryDim], [128, 8, 5e6, undefined]);
  assert.deepEqual([cfg.moe!.experts, cfg.moe!.topK, cfg.intermediate], [256, 8, 1536]);
  assert.equal(cfg.normEps, 1e-6);
  assert.equal(cfg.extraLayers, 0);
  const rot = (extra: Record<string, unknown>) =>
    parseConfig({ ...bare, head_dim: 16, ...extra }).attention!.rotaryDim;
  assert.equal(rot({ rotary_dim: 8 }), 8);
  assert.equal(rot({ rotary_dim: 16 }), undefined);
  // int(16 · 5/16) = 5 frequencies: cos and sin cover 6 values.
  assert.equal(rot({ rotary_dim: 5 }), 6);
  // A partial_rotary_factor, in rope_parameters or at the top level, wins (setdefault).
  assert.equal(
    rot({ rotary_dim: 8, rope_parameters: { rope_theta: 1e4, partial_rotary_factor: 0.25 } }),
    4,
  );
  assert.equal(rot({ rotary_dim: 8, partial_rotary_factor: 1 }), undefined);
  // num_experts is num_local_experts (the attribute_map).
  assert.equal(parseConfig({ ...bare, num_experts: 6, num_experts_per_tok: 2 }).moe!.experts, 6);
});

Deno.test("minimax-m2: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ use_qk_norm: false }, /use_qk_norm false is not supported by MiniMaxM2ForCausalLM/],
    [{ qk_norm_type: "per_head" }, /qk_norm_type "per_head" is not supported/],
    [{ scoring_func: "softmax" }, /scoring_func "softmax" is not supported/],
    [{ use_routing_bias: false }, /use_routing_bias false is not supported/],
    [{ shared_intermediate_size: 1536 }, /shared_intermediate_size 1536 is not supported/],
    [
      { attn_type_list: [0, ...Array(61).fill(1)] },
      /attn_type_list\[0\] is 0; MiniMaxM2ForCausalLM runs softmax attention/,
    ],
    [{ attn_type_list: [1, 1] }, /attn_type_list has 2 entries, num_hidden_layers is 62/],
    [{ rotary_dim: 256 }, /"rotary_dim" \(256\) exceeds head_dim 128/],
    [{ rotary_dim: 0 }, /"rotary_dim" must be > 0/],
    [{ head_dim: null }, /head_dim null is not supported/],
    [{ attention_bias: true }, /attention_bias true is not supported/],
    [{ hidden_act: "mish" }, /hidden_act "mish" is not supported/],
    [{ num_experts_per_tok: 300 }, /num_experts_per_tok 300 must be between 1 and/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => parseConfig({ ...MINIMAX_M2_CONFIG, ...edit }),
      pattern,
      JSON.stringify(edit),
    );
  }
});

Deno.test("minimax-m2: the fixture in the hub's form, with MTP modules, gives transformers' logits", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_minimax_m2_" });
  try {
    const saved = JSON.parse(await Deno.readTextFile(join(FIXTURE, "config.json")));
    const { rope_parameters: rp, partial_rotary_factor: _, ...rest } = saved;
    // What the hub writes: the base at the top level, the partial RoPE as rotary_dim only.
    const hub = {
      ...rest,
      rope_theta: rp.rope_theta,
      rotary_dim: 8,
      attn_type_list: [1, 1, 1],
      ...HUB_FIELDS,
    };
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(hub));
    // Three modules after the 3 layers, as SGLang finds them (copies of layer 2).
    const tensors = await readSafetensors(join(FIXTURE, "model.safetensors"));
    const last = [...tensors.values()].filter((t) => t.name.startsWith("model.layers.2."));
    const mtp = [3, 4, 5].flatMap((i) =>
      last.map((t) => ({ ...t, name: t.name.replace("model.layers.2.", `model.layers.${i}.`) }))
    );
    await writeSafetensors(join(dir, "model.safetensors"), [...tensors.values(), ...mtp]);
    const { ref, logits } = await readTransformersRef(
      join(FIXTURE, "ref.json"),
      join(FIXTURE, "logits.f32"),
    );
    const device = await gpu();
    const model = await loadModel(dir, { device, quiet: true, maxSeq: 64 });
    try {
      assert.equal(model.config.attention!.rotaryDim, 8);
      const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e < 1e-4, `max error ${e.toExponential(2)} of the logit rms`);
    } finally {
      model.dispose();
    }
    // Without num_mtp_modules the same tensors describe another model: refused.
    await Deno.writeTextFile(
      join(dir, "config.json"),
      JSON.stringify({ ...hub, num_mtp_modules: 0 }),
    );
    await assert.rejects(
      loadModel(dir, { device, quiet: true, maxSeq: 64 }),
      /tensor\(s\) that MiniMaxM2ForCausalLM as configured does not use \("model\.layers\.3\./,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kiln inspect: MiniMax-M2's 230B parameters, 10B active", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_minimax_m2_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(MINIMAX_M2_CONFIG));
    const r = await kiln("inspect", dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /QK-norm, RoPE over 64 of 128 values a head/);
    assert.match(r.stdout, /256 experts, top-8 \(renormalised\), expert width 1536, sigmoid/);
    // A layer: attention 3072 · (6144 + 1024 + 1024) + 6144 · 3072 = 44,040,192, q/k norms
    // 6144 + 1024, two norms of 3072, a router 256 · 3072 and its selection bias 256, and
    // 256 experts of 3 · 3072 · 1536 = 14,155,776: 3,668,718,848; 62 of them
    // 227,460,568,576, plus two 200064 × 3072 tables and the final norm: 228,689,764,864.
    // Active: 8 of the 256 experts, 158,086,400 a layer, 9.80B in all; with the two
    // tables 11.03B (MiniMax's "10B active" leaves the embedding table out).
    assert.match(r.stdout, /parameters: 228\.69B total, 11\.03B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
