/**
 * K-EXAONE as GGUF (llama.cpp's `exaone-moe`, `LLM_ARCH_EXAONE_MOE`), both
 * ways; heads, head size and RoPE are read and written as for the other
 * attention architectures (`arch_config.ts`, `arch_metadata.ts`), q and k
 * unpermuted (NeoX RoPE) and normed per head before RoPE, which only the
 * sliding layers take (`src/models/exaone-moe.cpp`).
 *
 * Which layers slide: `.attention.sliding_window_pattern` as llama.cpp's
 * converter writes it, one bool per block (true: sliding), or a period (every
 * period-th block global). llama.cpp's loader reads only the period form (4
 * when the key is an array or absent); the two agree for the released model's
 * every-fourth-global layout, and Kiln reads the array as written.
 * `.attention.sliding_window` (required), `.leading_dense_block_count` (dense
 * layers), `.expert_count`, `.expert_used_count`,
 * `.expert_feed_forward_length`, `.expert_shared_count` (one SwiGLU of that
 * many experts' width, `.expert_shared_feed_forward_length`),
 * `.expert_weights_scale` and `_norm`, the groups, and `.expert_gating_func`
 * (required by llama.cpp; sigmoid only). `.nextn_predict_layers` blocks at the
 * end are the multi-token-prediction module, skipped as transformers skips it.
 *
 * Written as the converter (`ExaoneMoEModel`) writes them, with the
 * `expert_gating_func` it writes from a config's `scoring_func`. Refused: tied
 * embeddings (llama.cpp requires `output.weight`), dense layers other than the
 * leading ones, and a model without a window (llama.cpp's exaone-moe always
 * slides, and takes RoPE off the global layers).
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import { quote } from "../safetensors/header.ts";
import type { Keys } from "./arch_keys.ts";
import { expertGroups, GATING_SIGMOID, requireSigmoidGating } from "./arch_config_glm4_moe.ts";

type Json = Record<string, unknown>;
type Put = (key: string, type: "array" | "bool" | "string", value: unknown) => void;

/**
 * The K-EXAONE fields of an `exaone-moe` file's config.json (see the module
 * notes), given its block count `B`.
 *
 * @example
 * ```ts ignore
 * const config = { ...attentionConfig(k, H), ...exaoneMoeConfig(k, 48) };
 * config.layer_types; // ["sliding_attention", …, "full_attention"]
 * ```
 */
export function exaoneMoeConfig(k: Keys, B: number): Json {
  requireSigmoidGating(k, "K-EXAONE");
  const nextn = k.opt("nextn_predict_layers") ?? 0;
  if (!Number.isInteger(nextn) || nextn < 0 || nextn >= B) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("nextn_predict_layers"))} is ${nextn}, expected ` +
        `fewer than the ${B} blocks (${quote(k.key("block_count"))})`,
    );
  }
  const L = B - nextn;
  const key = k.key("attention.sliding_window_pattern");
  let sliding: boolean[];
  if (k.m.type(key) === "array") {
    const values = k.m.optionalArray(key)!.values;
    if (values.length < L || !values.every((v) => typeof v === "boolean")) {
      throw new TypeError(
        `${k.m.path}: metadata ${quote(key)} must hold a bool for each of the ${L} layers`,
      );
    }
    sliding = (values as boolean[]).slice(0, L);
  } else {
    const period = k.opt("attention.sliding_window_pattern") ?? 4;
    if (!Number.isInteger(period) || period < 1) {
      throw new RangeError(`${k.m.path}: metadata ${quote(key)} is ${period}, expected >= 1`);
    }
    sliding = Array.from({ length: L }, (_, i) => (i + 1) % period !== 0);
  }
  const baseSwa = k.opt("rope.freq_base_swa");
  if (baseSwa !== undefined && baseSwa !== (k.opt("rope.freq_base") ?? 10000)) {
    throw new TypeError(
      `${k.m.path}: metadata ${quote(k.key("rope.freq_base_swa"))} differs from the base; ` +
        "K-EXAONE's layers share one RoPE base",
    );
  }
  const ff = k.num("expert_feed_forward_length");
  const shared = k.opt("expert_shared_count") ?? 0;
  const sharedFf = k.opt("expert_shared_feed_forward_length");
  if (sharedFf !== undefined && sharedFf !== ff * shared) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("expert_shared_feed_forward_length"))} is ` +
        `${sharedFf}, not ${quote(k.key("expert_shared_count"))} × the experts' width ` +
        `(${shared} × ${ff})`,
    );
  }
  const dense = k.opt("leading_dense_block_count") ?? 0;
  const scale = k.opt("expert_weights_scale");
  return {
    architectures: ["ExaoneMoeForCausalLM"],
    model_type: "exaone_moe",
    num_hidden_layers: L,
    num_nextn_predict_layers: nextn,
    intermediate_size: k.num("feed_forward_length"),
    moe_intermediate_size: ff,
    num_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
    num_shared_experts: shared,
    ...expertGroups(k),
    norm_topk_prob: k.m.optionalBool(k.key("expert_weights_norm")) ?? false,
    routed_scaling_factor: scale === undefined || scale === 0 ? 1 : scale,
    mlp_layer_types: Array.from({ length: L }, (_, i) => (i < dense ? "dense" : "sparse")),
    sliding_window: k.num("attention.sliding_window"),
    layer_types: sliding.map((s) => (s ? "sliding_attention" : "full_attention")),
  };
}

