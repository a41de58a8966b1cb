/**
 * Granite 4.0 hybrids (`GraniteMoeHybridForCausalLM`, e.g.
 * ibm-granite/granite-4.0-h-tiny): layer i is a Mamba-2 mixer or attention
 * (no RoPE unless `position_embedding_type` is "rope") as `layer_types` says;
 * every feed-forward is a SwiGLU `shared_mlp`, plus routed experts (softmax
 * over the top-k logits) when `num_local_experts` > 0. μP constants scale the
 * embeddings, each block's residual branch, q·k and the logits. The
 * checkpoint fuses each gate and up projection into one `input_linear`
 * (experts stacked `[E, 2I, d]`), which Kiln reads as parts ({@linkcode FusedTensor}).
 *
 * @module
 */

import type { LayerSpec, MixerKind, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  DECODER_LAYOUT,
  moeFields,
  paddingIdxField,
} from "./common.ts";
import { bambaMixerFields } from "./mamba2.ts";
import { show } from "./reader.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec, CheckpointLayout, FusedTensor } from "./spec.ts";

/** transformers 5 names and the legacy ones its `remap_legacy_layer_types` accepts. */
const MIXER_OF: Readonly<Record<string, MixerKind>> = {
  linear_attention: "mamba",
  mamba: "mamba",
  full_attention: "attention",
  attention: "attention",
};

function mixers(c: ConfigReader, layers: number): MixerKind[] {
  const types = c.strList("layer_types");
  // GraniteMoeHybridConfig's default: every layer a Mamba mixer.
  if (!types) return Array.from({ length: layers }, () => "mamba");
  if (types.length !== layers) {
    throw new RangeError(
      `${c.file}: layer_types has ${types.length} entries, num_hidden_layers is ${layers}`,
    );
  }
  return types.map((t, i) => {
    const m = MIXER_OF[t];
    if (!m) {
      throw new TypeError(
        `${c.file}: layer_types[${i}] ${show(t)} is not supported by ${c.architecture} ` +
          `(only ${Object.keys(MIXER_OF).map((k) => `"${k}"`).join(", ")})`,
      );
    }
    return m;
  });
}

/** Whether attention rotates q and k: "rope" yes; absent, null or "nope" no. */
function usesRope(c: ConfigReader): boolean {
  const v = c.raw("position_embedding_type");
  if (v === undefined || v === null || v === "nope") return false;
  if (v === "rope") return true;
  throw new TypeError(
    `${c.file}: field "position_embedding_type" must be "rope", "nope" or null, got ${show(v)}`,
  );
}

function graniteFields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  // GraniteMoeHybridConfig's token id defaults.
  const base = baseFields(c, { bos: 1, eos: 2 });
  const kinds = mixers(c, base.layers);
  const experts = c.int("num_local_experts", 8);
  const pattern: LayerSpec[] = kinds.map((mixer) => ({
    mixer,
    ffn: experts > 0 ? "moe" : "mlp",
  }));
  const shared = c.positive("shared_intermediate_size", 1024);
  const bias = c.bool("attention_bias", false);
  const attention = kinds.includes("attention")
    ? attentionFields(c, base.hidden, {
      ropeTheta: usesRope(c) ? 1e4 : null,
      qkvBias: bias,
      outBias: bias,
    })
    : undefined;
  return {
    architecture: "GraniteMoeHybridForCausalLM",
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize),
    // Dense layers run the shared MLP alone.
    intermediate: shared,
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern,
    attention: attention && { ...attention, scale: c.num("attention_multiplier", 1) },
    mamba: kinds.includes("mamba") ? bambaMixerFields(c, base.hidden) : undefined,
    moe: experts > 0
      ? {
        // Softmax over the top-k logits: the top-k softmax probabilities, renormalised.
        ...moeFields(c, "num_local_experts", { normTopk: true, experts: 8, topK: 2 }),
        ff: c.positive("intermediate_size", 11008),
        sharedExpert: { ff: shared, gated: false },
      }
      : undefined,
    scaling: {
      embedding: c.num("embedding_multiplier", 1),
      residual: c.num("residual_multiplier", 1),
      logits: nonZero(c, "logits_scaling"),
    },
  };
}

