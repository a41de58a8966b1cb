/**
 * Granite 3 MoE models (`GraniteMoeForCausalLM`, e.g.
 * ibm-granite/granite-3.1-3b-a800m; `GraniteMoeSharedForCausalLM` with a
 * shared SwiGLU MLP beside the experts when `shared_intermediate_size` > 0):
 * attention with RoPE in every layer, then routed experts (softmax over the
 * top-k logits: the top-k probabilities renormalised) of width
 * `intermediate_size`; the μP constants of the Granite hybrids scale the
 * embeddings, each residual branch, q·k and the logits. Checkpoint names,
 * fused `input_linear` tensors and all, are the hybrids'.
 *
 * @module
 */

import type { Architecture, LayerSpec, ModelConfig } from "../config.ts";
import { attentionFields, baseFields, moeFields, paddingIdxField } from "./common.ts";
import { GRANITE_LAYOUT, graniteFused, nonZero } from "./granite_hybrid.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

function graniteMoeFields(c: ConfigReader, architecture: Architecture): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  const base = baseFields(c, { bos: 1, eos: 2 });
  const pattern: LayerSpec[] = Array.from({ length: base.layers }, () => ({
    mixer: "attention",
    ffn: "moe",
  }));
  const ff = c.positive("intermediate_size", 11008);
  const shared = architecture === "GraniteMoeSharedForCausalLM"
    ? c.int("shared_intermediate_size", 0)
    : 0;
  const bias = c.bool("attention_bias", false);
  const attention = attentionFields(c, base.hidden, {
    ropeTheta: 1e4,
    qkvBias: bias,
    outBias: bias,
  });
  return {
    architecture,
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize),
    // The shared MLP's width (graniteFused reads it), else the experts'.
    intermediate: shared > 0 ? shared : ff,
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern,
    attention: { ...attention, scale: c.num("attention_multiplier", 1) },
    moe: {
      ...moeFields(c, "num_local_experts", { normTopk: true, experts: 8, topK: 2 }),
      ff,
      ...(shared > 0 ? { sharedExpert: { ff: shared, gated: false } } : {}),
    },
    scaling: {
      embedding: c.num("embedding_multiplier", 1),
      residual: c.num("residual_multiplier", 1),
      logits: nonZero(c, "logits_scaling"),
    },
  };
}

/**
 * The Granite 3 MoE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.GraniteMoeForCausalLM.layout.moe; // "block_sparse_moe"
 * ```
 */
export const graniteMoe: ArchitectureSpec = {
  architecture: "GraniteMoeForCausalLM",
  modelType: "granitemoe",
  summary: "attention with RoPE + routed experts (softmax over the top-k logits); μP multipliers",
  layout: GRANITE_LAYOUT,
  parse: (c) => graniteMoeFields(c, "GraniteMoeForCausalLM"),
  fused: graniteFused,
};

/**
 * The Granite MoE spec with a shared MLP beside the experts.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.GraniteMoeSharedForCausalLM.layout.shared?.expert; // "shared_mlp"
 * ```
 */
export const graniteMoeShared: ArchitectureSpec = {
  architecture: "GraniteMoeSharedForCausalLM",
  modelType: "granitemoeshared",
  summary: "attention with RoPE + routed experts beside a SwiGLU shared MLP " +
    "(shared_intermediate_size > 0); μP multipliers",
  layout: GRANITE_LAYOUT,
  parse: (c) => graniteMoeFields(c, "GraniteMoeSharedForCausalLM"),
  fused: graniteFused,
};
