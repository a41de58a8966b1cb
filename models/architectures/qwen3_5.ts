/**
 * Qwen3.5's language models: Qwen3-Next's hybrid (`qwen3_next.ts`: Gated
 * DeltaNet layers, gated attention every `full_attention_interval`-th) with
 * the DeltaNet's projections split (`in_proj_qkv`, `in_proj_z`, `in_proj_b`,
 * `in_proj_a`), in two kinds:
 * - `Qwen3_5MoeForCausalLM` (e.g. Qwen3.5-397B-A17B, -35B-A3B): every layer's
 *   feed-forward routed SwiGLU experts (softmax top-k, always renormalised)
 *   beside a sigmoid-gated shared expert;
 * - `Qwen3_5ForCausalLM` (the dense ones): a SwiGLU MLP in every layer.
 *
 * The published checkpoints are the vision-language classes
 * (`Qwen3_5MoeForConditionalGeneration`, `Qwen3_5ForConditionalGeneration`):
 * their `text_config` is read as the language model's config, its tensors sit
 * under `model.language_model`, and the vision tower (`model.visual.*`) is
 * skipped — Kiln runs the text model. Its multimodal RoPE sections
 * (`mrope_section`) rotate text positions as plain RoPE does (all three
 * position streams of a text token are equal).
 *
 * @module
 */

import type { Architecture, LayerSpec, ModelConfig } from "../config.ts";
import { baseFields, moeFields, paddingIdxField, QWEN_MOE_LAYOUT } from "./common.ts";
import { ConfigReader, show } from "./reader.ts";
import { gatedAttention, gatedDeltaFields, hybridMixers } from "./qwen3_next.ts";
import type { ArchitectureSpec, CheckpointLayout } from "./spec.ts";

function textFields(c: ConfigReader, architecture: Architecture, moe: boolean): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  const base = baseFields(c);
  const kinds = hybridMixers(c, base.layers);
  const pattern: LayerSpec[] = kinds.map((mixer) => ({ mixer, ffn: moe ? "moe" : "mlp" }));
  const sharedFf = c.int("shared_expert_intermediate_size", 512);
  return {
    architecture,
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize),
    intermediate: moe ? 0 : c.positive("intermediate_size", 12288),
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    normOffset: 1,
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern,
    attention: kinds.includes("attention")
      ? gatedAttention(c, base.hidden, moe ? 2 : 4)
      : undefined,
    mamba: kinds.includes("mamba") ? gatedDeltaFields(c, true) : undefined,
    // Qwen3_5MoeTopKRouter renormalises the top k whatever the config says.
    moe: moe
      ? {
        ...moeFields(c, "num_experts", { normTopk: true, experts: 256, topK: 8 }),
        ff: c.positive("moe_intermediate_size", 512),
        ...(sharedFf > 0 ? { sharedExpert: { ff: sharedFf, gated: true } } : {}),
      }
      : undefined,
  };
}

/**
 * The vision-language config's `text_config` as its own reader; the top-level
 * `tie_word_embeddings` (the class's own) wins over the text config's.
 */
function textReader(c: ConfigReader): ConfigReader {
  const text = c.raw("text_config");
  if (typeof text !== "object" || text === null || Array.isArray(text)) {
    throw new TypeError(`${c.file}: field "text_config" must be an object, got ${show(text)}`);
  }
  const json = { ...(text as Record<string, unknown>) };
  if (c.has("tie_word_embeddings")) json.tie_word_embeddings = c.raw("tie_word_embeddings");
  return new ConfigReader(json, `${c.file}: text_config`, c.architecture);
}

const DENSE_LAYOUT: CheckpointLayout = { ...QWEN_MOE_LAYOUT, mamba: "linear_attn" };
const MOE_LAYOUT: CheckpointLayout = {
  ...DENSE_LAYOUT,
  shared: { expert: "mlp.shared_expert", gate: "mlp.shared_expert_gate" },
};

/** A layout's language model moved under `model.language_model` (the VLM classes). */
function underLanguageModel(layout: CheckpointLayout): CheckpointLayout {
  const lm = (name: string) => name.replace(/^model\./, "model.language_model.");
  return {
    ...layout,
    embed: lm(layout.embed),
    finalNorm: lm(layout.finalNorm),
    layers: lm(layout.layers),
  };
}

function spec(
  architecture: Architecture,
  modelType: string,
  moe: boolean,
  vision: boolean,
): ArchitectureSpec {
  const layout = moe ? MOE_LAYOUT : DENSE_LAYOUT;
  return {
    architecture,
    modelType,
    summary: `${vision ? "the language model of a vision-language checkpoint: " : ""}hybrid: ` +
      "Gated DeltaNet linear attention (split projections) and gated attention every " +
      `full_attention_interval layers; ${
        moe ? "routed SwiGLU MoE with a gated shared expert" : "a SwiGLU MLP"
      } in every layer`,
    layout: vision ? underLanguageModel(layout) : layout,
    parse: (c) => textFields(vision ? textReader(c) : c, architecture, moe),
    ignoredTensors: vision ? /^(model\.visual\.|mtp\.)/ : /^mtp\./,
  };
}

/**
 * The Qwen3.5 MoE spec (text model).
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen3_5MoeForCausalLM.modelType; // "qwen3_5_moe_text"
 * ```
 */
export const qwen3_5Moe: ArchitectureSpec = spec(
  "Qwen3_5MoeForCausalLM",
  "qwen3_5_moe_text",
  true,
  false,
);

/**
 * The Qwen3.5 dense spec (text model).
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen3_5ForCausalLM.layout.mamba; // "linear_attn"
 * ```
 */
export const qwen3_5: ArchitectureSpec = spec("Qwen3_5ForCausalLM", "qwen3_5_text", false, false);

/**
 * The Qwen3.5 MoE vision-language checkpoints, read as their language model.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen3_5MoeForConditionalGeneration.layout.layers; // "model.language_model.layers"
 * ```
 */
export const qwen3_5MoeVl: ArchitectureSpec = spec(
  "Qwen3_5MoeForConditionalGeneration",
  "qwen3_5_moe",
  true,
  true,
);

/**
 * The Qwen3.5 dense vision-language checkpoints, read as their language model.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen3_5ForConditionalGeneration.modelType; // "qwen3_5"
 * ```
 */
export const qwen3_5Vl: ArchitectureSpec = spec(
  "Qwen3_5ForConditionalGeneration",
  "qwen3_5",
  false,
  true,
);
