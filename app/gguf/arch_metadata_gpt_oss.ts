/**
 * The `gpt-oss` model keys `kiln quantize` writes for a GPT-OSS config, as
 * llama.cpp's converter (`GptOssModel` on `TextModel.set_gguf_parameters`)
 * writes them: `.attention.head_count_kv`, `.attention.key_length` /
 * `.value_length` (the head size), `.rope.freq_base`, `.rope.scaling.*` (yarn:
 * factor, original context, β fast and slow — which llama.cpp's gpt-oss
 * loader does not read: only 32 and 1 are written), `.attention.sliding_window`
 * and `.expert_feed_forward_length`. Two more, only where the config needs them:
 * `.attention.sliding_window_pattern` (llama.cpp's key, read by its gpt-oss
 * loader) when the sliding layers are not the even ones, and Kiln's own
 * `.rope.scaling.yarn_truncate` false for a yarn that does not round its
 * ramp's ends (openai/gpt-oss's `truncate: false`; llama.cpp ignores the key
 * and rounds them, as it does for every gpt-oss file).
 *
 * A config llama.cpp's gpt-oss graph would compute differently is refused:
 * no attention biases, a SwiGLU limit other than its constant 7, sliding
 * layers no period expresses, windows of different sizes, yarn with an
 * attention factor, mscale or β other than 32 and 1, other RoPE scalings.
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import type { GgufEntry } from "./value.ts";
import { GPT_OSS_SWIGLU_LIMIT, gptOssSlidingLayers } from "./arch_config_gpt_oss.ts";

type Put = (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) => void;

/** GptOssConfig's `sliding_window` default, for a config none of whose layers slide. */
const DEFAULT_WINDOW = 128;

/**
 * Writes the gpt-oss keys of `cfg` (see the module notes) through `u32`,
 * `f32` and `put`; `ctx` is the context length written, yarn's default
 * original context.
 *
 * @example
 * ```ts ignore
 * gptOssKeys(cfg, config, 131072, u32, f32, put);
 * ```
 */
export function gptOssKeys(
  cfg: ModelConfig,
  config: Record<string, unknown>,
  ctx: number,
  u32: (key: string, v: number) => void,
  f32: (key: string, v: number) => void,
  put: Put,
): void {
  refuseGptOssExtras(cfg);
  const a = cfg.attention!;
  u32("attention.head_count_kv", a.kvHeads);
  f32("rope.freq_base", a.ropeTheta);
  u32("attention.key_length", a.headDim);
  u32("attention.value_length", a.headDim);
  const rope = a.rope;
  if (rope?.type === "linear") {
    put("gpt-oss.rope.scaling.type", "string", "linear");
    f32("rope.scaling.factor", rope.factor);
  } else if (rope?.type === "yarn") {
    put("gpt-oss.rope.scaling.type", "string", "yarn");
    f32("rope.scaling.factor", rope.factor);
    u32("rope.scaling.original_context_length", rope.originalMaxPositions ?? ctx);
    f32("rope.scaling.yarn_beta_fast", 32);
    f32("rope.scaling.yarn_beta_slow", 1);
    if (rope.truncate === false) put("gpt-oss.rope.scaling.yarn_truncate", "bool", false);
  }
  const windows = cfg.pattern.map((p) => p.window ?? a.slidingWindow);
  const given = typeof config.sliding_window === "number" ? config.sliding_window : undefined;
  u32("attention.sliding_window", windows.find((w) => w > 0) ?? given ?? DEFAULT_WINDOW);
  const period = slidingPeriod(windows.map((w) => w > 0));
  if (period !== 2) u32("attention.sliding_window_pattern", period);
  u32("expert_feed_forward_length", cfg.moe!.ff ?? cfg.intermediate);
}

/**
 * The period llama.cpp's `set_swa_pattern` needs to slide exactly the layers
 * `slides` marks, 2 (its default) first; a pattern no period gives is refused.
 */
function slidingPeriod(slides: boolean[]): number {
  const L = slides.length;
  const fits = (p: number) => gptOssSlidingLayers(p, L).every((s, i) => s === slides[i]);
  for (const p of [2, 0, 1, ...Array.from({ length: Math.max(0, L - 2) }, (_, i) => i + 3)]) {
    if (fits(p)) return p;
  }
  const kinds = slides.map((s) => (s ? "sliding_attention" : "full_attention")).join(", ");
  throw new TypeError(
    `config.json: GPT-OSS with layer_types [${kinds}] has no GGUF form: llama.cpp's gpt-oss ` +
      "slides layer i when i % p < p − 1 for one period p (by default the even layers)",
  );
}

/** GPT-OSS configs llama.cpp's gpt-oss graph would load or compute differently. */
function refuseGptOssExtras(cfg: ModelConfig): void {
  const a = cfg.attention!;
  const act = cfg.moe?.activation;
  const rope = a.rope;
  const windows = new Set(cfg.pattern.map((p) => p.window ?? a.slidingWindow).filter((w) => w > 0));
  const yarnExtra = rope?.type === "yarn" &&
    (rope.attentionFactor !== undefined || rope.mscale !== undefined ||
      rope.mscaleAllDim !== undefined || (rope.betaFast ?? 32) !== 32 ||
      (rope.betaSlow ?? 1) !== 1);
  const extra = !a.qkvBias || !a.outBias
    ? "attention_bias false (llama.cpp's gpt-oss needs q, k, v and o biases)"
    : act?.kind !== "swiglu_oai" || act.limit !== GPT_OSS_SWIGLU_LIMIT || act.alpha !== 1.702
    ? `swiglu_limit ${
      act?.kind === "swiglu_oai" ? act.limit : "absent"
    } (llama.cpp's gpt-oss clamps at its constant ` +
      `${GPT_OSS_SWIGLU_LIMIT})`
    : windows.size > 1
    ? `sliding windows of ${[...windows].join(" and ")} (llama.cpp has one sliding_window)`
    : yarnExtra
    ? "yarn attention_factor, mscale, or beta_fast / beta_slow other than 32 / 1 " +
      "(llama.cpp's gpt-oss runs yarn with its defaults whatever the file says)"
    : rope && rope.type !== "yarn" && rope.type !== "linear"
    ? `${rope.type} RoPE scaling (Kiln writes linear and yarn)`
    : undefined;
  if (extra) throw new TypeError(`config.json: GPT-OSS with ${extra} has no GGUF form`);
}
