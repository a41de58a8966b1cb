/**
 * OLMoE (`OlmoeForCausalLM`): Llama-style attention with QK-norm (RMSNorm over
 * the whole q and k projections, before RoPE), optional biases
 * (`attention_bias`) and clamping (`clip_qkv`), and a routed SwiGLU MoE in every
 * layer whose top-k weights are renormalised only with `norm_topk_prob`.
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
  uniformLayers,
} from "./common.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The OLMoE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.OlmoeForCausalLM.layout.moe; // "mlp"
 * ```
 */
export const olmoe: ArchitectureSpec = {
  architecture: "OlmoeForCausalLM",
  modelType: "olmoe",
  summary: "attention (RoPE, QK-norm, optional clip_qkv) + routed SwiGLU MoE in every layer",
  layout: { ...DECODER_LAYOUT, moe: "mlp", router: "gate" },

  parse(c): ModelConfig {
    const act = c.hiddenAct();
    c.absent("mlp_bias", "its experts have no biases");
    // OlmoeConfig's token id defaults.
    const base = baseFields(c, { eos: 50279 });
    const heads = c.int("num_attention_heads");
    // k_norm spans (hidden / heads) · kv_heads in transformers, so a different
    // head_dim cannot be built there either.
    if (c.has("head_dim") && heads > 0 && c.int("head_dim") * heads !== base.hidden) {
      c.refuse("head_dim", `OLMoE's head size is hidden_size / num_attention_heads`);
    }
    const clip = c.has("clip_qkv") ? c.num("clip_qkv") : 0;
    // transformers clamps whenever clip_qkv is not None: 0 would zero q, k and v,
    // which no trained model asks for; refuse it rather than read it as "no clip".
    if (c.has("clip_qkv") && !(clip > 0)) {
      throw new RangeError(`${c.file}: clip_qkv must be > 0, got ${clip}`);
    }
    const bias = c.bool("attention_bias", false);
    return {
      architecture: "OlmoeForCausalLM",
      ...act,
      ...base,
      paddingIdx: paddingIdxField(c, base.vocabSize, 1),
      intermediate: c.int("intermediate_size", 2048),
      normEps: c.nonNegative("rms_norm_eps", 1e-5),
      tieEmbeddings: c.bool("tie_word_embeddings", false),
      pattern: uniformLayers(base.layers, "attention", "moe"),
      attention: attentionFields(c, base.hidden, {
        ropeTheta: 1e4,
        qkvBias: bias,
        outBias: bias,
        qkNorm: true,
        clipQkv: clip,
      }),
      // OlmoeConfig maps num_local_experts onto num_experts (its attribute_map).
      moe: moeFields(
        c,
        !c.has("num_experts") && c.has("num_local_experts") ? "num_local_experts" : "num_experts",
        {
          normTopk: c.bool("norm_topk_prob", false),
          experts: 64,
          topK: 8,
          auxLossCoef: 0.01, // OlmoeConfig's default (the others' is 0.001)
        },
      ),
    };
  },
};
