/**
 * Jamba (`JambaForCausalLM`): a hybrid. Layer i is attention (no RoPE) where
 * i % attn_layer_period == attn_layer_offset, else a Mamba mixer with RMSNorms
 * on Δ, B and C; its feed-forward is a routed MoE (raw top-k probabilities)
 * where i % expert_layer_period == expert_layer_offset, else a SwiGLU MLP.
 *
 * @module
 */

import type { FfnKind, LayerSpec, MixerKind, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  DECODER_LAYOUT,
  dtRankField,
  moeFields,
  paddingIdxField,
  refuseAttentionExtras,
} from "./common.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Jamba spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.JambaForCausalLM.layout.ffnNorm; // "pre_ff_layernorm"
 * ```
 */
export const jamba: ArchitectureSpec = {
  architecture: "JambaForCausalLM",
  modelType: "jamba",
  summary: "hybrid: attention (no RoPE) every attn_layer_period layers, Mamba elsewhere; " +
    "MoE every expert_layer_period layers, SwiGLU MLP elsewhere",
  layout: {
    ...DECODER_LAYOUT,
    finalNorm: "model.final_layernorm",
    ffnNorm: "pre_ff_layernorm",
    mamba: "mamba",
    mlp: "feed_forward",
    mlpNames: { gate: "gate_proj", up: "up_proj", down: "down_proj" },
    moe: "feed_forward",
    router: "router",
  },

  parse(c): ModelConfig {
    const act = c.hiddenAct();
    refuseAttentionExtras(c, { bias: "Jamba's projections have no biases" });
    // JambaConfig's token id defaults.
    const base = baseFields(c, { bos: 1, eos: 2 });
    const attnPeriod = c.int("attn_layer_period", 8), attnOffset = c.int("attn_layer_offset", 4);
    const expertPeriod = c.int("expert_layer_period", 2);
    const expertOffset = c.int("expert_layer_offset", 1);
    if (attnPeriod === 0 || expertPeriod === 0) {
      throw new RangeError(`${c.file}: layer periods must be > 0`);
    }
    // JambaConfig.validate_architecture refuses an offset at or past its period
    // (it would name no layer: no attention, or no MoE, anywhere).
    for (
      const [offset, period, o, p] of [
        [attnOffset, attnPeriod, "attn_layer_offset", "attn_layer_period"],
        [expertOffset, expertPeriod, "expert_layer_offset", "expert_layer_period"],
      ] as const
    ) {
      if (offset >= period) {
        throw new RangeError(`${c.file}: ${o} ${offset} must be smaller than ${p} ${period}`);
      }
    }
    // HF uses the sparse block only where the layer's expert count exceeds 1.
    const expertsTotal = c.int("num_experts", 16);
    const pattern: LayerSpec[] = Array.from({ length: base.layers }, (_, i) => ({
      mixer: (i % attnPeriod === attnOffset ? "attention" : "mamba") as MixerKind,
      ffn: (i % expertPeriod === expertOffset && expertsTotal > 1 ? "moe" : "mlp") as FfnKind,
    }));
    const expand = c.positive("mamba_expand", 2);
    return {
      architecture: "JambaForCausalLM",
      ...act,
      ...base,
      paddingIdx: paddingIdxField(c, base.vocabSize, 0),
      intermediate: c.int("intermediate_size"),
      normEps: c.nonNegative("rms_norm_eps", 1e-6),
      tieEmbeddings: c.bool("tie_word_embeddings", false),
      pattern,
      // Jamba's eager attention ignores sliding_window (only HF's flash path applies it).
      attention: pattern.some((p) => p.mixer === "attention")
        ? attentionFields(c, base.hidden, { ropeTheta: null, kvHeads: 8 })
        : undefined,
      mamba: pattern.some((p) => p.mixer === "mamba")
        ? {
          stateSize: c.positive("mamba_d_state", 16),
          inner: expand * base.hidden,
          convKernel: c.positive("mamba_d_conv", 4),
          dtRank: dtRankField(c, "mamba_dt_rank", base.hidden),
          projBias: c.bool("mamba_proj_bias", false),
          convBias: c.bool("mamba_conv_bias", true),
          innerNorms: true,
        }
        : undefined,
      moe: pattern.some((p) => p.ffn === "moe")
        ? moeFields(c, "num_experts", { normTopk: false, experts: 16, topK: 2 })
        : undefined,
    };
  },
};
