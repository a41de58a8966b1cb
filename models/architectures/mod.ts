/**
 * The table of model families: one {@linkcode ArchitectureSpec} per
 * architecture, exhaustive at the type level (a new member of
 * `Architecture` without a spec fails to type-check). Adding a family is one
 * file here plus its tests.
 *
 * @module
 */

import { type Architecture, ARCHITECTURES, type ModelConfig } from "../config.ts";
import { jamba } from "./jamba.ts";
import { mamba } from "./mamba.ts";
import { mixtral } from "./mixtral.ts";
import { olmoe } from "./olmoe.ts";
import { qwen2Moe } from "./qwen2_moe.ts";
import { qwen3Moe } from "./qwen3_moe.ts";
import { falconMamba } from "./falcon_mamba.ts";
import { mamba2 } from "./mamba2.ts";
import { graniteHybrid } from "./granite_hybrid.ts";
import { bamba } from "./bamba.ts";
import { nemotronH } from "./nemotron_h.ts";
import { gptOss } from "./gpt_oss.ts";
import { glm4Moe } from "./glm4_moe.ts";
import { ernie4_5, ernie4_5Moe } from "./ernie4_5.ts";
import { falconH1 } from "./falcon_h1.ts";
import { dots1 } from "./dots1.ts";
import { hunyuanMoe } from "./hunyuan_moe.ts";
import { minimaxM2 } from "./minimax_m2.ts";
import { flexOlmo } from "./flex_olmo.ts";
import { qwen3Next } from "./qwen3_next.ts";
import { lfm2, lfm2Moe } from "./lfm2.ts";
import { qwen3_5, qwen3_5Moe, qwen3_5MoeVl, qwen3_5Vl } from "./qwen3_5.ts";
import { exaoneMoe } from "./exaone_moe.ts";
import { glm4MoeLite } from "./glm4_moe_lite.ts";
import { deepseekV3 } from "./deepseek_v3.ts";
import { deepseekV2 } from "./deepseek_v2.ts";
import { graniteMoe, graniteMoeShared } from "./granite_moe.ts";
import { ConfigReader, show } from "./reader.ts";
import { checkpointQuantization } from "./quantization.ts";
import type {
  ArchitectureSpec,
  CheckpointLayout,
  FusedPacking,
  FusedTensor,
  SwigluNames,
} from "./spec.ts";

export type { ArchitectureSpec, CheckpointLayout, FusedPacking, FusedTensor, SwigluNames };
export { ConfigReader };
export { eachPartElement, joinParts, type NumberArray, readPart } from "./fused.ts";

/**
 * Every architecture's spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * Object.keys(ARCHITECTURE_SPECS).length; // 26
 * ```
 */
export const ARCHITECTURE_SPECS: { readonly [A in Architecture]: ArchitectureSpec } = {
  MixtralForCausalLM: mixtral,
  MambaForCausalLM: mamba,
  JambaForCausalLM: jamba,
  Qwen2MoeForCausalLM: qwen2Moe,
  OlmoeForCausalLM: olmoe,
  Qwen3MoeForCausalLM: qwen3Moe,
  FalconMambaForCausalLM: falconMamba,
  Mamba2ForCausalLM: mamba2,
  GraniteMoeHybridForCausalLM: graniteHybrid,
  BambaForCausalLM: bamba,
  NemotronHForCausalLM: nemotronH,
  GptOssForCausalLM: gptOss,
  Glm4MoeForCausalLM: glm4Moe,
  DeepseekV3ForCausalLM: deepseekV3,
  DeepseekV2ForCausalLM: deepseekV2,
  GraniteMoeForCausalLM: graniteMoe,
  GraniteMoeSharedForCausalLM: graniteMoeShared,
  Ernie4_5_MoeForCausalLM: ernie4_5Moe,
  Ernie4_5ForCausalLM: ernie4_5,
  FalconH1ForCausalLM: falconH1,
  Dots1ForCausalLM: dots1,
  HunYuanMoEV1ForCausalLM: hunyuanMoe,
  MiniMaxM2ForCausalLM: minimaxM2,
  FlexOlmoForCausalLM: flexOlmo,
  Qwen3NextForCausalLM: qwen3Next,
  Qwen3_5MoeForCausalLM: qwen3_5Moe,
  Qwen3_5ForCausalLM: qwen3_5,
  Qwen3_5MoeForConditionalGeneration: qwen3_5MoeVl,
  Qwen3_5ForConditionalGeneration: qwen3_5Vl,
  Lfm2ForCausalLM: lfm2,
  Lfm2MoeForCausalLM: lfm2Moe,
  ExaoneMoeForCausalLM: exaoneMoe,
  Glm4MoeLiteForCausalLM: glm4MoeLite,
};

/**
 * The spec of a parsed config's architecture.
 *
 * @example
 * ```ts
 * import { parseConfig, specOf } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * specOf(cfg).layout.finalNorm; // "backbone.norm_f"
 * ```
 */
export function specOf(cfg: ModelConfig): ArchitectureSpec {
  return ARCHITECTURE_SPECS[cfg.architecture];
}

/**
 * Parses a Hugging Face `config.json` object. `file` is used in error messages.
 *
 * @example
 * ```ts
 * import { parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 100, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2, expand: 2, conv_kernel: 4,
 * });
 * cfg.pattern.length; // 2
 * ```
 */
