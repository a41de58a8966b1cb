/**
 * Qwen2-MoE (`Qwen2MoeForCausalLM`): attention with q/k/v biases and RoPE, and
 * a routed SwiGLU MoE (top-k renormalised only with `norm_topk_prob`) plus a
 * shared expert gated per token by σ(w·x). Layer i is sparse iff it is not in
 * `mlp_only_layers` and (i + 1) % decoder_sparse_step == 0; otherwise it has a
 * dense SwiGLU MLP of `intermediate_size`. Sliding windows per layer come from
 * `layer_types` (transformers 5) or `use_sliding_window` with
 * `max_window_layers` (transformers 4: layers from that index on slide).
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  DECODER_LAYOUT,
  layerWindows,
  moeFields,
  refuseAttentionExtras,
} from "./common.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Qwen2-MoE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen2MoeForCausalLM.layout.shared?.gate; // "shared_expert_gate"
 * ```
 */
export const qwen2Moe: ArchitectureSpec = {
  architecture: "Qwen2MoeForCausalLM",
  modelType: "qwen2_moe",
  summary: "attention (GQA, RoPE, q/k/v biases) + routed SwiGLU MoE with a sigmoid-gated " +
    "shared expert; dense MLP layers by decoder_sparse_step / mlp_only_layers",
  layout: {
    ...DECODER_LAYOUT,
    mlp: "mlp",
    mlpNames: { gate: "gate_proj", up: "up_proj", down: "down_proj" },
    moe: "mlp",
    router: "gate",
    shared: { expert: "shared_expert", gate: "shared_expert_gate" },
  },

  parse(c): ModelConfig {
    c.silu();
    refuseAttentionExtras(c, { bias: "Qwen2-MoE's o_proj has no bias; q/k/v biases are qkv_bias" });
    const base = baseFields(c);
    const experts = c.int("num_experts", 60);
    const step = c.positive("decoder_sparse_step", 1);
    const mlpOnly = new Set(c.intList("mlp_only_layers"));
    for (const i of mlpOnly) {
      if (i >= base.layers) {
        throw new RangeError(
          `${c.file}: mlp_only_layers names layer ${i}, num_hidden_layers is ${base.layers}`,
        );
      }
    }
    // transformers 5 writes the per-layer kinds; transformers 4 derives them. Either
    // way sliding_window counts only with use_sliding_window.
    const window = c.bool("use_sliding_window", false) && c.has("sliding_window")
      ? c.int("sliding_window")
      : 0;
    const maxWindowLayers = c.int("max_window_layers", 28);
    const windows = layerWindows(c, base.layers, window) ??
      Array.from(
        { length: base.layers },
        (_, i) => (window > 0 && i >= maxWindowLayers ? window : 0),
      );
    const pattern: LayerSpec[] = windows.map((w, i) => ({
      mixer: "attention",
      ffn: !mlpOnly.has(i) && experts > 0 && (i + 1) % step === 0 ? "moe" : "mlp",
      window: w,
    }));
    const sharedFf = c.int("shared_expert_intermediate_size", 0);
    const sparse = pattern.some((p) => p.ffn === "moe");
    return {
      architecture: "Qwen2MoeForCausalLM",
      ...base,
      intermediate: c.int("intermediate_size"),
      normEps: c.nonNegative("rms_norm_eps", 1e-6),
      tieEmbeddings: c.bool("tie_word_embeddings", false),
      pattern,
      attention: attentionFields(c, base.hidden, {
        ropeTheta: 1e4,
        slidingWindow: 0,
        qkvBias: c.bool("qkv_bias", true),
        kvHeads: 16,
      }),
      moe: sparse
        ? {
          ...moeFields(c, "num_experts", {
            normTopk: c.bool("norm_topk_prob", false),
            experts: 60,
            topK: 4,
          }),
          ff: c.positive("moe_intermediate_size"),
          ...(sharedFf > 0 ? { sharedExpert: { ff: sharedFf, gated: true } } : {}),
        }
        : undefined,
    };
  },
};
