/**
 * The Hugging Face config of a `granitehybrid` (Granite 4.0) or `granite`
 * (Granite 3 dense) GGUF file: see `arch_config.ts` for the keys.
 *
 * @module
 */

import { attentionLayers, type Keys } from "./arch_keys.ts";

type Json = Record<string, unknown>;

/**
 * `granitehybrid`: a Granite 4.0 hybrid (and `granite`, Granite 3's dense
 * models, as one of attention layers only). The gated norm spans `ssm.group_count`
 * groups, as llama.cpp computes it, unless Kiln's `ssm.norm_group_count` says
 * otherwise.
 *
 * @example
 * ```ts ignore
 * const config = graniteConfig(keys, 40, 1536, false);
 * ```
 */
export function graniteConfig(k: Keys, L: number, H: number, rope: boolean): Json {
  const { attn, kv } = attentionLayers(k, L);
  const heads = k.num("attention.head_count");
  const experts = k.opt("expert_count") ?? 0;
  const ff = k.num("feed_forward_length");
  const nonZero = (s: string) => k.opt(s) || undefined;
  const headDim = k.opt("attention.key_length") ?? H / heads;
  return {
    architectures: ["GraniteMoeHybridForCausalLM"],
    model_type: "granitemoehybrid",
    layer_types: Array.from({ length: L }, (_, i) => (attn.includes(i) ? "attention" : "mamba")),
    num_attention_heads: heads,
    num_key_value_heads: kv,
    ...(k.opt("attention.key_length") !== undefined ? { head_dim: headDim } : {}),
    attention_bias: attn.length > 0 && k.has(`blk.${attn[0]}.attn_q.bias`),
    position_embedding_type: rope ? "rope" : "nope",
    attention_multiplier: nonZero("attention.scale") ?? 1 / Math.sqrt(headDim),
    embedding_multiplier: nonZero("embedding_scale") ?? 1,
    residual_multiplier: nonZero("residual_scale") ?? 1,
    logits_scaling: nonZero("logit_scale") ?? 1,
    num_local_experts: experts,
    num_experts_per_tok: k.opt("expert_used_count") ?? 2,
    intermediate_size: ff,
    shared_intermediate_size: experts > 0 ? k.opt("expert_shared_feed_forward_length") ?? ff : ff,
    // A `granite` file (Granite 3's dense models) has no SSM layer, and needs no SSM keys.
    ...(attn.length < L ? graniteMixerConfig(k, L, H, attn) : {}),
  };
}

/** The Mamba-2 fields of a `granitehybrid` file (`ssm.*`; biases from the tensors present). */
function graniteMixerConfig(k: Keys, L: number, H: number, attn: number[]): Json {
  const inner = k.num("ssm.inner_size"), mHeads = k.num("ssm.time_step_rank");
  const groups = k.num("ssm.group_count");
  const mamba = Array.from({ length: L }, (_, i) => i).find((i) => !attn.includes(i)) ?? 0;
  const limit = k.m.optionalArray(k.key("ssm.time_step_limit"))?.values;
  return {
    mamba_n_heads: mHeads,
    mamba_d_head: inner / mHeads,
    mamba_n_groups: groups,
    mamba_d_state: k.num("ssm.state_size"),
    mamba_d_conv: k.num("ssm.conv_kernel"),
    mamba_expand: inner / H,
    mamba_conv_bias: k.has(`blk.${mamba}.ssm_conv1d.bias`),
    mamba_proj_bias: k.has(`blk.${mamba}.ssm_in.bias`),
    kiln_norm_groups: k.opt("ssm.norm_group_count") ?? groups,
    ...(limit ? { time_step_limit: limit } : {}),
  };
}

/**
 * `granitemoe`: Granite 3's MoE models, as llama.cpp's converter writes them
 * (`GraniteMoeModel`: `feed_forward_length` the experts' width, the fused
 * `input_linear` split into gate and up stacks; with
 * `expert_shared_feed_forward_length` a GraniteMoeShared's shared MLP). Heads
 * and RoPE come with `attention` (read as for llama).
 *
 * @example
 * ```ts ignore
 * const config = graniteMoeConfig(keys, attention);
 * config.architectures; // ["GraniteMoeForCausalLM"]
 * ```
 */
export function graniteMoeConfig(k: Keys, attention: Json): Json {
  const heads = attention.num_attention_heads as number;
  const headDim = (attention.head_dim as number | undefined) ??
    k.num("embedding_length") / heads;
  const nonZero = (s: string) => k.opt(s) || undefined;
  const shared = k.opt("expert_shared_feed_forward_length") ?? 0;
  return {
    ...attention,
    architectures: [shared > 0 ? "GraniteMoeSharedForCausalLM" : "GraniteMoeForCausalLM"],
    model_type: shared > 0 ? "granitemoeshared" : "granitemoe",
    attention_bias: k.has("blk.0.attn_q.bias"),
    attention_multiplier: nonZero("attention.scale") ?? 1 / Math.sqrt(headDim),
    embedding_multiplier: nonZero("embedding_scale") ?? 1,
    residual_multiplier: nonZero("residual_scale") ?? 1,
    logits_scaling: nonZero("logit_scale") ?? 1,
    num_local_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
    intermediate_size: k.num("feed_forward_length"),
    ...(shared > 0 ? { shared_intermediate_size: shared } : {}),
  };
}
