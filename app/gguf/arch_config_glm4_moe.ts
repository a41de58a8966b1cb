/**
 * The GLM-4.5-specific half of a `glm4moe` GGUF file's Hugging Face config
 * (llama.cpp's `LLM_ARCH_GLM4_MOE`), as llama.cpp's loader (`load_hparams`,
 * case LLM_ARCH_GLM4_MOE) and graph (`src/models/glm4-moe.cpp`) read it; heads,
 * head size and RoPE base and scaling are read as for the other attention
 * architectures (`arch_config.ts`):
 *
 * - `.block_count` counts the multi-token-prediction blocks too;
 *   `.nextn_predict_layers` (default 0) says how many of the last ones are
 *   those, which llama.cpp loads and never runs — transformers'
 *   `num_hidden_layers` is the rest, its `num_nextn_predict_layers` this count
 *   (Kiln skips those blocks' tensors, as transformers skips the layers);
 * - `.rope.dimension_count`: the rotated share of each head
 *   (`partial_rotary_factor` = it / head size; llama.cpp's default, absent, is
 *   the whole head); `.rope.dimension_sections` (GLM-4.5V's M-RoPE) is refused;
 * - `.expert_count`, `.expert_used_count`, `.expert_feed_forward_length`,
 *   `.expert_shared_count` (all required by llama.cpp), `.feed_forward_length`
 *   (the dense layers' width), `.leading_dense_block_count` (default 0);
 * - routing: `.expert_gating_func` must be sigmoid (2; absent or 0 is sigmoid,
 *   llama.cpp's default for glm4moe), `.expert_weights_norm` is
 *   `norm_topk_prob` (absent is false, as in llama.cpp),
 *   `.expert_weights_scale` is `routed_scaling_factor` (absent or 0: 1, as
 *   `build_moe_ffn` skips the scale), `.expert_group_count` and
 *   `.expert_group_used_count` are `n_group` and `topk_group` (every
 *   architecture's `load_hparams` reads them and `build_moe_ffn` limits the
 *   routing when there is more than one group; llama.cpp refuses a file that
 *   keeps all its groups, Kiln reads it as no limit);
 * - `attention_bias` and `use_qk_norm` from the tensors of block 0
 *   (`attn_q.bias`, `attn_q_norm.weight`), both optional in llama.cpp.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import type { Keys } from "./arch_keys.ts";

type Json = Record<string, unknown>;

/**
 * llama.cpp's `LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID`, the `.expert_gating_func`
 * value of GLM-4.5's routing.
 *
 * @example
 * ```ts
 * import { GATING_SIGMOID } from "./arch_config_glm4_moe.ts";
 * GATING_SIGMOID; // 2
 * ```
 */
export const GATING_SIGMOID = 2;

/**
 * The GLM-4.5 fields of a `glm4moe` file's config.json (see the module
 * notes), given its block count `B` and the head size `headDim`.
 *
 * @example
 * ```ts ignore
 * const config = glm4MoeConfig(keys, 47, 128);
 * config.num_hidden_layers; // 46 (one block is GLM-4.5-Air's MTP layer)
 * ```
 */
export function glm4MoeConfig(k: Keys, B: number, headDim: number): Json {
  const nextn = k.opt("nextn_predict_layers") ?? 0;
  if (!Number.isInteger(nextn) || nextn < 0 || nextn >= B) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("nextn_predict_layers"))} is ${nextn}, expected ` +
        `fewer than the ${B} blocks (${quote(k.key("block_count"))})`,
    );
  }
  if (k.m.has(k.key("rope.dimension_sections"))) {
    throw new TypeError(
      `${k.m.path}: metadata ${quote(k.key("rope.dimension_sections"))} (M-RoPE, GLM-4.5V) ` +
        "is not supported; Kiln reads text-only GLM-4.5 files",
    );
  }
  const v = k.opt("attention.value_length");
  if (v !== undefined && v !== headDim) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("attention.value_length"))} is ${v} but the key ` +
        `size is ${headDim}; llama.cpp's glm4moe needs them equal`,
    );
  }
  const rot = k.opt("rope.dimension_count") ?? headDim;
  if (!Number.isInteger(rot) || rot < 2 || rot % 2 !== 0 || rot > headDim) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("rope.dimension_count"))} is ${rot}, expected an ` +
        `even number of rotated values from 2 to the head size ${headDim}`,
    );
  }
  requireSigmoidGating(k, "Kiln's GLM-4.5");
  const norm = k.m.optionalBool(k.key("expert_weights_norm")) ?? false;
  const scale = k.opt("expert_weights_scale");
  const layers = B - nextn;
  const experts = k.num("expert_count");
  const ff = k.num("expert_feed_forward_length");
  const dense = k.opt("leading_dense_block_count") ?? 0;
  return {
    architectures: ["Glm4MoeForCausalLM"],
    model_type: "glm4_moe",
    num_hidden_layers: layers,
    num_nextn_predict_layers: nextn,
    head_dim: headDim,
    partial_rotary_factor: rot / headDim,
    // Only the dense layers read it; llama.cpp needs it only when there are some.
    intermediate_size: dense > 0
      ? k.num("feed_forward_length")
      : k.opt("feed_forward_length") ?? ff,
    moe_intermediate_size: ff,
    n_routed_experts: experts,
    num_experts_per_tok: k.num("expert_used_count"),
    n_shared_experts: k.num("expert_shared_count"),
    first_k_dense_replace: dense,
    ...expertGroups(k),
    norm_topk_prob: norm,
    routed_scaling_factor: scale === undefined || scale === 0 ? 1 : scale,
    attention_bias: k.has("blk.0.attn_q.bias"),
    use_qk_norm: k.has("blk.0.attn_q_norm.weight"),
  };
}

/**
 * `n_group` and `topk_group` from `.expert_group_count` / `_used_count`, as
 * every architecture's `load_hparams` reads them: group-limited routing only
 * with more than one group (absent or one: no limit).
 *
 * @example
 * ```ts ignore
 * expertGroups(keys); // { n_group: 2, topk_group: 1 }
 * ```
 */
export function expertGroups(k: Keys): { n_group: number; topk_group: number } {
  const groups = k.opt("expert_group_count") ?? 0;
  const used = k.opt("expert_group_used_count") ?? 0;
  if (groups > 1 && !(used >= 1 && used <= groups)) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("expert_group_used_count"))} is ${used}, expected ` +
        `1 to the ${groups} groups of ${quote(k.key("expert_group_count"))}`,
    );
  }
  return groups > 1 ? { n_group: groups, topk_group: used } : { n_group: 1, topk_group: 1 };
}

/**
 * Refuses an `.expert_gating_func` other than sigmoid (absent or 0 read as
 * sigmoid: `family`'s only routing) for a family routed by sigmoid.
 *
 * @example
 * ```ts ignore
 * requireSigmoidGating(keys, "dots.llm1");
 * ```
 */
export function requireSigmoidGating(k: Keys, family: string): void {
  const gating = k.opt("expert_gating_func") ?? 0;
  if (gating !== 0 && gating !== GATING_SIGMOID) {
    throw new TypeError(
      `${k.m.path}: metadata ${quote(k.key("expert_gating_func"))} is ${gating}; ${family} ` +
        `routes by sigmoid (${GATING_SIGMOID})`,
    );
  }
}
