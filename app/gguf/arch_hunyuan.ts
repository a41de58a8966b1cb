/**
 * Hunyuan-A13B as GGUF (llama.cpp's `hunyuan-moe`, `LLM_ARCH_HUNYUAN_MOE`),
 * both ways; heads, head size and RoPE's base are read and written as for the
 * other attention architectures (`arch_config.ts`, `arch_metadata.ts`), q and
 * k unpermuted (llama.cpp runs it with NeoX RoPE) and normed per head after
 * RoPE (`src/models/hunyuan-moe.cpp`).
 *
 * llama.cpp's loader (`load_hparams` and `load_tensors`, case
 * LLM_ARCH_HUNYUAN_MOE) makes the experts `.feed_forward_length` wide and the
 * shared MLP `.expert_shared_feed_forward_length` wide (absent: the same), and
 * requires `.expert_feed_forward_length`; transformers 5 builds all three
 * `intermediate_size` wide, so a file where they differ is refused. Routing is
 * softmax top-k renormalised, as in transformers. The NTK-alpha base of a
 * `dynamic` RoPE with `alpha` is written as the base itself with no scaling,
 * as llama.cpp's converter writes it. Refused when writing: attention biases
 * (llama.cpp's hunyuan-moe has no `attn_output.bias`).
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import { quote } from "../safetensors/header.ts";
import type { Keys } from "./arch_keys.ts";

type Json = Record<string, unknown>;

/**
 * The Hunyuan-A13B fields of a `hunyuan-moe` file's config.json (see the
 * module notes), given the head size `headDim`.
 *
 * @example
 * ```ts ignore
 * const config = { ...attentionConfig(k, H), ...hunyuanConfig(k, 128) };
 * config.moe_topk; // 8
 * ```
 */
export function hunyuanConfig(k: Keys, headDim: number): Json {
  const ff = k.num("feed_forward_length");
  for (const key of ["expert_feed_forward_length", "expert_shared_feed_forward_length"]) {
    const v = k.opt(key);
    if (v !== undefined && v !== ff) {
      throw new RangeError(
        `${k.m.path}: metadata ${quote(k.key(key))} is ${v} but ` +
          `${quote(k.key("feed_forward_length"))} is ${ff}; Hunyuan-A13B's experts and shared ` +
          "MLP are one width (intermediate_size)",
      );
    }
  }
  return {
    architectures: ["HunYuanMoEV1ForCausalLM"],
    model_type: "hunyuan_v1_moe",
    head_dim: headDim,
    intermediate_size: ff,
    num_experts: k.num("expert_count"),
    moe_topk: k.num("expert_used_count"),
    attention_bias: k.has("blk.0.attn_q.bias"),
  };
}

/**
 * Writes Hunyuan-A13B's keys beyond the attention keys through `u32` (the
 * `hunyuan-moe.` prefix added by it), refusing what llama.cpp's hunyuan-moe
 * cannot hold.
 *
 * @example
 * ```ts ignore
 * hunyuanKeys(cfg, (k, v) => put(`hunyuan-moe.${k}`, "u32", v));
 * ```
 */
export function hunyuanKeys(cfg: ModelConfig, u32: (key: string, v: number) => void): void {
  const a = cfg.attention!;
  if (a.qkvBias || a.outBias) {
    throw new TypeError(
      "config.json: a Hunyuan-A13B with attention_bias has no GGUF form: llama.cpp's " +
        "hunyuan-moe has no attn_output.bias",
    );
  }
  const moe = cfg.moe!;
  u32("expert_count", moe.experts);
  u32("expert_used_count", moe.topK);
  u32("expert_feed_forward_length", moe.ff ?? cfg.intermediate);
  u32("expert_shared_feed_forward_length", moe.sharedExpert?.ff ?? cfg.intermediate);
}
