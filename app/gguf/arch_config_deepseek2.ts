/**
 * The DeepSeek half of a `deepseek2` GGUF file's Hugging Face config
 * (llama.cpp's `LLM_ARCH_DEEPSEEK2`, written by its converter for
 * `DeepseekV2ForCausalLM` and `DeepseekV3ForCausalLM`), as llama.cpp's loader
 * (`load_hparams`, case LLM_ARCH_DEEPSEEK2) and graph (`src/models/deepseek2.cpp`)
 * read it:
 *
 * - the attention is latent (MLA): `.attention.kv_lora_rank`, the query
 *   bottleneck `.attention.q_lora_rank` when the file holds `attn_q_a` (llama.cpp
 *   decides by the block count, which misreads small models; the tensors say it),
 *   `.rope.dimension_count` (`qk_rope_head_dim`), `.attention.key_length_mla` and
 *   `.value_length_mla` (the per-head query/key and value sizes; older files:
 *   `.key_length` / `.value_length`, with one `attn_kv_b` tensor);
 * - routing: `.expert_gating_func` sigmoid (2, with `exp_probs_b`) is
 *   DeepSeek-V3's router, softmax (1, or absent, as llama.cpp reads old V2 files)
 *   V2's; `.expert_weights_norm` (absent: false), `.expert_weights_scale`
 *   (absent: 1), `.expert_group_count` / `_used_count` (V3 only: llama.cpp scores
 *   a group by its two best scores, transformers' V2 by its best, so a softmax
 *   file with groups is refused), `.leading_dense_block_count`,
 *   `.expert_shared_count`;
 * - yarn: `.rope.scaling.yarn_beta_fast` / `_slow` are its β bounds;
 *   `.rope.scaling.yarn_log_multiplier` is the converter's
 *   0.1 · `mscale_all_dim` (llama.cpp divides it back), so `mscale` and
 *   `mscale_all_dim` are that over 0.1 (DeepSeek's configs give both equal).
 *
 * RoPE pairs adjacent values (llama.cpp's NORM rope type), as transformers'
 * `rope_interleave` does.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import type { Keys } from "./arch_keys.ts";

type Json = Record<string, unknown>;

/** llama.cpp's `LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID`. */
const SIGMOID = 2;

/**
 * The DeepSeek fields of a `deepseek2` file's config.json (see the module
 * notes), beside `attention` (heads and RoPE as the other attention families
 * read them).
 *
 * @example
 * ```ts ignore
 * const config = deepseek2Config(keys, attention);
 * config.architectures; // ["DeepseekV3ForCausalLM"]
 * ```
 */
export function deepseek2Config(k: Keys, attention: Json): Json {
  const path = k.m.path;
  const gating = k.opt("expert_gating_func") ?? 0;
  if (gating !== 0 && gating !== 1 && gating !== SIGMOID) {
    throw new TypeError(
      `${path}: metadata ${quote(k.key("expert_gating_func"))} is ${gating}; Kiln's DeepSeek ` +
        "routes by softmax (1) or sigmoid (2)",
    );
  }
  const v3 = gating === SIGMOID;
  const groups = k.opt("expert_group_count") ?? 0;
  const used = k.opt("expert_group_used_count") ?? 0;
  const norm = k.m.optionalBool(k.key("expert_weights_norm")) ?? false;
  if (!v3 && (groups > 1 || norm)) {
    throw new TypeError(
      `${path}: softmax routing with ${
        groups > 1 ? `${quote(k.key("expert_group_count"))} ${groups}` : "renormalised weights"
      } is not DeepSeek-V2's (transformers scores a group by its best probability and never ` +
        "renormalises); Kiln does not read it",
    );
  }
  if (v3 && !k.has("blk.0.exp_probs_b.bias") && !k.has(`blk.${denseBlocks(k)}.exp_probs_b.bias`)) {
    throw new RangeError(
      `${path}: sigmoid routing (DeepSeek-V3) without the selection bias tensor "exp_probs_b"`,
    );
  }
  const rope = k.num("rope.dimension_count");
  const qk = k.opt("attention.key_length_mla") ?? k.num("attention.key_length");
  const v = k.opt("attention.value_length_mla") ?? k.num("attention.value_length");
  if (!(qk > rope)) {
    throw new RangeError(
      `${path}: the query/key head size ${qk} leaves no values without RoPE (` +
        `${quote(k.key("rope.dimension_count"))} is ${rope})`,
    );
  }
  const scale = k.opt("expert_weights_scale");
  const logMul = k.opt("rope.scaling.yarn_log_multiplier");
  const scaling = attention.rope_scaling as Json | undefined;
  return {
    ...attention,
    architectures: [v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"],
    model_type: v3 ? "deepseek_v3" : "deepseek_v2",
    // MLA expands keys and values for every query head.
    num_key_value_heads: attention.num_attention_heads,
    head_dim: rope,
    q_lora_rank: k.has("blk.0.attn_q_a.weight") ? k.num("attention.q_lora_rank") : null,
    kv_lora_rank: k.num("attention.kv_lora_rank"),
    qk_rope_head_dim: rope,
    qk_nope_head_dim: qk - rope,
    v_head_dim: v,
    ...(v3 ? { rope_interleave: true } : {}),
    ...(scaling ? { rope_scaling: yarnFields(k, scaling, logMul) } : {}),
    first_k_dense_replace: denseBlocks(k),
    intermediate_size: k.opt("feed_forward_length") ?? k.num("expert_feed_forward_length"),
    moe_intermediate_size: k.num("expert_feed_forward_length"),
    n_routed_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
    n_shared_experts: k.num("expert_shared_count"),
    routed_scaling_factor: scale === undefined || scale === 0 ? 1 : scale,
    norm_topk_prob: norm,
    ...(v3
      ? { n_group: groups > 1 ? groups : 1, topk_group: groups > 1 ? used : 1 }
      : { topk_method: "greedy" }),
    num_nextn_predict_layers: k.opt("nextn_predict_layers") ?? 0,
    attention_bias: false,
  };
}

/** `.leading_dense_block_count` (absent: 0). */
function denseBlocks(k: Keys): number {
  return k.opt("leading_dense_block_count") ?? 0;
}

/** yarn's β bounds (llama.cpp's deepseek2 reads them) and mscale from the log multiplier. */
function yarnFields(k: Keys, scaling: Json, logMul: number | undefined): Json {
  const fast = k.opt("rope.scaling.yarn_beta_fast"), slow = k.opt("rope.scaling.yarn_beta_slow");
  return {
    ...scaling,
    ...(fast !== undefined ? { beta_fast: fast } : {}),
    ...(slow !== undefined ? { beta_slow: slow } : {}),
    ...(logMul !== undefined ? { mscale: logMul / 0.1, mscale_all_dim: logMul / 0.1 } : {}),
  };
}
