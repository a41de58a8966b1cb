/**
 * MiniMax-M2 as GGUF (llama.cpp's `minimax-m2`, `LLM_ARCH_MINIMAX_M2`), both
 * ways; heads, head size and RoPE's base and scaling are read and written as
 * for the other attention architectures (`arch_config.ts`,
 * `arch_metadata.ts`), q and k unpermuted (llama.cpp runs it with NeoX RoPE).
 *
 * Read as llama.cpp's loader (`load_hparams`, case LLM_ARCH_MINIMAX_M2) and
 * graph (`src/models/minimax-m2.cpp`) read a file: `.rope.dimension_count`
 * is the rotated share of each head (`rotary_dim`; absent: the whole head),
 * `.expert_count`, `.expert_used_count`, `.expert_feed_forward_length` (the
 * experts' width, which llama.cpp takes from `.feed_forward_length`: both are
 * `intermediate_size`), the weights always renormalised, and
 * `.expert_gating_func`, which must be sigmoid (2): the converter writes it
 * from the published config's `scoring_func`, and llama.cpp aborts on a file
 * without it, which Kiln reads as sigmoid, MiniMax-M2's only routing. An
 * `.expert_weights_scale` other than 1 is refused (MiniMax-M2 has none).
 *
 * Written as the converter (`MiniMaxM2Model`) writes them. Refused, as
 * llama.cpp's minimax-m2 cannot load them: tied embeddings (it requires
 * `output.weight`) and a rotary share over an odd count of values.
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import { quote } from "../safetensors/header.ts";
import type { Keys } from "./arch_keys.ts";
import { GATING_SIGMOID, requireSigmoidGating } from "./arch_config_glm4_moe.ts";

type Json = Record<string, unknown>;

/**
 * The MiniMax-M2 fields of a `minimax-m2` file's config.json (see the module
 * notes), given the head size `headDim`.
 *
 * @example
 * ```ts ignore
 * const config = { ...attentionConfig(k, H, undefined, true), ...minimaxM2Config(k, 128) };
 * config.rotary_dim; // 64
 * ```
 */
export function minimaxM2Config(k: Keys, headDim: number): Json {
  requireSigmoidGating(k, "MiniMax-M2");
  const scale = k.opt("expert_weights_scale");
  if (scale !== undefined && scale !== 0 && scale !== 1) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("expert_weights_scale"))} is ${scale}; MiniMax-M2 ` +
        "does not scale its experts' weights",
    );
  }
  const rot = k.opt("rope.dimension_count") ?? headDim;
  if (!Number.isInteger(rot) || rot < 2 || rot % 2 !== 0 || rot > headDim) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("rope.dimension_count"))} is ${rot}, expected an ` +
        `even number of rotated values from 2 to the head size ${headDim}`,
    );
  }
  const ff = k.num("expert_feed_forward_length");
  return {
    architectures: ["MiniMaxM2ForCausalLM"],
    model_type: "minimax_m2",
    // MiniMaxM2Config's head_dim is 128 unless given, never hidden / heads: always given.
    head_dim: headDim,
    rotary_dim: rot,
    // As MiniMaxM2Config writes it beside rotary_dim.
    partial_rotary_factor: rot / headDim,
    intermediate_size: ff,
    num_local_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
  };
}

/**
 * Writes MiniMax-M2's keys beyond the attention keys through `u32` (the
 * `minimax-m2.` prefix added by it), refusing what llama.cpp's minimax-m2
 * cannot hold.
 *
 * @example
 * ```ts ignore
 * minimaxM2Keys(cfg, (k, v) => put(`minimax-m2.${k}`, "u32", v));
 * ```
 */
export function minimaxM2Keys(cfg: ModelConfig, u32: (key: string, v: number) => void): void {
  if (cfg.tieEmbeddings) {
    throw new TypeError(
      "config.json: a MiniMax-M2 with tie_word_embeddings has no GGUF form: llama.cpp's " +
        "minimax-m2 requires output.weight",
    );
  }
  const a = cfg.attention!;
  if (a.ropeFreqDim) {
    throw new TypeError(
      `config.json: a RoPE over an odd ${a.ropeFreqDim} values a head has no GGUF form: ` +
        "llama.cpp's rope.dimension_count rotates that many with frequencies over the same count",
    );
  }
  const moe = cfg.moe!;
  u32("expert_count", moe.experts);
  u32("expert_used_count", moe.topK);
  u32("expert_gating_func", GATING_SIGMOID);
  u32("expert_feed_forward_length", moe.ff ?? cfg.intermediate);
  u32("rope.dimension_count", a.rotaryDim ?? a.headDim);
}
