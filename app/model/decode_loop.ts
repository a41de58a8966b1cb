/**
 * The decode loops of `Model.generateIds`: the prefill, then decode steps
 * queued on the device with their sampled ids read back every few steps; with
 * an expert cache, windows checked against the routing log and missed steps
 * re-run streamed.
 *
 * @module
 */

import type { TensorData } from "../../core/host.ts";
import { STATES } from "../../models/states.ts";
import {
  type DecodeHooks,
  type DecodeLoop as LoopSettings,
  decodeSteps,
  sampledId,
} from "../../runtime/decode.ts";
import type { Executable, RunOptions } from "../../runtime/executable.ts";
import type { ExpertParallel } from "../experts/parallel.ts";
import type { ExpertScheduler } from "../experts/scheduler.ts";
import type { GenerateStats } from "./generate_options.ts";

/**
 * One generate call's decode-loop settings: the runtime loop's (prompt, limit,
 * sampling seed, what runs the prompt), with a model's counters.
 *
 * @example
 * ```ts ignore
 * const loop: DecodeLoop = { ids, limit: 32, readEvery: 8, seed: 0, stats, eos: new Set([2]), t0, chunks };
 * ```
 */
export interface DecodeLoop extends LoopSettings {
  /** The call's counters (a model's, with its compile time), filled in as it runs. */
  stats: GenerateStats;
}

/**
 * What a decode loop runs: the model's executables of the current sampling
 * settings, their inputs, and the expert machinery riding along.
 *
 * @example
 * ```ts ignore
 * const runner: DecodeRunner = {
 *   prefill, decode, runOptions: {},
 *   decodeInputs: (pos, seed, step) => ({ pos: [pos], seed: [seed], step: [step] }),
 * };
 * ```
 */
export interface DecodeRunner {
  /** The prefill executable. */
  readonly prefill: Executable;
  /** The one-token decode executable. */
  readonly decode: Executable;
  /** The expert scheduler, under a memory budget that does not hold every expert. */
  readonly experts?: ExpertScheduler;
  /** Expert parallelism, with several devices. */
  readonly parallel?: ExpertParallel;
  /** Run options carrying the expert copies and barriers, if any. */
  readonly runOptions: RunOptions;
  /** A decode step's inputs at position `pos`. */
  decodeInputs(pos: number, seed: number, step: number): Record<string, TensorData>;
  /**
   * States a decode step updates in place (Mamba's conv and SSM states): the
   * cached loop keeps a device copy at each window's start and rewinds them on
   * a miss. Position-indexed KV caches need none (a re-run overwrites rows).
   */
  readonly recurrentStates?: readonly string[];
}

// The sentinel check lives with the runtime's loop; the cached loop below uses it too.
export { sampledId };

/**
 * Streams generated ids: the prefill, then up to `readEvery` decode steps
 * queued per readback of the `generated` state (the first readback right after
 * the prefill). A scheduler with a cache policy runs {@linkcode cachedDecodeLoop}.
 *
 * @example
 * ```ts ignore
 * for await (const id of decodeLoop(runner, loop)) ids.push(id);
 * ```
 */
export async function* decodeLoop(r: DecodeRunner, loop: DecodeLoop): AsyncIterable<number> {
  const x = r.experts;
  if (x?.cached) {
    yield* cachedDecodeLoop(r, x, loop);
    return;
  }
  const ep = r.parallel;
  // The loop itself is the runtime's (prebuilt model modules run it too); the
  // expert machinery rides along.
  const hooks: DecodeHooks = {
    phase: (decoding) => {
      if (x) x.decoding = decoding;
      if (ep) ep.decoding = decoding;
    },
    countStep: () => {
      x?.countStep();
      ep?.countStep();
    },
    // With a scheduler, the routing counters ride along in the same readback.
    states: x ? [STATES.moeUsage] : [],
    observe: (got, steps, decoding) => {
      if (!x) return;
      x.observeUsage(got[STATES.moeUsage].data as Uint32Array, steps);
      if (decoding) x.stats.decodeRoundTrips++;
    },
  };
  yield* decodeSteps({ ...r, generated: STATES.generated, token: STATES.token }, loop, hooks);
}

/**
 * The decode loop of the cache policies. Windows of up to `readEvery` steps
 * run with the cache tables after the host made the last known step's experts
 * resident; one readback per window brings the ids and the per-step routing
 * log (`moe.log`). A step that chose a non-resident expert is a miss: its
 * output and everything after it are discarded, the `token` state is restored
 * to the last good id, and the step is re-run streamed (every non-pinned
 * expert copied in before its layer: exact, no further round trip). Re-running
 * is sound because attention's KV cache is indexed by position (a rerun
 * overwrites the rows) and the sampler is a function of (seed, step).
 * Recurrent states (Mamba) are updated in place, so each window starts by
 * keeping a device copy of them; a miss restores it and re-runs the window's
 * good steps streamed (they give the same ids) before the missed one. After a
 * miss the window shrinks to one step and doubles back on clean windows.
 * The naive policy instead retries the step with the experts it chose
 * uploaded, one readback per try, until no chosen expert is missing.
 *
 * @example
 * ```ts ignore
 * for await (const id of cachedDecodeLoop(runner, model.experts!, loop)) ids.push(id);
 * ```
 */
