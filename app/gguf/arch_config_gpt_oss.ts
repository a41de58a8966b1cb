/**
 * The Hugging Face config of a `gpt-oss` GGUF file (OpenAI's GPT-OSS, llama.cpp's
 * `LLM_ARCH_OPENAI_MOE`), as llama.cpp's loader (`src/models/openai-moe.cpp`
 * `load_arch_hparams`, the generic part of `load_hparams`) and graph read it:
 *
 * - `.attention.head_count`, `.attention.head_count_kv` (default: head_count),
 *   `.attention.key_length` (head size; default embedding_length / head_count;
 *   `.value_length` and `.rope.dimension_count` must equal it: the graph splits
 *   heads by the rotary size), `.expert_count`, `.expert_used_count`,
 *   `.expert_feed_forward_length` (the experts' width; required);
 * - `.attention.sliding_window` (required) and which layers slide: llama.cpp's
 *   `set_swa_pattern(p)` with p = `.attention.sliding_window_pattern` (a single
 *   u32; absent, or an array, which that loader skips: 2), so layer i slides when
 *   p is 0 or i % p < p − 1 — by default the even layers, as GptOssConfig's
 *   `layer_types`;
 * - RoPE: `.rope.freq_base` (default 10000; `.rope.freq_base_swa`, when given,
 *   must equal it), `.rope.scaling.type` (absent: linear when a factor is given,
 *   as llama.cpp reads it), `.rope.scaling.factor`,
 *   `.rope.scaling.original_context_length` (default context_length). llama.cpp's
 *   gpt-oss never reads `.rope.scaling.yarn_beta_fast` / `_slow` /
 *   `_ext_factor` / `_attn_factor` / `_log_multiplier` (its converter writes the
 *   betas anyway), so yarn runs with β 32 and 1, and ggml always rounds the
 *   ramp's ends outwards (transformers' `truncate: true`, where
 *   openai/gpt-oss's config says false) — unless Kiln's own
 *   `.rope.scaling.yarn_truncate` is false (written by `kiln quantize` for such
 *   a config; llama.cpp ignores it);
 * - the router bias, the experts' biases, the q/k/v/o biases and the attention
 *   sinks are tensors (all required by llama.cpp; `attention_bias` is read from
 *   `blk.0.attn_q.bias`), and the clamped SwiGLU's limit is llama.cpp's
 *   constant 7 (`build_moe_ffn`, LLM_FFN_SWIGLU_OAI_MOE).
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import type { Keys } from "./arch_keys.ts";

type Json = Record<string, unknown>;

/**
 * The limit of the clamped SwiGLU llama.cpp's gpt-oss graph applies (a constant
 * there, as its α of 1.702).
 *
 * @example
 * ```ts
 * import { GPT_OSS_SWIGLU_LIMIT } from "./arch_config_gpt_oss.ts";
 * GPT_OSS_SWIGLU_LIMIT; // 7
 * ```
 */
export const GPT_OSS_SWIGLU_LIMIT = 7;

/**
 * Which of `layers` layers slide in a gpt-oss file whose sliding-window
 * period is `period` (llama.cpp's `set_swa_pattern` without dense_first):
 * every layer for 0, else layer i when i % period < period − 1.
 *
 * @example
 * ```ts
 * import { gptOssSlidingLayers } from "./arch_config_gpt_oss.ts";
 * gptOssSlidingLayers(2, 4); // [true, false, true, false]
 * gptOssSlidingLayers(1, 2); // [false, false]
 * ```
 */
export function gptOssSlidingLayers(period: number, layers: number): boolean[] {
  return Array.from({ length: layers }, (_, i) => period === 0 || i % period < period - 1);
}

