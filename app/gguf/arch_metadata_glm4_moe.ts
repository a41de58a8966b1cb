/**
 * The `glm4moe` model keys `kiln quantize` writes for a GLM-4.5 config beyond
 * the attention keys all attention architectures share, as llama.cpp's
 * converter (`Glm4MoeModel.set_gguf_parameters` on `TextModel`) writes them:
 * `.rope.dimension_count` (the rotated values of each head: head size ×
 * `partial_rotary_factor`), `.expert_feed_forward_length`,
 * `.expert_shared_count`, `.leading_dense_block_count`, `.expert_gating_func`
 * (sigmoid), `.expert_weights_scale` (`routed_scaling_factor`),
 * `.expert_weights_norm` (true), `.expert_group_count` / `_used_count`
 * (`n_group`, `topk_group`; llama.cpp's glm4moe does not read them) and
 * `.nextn_predict_layers`.
 *
 * One difference from the converter, on purpose: Kiln writes the blocks the
 * model runs and no multi-token-prediction block, so `.nextn_predict_layers`
 * is 0 and `.block_count` is `num_hidden_layers` (the converter adds
 * `num_nextn_predict_layers` blocks, and a folder whose config counts MTP
 * layers it does not hold — transformers' own saves — then fails to load in
 * llama.cpp, which requires those blocks' tensors).
 *
 * A config llama.cpp's glm4moe cannot hold is refused: no routed experts
 * (llama.cpp asserts `expert_count` > 0) or group-limited routing that limits
 * anything (llama.cpp's glm4moe routes over all experts).
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
 * glm4MoeKeys(cfg, config, u32, f32, put);
 * ```
 */
export function glm4MoeKeys(
  cfg: ModelConfig,
  config: Record<string, unknown>,
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
  u32("rope.dimension_count", a.rotaryDim ?? a.headDim);
  u32("expert_feed_forward_length", moe.ff ?? cfg.intermediate);
  const shared = moe.sharedExpert ? moe.sharedExpert.ff / (moe.ff ?? cfg.intermediate) : 0;
  u32("expert_shared_count", shared);
  const dense = cfg.pattern.findIndex((p) => p.ffn === "moe");
  u32("leading_dense_block_count", dense);
  u32("expert_gating_func", GATING_SIGMOID);
  f32("expert_weights_scale", moe.routedScaling ?? 1);
  put("glm4moe.expert_weights_norm", "bool", true);
  const int = (v: unknown) => (typeof v === "number" ? v : 1);
  u32("expert_group_count", int(config.n_group));
  u32("expert_group_used_count", int(config.topk_group));
  u32("nextn_predict_layers", 0);
}
