/**
 * MiniMax-M2 (`MiniMaxM2ForCausalLM`, MiniMaxAI/MiniMax-M2 and its 2.x
 * releases): grouped-query attention without biases whose QK-norm is one
 * RMSNorm over the whole q projection (`[heads·head_dim]`) and one over the
 * whole k projection (`[kv_heads·head_dim]`) before they split into heads
 * (`qk_norm_type` "per_layer", OLMoE's form), RoPE over the first `rotary_dim`
 * values of each head (MiniMaxM2Config turns it into `partial_rotary_factor`);
 * every layer routed SwiGLU experts of `intermediate_size`, the top
 * `num_experts_per_tok` chosen by sigmoid affinity plus a selection bias
 * (`block_sparse_moe.e_score_correction_bias`) and weighted by the unbiased
 * affinities, always renormalised — DeepSeek-V3's router without groups,
 * scaling or shared experts. The checkpoint keeps Mixtral's layout
 * (`block_sparse_moe.experts.E.w1/w2/w3`). The `num_mtp_modules`
 * multi-token-prediction modules a checkpoint may hold after the last layer
 * are not read: transformers has no module for them.
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
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * Refuses, by field, values other than the ones the hub's config.json states:
 * they restate the one form transformers' MiniMaxM2 builds (QK-norm on, over
 * each layer's whole projections; sigmoid scores plus the selection bias; no
 * shared expert; softmax attention in every layer).
 */
function refuseOtherVariants(c: ConfigReader, layers: number): void {
  if (!c.bool("use_qk_norm", true)) {
    c.refuse("use_qk_norm", "transformers' MiniMaxM2 always applies its QK-norm");
  }
  if (c.str("qk_norm_type", "per_layer") !== "per_layer") {
    c.refuse("qk_norm_type", 'only "per_layer": one RMSNorm over the whole q and k projections');
  }
  if (c.str("scoring_func", "sigmoid") !== "sigmoid") {
    c.refuse("scoring_func", 'only "sigmoid" expert scores');
  }
  if (!c.bool("use_routing_bias", true)) {
    c.refuse("use_routing_bias", "its router always adds e_score_correction_bias");
  }
  c.absent("shared_intermediate_size", "transformers' MiniMaxM2 has no shared expert");
  // MiniMax-Text-01's list: 0 a lightning (linear) attention layer, 1 softmax attention.
  // MiniMax-M2's is all 1; transformers' class runs every layer as softmax attention.
  if (c.has("attn_type_list")) {
    const types = c.intList("attn_type_list");
    if (types.length !== layers) {
      throw new RangeError(
        `${c.file}: attn_type_list has ${types.length} entries, num_hidden_layers is ${layers}`,
      );
    }
    const i = types.findIndex((t) => t !== 1);
    if (i >= 0) {
      throw new TypeError(
        `${c.file}: attn_type_list[${i}] is ${types[i]}; ${c.architecture} runs softmax ` +
          "attention (1) in every layer, not MiniMax-Text-01's lightning attention (0)",
      );
    }
  }
  c.absent("attention_bias", "its projections have no biases");
  c.absent("mlp_bias", "its experts have no biases");
  c.absent("attn_logit_softcapping", "attention logits are not soft-capped");
  c.absent("final_logit_softcapping", "logits are not soft-capped");
}

/**
 * The RoPE share of each head MiniMaxM2Config resolves: `partial_rotary_factor`
 * (in `rope_parameters` or at the top level) when given, else
 * `rotary_dim / head_dim` (the hub's configs), else the whole head.
 */
function rotaryDefault(c: ConfigReader, headDim: number): number {
  if (!c.has("rotary_dim")) return 1;
  const r = c.positive("rotary_dim");
  if (r > headDim) {
    throw new RangeError(`${c.file}: field "rotary_dim" (${r}) exceeds head_dim ${headDim}`);
  }
  return r / headDim;
}

function minimaxM2Fields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  const base = baseFields(c, { bos: 200034, eos: 200020 });
  refuseOtherVariants(c, base.layers);
  // MiniMaxM2Config's head_dim is 128 unless given (not hidden / heads); it refuses null.
  if (Object.hasOwn(c.json, "head_dim") && !c.has("head_dim")) {
    c.refuse("head_dim", "MiniMaxM2Config needs an integer head size (default 128)");
  }
  const headDim = c.positive("head_dim", 128);
  // MiniMaxM2Config maps num_experts onto num_local_experts (its attribute_map).
  const expertsField = !c.has("num_local_experts") && c.has("num_experts")
    ? "num_experts"
    : "num_local_experts";
  return {
    architecture: "MiniMaxM2ForCausalLM",
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize),
    intermediate: c.positive("intermediate_size", 1536),
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern: uniformLayers(base.layers, "attention", "moe"),
    attention: attentionFields(c, base.hidden, {
      ropeTheta: 5e6,
      qkNorm: true,
      kvHeads: 8,
      headDim,
      partialRotary: rotaryDefault(c, headDim),
    }),
    moe: {
      ...moeFields(c, expertsField, {
        normTopk: true,
        experts: 256,
        topK: 8,
      }),
      router: "sigmoid_bias",
      // router_aux_loss_coef weighs the Mixtral balance loss (softmax of the logits, their
      // top k) transformers adds with output_router_logits; Kiln's balance loss of a
      // sigmoid_bias router is DeepSeek's, another loss, so none is added whatever it says.
      auxLossCoef: 0,
    },
    // SGLang finds the multi-token-prediction modules as layers after the last.
    extraLayers: c.int("num_mtp_modules", 0),
  };
}

/**
 * The MiniMax-M2 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.MiniMaxM2ForCausalLM.layout.selectionBias?.name; // "e_score_correction_bias"
 * ```
 */
export const minimaxM2: ArchitectureSpec = {
  architecture: "MiniMaxM2ForCausalLM",
  modelType: "minimax_m2",
  summary: "attention (GQA, partial RoPE, QK-norm over the whole q and k projections) + " +
    "routed SwiGLU experts chosen by sigmoid + selection bias, renormalised, in every layer",
  layout: {
    ...DECODER_LAYOUT,
    moe: "block_sparse_moe",
    router: "gate",
    expertNames: { gate: "w1", up: "w3", down: "w2" },
    selectionBias: { name: "e_score_correction_bias", row: false },
  },
  parse: minimaxM2Fields,
};
