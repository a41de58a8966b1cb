/**
 * The decode loop of a causal LM's pair of executables, on the runtime alone:
 * the prefill as chunks of fixed lengths, then decode steps queued on the
 * device with their sampled ids read back every few steps. `Model.generateIds`
 * (with its expert machinery riding along as {@linkcode DecodeHooks}) and
 * prebuilt model modules (`PrebuiltModel`) both run it.
 *
 * @module
 */

import type { TensorData } from "../core/host.ts";
import { SAMPLE_NON_FINITE } from "../core/sample_id.ts";
import type { HostTensor } from "../core/types.ts";
import type { RunOptions } from "./run_options.ts";

/**
 * What a decode loop needs of an executable: `Executable` and
 * `PrebuiltExecutable` both have it.
 *
 * @example
 * ```ts ignore
 * import type { ExecutableLike } from "@kiln/kiln/runtime";
 * const exe: ExecutableLike = model.decode;
 * ```
 */
export interface ExecutableLike {
  /** Runs the graph and reads every output back. */
  run(
    inputs: Record<string, TensorData>,
    options?: RunOptions,
  ): Promise<Record<string, HostTensor>>;
  /** Queues a run without reading anything back. */
  submit(inputs: Record<string, TensorData>, options?: RunOptions): Promise<void>;
  /** Uploads a run's inputs (compiling its pipelines) without running it. */
  prepare(inputs: Record<string, TensorData>, options?: RunOptions): Promise<unknown>;
  /** Whether a run with these inputs would start without compiling (or planning). */
  compiled(inputs: Record<string, TensorData>): boolean;
  /** Reads several persistent states back in one round trip. */
  readStates(names: readonly string[]): Promise<Record<string, HostTensor>>;
  /** Overwrites a persistent state. */
  writeState(name: string, data: TensorData): void;
  /** Zeroes every persistent state. */
  resetStates(): void;
}

/**
 * The counters a decode loop fills in (`Model`'s `GenerateStats` has them).
 *
 * @example
 * ```ts
 * import type { LoopStats } from "@kiln/kiln/runtime";
 * const stats: LoopStats = { generatedTokens: 0, readbacks: 0, prefillMs: 0, decodeMs: 0 };
 * ```
 */
export interface LoopStats {
  /** Generated tokens (including a final EOS). */
  generatedTokens: number;
  /** Host round trips (readbacks). */
  readbacks: number;
  /** Milliseconds for the prefill (until the first token was read). */
  prefillMs: number;
  /** Milliseconds for the decode steps after the first token. */
  decodeMs: number;
  /**
   * What ran the prompt: the prefill's chunks, or the decode step token by
   * token (a short prompt whose prefill pipelines were not compiled yet: see
   * {@linkcode coldPrompt}).
   */
  promptRun?: "prefill" | "decode";
}

/**
 * One generate call's decode-loop settings.
 *
 * @example
 * ```ts ignore
 * const loop: DecodeLoop = { ids, limit: 32, readEvery: 8, seed: 0, stats, eos: new Set([2]), t0, chunks };
 * ```
 */
export interface DecodeLoop {
  /** The prompt's ids. */
  ids: Uint32Array;
  /** Tokens to generate at most. */
  limit: number;
  /** Decode steps queued per readback. */
  readEvery: number;
  /** The sampler's seed. */
  seed: number;
  /** The call's counters, filled in as it runs. */
  stats: LoopStats;
  /** Ids that end generation (yielded, then the loop stops). */
  eos: Set<number>;
  /** `performance.now()` when the clock started. */
  t0: number;
  /**
   * The prompt's prefill runs' inputs, in order (planned once by the caller,
   * which compiled their pipelines from the same list).
   */
  chunks: readonly Record<string, TensorData>[];
  /** Run the prompt through the decode step, token by token (see {@linkcode coldPrompt}). */
  promptViaDecode?: boolean;
  /**
   * Run the prefill's 1-token chunks through the decode step (see
   * {@linkcode prefillChunksToCompile}).
   */
  singlesViaDecode?: boolean;
  /**
   * Prompt tokens already in the caches (a reused prefix: see `PromptCache`):
   * the prompt runs from this position (default 0), `chunks` cover the rest.
   */
  start?: number;
  /** Called once the whole prompt is queued, before any decode step (`PromptCache.promptQueued`). */
  promptQueued?(): void;
}

/**
 * What the loop runs: a prefill and a decode executable sharing states, their
 * inputs, and the name of the state logging sampled ids.
 *
 * @example
 * ```ts ignore
 * const runner: LoopRunner = {
 *   prefill, decode, runOptions: {}, generated: "generated", token: "token",
 *   decodeInputs: (pos, seed, step) => ({ pos: [pos], seed: [seed], step: [step] }),
 * };
 * ```
 */
