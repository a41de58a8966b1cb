/**
 * K-EXAONE (`ExaoneMoeForCausalLM`, LGAI-EXAONE): grouped-query attention with
 * a QK-norm per head before RoPE and no biases, hybrid by layer: with a
 * `sliding_window`, the `"sliding_attention"` layers of `layer_types` (else
 * all but every `sliding_window_pattern`-th) attend within the window under
 * RoPE, and the others attend globally without RoPE ("global NoPE"); without a
 * window every layer is full attention with RoPE. Layers marked `"dense"` in
 * `mlp_layer_types` (else the first `first_k_dense_replace`) have a SwiGLU
 * MLP, the others DeepSeek-V3's experts — sigmoid affinity plus a selection
 * bias (`mlp.e_score_correction_bias`) within the best `topk_group` of
 * `n_group` groups, weights renormalised (`norm_topk_prob`) and scaled by
 * `routed_scaling_factor` — beside `num_shared_experts` shared experts. The
 * released checkpoints' multi-token-prediction tensors (`mtp.*`) are not read,
 * as transformers skips them.
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  groupLimitFields,
  layerWindows,
  moeFields,
  paddingIdxField,
  QWEN_MOE_LAYOUT,
} from "./common.ts";
import { sparseLayerList } from "./layer_types.ts";
import { type ConfigReader, show } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/** Each layer's window (0: full) as ExaoneMoeConfig derives `layer_types`. */
function windows(c: ConfigReader, layers: number, window: number): number[] {
  const given = layerWindows(c, layers, window);
  if (given) return given;
  if (window === 0) return Array(layers).fill(0);
  const pattern = c.raw("sliding_window_pattern") ?? 4;
  if (typeof pattern !== "number" || !Number.isInteger(pattern) || pattern < 1) {
    throw new TypeError(
      `${c.file}: sliding_window_pattern ${show(pattern)} is not a positive integer; ` +
        "give layer_types instead",
    );
  }
  return Array.from({ length: layers }, (_, i) => ((i + 1) % pattern !== 0 ? window : 0));
}

function exaoneMoeFields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  for (const f of ["attention_bias", "mlp_bias"]) c.absent(f, "its projections have no biases");
  const base = baseFields(c, { bos: 1, eos: 53 });
  // ExaoneMoeConfig keeps sliding_window's default 4096 unless the config sets it (null: none).
  const window = Object.hasOwn(c.json, "sliding_window")
    ? (c.has("sliding_window") ? c.positive("sliding_window") : 0)
    : 4096;
  const perLayer = windows(c, base.layers, window);
  const experts = c.int("num_experts", 64);
  // ExaoneMoeConfig: without mlp_layer_types, the first first_k_dense_replace layers dense.
  const dense = c.int("first_k_dense_replace", 1);
  const moeLayers = sparseLayerList(c, base.layers, (i) => i >= dense).map((s) => s && experts > 0);
  const pattern: LayerSpec[] = perLayer.map((w, i) => ({
    mixer: "attention",
    ffn: moeLayers[i] ? "moe" : "mlp",
    window: w,
    // EXAONE's hybrid attention: the global layers of a windowed model have no RoPE.
    ...(window > 0 && w === 0 ? { nope: true } : {}),
  }));
  const ff = c.positive("moe_intermediate_size", 1024);
  const shared = c.int("num_shared_experts", 1);
  return {
    architecture: "ExaoneMoeForCausalLM",
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize, 0),
    intermediate: c.positive("intermediate_size", 16384),
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern,
    attention: attentionFields(c, base.hidden, { ropeTheta: 1e4, qkNorm: "head", kvHeads: 32 }),
    // A GGUF file's multi-token-prediction blocks after the model (its nextn_predict_layers).
    extraLayers: c.int("num_nextn_predict_layers", 0),
    moe: moeLayers.some((m) => m)
      ? {
        // Balanced by its selection bias: transformers adds no balancing loss.
        ...moeFields(c, "num_experts", { normTopk: c.bool("norm_topk_prob", true), topK: 8 }),
        auxLossCoef: 0,
        router: "sigmoid_bias",
        routedScaling: c.num("routed_scaling_factor", 2.5),
        ...groupLimitFields(
          c,
          experts,
          c.positive("n_group", 1),
          c.positive("topk_group", 1),
        ),
        ff,
        ...(shared > 0 ? { sharedExpert: { ff: ff * shared, gated: false } } : {}),
      }
      : undefined,
  };
}

/**
 * The K-EXAONE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.ExaoneMoeForCausalLM.layout.selectionBias?.name; // "e_score_correction_bias"
 * ```
 */
export const exaoneMoe: ArchitectureSpec = {
  architecture: "ExaoneMoeForCausalLM",
  modelType: "exaone_moe",
  summary: "hybrid attention (sliding layers with RoPE, global layers without; per-head " +
    "QK-norm) + DeepSeek-style routed experts beside shared experts; dense layers",
  layout: {
    ...QWEN_MOE_LAYOUT,
    shared: { expert: "mlp.shared_experts", gate: "" },
    selectionBias: { name: "e_score_correction_bias", row: false },
  },
  parse: exaoneMoeFields,
  // ExaoneMoePreTrainedModel's _keys_to_ignore_on_load_unexpected: the released
  // checkpoints' multi-token-prediction module.
  ignoredTensors: /^mtp\./,
  // The released config's class name (its remote code's), which transformers reads by
  // model_type and llama.cpp's converter registers.
  aliases: ["ExaoneMoEForCausalLM"],
};
