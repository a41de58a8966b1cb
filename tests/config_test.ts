/**
 * config.json parsing, field by field: every field that changes the math is read
 * from where transformers 4 and transformers 5 write it (the two layouts give
 * the same `ModelConfig`), and every setting Kiln does not implement is refused
 * with a one-line error naming the field and its value.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../models/architectures/mod.ts";
import { configJson } from "../app/config_file.ts";
import { ARCHITECTURES, type ModelConfig } from "../models/config.ts";
import { ropeFrequencies, type RopeSettings } from "../models/rope_scaling.ts";
import { toV4Config, toV5Config } from "./fixtures/config_generations.ts";
import { referenceRope } from "./reference/rope_reference.ts";

import { JAMBA, type Json, MAMBA, MIXTRAL, OLMOE, QWEN } from "./fixtures/small_configs.ts";

/** Parses `base` with `fields`, written both ways; asserts both agree and returns it. */
function both(base: Json, fields: Json): ModelConfig {
  const v4 = parseConfig(toV4Config({ ...base, ...fields }));
  const v5 = parseConfig(toV5Config({ ...base, ...fields }));
  assert.deepEqual(v5, v4);
  return v4;
}

function refuses(config: Json, pattern: RegExp): void {
  assert.throws(() => parseConfig(config), (e: Error) => {
    assert.ok(e instanceof TypeError || e instanceof RangeError, `${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

Deno.test("rope_theta: top level (transformers 4) and inside rope_parameters (transformers 5)", () => {
  for (const base of [MIXTRAL, QWEN, OLMOE]) {
    assert.equal(both(base, { rope_theta: 12345 }).attention!.ropeTheta, 12345);
    assert.equal(
      parseConfig({ ...base, rope_parameters: { rope_type: "default", rope_theta: 777 } })
        .attention!.ropeTheta,
      777,
    );
  }
  // Defaults when neither layout gives a base: Mixtral 1e6, Qwen2-MoE and OLMoE 1e4.
  assert.equal(parseConfig(MIXTRAL).attention!.ropeTheta, 1e6);
  assert.equal(parseConfig(QWEN).attention!.ropeTheta, 1e4);
  assert.equal(parseConfig(OLMOE).attention!.ropeTheta, 1e4);
  // Jamba has no RoPE, whatever the config says.
  const jamba = both(JAMBA, { attn_layer_period: 2, attn_layer_offset: 1, rope_theta: 1e4 });
  assert.equal(jamba.attention!.ropeTheta, 0);
});

Deno.test("rope_scaling / rope_parameters: linear, yarn and llama3 read the same from every layout", () => {
  const scalings: Json[] = [
    { type: "linear", factor: 4 },
    { rope_type: "yarn", factor: 8, beta_fast: 16, original_max_position_embeddings: 512 },
    {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  ];
  for (const sc of scalings) {
    const fields = sc.rope_type === "yarn"
      ? { rope_theta: 1e4, rope_scaling: sc, max_position_embeddings: 4096 }
      : { rope_theta: 1e4, rope_scaling: sc };
    const cfg = both(MIXTRAL, fields);
    const rope = cfg.attention!.rope!;
    assert.equal(rope.type, sc.type ?? sc.rope_type);
    assert.equal(rope.factor, sc.factor);
    assert.equal(rope.theta, 1e4);
    // "type" (transformers ≤ 4.4x) and "rope_type" (later 4.x) mean the same.
    const { type, rope_type, ...rest } = sc;
    assert.deepEqual(
      parseConfig({
        ...MIXTRAL,
        ...fields,
        rope_scaling: { rope_type: type ?? rope_type, ...rest },
      })
        .attention!.rope,
      rope,
    );
  }
  assert.equal(parseConfig({ ...MIXTRAL, rope_scaling: null }).attention!.rope, undefined);
});

Deno.test("ropeFrequencies agrees with the float64 reference for every implemented type", () => {
  const cases: [RopeSettings, Json][] = [
    [{ type: "default", theta: 1e4, factor: 1 }, { rope_theta: 1e4 }],
    [{ type: "linear", theta: 1e6, factor: 3 }, {
      rope_theta: 1e6,
      rope_scaling: { type: "linear", factor: 3 },
    }],
    [
      {
        type: "yarn",
        theta: 1e4,
        factor: 4,
        originalMaxPositions: 2048,
        betaFast: 32,
        betaSlow: 1,
      },
      {
        rope_theta: 1e4,
        rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 2048 },
      },
    ],
    [
      {
        type: "yarn",
        theta: 1e4,
        factor: 40,
        originalMaxPositions: 4096,
        mscale: 1,
        mscaleAllDim: 0.7,
      },
      {
        rope_theta: 1e4,
        rope_scaling: {
          type: "yarn",
          factor: 40,
          original_max_position_embeddings: 4096,
          mscale: 1,
          mscale_all_dim: 0.7,
        },
      },
    ],
    [
      {
        type: "llama3",
        theta: 5e5,
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositions: 8192,
      },
      {
        rope_theta: 5e5,
        rope_scaling: {
          rope_type: "llama3",
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 8192,
        },
      },
    ],
  ];
  for (const [settings, json] of cases) {
    for (const D of [8, 64, 128]) {
      const got = ropeFrequencies(D, settings);
      const want = referenceRope(json, D, 0);
      assert.ok(Math.abs(got.attentionFactor - want.scale) < 1e-12, `${settings.type} factor`);
      for (let i = 0; i < D / 2; i++) {
        const rel = Math.abs(got.invFreq[i] - want.invFreq[i]) / want.invFreq[i];
        assert.ok(
          rel < 1e-6,
          `${settings.type} D=${D} i=${i}: ${got.invFreq[i]} vs ${want.invFreq[i]}`,
        );
      }
    }
  }
});

Deno.test("head_dim: given, null or absent", () => {
  assert.equal(both(MIXTRAL, { head_dim: 24 }).attention!.headDim, 24);
  assert.equal(both(MIXTRAL, { head_dim: null }).attention!.headDim, 16);
  assert.equal(parseConfig(MIXTRAL).attention!.headDim, 16);
  refuses(
    { ...MIXTRAL, hidden_size: 66 },
    /hidden_size 66 is not a multiple of num_attention_heads 4/,
  );
  assert.equal(parseConfig({ ...MIXTRAL, hidden_size: 66, head_dim: 16 }).attention!.headDim, 16);
});

Deno.test("sliding windows: Mixtral's sliding_window, Qwen2-MoE's layer_types or use_sliding_window", () => {
  assert.equal(both(MIXTRAL, { sliding_window: 16 }).attention!.slidingWindow, 16);
  assert.equal(both(MIXTRAL, { sliding_window: null }).attention!.slidingWindow, 0);
  // Without layer_types, Qwen2-MoE's sliding layers are derived as transformers 5
  // derives them on load (even layers below max_window_layers), whichever release
  // wrote the config; with layer_types (transformers 5 writes them) they are as listed.
  const slide = { ...QWEN, use_sliding_window: true, sliding_window: 32, max_window_layers: 2 };
  const windows = (c: Json) => parseConfig(c).pattern.map((p) => p.window);
  assert.deepEqual(windows({ ...slide, transformers_version: "4.44.2" }), [32, 0, 0, 0]);
  assert.deepEqual(windows({ ...slide, transformers_version: "5.18.0" }), [32, 0, 0, 0]);
  assert.deepEqual(
    windows({
      ...slide,
      layer_types: ["full_attention", "full_attention", "sliding_attention", "sliding_attention"],
    }),
    [0, 0, 32, 32],
  );
  // Without use_sliding_window, sliding_window means nothing (as in transformers).
  assert.deepEqual(
    parseConfig({ ...QWEN, sliding_window: 32, max_window_layers: 0 }).pattern.map((p) => p.window),
    [0, 0, 0, 0],
  );
});

Deno.test("biases and QK-norm: Qwen2-MoE qkv_bias, OLMoE attention_bias and clip_qkv", () => {
  assert.equal(parseConfig(QWEN).attention!.qkvBias, true); // transformers 4: always on
  assert.equal(both(QWEN, { qkv_bias: true }).attention!.qkvBias, true);
  assert.equal(parseConfig({ ...QWEN, qkv_bias: false }).attention!.qkvBias, false);
  assert.equal(parseConfig(QWEN).attention!.outBias, false);
  const o = parseConfig({ ...OLMOE, attention_bias: true, clip_qkv: 8 }).attention!;
  assert.deepEqual([o.qkvBias, o.outBias, o.qkNorm, o.clipQkv], [true, true, true, 8]);
  const o2 = both(OLMOE, { clip_qkv: null }).attention!;
  assert.deepEqual([o2.qkvBias, o2.outBias, o2.qkNorm, o2.clipQkv], [false, false, true, 0]);
  assert.equal(parseConfig(MIXTRAL).attention!.qkNorm, false);
});

Deno.test("tie_word_embeddings: explicit, and each family's default", () => {
  for (const base of [MIXTRAL, QWEN, OLMOE, JAMBA]) {
    assert.equal(parseConfig(base).tieEmbeddings, false);
    assert.equal(both(base, { tie_word_embeddings: true }).tieEmbeddings, true);
  }
  assert.equal(parseConfig(MAMBA).tieEmbeddings, true);
  assert.equal(parseConfig({ ...MAMBA, tie_word_embeddings: false }).tieEmbeddings, false);
});

Deno.test("routing: norm_topk_prob, top-k, expert widths, shared expert, aux-loss coefficient", () => {
  assert.equal(parseConfig(MIXTRAL).moe!.normTopk, true);
  assert.equal(parseConfig({ ...MIXTRAL, norm_topk_prob: false }).moe!.normTopk, true); // not a Mixtral field
  assert.equal(parseConfig(JAMBA).moe!.normTopk, false);
  for (const base of [QWEN, OLMOE]) {
    assert.equal(parseConfig(base).moe!.normTopk, false);
    assert.equal(both(base, { norm_topk_prob: true }).moe!.normTopk, true);
  }
  const q = both(QWEN, { router_aux_loss_coef: 0.02, num_experts_per_tok: 3 });
  assert.deepEqual([q.moe!.topK, q.moe!.ff, q.moe!.auxLossCoef, q.intermediate], [3, 32, 0.02, 96]);
  assert.deepEqual(q.moe!.sharedExpert, { ff: 48, gated: true });
  assert.equal(
    parseConfig({ ...QWEN, shared_expert_intermediate_size: 0 }).moe!.sharedExpert,
    undefined,
  );
  refuses(
    { ...MIXTRAL, num_experts_per_tok: 5 },
    /num_experts_per_tok 5 must be between 1 and num_local_experts 4/,
  );
});

Deno.test("Qwen2-MoE layer layout: decoder_sparse_step and mlp_only_layers", () => {
  const cfg = both(QWEN, { decoder_sparse_step: 2, mlp_only_layers: [3] });
  assert.deepEqual(cfg.pattern.map((p) => p.ffn), ["mlp", "moe", "mlp", "mlp"]);
  assert.deepEqual(parseConfig({ ...QWEN, num_experts: 0 }).pattern.map((p) => p.ffn), [
    "mlp",
    "mlp",
    "mlp",
    "mlp",
  ]);
  // transformers only asks whether a layer is in the list: layer 7 of 4 changes nothing.
  assert.deepEqual(
    parseConfig({ ...QWEN, mlp_only_layers: [7] }).pattern,
    parseConfig(QWEN).pattern,
  );
});

Deno.test("Mamba: use_bias, use_conv_bias, time_step_rank and time_step_* init settings", () => {
  const m = both(MAMBA, {
    use_bias: true,
    use_conv_bias: false,
    time_step_rank: 7,
    time_step_min: 0.01,
    time_step_max: 0.2,
    time_step_floor: 0.001,
    time_step_scale: 2,
    time_step_init_scheme: "constant",
  }).mamba!;
  assert.deepEqual([m.projBias, m.convBias, m.dtRank], [true, false, 7]);
  assert.deepEqual(m.dtInit, { min: 0.01, max: 0.2, floor: 0.001, scale: 2, scheme: "constant" });
  assert.equal(parseConfig({ ...MAMBA, time_step_rank: "auto" }).mamba!.dtRank, 4);
  refuses(
    { ...MAMBA, time_step_init_scheme: "fancy" },
    /time_step_init_scheme "fancy" is not supported/,
  );
  refuses(
    { ...MAMBA, time_step_min: 0.5, time_step_max: 0.1 },
    /time_step_min 0.5 and time_step_max 0.1/,
  );
});

Deno.test("Jamba: attention and expert periods and offsets", () => {
  const cfg = both(JAMBA, {
    attn_layer_period: 2,
    attn_layer_offset: 1,
    expert_layer_period: 4,
    expert_layer_offset: 0,
  });
  assert.deepEqual(cfg.pattern.map((p) => `${p.mixer}/${p.ffn}`), [
    "mamba/moe",
    "attention/mlp",
    "mamba/mlp",
    "attention/mlp",
  ]);
});

Deno.test("settings Kiln does not implement are refused, naming the field and its value", () => {
  const cases: [Json, RegExp][] = [
    [
      { ...MIXTRAL, rope_scaling: { type: "ntk", factor: 2 } },
      /rope_scaling\.rope_type "ntk" is not supported \(supported: default, linear, yarn, llama3, dynamic, longrope\)/,
    ],
    [
      {
        ...MIXTRAL,
        max_position_embeddings: undefined,
        rope_scaling: { type: "dynamic", factor: 2 },
      },
      /rope_type "dynamic" needs the field "max_position_embeddings"/,
    ],
    [
      { ...MIXTRAL, rope_parameters: { rope_type: "longrope", rope_theta: 1e4 } },
      /rope_type "longrope" needs the field "rope_parameters\.short_factor"/,
    ],
    [
      {
        ...MIXTRAL,
        rope_parameters: { rope_type: "longrope", rope_theta: 1e4, short_factor: [1, "x"] },
      },
      /"rope_parameters\.short_factor" must be a list of positive numbers, got \[1,"x"\]/,
    ],
    [{ ...MIXTRAL, rope_scaling: { type: "su", factor: 2 } }, /rope_type "su" is not supported/],
    [{ ...MIXTRAL, partial_rotary_factor: 0.5 }, /partial_rotary_factor 0\.5 is not supported/],
    [
      { ...MIXTRAL, rope_parameters: { full_attention: { rope_theta: 1e4 } } },
      /rope_parameters per layer type \("full_attention"\)/,
    ],
    [
      { ...MIXTRAL, rope_theta: 1e4, rope_parameters: { rope_theta: 1e6 } },
      /rope_theta 10000 and rope_parameters\.rope_theta 1000000 disagree/,
    ],
    [
      { ...MIXTRAL, rope_scaling: { type: "linear" } },
      /rope_type "linear" needs the field "rope_scaling\.factor"/,
    ],
    [
      { ...MIXTRAL, hidden_act: "relu6" },
      /hidden_act "relu6" is not supported by MixtralForCausalLM \(implemented: silu, swish, gelu,/,
    ],
    [
      { ...QWEN, hidden_act: "relu6" },
      /hidden_act "relu6" is not supported by Qwen2MoeForCausalLM/,
    ],
    [
      { ...OLMOE, hidden_act: "gelu_10" },
      /hidden_act "gelu_10" is not supported by OlmoeForCausalLM/,
    ],
    [{ ...MAMBA, hidden_act: "tanh" }, /hidden_act "tanh" is not supported by MambaForCausalLM/],
    [{ ...JAMBA, hidden_act: 3 }, /hidden_act/],
    [
      { ...MIXTRAL, attention_bias: true },
      /attention_bias true is not supported by MixtralForCausalLM \(Mixtral's projections have no biases\)/,
    ],
    [
      { ...JAMBA, attention_bias: true },
      /attention_bias true is not supported by JambaForCausalLM/,
    ],
    [
      { ...QWEN, attention_bias: true },
      /attention_bias true is not supported by Qwen2MoeForCausalLM/,
    ],
    [{ ...MIXTRAL, mlp_bias: true }, /mlp_bias true is not supported/],
    [
      { ...MIXTRAL, qk_norm: true },
      /qk_norm true is not supported by MixtralForCausalLM \(it has no QK-norm\)/,
    ],
    [{ ...MIXTRAL, use_qk_norm: true }, /use_qk_norm true is not supported/],
    [{ ...MIXTRAL, attn_logit_softcapping: 50 }, /attn_logit_softcapping 50 is not supported/],
    [
      { ...MIXTRAL, layer_types: ["full_attention", "sliding_attention"], sliding_window: 8 },
      /layer_types .* is not supported by MixtralForCausalLM/,
    ],
    [{
      ...QWEN,
      layer_types: ["full_attention", "chunked_attention", "full_attention", "full_attention"],
    }, /layer_types\[1\] "chunked_attention" is not supported/],
    [{
      ...QWEN,
      layer_types: ["full_attention", "sliding_attention", "full_attention", "full_attention"],
    }, /layer_types\[1\] is "sliding_attention" but sliding_window is not set/],
    [
      { ...QWEN, layer_types: ["full_attention"] },
      /layer_types has 1 entries, num_hidden_layers is 4/,
    ],
    [{ ...OLMOE, head_dim: 8 }, /head_dim 8 is not supported by OlmoeForCausalLM/],
    [{ ...OLMOE, clip_qkv: -1 }, /clip_qkv must be > 0, got -1/],
  ];
  for (const [config, pattern] of cases) refuses(config, pattern);
});

Deno.test("a config without a known architecture says what is supported and what model_type suggests", () => {
  const { architectures: _, ...noArch } = OLMOE;
  refuses(
    noArch,
    /no "architectures" field .*model_type "olmoe" suggests "architectures": \["OlmoeForCausalLM"\]/,
  );
  refuses(
    { ...MIXTRAL, architectures: ["LlamaForCausalLM"] },
    new RegExp(
      `architecture \\["LlamaForCausalLM"\\] is not supported \\(supported: ${
        ARCHITECTURES.join(", ")
      }\\)`,
    ),
  );
});

Deno.test("fields that do not change the math are ignored, as transformers does", () => {
  const plain = parseConfig(MIXTRAL);
  const extra = parseConfig({
    ...MIXTRAL,
    output_router_logits: true,
    router_jitter_noise: 0.1,
    use_cache: false,
    attention_dropout: 0.1,
    initializer_range: 0.5,
    torch_dtype: "bfloat16",
    some_future_field: { nested: true },
  });
  assert.deepEqual(extra, plain);
});

Deno.test("config: router_aux_loss_coef defaults to each class's value (OlmoeConfig 0.01, the others 0.001)", () => {
  assert.equal(parseConfig(OLMOE).moe!.auxLossCoef, 0.01);
  for (const c of [MIXTRAL, QWEN, JAMBA]) {
    assert.equal(parseConfig(c).moe!.auxLossCoef, 0.001, String(c.architectures));
  }
  assert.equal(parseConfig({ ...OLMOE, router_aux_loss_coef: 0.5 }).moe!.auxLossCoef, 0.5);
});

Deno.test("config: an absent num_key_value_heads is the class's default (Mixtral and Jamba 8, Qwen2-MoE 16), null is the query heads", () => {
  const drop = (c: Json): Json => {
    const { num_key_value_heads: _, ...rest } = c;
    return rest;
  };
  const kv = (c: Json) => parseConfig(c).attention!.kvHeads;
  assert.equal(kv({ ...drop(MIXTRAL), num_attention_heads: 16 }), 8);
  assert.equal(kv({ ...drop(QWEN), num_attention_heads: 32 }), 16);
  assert.equal(kv({ ...drop(JAMBA), num_attention_heads: 16, attn_layer_offset: 1 }), 8);
  assert.equal(kv({ ...MIXTRAL, num_attention_heads: 16, num_key_value_heads: null }), 16);
  assert.equal(kv(OLMOE), 4);
});

Deno.test("config: OLMoE reads num_local_experts as num_experts (OlmoeConfig's attribute_map)", () => {
  const { num_experts: _, ...rest } = OLMOE;
  assert.equal(parseConfig({ ...rest, num_local_experts: 12 }).moe!.experts, 12);
  assert.equal(parseConfig({ ...OLMOE, num_local_experts: 12 }).moe!.experts, 8);
});

Deno.test("configJson writes transformers 5's float fields with a decimal point", () => {
  // transformers 5's strict config classes refuse `"time_step_scale": 1` (an int).
  const config = {
    ...MAMBA,
    time_step_scale: 1,
    time_step_floor: 0.0001,
    initializer_range: 2,
    num_hidden_layers: 2,
    rope_parameters: { rope_theta: 10000 },
  };
  const text = configJson(config);
  assert.match(text, /"time_step_scale": 1\.0,/);
  assert.match(text, /"initializer_range": 2\.0,/);
  assert.match(text, /"time_step_floor": 0\.0001,/);
  assert.match(text, /"num_hidden_layers": 2,/);
  assert.deepEqual(JSON.parse(text), config);
});
