/**
 * Qwen2-MoE (`Qwen2MoeForCausalLM`): attention with q/k/v biases and RoPE, and
 * a routed SwiGLU MoE (top-k renormalised only with `norm_topk_prob`) plus a
 * shared expert gated per token by σ(w·x). Layer i is sparse iff it is not in
 * `mlp_only_layers` and (i + 1) % decoder_sparse_step == 0; otherwise it has a
 * dense SwiGLU MLP of `intermediate_size`. Sliding windows per layer come from
 * `layer_types` (transformers 5 writes them) or, without it, from
 * `use_sliding_window` and `max_window_layers` as transformers 5 derives them
 * (see `derivedWindows`).
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import {
  attentionFields,
  baseFields,
  layerWindows,
  moeFields,
  paddingIdxField,
  QWEN_MOE_LAYOUT,
  refuseAttentionExtras,
} from "./common.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Qwen2-MoE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Qwen2MoeForCausalLM.layout.shared?.gate; // "mlp.shared_expert_gate"
 * ```
 */
export const qwen2Moe: ArchitectureSpec = {
  architecture: "Qwen2MoeForCausalLM",
  modelType: "qwen2_moe",
  summary: "attention (GQA, RoPE, q/k/v biases) + routed SwiGLU MoE with a sigmoid-gated " +
    "shared expert; dense MLP layers by decoder_sparse_step / mlp_only_layers",
  layout: {
    ...QWEN_MOE_LAYOUT,
    shared: { expert: "mlp.shared_expert", gate: "mlp.shared_expert_gate" },
  },

  parse(c): ModelConfig {
    const act = c.hiddenAct();
    refuseAttentionExtras(c, { bias: "Qwen2-MoE's o_proj has no bias; q/k/v biases are qkv_bias" });
    const base = baseFields(c);
    const experts = c.int("num_experts", 60);
    const step = c.positive("decoder_sparse_step", 1);
    // transformers only asks `layer_idx not in mlp_only_layers`: an index past the
    // last layer names no layer and changes nothing.
    const mlpOnly = new Set(c.intList("mlp_only_layers"));
    // Qwen2MoeConfig: sliding_window (default 4096) counts only with use_sliding_window.
    const slide = c.bool("use_sliding_window", false);
    // An explicit null means no window (transformers 4 builds no sliding mask for it).
    const explicit = Object.hasOwn(c.json, "sliding_window");
    const window = !slide
      ? 0
      : explicit
      ? (c.has("sliding_window") ? c.int("sliding_window") : 0)
      : 4096;
    const maxWindowLayers = c.int("max_window_layers", 28);
    const windows = layerWindows(c, base.layers, window) ??
      derivedWindows(base.layers, window, maxWindowLayers);
    const pattern: LayerSpec[] = windows.map((w, i) => ({
      mixer: "attention",
      ffn: !mlpOnly.has(i) && experts > 0 && (i + 1) % step === 0 ? "moe" : "mlp",
      window: w,
    }));
    // Qwen2MoeConfig's defaults: a shared expert of 5632 and experts of 1408.
    const sharedFf = c.int("shared_expert_intermediate_size", 5632);
    const sparse = pattern.some((p) => p.ffn === "moe");
    return {
      architecture: "Qwen2MoeForCausalLM",
      ...act,
      ...base,
      paddingIdx: paddingIdxField(c, base.vocabSize),
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
          ff: c.positive("moe_intermediate_size", 1408),
          ...(sharedFf > 0 ? { sharedExpert: { ff: sharedFf, gated: true } } : {}),
        }
        : undefined,
    };
  },
};

/**
 * The sliding layers of a config without `layer_types`, as transformers 5 (the
 * reference Kiln is checked against) derives them when it loads such a config,
 * whichever release wrote it: Qwen2MoeConfig.__post_init__ slides layer i iff
 * use_sliding_window, i is even and i < max_window_layers. (transformers 4's
 * eager and SDPA masks slid every layer, its flash path the layers from
 * max_window_layers on: the releases disagree, and Kiln follows the current one.)
 */
function derivedWindows(layers: number, window: number, maxWindowLayers: number): number[] {
  return Array.from(
    { length: layers },
    (_, i) => (window > 0 && i % 2 === 0 && i < maxWindowLayers ? window : 0),
  );
}
