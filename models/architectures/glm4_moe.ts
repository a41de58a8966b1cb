/**
 * GLM-4.5 (`Glm4MoeForCausalLM`, zai-org/GLM-4.5 and -Air): grouped-query
 * attention with optional q/k/v biases (`attention_bias`; never on o_proj), an
 * optional QK-norm per head (`use_qk_norm`) and RoPE over each head's first
 * half (`partial_rotary_factor`, 0.5 unless given); the first
 * `first_k_dense_replace` layers have a dense SwiGLU MLP, the rest routed
 * experts chosen DeepSeek-V3's way — sigmoid affinities plus a selection bias
 * (`mlp.gate.e_score_correction_bias`), among the experts of the best
 * `topk_group` of `n_group` groups, the chosen affinities renormalised
 * (`norm_topk_prob`) and scaled by `routed_scaling_factor` — beside `n_shared_experts` always-on
 * experts in one SwiGLU (`mlp.shared_experts`). The multi-token-prediction
 * layers published checkpoints carry after the last layer
 * (`num_nextn_predict_layers`) are not read, as transformers skips them.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import { attentionFields, baseFields, QWEN_MOE_LAYOUT, sigmoidMoeFields } from "./common.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

function glm4MoeFields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  const base = baseFields(c);
  // GLM-4.5's groups: 1 of 1, which limits nothing.
  const ffn = sigmoidMoeFields(c, base.layers, {
    experts: 128,
    topK: 8,
    dense: 1,
    ff: 1408,
    scaling: 1,
    groups: 1,
    kept: 1,
  });
  return {
    architecture: "Glm4MoeForCausalLM",
    ...act,
    ...base,
    intermediate: c.positive("intermediate_size", 10944),
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    attention: attentionFields(c, base.hidden, {
      ropeTheta: 1e4,
      qkvBias: c.bool("attention_bias", false),
      outBias: false,
      ...(c.bool("use_qk_norm", false) ? { qkNorm: "head" as const } : {}),
      kvHeads: 8,
      // Glm4MoeConfig sets 0.5 where the config gives no factor.
      partialRotary: 0.5,
    }),
    ...ffn,
  };
}

/**
 * The GLM-4.5 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Glm4MoeForCausalLM.layout.shared?.expert; // "mlp.shared_experts"
 * ```
 */
export const glm4Moe: ArchitectureSpec = {
  architecture: "Glm4MoeForCausalLM",
  modelType: "glm4_moe",
  summary: "attention (GQA, partial RoPE, optional per-head QK-norm) + DeepSeek-style routed " +
    "experts (sigmoid, selection bias, scaling) beside shared experts; dense first layers",
  layout: { ...QWEN_MOE_LAYOUT, shared: { expert: "mlp.shared_experts", gate: "" } },
  parse: glm4MoeFields,
};
