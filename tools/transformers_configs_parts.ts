/**
 * The shared pieces of the random config generators of
 * `transformers_configs.ts`: a seeded dice, and the fields many families draw
 * alike (RoPE, attention heads, vocabulary and token ids, expert counts).
 *
 * @module
 */

import { mulberry32 } from "../core/random.ts";

/**
 * A seeded source of random choices.
 *
 * @example
 * ```ts
 * import { Dice } from "./transformers_configs_parts.ts";
 * new Dice(7).pick([1, 2, 3]); // the same choice for seed 7 every time
 * ```
 */
export class Dice {
  readonly #r: () => number;
  constructor(seed: number) {
    this.#r = mulberry32(seed);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.#r() < p;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#r() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#r() * xs.length)];
  }
}

/**
 * The divisors of `n`, ascending.
 *
 * @example
 * ```ts
 * import { divisors } from "./transformers_configs_parts.ts";
 * divisors(12); // [1, 2, 3, 4, 6, 12]
 * ```
 */
export const divisors = (n: number): number[] =>
  Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);

/**
 * RoPE parameters, as transformers 5 writes them (base inside `rope_parameters`).
 *
 * @example
 * ```ts
 * import { Dice, rope } from "./transformers_configs_parts.ts";
 * rope(new Dice(1)).rope_type; // "default", "yarn", …
 * ```
 */
export function rope(d: Dice): Record<string, unknown> {
  // Small bases make position matter within a 40-token prompt, so a wrong
  // frequency shows in the logits rather than hiding below the tolerance.
  const rope_theta = d.pick([50, 300, 1e4, 1e6]);
  const type = d.pick([
    "default",
    "default",
    "linear",
    "yarn",
    "yarn",
    "yarn",
    "llama3",
    "llama3",
    "dynamic",
    "longrope",
  ]);
  const p: Record<string, unknown> = { rope_type: type, rope_theta };
  if (type === "linear" || type === "dynamic") p.factor = d.pick([1.5, 2, 4, 8]);
  if (type === "yarn") {
    // Without a factor transformers derives it from the two context lengths.
    p.factor = d.chance(0.15) ? null : d.pick([2, 4, 8, 16, 40]);
    p.original_max_position_embeddings = d.pick([16, 32, 64, 256, 4096]);
    if (d.chance(0.4)) p.beta_fast = d.pick([4, 8, 16, 64]);
    if (d.chance(0.4)) p.beta_slow = d.pick([0.25, 0.5, 2]);
    const scale = d.int(0, 3);
    if (scale === 1) p.attention_factor = d.pick([0.5, 0.9, 1.3]);
    if (scale === 2) {
      Object.assign(p, { mscale: d.pick([0.707, 1]), mscale_all_dim: d.pick([0.707, 1, 0.5]) });
    }
    if (scale === 3) p.mscale = d.pick([0.707, 1]);
    if (d.chance(0.35)) p.truncate = d.chance(0.5);
  }
  if (type === "llama3") {
    p.factor = d.pick([2, 8, 32]);
    p.low_freq_factor = d.pick([1, 1.5]);
    p.high_freq_factor = d.pick([2, 4]);
    // Short original contexts put a 4–8 frequency RoPE's bands on both sides of
    // the smoothing window; 8192 (Llama 3's own) leaves all of them untouched.
    p.original_max_position_embeddings = d.pick([8, 16, 32, 64, 8192]);
  }
  if (type === "longrope") {
    p.original_max_position_embeddings = 32;
    p.short_factor = [1];
    p.long_factor = [1];
  }
  return p;
}

/**
 * Heads, KV heads, head size, hidden size, RoPE and the norm ε of an attention model.
 *
 * @example
 * ```ts
 * import { attention, Dice } from "./transformers_configs_parts.ts";
 * attention(new Dice(1), 0.5).num_attention_heads; // 1 to 8
 * ```
 */
export function attention(d: Dice, explicitHeadDim: number): Record<string, unknown> {
  const heads = d.pick([1, 2, 4, 4, 6, 8]);
  const kv = d.pick(divisors(heads));
  const c: Record<string, unknown> = { num_attention_heads: heads, num_key_value_heads: kv };
  if (d.chance(explicitHeadDim)) {
    const hd = d.pick([4, 8, 12, 16, 24].filter((h) => h * heads <= 96));
    c.head_dim = hd;
    c.hidden_size = d.pick([16, 24, 32, 40, 48, 64]);
  } else {
    const hd = d.pick([4, 6, 8, 10, 12, 16].filter((h) => h * heads <= 64));
    c.hidden_size = hd * heads;
    // transformers' yarn and llama3 read `head_dim` with getattr and crash on a
    // null one, so checkpoints using them always state it.
    if (d.chance(0.5)) c.head_dim = hd;
  }
  c.rope_parameters = rope(d);
  const scaled = !["default", "linear"].includes(
    (c.rope_parameters as { rope_type: string }).rope_type,
  );
  if (scaled && c.head_dim === undefined) c.head_dim = (c.hidden_size as number) / heads;
  c.max_position_embeddings = d.pick([64, 128, 512, 4096]);
  return c;
}

/**
 * Fields every architecture has.
 *
 * @example
 * ```ts
 * import { common, Dice } from "./transformers_configs_parts.ts";
 * common(new Dice(1)).vocab_size; // 20 to 256
 * ```
 */
export function common(d: Dice): Record<string, unknown> {
  const vocab = d.int(20, 256);
  const eos = d.int(0, vocab - 1);
  return {
    vocab_size: vocab,
    num_hidden_layers: d.int(1, 4),
    tie_word_embeddings: d.chance(0.3),
    eos_token_id: eos,
    bos_token_id: d.int(0, vocab - 1),
    pad_token_id: d.chance(0.5) ? null : eos,
  };
}

/**
 * A routed expert count up to `maxExperts` and a top-k up to 4 of them.
 *
 * @example
 * ```ts
 * import { Dice, moe } from "./transformers_configs_parts.ts";
 * moe(new Dice(1), 8).topk <= 4; // true
 * ```
 */
export function moe(d: Dice, maxExperts: number): { experts: number; topk: number } {
  const experts = d.int(1, maxExperts);
  return { experts, topk: d.int(1, Math.min(experts, 4)) };
}
