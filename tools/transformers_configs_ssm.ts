/**
 * Random config generators of the state-space and hybrid families (Jamba,
 * Mamba, Falcon-Mamba, Mamba-2, Granite 4.0, Bamba, Nemotron-H) for
 * `transformers_configs.ts`.
 *
 * @module
 */

import { attention, common, type Dice, divisors, moe, rope } from "./transformers_configs_parts.ts";

/**
 * A random Jamba config.
 *
 * @example
 * ```ts
 * import { jamba } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * jamba(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function jamba(d: Dice): Record<string, unknown> {
  const heads = d.pick([1, 2, 4]);
  const { experts, topk } = moe(d, 6);
  const attnPeriod = d.int(1, 4), expertPeriod = d.int(1, 4);
  return {
    ...common(d),
    hidden_size: heads * d.pick([4, 8, 12, 16]),
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    intermediate_size: d.int(4, 48) * 2,
    num_experts: experts,
    num_experts_per_tok: topk,
    attn_layer_period: attnPeriod,
    attn_layer_offset: d.int(0, attnPeriod - 1),
    expert_layer_period: expertPeriod,
    expert_layer_offset: d.int(0, expertPeriod - 1),
    mamba_d_state: d.pick([2, 4, 8, 16]),
    mamba_d_conv: d.pick([2, 3, 4]),
    mamba_expand: d.pick([1, 2, 3]),
    mamba_dt_rank: d.chance(0.5) ? "auto" : d.int(1, 8),
    mamba_conv_bias: d.chance(0.6),
    mamba_proj_bias: d.chance(0.4),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
    use_mamba_kernels: false,
  };
}

/**
 * A random Mamba config.
 *
 * @example
 * ```ts
 * import { mamba } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * mamba(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function mamba(d: Dice): Record<string, unknown> {
  const c = common(d);
  return {
    ...c,
    hidden_size: d.int(2, 16) * 4,
    state_size: d.pick([1, 2, 4, 8, 16]),
    conv_kernel: d.pick([1, 2, 3, 4, 5]),
    expand: d.pick([1, 2, 3]),
    time_step_rank: d.chance(0.5) ? "auto" : d.int(1, 8),
    use_bias: d.chance(0.5),
    use_conv_bias: d.chance(0.6),
    layer_norm_epsilon: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
    residual_in_fp32: d.chance(0.5),
    tie_word_embeddings: d.chance(0.6),
  };
}

/**
 * A random Falcon-Mamba config.
 *
 * @example
 * ```ts
 * import { falconMamba } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * falconMamba(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function falconMamba(d: Dice): Record<string, unknown> {
  return { ...mamba(d), mixer_rms_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]) };
}

/**
 * A random Mamba-2 config.
 *
 * @example
 * ```ts
 * import { mamba2 } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * mamba2(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function mamba2(d: Dice): Record<string, unknown> {
  const c = common(d);
  const hidden = d.int(2, 16) * 4, expand = d.pick([1, 2, 3]);
  const inner = hidden * expand;
  const headDim = d.pick([2, 4, 8].filter((p) => inner % p === 0));
  const heads = inner / headDim;
  return {
    ...c,
    hidden_size: hidden,
    expand,
    head_dim: headDim,
    num_heads: heads,
    n_groups: d.pick([1, 2, 3, 4].filter((g) => heads % g === 0)),
    state_size: d.pick([1, 2, 4, 8, 16]),
    conv_kernel: d.pick([1, 2, 3, 4, 5]),
    chunk_size: d.pick([4, 8, 16, 256]),
    use_bias: d.chance(0.5),
    use_conv_bias: d.chance(0.6),
    layer_norm_epsilon: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
    residual_in_fp32: d.chance(0.5),
    tie_word_embeddings: d.chance(0.4),
    ...(d.chance(0.4)
      ? { time_step_limit: [d.pick([0.001, 0.01, 0.05]), d.pick([0.2, 1.5, 5.5])] }
      : {}),
  };
}

/** The `BambaMixer` fields (Bamba, Granite 4.0) of a model `hidden` wide. */
function bambaMixer(d: Dice, hidden: number): Record<string, unknown> {
  const expand = d.pick([1, 2]);
  const inner = hidden * expand;
  const mHeads = d.pick(divisors(inner).filter((h) => h <= 16 && inner / h <= 16));
  return {
    mamba_expand: expand,
    mamba_n_heads: mHeads,
    ...(d.chance(0.5) ? { mamba_d_head: inner / mHeads } : {}),
    mamba_n_groups: d.pick(divisors(mHeads).filter((g) => g <= 4)),
    mamba_d_state: d.pick([1, 2, 4, 8, 16]),
    mamba_d_conv: d.pick([2, 3, 4]),
    mamba_chunk_size: d.pick([4, 8, 256]),
    mamba_conv_bias: d.chance(0.6),
    mamba_proj_bias: d.chance(0.4),
    ...(d.chance(0.3)
      ? { time_step_limit: [d.pick([0.001, 0.01, 0.05]), d.pick([0.2, 1.5, 5.5])] }
      : {}),
  };
}

