/**
 * A causal LM prebuilt ahead of time (`kiln build DIR`): one prefill plan per
 * prompt-chunk length and the decode step's plan, for each prebuilt sampling
 * setting, run from plain data with one copy of the weights and states shared
 * by every executable — and the same decode loop as `Model.generateIds`, with
 * no DSL, model builder, passes or planner imported.
 *
 * @module
 */

import {
  checkTokenIds,
  exactRuns,
  generationLimit,
  prepareGeneration,
  promptChunks,
  promptLogits,
  promptRuns,
} from "./prompt.ts";
import type { TensorData } from "../core/host.ts";
import {
  COLD_PROMPT_TOKENS,
  coldPrompt,
  type DecodeLoop,
  decodeSteps,
  finiteLogits,
  type LoopStats,
  prefillChunksToCompile,
} from "./decode.ts";
import type { GpuDevice } from "./device.ts";
import type { PrebuiltData } from "./plan_data.ts";
import { PrebuiltExecutable } from "./prebuilt.ts";
import { type PendingCompile, startCompile } from "./pipelines.ts";
import { PromptCache } from "./prompt_cache.ts";

/**
 * Sampling settings baked into a prebuilt pair of graphs (greedy: temperature
 * 0, top-k 0, top-p 1).
 *
 * @example
 * ```ts
 * import type { SamplingSettings } from "@kiln/kiln/runtime";
 * const greedy: SamplingSettings = { temperature: 0, topK: 0, topP: 1 };
 * ```
 */
export interface SamplingSettings {
  /** 0 is greedy. */
  readonly temperature: number;
  /** Keep the k most likely tokens (0: off). */
  readonly topK: number;
  /** Nucleus sampling mass (1: off). */
  readonly topP: number;
}

/**
 * A model module's data: the model's sizes, its prompt-chunk lengths, and the
 * prefill and decode plans of each prebuilt sampling setting.
 *
 * @example
 * ```ts ignore
 * import { MODEL } from "./tiny.aot.ts"; // emitted by `kiln build DIR`
 * MODEL.variants.map((v) => v.sampling);
 * ```
 */
export interface PrebuiltModelData {
  /** Format version (1). */
  readonly format: 1;
  /** The module's name. */
  readonly name: string;
  /** The model's architecture (`config.json`'s). */
  readonly architecture: string;
  /** Vocabulary size: logits per token. */
  readonly vocabSize: number;
  /** KV-cache capacity in tokens (prompt + generated). */
  readonly maxSeq: number;
  /** Capacity of the device-side log of generated ids. */
  readonly maxNew: number;
  /** Prompt chunk lengths with a prefill plan, ascending (the prompt is split into these). */
  readonly prefillBuckets: readonly number[];
  /**
   * The prefill masks rows after `last` out of its states, so a prompt's last
   * chunk may be padded up to a bucket (see `planPrompt`). Modules built before
   * it lack it and run exact chunks only.
   */
  readonly paddedPrompts?: boolean;
  /**
   * false: the decode step computes differently from the prefill (a Mamba-2
   * whose Δ limit only the prefill applies), so no prompt token runs through
   * it. Absent: true.
   */
  readonly promptsViaDecode?: boolean;
  /** Ids that end generation (config.json's and the tokenizer's EOS). */
  readonly eosTokenIds: readonly number[];
  /**
   * Names of the states the decode loop uses, and the states a step updates
   * in place (`recurrent`: Mamba's, S4's; `reusePrefix` keeps a copy of them
   * after each prompt). Modules built before `recurrent` was recorded lack it
   * and never reuse a prefix.
   */
  readonly states: {
    readonly token: string;
    readonly generated: string;
    readonly recurrent?: readonly string[];
  };
  /** One pair of graphs per prebuilt sampling setting; the first is the default. */
  readonly variants: readonly {
    readonly sampling: SamplingSettings;
    readonly prefill: PrebuiltData;
    readonly decode: PrebuiltData;
  }[];
}

/**
 * Options of {@linkcode PrebuiltModel.generateIds}.
 *
 * @example
 * ```ts
 * import type { PrebuiltGenerateOptions } from "@kiln/kiln/runtime";
 * const options: PrebuiltGenerateOptions = { maxTokens: 16, readEvery: 4 };
 * ```
 */
