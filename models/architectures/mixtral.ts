/**
 * Mixtral (`MixtralForCausalLM`): every layer is grouped-query attention with
 * RoPE (optionally a sliding window) and a routed SwiGLU MoE whose top-k
 * weights are renormalised to sum 1.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  DECODER_LAYOUT,
  moeFields,
  paddingIdxField,
  refuseAttentionExtras,
  slidingWindowField,
  uniformLayers,
} from "./common.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Mixtral spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.MixtralForCausalLM.layout.moe; // "block_sparse_moe"
 * ```
 */
export const mixtral: ArchitectureSpec = {
  architecture: "MixtralForCausalLM",
  modelType: "mixtral",
  summary: "attention (GQA, RoPE, optional sliding window) + routed SwiGLU MoE, top-k renormalised",
  layout: {
    ...DECODER_LAYOUT,
    moe: "block_sparse_moe",
    router: "gate",
    expertNames: { gate: "w1", up: "w3", down: "w2" },
  },

  parse(c): ModelConfig {
    const act = c.hiddenAct();
    refuseAttentionExtras(c, { bias: "Mixtral's projections have no biases" });
    // MixtralConfig's token id defaults.
    const base = baseFields(c, { bos: 1, eos: 2 });
    const window = slidingWindowField(c);
    // Mixtral applies sliding_window to every layer; a layer_types list that says
    // otherwise describes another model.
    const types = c.strList("layer_types");
    if (types && types.some((t) => t !== (window > 0 ? "sliding_attention" : "full_attention"))) {
      c.refuse("layer_types", "Mixtral applies sliding_window to every layer or to none");
    }
    return {
      architecture: "MixtralForCausalLM",
      ...act,
      ...base,
      paddingIdx: paddingIdxField(c, base.vocabSize),
      intermediate: c.int("intermediate_size"),
      normEps: c.nonNegative("rms_norm_eps", 1e-5),
      tieEmbeddings: c.bool("tie_word_embeddings", false),
      pattern: uniformLayers(base.layers, "attention", "moe"),
      attention: attentionFields(c, base.hidden, {
        ropeTheta: 1e6,
        slidingWindow: window,
        kvHeads: 8,
      }),
      moe: moeFields(c, "num_local_experts", { normTopk: true, experts: 8, topK: 2 }),
    };
  },
};
