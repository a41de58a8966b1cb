/**
 * Loading and running a Hugging Face causal LM folder: config.json, safetensors
 * (single or sharded) and, optionally, tokenizer.json.
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

import { compile, type Executable } from "../runtime/executable.ts";
import type { Graph } from "../core/graph.ts";
import { formatShape } from "../core/shape.ts";
import { buildCausalLM, checkpointSources } from "../models/causal_lm.ts";
import { expertWidth, type ModelConfig } from "../models/config.ts";
import { expertTensor, moePrefix, specOf } from "../models/architectures/mod.ts";
import { readConfig } from "./config_file.ts";
import { Checkpoint } from "./safetensors.ts";
import { createProgress } from "./progress.ts";
import { Tokenizer } from "./tokenizer.ts";
import { type GpuDevice, type KilnDevice, requestDevice } from "../runtime/device.ts";
import type { RunOptions } from "../runtime/executable.ts";
import {
  type ExpertPlan,
  parseBytes,
  planExperts,
  readRoutingStats,
  type RoutingStats,
} from "./expert_plan.ts";
import {
  type ExpertPolicy,
  type ExpertPrefetch,
  ExpertScheduler,
  SLOT_POOL,
} from "./expert_scheduler.ts";
import {
  buildRemoteExperts,
  checkDevices,
  type DevicePlan,
  ExpertParallel,
  planDevices,
} from "./expert_parallel.ts";

/**
 * Options of {@linkcode loadModel}.
 *
 * @example
 * ```ts ignore
 * import { loadModel, type LoadOptions } from "@kiln/kiln";
 * const options: LoadOptions = { maxSeq: 4096, dtype: "f16", memoryBudget: "24GiB", quiet: true };
 * const model = await loadModel("./Mixtral-8x7B-v0.1", options);
 * ```
 */
export interface LoadOptions {
  /** Device to run on (default: a new WebGPU device). */
  device?: KilnDevice;
  /** KV-cache capacity in tokens (prompt + generated). Default 2048. */
  maxSeq?: number;
  /** No progress bar on stderr. */
  quiet?: boolean;
  /** Compute dtype (default f32); f16 needs the adapter's `shader-f16`. */
  dtype?: "f32" | "f16";
  /**
   * GPU memory budget (bytes, or a string like `"2GiB"`) for a MoE model: the
   * non-expert weights, caches and activations are planned first, the rest
   * holds expert slots; experts that do not fit stream from the host tier (see
   * `runtime/expert_scheduler.ts`). Below the minimum: a RangeError naming it.
   * Absent: every expert resident.
   */
  memoryBudget?: number | string;
  /**
   * Routing statistics steering which experts are pinned (default: read
   * `kiln_routing_stats.json` from the model folder when it exists).
   */
  routingStats?: RoutingStats;
  /**
   * How experts that are not pinned reach the GPU (see `ExpertPolicy`): `lru`
   * (default) or `lfu` cache, `stream` (every one copied in every step, no round
   * trips), `naive` (on-demand baseline). Models with recurrent (Mamba) state use
   * `stream`: a cache miss is repaired by re-running steps, which such state
   * cannot undo.
   */
  expertPolicy?: ExpertPolicy;
  /**
   * Host memory budget (bytes or `"8GiB"`) for the experts that are not pinned
   * on the GPU (needs `memoryBudget`): those that do not fit stay in the
   * safetensors files and are read by offset when needed (one expert of the
   * budget is the read buffer; below that: a RangeError). Absent: every
   * non-pinned expert has a host copy.
   */
  hostMemoryBudget?: number | string;
  /**
   * How the `lru` / `lfu` cache predicts each window's uploads (see
   * `ExpertPrefetch`): `temporal` (default: the last step's experts) or
   * `lookahead` / `both` (Mixtral-offloading's router lookahead, computed on the
   * GPU and read back with the routing log).
   */
  prefetch?: ExpertPrefetch;
  /** Prompt tokens the activation estimate of the budget covers (default min(maxSeq, 512)). */
  budgetPrefillTokens?: number;
  /**
   * Expert parallelism: GPU devices (or how many to request) to split a MoE
   * model's experts across; device 0 is the home device (every non-expert
   * weight, cache and activation). Each MoE layer's input moves to the devices
   * holding its chosen experts and their outputs move back (see
   * `runtime/expert_parallel.ts`). With `memoryBudget`, the budget is per device
   * and the home device keeps as many experts as fit. 1 (or one device) runs
   * on one device as usual.
   */
  devices?: number | readonly KilnDevice[];
}

