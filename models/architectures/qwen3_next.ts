/**
 * Qwen3-Next (`Qwen3NextForCausalLM`, Qwen/Qwen3-Next-80B-A3B): a hybrid whose
 * `linear_attention` layers run Gated DeltaNet (`models/gated_delta_net.ts`)
 * and whose `full_attention` layers (every `full_attention_interval`-th, 4 by
 * default) run gated attention — GQA with a per-head QK-norm, a partial RoPE
 * (a quarter of each head unless `partial_rotary_factor` says otherwise) and
 * the output multiplied by σ of a gate that q_proj yields beside each head's
 * query. Every layer's feed-forward is Qwen2-MoE's routed SwiGLU experts with a
 * sigmoid-gated shared expert, or a dense MLP by `decoder_sparse_step` /
 * `mlp_only_layers`. The decoder's RMSNorms (and the QK-norms) scale by
 * `1 + weight`; the DeltaNet's gated norm by its weight. The checkpoint's
 * multi-token-prediction `mtp.*` tensors are skipped, as transformers does.
 *
 * @module
 */

import type { AttentionConfig, LayerSpec, MambaConfig, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  moeFields,
  paddingIdxField,
  QWEN_MOE_LAYOUT,
} from "./common.ts";
import { show } from "./reader.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * `layer_types` as transformers 5 writes it, else every `full_attention_interval`-th
 * layer attends (Qwen3-Next's and Qwen3.5's configs alike).
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { hybridMixers } from "./qwen3_next.ts";
 * hybridMixers(new ConfigReader({}, "config.json", "x"), 4); // ["mamba", "mamba", "mamba", "attention"]
 * ```
 */
export function hybridMixers(c: ConfigReader, layers: number): ("attention" | "mamba")[] {
  const types = c.strList("layer_types");
  if (!types) {
    const every = c.positive("full_attention_interval", 4);
    return Array.from({ length: layers }, (_, i) => ((i + 1) % every ? "mamba" : "attention"));
  }
  if (types.length !== layers) {
    throw new RangeError(
      `${c.file}: layer_types has ${types.length} entries, num_hidden_layers is ${layers}`,
    );
  }
  return types.map((t, i) => {
    if (t !== "linear_attention" && t !== "full_attention") {
      throw new TypeError(
        `${c.file}: layer_types[${i}] ${show(t)} is not "linear_attention" or "full_attention"`,
      );
    }
    return t === "full_attention" ? "attention" : "mamba";
  });
}

/**
 * The Gated DeltaNet's sizes as a {@linkcode MambaConfig} (`split`: Qwen3.5's
 * separate projections).
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { gatedDeltaFields } from "./qwen3_next.ts";
 * gatedDeltaFields(new ConfigReader({}, "config.json", "x"), false).gatedDelta!.valueHeads; // 32
 * ```
 */
export function gatedDeltaFields(c: ConfigReader, split: boolean): MambaConfig {
  const keyHeads = c.positive("linear_num_key_heads", 16);
  const valueHeads = c.positive("linear_num_value_heads", 32);
  if (valueHeads % keyHeads !== 0) {
    throw new RangeError(
      `${c.file}: linear_num_value_heads ${valueHeads} must be a multiple of ` +
        `linear_num_key_heads ${keyHeads}`,
    );
  }
  const keyDim = c.positive("linear_key_head_dim", 128);
  const valueDim = c.positive("linear_value_head_dim", 128);
  return {
    stateSize: keyDim,
    inner: valueHeads * valueDim,
    convKernel: c.positive("linear_conv_kernel_dim", 4),
    dtRank: valueHeads,
    projBias: false,
    convBias: false,
    innerNorms: false,
    gatedDelta: { keyHeads, valueHeads, keyDim, valueDim, ...(split ? { split } : {}) },
  };
}

/**
 * The gated attention of Qwen3-Next and Qwen3.5: per-head QK-norm, a quarter of
 * each head under RoPE unless `partial_rotary_factor` says otherwise, q_proj's
 * sigmoid gate on the output; `kvHeads` is the class's default.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { gatedAttention } from "./qwen3_next.ts";
 * const c = new ConfigReader({ num_attention_heads: 2 }, "config.json", "x");
 * gatedAttention(c, 32, 2).rotaryDim; // 64 (a quarter of head_dim 256)
 * ```
 */
export function gatedAttention(c: ConfigReader, hidden: number, kvHeads: number): AttentionConfig {
  const bias = c.bool("attention_bias", false);
  return {
    ...attentionFields(c, hidden, {
      ropeTheta: 1e4,
      qkvBias: bias,
      outBias: bias,
      qkNorm: "head",
      kvHeads,
      headDim: 256,
      // Qwen3NextConfig.__post_init__'s default (Qwen3.5's too).
      partialRotary: 0.25,
    }),
    outputGate: true,
  };
}

function qwen3NextFields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  c.absent("use_sliding_window", "its attention layers attend to the whole context");
  const base = baseFields(c);
  const experts = c.int("num_experts", 512);
  const step = c.positive("decoder_sparse_step", 1);
  const mlpOnly = new Set(c.intList("mlp_only_layers"));
  const kinds = hybridMixers(c, base.layers);
  const pattern: LayerSpec[] = kinds.map((mixer, i) => ({
    mixer,
    ffn: !mlpOnly.has(i) && experts > 0 && (i + 1) % step === 0 ? "moe" : "mlp",
  }));
  const sharedFf = c.int("shared_expert_intermediate_size", 512);
  return {
    architecture: "Qwen3NextForCausalLM",
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize),
    intermediate: c.int("intermediate_size", 5632),
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    normOffset: 1,
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern,
    attention: kinds.includes("attention") ? gatedAttention(c, base.hidden, 2) : undefined,
    mamba: kinds.includes("mamba") ? gatedDeltaFields(c, false) : undefined,
    moe: pattern.some((p) => p.ffn === "moe")
      ? {
        ...moeFields(c, "num_experts", {
          normTopk: c.bool("norm_topk_prob", true),
          experts: 512,
          topK: 10,
        }),
        ff: c.positive("moe_intermediate_size", 512),
        ...(sharedFf > 0 ? { sharedExpert: { ff: sharedFf, gated: true } } : {}),
      }
      : undefined,
  };
}

/**
 * The Qwen3-Next spec: Qwen2-MoE's names, the DeltaNet under `linear_attn`.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen3NextForCausalLM.layout.mamba; // "linear_attn"
 * ```
 */
export const qwen3Next: ArchitectureSpec = {
  architecture: "Qwen3NextForCausalLM",
  modelType: "qwen3_next",
  summary: "hybrid: Gated DeltaNet linear attention and gated attention (GQA, partial RoPE, " +
    "QK-norm) every full_attention_interval layers; routed SwiGLU MoE with a gated shared expert",
  layout: {
    ...QWEN_MOE_LAYOUT,
    mamba: "linear_attn",
    shared: { expert: "mlp.shared_expert", gate: "mlp.shared_expert_gate" },
  },
  parse: qwen3NextFields,
  ignoredTensors: /^mtp\./,
};
