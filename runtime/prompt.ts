/**
 * A causal LM's prompt on the runtime: token ids checked against the
 * vocabulary and the context, split into the prefill's chunk runs (see
 * `splitPrompt`), and the chunks' logits joined. `Model` and prebuilt model
 * modules (`PrebuiltModel`) share these.
 *
 * @module
 */

import type { TensorData } from "../core/host.ts";
import { type ExecutableLike, splitPrompt } from "./decode.ts";
import { planPrompt, type PromptRun } from "./prompt_plan.ts";
import type { RunOptions } from "./run_options.ts";

/**
 * Token ids as a `Uint32Array`, or a TypeError/RangeError naming the token
 * outside `[0, vocab)`, an empty prompt or one longer than `maxSeq`.
 *
 * @example
 * ```ts
 * import { checkTokenIds } from "./prompt.ts";
 * checkTokenIds([1, 2, 3], 100, 64); // Uint32Array [1, 2, 3]
 * ```
 */
export function checkTokenIds(
  ids: readonly number[],
  vocab: number,
  maxSeq: number,
): Uint32Array {
  if (!Array.isArray(ids) && !(ids instanceof Uint32Array)) {
    throw new TypeError("forward: tokenIds must be an array of integers");
  }
  if (ids.length === 0) throw new RangeError("forward: tokenIds is empty");
  if (ids.length > maxSeq) {
    throw new RangeError(`forward: ${ids.length} tokens exceed maxSeq ${maxSeq}`);
  }
  for (const [i, t] of ids.entries()) {
    if (!Number.isInteger(t) || t < 0 || t >= vocab) {
      throw new RangeError(`forward: token ${i} = ${t} is outside the vocabulary [0, ${vocab})`);
    }
  }
  return Uint32Array.from(ids);
}

/**
 * The prefill runs' inputs for a prompt: one per run (see `planPrompt`), each
 * at its position with its ids padded up to the run's length (with id 0),
 * sampling its last real row at decode step `step`; `extra(n)` adds inputs of a
 * run of `n` rows. `ids` start at position `at` (a reused prefix before them).
 *
 * @example
 * ```ts
 * import { promptChunks } from "./prompt.ts";
 * const runs = [{ length: 4, tokens: 4 }, { length: 4, tokens: 1 }];
 * promptChunks(new Uint32Array(5), runs, 0, 0).map((c) => c.last); // [[3], [0]]
 * ```
 */
export function promptChunks(
  ids: Uint32Array,
  runs: readonly PromptRun[],
  seed: number,
  step: number,
  extra?: (n: number) => Record<string, TensorData>,
  at = 0,
): Record<string, TensorData>[] {
  let i = 0;
  return runs.map(({ length, tokens }) => {
    const real = ids.subarray(i, i + tokens);
    const padded = tokens === length ? real : new Uint32Array(length);
    if (padded !== real) padded.set(real);
    const chunk = {
      ids: padded,
      pos: [at],
      last: [tokens - 1],
      seed: [seed],
      step: [step],
      ...extra?.(length),
    };
    at += tokens;
    i += tokens;
    return chunk;
  });
}

/**
 * The inputs of a prefill run of `n` rows at position 0: enough to ask an
 * executable whether runs of that length are `compiled`.
 *
 * @example
 * ```ts
 * import { probeChunk } from "./prompt.ts";
 * probeChunk(4).last; // [3]
 * ```
 */
export function probeChunk(n: number): Record<string, TensorData> {
  return { ids: new Uint32Array(n), pos: [0], last: [n - 1], seed: [0], step: [0] };
}

/**
 * A prompt's runs at exactly the chunk lengths of `buckets` (`splitPrompt`),
 * or one run of the whole prompt when `buckets` is empty: no padding.
 *
 * @example
 * ```ts
 * import { exactRuns } from "./prompt.ts";
 * exactRuns(5, [1, 4]); // [{ length: 4, tokens: 4 }, { length: 1, tokens: 1 }]
 * ```
 */
