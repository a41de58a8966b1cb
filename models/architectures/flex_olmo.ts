/**
 * FlexOlmo (`FlexOlmoForCausalLM`, allenai/FlexOlmo-7x7B-1T): OLMo 2's decoder —
 * RMSNorms after each sublayer instead of before (`post_attention_layernorm` on
 * the attention's output, `post_feedforward_layernorm` on the experts'), a
 * QK-norm over the whole q and k projections before RoPE, optional biases
 * (`attention_bias`) — with OLMoE's routed SwiGLU experts in every layer:
 * softmax top-k, renormalised only with `norm_topk_prob`.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  moeFields,
  paddingIdxField,
  QWEN_MOE_LAYOUT,
  uniformLayers,
} from "./common.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The FlexOlmo spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.FlexOlmoForCausalLM.layout.ffnNorm; // "post_feedforward_layernorm"
 * ```
 */
export const flexOlmo: ArchitectureSpec = {
  architecture: "FlexOlmoForCausalLM",
  modelType: "flex_olmo",
  summary: "OLMo 2's post-norm decoder (attention with QK-norm over whole projections) + " +
    "routed SwiGLU MoE in every layer",
  layout: {
    ...QWEN_MOE_LAYOUT,
    mixerNorm: "post_attention_layernorm",
    ffnNorm: "post_feedforward_layernorm",
  },

  parse(c): ModelConfig {
    const act = c.hiddenAct();
    c.absent("mlp_bias", "its experts have no biases");
    c.absent("clip_qkv", "FlexOlmo does not clamp q, k and v");
    // FlexOlmoConfig's token id defaults.
    const base = baseFields(c, { eos: 100257 });
    const bias = c.bool("attention_bias", false);
    return {
      architecture: "FlexOlmoForCausalLM",
      ...act,
      ...base,
      paddingIdx: paddingIdxField(c, base.vocabSize, 100277),
      intermediate: c.int("intermediate_size", 11008),
      normEps: c.nonNegative("rms_norm_eps", 1e-6),
      tieEmbeddings: c.bool("tie_word_embeddings", false),
      pattern: uniformLayers(base.layers, "attention", "moe"),
      postNorm: true,
      attention: attentionFields(c, base.hidden, {
        ropeTheta: 5e5,
        qkvBias: bias,
        outBias: bias,
        qkNorm: true,
      }),
      moe: moeFields(c, "num_experts", {
        normTopk: c.bool("norm_topk_prob", false),
        experts: 7,
        topK: 5,
        auxLossCoef: 0.01,
      }),
    };
  },
};
