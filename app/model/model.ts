/**
 * A loaded causal LM: logits for token ids, and generation of ids and text
 * with the decode loop on the device.
 *
 * ```ts ignore
 * const model = await loadModel("./Mixtral-8x7B-v0.1");
 * const logits = await model.forward([1, 22557, 1526]); // Float32Array [T, vocab]
 * for await (const text of model.generate("The lecture says", { maxTokens: 32 })) {
 *   Deno.stdout.writeSync(new TextEncoder().encode(text));
 * }
 * ```
 *
 * @module
 */

import {
  checkTokenIds,
  generationLimit,
  prepareGeneration,
  probeChunk,
  promptChunks,
  promptLogits,
  promptRuns,
} from "../../runtime/prompt.ts";
import type { Graph } from "../../core/graph.ts";
import type { TensorData } from "../../core/host.ts";
import type { ModelConfig } from "../../models/config.ts";
import { promptsThroughDecode } from "../../models/mamba2.ts";
import { recurrentStateNames, STATES } from "../../models/states.ts";
import type { GpuDevice, KilnDevice } from "../../runtime/device.ts";
import {
  COLD_PROMPT_TOKENS,
  coldPrompt,
  finiteLogits,
  prefillChunksToCompile,
} from "../../runtime/decode.ts";
import { compile, type Executable, type RunOptions } from "../../runtime/executable.ts";
import { NOTHING_TO_COMPILE, type PendingCompile, startCompile } from "../../runtime/pipelines.ts";
import { PromptCache } from "../../runtime/prompt_cache.ts";
import type { ExpertPlan } from "../experts/placement.ts";
import type { ExpertParallel } from "../experts/parallel.ts";
import type { ExpertScheduler } from "../experts/scheduler.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { decodeLoop, type DecodeRunner } from "./decode_loop.ts";
import { prefillBuckets } from "./prefill_chunks.ts";

import {
  type GenerateOptions,
  type GenerateStats,
  GREEDY,
  type Sampling,
  stopOverlap,
} from "./generate_options.ts";

/**
 * A loaded model.
 *
 * @example
 * ```ts ignore
 * import { loadModel } from "@kiln/kiln";
 * const model = await loadModel("./mamba-130m-hf");
 * const logits = await model.forward([1, 2, 3]); // Float32Array [T · vocab]
 * for await (const text of model.generate("The lecture says", { maxTokens: 32 })) console.log(text);
 * model.dispose();
 * ```
 */
export class Model {
  /** The parsed config. */
  readonly config: ModelConfig;
  /** The tokenizer, when the folder has tokenizer.json. */
  readonly tokenizer?: Tokenizer;
  /** Prefill executable of the current sampling settings (weights and states shared). */
  prefill: Executable;
  /** The one-token decode executable of the current sampling settings. */
  decode: Executable;
  /** KV-cache capacity. */
  readonly maxSeq: number;
  /** Where the model was loaded from (its folder or GGUF file), for messages. */
  readonly source: string;
  /** Statistics of the last generate call. */
  lastStats?: GenerateStats;
  /** The expert scheduler, when loaded under a memory budget that does not hold every expert. */
  experts?: ExpertScheduler;
  /** The expert placement, when loaded with a memory budget (all resident or not). */
  expertPlan?: ExpertPlan;
  /** Expert parallelism, when loaded with several `devices`: the split, counters, report. */
  parallel?: ExpertParallel;
  /**
   * Hears pipeline compiles (`done` of `total`) when a run needs kernels the
   * device has not compiled yet; `loadModel` sets it from `onProgress` (or a
   * progress line on a terminal).
   */
  onCompile?: (done: number, total: number) => void;
  /**
   * Prompt chunk lengths the prefill may run (see `prefillBuckets`): a prompt
   * runs as chunks of these lengths, its last chunk padded where that is
   * cheaper, on the lengths already compiled (`planPrompt`): the first prompt
   * the prefill runs compiles one of them, later prompts of any length nothing. Empty: every
   * prompt in one run of its own length (a new compile per length).
   */
  prefillBuckets: readonly number[];
  /**
   * A prompt of at most this many tokens whose prefill pipelines are not
   * compiled yet runs through the decode step, token by token, instead (see
   * `coldPrompt`): a first short prompt then waits only for the decode step's
   * pipelines. 0 turns it off; `warmUp` compiles the prefill up front. A
   * prompt's 1-token chunks take the decode step always (`prefillChunksToCompile`).
   */
  coldPromptTokens: number = COLD_PROMPT_TOKENS;
  // Sampling settings are compiled into the graphs (specialised kernels); each
  // setting gets its own pair of executables sharing one copy of weights and states.
  readonly #pairs = new Map<string, [Executable, Executable]>();
  readonly #build: (s: Sampling) => [Graph, Graph];
  /** Devices `loadModel` requested for this model: `dispose` destroys them. */
  readonly #owned: GpuDevice[];
  /** What the caches hold, for `reusePrefix`. */
  readonly #cache: PromptCache;
  #disposed = false;