export function exactRuns(n: number, buckets: readonly number[]): PromptRun[] {
  const lengths = buckets.length ? splitPrompt(n, buckets) : [n];
  return lengths.map((length) => ({ length, tokens: length }));
}

/**
 * The runs of an `n`-token prompt on `prefill`: `planPrompt` over the buckets
 * it has compiled (`singles`: 1-token runs take the decode step), or one whole
 * run when `buckets` is empty.
 *
 * @example
 * ```ts ignore
 * const runs = promptRuns(model.prefill, 100, [1, 4, 16, 64, 256], 2048, true);
 * ```
 */
export function promptRuns(
  prefill: ExecutableLike,
  n: number,
  buckets: readonly number[],
  maxSeq: number,
  singles: boolean,
): PromptRun[] {
  if (!buckets.length) return exactRuns(n, buckets);
  const ready = (b: number) => prefill.compiled(probeChunk(b));
  return planPrompt(n, { buckets, ready, maxSeq, singles });
}

/**
 * Runs the chunks in order and returns every real position's logits, `[T,
 * vocab]` row-major (the `logits` output of each run up to its `last` row,
 * joined).
 *
 * @example
 * ```ts ignore
 * const logits = await promptLogits(model.prefill, promptChunks(ids, runs, 0, 0));
 * ```
 */
export async function promptLogits(
  prefill: ExecutableLike,
  chunks: readonly Record<string, TensorData>[],
  options?: RunOptions,
): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for (const chunk of chunks) {
    const { logits } = await prefill.run(chunk, options);
    const data = logits.data as Float32Array;
    const rows = (chunk.ids as Uint32Array).length;
    const real = (chunk.last as number[])[0] + 1;
    parts.push(real === rows ? data : data.subarray(0, data.length / rows * real));
  }
  if (parts.length === 1) return parts[0];
  const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

/**
 * How many tokens a generation may produce: `maxTokens` (default 64) capped by
 * the context left after the prompt and the generated-ids log (`maxNew`); a
 * RangeError for a bad `maxTokens` or `readEvery` (default 8), or a prompt that
 * fills the context. Returns the limit and `readEvery`.
 *
 * @example
 * ```ts
 * import { generationLimit } from "./prompt.ts";
 * generationLimit(10, { maxTokens: 100 }, 64, 64); // { limit: 54, readEvery: 8 }
 * ```
 */
export function generationLimit(
  promptTokens: number,
  options: { maxTokens?: number; readEvery?: number },
  maxSeq: number,
  maxNew: number,
): { limit: number; readEvery: number } {
  const maxTokens = options.maxTokens ?? 64;
  const readEvery = options.readEvery ?? 8;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    throw new RangeError(`generate: maxTokens must be >= 1, got ${maxTokens}`);
  }
  if (!Number.isInteger(readEvery) || readEvery < 1) {
    throw new RangeError(`generate: readEvery must be >= 1, got ${readEvery}`);
  }
  const limit = Math.min(maxTokens, maxSeq - promptTokens, maxNew);
  if (limit < 1) {
    throw new RangeError(`generate: the prompt (${promptTokens} tokens) fills maxSeq ${maxSeq}`);
  }
  return { limit, readEvery };
}

/**
 * Compiles (without running) the prefill at each distinct chunk length of
 * `chunks` and the decode step: the pipelines a generation needs, before its
 * clock starts.
 *
 * @example
 * ```ts ignore
 * await prepareGeneration(model.prefill, model.decode, chunks, { pos: [0], seed: [0], step: [1] });
 * ```
 */
export async function prepareGeneration(
  prefill: ExecutableLike,
  decode: ExecutableLike,
  chunks: readonly Record<string, TensorData>[],
  decodeInputs: Record<string, TensorData>,
  options?: RunOptions,
): Promise<void> {
  const lengths = new Set<number>();
  for (const chunk of chunks) {
    const n = (chunk.ids as Uint32Array).length;
    if (!lengths.has(n)) await prefill.prepare(chunk, options);
    lengths.add(n);
  }
  await decode.prepare(decodeInputs, options);
}