export interface PrebuiltGenerateOptions {
  /** Tokens to generate at most (default 64). */
  maxTokens?: number;
  /** Read generated ids back every this many tokens (default 8). */
  readEvery?: number;
  /** RNG seed (default 0). */
  seed?: number;
  /** 0 (default) is greedy; other settings need a prebuilt variant. */
  temperature?: number;
  /** Keep the k most likely tokens (0: off). */
  topK?: number;
  /** Nucleus sampling mass (1: off). */
  topP?: number;
  /**
   * Run only the part of this prompt the caches do not hold yet (default
   * false; see `PromptCache`): a chat's next turn.
   */
  reusePrefix?: boolean;
}

/**
 * Counters of the last `generateIds` call.
 *
 * @example
 * ```ts ignore
 * const s: PrebuiltGenerateStats = model.lastStats!;
 * console.log(s.prefillMs, s.decodeMs);
 * ```
 */
export interface PrebuiltGenerateStats extends LoopStats {
  /** Prompt tokens. */
  promptTokens: number;
  /** Prompt tokens not run again: already in the caches (`reusePrefix`). */
  reusedTokens: number;
  /** Milliseconds compiling pipelines before the clock started (0 when compiled at load). */
  compileMs: number;
}

type Pair = [PrebuiltExecutable, PrebuiltExecutable];
const keyOf = (s: SamplingSettings) => `${s.temperature}/${s.topK}/${s.topP}`;
const showSampling = (s: SamplingSettings) =>
  `temperature ${s.temperature}, topK ${s.topK}, topP ${s.topP}`;

/**
 * A prebuilt causal LM on a WebGPU device: logits for token ids, and
 * generation of ids with the decode loop on the device. The tokenizer is the
 * caller's: ids in, ids out.
 *
 * @example
 * ```ts ignore
 * import { load } from "./tiny.aot.ts"; // emitted by `kiln build DIR`
 * const model = await load();
 * const logits = await model.forward([1, 2, 3]); // Float32Array [3 · vocab]
 * const ids: number[] = [];
 * for await (const id of model.generateIds([1, 2, 3], { maxTokens: 8 })) ids.push(id);
 * model.dispose();
 * ```
 */
export class PrebuiltModel {
  /** The module's data. */
  readonly data: PrebuiltModelData;
  /** The device it runs on. */
  readonly device: GpuDevice;
  /** Prefill executable of the current sampling setting (weights and states shared). */
  prefill: PrebuiltExecutable;
  /** The one-token decode executable of the current sampling setting. */
  decode: PrebuiltExecutable;
  /** Statistics of the last `generateIds` call. */
  lastStats?: PrebuiltGenerateStats;
  /** Hears pipeline compiles of runs that need kernels not compiled yet. */
  onCompile?: (done: number, total: number) => void;
  /**
   * A prompt of at most this many tokens whose prefill pipelines are not
   * compiled yet runs through the decode step instead (see `coldPrompt`); 0:
   * never.
   */
  coldPromptTokens: number = COLD_PROMPT_TOKENS;
  readonly #pairs = new Map<string, Pair>();
  readonly #ownsDevice: boolean;
  /** What the caches hold, for `reusePrefix`. */
  readonly #cache: PromptCache;
  #disposed = false;

  /**
   * Makes every variant's executables on `device`, all sharing the first one's
   * buffers; with `ownsDevice`, `dispose` destroys the device too.
   */
  constructor(data: PrebuiltModelData, device: GpuDevice, options: { ownsDevice?: boolean } = {}) {
    if (data.format !== 1) {
      throw new TypeError(`Prebuilt model "${data.name}" has format ${data.format}, expected 1`);
    }
    if (!data.variants.length) throw new TypeError(`Prebuilt model "${data.name}" has no plans`);
    this.data = data;
    this.device = device;
    this.#ownsDevice = options.ownsDevice ?? false;
    this.#cache = new PromptCache(data.states.recurrent);
    let base: PrebuiltExecutable | undefined;
    try {
      for (const v of data.variants) {
        const prefill: PrebuiltExecutable = new PrebuiltExecutable(v.prefill, device, {
          shareWith: base,
        });
        base ??= prefill;
        const decode = new PrebuiltExecutable(v.decode, device, { shareWith: base });
        this.#pairs.set(keyOf(v.sampling), [prefill, decode]);
      }
    } catch (e) {
      this.#disposeAll();
      throw e;
    }
    [this.prefill, this.decode] = this.#pairs.values().next().value!;
  }

