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
 * The prefill runs' inputs for a prompt: one per chunk of `buckets` (the whole
 * prompt when `buckets` is empty), each at its position, sampling its last row
 * at decode step `step`; `extra(n)` adds inputs of a chunk of `n` tokens.
 *
 * @example
 * ```ts
 * import { promptChunks } from "./prompt.ts";
 * promptChunks(new Uint32Array(5), [1, 4], 0, 0).map((c) => c.pos); // [[0], [4]]
 * ```
 */
export function promptChunks(
  ids: Uint32Array,
  buckets: readonly number[],
  seed: number,
  step: number,
  extra?: (n: number) => Record<string, TensorData>,
): Record<string, TensorData>[] {
  const lengths = buckets.length ? splitPrompt(ids.length, buckets) : [ids.length];
  let at = 0;
  return lengths.map((n) => {
    const chunk = {
      ids: ids.subarray(at, at + n),
      pos: [at],
      last: [n - 1],
      seed: [seed],
      step: [step],
      ...extra?.(n),
    };
    at += n;
    return chunk;
  });
}

/**
 * Runs the chunks in order and returns every position's logits, `[T, vocab]`
 * row-major (the `logits` output of each run, joined).
 *
 * @example
 * ```ts ignore
 * const logits = await promptLogits(model.prefill, promptChunks(ids, [1, 4, 16], 0, 0));
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
    parts.push(logits.data as Float32Array);
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
