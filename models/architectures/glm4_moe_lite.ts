/**
 * GLM-4.7-Flash (`Glm4MoeLiteForCausalLM`, zai-org/GLM-4.7-Flash): DeepSeek-V3's
 * layer — multi-head latent attention (`mla`, interleaved RoPE unless
 * `rope_interleave` is false, yarn's softmax scale) and routed experts by
 * sigmoid affinity plus a selection bias within the best `topk_group` of
 * `n_group` groups, renormalised and scaled, beside shared experts — with
 * Glm4MoeLiteConfig's sizes, and the dense layers those `mlp_layer_types` marks
 * `"dense"` (absent: the first). The multi-token-prediction layer after the
 * last (`num_nextn_predict_layers`) is skipped, as transformers skips it.
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import { baseFields, QWEN_MOE_LAYOUT, sigmoidMoeFields } from "./common.ts";
import { sparseLayerList } from "./layer_types.ts";
import { mlaAttentionFields } from "./deepseek_v3.ts";
import { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

function glm4MoeLiteFields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  const base = baseFields(c, { bos: 0, eos: 1 });
  // The experts' settings as DeepSeek-V3 reads them; which layers have them is ours.
  const { first_k_dense_replace: _, ...rest } = c.json;
  const ffn = sigmoidMoeFields(new ConfigReader(rest, c.file, c.architecture), base.layers, {
    experts: 64,
    topK: 4,
    dense: 0,
    ff: 1536,
    scaling: 1.8,
    groups: 1,
    kept: 1,
  });
  // Glm4MoeLiteConfig: without mlp_layer_types the first layer is dense and the rest
  // sparse, whatever first_k_dense_replace says (it reads no such field).
  const pattern: LayerSpec[] = sparseLayerList(c, base.layers, (i) => i > 0).map((sparse) => ({
    mixer: "attention",
    ffn: sparse && ffn.moe ? "moe" : "mlp",
  }));
  return {
    architecture: "Glm4MoeLiteForCausalLM",
    ...act,
    ...base,
    intermediate: c.positive("intermediate_size", 10240),
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    attention: mlaAttentionFields(c, base.hidden, true, {
      qLoraRank: 768,
      nopeDim: 192,
      vDim: 256,
      heads: 20,
    }),
    ...ffn,
    pattern,
    moe: pattern.some((p) => p.ffn === "moe") ? ffn.moe : undefined,
  };
}

/**
 * The GLM-4.7-Flash spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Glm4MoeLiteForCausalLM.layout.shared?.expert; // "mlp.shared_experts"
 * ```
 */
export const glm4MoeLite: ArchitectureSpec = {
  architecture: "Glm4MoeLiteForCausalLM",
  modelType: "glm4_moe_lite",
  summary: "multi-head latent attention + DeepSeek-style routed experts beside shared " +
    "experts; dense layers by mlp_layer_types",
  layout: { ...QWEN_MOE_LAYOUT, shared: { expert: "mlp.shared_experts", gate: "" } },
  parse: glm4MoeLiteFields,
};