  #live(): void {
    if (this.#disposed) throw new TypeError("PrebuiltModel was disposed; load the module again");
  }

  /**
   * Uploads weights by name (into the buffers every executable shares).
   *
   * @example
   * ```ts ignore
   * model.setParams({ "model.norm.weight": new Float32Array(64) });
   * ```
   */
  setParams(params: Record<string, TensorData>): void {
    this.#live();
    this.prefill.setParams(params);
  }

  /**
   * Names of the weights that have no value yet (empty once loaded).
   *
   * @example
   * ```ts ignore
   * model.missingParams(); // []
   * ```
   */
  missingParams(): string[] {
    this.#live();
    return this.prefill.interface.params.map((p) => p.name).filter((n) =>
      !this.prefill.hasParam(n)
    );
  }

  /**
   * Compiles the pipelines of every prebuilt plan now, so no run waits for them.
   *
   * @example
   * ```ts ignore
   * await model.compilePipelines((done, total) => console.error(`${done}/${total}`));
   * ```
   */
  async compilePipelines(onCompile?: (done: number, total: number) => void): Promise<void> {
    this.#live();
    for (const pair of this.#pairs.values()) {
      for (const exe of pair) await exe.compilePipelines(onCompile);
    }
  }

  /**
   * Starts compiling the default sampling's decode step from its plan, without
   * weights (`startCompile`): the module's `load()` calls it before it streams
   * the bundle, so the driver's compile (lavapipe: LLVM, on a thread of its
   * own) runs while the weights arrive. `finish()` resolves when compiled.
   *
   * @example
   * ```ts ignore
   * const ahead = await model.compileAhead();
   * await streamTheBundle();
   * await ahead.finish();
   * ```
   */
  async compileAhead(): Promise<PendingCompile> {
    this.#live();
    return await startCompile(this.decode.device, this.decode.plan({}));
  }

