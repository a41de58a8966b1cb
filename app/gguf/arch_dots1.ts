/**
 * dots.llm1 as GGUF (llama.cpp's `dots1`, `LLM_ARCH_DOTS1`), both ways; heads,
 * head size and RoPE are read and written as for the other attention
 * architectures (`arch_config.ts`, `arch_metadata.ts`), with q and k unpermuted
 * (llama.cpp runs dots1 with NeoX RoPE, transformers' halves).
 *
 * Read as llama.cpp's loader (`load_hparams`, case LLM_ARCH_DOTS1) and graph
 * (`src/models/dots1.cpp`) read a file: `.expert_count`,
 * `.expert_used_count`, `.expert_feed_forward_length`, `.expert_shared_count`
 * (shared experts of that width each, one SwiGLU), `.feed_forward_length` (the
 * dense layers' width), `.leading_dense_block_count` (default 0),
 * `.expert_weights_scale` (absent or 0: 1, as `build_moe_ffn` skips it),
 * `.expert_weights_norm` (absent: false), `.expert_group_count` /
 * `_used_count` (group-limited routing when more than one group), and
 * `.expert_gating_func`, which must be sigmoid (2): llama.cpp's converter
 * writes it from the published config's `scoring_func`; llama.cpp itself
 * aborts on a file without it, which Kiln reads as sigmoid, dots.llm1's only
 * routing. `attention_bias` follows block 0's `attn_q.bias`.
 *
 * Written as the converter (`Dots1Model` on `Qwen2MoeModel`) writes them.
 * Refused, as llama.cpp's dots1 cannot load or run them: grouped-query
 * attention (its loader makes k and v as wide as q), attention biases (it has
 * no `attn_output.bias`), and sliding-window layers (refused for every
 * non-llama architecture by the shared attention keys).
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import type { Keys } from "./arch_keys.ts";
import { expertGroups, GATING_SIGMOID, requireSigmoidGating } from "./arch_config_glm4_moe.ts";

type Json = Record<string, unknown>;

/**
 * The dots.llm1 fields of a `dots1` file's config.json (see the module notes).
 *
 * @example
 * ```ts ignore
 * const config = { ...attentionConfig(k, H), ...dots1Config(k) };
 * config.n_shared_experts; // 2
 * ```
 */
export function dots1Config(k: Keys): Json {
  requireSigmoidGating(k, "dots.llm1");
  const ff = k.num("expert_feed_forward_length");
  const dense = k.opt("leading_dense_block_count") ?? 0;
  const scale = k.opt("expert_weights_scale");
  return {
    architectures: ["Dots1ForCausalLM"],
    model_type: "dots1",
    // Only the dense layers read it; llama.cpp needs it only when there are some.
    intermediate_size: dense > 0
      ? k.num("feed_forward_length")
      : k.opt("feed_forward_length") ?? ff,
    moe_intermediate_size: ff,
    n_routed_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
    n_shared_experts: k.num("expert_shared_count"),
    first_k_dense_replace: dense,
    ...expertGroups(k),
    norm_topk_prob: k.m.optionalBool(k.key("expert_weights_norm")) ?? false,
    routed_scaling_factor: scale === undefined || scale === 0 ? 1 : scale,
    attention_bias: k.has("blk.0.attn_q.bias"),
    // llama.cpp's dots1 attends over the whole context.
    sliding_window: null,
  };
}

/**
 * Writes dots.llm1's keys beyond the attention keys through `u32`, `f32` and
 * `bool` (the `dots1.` prefix added by them), refusing what llama.cpp's dots1
 * cannot hold.
 *
 * @example
 * ```ts ignore
 * dots1Keys(cfg, u32, f32, (k, v) => put(`dots1.${k}`, "bool", v));
 * ```
 */
export function dots1Keys(
  cfg: ModelConfig,
  u32: (key: string, v: number) => void,
  f32: (key: string, v: number) => void,
  bool: (key: string, v: boolean) => void,
): void {
  const a = cfg.attention!;
  if (a.kvHeads !== a.heads) {
    throw new TypeError(
      `config.json: a dots.llm1 with ${a.kvHeads} key/value heads for ${a.heads} query heads ` +
        "has no GGUF form: llama.cpp's dots1 loads k and v as wide as q",
    );
  }
  if (a.qkvBias || a.outBias) {
    throw new TypeError(
      "config.json: a dots.llm1 with attention_bias has no GGUF form: llama.cpp's dots1 has " +
        "no attn_output.bias",
    );
  }
  const moe = cfg.moe;
  if (!moe) {
    throw new TypeError(
      "config.json: a dots.llm1 without MoE layers has no GGUF form: llama.cpp's dots1 needs " +
        "expert_count > 0",
    );
  }
  const ff = moe.ff ?? cfg.intermediate;
  u32("expert_count", moe.experts);
  u32("expert_used_count", moe.topK);
  // llama.cpp refuses keeping every one of several groups: that limits nothing, so one.
  u32("expert_group_count", moe.groups?.count ?? 1);
  u32("expert_group_used_count", moe.groups?.kept ?? 1);
  u32("expert_gating_func", GATING_SIGMOID);
  u32("expert_feed_forward_length", ff);
  u32("leading_dense_block_count", cfg.pattern.findIndex((p) => p.ffn === "moe"));
  u32("expert_shared_count", moe.sharedExpert ? moe.sharedExpert.ff / ff : 0);
  f32("expert_weights_scale", moe.routedScaling ?? 1);
  bool("expert_weights_norm", moe.normTopk);
}
