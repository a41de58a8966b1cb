/**
 * Qwen3-MoE (`Qwen3MoeForCausalLM`, e.g. Qwen3-30B-A3B): grouped-query
 * attention with RoPE and a QK-norm per head (RMSNorm over each head's
 * `head_dim`, before RoPE), optional biases on all four projections
 * (`attention_bias`), and a routed SwiGLU MoE without a shared expert (top-k
 * renormalised only with `norm_topk_prob`). Layer i is sparse iff it is not in
 * `mlp_only_layers` and (i + 1) % decoder_sparse_step == 0, else a dense
 * SwiGLU MLP of `intermediate_size`; with `use_sliding_window` every layer
 * attends within `sliding_window` (transformers 5's Qwen3MoeModel).
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  moeFields,
  paddingIdxField,
  QWEN_MOE_LAYOUT,
} from "./common.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Qwen3-MoE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen3MoeForCausalLM.layout.moe; // "mlp"
 * ```
 */
export const qwen3Moe: ArchitectureSpec = {
  architecture: "Qwen3MoeForCausalLM",
  modelType: "qwen3_moe",
  summary: "attention (GQA, RoPE, per-head QK-norm) + routed SwiGLU MoE; dense MLP layers " +
    "by decoder_sparse_step / mlp_only_layers",
  layout: QWEN_MOE_LAYOUT,

  parse(c): ModelConfig {
    const act = c.hiddenAct();
    c.absent("mlp_bias", "its MLPs have no biases");
    c.absent("attn_logit_softcapping", "attention logits are not soft-capped");
    c.absent("final_logit_softcapping", "logits are not soft-capped");
    const base = baseFields(c);
    // Qwen3MoeConfig maps num_experts onto num_local_experts (its attribute_map).
    const expertsField = !c.has("num_experts") && c.has("num_local_experts")
      ? "num_local_experts"
      : "num_experts";
    const experts = c.int(expertsField, 128);
    const step = c.positive("decoder_sparse_step", 1);
    const mlpOnly = new Set(c.intList("mlp_only_layers"));
    // Qwen3MoeConfig keeps sliding_window (default 4096) only with use_sliding_window,
    // and the model then slides every layer; an explicit null means none.
    const window = !c.bool("use_sliding_window", false)
      ? 0
      : Object.hasOwn(c.json, "sliding_window")
      ? (c.has("sliding_window") ? c.int("sliding_window") : 0)
      : 4096;
    const pattern: LayerSpec[] = Array.from({ length: base.layers }, (_, i) => ({
      mixer: "attention",
      ffn: !mlpOnly.has(i) && experts > 0 && (i + 1) % step === 0 ? "moe" : "mlp",
    }));
    const bias = c.bool("attention_bias", false);
    return {
      architecture: "Qwen3MoeForCausalLM",
      ...act,
      ...base,
      paddingIdx: paddingIdxField(c, base.vocabSize),
      intermediate: c.int("intermediate_size", 6144),
      normEps: c.nonNegative("rms_norm_eps", 1e-6),
      tieEmbeddings: c.bool("tie_word_embeddings", false),
      pattern,
      attention: attentionFields(c, base.hidden, {
        ropeTheta: 1e4,
        slidingWindow: window,
        qkvBias: bias,
        outBias: bias,
        qkNorm: "head",
        kvHeads: 4,
      }),
      moe: pattern.some((p) => p.ffn === "moe")
        ? {
          ...moeFields(c, expertsField, {
            normTopk: c.bool("norm_topk_prob", false),
            experts: 128,
            topK: 8,
          }),
          ff: c.positive("moe_intermediate_size", 768),
        }
        : undefined,
    };
  },
};