  /**
   * Use {@linkcode loadModel}. `owned` are devices made for this model alone
   * (destroyed by `dispose`); a device the caller passed in is never among them.
   * `source` names the model in errors (its folder or file).
   */
  constructor(
    config: ModelConfig,
    build: (s: Sampling) => [Graph, Graph],
    device: KilnDevice,
    maxSeq: number,
    tokenizer?: Tokenizer,
    owned: readonly GpuDevice[] = [],
    source = "model",
  ) {
    this.config = config;
    this.source = source;
    this.#build = build;
    this.maxSeq = maxSeq;
    this.tokenizer = tokenizer;
    this.#owned = [...owned];
    this.prefillBuckets = prefillBuckets(maxSeq);
    const [pg, dg] = build(GREEDY);
    this.prefill = compile(pg, device);
    this.decode = compile(dg, device, { shareWith: this.prefill });
    this.#pairs.set(JSON.stringify(GREEDY), [this.prefill, this.decode]);
    this.#cache = new PromptCache(recurrentStateNames(dg.states.keys()));
  }

  /** Throws once disposed: the weights and caches are freed (and an owned device destroyed). */
  #live(): void {
    if (this.#disposed) throw new TypeError("Model was disposed; load it again");
  }

  #checkIds(ids: readonly number[]): Uint32Array {
    this.#live();
    return checkTokenIds(ids, this.config.vocabSize, this.maxSeq);
  }

  /**
   * Logits for every position of `tokenIds` from a fresh state: a `Float32Array`
   * of `[T, vocab]`, row-major.
   *
   * @example
   * ```ts ignore
   * import { loadModel } from "@kiln/kiln";
   * const model = await loadModel("./mamba-130m-hf");
   * const logits = await model.forward([1, 2, 3]);
   * logits.length / 3; // vocab size
   * ```
   */
  async forward(tokenIds: readonly number[]): Promise<Float32Array> {
    const ids = this.#checkIds(tokenIds);
    this.#reset();
    this.experts?.useStreamingTables();
    if (this.parallel) this.parallel.decoding = false;
    const logits = await promptLogits(
      this.prefill,
      this.#prefillChunks(ids, 0, 0, false),
      this.#runOptions,
    );
    this.experts?.countStep();
    this.parallel?.countStep();
    return finiteLogits(logits, this.config.vocabSize, `${this.source}: forward`);
  }

  /**
   * Logits of one more token after the tokens run so far (forward, then step, step…):
   * `[1, vocab]`. For tests of incremental decoding.
   *
   * @example
   * ```ts ignore
   * import { loadModel } from "@kiln/kiln";
   * const model = await loadModel("./mamba-130m-hf");
   * await model.forward([1, 2, 3]);
   * const next = await model.step(4, 3); // logits [1, vocab] of token 4 at position 3
   * ```
   */
  async step(tokenId: number, position: number): Promise<Float32Array> {
    this.#checkIds([tokenId]);
    if (!Number.isInteger(position) || position < 0 || position >= this.maxSeq) {
      throw new RangeError(`step: position ${position} is outside [0, ${this.maxSeq})`);
    }
    this.#cache.invalidate();
    this.decode.writeState(STATES.token, [tokenId]);
    this.experts?.useStreamingTables();
    const { logits } = await this.decode.run(
      this.#decodeInputs(position, 0, 0),
      this.#runOptions,
    );
    this.experts?.countStep();
    this.parallel?.countStep();
    return finiteLogits(
      logits.data as Float32Array,
      this.config.vocabSize,
      `${this.source}: step at position ${position}`,
    );
  }

  /** Run options carrying the expert scheduler's copies, if any. */
  get #runOptions(): RunOptions {
    const x = this.experts, p = this.parallel, onCompile = this.onCompile;
    if (p) return { barriers: (plan) => p.barriers(plan), onCompile };
    return x
      ? { hooks: (plan) => x.hooks(plan), barriers: (plan) => x.barriers(plan), onCompile }
      : { onCompile };
  }

  /** A fresh sequence, or (`start` > 0) the cached prefix of `ids` kept. */
  #reset(ids?: Uint32Array, start = 0): void {
    if (ids) this.#cache.begin(this.prefill, ids, start);
    else {
      this.#cache.invalidate();
      this.prefill.resetStates();
    }
    if (start > 0 && this.prefill.graph.states.has(STATES.moeUsage)) {
      // The routing counters restart with the sequence, as resetStates does.
      this.prefill.writeState(STATES.moeUsage, new Uint32Array(this.#usageLength));
    }
    this.experts?.resetUsageBaseline();
  }

  get #usageLength(): number {
    const g = this.prefill.graph;
    return g.values[g.states.get(STATES.moeUsage)!].shape[0] as number;
  }

  /**
   * The prefill runs of a prompt: one per chunk (see `prefillBuckets`), each at
   * its position; the last one's sample is the first generated token. The
   * chunk lengths are those compiled, the last chunk padded where that is
   * cheaper (`planPrompt`; `singles`: 1-token chunks take the decode step, as
   * in generation without the expert scheduler). Expert parallelism sizes its
   * transfers by the prompt: one run.
   */
  #prefillChunks(
    ids: Uint32Array,
    seed: number,
    step: number,
    singles = true,
    start = 0,
  ): Record<string, TensorData>[] {
    const buckets = this.parallel ? [] : this.prefillBuckets;
    const rest = ids.subarray(start);
    const left = this.maxSeq - start;
    const runs = promptRuns(this.prefill, rest.length, buckets, left, singles && this.#plain);
    return promptChunks(rest, runs, seed, step, (n) => this.#remoteInputs(n), start);
  }

  #decodeInputs(pos: number, seed: number, step: number) {
    return { pos: [pos], seed: [seed], step: [step], ...this.#remoteInputs(1) };
  }

  /** What the decode loops run: these executables, their inputs, the expert machinery. */
  get #runner(): DecodeRunner {
    return {
      prefill: this.prefill,
      decode: this.decode,
      experts: this.experts,
      parallel: this.parallel,
      runOptions: this.#runOptions,
      decodeInputs: (pos, seed, step) => this.#decodeInputs(pos, seed, step),
      recurrentStates: this.#cache.recurrent,
    };
  }

  /** Expert parallelism: each MoE layer's `moe_remote` input starts as zeros. */
  #remoteInputs(T: number): Record<string, Float32Array> {
    const x = this.parallel;
    if (!x) return {};
    const out: Record<string, Float32Array> = {};
    const zeros = new Float32Array(T * this.config.hidden);
    for (const p of x.prefixes) out[`${p}.moe_remote`] = zeros;
    return out;
  }

  /**
   * Streams generated text. Needs tokenizer.json.
   *
   * @example
   * ```ts ignore
   * import { loadModel } from "@kiln/kiln";
   * const model = await loadModel("./mamba-130m-hf");
   * for await (const text of model.generate("The lecture says", { maxTokens: 32, stop: ["."] })) {
   *   Deno.stdout.writeSync(new TextEncoder().encode(text));
   * }
   * ```
   */
  async *generate(prompt: string, options: GenerateOptions = {}): AsyncIterable<string> {
    this.#live();
    const tok = this.tokenizer;
    if (!tok) {
      throw new TypeError(
        "generate: this model folder has no tokenizer.json; use forward() with token ids",
      );
    }
    const ids = tok.encode(prompt, { addSpecialTokens: options.addSpecialTokens ?? true });
    const stream = tok.decoder({ skipSpecialTokens: true });
    const eos = new Set([
      ...(this.config.eosTokenIds ?? []),
      ...(tok.eosId !== undefined ? [tok.eosId] : []),
    ]);
    let text = "";
    let emitted = 0;
    const stops = options.stop ?? [];
    for await (const id of this.generateIds(ids, options)) {
      if (eos.has(id)) break;
      text += stream.push(id);
      // Hold back text that could be the start of a stop string.
      const hit = stops.map((s) => text.indexOf(s, Math.max(0, emitted - s.length))).filter((i) =>
        i >= 0
      );
      if (hit.length) {
        const cut = Math.min(...hit);
        if (cut > emitted) yield text.slice(emitted, cut);
        return;
      }
      const hold = Math.max(0, ...stops.map((s) => stopOverlap(text, s)));
      if (text.length - hold > emitted) {
        yield text.slice(emitted, text.length - hold);
        emitted = text.length - hold;
      }
    }
    text += stream.flush();
    if (text.length > emitted) yield text.slice(emitted);
  }

  /**
   * Streams generated token ids. The decode loop stays on the device: each step's
   * sampled id feeds the next through device state, and ids are read back every
   * `readEvery` steps (one host round trip for several tokens). A short prompt
   * whose prefill is not compiled yet, and any 1-token chunk of a prompt, runs
   * through the decode step (see `coldPromptTokens`; `lastStats.promptRun`).
   *
   * @example
   * ```ts ignore
   * import { loadModel } from "@kiln/kiln";
   * const model = await loadModel("./mamba-130m-hf");
   * const ids: number[] = [];
   * for await (const id of model.generateIds([1, 2, 3], { maxTokens: 8, readEvery: 4 })) ids.push(id);
   * ```
   */
  async *generateIds(
    promptIds: readonly number[],
    options: GenerateOptions = {},
  ): AsyncIterable<number> {
    const ids = this.#checkIds(promptIds);
    const { limit, readEvery } = generationLimit(ids.length, options, this.maxSeq, this.#maxNew);
    this.#setSampling(options);
    const seed = options.seed ?? 0;
    // Expert parallelism sizes its transfers by the prompt: never a part of one.
    const start = options.reusePrefix && !this.parallel ? this.#cache.reusable(ids) : 0;
    const stats: GenerateStats = {
      promptTokens: ids.length,
      reusedTokens: start,
      generatedTokens: 0,
      readbacks: 0,
      compileMs: 0,
      prefillMs: 0,
      decodeMs: 0,
    };
    this.lastStats = stats;
    const eos = new Set(this.config.eosTokenIds);
    if (this.tokenizer?.eosId !== undefined) eos.add(this.tokenizer.eosId);
    const plain = this.#plain;
    // Planned once: what is compiled here is what the loop runs.
    const runs = this.#prefillChunks(ids, seed, 0, true, start);
    const chunks = prefillChunksToCompile(runs, plain);
    const promptViaDecode = plain &&
      coldPrompt(this.prefill, chunks, ids.length - start, this.coldPromptTokens);
    if (this.prefill.device.kind === "gpu") {
      // Compile this prompt length's pipelines (and the decode step's) before the
      // clock starts: a new shape costs seconds on a software adapter, which is
      // neither prefill nor decode speed. Only inputs are written; nothing runs.
      const tc = performance.now();
      await this.#compile(promptViaDecode ? [] : chunks);
      await this.parallel?.prepare(ids.length, this.config.hidden);
      stats.compileMs = performance.now() - tc;
    }
    const t0 = performance.now();
    this.#reset(ids, start);
    const ep0 = this.parallel?.stats.roundTrips ?? 0;
    const cache = this.#cache, prefill = this.prefill;
    const loop = {
      ...{ ids, limit, readEvery, seed, stats, eos, t0, chunks: runs, promptViaDecode, start },
      singlesViaDecode: plain,
      promptQueued: () => cache.promptQueued(prefill),
    };
    try {
      for await (const id of decodeLoop(this.#runner, loop)) {
        cache.generated(id);
        yield id;
      }
    } finally {
      // Expert parallelism's barrier readbacks are host round trips too.
      if (this.parallel) stats.readbacks += this.parallel.stats.roundTrips - ep0;
    }
  }

  /**
   * Compiles the pipelines of the decode step and of every prefill chunk
   * length (see `prefillBuckets`) for these sampling settings now, so that no
   * later prompt, whatever its length, waits for a compile (a chat's first
   * turn, say). Not the 1-token chunk, which generation runs through the decode
   * step (`forward` compiles it when it needs it). A GPU model only; resolves
   * with the milliseconds it took.
   *
   * @example
   * ```ts ignore
   * import { loadModel } from "@kiln/kiln";
   * const model = await loadModel("./mamba-130m-hf");
   * await model.warmUp({ temperature: 0.7 });
   * ```
   */
  async warmUp(options: GenerateOptions = {}): Promise<number> {
    this.#live();
    this.#setSampling(options);
    const t0 = performance.now();
    const whole = this.prefillBuckets.length === 0 || this.parallel !== undefined;
    if (this.prefill.device.kind === "gpu" && !whole) {
      // One chunk of each bucket length, as generateIds would compile them.
      const each = this.prefillBuckets.map((n) => ({ ...probeChunk(n), ...this.#remoteInputs(n) }));
      await this.#compile(prefillChunksToCompile(each, this.#plain));
    }
    return performance.now() - t0;
  }

  /**
   * Starts compiling the decode step's pipelines (the current sampling
   * settings) from its plan alone, without weights or buffers, and returns once
   * the driver has the work (`startCompile`): `loadModel` calls it before it
   * reads the weights, so the driver's compile (lavapipe: LLVM, on a thread of
   * its own) runs while JS reads them. `finish()` resolves when compiled;
   * `total` counts the pipelines (0 on the CPU device).
   *
   * @example
   * ```ts ignore
   * const ahead = await model.compileAhead();
   * await loadTheWeights();
   * await ahead.finish(); // the first generate compiles only its prefill, if anything
   * ```
   */
  async compileAhead(): Promise<PendingCompile> {
    this.#live();
    const device = this.decode.device;
    if (device.kind !== "gpu") return NOTHING_TO_COMPILE;
    return await startCompile(device, this.decode.plan({}));
  }

  /**
   * No expert scheduler or expert parallelism: those size their copies by the
   * prefill, so with them every chunk runs the prefill and no prompt the decode step.
   */
  get #plain(): boolean {
    return !this.experts && !this.parallel && promptsThroughDecode(this.config);
  }

  /** Compiles the decode step and the prefill at these chunks' lengths (nothing runs). */
  async #compile(chunks: readonly Record<string, TensorData>[]): Promise<void> {
    await prepareGeneration(this.prefill, this.decode, chunks, this.#decodeInputs(0, 0, 1), {
      onCompile: this.onCompile,
    });
  }

  get #maxNew(): number {
    const g = this.decode.graph;
    return g.states.has(STATES.generated)
      ? (g.values[g.states.get(STATES.generated)!].shape[0] as number)
      : 0;
  }

  #setSampling(options: GenerateOptions): void {
    const sampling = {
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
    };
    const key = JSON.stringify(sampling);
    let pair = this.#pairs.get(key);
    if (!pair) {
      const [pg, dg] = this.#build(sampling);
      const base = this.#pairs.values().next().value![0];
      const prefill = compile(pg, base.device, { shareWith: base });
      pair = [prefill, compile(dg, base.device, { shareWith: base })];
      this.#pairs.set(key, pair);
    }
    [this.prefill, this.decode] = pair;
  }

  /**
   * Frees device memory: weights, caches, expert buffers, and the devices
   * `loadModel` requested for this model (never a device passed in as
   * `device` or `devices`). Idempotent; every other method then throws a
   * TypeError saying the model was disposed.
   *
   * @example
   * ```ts ignore
   * import { loadModel } from "@kiln/kiln";
   * const model = await loadModel("./mamba-130m-hf");
   * model.dispose(); // frees weights, caches and expert buffers
   * ```
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.experts?.dispose();
    this.parallel?.dispose();
    for (const [p, d] of this.#pairs.values()) {
      p.dispose();
      d.dispose();
    }
    this.#pairs.clear();
    // Buffers first, then the device: a device left alive keeps its memory
    // (and its compiled pipelines) until process exit.
    for (const dev of this.#owned) dev.destroy();
    this.#owned.length = 0;
  }
}