export interface LoopRunner {
  /** The prefill executable. */
  readonly prefill: ExecutableLike;
  /** The one-token decode executable. */
  readonly decode: ExecutableLike;
  /** Options of every run. */
  readonly runOptions: RunOptions;
  /** The state holding sampled ids by step (`[maxNew]` u32). */
  readonly generated: string;
  /** The state the decode step reads its token from (`[1]` u32). */
  readonly token: string;
  /** A decode step's inputs at position `pos`. */
  decodeInputs(pos: number, seed: number, step: number): Record<string, TensorData>;
}

/**
 * What rides along a decode loop (the expert scheduler, expert parallelism).
 *
 * @example
 * ```ts ignore
 * const hooks: DecodeHooks = { phase: (decoding) => (x.decoding = decoding), countStep: () => x.countStep() };
 * ```
 */
export interface DecodeHooks {
  /** Told `false` before the prefill, `true` before the decode steps. */
  phase?(decoding: boolean): void;
  /** After the prefill and after each decode step is queued. */
  countStep?(): void;
  /** More states read back with the generated ids, in the same round trip. */
  readonly states?: readonly string[];
  /** Hears each readback: the states read, the steps queued since the last one, and whether the prefill's token was read before. */
  observe?(got: Record<string, HostTensor>, steps: number, decoding: boolean): void;
}

/**
 * Generated id `id` of decode step `step` (0: the prefill's), or a RangeError
 * naming the step when the sampler found no finite logits there: the sentinel
 * is never a token, and every later step fed on it.
 *
 * @example
 * ```ts
 * import { sampledId } from "@kiln/kiln/runtime";
 * sampledId(42, 3); // 42
 * ```
 */
export function sampledId(id: number, step: number): number {
  if (id === SAMPLE_NON_FINITE) {
    throw new RangeError(
      `generation step ${step}: the logits are not finite (NaN or ±Inf); ` +
        "the model's weights or inputs are broken",
    );
  }
  return id;
}

/**
 * `logits` (`[T, vocab]`, row-major) as they are when every value is finite;
 * otherwise a RangeError saying where (`where`: e.g. the model's path and the
 * call), at which token and vocabulary id the first NaN or ±Inf sits and how
 * many there are. Logits are what a user reads to judge a model, so an
 * overflow inside the forward pass (finite but extreme weights) is an error,
 * as it is in generation ({@linkcode sampledId}), never a silent NaN.
 *
 * @example
 * ```ts
 * import { finiteLogits } from "@kiln/kiln/runtime";
 * finiteLogits(new Float32Array([0.5, -1, 2, 3]), 2, "m").length; // 4
 * ```
 */
export function finiteLogits(logits: Float32Array, vocab: number, where: string): Float32Array {
  // NaN and ±Inf are the values whose exponent bits are all ones.
  const bits = new Uint32Array(logits.buffer, logits.byteOffset, logits.length);
  let first = -1, count = 0;
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7f800000) === 0x7f800000) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first < 0) return logits;
  const tokens = Math.ceil(logits.length / vocab);
  throw new RangeError(
    `${where}: the logits are not finite: ${logits[first]} at token ${
      Math.floor(first / vocab)
    } of ${tokens}, vocabulary id ${first % vocab} (${count} of ${logits.length} values); ` +
      "a layer overflowed f32 or the model's weights or inputs are broken",
  );
}

/**
 * Splits a prompt of `length` tokens into bucket lengths, largest first (so the
 * big, efficient chunks come first and at most three of each smaller size
 * follow).
 *
 * @example
 * ```ts
 * import { splitPrompt } from "@kiln/kiln/runtime";
 * splitPrompt(300, [1, 4, 16, 64, 256]); // [256, 16, 16, 4, 4, 4]
 * ```
 */
export function splitPrompt(length: number, buckets: readonly number[]): number[] {
  const out: number[] = [];
  let left = length;
  for (let i = buckets.length - 1; i >= 0 && left > 0; i--) {
    while (left >= buckets[i]) {
      out.push(buckets[i]);
      left -= buckets[i];
    }
  }
  if (left !== 0) throw new Error(`internal: buckets ${buckets} cannot split ${length}`);
  return out;
}

/**
 * Prompts up to this many tokens run through the decode step when the
 * prefill's pipelines for them are not compiled yet (see {@linkcode coldPrompt}).
 *
 * @example
 * ```ts
 * import { COLD_PROMPT_TOKENS } from "@kiln/kiln/runtime";
 * COLD_PROMPT_TOKENS; // 64
 * ```
 */
export const COLD_PROMPT_TOKENS = 64;

/**
 * Whether a prompt should run through the decode step, one token a run, rather
 * than the prefill: when it has at most `maxTokens` tokens and some prefill
 * chunk it needs (`chunks`, less those the decode step runs: see
 * {@linkcode prefillChunksToCompile}) has no compiled pipelines yet, or it
 * needs none. A generation needs the decode step's pipelines anyway; the
 * prefill's are as many again and cost seconds of driver compile at the first
 * dispatch of a new shape (lavapipe, the demo model's 64-token prompt, cold:
 * first token 8.1 s through the prefill, 3.1 s through the decode step),
 * against milliseconds a decode step. Once a long prompt (or `warmUp`) has
 * compiled the prefill, prompts use it. The two paths compute the same
 * function; their float rounding differs in the last bits, as between chunk
 * splits.
 *
 * @example
 * ```ts ignore
 * import { coldPrompt } from "@kiln/kiln/runtime";
 * const viaDecode = coldPrompt(model.prefill, chunks, ids.length, 64);
 * ```
 */