/** `.attention.sliding_window_pattern` as llama.cpp's gpt-oss loader takes it. */
function swaPeriod(k: Keys): number {
  const key = k.key("attention.sliding_window_pattern");
  // get_key_or_arr(kid, uint32_t&, required = false) skips an array.
  if (!k.m.has(key) || k.m.type(key) === "array") return 2;
  const p = k.m.number(key);
  if (!Number.isInteger(p) || p < 0) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(key)} is ${p}, expected a period of layers (0 or more)`,
    );
  }
  return p;
}

/**
 * The config.json object of a `gpt-oss` file (see the module notes for the
 * keys read), given its layer count `L`, embedding width `H` and context
 * length `ctx`.
 *
 * @example
 * ```ts ignore
 * const config = gptOssConfig(keys, 24, 2880, 131072);
 * config.layer_types; // ["sliding_attention", "full_attention", …]
 * ```
 */
export function gptOssConfig(k: Keys, L: number, H: number, ctx: number): Json {
  const heads = k.num("attention.head_count");
  const kvs = new Set(k.perLayer("attention.head_count_kv", L) ?? [heads]);
  if (kvs.size > 1) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("attention.head_count_kv"))} gives layers ` +
        `different KV head counts (${[...kvs].join(", ")}); gpt-oss's are all equal`,
    );
  }
  const headDim = k.opt("attention.key_length") ?? H / heads;
  for (const key of ["attention.value_length", "rope.dimension_count"]) {
    const v = k.opt(key);
    if (v !== undefined && v !== headDim) {
      throw new RangeError(
        `${k.m.path}: metadata ${quote(k.key(key))} is ${v} but the head size is ${headDim}: ` +
          "llama.cpp's gpt-oss splits q, k and v into heads of the rotary size, which must " +
          "be the key and value size",
      );
    }
  }
  const window = k.num("attention.sliding_window");
  const slides = gptOssSlidingLayers(swaPeriod(k), L);
  if (slides.some((s) => s) && !(window > 0)) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("attention.sliding_window"))} is ${window}, but ` +
        `layers ${slides.flatMap((s, i) => (s ? [i] : [])).join(", ")} slide`,
    );
  }
  return {
    architectures: ["GptOssForCausalLM"],
    model_type: "gpt_oss",
    num_attention_heads: heads,
    num_key_value_heads: [...kvs][0],
    head_dim: headDim,
    intermediate_size: k.num("expert_feed_forward_length"),
    num_local_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
    sliding_window: window > 0 ? window : null,
    layer_types: slides.map((s) => (s ? "sliding_attention" : "full_attention")),
    attention_bias: k.has("blk.0.attn_q.bias"),
    swiglu_limit: GPT_OSS_SWIGLU_LIMIT,
    ...gptOssRope(k, ctx),
    max_position_embeddings: ctx,
  };
}

/** `rope_theta` and `rope_scaling` of a gpt-oss file. */
function gptOssRope(k: Keys, ctx: number): Json {
  const base = k.opt("rope.freq_base") ?? 10000;
  const swa = k.opt("rope.freq_base_swa");
  if (swa !== undefined && swa !== base) {
    throw new TypeError(
      `${k.m.path}: metadata ${quote(k.key("rope.freq_base_swa"))} ${swa} differs from ` +
        `${quote(k.key("rope.freq_base"))} ${base}; GPT-OSS has one RoPE base for all layers`,
    );
  }
  // Generic in llama.cpp's loader: a multiplier of cos and sin transformers' GPT-OSS lacks.
  const attn = k.opt("rope.scaling.attn_factor");
  if (attn !== undefined && attn !== 1) {
    throw new TypeError(
      `${k.m.path}: metadata ${quote(k.key("rope.scaling.attn_factor"))} is ${attn}; Kiln ` +
        "reads gpt-oss files without one (1)",
    );
  }
  const type = k.m.optionalString(k.key("rope.scaling.type"));
  const raw = k.opt("rope.scaling.factor") ?? k.opt("rope.scale_linear");
  // llama.cpp takes 0 (or no key) as no scaling: freq_scale 1.
  const factor = raw === undefined || raw === 0 ? 1 : raw;
  if (type === "yarn") {
    const truncate = k.m.optionalBool(k.key("rope.scaling.yarn_truncate"));
    return {
      rope_theta: base,
      rope_scaling: {
        rope_type: "yarn",
        factor,
        original_max_position_embeddings: k.opt("rope.scaling.original_context_length") ?? ctx,
        beta_fast: 32,
        beta_slow: 1,
        truncate: truncate !== false,
      },
    };
  }
  if (type === "none" || ((type === undefined || type === "linear") && factor === 1)) {
    return { rope_theta: base };
  }
  if (type === undefined || type === "linear") {
    return { rope_theta: base, rope_scaling: { rope_type: "linear", factor } };
  }
  throw new TypeError(
    `${k.m.path}: metadata ${quote(k.key("rope.scaling.type"))} is ${quote(type)}; Kiln reads ` +
      'gpt-oss files with "none", "linear" and "yarn"',
  );
}
