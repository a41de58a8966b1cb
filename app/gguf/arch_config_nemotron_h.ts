/**
 * The Hugging Face config of a `nemotron_h` or `nemotron_h_moe` GGUF file
 * (llama.cpp's Nemotron-H and Nemotron 3): each block's kind from the
 * per-layer keys as llama.cpp's loader reads them — attention where
 * `.attention.head_count_kv` > 0, a feed-forward block where
 * `.feed_forward_length` > 0 (routed experts in a `nemotron_h_moe` file, a
 * relu² MLP in a `nemotron_h` one), Mamba-2 where both are 0 — the Mamba-2
 * keys, and the experts' `.expert_*` keys (`expert_weights_norm`,
 * `expert_weights_scale`, `expert_group_count` / `expert_group_used_count`).
 * llama.cpp's scan has no Δ floor: the config's is 0 unless Kiln's own
 * `.ssm.time_step_min` (what transformers clamps Δ at in a prompt) says
 * otherwise.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import { attentionLayers, type Keys } from "./arch_keys.ts";

type Json = Record<string, unknown>;

/**
 * A Nemotron-H config from `k` (`L` blocks of width `H`) and the keys every
 * architecture shares (`common`).
 *
 * @example
 * ```ts ignore
 * const config = nemotronHConfig(k, 52, 2688, common, eps);
 * config.layers_block_type; // ["linear_attention", "moe", …]
 * ```
 */
export function nemotronHConfig(k: Keys, L: number, H: number, common: Json, eps: number): Json {
  const moe = k.arch === "nemotron_h_moe";
  const { attn, kv } = attentionLayers(k, L);
  const ffs = k.perLayer("feed_forward_length", L) ??
    Array(L).fill(k.num("feed_forward_length"));
  const types = Array.from(
    { length: L },
    (_, i) =>
      attn.includes(i) ? "full_attention" : ffs[i] > 0 ? (moe ? "moe" : "mlp") : "linear_attention",
  );
  const heads = k.num("attention.head_count");
  const inner = k.num("ssm.inner_size"), mHeads = k.num("ssm.time_step_rank");
  const mamba = types.indexOf("linear_attention");
  const dense = ffs.filter((f, i) => types[i] === "mlp" && f > 0);
  if (new Set(dense).size > 1) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("feed_forward_length"))} gives the MLP blocks ` +
        `different widths (${[...new Set(dense)].join(", ")}); Nemotron-H's are all equal`,
    );
  }
  const config: Json = {
    architectures: ["NemotronHForCausalLM"],
    model_type: "nemotron_h",
    ...common,
    layers_block_type: types,
    num_attention_heads: heads,
    num_key_value_heads: kv,
    // A file without attention blocks may say 0 heads.
    ...(heads > 0 ? { head_dim: k.opt("attention.key_length") ?? H / heads } : {}),
    intermediate_size: dense[0] ?? k.opt("expert_shared_feed_forward_length") ?? 0,
    mamba_num_heads: mHeads,
    mamba_head_dim: inner / mHeads,
    n_groups: k.num("ssm.group_count"),
    ssm_state_size: k.num("ssm.state_size"),
    conv_kernel: k.num("ssm.conv_kernel"),
    use_conv_bias: mamba >= 0 && k.has(`blk.${mamba}.ssm_conv1d.bias`),
    use_bias: false,
    layer_norm_epsilon: eps,
    // transformers' floor on Δ (a prompt's scan) is no llama.cpp key: Kiln writes its own.
    kiln_dt_floor: k.opt("ssm.time_step_min") ?? 0,
    // NemotronHForCausalLM ties nothing; llama.cpp falls back to token_embd.
    tie_word_embeddings: false,
  };
  if (!moe) return config;
  const latent = k.opt("moe_latent_size") ?? 0;
  const groups = k.opt("expert_group_count") || 1;
  return {
    ...config,
    n_routed_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
    moe_intermediate_size: k.num("expert_feed_forward_length"),
    moe_shared_expert_intermediate_size: k.num("expert_shared_feed_forward_length"),
    n_group: groups,
    topk_group: k.opt("expert_group_used_count") || groups,
    norm_topk_prob: k.m.optionalBool(k.key("expert_weights_norm")) ?? false,
    routed_scaling_factor: k.opt("expert_weights_scale") || 1,
    ...(latent > 0 ? { moe_latent_size: latent } : {}),
  };
}