export function coldPrompt(
  prefill: ExecutableLike,
  chunks: readonly Record<string, TensorData>[],
  tokens: number,
  maxTokens: number,
): boolean {
  // No chunk at all: a prompt of 1-token chunks, which take the decode step anyway.
  return !chunks.length || (tokens <= maxTokens && !chunks.every((c) => prefill.compiled(c)));
}

/**
 * The prefill chunks whose pipelines a generation needs: all of them, less the
 * 1-token chunks when those run through the decode step (`singles`). A
 * 1-token chunk costs the decode step about what the prefill at T = 1 costs
 * (GEMVs instead of 1-row matmuls), and the decode step is compiled anyway:
 * its own prefill set (~30 pipelines, ~4 s of cold LLVM compile for the demo
 * model) is never needed for generation, whatever the prompt's length.
 *
 * @example
 * ```ts
 * import { prefillChunksToCompile } from "@kiln/kiln/runtime";
 * const chunks = [{ ids: new Uint32Array(4) }, { ids: new Uint32Array(1) }];
 * prefillChunksToCompile(chunks, true).length; // 1
 * ```
 */
export function prefillChunksToCompile<C extends { readonly ids?: unknown }>(
  chunks: readonly C[],
  singles: boolean,
): C[] {
  return chunks.filter((c) => !singles || (c.ids as ArrayLike<number>).length !== 1);
}

/**
 * Queues prompt tokens through the decode step from position `at`: each token
 * written to the `token` state and one decode run at its position, all
 * sampling at step 0 so that the last one's sample is the first generated id
 * (as the prefill's is). Nothing is read back.
 */
async function promptSteps(
  r: LoopRunner,
  ids: Uint32Array,
  at: number,
  seed: number,
): Promise<void> {
  for (let i = 0; i < ids.length; i++) {
    r.decode.writeState(r.token, [ids[i]]);
    await r.decode.submit(r.decodeInputs(at + i, seed, 0), r.runOptions);
  }
}

/**
 * Streams generated ids: the prefill, then up to `readEvery` decode steps
 * queued per readback of the `generated` state (the first readback right after
 * the prefill).
 *
 * @example
 * ```ts ignore
 * import { decodeSteps } from "@kiln/kiln/runtime";
 * for await (const id of decodeSteps(runner, loop)) ids.push(id);
 * ```
 */
export async function* decodeSteps(
  r: LoopRunner,
  loop: DecodeLoop,
  hooks: DecodeHooks = {},
): AsyncIterable<number> {
  const { ids, limit, readEvery, seed, stats, eos, t0 } = loop;
  const run = r.runOptions;
  hooks.phase?.(false);
  stats.promptRun = loop.promptViaDecode ? "decode" : "prefill";
  const start = loop.start ?? 0;
  if (loop.promptViaDecode) await promptSteps(r, ids.subarray(start), start, seed);
  else {
    for (const chunk of loop.chunks) {
      const c = chunk.ids as Uint32Array;
      if (loop.singlesViaDecode && c.length === 1) {
        await promptSteps(r, c, (chunk.pos as number[])[0], seed);
      } else await r.prefill.submit(chunk, run);
    }
  }
  loop.promptQueued?.();
  hooks.countStep?.();
  hooks.phase?.(true);
  let queued = 1, read = 0;
  const d = r.decode;
  const names = [r.generated, ...(hooks.states ?? [])];
  while (read < limit) {
    // Queue up to readEvery more steps, then read the log once. The first read
    // comes right after the prefill: the first token streams out as soon as it
    // exists, and prefillMs / decodeMs split exactly at it (queuing decode steps
    // before it used to count readEvery − 1 decode steps as prefill time).
    const before = queued;
    while (read > 0 && queued < limit && queued - read < readEvery) {
      await d.submit(r.decodeInputs(ids.length + queued - 1, seed, queued), run);
      hooks.countStep?.();
      queued++;
    }
    // Riders' states come along in the same readback.
    const got = await d.readStates(names);
    const log = got[r.generated].data;
    hooks.observe?.(got, queued - before, read > 0);
    stats.readbacks++;
    if (read === 0) stats.prefillMs = performance.now() - t0;
    for (; read < queued; read++) {
      const id = sampledId(log[read], read);
      stats.generatedTokens++;
      yield id;
      if (eos.has(id)) {
        stats.decodeMs = performance.now() - t0 - stats.prefillMs;
        return;
      }
    }
  }
  stats.decodeMs = performance.now() - t0 - stats.prefillMs;
}