  #checkIds(ids: readonly number[]): Uint32Array {
    this.#live();
    return checkTokenIds(ids, this.data.vocabSize, this.data.maxSeq);
  }

  /**
   * The prefill runs of a prompt: one per chunk, each at its position, on the
   * compiled chunk lengths where the module pads (see `planPrompt`). `singles`:
   * 1-token chunks run through the decode step (generation).
   */
  #prefillChunks(
    ids: Uint32Array,
    seed: number,
    step: number,
    singles = true,
    start = 0,
  ): Record<string, TensorData>[] {
    const { prefillBuckets: buckets, paddedPrompts, maxSeq } = this.data;
    const n = ids.length - start;
    const runs = paddedPrompts
      ? promptRuns(this.prefill, n, buckets, maxSeq - start, singles && this.#viaDecode)
      : exactRuns(n, buckets);
    return promptChunks(ids.subarray(start), runs, seed, step, undefined, start);
  }

  get #viaDecode(): boolean {
    return this.data.promptsViaDecode !== false;
  }

  #decodeInputs(pos: number, seed: number, step: number): Record<string, TensorData> {
    return { pos: [pos], seed: [seed], step: [step] };
  }

  /**
   * Logits for every position of `tokenIds` from a fresh state: a
   * `Float32Array` of `[T, vocab]`, row-major.
   *
   * @example
   * ```ts ignore
   * const logits = await model.forward([1, 2, 3]);
   * logits.length / 3; // vocab size
   * ```
   */
  async forward(tokenIds: readonly number[]): Promise<Float32Array> {
    const ids = this.#checkIds(tokenIds);
    this.#cache.invalidate();
    this.prefill.resetStates();
    const logits = await promptLogits(this.prefill, this.#prefillChunks(ids, 0, 0, false), {
      onCompile: this.onCompile,
    });
    return finiteLogits(logits, this.data.vocabSize, `${this.data.name}: forward`);
  }

  /**
   * Logits of one more token after the tokens run so far (forward, then step,
   * step…): `[1, vocab]`.
   *
   * @example
   * ```ts ignore
   * await model.forward([1, 2, 3]);
   * const next = await model.step(4, 3); // logits of token 4 at position 3
   * ```
   */
  async step(tokenId: number, position: number): Promise<Float32Array> {
    this.#checkIds([tokenId]);
    if (!Number.isInteger(position) || position < 0 || position >= this.data.maxSeq) {
      throw new RangeError(`step: position ${position} is outside [0, ${this.data.maxSeq})`);
    }
    this.#cache.invalidate();
    this.decode.writeState(this.data.states.token, [tokenId]);
    const inputs = this.#decodeInputs(position, 0, 0);
    const { logits } = await this.decode.run(inputs, { onCompile: this.onCompile });
    return finiteLogits(
      logits.data as Float32Array,
      this.data.vocabSize,
      `${this.data.name}: step at position ${position}`,
    );
  }

  #useSampling(options: PrebuiltGenerateOptions): void {
    const want: SamplingSettings = {
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
    };
    const pair = this.#pairs.get(keyOf(want));
    if (!pair) {
      throw new RangeError(
        `generate: no prebuilt plans for sampling (${showSampling(want)}); prebuilt for ${
          this.data.variants.map((v) => `(${showSampling(v.sampling)})`).join(", ")
        }; build the module with --sampling for it`,
      );
    }
    [this.prefill, this.decode] = pair;
  }

  /**
   * Streams generated token ids: the prefill, then decode steps on the device,
   * ids read back every `readEvery` steps; stops after an EOS id (yielded).
   *
   * @example
   * ```ts ignore
   * const ids: number[] = [];
   * for await (const id of model.generateIds([1, 2, 3], { maxTokens: 8 })) ids.push(id);
   * ```
   */
  async *generateIds(
    promptIds: readonly number[],
    options: PrebuiltGenerateOptions = {},
  ): AsyncIterable<number> {
    const ids = this.#checkIds(promptIds);
    const { limit, readEvery } = generationLimit(
      ids.length,
      options,
      this.data.maxSeq,
      this.data.maxNew,
    );
    this.#useSampling(options);
    const seed = options.seed ?? 0;
    const start = options.reusePrefix ? this.#cache.reusable(ids) : 0;
    const stats: PrebuiltGenerateStats = {
      promptTokens: ids.length,
      reusedTokens: start,
      generatedTokens: 0,
      readbacks: 0,
      compileMs: 0,
      prefillMs: 0,
      decodeMs: 0,
    };
    this.lastStats = stats;
    // Pipelines not compiled at load are compiled before the clock starts.
    const tc = performance.now();
    // Planned once: what is compiled here is what the loop runs.
    const runs = this.#prefillChunks(ids, seed, 0, true, start);
    const chunks = prefillChunksToCompile(runs, this.#viaDecode);
    const promptViaDecode = this.#viaDecode &&
      coldPrompt(this.prefill, chunks, ids.length - start, this.coldPromptTokens);
    await prepareGeneration(
      this.prefill,
      this.decode,
      promptViaDecode ? [] : chunks,
      this.#decodeInputs(ids.length, seed, 1),
      { onCompile: this.onCompile },
    );
    stats.compileMs = performance.now() - tc;
    const t0 = performance.now();
    const cache = this.#cache, prefill = this.prefill;
    cache.begin(prefill, ids, start);
    const loop: DecodeLoop = {
      ids,
      limit,
      readEvery,
      seed,
      stats,
      eos: new Set(this.data.eosTokenIds),
      t0,
      chunks: runs,
      promptViaDecode,
      singlesViaDecode: true,
      start,
      promptQueued: () => cache.promptQueued(prefill),
    };
    const steps = decodeSteps({
      prefill: this.prefill,
      decode: this.decode,
      runOptions: {},
      generated: this.data.states.generated,
      token: this.data.states.token,
      decodeInputs: (pos, seed, step) => this.#decodeInputs(pos, seed, step),
    }, loop);
    for await (const id of steps) {
      cache.generated(id);
      yield id;
    }
  }

  #disposeAll(): void {
    for (const [p, d] of this.#pairs.values()) {
      d.dispose();
      p.dispose();
    }
    this.#pairs.clear();
  }

  /**
   * Frees the weights, caches and plans, and the device when the model owns it
   * (a module's `load()` without a `device`). Idempotent; every other method
   * then throws a TypeError.
   *
   * @example
   * ```ts ignore
   * model.dispose();
   * ```
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#disposeAll();
    if (this.#ownsDevice) this.device.destroy();
  }
}
