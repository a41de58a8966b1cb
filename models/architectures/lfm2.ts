/**
 * Liquid AI's LFM2 (`Lfm2ForCausalLM`, LFM2-350M … 2.6B) and LFM2-MoE
 * (`Lfm2MoeForCausalLM`, LFM2-8B-A1B): hybrids of short-convolution layers
 * (`"conv"` in `layer_types`: `models/short_conv.ts`) and grouped-query
 * attention layers with a per-head QK-norm (`q_layernorm`, `k_layernorm`) and
 * RoPE, each followed by a SwiGLU (`w1`, `w3`, `w2`) — in LFM2-MoE, after the
 * first `num_dense_layers`, routed experts chosen by sigmoid plus a selection
 * bias (`feed_forward.expert_bias`), renormalised with `norm_topk_prob`, scaled
 * by `routed_scaling_factor`. Norms: `operator_norm` before the mixer,
 * `ffn_norm` before the feed-forward, `embedding_norm` last. LFM2's dense MLP
 * width follows `block_auto_adjust_ff_dim` (⌊2/3·intermediate_size⌋, times
 * `block_ffn_dim_multiplier`, rounded up to `block_multiple_of`).
 *
 * @module
 */

import type { LayerSpec, MambaConfig, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  DECODER_LAYOUT,
  moeFields,
  paddingIdxField,
} from "./common.ts";
import { type ConfigReader, show } from "./reader.ts";
import type { ArchitectureSpec, CheckpointLayout } from "./spec.ts";

/** `layer_types`, else (LFM2) attention at `full_attn_idxs` (absent: every layer). */
function mixers(c: ConfigReader, layers: number, moe: boolean): ("attention" | "mamba")[] {
  const types = c.strList("layer_types");
  if (!types) {
    // Lfm2MoeConfig derives none: its model cannot be built without the list.
    if (moe) c.refuse("layer_types", "Lfm2MoeConfig needs the per-layer list");
    const idx = c.has("full_attn_idxs") ? new Set(c.intList("full_attn_idxs")) : undefined;
    return Array.from({ length: layers }, (_, i) => (!idx || idx.has(i) ? "attention" : "mamba"));
  }
  if (types.length !== layers) {
    throw new RangeError(
      `${c.file}: layer_types has ${types.length} entries, num_hidden_layers is ${layers}`,
    );
  }
  return types.map((t, i) => {
    if (t !== "conv" && t !== "full_attention") {
      throw new TypeError(
        `${c.file}: layer_types[${i}] ${show(t)} is not "conv" or "full_attention"`,
      );
    }
    return t === "conv" ? "mamba" : "attention";
  });
}

/** Lfm2MLP's width: `block_auto_adjust_ff_dim`'s ⌊2/3·ff⌋, multiplier, rounding. */
function denseWidth(c: ConfigReader): number {
  let ff = c.has("block_ff_dim")
    ? c.positive("block_ff_dim")
    : c.positive("intermediate_size", 12288);
  if (!c.bool("block_auto_adjust_ff_dim", true)) return ff;
  ff = Math.floor((2 * ff) / 3);
  // An explicit null multiplier (older configs) skips the multiplier and the rounding.
  if (Object.hasOwn(c.json, "block_ffn_dim_multiplier") && !c.has("block_ffn_dim_multiplier")) {
    return ff;
  }
  const of = c.positive("block_multiple_of", 256);
  ff = Math.floor(c.num("block_ffn_dim_multiplier", 1) * ff);
  return of * Math.ceil(ff / of);
}

function lfm2Fields(c: ConfigReader, moe: boolean): ModelConfig {
  const base = baseFields(c, { bos: 1, eos: 2 });
  const kinds = mixers(c, base.layers, moe);
  const dense = moe ? c.int("num_dense_layers", 2) : base.layers;
  const pattern: LayerSpec[] = kinds.map((mixer, i) => ({ mixer, ffn: i < dense ? "mlp" : "moe" }));
  const tie = c.has("tie_embedding")
    ? c.bool("tie_embedding", true)
    : c.bool("tie_word_embeddings", true);
  const convBias = c.bool("conv_bias", false);
  const shortConv: MambaConfig = {
    stateSize: 1,
    inner: base.hidden,
    convKernel: c.positive("conv_L_cache", 3),
    dtRank: 1,
    projBias: convBias,
    convBias,
    innerNorms: false,
    shortConv: { bias: convBias },
  };
  const sparse = pattern.some((p) => p.ffn === "moe");
  if (sparse && !c.bool("use_expert_bias", true)) {
    c.refuse("use_expert_bias", "Kiln's sigmoid router chooses experts with the selection bias");
  }
  return {
    architecture: moe ? "Lfm2MoeForCausalLM" : "Lfm2ForCausalLM",
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize, 0),
    intermediate: moe ? c.positive("intermediate_size", 7168) : denseWidth(c),
    normEps: c.nonNegative("norm_eps", 1e-5),
    tieEmbeddings: tie,
    pattern,
    attention: kinds.includes("attention")
      ? attentionFields(c, base.hidden, { ropeTheta: 1e6, qkNorm: "head", kvHeads: 8 })
      : undefined,
    mamba: kinds.includes("mamba") ? shortConv : undefined,
    moe: sparse
      ? {
        ...moeFields(c, "num_experts", {
          normTopk: c.bool("norm_topk_prob", true),
          experts: 32,
          topK: 4,
        }),
        ff: c.positive("moe_intermediate_size", 1792),
        router: "sigmoid_bias",
        routedScaling: c.num("routed_scaling_factor", 1),
        // transformers adds no balance loss Kiln's sigmoid router could match.
        auxLossCoef: 0,
      }
      : undefined,
  };
}

const LFM2_LAYOUT: CheckpointLayout = {
  ...DECODER_LAYOUT,
  finalNorm: "model.embedding_norm",
  mixerNorm: "operator_norm",
  ffnNorm: "ffn_norm",
  mamba: "conv",
  mlp: "feed_forward",
  mlpNames: { gate: "w1", up: "w3", down: "w2" },
  moe: "feed_forward",
  router: "gate",
  expertNames: { gate: "w1", up: "w3", down: "w2" },
  selectionBias: { name: "expert_bias", row: false },
  qkNorm: { q: "q_layernorm", k: "k_layernorm" },
  attentionOut: "out_proj",
};

/**
 * The LFM2 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Lfm2ForCausalLM.layout.mamba; // "conv"
 * ```
 */
export const lfm2: ArchitectureSpec = {
  architecture: "Lfm2ForCausalLM",
  modelType: "lfm2",
  summary: "hybrid: gated short convolutions and attention (GQA, per-head QK-norm, RoPE) by " +
    "layer_types, a SwiGLU MLP in every layer",
  layout: LFM2_LAYOUT,
  parse: (c) => lfm2Fields(c, false),
};

/**
 * The LFM2-MoE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Lfm2MoeForCausalLM.layout.selectionBias?.name; // "expert_bias"
 * ```
 */
export const lfm2Moe: ArchitectureSpec = {
  architecture: "Lfm2MoeForCausalLM",
  modelType: "lfm2_moe",
  summary: "hybrid: gated short convolutions and attention by layer_types; routed SwiGLU " +
    "experts chosen by sigmoid + selection bias after num_dense_layers dense layers",
  layout: LFM2_LAYOUT,
  parse: (c) => lfm2Fields(c, true),
};
