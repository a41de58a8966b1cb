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

import type { LayerSpec, ModelConfig } from "../config.ts";
import { attentionFields, baseFields, moeFields, QWEN_MOE_LAYOUT } from "./common.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

function glm4MoeFields(c: ConfigReader): ModelConfig {
  c.silu();
  c.absent("mlp_bias", "its MLPs have no biases");
  const base = baseFields(c);
  // Glm4MoeConfig maps num_local_experts onto n_routed_experts (its attribute_map).
  const expertsField = !c.has("n_routed_experts") && c.has("num_local_experts")
    ? "num_local_experts"
    : "n_routed_experts";
  const experts = c.int(expertsField, 128);
  const dense = c.int("first_k_dense_replace", 1);
  const pattern: LayerSpec[] = Array.from({ length: base.layers }, (_, i) => ({
    mixer: "attention",
    ffn: i >= dense && experts > 0 ? "moe" : "mlp",
  }));
  // Group-limited routing keeps the experts of the best topk_group of n_group groups;
  // with every group kept (GLM-4.5's 1 of 1) it limits nothing.
  const groups = c.positive("n_group", 1), kept = c.positive("topk_group", 1);
  const normTopk = c.bool("norm_topk_prob", true);
  const ff = c.positive("moe_intermediate_size", 1408);
  const shared = c.int("n_shared_experts", 1);
  return {
    architecture: "Glm4MoeForCausalLM",
    ...base,
    intermediate: c.positive("intermediate_size", 10944),
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern,
    attention: attentionFields(c, base.hidden, {
      ropeTheta: 1e4,
      qkvBias: c.bool("attention_bias", false),
      outBias: false,
      ...(c.bool("use_qk_norm", false) ? { qkNorm: "head" as const } : {}),
      kvHeads: 8,
      // Glm4MoeConfig sets 0.5 where the config gives no factor.
      partialRotary: 0.5,
    }),
    moe: pattern.some((p) => p.ffn === "moe")
      ? {
        // Balanced by its selection bias, not a loss: transformers adds none.
        ...moeFields(c, expertsField, { normTopk, experts: 128, topK: 8, auxLossCoef: 0 }),
        router: "sigmoid_bias",
        routedScaling: c.num("routed_scaling_factor", 1),
        ...groupLimit(c, experts, groups, kept),
        ff,
        ...(shared > 0 ? { sharedExpert: { ff: ff * shared, gated: false } } : {}),
      }
      : undefined,
    extraLayers: c.int("num_nextn_predict_layers", c.int("num_mtp_layers", 1)),
  };
}

/**
 * `n_group` / `topk_group` checked against the experts and `num_experts_per_tok`:
 * the `groups` field of the MoE config, absent when every group is kept.
 */
function groupLimit(
  c: ConfigReader,
  experts: number,
  groups: number,
  kept: number,
): { groups?: { count: number; kept: number } } {
  if (kept > groups) {
    throw new RangeError(`${c.file}: field "topk_group" (${kept}) exceeds "n_group" (${groups})`);
  }
  if (kept === groups) return {};
  if (experts % groups !== 0 || experts / groups < 2) {
    throw new RangeError(
      `${c.file}: field "n_group" (${groups}) must split the ${experts} experts into equal ` +
        "groups of at least 2 (a group is scored by its two best experts)",
    );
  }
  const topK = c.int("num_experts_per_tok", 8);
  if (topK > kept * (experts / groups)) {
    throw new RangeError(
      `${c.file}: field "num_experts_per_tok" (${topK}) exceeds the ${
        kept * (experts / groups)
      } experts of the ${kept} groups kept ("topk_group")`,
    );
  }
  return { groups: { count: groups, kept } };
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