/**
 * A random Granite 4.0 hybrid config.
 *
 * @example
 * ```ts
 * import { graniteHybrid } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * graniteHybrid(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function graniteHybrid(d: Dice): Record<string, unknown> {
  const c = common(d);
  const heads = d.pick([1, 2, 4]);
  const hidden = heads * d.pick([4, 8, 12, 16]);
  const experts = d.pick([0, 0, 1, 3, 4, 6]);
  const names = d.chance(0.5) ? ["mamba", "attention"] : ["linear_attention", "full_attention"];
  const layers = c.num_hidden_layers as number;
  const ropeOn = d.chance(0.4);
  const rp = ropeOn ? rope(d) : undefined;
  const scaled = rp && !["default", "linear"].includes(rp.rope_type as string);
  return {
    ...c,
    hidden_size: hidden,
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    ...(scaled ? { head_dim: hidden / heads } : {}),
    layer_types: Array.from({ length: layers }, () => names[d.chance(0.6) ? 0 : 1]),
    intermediate_size: d.int(2, 24) * 2,
    shared_intermediate_size: d.int(2, 24) * 2,
    num_local_experts: experts,
    num_experts_per_tok: experts > 0 ? d.int(1, Math.min(experts, 3)) : 2,
    ...bambaMixer(d, hidden),
    attention_bias: d.chance(0.3),
    position_embedding_type: ropeOn ? "rope" : d.pick(["nope", null]),
    ...(rp ? { rope_parameters: rp, max_position_embeddings: d.pick([64, 512, 4096]) } : {}),
    embedding_multiplier: d.pick([1, 0.5, 2, 12]),
    residual_multiplier: d.pick([1, 0.22, 0.6]),
    attention_multiplier: d.pick([0.0078125, 0.1, 0.5, 1]),
    logits_scaling: d.pick([1, 2.5, 6, 16]),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

/**
 * A random Bamba config.
 *
 * @example
 * ```ts
 * import { bamba } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * bamba(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function bamba(d: Dice): Record<string, unknown> {
  const c = common(d);
  const heads = d.pick([1, 2, 4]);
  const headDim = d.pick([4, 8, 12, 16]);
  const hidden = heads * headDim;
  const layers = c.num_hidden_layers as number;
  const rp = rope(d);
  // A factor whose share of the head is even (transformers rotates int(d · factor)).
  const partial = d.pick([0.25, 0.5, 0.5, 1].filter((f) => (headDim * f) % 2 === 0));
  if (d.chance(0.7)) rp.partial_rotary_factor = partial;
  const scaled = !["default", "linear"].includes(rp.rope_type as string);
  return {
    ...c,
    hidden_size: hidden,
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    ...(scaled ? { head_dim: headDim } : {}),
    attn_layer_indices: Array.from({ length: layers }, (_, i) => i).filter(() => d.chance(0.4)),
    intermediate_size: d.int(2, 24) * 2,
    ...bambaMixer(d, hidden),
    attention_bias: d.chance(0.3),
    rope_parameters: rp,
    max_position_embeddings: d.pick([64, 512, 4096]),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

/**
 * A random Nemotron-H config.
 *
 * @example
 * ```ts
 * import { nemotronH } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * nemotronH(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function nemotronH(d: Dice): Record<string, unknown> {
  const c = common(d);
  const heads = d.pick([1, 2, 4]);
  const mHeads = d.pick([2, 4, 6, 8]);
  const layers = d.int(1, 6);
  // Half the configs hold Nemotron 3's routed-expert blocks too.
  const moe = d.chance(0.5);
  const kinds = ["linear_attention", "full_attention", "mlp", ...(moe ? ["moe", "moe"] : [])];
  const types = Array.from({ length: layers }, () => d.pick(kinds));
  const letter: Record<string, string> = {
    linear_attention: "M",
    full_attention: "*",
    mlp: "-",
    moe: "E",
  };
  const pattern = types.map((t) => letter[t]);
  const { num_hidden_layers: _, ...rest } = c;
  return {
    ...rest,
    hidden_size: d.pick([8, 16, 24, 32]),
    // Either form: the list transformers 5 writes, or the pattern of earlier configs.
    ...(d.chance(0.5)
      ? { layers_block_type: types }
      : { hybrid_override_pattern: pattern.join("") }),
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    head_dim: d.pick([4, 8, 12]),
    intermediate_size: d.int(2, 24) * 2,
    mamba_num_heads: mHeads,
    mamba_head_dim: d.pick([2, 4, 8]),
    n_groups: d.pick(divisors(mHeads).filter((g) => g <= 4)),
    ssm_state_size: d.pick([1, 2, 4, 8, 16]),
    conv_kernel: d.pick([2, 3, 4]),
    chunk_size: d.pick([4, 8, 256]),
    use_conv_bias: d.chance(0.6),
    use_bias: d.chance(0.4),
    time_step_min: d.pick([0.001, 0.01, 0.3]),
    time_step_max: d.pick([0.5, 1.5]),
    layer_norm_epsilon: d.pick([1e-6, 1e-5, 1e-3]),
    use_mamba_kernels: false,
    ...(moe ? nemotronExperts(d) : {}),
  };
}

/** NemotronHMoE's fields: DeepSeek-V3-style routing over relu² experts, a shared expert. */
function nemotronExperts(d: Dice): Record<string, unknown> {
  const E = d.pick([2, 4, 6, 8]);
  // Groups of at least two experts (a group scores by its two best).
  const groups = d.pick(divisors(E).filter((g) => E / g >= 2));
  const kept = d.int(1, groups);
  const k = d.int(1, Math.min(4, kept * (E / groups)));
  return {
    n_routed_experts: E,
    num_experts_per_tok: k,
    n_group: groups,
    topk_group: kept,
    moe_intermediate_size: d.int(1, 16) * 2,
    // 0: NemotronHMLP falls back to intermediate_size.
    moe_shared_expert_intermediate_size: d.pick([0, 8, 20]),
    routed_scaling_factor: d.pick([1, 2.5]),
    norm_topk_prob: d.chance(0.6),
    // Nemotron 3 Super's latent experts, now and then.
    ...(d.chance(0.3) ? { moe_latent_size: d.pick([4, 8, 12]) } : {}),
  };
}

