/**
 * Which prefill runs carry a prompt. Kernels bake their sizes in, so each
 * chunk length a model runs is a set of pipelines to compile (seconds each on
 * a CPU adapter). A prompt is run as chunks of a few fixed lengths (the
 * buckets); its last chunk may be padded up to a bucket, the padding rows
 * masked out of every state (`last`: the Mamba states skip them, attention's
 * causal mask keeps them from the real rows, and the KV cache rows they write
 * lie past the prompt, where the next run writes first). So a model compiles
 * one bucket's pipelines for the first prompt its prefill runs and runs every
 * later prompt on the buckets it has, whatever the length: {@linkcode planPrompt}.
 *
 * @module
 */

import { splitPrompt } from "./decode.ts";

/**
 * One prefill run of a prompt: `length` rows computed (a bucket), of which the
 * first `tokens` are the prompt's and the rest padding.
 *
 * @example
 * ```ts
 * import type { PromptRun } from "@kiln/kiln/runtime";
 * const run: PromptRun = { length: 64, tokens: 36 }; // 28 rows of padding
 * ```
 */
export interface PromptRun {
  /** Rows the run computes: its chunk length. */
  readonly length: number;
  /** Leading rows that are the prompt's (1..length). */
  readonly tokens: number;
}

/**
 * The cost of a prefill run beyond its rows, and of a decode step, in prompt
 * rows (a heuristic from lavapipe and the demo model: chunks of 4, 16, 64 and
 * 256 rows ran in 29, 53, 137 and 388 ms, ~1.45 ms a row at the margin and
 * less the larger the chunk; a decode step in ~17 ms). On a GPU a run costs
 * about the same whatever its rows, and the plan it leads to — few runs, little
 * padding — is as good there.
 *
 * @example
 * ```ts
 * import { RUN_COST_ROWS } from "@kiln/kiln/runtime";
 * RUN_COST_ROWS.chunk > RUN_COST_ROWS.step; // true
 * ```
 */
export const RUN_COST_ROWS: { readonly chunk: number; readonly step: number } = {
  chunk: 24,
  step: 12,
};

/**
 * What {@linkcode planPrompt} weighs.
 *
 * @example
 * ```ts
 * import type { PromptPlanOptions } from "@kiln/kiln/runtime";
 * const o: PromptPlanOptions = { buckets: [1, 4, 16, 64, 256], ready: () => true, maxSeq: 2048, singles: true };
 * ```
 */
export interface PromptPlanOptions {
  /** Chunk lengths the prefill may run, ascending. */
  readonly buckets: readonly number[];
  /** Whether runs of this length start without compiling. */
  ready(length: number): boolean;
  /** The KV cache's rows: a padded run never reaches past them. */
  readonly maxSeq: number;
  /**
   * 1-token runs take the decode step (compiled for generation anyway), never
   * the prefill at length 1: true in generation, false for `forward`, whose
   * every row's logits come from the prefill.
   */
  readonly singles: boolean;
}

/**
 * The runs of an `n`-token prompt: the cheapest cover (by
 * {@linkcode RUN_COST_ROWS}) with the buckets that are `ready`, the last run
 * padded where that is cheaper than more runs. When no bucket is ready, the
 * one bucket whose cover is cheapest — the set of pipelines a first prompt
 * compiles; later prompts of any length then compile nothing. When the ready
 * buckets cannot cover the prompt inside `maxSeq`, the exact split
 * (`splitPrompt`) and whatever it compiles; with no buckets, the whole prompt.
 *
 * @example
 * ```ts
 * import { planPrompt } from "@kiln/kiln/runtime";
 * const buckets = [1, 4, 16, 64, 256];
 * // Only the 64-token chunk compiled: a 100-token prompt pads its second chunk.
 * planPrompt(100, { buckets, ready: (n) => n === 64, maxSeq: 2048, singles: true });
 * // [{ length: 64, tokens: 64 }, { length: 64, tokens: 36 }]
 * ```
 */
export function planPrompt(n: number, o: PromptPlanOptions): PromptRun[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`planPrompt: n must be >= 1, got ${n}`);
  const usable = o.buckets.filter((b) => !(o.singles && b === 1));
  const ready = usable.filter((b) => o.ready(b));
  let best = ready.length ? cover(n, ready, o) : undefined;
  if (!ready.length) {
    // Nothing compiled: the one bucket that serves this prompt best (ties: the larger).
    for (const b of usable) {
      const c = cover(n, [b], o);
      if (c && (!best || c.cost <= best.cost)) best = c;
    }
  }
  if (best) return best.runs;
  const lengths = o.buckets.length ? splitPrompt(n, o.buckets) : [n];
  return lengths.map((length) => ({ length, tokens: length }));
}

interface Cover {
  cost: number;
  padding: number;
  runs: PromptRun[];
}

/** The cheapest runs over `buckets` (plus decode steps with `singles`), or undefined. */
function cover(n: number, buckets: readonly number[], o: PromptPlanOptions): Cover | undefined {
  // cost[r]: the cheapest way to run the last r tokens (from position n − r).
  const cost = new Float64Array(n + 1).fill(Infinity);
  const padding = new Float64Array(n + 1);
  const pick = new Int32Array(n + 1); // the first run's length (1 with singles: a decode step)
  cost[0] = 0;
  for (let r = 1; r <= n; r++) {
    const at = n - r;
    // Fewer padding rows break ties.
    const consider = (c: number, length: number, pad: number) => {
      if (c < cost[r] || (c === cost[r] && pad < padding[r])) {
        cost[r] = c;
        padding[r] = pad;
        pick[r] = length;
      }
    };
    if (o.singles) consider(cost[r - 1] + RUN_COST_ROWS.step, 1, padding[r - 1]);
    for (const b of buckets) {
      if (b <= r) consider(cost[r - b] + b + RUN_COST_ROWS.chunk, b, padding[r - b]);
      else if (at + b <= o.maxSeq) consider(b + RUN_COST_ROWS.chunk, b, b - r); // the last run, padded
    }
  }
  if (!Number.isFinite(cost[n])) return undefined;
  const runs: PromptRun[] = [];
  for (let r = n; r > 0;) {
    const length = pick[r];
    const tokens = Math.min(length, r);
    runs.push({ length, tokens });
    r -= tokens;
  }
  return { cost: cost[n], padding: padding[n], runs };
}
