/**
 * DeepSeek-V2 (`DeepseekV2ForCausalLM`: deepseek-ai/DeepSeek-V2, -V2-Lite,
 * DeepSeek-Coder-V2): V3's multi-head latent attention (RoPE on complex, i.e.
 * adjacent, pairs) and its experts' frame with V2's router — softmax
 * probabilities, the top `num_experts_per_tok` (`topk_method` `"greedy"`) or
 * those within the `topk_group` of `n_group` groups with the best single
 * probability (`"group_limited_greedy"`), never renormalised (transformers'
 * V2 router ignores `norm_topk_prob`), times `routed_scaling_factor`; no
 * selection bias. The first `first_k_dense_replace` layers (default 0) are
 * dense.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import { baseFields, QWEN_MOE_LAYOUT, sigmoidMoeFields } from "./common.ts";
import { type ConfigReader, show } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";
import { mlaAttentionFields } from "./deepseek_v3.ts";

function deepseekV2Fields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "Kiln's DeepSeek-V2 MLPs have no biases");
  const method = c.str("topk_method", "greedy");
  if (method !== "greedy" && method !== "group_limited_greedy") {
    c.refuse(
      "topk_method",
      `transformers' DeepseekV2 routes by "greedy" or "group_limited_greedy", not ${show(method)}`,
    );
  }
  const limited = method === "group_limited_greedy";
  if (limited && (!c.has("n_group") || !c.has("topk_group"))) {
    throw new RangeError(
      `${c.file}: topk_method "group_limited_greedy" needs n_group and topk_group`,
    );
  }
  const base = baseFields(c);
  // group_limited_greedy reads the groups; greedy ignores them (every group kept).
  const ffn = sigmoidMoeFields(c, base.layers, {
    experts: 64,
    topK: 6,
    dense: 0,
    ff: 1407,
    scaling: 1,
    groups: 1,
    kept: 1,
    softmax: true,
    shared: 2,
    readGroups: limited,
  });
  return {
    architecture: "DeepseekV2ForCausalLM",
    ...act,
    ...base,
    intermediate: c.positive("intermediate_size", 11008),
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    attention: mlaAttentionFields(c, base.hidden, false),
    ...ffn,
    // Its checkpoints hold no multi-token-prediction layers.
    extraLayers: 0,
  };
}

/**
 * The DeepSeek-V2 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.DeepseekV2ForCausalLM.modelType; // "deepseek_v2"
 * ```
 */
export const deepseekV2: ArchitectureSpec = {
  architecture: "DeepseekV2ForCausalLM",
  modelType: "deepseek_v2",
  summary: "multi-head latent attention + softmax-routed experts (scaled, optionally " +
    "group-limited) beside shared experts; dense first layers",
  layout: { ...QWEN_MOE_LAYOUT, shared: { expert: "mlp.shared_experts", gate: "" } },
  parse: deepseekV2Fields,
};
