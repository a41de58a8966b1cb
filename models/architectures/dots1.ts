/**
 * dots.llm1 (`Dots1ForCausalLM`, rednote-hilab/dots.llm1): Qwen3's attention —
 * grouped-query, RoPE over whole heads, a QK-norm per head before RoPE,
 * optional biases on all four projections (`attention_bias`) — and
 * DeepSeek-V3's experts: the first `first_k_dense_replace` layers a dense
 * SwiGLU MLP, the rest experts chosen by sigmoid affinity plus a selection bias
 * (`mlp.gate.e_score_correction_bias`) within the best `topk_group` of
 * `n_group` groups, weighted by the unbiased affinities (renormalised only with
 * `norm_topk_prob`, false unless given) times `routed_scaling_factor`, beside
 * `n_shared_experts` always-on experts in one SwiGLU. Layers from
 * `max_window_layers` on attend within `sliding_window` when one is set
 * (Dots1Config's derived `layer_types`; a config's own `layer_types` wins).
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  layerWindows,
  QWEN_MOE_LAYOUT,
  sigmoidMoeFields,
  slidingWindowField,
} from "./common.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

function dots1Fields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  c.absent("attn_logit_softcapping", "attention logits are not soft-capped");
  c.absent("final_logit_softcapping", "logits are not soft-capped");
  const base = baseFields(c);
  // Dots1Config's defaults; the experts' fields have none (null), so a config names them.
  const ffn = sigmoidMoeFields(c, base.layers, {
    experts: 0,
    topK: 0,
    dense: 0,
    ff: 1408,
    scaling: 1,
    groups: 1,
    kept: 1,
    shared: 0,
    normTopk: false,
  });
  // Dots1Config keeps sliding_window's default 4096 unless the config sets it (null: none),
  // and slides layer i iff a window is set and i >= max_window_layers (default 62).
  const window = Object.hasOwn(c.json, "sliding_window") ? slidingWindowField(c) : 4096;
  const maxWindowLayers = c.int("max_window_layers", 62);
  const windows = layerWindows(c, base.layers, window) ??
    Array.from(
      { length: base.layers },
      (_, i) => (window > 0 && i >= maxWindowLayers ? window : 0),
    );
  const pattern: LayerSpec[] = ffn.pattern.map((p, i) => ({ ...p, window: windows[i] }));
  const bias = c.bool("attention_bias", false);
  return {
    architecture: "Dots1ForCausalLM",
    ...act,
    ...base,
    intermediate: c.positive("intermediate_size", 10944),
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    attention: attentionFields(c, base.hidden, {
      ropeTheta: 1e4,
      qkvBias: bias,
      outBias: bias,
      qkNorm: "head",
      kvHeads: 32,
    }),
    pattern,
    moe: ffn.moe,
    // dots.llm1 has no multi-token-prediction layers.
    extraLayers: 0,
  };
}

/**
 * The dots.llm1 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Dots1ForCausalLM.layout.shared?.expert; // "mlp.shared_experts"
 * ```
 */
export const dots1: ArchitectureSpec = {
  architecture: "Dots1ForCausalLM",
  modelType: "dots1",
  summary: "attention (GQA, RoPE, per-head QK-norm, optional biases, sliding layers) + " +
    "DeepSeek-style routed experts (sigmoid, selection bias, groups, scaling) beside shared " +
    "experts; dense first layers",
  layout: { ...QWEN_MOE_LAYOUT, shared: { expert: "mlp.shared_experts", gate: "" } },
  parse: dots1Fields,
};