export function parseConfig(json: unknown, file = "config.json"): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SyntaxError(`${file}: expected a JSON object`);
  }
  const j = json as Record<string, unknown>;
  const archs = j.architectures;
  // A class name of the family's original (remote) code counts as the family's.
  const named = (a: unknown): Architecture | undefined =>
    ARCHITECTURES.includes(a as Architecture)
      ? a as Architecture
      : Object.values(ARCHITECTURE_SPECS).find((s) => s.aliases?.includes(a as string))
        ?.architecture;
  const arch = Array.isArray(archs) ? archs.map(named).find((a) => a !== undefined) : undefined;
  if (!arch) {
    const byType = Object.values(ARCHITECTURE_SPECS).find((s) => s.modelType === j.model_type);
    const hint = archs === undefined && byType
      ? `; model_type ${show(j.model_type)} suggests "architectures": ["${byType.architecture}"]`
      : "";
    throw new TypeError(
      `${file}: ${
        archs === undefined
          ? 'no "architectures" field'
          : `architecture ${show(archs)} is not supported`
      } (supported: ${ARCHITECTURES.join(", ")})${hint}`,
    );
  }
  const reader = new ConfigReader(j, file, arch);
  // Storage first: a method Kiln cannot read is the error, not a field it implies.
  const quantization = checkpointQuantization(
    reader,
    arch === "GptOssForCausalLM" ? ["mxfp4"] : [],
  );
  const cfg = ARCHITECTURE_SPECS[arch].parse(reader);
  return quantization ? { ...cfg, quantization } : cfg;
}

/**
 * The checkpoint tensors `cfg` stores fused, whose parts Kiln reads by their
 * own names (Granite's `input_linear`); none for most families.
 *
 * @example
 * ```ts
 * import { fusedTensors, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 2,
 * });
 * fusedTensors(cfg).length; // 0
 * ```
 */
export function fusedTensors(cfg: ModelConfig): FusedTensor[] {
  return specOf(cfg).fused?.(cfg) ?? [];
}

/**
 * The checkpoint prefix of layer `i` (`model.layers.3`).
 *
 * @example
 * ```ts
 * import { layerPrefix, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 2,
 * });
 * layerPrefix(cfg, 1); // "backbone.layers.1"
 * ```
 */
export function layerPrefix(cfg: ModelConfig, i: number): string {
  return `${specOf(cfg).layout.layers}.${i}`;
}

/**
 * The prefix of layer `i`'s MoE block; Kiln's stacked expert parameters are
 * `<prefix>.{router,w1,w3,w2}`.
 *
 * @example
 * ```ts
 * import { moePrefix, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MixtralForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 1,
 *   intermediate_size: 64, num_attention_heads: 4, num_local_experts: 4, num_experts_per_tok: 2,
 * });
 * moePrefix(cfg, 0); // "model.layers.0.block_sparse_moe"
 * ```
 */
export function moePrefix(cfg: ModelConfig, i: number): string {
  return `${layerPrefix(cfg, i)}.${specOf(cfg).layout.moe}`;
}

/**
 * The stacked weights each expert of a config's MoE layers has, in the slot
 * pool's order: `w1`, `w3`, `w2`, or `w1`, `w2` for ungated experts
 * (Nemotron-H's relu², whose up projection is `w1`).
 *
 * @example
 * ```ts
 * import { expertWeights, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MixtralForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 1,
 *   intermediate_size: 64, num_attention_heads: 4, num_local_experts: 4, num_experts_per_tok: 2,
 * });
 * expertWeights(cfg); // ["w1", "w3", "w2"]
 * ```
 */
export function expertWeights(cfg: ModelConfig): ("w1" | "w3" | "w2")[] {
  return cfg.moe?.activation?.kind === "relu2" ? ["w1", "w2"] : ["w1", "w3", "w2"];
}

/**
 * The checkpoint tensor holding one expert's projection: `w1` (gate), `w3`
 * (up) or `w2` (down) of expert `e` in layer `layer`; ungated experts (the
 * `relu2` activation) keep their up projection in `w1`.
 *
 * @example
 * ```ts
 * import { expertTensor, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MixtralForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 1,
 *   intermediate_size: 64, num_attention_heads: 4, num_local_experts: 4, num_experts_per_tok: 2,
 * });
 * expertTensor(cfg, 0, 3, "w2"); // "model.layers.0.block_sparse_moe.experts.3.w2.weight"
 * ```
 */
export function expertTensor(
  cfg: ModelConfig,
  layer: number,
  e: number,
  which: "w1" | "w3" | "w2",
): string {
  const l = specOf(cfg).layout;
  // Ungated experts (Nemotron-H's relu2) hold their up projection in w1.
  const ungated = cfg.moe?.activation?.kind === "relu2";
  const part = which === "w1"
    ? (ungated ? l.expertNames.up : l.expertNames.gate)
    : which === "w3"
    ? l.expertNames.up
    : l.expertNames.down;
  return `${moePrefix(cfg, layer)}.${l.experts}.${e}.${part}.weight`;
}

/**
 * The checkpoint tensor holding the expert selection bias `[E]` of MoE layer
 * `layer` (DeepSeek-V3's and GLM-4.5's `e_score_correction_bias`, a buffer of
 * the router in PyTorch; ERNIE 4.5's in `moe_statics`) — routers with a
 * selection bias only (`sigmoid_bias`, `softmax_bias`).
 *
 * @example
 * ```ts
 * import { parseConfig, selectionBiasTensor } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["Glm4MoeForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 2,
 *   intermediate_size: 64, moe_intermediate_size: 16, num_attention_heads: 4,
 *   num_key_value_heads: 2, n_routed_experts: 4, num_experts_per_tok: 2,
 * });
 * selectionBiasTensor(cfg, 1); // "model.layers.1.mlp.gate.e_score_correction_bias"
 * ```
 */
export function selectionBiasTensor(cfg: ModelConfig, layer: number): string {
  const lay = specOf(cfg).layout;
  const name = lay.selectionBias?.name ?? `${lay.router}.e_score_correction_bias`;
  return `${moePrefix(cfg, layer)}.${name}`;
}
