/**
 * Random configs of the routed-expert families whose routers Kiln shares with
 * DeepSeek (sigmoid or softmax plus a selection bias, groups, shared experts)
 * and of the other attention + MoE families after them, for the differential
 * against transformers (`transformers_configs.ts` picks among them).
 *
 * @module
 */

import { attention, common, type Dice, moe, rope } from "./transformers_configs_parts.ts";

/**
 * The DeepSeek-style expert fields GLM-4.5 and DeepSeek-V3 share: experts in
 * groups (DeepSeek-V3's group-limited routing keeps topk_group of them; k fits
 * in the kept ones), shared experts, scaling, normalisation, dense first layers.
 */
export function sigmoidExperts(d: Dice, layers: number): Record<string, unknown> {
  const groups = d.pick([1, 1, 2, 4]);
  const experts = groups * d.int(2, 4);
  const kept = d.chance(0.5) ? groups : d.int(1, groups);
  return {
    intermediate_size: d.int(2, 24) * 2,
    moe_intermediate_size: d.int(2, 12) * 2,
    n_routed_experts: experts,
    num_experts_per_tok: d.int(1, Math.min(kept * (experts / groups), 4)),
    // transformers builds the shared experts whatever their count (0 divides by zero).
    n_shared_experts: d.pick([1, 1, 2]),
    n_group: groups,
    topk_group: kept,
    // Non-integral: JSON writes 1.0 as 1, which the config classes refuse as not a float.
    routed_scaling_factor: d.pick([1.5, 2.5, 0.5]),
    norm_topk_prob: d.chance(0.7),
    first_k_dense_replace: d.int(0, layers),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

export function deepseekV3(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const heads = d.pick([1, 2, 4]);
  const rp = rope(d);
  // llama3 and longrope read head_dim-sized factor lists and ranges; keep to the rest.
  if (rp.rope_type === "llama3" || rp.rope_type === "longrope") {
    for (const k of Object.keys(rp)) if (k !== "rope_theta") delete rp[k];
    rp.rope_type = "default";
  }
  return {
    ...base,
    hidden_size: d.pick([16, 24, 32, 48]),
    num_attention_heads: heads,
    num_key_value_heads: heads,
    q_lora_rank: d.chance(0.3) ? null : d.pick([8, 12, 16, 24]),
    kv_lora_rank: d.pick([4, 8, 12, 16]),
    qk_nope_head_dim: d.pick([2, 4, 6, 8]),
    qk_rope_head_dim: d.pick([2, 4, 8]),
    v_head_dim: d.pick([2, 4, 6, 10]),
    rope_interleave: d.chance(0.6),
    attention_bias: d.chance(0.3),
    rope_parameters: rp,
    max_position_embeddings: d.pick([64, 128, 512]),
    ...sigmoidExperts(d, layers),
    num_nextn_predict_layers: 0,
  };
}

/**
 * DeepSeek-V2: V3's latent attention (no `rope_interleave`: complex pairs
 * always) and experts with its softmax router, greedy or group-limited.
 */
export function deepseekV2(d: Dice): Record<string, unknown> {
  const { rope_interleave: _, ...v3 } = deepseekV3(d);
  const limited = d.chance(0.5);
  const experts = v3.n_routed_experts as number, groups = v3.n_group as number;
  return {
    ...v3,
    // transformers checks hidden_size % num_attention_heads.
    hidden_size: (v3.num_attention_heads as number) * d.pick([4, 8, 12]),
    topk_method: limited ? "group_limited_greedy" : "greedy",
    ...(limited ? {} : { n_group: d.pick([null, groups]), topk_group: null }),
    routed_scaling_factor: d.pick([1.5, 2.5, 16.5]),
    n_routed_experts: experts,
  };
}

/**
 * Granite 3 MoE (and its shared-MLP variant): attention with RoPE in every
 * layer and routed experts, under the hybrids' μP multipliers.
 */
export function graniteMoe(d: Dice, shared: boolean): Record<string, unknown> {
  const base = common(d);
  const att = attention(d, 0);
  const { experts, topk } = moe(d, 8);
  return {
    ...base,
    ...att,
    intermediate_size: d.int(2, 24) * 2,
    ...(shared ? { shared_intermediate_size: d.pick([0, 8, 24]) } : {}),
    num_local_experts: experts,
    num_experts_per_tok: topk,
    attention_bias: d.chance(0.3),
    embedding_multiplier: d.pick([1, 0.5, 2, 12]),
    residual_multiplier: d.pick([1, 0.22, 0.6]),
    attention_multiplier: d.pick([0.0078125, 0.1, 0.5, 1]),
    logits_scaling: d.pick([1, 2.5, 6, 16]),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

export function glm4Moe(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const att = attention(d, 0.5);
  const rp = att.rope_parameters as Record<string, unknown>;
  // Absent, Glm4MoeConfig sets 0.5.
  if (d.chance(0.7)) rp.partial_rotary_factor = d.pick([0.25, 0.5, 0.5, 1]);
  return {
    ...base,
    ...att,
    ...sigmoidExperts(d, layers),
    attention_bias: d.chance(0.5),
    use_qk_norm: d.chance(0.5),
  };
}

/**
 * dots.llm1: Qwen3's attention (per-head QK-norm, biases on all four
 * projections or none) over DeepSeek-V3's experts; sliding layers from
 * `max_window_layers` on, or none.
 */
export function dots1(d: Dice, promptLen: number): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const c: Record<string, unknown> = {
    ...base,
    ...attention(d, 0.5),
    ...sigmoidExperts(d, layers),
    attention_bias: d.chance(0.4),
    sliding_window: null,
  };
  if (d.chance(0.5)) {
    c.sliding_window = d.int(2, promptLen);
    c.max_window_layers = d.int(0, layers);
  }
  return c;
}

/**
 * Hunyuan-A13B: per-head QK-norm after RoPE, now and then the NTK-alpha base
 * (`dynamic` with `alpha`), biases on all four projections or none, softmax
 * top-k (an int, or a list of one value per layer) beside a shared MLP.
 */
export function hunyuanMoe(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const { experts, topk } = moe(d, 8);
  const att = attention(d, 0.5);
  if (d.chance(0.4)) {
    const rp = att.rope_parameters as Record<string, unknown>;
    att.rope_parameters = {
      rope_type: "dynamic",
      rope_theta: rp.rope_theta,
      factor: 1.0,
      alpha: d.pick([2.5, 8.0, 1000.0]),
    };
  }
  // HunYuanMoEV1Attention reads config.head_dim as it is (None unless given), so
  // transformers builds no HunYuan without one.
  att.head_dim ??= (att.hidden_size as number) / (att.num_attention_heads as number);
  return {
    ...base,
    ...att,
    intermediate_size: d.int(2, 16) * 2,
    num_experts: experts,
    moe_topk: d.chance(0.5) ? topk : Array(layers).fill(topk),
    attention_bias: d.chance(0.4),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

/**
 * MiniMax-M2: attention with RMSNorms over the whole q and k projections (any
 * head_dim: they span heads · head_dim), RoPE over part of each head by the
 * hub's `rotary_dim` or by `partial_rotary_factor` (or the whole head), and
 * sigmoid + selection-bias experts, renormalised, in every layer; now and then
 * the hub config's fields that restate what the class does.
 */
export function minimaxM2(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const att = attention(d, 0.5);
  // Absent, MiniMaxM2Config's head_dim is 128.
  const hd = (att.head_dim as number | undefined) ?? 128;
  const rp = att.rope_parameters as Record<string, unknown>;
  const partial = d.int(0, 2);
  // An odd rotary_dim too (int(head_dim · factor) frequencies, one value more rotated),
  // under plain or linear RoPE: transformers' other types fail on an odd one.
  const odd = ["default", "linear"].includes(rp.rope_type as string);
  const rotary = odd ? d.int(1, hd) : 2 * d.int(1, hd / 2);
  const { experts, topk } = moe(d, 8);
  return {
    ...base,
    ...att,
    ...(partial === 1 ? { rotary_dim: rotary } : {}),
    ...(partial === 2
      ? { rope_parameters: { ...rp, partial_rotary_factor: d.pick([0.25, 0.5, 1]) } }
      : {}),
    intermediate_size: d.int(2, 24) * 2,
    num_local_experts: experts,
    num_experts_per_tok: topk,
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
    ...(d.chance(0.4)
      ? {
        use_qk_norm: true,
        qk_norm_type: "per_layer",
        scoring_func: "sigmoid",
        use_routing_bias: true,
        shared_intermediate_size: 0,
        attn_type_list: Array(layers).fill(1),
        use_mtp: true,
        num_mtp_modules: 3,
        mtp_transformer_layers: 1,
      }
      : {}),
  };
}

/**
 * FlexOlmo: OLMo 2's post-norm layers (QK-norm over whole projections, biases or
 * none) over OLMoE's softmax top-k experts, renormalised or not.
 */
export function flexOlmo(d: Dice): Record<string, unknown> {
  const { experts, topk } = moe(d, 8);
  return {
    ...common(d),
    ...attention(d, 0.3),
    intermediate_size: d.int(2, 16) * 2,
    num_experts: experts,
    num_experts_per_tok: topk,
    norm_topk_prob: d.chance(0.5),
    attention_bias: d.chance(0.4),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

/**
 * K-EXAONE: a window on the sliding layers (from `sliding_window_pattern` or
 * `layer_types`), the global layers without RoPE, per-head QK-norm, and
 * DeepSeek-style experts on the layers `mlp_layer_types` or
 * `first_k_dense_replace` leaves sparse.
 */
export function exaoneMoe(d: Dice, promptLen: number): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const { n_routed_experts, n_shared_experts, ...experts } = sigmoidExperts(d, layers);
  const c: Record<string, unknown> = {
    ...base,
    ...attention(d, 0.5),
    ...experts,
    num_experts: n_routed_experts,
    num_shared_experts: n_shared_experts,
    sliding_window: d.int(2, promptLen),
  };
  if (d.chance(0.5)) {
    c.layer_types = Array.from(
      { length: layers },
      () => (d.chance(0.6) ? "sliding_attention" : "full_attention"),
    );
  } else c.sliding_window_pattern = d.int(1, 4);
  if (d.chance(0.4)) {
    c.mlp_layer_types = Array.from({ length: layers }, () => (d.chance(0.7) ? "sparse" : "dense"));
  }
  return c;
}

/**
 * GLM-4.7-Flash: DeepSeek-V3's random configs, the dense layers by
 * `mlp_layer_types` (or Glm4MoeLiteConfig's first-layer default, whatever
 * `first_k_dense_replace` says).
 */
export function glm4MoeLite(d: Dice): Record<string, unknown> {
  const c = deepseekV3(d);
  const layers = c.num_hidden_layers as number;
  if (d.chance(0.6)) {
    c.mlp_layer_types = Array.from({ length: layers }, () => (d.chance(0.7) ? "sparse" : "dense"));
  }
  return c;
}