/**
 * Options of {@linkcode Model.generate}.
 *
 * @example
 * ```ts ignore
 * import { type GenerateOptions, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./mamba-130m-hf");
 * const options: GenerateOptions = { maxTokens: 64, temperature: 0.7, topP: 0.9, seed: 1, stop: ["\n\n"] };
 * for await (const text of model.generate("Once upon a time", options)) console.log(text);
 * ```
 */
export interface GenerateOptions {
  /** Tokens to generate at most (default 64). */
  maxTokens?: number;
  /** 0 (default) is greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (0: off). */
  topK?: number;
  /** Nucleus sampling mass (1: off). */
  topP?: number;
  /** RNG seed (default 0). */
  seed?: number;
  /** Stop when the text contains one of these (the stop string is not emitted). */
  stop?: readonly string[];
  /** Read generated ids back every this many tokens (default 8; 1 reads every token). */
  readEvery?: number;
  /** Prepend BOS as the tokenizer's template says (default true). */
  addSpecialTokens?: boolean;
}

/**
 * Counters of the last `generate` call.
 *
 * @example
 * ```ts ignore
 * import { type GenerateStats, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./mamba-130m-hf");
 * for await (const text of model.generate("Hello", { maxTokens: 32 })) console.log(text);
 * const s: GenerateStats = model.lastStats!;
 * console.log(((s.generatedTokens - 1) / s.decodeMs) * 1000, "tokens/s");
 * ```
 */
