/**
 * The `glm4moe` model keys `kiln quantize` writes for a GLM-4.5 config beyond
 * the attention keys all attention architectures share, as llama.cpp's
 * converter (`Glm4MoeModel.set_gguf_parameters` on `TextModel`) writes them:
 * `.rope.dimension_count` (the rotated values of each head: head size ×
 * `partial_rotary_factor`), `.expert_feed_forward_length`,
 * `.expert_shared_count`, `.leading_dense_block_count`, `.expert_gating_func`
 * (sigmoid), `.expert_weights_scale` (`routed_scaling_factor`),
 * `.expert_weights_norm` (`norm_topk_prob`), `.expert_group_count` /
 * `_used_count` (`n_group`, `topk_group`) and `.nextn_predict_layers`.
 *
 * Two differences from the converter, on purpose: a config that keeps all of
 * several groups (which limits nothing) is written as one group kept of one,
 * as llama.cpp refuses `expert_group_used_count` ≥ `expert_group_count` > 1;
 * and Kiln writes the blocks the
 * model runs and no multi-token-prediction block, so `.nextn_predict_layers`
 * is 0 and `.block_count` is `num_hidden_layers` (the converter adds
 * `num_nextn_predict_layers` blocks, and a folder whose config counts MTP
 * layers it does not hold — transformers' own saves — then fails to load in
 * llama.cpp, which requires those blocks' tensors).
 *
 * A config llama.cpp's glm4moe cannot hold is refused: no routed experts
 * (llama.cpp asserts `expert_count` > 0).
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import type { GgufEntry } from "./value.ts";
import { GATING_SIGMOID } from "./arch_config_glm4_moe.ts";

type Put = (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) => void;

/**
 * Writes the GLM-4.5 keys of `cfg` (see the module notes) through `u32`,
 * `f32` and `put`.
 *
 * @example
 * ```ts ignore
 * glm4MoeKeys(cfg, u32, f32, put);
 * ```
 */
export function glm4MoeKeys(
  cfg: ModelConfig,
  u32: (key: string, v: number) => void,
  f32: (key: string, v: number) => void,
  put: Put,
): void {
  const moe = cfg.moe;
  if (!moe) {
    throw new TypeError(
      "config.json: GLM-4.5 without MoE layers (n_routed_experts 0, or first_k_dense_replace " +
        "≥ num_hidden_layers) has no GGUF form: llama.cpp's glm4moe needs expert_count > 0",
    );
  }
  const a = cfg.attention!;
  if (a.ropeFreqDim) {
    throw new TypeError(
      `config.json: a partial RoPE over an odd ${a.ropeFreqDim} values a head has no GGUF form: ` +
        "llama.cpp's rope.dimension_count rotates that many with frequencies over the same count",
    );
  }
  u32("rope.dimension_count", a.rotaryDim ?? a.headDim);
  u32("expert_feed_forward_length", moe.ff ?? cfg.intermediate);
  const shared = moe.sharedExpert ? moe.sharedExpert.ff / (moe.ff ?? cfg.intermediate) : 0;
  u32("expert_shared_count", shared);
  const dense = cfg.pattern.findIndex((p) => p.ffn === "moe");
  u32("leading_dense_block_count", dense);
  u32("expert_gating_func", GATING_SIGMOID);
  f32("expert_weights_scale", moe.routedScaling ?? 1);
  put("glm4moe.expert_weights_norm", "bool", moe.normTopk);
  // llama.cpp asserts fewer groups kept than groups: keeping all is written as one.
  u32("expert_group_count", moe.groups?.count ?? 1);
  u32("expert_group_used_count", moe.groups?.kept ?? 1);
  u32("nextn_predict_layers", 0);
}