/**
 * Writes K-EXAONE's keys beyond the attention keys through `u32`, `f32` and
 * `put` (the `exaone-moe.` prefix added by `u32` and `f32`; `put` takes whole
 * keys), refusing what llama.cpp's exaone-moe cannot hold.
 *
 * @example
 * ```ts ignore
 * exaoneMoeKeys(cfg, u32, f32, (k, t, v) => put(`exaone-moe.${k}`, t, v));
 * ```
 */
export function exaoneMoeKeys(
  cfg: ModelConfig,
  u32: (key: string, v: number) => void,
  f32: (key: string, v: number) => void,
  put: Put,
): void {
  if (cfg.tieEmbeddings) {
    throw new TypeError(
      "config.json: a K-EXAONE with tie_word_embeddings has no GGUF form: llama.cpp's " +
        "exaone-moe requires output.weight",
    );
  }
  const windows = cfg.pattern.map((p) => p.window ?? 0);
  const window = Math.max(...windows);
  if (window === 0 || windows.some((w) => w !== 0 && w !== window)) {
    throw new TypeError(
      "config.json: a K-EXAONE without one sliding window has no GGUF form: llama.cpp's " +
        "exaone-moe slides its local layers by one window and takes RoPE off the others",
    );
  }
  const dense = cfg.pattern.findIndex((p) => p.ffn === "moe");
  if (dense < 0 || cfg.pattern.slice(dense).some((p) => p.ffn !== "moe")) {
    throw new TypeError(
      "config.json: K-EXAONE's dense layers have a GGUF form only as the leading ones " +
        "(llama.cpp's leading_dense_block_count), with experts after them",
    );
  }
  const moe = cfg.moe!;
  const ff = moe.ff ?? cfg.intermediate;
  const shared = moe.sharedExpert ? moe.sharedExpert.ff / ff : 0;
  u32("expert_count", moe.experts);
  u32("expert_used_count", moe.topK);
  u32("expert_group_count", moe.groups?.count ?? 1);
  u32("expert_group_used_count", moe.groups?.kept ?? 1);
  u32("expert_gating_func", GATING_SIGMOID);
  u32("attention.sliding_window", window);
  put("attention.sliding_window_pattern", "array", {
    type: "bool",
    values: windows.map((w) => w !== 0),
  });
  u32("expert_feed_forward_length", ff);
  u32("expert_shared_count", shared);
  u32("expert_shared_feed_forward_length", ff * shared);
  f32("expert_weights_scale", moe.routedScaling ?? 1);
  put("expert_weights_norm", "bool", moe.normTopk);
  u32("leading_dense_block_count", dense);
  u32("nextn_predict_layers", 0);
  // The converter states "none" (a scaled RoPE has its type written with the attention keys).
  if (!cfg.attention!.rope) put("rope.scaling.type", "string", "none");
}
