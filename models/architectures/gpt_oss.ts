/**
 * GPT-OSS (`GptOssForCausalLM`, openai/gpt-oss-20b and -120b): every layer is
 * grouped-query attention with biases, yarn RoPE and a learned sink logit per
 * head, sliding (`sliding_window`) or full as `layer_types` says (by default
 * even layers slide), followed by routed experts: a router with a bias, a
 * softmax over the top-k logits, and experts with biases whose activation is
 * the clamped SwiGLU `(clamp(up, ±limit) + 1) · g·σ(1.702·g)`, g = min(gate,
 * limit). The checkpoint stores each layer's experts stacked and transposed,
 * gate and up interleaved column by column (`experts.gate_up_proj`
 * `[E, hidden, 2·I]`, `experts.down_proj` `[E, I, hidden]`), or as MXFP4
 * blocks (`*_blocks`, `*_scales`, the published checkpoints): Kiln reads each
 * expert's projections as parts of them ({@linkcode FusedTensor}).
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import { attentionFields, baseFields, DECODER_LAYOUT, layerWindows, moeFields } from "./common.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec, CheckpointLayout, FusedTensor } from "./spec.ts";

const LAYOUT: CheckpointLayout = {
  ...DECODER_LAYOUT,
  moe: "mlp",
  router: "router",
  experts: "experts",
  expertNames: { gate: "gate_proj", up: "up_proj", down: "down_proj" },
  expertBiases: { gate: "gate_proj_bias", up: "up_proj_bias", down: "down_proj_bias" },
};

/** The stored tensors' names inside `mlp.experts` and the names of the parts Kiln reads. */
const GATE_UP = "gate_up_proj", DOWN = "down_proj";

function windows(c: ConfigReader, layers: number): number[] {
  const window = c.has("sliding_window") ? c.positive("sliding_window") : 0;
  const given = layerWindows(c, layers, window);
  if (given) return given;
  // GptOssConfig's default: layer i slides when i is even.
  if (window <= 0) {
    throw new RangeError(
      `${c.file}: GPT-OSS's default layer_types slide every second layer, but sliding_window ` +
        "is not set",
    );
  }
  return Array.from({ length: layers }, (_, i) => (i % 2 === 0 ? window : 0));
}

function gptOssFields(c: ConfigReader): ModelConfig {
  // GptOssExperts computes its own activation whatever hidden_act says.
  c.absent("mlp_bias", "its experts' biases are gate_up_proj_bias and down_proj_bias");
  const base = baseFields(c);
  const perLayer = windows(c, base.layers);
  const pattern: LayerSpec[] = perLayer.map((window) => ({
    mixer: "attention",
    ffn: "moe",
    window,
  }));
  const bias = c.bool("attention_bias", true);
  const ff = c.positive("intermediate_size", 2880);
  const limit = c.positive("swiglu_limit", 7);
  return {
    architecture: "GptOssForCausalLM",
    ...base,
    intermediate: ff,
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern,
    attention: {
      // GptOssConfig's head_dim is 64 unless given (null: hidden / heads).
      ...attentionFields(c, base.hidden, {
        ropeTheta: 150000,
        qkvBias: bias,
        outBias: bias,
        headDim: 64,
      }),
      sinks: true,
    },
    moe: {
      // Softmax over the top-k logits: the top-k softmax probabilities, renormalised.
      ...moeFields(c, "num_local_experts", { normTopk: true, experts: 128, topK: 4 }),
      ff,
      routerBias: true,
      expertBias: true,
      activation: { kind: "swiglu_oai", alpha: 1.702, limit },
    },
  };
}

function gptOssFused(cfg: ModelConfig): FusedTensor[] {
  const E = cfg.moe!.experts, ff = cfg.moe!.ff!, d = cfg.hidden;
  const n = LAYOUT.expertNames;
  return cfg.pattern.flatMap((_, i) => {
    const p = `${LAYOUT.layers}.${i}.${LAYOUT.moe}.${LAYOUT.experts}`;
    const experts = Array.from({ length: E }, (_, e) => e);
    return [
      {
        name: `${p}.${GATE_UP}`,
        shape: [E, d, 2 * ff],
        parts: experts.flatMap((e) => [`${p}.${e}.${n.gate}.weight`, `${p}.${e}.${n.up}.weight`]),
        partShape: [ff, d],
        packing: { groups: E, every: 2, transposed: true },
      },
      {
        name: `${p}.${DOWN}`,
        shape: [E, ff, d],
        parts: experts.map((e) => `${p}.${e}.${n.down}.weight`),
        partShape: [d, ff],
        packing: { groups: E, every: 1, transposed: true },
      },
      {
        name: `${p}.${GATE_UP}_bias`,
        shape: [E, 2 * ff],
        parts: [`${p}.${LAYOUT.expertBiases!.gate}`, `${p}.${LAYOUT.expertBiases!.up}`],
        partShape: [E, ff],
        packing: { groups: 1, every: 2, transposed: false },
      },
    ];
  });
}

/**
 * The GPT-OSS spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.GptOssForCausalLM.layout.router; // "router"
 * ```
 */
export const gptOss: ArchitectureSpec = {
  architecture: "GptOssForCausalLM",
  modelType: "gpt_oss",
  summary: "attention (GQA, yarn RoPE, sinks, alternating sliding window) + routed experts " +
    "with biases and a clamped SwiGLU",
  layout: LAYOUT,
  parse: gptOssFields,
  fused: gptOssFused,
};