export interface GenerateStats {
  /** Prompt tokens. */
  promptTokens: number;
  /** Generated tokens (including a final EOS). */
  generatedTokens: number;
  /** Host round trips (readbacks). */
  readbacks: number;
  /** Milliseconds compiling pipelines for this prompt length before the clock started (0 when cached). */
  compileMs: number;
  /** Milliseconds for the prefill (until the first token was read). */
  prefillMs: number;
  /** Milliseconds for the decode loop: the generatedTokens − 1 steps after the first token. */
  decodeMs: number;
}

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
  /** Statistics of the last generate call. */
  lastStats?: GenerateStats;
  /** The expert scheduler, when loaded under a memory budget that does not hold every expert. */
  experts?: ExpertScheduler;
  /** The expert placement, when loaded with a memory budget (all resident or not). */
  expertPlan?: ExpertPlan;
  /** Expert parallelism, when loaded with several `devices`: the split, counters, report. */
  parallel?: ExpertParallel;
  // Sampling settings are compiled into the graphs (specialised kernels); each
  // setting gets its own pair of executables sharing one copy of weights and states.
  readonly #pairs = new Map<string, [Executable, Executable]>();
  readonly #build: (s: Sampling) => [Graph, Graph];

  /** Use {@linkcode loadModel}. */
  constructor(
    config: ModelConfig,
    build: (s: Sampling) => [Graph, Graph],
    device: KilnDevice,
    maxSeq: number,
    tokenizer?: Tokenizer,
  ) {
    this.config = config;
    this.#build = build;
    this.maxSeq = maxSeq;
    this.tokenizer = tokenizer;
    const [pg, dg] = build(GREEDY);
    this.prefill = compile(pg, device);
    this.decode = compile(dg, device, { shareWith: this.prefill });
    this.#pairs.set(JSON.stringify(GREEDY), [this.prefill, this.decode]);
  }

  #checkIds(ids: readonly number[]): Uint32Array {
    if (!Array.isArray(ids) && !(ids instanceof Uint32Array)) {
      throw new TypeError("forward: tokenIds must be an array of integers");
    }
    if (ids.length === 0) throw new RangeError("forward: tokenIds is empty");
    if (ids.length > this.maxSeq) {
      throw new RangeError(`forward: ${ids.length} tokens exceed maxSeq ${this.maxSeq}`);
    }
    for (const [i, t] of ids.entries()) {
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) {
        throw new RangeError(
          `forward: token ${i} = ${t} is outside the vocabulary [0, ${this.config.vocabSize})`,
        );
      }
    }
    return Uint32Array.from(ids);
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
    const { logits } = await this.prefill.run(this.#prefillInputs(ids, 0, 0), this.#runOptions);
    this.experts?.countStep();
    this.parallel?.countStep();
    return logits.data as Float32Array;
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
    if (position >= this.maxSeq) {
      throw new RangeError(`step: position ${position} exceeds maxSeq ${this.maxSeq}`);
    }
    this.decode.writeState("token", [tokenId]);
    this.experts?.useStreamingTables();
    const { logits } = await this.decode.run(
      this.#decodeInputs(position, 0, 0),
      this.#runOptions,
    );
    this.experts?.countStep();
    this.parallel?.countStep();
    return logits.data as Float32Array;
  }

  /** Run options carrying the expert scheduler's copies, if any. */
  get #runOptions(): RunOptions {
    const x = this.experts, p = this.parallel;
    if (p) return { barriers: (plan) => p.barriers(plan) };
    return x ? { hooks: (plan) => x.hooks(plan), barriers: (plan) => x.barriers(plan) } : {};
  }

  #reset(): void {
    this.prefill.resetStates();
    this.experts?.resetUsageBaseline();
  }

  #prefillInputs(ids: Uint32Array, seed: number, step: number) {
    return {
      ids,
      pos: [0],
      last: [ids.length - 1],
      seed: [seed],
      step: [step],
      ...this.#remoteInputs(ids.length),
    };
  }

  #decodeInputs(pos: number, seed: number, step: number) {
    return { pos: [pos], seed: [seed], step: [step], ...this.#remoteInputs(1) };
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
      const hold = Math.max(0, ...stops.map((s) => overlap(text, s)));
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
   * `readEvery` steps (one host round trip for several tokens).
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
    const maxTokens = options.maxTokens ?? 64;
    const readEvery = options.readEvery ?? 8;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      throw new RangeError(`generate: maxTokens must be >= 1, got ${maxTokens}`);
    }
    if (!Number.isInteger(readEvery) || readEvery < 1) {
      throw new RangeError(`generate: readEvery must be >= 1, got ${readEvery}`);
    }
    const limit = Math.min(maxTokens, this.maxSeq - ids.length, this.#maxNew);
    if (limit < 1) {
      throw new RangeError(
        `generate: the prompt (${ids.length} tokens) fills maxSeq ${this.maxSeq}`,
      );
    }
    this.#setSampling(options);
    const seed = options.seed ?? 0;
    const stats: GenerateStats = {
      promptTokens: ids.length,
      generatedTokens: 0,
      readbacks: 0,
      compileMs: 0,
      prefillMs: 0,
      decodeMs: 0,
    };
    this.lastStats = stats;
    const eos = new Set(this.config.eosTokenIds);
    if (this.tokenizer?.eosId !== undefined) eos.add(this.tokenizer.eosId);
    if (this.prefill.device.kind === "gpu") {
      // Compile this prompt length's pipelines (and the decode step's) before the
      // clock starts: a new shape costs seconds on a software adapter, which is
      // neither prefill nor decode speed. Only inputs are written; nothing runs.
      const tc = performance.now();
      await this.prefill.prepare(this.#prefillInputs(ids, seed, 0));
      await this.decode.prepare(this.#decodeInputs(ids.length, seed, 1));
      await this.parallel?.prepare(ids.length, this.config.hidden);
      stats.compileMs = performance.now() - tc;
    }
    const t0 = performance.now();
    this.#reset();
    const ep0 = this.parallel?.stats.roundTrips ?? 0;
    try {
      yield* this.#generate({ ids, limit, readEvery, seed, stats, eos, t0 });
    } finally {
      // Expert parallelism's barrier readbacks are host round trips too.
      if (this.parallel) stats.readbacks += this.parallel.stats.roundTrips - ep0;
    }
  }

  async *#generate(loop: DecodeLoop): AsyncIterable<number> {
    const { ids, limit, readEvery, seed, stats, eos, t0 } = loop;
    const run = this.#runOptions;
    const x = this.experts;
    if (x?.cached) {
      yield* this.#generateCached(x, loop);
      return;
    }
    const ep = this.parallel;
    if (x) x.decoding = false;
    if (ep) ep.decoding = false;
    await this.prefill.submit(this.#prefillInputs(ids, seed, 0), run);
    x?.countStep();
    ep?.countStep();
    if (x) x.decoding = true;
    if (ep) ep.decoding = true;
    let queued = 1, read = 0;
    const d = this.decode;
    while (read < limit) {
      // Queue up to readEvery more steps, then read the log once. The first read
      // comes right after the prefill: the first token streams out as soon as it
      // exists, and prefillMs / decodeMs split exactly at it (queuing decode steps
      // before it used to count readEvery − 1 decode steps as prefill time).
      const before = queued;
      while (read > 0 && queued < limit && queued - read < readEvery) {
        await d.submit(this.#decodeInputs(ids.length + queued - 1, seed, queued), run);
        x?.countStep();
        ep?.countStep();
        queued++;
      }
      // With a scheduler, the routing counters ride along in the same readback.
      const got = await d.readStates(x ? ["generated", "moe.usage"] : ["generated"]);
      const log = got.generated.data;
      if (x) x.observeUsage(got["moe.usage"].data as Uint32Array, queued - before);
      stats.readbacks++;
      if (x && read > 0) x.stats.decodeRoundTrips++;
      if (read === 0) stats.prefillMs = performance.now() - t0;
      for (; read < queued; read++) {
        stats.generatedTokens++;
        const id = log[read];
        yield id;
        if (eos.has(id)) {
          stats.decodeMs = performance.now() - t0 - stats.prefillMs;
          return;
        }
      }
    }
    stats.decodeMs = performance.now() - t0 - stats.prefillMs;
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
   * overwrites the rows) and the sampler is a function of (seed, step). After a
   * miss the window shrinks to one step and doubles back on clean windows.
   * The naive policy instead retries the step with the experts it chose
   * uploaded, one readback per try, until no chosen expert is missing.
   */
  async *#generateCached(x: ExpertScheduler, loop: DecodeLoop): AsyncIterable<number> {
    const { ids, limit, readEvery, seed, stats, eos, t0 } = loop;
    const d = this.decode, LE = x.plan.layers * x.plan.experts;
    const stream = this.#runOptions;
    const naive = x.policy === "naive";
    const submit = async (q: number, streamed: boolean) => {
      await d.submit(
        this.#decodeInputs(ids.length + q - 1, seed, q),
        streamed ? stream : {},
      );
      x.countStep();
    };
    x.decoding = false;
    x.useStreamingTables();
    await this.prefill.submit(this.#prefillInputs(ids, seed, 0), stream);
    x.countStep();
    x.decoding = true;
    let gen: Uint32Array = new Uint32Array(0), log: Uint32Array = new Uint32Array(0);
    let la: Uint32Array | undefined;
    // One host round trip: the generated ids, the per-step routing log and the
    // router-lookahead log together.
    const readBack = async () => {
      const names = ["generated", "moe.log", ...(x.lookahead ? ["moe.lookahead"] : [])];
      const got = await d.readStates(names);
      stats.readbacks++;
      gen = got.generated.data as Uint32Array;
      log = got["moe.log"].data as Uint32Array;
      la = got["moe.lookahead"]?.data as Uint32Array | undefined;
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
        for (let q = a; q < b; q++) await submit(q, false);
      }
      await readBack();
      x.stats.decodeRoundTrips++;
      // Streamed reruns before `a` are exact; fold their routing in.
      for (let q = read; q < a; q++) x.observeRow(log.subarray(q * LE, (q + 1) * LE), false);
      const chk = a < b ? x.checkWindow(log, a, b) : { missStep: -1, missLayer: -1 };
      const good = chk.missStep < 0 ? b : chk.missStep;
      for (; read < good; read++) {
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
      d.writeState("token", [gen[s - 1]]);
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

  get #maxNew(): number {
    return this.decode.graph.states.has("generated")
      ? (this.decode.graph.values[this.decode.graph.states.get("generated")!].shape[0] as number)
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
   * Frees device memory.
   *
   * @example
   * ```ts ignore
   * import { loadModel } from "@kiln/kiln";
   * const model = await loadModel("./mamba-130m-hf");
   * model.dispose(); // frees weights, caches and expert buffers
   * ```
   */
  dispose(): void {
    this.experts?.dispose();
    this.parallel?.dispose();
    for (const [p, d] of this.#pairs.values()) {
      p.dispose();
      d.dispose();
    }
    this.#pairs.clear();
  }
}

/** One generate call's decode-loop settings. */
interface DecodeLoop {
  ids: Uint32Array;
  limit: number;
  readEvery: number;
  seed: number;
  stats: GenerateStats;
  eos: Set<number>;
  t0: number;
}

/** Sampling settings compiled into a graph pair. */
interface Sampling {
  temperature: number;
  topK: number;
  topP: number;
}
const GREEDY: Sampling = { temperature: 0, topK: 0, topP: 1 };

function overlap(text: string, stop: string): number {
  for (let n = Math.min(stop.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(stop.slice(0, n))) return n;
  }
  return 0;
}

/**
 * Uploads every graph parameter from the checkpoint, stacking MoE experts.
 *
 * @example
 * ```ts ignore
 * import { buildCausalLM, Checkpoint, compile, loadWeights, readConfig, requestDevice } from "@kiln/kiln";
 * const cfg = await readConfig("./mamba-130m-hf");
 * const exe = compile(buildCausalLM(cfg, { mode: "prefill", maxSeq: 256, maxNew: 32 }), await requestDevice());
 * const ckpt = await Checkpoint.open("./mamba-130m-hf");
 * await loadWeights(exe, cfg, ckpt);
 * ckpt.close();
 * ```
 */
export async function loadWeights(
  exe: Executable,
  cfg: ModelConfig,
  ckpt: Checkpoint,
  skip?: (param: string) => boolean,
): Promise<void> {
  const graph = exe.graph;
  const sources = checkpointSources(cfg, graph);
  for (const [name, src] of sources) {
    if (skip?.(name)) continue;
    const v = graph.values[graph.params.get(name)!];
    const want = v.shape as number[];
    const n = want.reduce((a, b) => a * b, 1);
    const per = n / src.tensors.length;
    const out = v.dtype === "f16" ? new Float16Array(n) : new Float32Array(n);
    for (const [j, t] of src.tensors.entries()) {
      if (!ckpt.has(t)) {
        throw new TypeError(
          `${ckpt.path}: missing tensor "${t}" (expected shape ${
            formatShape(src.tensors.length > 1 ? want.slice(1) : want)
          })`,
        );
      }
      const info = ckpt.info(t);
      const found = info.shape.reduce((a, b) => a * b, 1);
      const squeeze = (s: readonly number[]) => s.filter((x) => x !== 1).join(",");
      const expect = src.tensors.length > 1 ? want.slice(1) : want;
      if (found !== per || squeeze(info.shape) !== squeeze(expect)) {
        throw new RangeError(
          `${info.file}: tensor "${t}" has shape ${formatShape(info.shape)}, expected ${
            formatShape(expect)
          }`,
        );
      }
      out.set(await ckpt.readAs(t, v.dtype === "f16" ? "f16" : "f32"), j * per);
    }
    exe.setParams({ [name]: out });
  }
}

/**
 * Loads a Hugging Face model folder (config.json + safetensors [+ tokenizer.json]).
 *
 * @example
 * ```ts ignore
 * import { loadModel } from "@kiln/kiln";
 * const model = await loadModel("./mamba-130m-hf");
 * const logits = await model.forward([1, 2, 3]);
 * ```
 */
export async function loadModel(dir: string, options: LoadOptions = {}): Promise<Model> {
  const cfg = await readConfig(dir);
  const devices = await resolveDevices(options);
  const device = devices?.[0] ?? options.device ?? await requestDevice();
  const maxSeq = options.maxSeq ?? 2048;
  if (!Number.isInteger(maxSeq) || maxSeq < 1) {
    throw new RangeError(`loadModel: maxSeq must be a positive integer, got ${maxSeq}`);
  }
  const maxNew = maxSeq;
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`loadModel: dtype must be "f32" or "f16", got ${JSON.stringify(dtype)}`);
  }
  if (dtype === "f16" && device.kind === "gpu" && !device.caps.f16) {
    throw new TypeError(
      "loadModel: dtype f16 needs the adapter feature shader-f16, which this adapter lacks",
    );
  }
  if (options.hostMemoryBudget !== undefined) {
    if (options.memoryBudget === undefined) {
      throw new TypeError(
        "loadModel: hostMemoryBudget applies to experts that do not fit memoryBudget; give both",
      );
    }
    if (devices) {
      throw new TypeError(
        "loadModel: hostMemoryBudget is not supported with several devices (each holds its experts)",
      );
    }
  }
  let expertPlan: ExpertPlan | undefined;
  let devicePlan: DevicePlan | undefined;
  if (devices) {
    devicePlan = await planForDevices(dir, cfg, devices.length, device, options);
  } else if (options.memoryBudget !== undefined) {
    expertPlan = await planForBudget(dir, cfg, device, options);
  }
  const expertSlots = devicePlan
    ? Math.max(1, devicePlan.slots[0])
    : expertPlan && !expertPlan.allResident
    ? expertPlan.slots
    : undefined;
  const expertParallel = devicePlan !== undefined;
  // A miss is repaired by re-running steps: recurrent state cannot be rewound.
  const policy = cfg.pattern.some((p) => p.mixer !== "attention")
    ? "stream"
    : options.expertPolicy ?? "lru";
  const prefetch = options.prefetch ?? "temporal";
  if (!["temporal", "lookahead", "both"].includes(prefetch)) {
    throw new TypeError(
      `loadModel: prefetch must be "temporal", "lookahead" or "both", got ${
        JSON.stringify(prefetch)
      }`,
    );
  }
  const moeLookahead = expertSlots !== undefined && !expertParallel && prefetch !== "temporal" &&
    (policy === "lru" || policy === "lfu");
  const shared = { maxSeq, maxNew, dtype, expertSlots, expertParallel, moeLookahead };
  const build = (sampling: Sampling): [Graph, Graph] => [
    buildCausalLM(cfg, { mode: "prefill", sampling, ...shared }),
    buildCausalLM(cfg, { mode: "decode", sampling, ...shared }),
  ];
  let tokenizer: Tokenizer | undefined;
  const tokFile = `${dir.replace(/\/$/, "")}/tokenizer.json`;
  try {
    await Deno.stat(tokFile);
    tokenizer = await Tokenizer.fromFile(tokFile);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const ckpt = await Checkpoint.open(dir, {
    progress: (total) => createProgress({ total, label: "loading", quiet: options.quiet }),
  });
  try {
    checkUnusedTensors(cfg, ckpt);
  } catch (e) {
    ckpt.close();
    throw e;
  }
  const model = new Model(cfg, build, device, maxSeq, tokenizer);
  model.expertPlan = expertPlan;
  try {
    if (expertSlots) {
      const layers = moeLayers(cfg);
      const prefixes = layers.map((i) => moePrefix(cfg, i));
      const skip = (n: string) => n.startsWith(`${SLOT_POOL}.`) || n.endsWith(".slot_table");
      await loadWeights(model.prefill, cfg, ckpt, skip);
      const tensorOf = (l: number, e: number, w: "w1" | "w3" | "w2") =>
        expertTensor(cfg, layers[l], e, w);
      if (devicePlan) {
        model.parallel = await ExpertParallel.load(
          model.prefill,
          devices!,
          ckpt,
          devicePlan,
          prefixes,
          tensorOf,
          {
            d: cfg.hidden,
            ff: expertWidth(cfg),
            topK: cfg.moe!.topK,
            normTopk: cfg.moe!.normTopk,
            dtype,
          },
        );
        return model;
      }
      model.experts = await ExpertScheduler.load(
        model.prefill,
        ckpt,
        expertPlan!,
        prefixes,
        tensorOf,
        dtype,
        policy,
        // The disk tier reads from its own handle, open until dispose.
        expertPlan!.disk.some((r) => r.length > 0) ? await Checkpoint.open(dir) : undefined,
      );
      model.experts.prefetch = prefetch;
      model.experts.lookahead = moeLookahead;
    } else {
      await loadWeights(model.prefill, cfg, ckpt);
    }
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    ckpt.close();
  }
  return model;
}

/**
 * Refuses a checkpoint holding tensors the config's model does not read: they
 * mean config.json describes another model (a bias, a norm or a layer it does
 * not declare), and ignoring them would give wrong logits without a word.
 * Rotary caches (`rotary_emb.inv_freq`) and a stored copy of a tied LM head are
 * buffers, not parameters, and are skipped as transformers skips them.
 */
function checkUnusedTensors(cfg: ModelConfig, ckpt: Checkpoint): void {
  const read = new Set<string>();
  const graph = buildCausalLM(cfg, { mode: "decode", maxSeq: 1, maxNew: 1 });
  for (const src of checkpointSources(cfg, graph).values()) {
    for (const t of src.tensors) read.add(t);
  }
  const head = `${specOf(cfg).layout.lmHead}.weight`;
  const unused = [...ckpt.tensors.keys()].filter((n) =>
    !read.has(n) && !n.endsWith(".rotary_emb.inv_freq") && !(cfg.tieEmbeddings && n === head)
  );
  if (unused.length > 0) {
    const shown = unused.slice(0, 3).map((n) => JSON.stringify(n)).join(", ");
    throw new TypeError(
      `${ckpt.path}: ${unused.length} tensor(s) that ${cfg.architecture} as configured does not use ` +
        `(${shown}${
          unused.length > 3 ? ", …" : ""
        }); config.json does not describe this checkpoint`,
    );
  }
}

/** Indices of the MoE layers. */
function moeLayers(cfg: ModelConfig): number[] {
  return cfg.pattern.flatMap((p, i) => (p.ffn === "moe" ? [i] : []));
}

/**
 * The expert placement `loadModel` would use for `options.memoryBudget`, from
 * config.json (and `kiln_routing_stats.json`) alone, without loading weights.
 *
 * @example
 * ```ts ignore
 * const plan = await planModelExperts("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB" });
 * console.log(describeExpertPlan(plan));
 * ```
 */
export async function planModelExperts(dir: string, options: LoadOptions): Promise<ExpertPlan> {
  if (options.memoryBudget === undefined) {
    throw new TypeError("planModelExperts: memoryBudget is required");
  }
  const cfg = await readConfig(dir);
  const device = options.device ?? await requestDevice();
  return await planForBudget(dir, cfg, device, options);
}

/**
 * The split of experts across `options.devices` devices that `loadModel` would
 * use (with `options.memoryBudget` per device), from config.json (and
 * `kiln_routing_stats.json`) alone, without loading weights.
 *
 * @example
 * ```ts ignore
 * import { describeDevicePlan, planModelDevices } from "@kiln/kiln";
 * const plan = await planModelDevices("./Mixtral-8x7B-v0.1", { devices: 2, memoryBudget: "24GiB" });
 * console.log(describeDevicePlan(plan));
 * ```
 */
export async function planModelDevices(dir: string, options: LoadOptions): Promise<DevicePlan> {
  const n = typeof options.devices === "number" ? options.devices : options.devices?.length;
  if (n === undefined || !Number.isInteger(n) || n < 2) {
    throw new RangeError(`planModelDevices: devices must be 2 or more, got ${n}`);
  }
  const cfg = await readConfig(dir);
  const device = options.device ??
    (Array.isArray(options.devices) ? options.devices[0] : await requestDevice());
  return await planForDevices(dir, cfg, n, device, options);
}

/**
 * The expert plan for `options.memoryBudget`: non-expert parameters plus the
 * larger of the decode plan's and a prefill plan's buffers (KV caches, states,
 * activations) come first; what remains holds expert slots.
 */
async function planForBudget(
  dir: string,
  cfg: ModelConfig,
  device: KilnDevice,
  options: LoadOptions,
): Promise<ExpertPlan> {
  const budget = parseBytes(options.memoryBudget!);
  const z = await expertSizing(dir, cfg, device, options, "memoryBudget");
  return planExperts({
    layers: z.layers,
    experts: z.experts,
    topK: cfg.moe!.topK,
    expertBytes: z.expertBytes,
    fixedBytes: z.fixedBytes,
    budget,
    stats: z.stats,
    hostBudget: options.hostMemoryBudget === undefined
      ? undefined
      : parseBytes(options.hostMemoryBudget),
  });
}

/** The split of experts across `n` devices `loadModel` would use (`options.devices`). */
async function planForDevices(
  dir: string,
  cfg: ModelConfig,
  n: number,
  device: KilnDevice,
  options: LoadOptions,
): Promise<DevicePlan> {
  const z = await expertSizing(dir, cfg, device, options, "devices");
  const dtype = options.dtype ?? "f32";
  // Another device's activations: its experts-only plans for a prompt and a token.
  const remote = compile(
    buildRemoteExperts({
      d: cfg.hidden,
      ff: expertWidth(cfg),
      experts: z.experts,
      topK: cfg.moe!.topK,
      slots: 1,
      dtype,
    }),
    device,
  );
  const remoteFixed = Math.max(
    remote.plan({ T: z.prefillTokens }).peakBytes,
    remote.plan({ T: 1 }).peakBytes,
  );
  remote.dispose();
  return planDevices({
    devices: n,
    layers: z.layers,
    experts: z.experts,
    expertBytes: z.expertBytes,
    fixedBytes: z.fixedBytes,
    remoteFixedBytes: remoteFixed,
    budget: options.memoryBudget === undefined ? undefined : parseBytes(options.memoryBudget),
    stats: z.stats,
  });
}

/**
 * Sizes for expert placement: non-expert parameters plus the larger of the
 * decode plan's and a prefill plan's buffers (KV caches, states, activations)
 * are the fixed bytes; one expert's bytes; routing statistics.
 */
async function expertSizing(
  dir: string,
  cfg: ModelConfig,
  device: KilnDevice,
  options: LoadOptions,
  what: string,
): Promise<{
  layers: number;
  experts: number;
  expertBytes: number;
  fixedBytes: number;
  prefillTokens: number;
  stats?: RoutingStats;
}> {
  const layers = moeLayers(cfg);
  if (!cfg.moe || layers.length === 0) {
    throw new TypeError(`loadModel: ${what} applies to MoE models; ${dir} has no MoE layers`);
  }
  if (device.kind !== "gpu") throw new TypeError(`loadModel: ${what} needs a GPU device`);
  const maxSeq = options.maxSeq ?? 2048, dtype = options.dtype ?? "f32";
  const E = cfg.moe.experts;
  const sizing = { maxSeq, maxNew: maxSeq, dtype };
  const el = dtype === "f16" ? 2 : 4;
  const pg = buildCausalLM(cfg, { mode: "prefill", ...sizing });
  const dg = buildCausalLM(cfg, { mode: "decode", ...sizing });
  let paramBytes = 0;
  for (const [name, id] of pg.params) {
    const v = pg.values[id];
    const n = (v.shape as number[]).reduce((a, b) => a * b, 1);
    const bytes = Math.ceil((n * (v.dtype === "f16" ? 2 : 4)) / 4) * 4;
    const expert = /\.(w1|w3|w2)$/.test(name) &&
      layers.some((i) => name === `${moePrefix(cfg, i)}.${name.slice(-2)}`);
    if (!expert) paramBytes += bytes;
  }
  const T = Math.max(1, Math.min(options.budgetPrefillTokens ?? 512, maxSeq));
  const prefill = compile(pg, device);
  const decode = compile(dg, device);
  const act = Math.max(prefill.plan({ T }).peakBytes, decode.plan().peakBytes);
  prefill.dispose();
  decode.dispose();
  const stats = options.routingStats ??
    await readRoutingStats(dir, { layers: layers.length, experts: E });
  return {
    layers: layers.length,
    experts: E,
    expertBytes: 3 * expertWidth(cfg) * cfg.hidden * el,
    fixedBytes: paramBytes + act,
    prefillTokens: T,
    stats,
  };
}

/**
 * The devices of `options.devices`: undefined for one device (no expert
 * parallelism), else at least two distinct GPU devices (a count requests them).
 */
async function resolveDevices(options: LoadOptions): Promise<GpuDevice[] | undefined> {
  const d = options.devices;
  if (d === undefined) return undefined;
  let list: GpuDevice[];
  if (typeof d === "number") {
    if (!Number.isInteger(d) || d < 1 || d > 64) {
      throw new RangeError(`loadModel: devices must be an integer in [1, 64], got ${d}`);
    }
    if (d === 1) return undefined;
    if (options.device && options.device.kind !== "gpu") {
      throw new TypeError("loadModel: devices needs GPU devices; options.device is the CPU device");
    }
    list = options.device ? [options.device as GpuDevice] : [];
    while (list.length < d) list.push(await requestDevice());
  } else {
    if (!Array.isArray(d) || d.length === 0) {
      throw new TypeError(
        `loadModel: devices must be a count or a non-empty array of GPU devices, got ${
          Array.isArray(d) ? "[]" : typeof d
        }`,
      );
    }
    if (d.length === 1) {
      if (d[0]?.kind !== "gpu") {
        throw new TypeError("loadModel: devices[0] is not a GPU device; use requestDevice()");
      }
      if (options.device && options.device !== d[0]) {
        throw new TypeError("loadModel: options.device differs from devices[0]");
      }
      return undefined;
    }
    checkDevices(d);
    list = [...d] as GpuDevice[];
  }
  if (options.device && options.device !== list[0]) {
    throw new TypeError("loadModel: options.device differs from devices[0] (the home device)");
  }
  return list;
}