/**
 * A μP divisor field (`logits_scaling`), which must not be 0.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { nonZero } from "./granite_hybrid.ts";
 * nonZero(new ConfigReader({ logits_scaling: 8 }, "config.json", "x"), "logits_scaling"); // 8
 * ```
 */
export function nonZero(c: ConfigReader, name: string): number {
  const v = c.num(name, 1);
  if (v === 0) {
    throw new RangeError(`${c.file}: field "${name}" divides the logits: it must not be 0`);
  }
  return v;
}

/**
 * Granite's checkpoint names (gate_proj and up_proj: the halves of the stored
 * input_linear), shared by the Granite MoE families.
 *
 * @example
 * ```ts
 * import { GRANITE_LAYOUT } from "./granite_hybrid.ts";
 * GRANITE_LAYOUT.router; // "router.layer"
 * ```
 */
export const GRANITE_LAYOUT: CheckpointLayout = {
  ...DECODER_LAYOUT,
  mamba: "mamba",
  mlp: "shared_mlp",
  mlpNames: { gate: "gate_proj", up: "up_proj", down: "output_linear" },
  moe: "block_sparse_moe",
  router: "router.layer",
  shared: { expert: "shared_mlp", gate: "" },
};

/**
 * Each layer's `input_linear` tensors (gate rows, then up rows) and the
 * experts' `output_linear`: the shared MLP's where a layer has one (every
 * hybrid layer; GraniteMoeShared's with `shared_intermediate_size` > 0), the
 * experts' in MoE layers.
 *
 * @example
 * ```ts ignore
 * graniteFused(cfg).map((f) => f.name); // ["model.layers.0.shared_mlp.input_linear.weight", …]
 * ```
 */
export function graniteFused(cfg: ModelConfig): FusedTensor[] {
  const d = cfg.hidden, s = cfg.intermediate;
  const { mlpNames: m, expertNames: x } = GRANITE_LAYOUT;
  return cfg.pattern.flatMap((layer, i) => {
    const mlp = `${GRANITE_LAYOUT.layers}.${i}.${GRANITE_LAYOUT.mlp}`;
    const out: FusedTensor[] = layer.ffn === "mlp" || cfg.moe?.sharedExpert
      ? [{
        name: `${mlp}.input_linear.weight`,
        shape: [2 * s, d],
        parts: [`${mlp}.${m.gate}.weight`, `${mlp}.${m.up}.weight`],
        partShape: [s, d],
      }]
      : [];
    if (layer.ffn !== "moe") return out;
    const moe = `${GRANITE_LAYOUT.layers}.${i}.${GRANITE_LAYOUT.moe}`,
      E = cfg.moe!.experts,
      ff = cfg.moe!.ff!;
    const expert = (e: number, w: string) => `${moe}.${GRANITE_LAYOUT.experts}.${e}.${w}.weight`;
    out.push({
      name: `${moe}.input_linear.weight`,
      shape: [E, 2 * ff, d],
      parts: Array.from({ length: E }, (_, e) => [expert(e, x.gate), expert(e, x.up)]).flat(),
      partShape: [ff, d],
    }, {
      name: `${moe}.output_linear.weight`,
      shape: [E, d, ff],
      parts: Array.from({ length: E }, (_, e) => expert(e, x.down)),
      partShape: [d, ff],
    });
    return out;
  });
}

/**
 * The Granite 4.0 hybrid spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.GraniteMoeHybridForCausalLM.layout.mamba; // "mamba"
 * ```
 */
export const graniteHybrid: ArchitectureSpec = {
  architecture: "GraniteMoeHybridForCausalLM",
  modelType: "granitemoehybrid",
  summary: "hybrid: Mamba-2 or attention (NoPE or RoPE) by layer_types; a SwiGLU shared MLP " +
    "in every layer, plus routed experts when num_local_experts > 0; μP multipliers",
  layout: GRANITE_LAYOUT,
  parse: graniteFields,
  fused: graniteFused,
};