/**
 * A random Falcon-H1 config: attention and a Mamba-2 (its width `mamba_d_ssm`
 * or by `mamba_expand`) in every layer, the gate and norm in each of its three
 * arrangements, biases, and μP multipliers away from 1.
 *
 * @example
 * ```ts
 * import { falconH1 } from "./transformers_configs_ssm.ts";
 * import { Dice } from "./transformers_configs_parts.ts";
 * falconH1(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function falconH1(d: Dice): Record<string, unknown> {
  const c = common(d);
  const heads = d.pick([1, 2, 4]);
  const headDim = d.pick([4, 8, 12, 16]);
  const hidden = heads * headDim;
  const mixer = bambaMixer(d, hidden);
  // Falcon-H1 names its Mamba width mamba_d_ssm (default 1024); null means mamba_expand × hidden.
  const inner = hidden * (mixer.mamba_expand as number);
  if (d.chance(0.5)) {
    delete mixer.mamba_expand;
    mixer.mamba_d_ssm = inner;
  } else mixer.mamba_d_ssm = null;
  // Never whole numbers: the config class's fields are typed float, and JSON writes 1.0 as 1.
  const m = () => d.pick([0.5, 0.8, 0.999, 1.25, 2.5]);
  const rms = d.chance(0.6);
  return {
    ...c,
    hidden_size: hidden,
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    ...(d.chance(0.4) ? { head_dim: headDim } : {}),
    intermediate_size: d.int(2, 24) * 2,
    ...mixer,
    mamba_rms_norm: rms,
    ...(rms ? { mamba_norm_before_gate: d.chance(0.5) } : {}),
    projectors_bias: d.chance(0.3),
    attention_bias: d.chance(0.3),
    mlp_bias: d.chance(0.3),
    embedding_multiplier: m(),
    lm_head_multiplier: m(),
    key_multiplier: m(),
    attention_in_multiplier: m(),
    attention_out_multiplier: m(),
    ssm_in_multiplier: m(),
    ssm_out_multiplier: m(),
    mlp_multipliers: [m(), m()],
    ssm_multipliers: [m(), m(), m(), m(), m()],
    rope_parameters: rope(d),
    max_position_embeddings: d.pick([64, 512, 4096]),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

/**
 * Qwen3-Next: Gated DeltaNet layers (key/value heads and sizes, conv width)
 * and gated attention layers (partial RoPE, per-head QK-norm, biases or none)
 * by `full_attention_interval` or `layer_types`, over Qwen2-MoE's experts with
 * a gated shared expert, dense layers by `decoder_sparse_step` /
 * `mlp_only_layers`.
 */