export async function* cachedDecodeLoop(
  r: DecodeRunner,
  x: ExpertScheduler,
  loop: DecodeLoop,
): AsyncIterable<number> {
  const { ids, limit, readEvery, seed, stats, eos, t0 } = loop;
  const d = r.decode, LE = x.plan.layers * x.plan.experts;
  const stream = r.runOptions;
  const naive = x.policy === "naive";
  const recurrent = r.recurrentStates ?? [];
  const submit = async (q: number, streamed: boolean) => {
    await d.submit(
      r.decodeInputs(ids.length + q - 1, seed, q),
      streamed ? stream : {},
    );
    x.countStep();
  };
  x.decoding = false;
  x.useStreamingTables();
  for (const chunk of loop.chunks) await r.prefill.submit(chunk, stream);
  loop.promptQueued?.();
  x.countStep();
  x.decoding = true;
  let gen: Uint32Array = new Uint32Array(0), log: Uint32Array = new Uint32Array(0);
  let la: Uint32Array | undefined;
  // One host round trip: the generated ids, the per-step routing log and the
  // router-lookahead log together.
  const readBack = async () => {
    const names = [STATES.generated, STATES.moeLog, ...(x.lookahead ? [STATES.moeLookahead] : [])];
    const got = await d.readStates(names);
    stats.readbacks++;
    gen = got[STATES.generated].data as Uint32Array;
    log = got[STATES.moeLog].data as Uint32Array;
    la = got[STATES.moeLookahead]?.data as Uint32Array | undefined;
  };
  const row = (q: number) => log.subarray(q * LE, (q + 1) * LE);
  const laRow = (q: number) => la?.subarray(q * LE, (q + 1) * LE);
  const predictAfter = (q: number) => x.predict(row(q), laRow(q));
  let scored = 2; // pairs of exact decode steps (q − 1, q) scored so far: q < scored
  const score = (upTo: number) => {
    for (; scored < upTo; scored++) {
      x.scorePredictors(row(scored - 1), row(scored), laRow(scored - 1));
    }
  };
  await readBack();
  stats.prefillMs = performance.now() - t0;
  x.observePrefillRow(log.subarray(0, LE));
  sampledId(gen[0], 0);
  stats.generatedTokens++;
  yield gen[0];
  if (eos.has(gen[0])) return;
  let read = 1; // tokens yielded (all exact)
  let next = 1; // next step to run in cache mode
  let predicted: number[] = [];
  let w = naive ? 1 : readEvery;
  let tries = 0;
  const finish = () => stats.decodeMs = performance.now() - t0 - stats.prefillMs;
  while (read < limit) {
    const a = next;
    if (a < limit && x.preferStreaming()) {
      // Routing without locality: a streamed window is exact and needs no check.
      const b = Math.min(limit, a + readEvery);
      x.useStreamingTables();
      for (let q = a; q < b; q++) await submit(q, true);
      await readBack();
      x.stats.decodeRoundTrips++;
      for (; read < b; read++) {
        x.observeRow(log.subarray(read * LE, (read + 1) * LE), false);
        sampledId(gen[read], read);
        stats.generatedTokens++;
        yield gen[read];
        if (eos.has(gen[read])) {
          finish();
          return;
        }
      }
      score(b);
      next = b;
      predicted = predictAfter(b - 1);
      w = 1;
      continue;
    }
    const b = Math.min(limit, a + w);
    if (a < b) {
      await x.beginWindow(predicted, naive && tries === 0);
      if (recurrent.length) d.saveStates(recurrent);
      for (let q = a; q < b; q++) await submit(q, false);
    }
    await readBack();
    x.stats.decodeRoundTrips++;
    // Streamed reruns before `a` are exact; fold their routing in.
    for (let q = read; q < a; q++) x.observeRow(log.subarray(q * LE, (q + 1) * LE), false);
    const chk = a < b ? x.checkWindow(log, a, b) : { missStep: -1, missLayer: -1 };
    const good = chk.missStep < 0 ? b : chk.missStep;
    for (; read < good; read++) {
      sampledId(gen[read], read);
      stats.generatedTokens++;
      yield gen[read];
      if (eos.has(gen[read])) {
        finish();
        return;
      }
    }
    score(good);
    if (chk.missStep < 0) {
      tries = 0;
      next = b;
      // The last step's experts, or its router lookahead (naive predicts nothing).
      predicted = naive ? [] : predictAfter(b - 1);
      w = naive ? 1 : Math.min(readEvery, w * 2);
      continue;
    }
    const s = chk.missStep;
    x.stats.reruns++;
    if (recurrent.length) {
      // Back to the window's start; its good steps again, streamed (exact, same ids).
      d.restoreStates(recurrent);
      d.writeState(STATES.token, [gen[a - 1]]);
      x.useStreamingTables();
      for (let q = a; q < s; q++) await submit(q, true);
    } else d.writeState(STATES.token, [gen[s - 1]]);
    // Layers up to the missed one routed exactly; later ones are a guess.
    predicted = predictAfter(s);
    if (naive && ++tries <= x.plan.layers) {
      next = s; // retry with the chosen experts uploaded
      continue;
    }
    tries = 0;
    x.useStreamingTables();
    await submit(s, true);
    next = s + 1;
    w = 1;
  }
  finish();
}
