/**
 * ERNIE 4.5's GGUF metadata (llama.cpp's `ernie4_5` and `ernie4_5-moe`) as
 * its config.json, read as llama.cpp's loader and graph read it: heads and
 * RoPE as llama (`attention.key_length` the head size, default hidden /
 * heads; RoPE on adjacent pairs, as the converter leaves q and k); for the
 * MoE class `.expert_count`, `.expert_used_count`,
 * `.expert_feed_forward_length`, `.interleave_moe_layer_step` (required),
 * `.leading_dense_block_count` (default 0) — layer i routes when i ≥ the
 * leading count and (i + 1) is a multiple of the step, through every last
 * layer — and `.expert_shared_feed_forward_length` (absent or 0: no shared
 * experts; llama.cpp sizes the shared SwiGLU by it, Kiln by a whole number of
 * experts of `.expert_feed_forward_length`). Routing is softmax plus the
 * selection bias `exp_probs_b`, weights renormalised and never scaled (the
 * graph's `build_moe_ffn` call), whatever `.expert_gating_func` or
 * `.expert_weights_scale` say. Files with q/k/v biases are refused: their
 * checkpoints' `use_bias` puts biases on the MLPs too, which llama.cpp's
 * ERNIE has no tensors for.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import type { Keys } from "./arch_keys.ts";

type Json = Record<string, unknown>;

/**
 * The config.json fields of an `ernie4_5` / `ernie4_5-moe` file beyond the
 * heads and RoPE (`attention` holds those, as `attentionConfig` read them),
 * for `L` layers of width `H`.
 *
 * @example
 * ```ts ignore
 * const c = ernieConfig(keys, attentionConfig(keys, 2560), 28, 2560);
 * c.moe_layer_interval; // 1
 * ```
 */
export function ernieConfig(k: Keys, attention: Json, L: number, H: number): Json {
  const dense = k.arch === "ernie4_5";
  for (const p of ["q", "k", "v"]) {
    if (k.has(`blk.0.attn_${p}.bias`)) {
      throw new TypeError(
        `${k.m.path}: tensor "blk.0.attn_${p}.bias": an ERNIE 4.5 with use_bias also has MLP ` +
          `biases, which ${k.arch} files cannot hold`,
      );
    }
  }
  const heads = attention.num_attention_heads as number;
  const out: Json = {
    ...attention,
    architectures: [dense ? "Ernie4_5ForCausalLM" : "Ernie4_5_MoeForCausalLM"],
    model_type: dense ? "ernie4_5" : "ernie4_5_moe",
    // Stated, not left to the class default (the dense class's is 128).
    head_dim: attention.head_dim ?? H / heads,
    intermediate_size: k.num("feed_forward_length"),
    use_bias: false,
  };
  if (dense) return out;
  const ff = k.num("expert_feed_forward_length");
  const sharedFf = k.opt("expert_shared_feed_forward_length") ?? 0;
  if (sharedFf % ff !== 0) {
    throw new RangeError(
      `${k.m.path}: metadata ${
        quote(k.key("expert_shared_feed_forward_length"))
      } is ${sharedFf}, ` +
        `not a whole number of experts of ${quote(k.key("expert_feed_forward_length"))} ${ff}`,
    );
  }
  const step = k.num("interleave_moe_layer_step");
  if (!Number.isInteger(step) || step < 1) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("interleave_moe_layer_step"))} is ${step}, expected ` +
        "an integer ≥ 1",
    );
  }
  const lead = k.opt("leading_dense_block_count") ?? 0;
  for (let i = lead; i < L; i++) {
    if ((i + 1) % step === 0 && !k.has(`blk.${i}.exp_probs_b.bias`)) {
      throw new TypeError(
        `${k.m.path}: MoE block ${i} has no tensor "blk.${i}.exp_probs_b.bias" (ERNIE 4.5's ` +
          "expert selection bias, moe_statics.e_score_correction_bias)",
      );
    }
  }
  return {
    ...out,
    moe_num_experts: k.num("expert_count"),
    moe_k: k.num("expert_used_count"),
    moe_intermediate_size: ff,
    moe_num_shared_experts: sharedFf / ff,
    moe_layer_start_index: lead,
    moe_layer_end_index: -1,
    moe_layer_interval: step,
  };
}