export function qwen3Next(d: Dice): Record<string, unknown> {
  const c = { ...common(d), ...attention(d, 0.6) };
  const layers = c.num_hidden_layers as number;
  const kHeads = d.pick([1, 2, 3]);
  const experts = d.int(1, 8);
  const out: Record<string, unknown> = {
    ...c,
    linear_num_key_heads: kHeads,
    linear_num_value_heads: kHeads * d.pick([1, 2, 3]),
    linear_key_head_dim: d.pick([2, 4, 5, 8]),
    linear_value_head_dim: d.pick([3, 4, 6, 8]),
    linear_conv_kernel_dim: d.pick([2, 3, 4]),
    intermediate_size: d.int(2, 16) * 2,
    num_experts: experts,
    num_experts_per_tok: d.int(1, Math.min(experts, 4)),
    moe_intermediate_size: d.int(2, 12) * 2,
    shared_expert_intermediate_size: d.int(1, 12) * 2,
    norm_topk_prob: d.chance(0.5),
    decoder_sparse_step: d.pick([1, 1, 2]),
    attention_bias: d.chance(0.3),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
  if (d.chance(0.5)) {
    out.layer_types = Array.from(
      { length: layers },
      () => d.pick(["linear_attention", "full_attention"]),
    );
  } else {
    out.full_attention_interval = d.pick([1, 2, 3, 4]);
  }
  if (d.chance(0.3)) out.mlp_only_layers = [d.int(0, layers - 1)];
  if (d.chance(0.6)) out.partial_rotary_factor = d.pick([0.25, 0.5, 1]);
  return out;
}

/**
 * Qwen3.5's language models: Qwen3-Next's layers with the DeltaNet's
 * projections split; experts in every layer (always renormalised) or, dense,
 * an MLP in every layer.
 */
export function qwen3_5(d: Dice, moe: boolean): Record<string, unknown> {
  const c = qwen3Next(d);
  for (const k of ["decoder_sparse_step", "mlp_only_layers", "norm_topk_prob"]) delete c[k];
  if (!moe) {
    for (const k of ["num_experts", "num_experts_per_tok", "moe_intermediate_size"]) delete c[k];
    delete c.shared_expert_intermediate_size;
  }
  return c;
}

/**
 * LFM2 and LFM2-MoE: short convolutions and attention by `layer_types` (LFM2:
 * sometimes `full_attn_idxs`), conv taps and biases, the dense MLP's width rule,
 * sigmoid + bias experts after `num_dense_layers`, scaled, renormalised or not.
 */
export function lfm2(d: Dice, moe: boolean): Record<string, unknown> {
  const c = { ...common(d), ...attention(d, 0) };
  const layers = c.num_hidden_layers as number;
  // Lfm2 has no head_dim: heads divide hidden_size.
  delete c.head_dim;
  const kinds = Array.from({ length: layers }, () => d.pick(["conv", "full_attention"]));
  const out: Record<string, unknown> = {
    ...c,
    conv_L_cache: d.pick([2, 3, 4]),
    conv_bias: d.chance(0.3),
    norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
    intermediate_size: d.int(4, 40),
  };
  if (moe || d.chance(0.6)) out.layer_types = kinds;
  else out.full_attn_idxs = kinds.flatMap((k, i) => (k === "conv" ? [] : [i]));
  if (moe) {
    const experts = d.int(1, 8);
    Object.assign(out, {
      num_experts: experts,
      num_experts_per_tok: d.int(1, Math.min(experts, 4)),
      moe_intermediate_size: d.int(2, 12) * 2,
      num_dense_layers: d.int(0, Math.min(2, layers)),
      norm_topk_prob: d.chance(0.6),
      // Never whole numbers: the field is typed float, and JSON writes 1.0 as 1.
      routed_scaling_factor: d.pick([0.5, 1.25, 2.5]),
    });
  } else {
    out.block_multiple_of = d.pick([1, 8, 32]);
    out.block_ffn_dim_multiplier = d.pick([1, 1.5, 0.75]);
    out.block_auto_adjust_ff_dim = d.chance(0.7);
  }
  return out;
}
