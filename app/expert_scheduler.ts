/**
 * Runs a MoE model whose experts do not all fit the GPU budget.
 *
 * Tiers: pinned experts sit in the slot pool for good (written once at load,
 * straight from the checkpoint); every other expert lives in the host tier —
 * one mappable upload buffer per expert (`COPY_SRC`, written once at load:
 * host-visible, pinned memory on a discrete GPU, outside the GPU budget) — or,
 * when a host memory budget (`hostMemoryBudget`) cannot hold them all, on disk:
 * such an expert is read from the safetensors files by offset when needed,
 * converted to the compute dtype and written into its slot (`queue.writeBuffer`).
 * Host-tier experts are copied into the pool's rotating slots right before the
 * layer that uses it. The copies are recorded into the forward pass's own command
 * buffer (`RunOptions.hooks`), so the queue orders them after the previous
 * layer's reads and before this layer's kernels: an expert in use is always
 * complete, and no step needs a host round trip to fetch weights (copying
 * layer i+1's experts overlaps nothing on the host; the GPU does it in order).
 * Outputs are bit-identical to all-resident execution: the same kernels read the
 * same weights through the slot table.
 *
 * @module
 */

import type { Executable } from "../runtime/executable.ts";
import type { Plan } from "../compiler/plan.ts";
import type { EncodeHooks } from "../runtime/gpu_executor.ts";
import type { GpuDevice } from "../runtime/device.ts";
import type { Checkpoint } from "./safetensors.ts";
import type { HostBarriers } from "../runtime/gpu_executor.ts";
import { type ExpertPlan, formatBytes, type RoutingStats } from "./expert_plan.ts";

/**
 * Name of the slot pool parameters (`moe.slots.w1` …) in scheduled graphs.
 *
 * @example
 * ```ts
 * import { SLOT_POOL } from "@kiln/kiln";
 * const w1 = `${SLOT_POOL}.w1`; // "moe.slots.w1": the pool parameter of scheduled graphs
 * ```
 */
export const SLOT_POOL = "moe.slots";

/**
 * How non-pinned experts reach the GPU:
 * - `lru` / `lfu` (cache): the rotating slots are a cache of (layer, expert)
 *   entries shared by every MoE layer, managed on the host with least-recently
 *   used or frequency (LFU with aging) replacement. Before each window of decode
 *   steps the host uploads the experts it predicts (the last known step's
 *   experts per layer: temporal locality); a step whose router picks a
 *   non-resident expert is a miss, found at the window's readback from the
 *   per-step routing log, and is re-run streamed (exact).
 * - `stream`: every non-pinned expert is copied into the rotating slots right
 *   before its layer on every step (no round trips, all non-resident bytes per
 *   token).
 * - `naive`: on-demand loading without a cache (the baseline): every step starts
 *   with no non-pinned expert resident, runs, reads its routing back, uploads
 *   the experts it chose and runs again until no chosen expert was missing.
 *
 * @example
 * ```ts ignore
 * import { type ExpertPolicy, loadModel } from "@kiln/kiln";
 * const expertPolicy: ExpertPolicy = "lfu";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB", expertPolicy });
 * ```
 */
export type ExpertPolicy = "lru" | "lfu" | "stream" | "naive";

/**
 * How a cache window predicts the experts to upload before it runs:
 * - `temporal`: the last step's experts of every layer (temporal locality);
 * - `lookahead`: Mixtral-offloading's router lookahead — each MoE layer's
 *   experts as predicted on the GPU during the last step by applying its router
 *   to the previous MoE layer's input (logged in `moe.lookahead`, read back with
 *   the window's routing log: no extra round trip); the first MoE layer keeps
 *   the temporal prediction;
 * - `both`: the union (more uploads, fewer misses).
 *
 * @example
 * ```ts ignore
 * import { type ExpertPrefetch, loadModel } from "@kiln/kiln";
 * const prefetch: ExpertPrefetch = "lookahead";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB", prefetch });
 * ```
 */
export type ExpertPrefetch = "temporal" | "lookahead" | "both";

/** Slot table value of an expert that is not resident. */
export const NOT_RESIDENT = 0xffffffff;

/**
 * The outcome of checking a window of cache-mode steps against the routing log.
 *
 * @example
 * ```ts
 * import type { WindowCheck } from "@kiln/kiln";
 * const clean: WindowCheck = { missStep: -1, missLayer: -1 }; // every step hit the cache
 * ```
 */
export interface WindowCheck {
  /** First step that used a non-resident expert, or -1. */
  missStep: number;
  /** Its first MoE layer with a missing expert (layers up to it routed exactly). */
  missLayer: number;
}

/**
 * Counters of the scheduler, cumulative since load (or `resetStats`).
 *
 * @example
 * ```ts ignore
 * import { type ExpertStats, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB" });
 * for await (const text of model.generate("Hello", { maxTokens: 16 })) console.log(text);
 * const stats: ExpertStats | undefined = model.experts?.stats;
 * console.log(stats?.bytesUploaded, stats?.misses);
 * ```
 */
export interface ExpertStats {
  /** Forward passes run (prefill and decode steps). */
  steps: number;
  /** Decode steps whose routing was read back (the basis of the rates below). */
  decodeSteps: number;
  /** Expert bytes copied from the host tier into slots. */
  bytesUploaded: number;
  /** Host round trips made by the scheduler itself (0: copies ride in the step's command buffer). */
  schedulerRoundTrips: number;
  /** Routed (token, slot) pairs per layer during decode. */
  routed: number[];
  /** Of those, pairs whose expert was pinned (resident before the step). */
  hits: number[];
  /** Streamed expert copies per layer during decode. */
  streamed: number[];
  /** Streamed copies that the step used (prefetch accuracy = used / streamed). */
  streamedUsed: number[];
  /** Routed pairs per layer and expert, prefill and decode (`usage[l][e]`). */
  usage: number[][];
  /** Expert bytes uploaded during decode (streamed copies, cache fills, reruns). */
  decodeBytesUploaded: number;
  /** Decode steps that used a non-resident expert (cache and naive policies). */
  misses: number;
  /** Decode steps run again after a miss (a streamed rerun or a naive retry). */
  reruns: number;
  /** Host round trips of the decode loop (readbacks after the first token). */
  decodeRoundTrips: number;
  /** Expert bytes read from the checkpoint files (disk tier) after load. */
  diskBytesRead: number;
  /**
   * Predictor scores over consecutive decode steps, MoE layers after the first,
   * non-pinned experts: predicted entries and those the next step used, for the
   * temporal predictor and (when the graph logs it) the router lookahead.
   */
  temporalPredicted: number;
  /** See `temporalPredicted`. */
  temporalCorrect: number;
  /** See `temporalPredicted`. */
  lookaheadPredicted: number;
  /** See `temporalPredicted`. */
  lookaheadCorrect: number;
  /** Of those, during decode. */
  decodeDiskBytes: number;
}

/**
 * A derived summary of {@linkcode ExpertStats}.
 *
 * @example
 * ```ts ignore
 * import { type ExpertStatsSummary, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB" });
 * for await (const text of model.generate("Hello", { maxTokens: 16 })) console.log(text);
 * const s: ExpertStatsSummary | undefined = model.experts?.summary();
 * console.log(s?.hitRate, s?.bytesPerToken);
 * ```
 */
export interface ExpertStatsSummary {
  /** Fraction of decode routed pairs served by resident (pinned) experts. */
  hitRate: number;
  /** Fraction of streamed expert copies a decode step used. */
  prefetchAccuracy: number;
  /** Expert bytes uploaded per decode step. */
  bytesPerToken: number;
  /** Host round trips (readbacks) of the decode loop per decode step. */
  roundTripsPerToken: number;
  /** Expert bytes read from the checkpoint files per decode step. */
  diskBytesPerToken: number;
  /** Accuracy of the temporal predictor (NaN before two decode steps). */
  temporalAccuracy: number;
  /** Accuracy of the router lookahead (NaN when not logged). */
  lookaheadAccuracy: number;
  /** Hit rate per layer. */
  hitRateByLayer: number[];
}

/**
 * Streams experts through the slot pool of one loaded model.
 *
 * @example
 * ```ts ignore
 * import { loadModel } from "@kiln/kiln";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB", expertPolicy: "lru" });
 * for await (const text of model.generate("The lecture says", { maxTokens: 32 })) console.log(text);
 * console.log(model.experts?.report()); // slots, hit rate, bytes per token …
 * ```
 */
export class ExpertScheduler {
  /** The placement. */
  readonly plan: ExpertPlan;
  /** Parameter prefix of each MoE layer (e.g. `model.layers.0.block_sparse_moe`). */
  readonly prefixes: readonly string[];
  /** Counters (see {@linkcode ExpertStats}). */
  stats: ExpertStats;
  readonly #dev: GpuDevice;
  /** Host-tier upload buffer of each expert; undefined for pinned and disk-tier experts. */
  readonly #host: (GPUBuffer | undefined)[][];
  /** Open checkpoint the disk tier reads from (closed by `dispose`). */
  #disk?: DiskTier;
  readonly #barriers = new WeakMap<Plan, HostBarriers>();
  readonly #slabBytes: readonly [number, number, number];
  readonly #pool: readonly [GPUBuffer, GPUBuffer, GPUBuffer];
  readonly #hooks = new WeakMap<Plan, EncodeHooks>();
  #lastUsage?: Uint32Array;
  /** Replacement policy (the effective one: `stream` for models with recurrent state). */
  readonly policy: ExpertPolicy;
  /** True while decode steps run (streamed bytes count as decode uploads). */
  decoding = false;
  /** How cache windows predict their uploads (see {@linkcode ExpertPrefetch}). */
  prefetch: ExpertPrefetch = "temporal";
  /** True when the decode graph logs router-lookahead predictions (`moe.lookahead`). */
  lookahead = false;
  readonly #tableBufs: GPUBuffer[];
  /** Table contents on the device, per layer. */
  readonly #cur: Uint32Array<ArrayBuffer>[];
  #tablesAreStreaming = true;
  /** Entry (l·E + e) held by each rotating slot, or -1. */
  readonly #owner: Int32Array;
  /** Rotating slot of each entry, or -1. */
  readonly #where: Int32Array;
  readonly #pinnedMask: Uint8Array;
  readonly #lastUse: Float64Array;
  readonly #freq: Float64Array;
  readonly #prefetched: Uint8Array;
  #tick = 0;
  /**
   * Cache policies: when most recent cache-mode steps missed (routing without
   * temporal locality), run the next window streamed instead (exact, no rerun),
   * then probe the cache again. Off: pure cache mode.
   */
  streamOnMisses = true;
  /** Moving average of misses per cache-mode window (the fallback's signal). */
  missRate = 0;
  /** Decode windows run streamed by the fallback. */
  streamedWindows = 0;

  private constructor(
    dev: GpuDevice,
    plan: ExpertPlan,
    prefixes: readonly string[],
    host: (GPUBuffer | undefined)[][],
    slabBytes: readonly [number, number, number],
    pool: readonly [GPUBuffer, GPUBuffer, GPUBuffer],
    tableBufs: GPUBuffer[],
    policy: ExpertPolicy,
    disk?: DiskTier,
  ) {
    this.#dev = dev;
    this.#disk = disk;
    this.plan = plan;
    this.prefixes = prefixes;
    this.#host = host;
    this.#slabBytes = slabBytes;
    this.#pool = pool;
    this.#tableBufs = tableBufs;
    this.policy = policy;
    this.stats = emptyStats(plan.layers, plan.experts);
    const LE = plan.layers * plan.experts;
    this.#cur = plan.tables.map((t) => Uint32Array.from(t));
    this.#owner = new Int32Array(plan.rotating).fill(-1);
    this.#where = new Int32Array(LE).fill(-1);
    this.#pinnedMask = new Uint8Array(LE);
    plan.pinned.forEach((pin, l) => pin.forEach((e) => this.#pinnedMask[l * plan.experts + e] = 1));
    this.#lastUse = new Float64Array(LE);
    this.#freq = new Float64Array(LE);
    this.#prefetched = new Uint8Array(LE);
  }

  /** First rotating slot (the pinned experts own the slots before it). */
  get #rot0(): number {
    return this.plan.slots - this.plan.rotating;
  }

  /** True when decode steps use the cache (a policy other than `stream`). */
  get cached(): boolean {
    return this.policy !== "stream" && !this.plan.allResident;
  }

  /**
   * Writes the streaming tables (`plan.tables`) before a streamed run (prefill,
   * `forward`, `step`, a rerun after a miss). No-op when they are current.
   */
  useStreamingTables(): void {
    if (this.#tablesAreStreaming) return;
    const q = this.#dev.device.queue;
    this.plan.tables.forEach((t, l) => {
      this.#cur[l].set(t);
      q.writeBuffer(this.#tableBufs[l], 0, this.#cur[l]);
    });
    this.#tablesAreStreaming = true;
  }

  /**
   * Prepares a window of cache-mode decode steps: makes the `predicted` entries
   * (`l·E + e`, the last known step's experts) resident, evicting by policy but
   * never an entry in `predicted`, and writes the cache tables. Uploads and table
   * writes are queued before the window's steps (the queue orders them after
   * the steps already submitted, which read the previous contents), so a slot
   * in use is never half-written. `newStep` (naive policy) forgets the cache.
   */
  async beginWindow(predicted: readonly number[], newStep = false): Promise<void> {
    const E = this.plan.experts, R = this.plan.rotating, rot0 = this.#rot0;
    if (this.#tablesAreStreaming) {
      // Tables from what the streamed runs left in the rotating slots.
      this.#tablesAreStreaming = false;
      for (let l = 0; l < this.plan.layers; l++) {
        for (let e = 0; e < E; e++) {
          if (!this.#pinnedMask[l * E + e]) this.#cur[l][e] = NOT_RESIDENT;
        }
      }
      for (let j = 0; j < R; j++) {
        const id = this.#owner[j];
        if (id >= 0) this.#cur[Math.floor(id / E)][id % E] = rot0 + j;
      }
    }
    if (newStep && this.policy === "naive") {
      for (let j = 0; j < R; j++) this.#evict(j);
    }
    const protect = new Set(predicted);
    const device = this.#dev.device;
    let enc: GPUCommandEncoder | undefined;
    for (const id of predicted) {
      if (this.#pinnedMask[id] || this.#where[id] >= 0) continue;
      let victim = -1, best = Infinity;
      for (let j = 0; j < R; j++) {
        const o = this.#owner[j];
        if (o < 0) {
          victim = j;
          break;
        }
        if (protect.has(o)) continue;
        const score = this.policy === "lfu"
          ? this.#freq[o] * 1e9 + this.#lastUse[o]
          : this.#lastUse[o];
        if (score < best) [victim, best] = [j, score];
      }
      if (victim < 0) continue; // every slot holds a predicted entry
      this.#evict(victim);
      const l = Math.floor(id / E), e = id % E;
      if (this.#host[l][e]) {
        enc ??= device.createCommandEncoder();
        this.#copy(enc, l, e, rot0 + victim);
      } else await this.#read(l, e, rot0 + victim); // disk tier: ordered like the copies
      this.#owner[victim] = id;
      this.#where[id] = victim;
      this.#cur[l][e] = rot0 + victim;
      this.#lastUse[id] = ++this.#tick;
      this.#prefetched[id] = 1;
      this.stats.bytesUploaded += this.expertBytes;
      this.stats.decodeBytesUploaded += this.expertBytes;
      this.stats.streamed[l]++;
    }
    if (enc) device.queue.submit([enc.finish()]);
    this.#cur.forEach((t, l) => device.queue.writeBuffer(this.#tableBufs[l], 0, t));
  }

  #evict(j: number): void {
    const o = this.#owner[j];
    if (o < 0) return;
    const E = this.plan.experts;
    this.#where[o] = -1;
    this.#owner[j] = -1;
    this.#prefetched[o] = 0;
    this.#cur[Math.floor(o / E)][o % E] = NOT_RESIDENT;
  }

  /**
   * Checks decode steps `[from, to)` of the routing log (`[steps, L·E]` rows)
   * against the tables of the current window: the first step whose router chose
   * a non-resident expert is a miss. Steps before it count as decoded (hits,
   * recency and frequency updated); the miss itself is counted.
   */
  checkWindow(log: Uint32Array, from: number, to: number): WindowCheck {
    const r = this.#check(log, from, to);
    this.missRate = 0.75 * this.missRate + 0.25 * (r.missStep >= 0 ? 1 : 0);
    return r;
  }

  /** True when the next window should run streamed (see `streamOnMisses`). */
  preferStreaming(): boolean {
    if (!this.streamOnMisses || this.policy === "naive" || this.missRate <= 0.5) return false;
    this.missRate *= 0.8; // decays while streaming: the cache is probed again later
    this.streamedWindows++;
    return true;
  }

  #check(log: Uint32Array, from: number, to: number): WindowCheck {
    const L = this.plan.layers, E = this.plan.experts, LE = L * E;
    const st = this.stats;
    for (let q = from; q < to; q++) {
      const row = log.subarray(q * LE, (q + 1) * LE);
      for (let l = 0; l < L; l++) {
        for (let e = 0; e < E; e++) {
          if (row[l * E + e] > 0 && this.#cur[l][e] === NOT_RESIDENT) {
            st.misses++;
            return { missStep: q, missLayer: l };
          }
        }
      }
      // Naive: nothing non-pinned was resident before the step asked for it.
      this.observeRow(row, this.policy !== "naive");
    }
    return { missStep: -1, missLayer: -1 };
  }

  /**
   * Folds one exact decode step's routing row in (hits against the current
   * tables when `cachedStep`, usage, recency, frequency with aging).
   */
  observeRow(row: Uint32Array, cachedStep: boolean): void {
    const L = this.plan.layers, E = this.plan.experts;
    const st = this.stats;
    st.decodeSteps++;
    this.#tick++;
    for (let i = 0; i < this.#freq.length; i++) this.#freq[i] *= 0.875; // aging
    for (let l = 0; l < L; l++) {
      for (let e = 0; e < E; e++) {
        const c = row[l * E + e];
        if (c === 0) continue;
        const id = l * E + e;
        st.usage[l][e] += c;
        st.routed[l] += c;
        this.#lastUse[id] = this.#tick;
        this.#freq[id] += 1;
        if (this.#pinnedMask[id] || (cachedStep && this.#cur[l][e] !== NOT_RESIDENT)) {
          st.hits[l] += c;
        }
        if (this.#prefetched[id]) {
          this.#prefetched[id] = 0;
          st.streamedUsed[l]++;
        }
      }
    }
  }

  /** Folds the prefill's routing row in (usage only). */
  observePrefillRow(row: Uint32Array): void {
    const E = this.plan.experts;
    for (let i = 0; i < row.length; i++) this.stats.usage[Math.floor(i / E)][i % E] += row[i];
  }

  /** Non-pinned entries (`l·E + e`) routed in `row`, layers up to `upTo` first. */
  predictedFrom(row: Uint32Array): number[] {
    const out: number[] = [];
    for (let i = 0; i < row.length; i++) if (row[i] > 0 && !this.#pinnedMask[i]) out.push(i);
    return out;
  }

  /**
   * The entries to upload before the next window, by `prefetch`, from the last
   * step's routing row and (if logged) its router-lookahead row.
   */
  predict(row: Uint32Array, lookahead?: Uint32Array): number[] {
    const temporal = this.predictedFrom(row);
    if (this.prefetch === "temporal" || !lookahead) return temporal;
    const E = this.plan.experts;
    const la = this.predictedFrom(lookahead).filter((i) => i >= E);
    const first = temporal.filter((i) => i < E);
    if (this.prefetch === "lookahead") return [...first, ...la];
    return [...new Set([...temporal, ...la])];
  }

  /**
   * Scores both predictors on one pair of consecutive exact decode steps:
   * `prev` / `prevLookahead` are step q−1's rows, `row` is step q's routing.
   */
  scorePredictors(prev: Uint32Array, row: Uint32Array, prevLookahead?: Uint32Array): void {
    const st = this.stats;
    for (let i = this.plan.experts; i < row.length; i++) {
      if (this.#pinnedMask[i]) continue;
      const used = row[i] > 0 ? 1 : 0;
      if (prev[i] > 0) {
        st.temporalPredicted++;
        st.temporalCorrect += used;
      }
      if (prevLookahead && prevLookahead[i] > 0) {
        st.lookaheadPredicted++;
        st.lookaheadCorrect += used;
      }
    }
  }

  /**
   * Sets the slot pool and tables on `exe`, writes the pinned experts into
   * their slots and the host-tier experts into upload buffers, straight from the
   * checkpoint. Experts of `plan.disk` stay in the files: `disk` (a checkpoint
   * kept open until `dispose`) is read when they are needed.
   *
   * @example
   * ```ts ignore
   * const s = await ExpertScheduler.load(model.prefill, ckpt, plan, prefixes, (l, e, w) =>
   *   `${prefixes[l]}.experts.${e}.${w}.weight`);
   * ```
   */
  static async load(
    exe: Executable,
    ckpt: Checkpoint,
    plan: ExpertPlan,
    prefixes: readonly string[],
    tensorName: (layer: number, expert: number, which: "w1" | "w3" | "w2") => string,
    dtype: "f32" | "f16",
    policy: ExpertPolicy = "stream",
    disk?: Checkpoint,
  ): Promise<ExpertScheduler> {
    if (exe.device.kind !== "gpu") {
      throw new TypeError("ExpertScheduler: a memory budget needs a GPU device");
    }
    if (plan.disk.some((r) => r.length > 0) && !disk) {
      throw new TypeError("ExpertScheduler: the plan reads experts from disk; pass a checkpoint");
    }
    const dev = exe.device as GpuDevice;
    const g = exe.graph;
    const shapeOf = (n: string) => {
      const id = g.params.get(n);
      if (id === undefined) throw new TypeError(`ExpertScheduler: the graph has no param "${n}"`);
      return g.values[id].shape as number[];
    };
    const w1 = shapeOf(`${SLOT_POOL}.w1`), w2 = shapeOf(`${SLOT_POOL}.w2`);
    const el = dtype === "f16" ? 2 : 4;
    const slab1 = w1[1] * w1[2] * el, slab2 = w2[1] * w2[2] * el;
    if (slab1 % 4 !== 0 || slab2 % 4 !== 0) {
      throw new RangeError(
        `ExpertScheduler: expert slabs of ${slab1} / ${slab2} bytes are not multiples of 4`,
      );
    }
    const slabBytes = [slab1, slab1, slab2] as const;
    const S = w1[0];
    const Arr = dtype === "f16" ? Float16Array : Float32Array;
    exe.setParams({
      [`${SLOT_POOL}.w1`]: new Arr(S * w1[1] * w1[2]),
      [`${SLOT_POOL}.w3`]: new Arr(S * w1[1] * w1[2]),
      [`${SLOT_POOL}.w2`]: new Arr(S * w2[1] * w2[2]),
    });
    const tables: Record<string, Uint32Array> = {};
    prefixes.forEach((p, l) => tables[`${p}.slot_table`] = plan.tables[l]);
    exe.setParams(tables);
    const pool = (["w1", "w3", "w2"] as const).map((w) => exe.paramBuffer(`${SLOT_POOL}.${w}`)!);
    const device = dev.device;
    const host: (GPUBuffer | undefined)[][] = plan.pinned.map(() => []);
    const s = new ExpertScheduler(
      dev,
      plan,
      prefixes,
      host,
      slabBytes,
      pool as [GPUBuffer, GPUBuffer, GPUBuffer],
      prefixes.map((p) => exe.paramBuffer(`${p}.slot_table`)!),
      policy,
      { ckpt, name: tensorName, dtype },
    );
    try {
      for (let l = 0; l < plan.layers; l++) {
        for (const e of plan.pinned[l]) await s.#read(l, e, plan.tables[l][e], false);
        for (const e of plan.host[l]) {
          const buf = device.createBuffer({
            label: `host expert ${l}.${e}`,
            size: slab1 * 2 + slab2,
            // MAP_WRITE | COPY_SRC: implementations place mappable upload buffers
            // in host-visible memory (on a discrete GPU, system RAM the copy engine
            // reads over PCIe), so the host tier stays outside the VRAM budget.
            // COPY_SRC alone would let them live in VRAM.
            usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
            mappedAtCreation: true,
          });
          host[l][e] = buf;
          const range = buf.getMappedRange();
          let off = 0;
          for (const [j, w] of (["w1", "w3", "w2"] as const).entries()) {
            const data = await s.#tensor(l, e, w, j);
            new Uint8Array(range, off, data.byteLength).set(data);
            off += data.byteLength;
          }
          buf.unmap();
        }
      }
    } catch (e) {
      s.dispose();
      throw e;
    }
    // The load's checkpoint is closed after loading; the disk tier reads its own.
    s.#disk = disk ? { ckpt: disk, name: tensorName, dtype } : undefined;
    return s;
  }

  /** One weight of an expert from the checkpoint, as bytes, size-checked. */
  async #tensor(
    l: number,
    e: number,
    w: "w1" | "w3" | "w2",
    j: number,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const d = this.#disk!;
    const name = d.name(l, e, w);
    const data = await d.ckpt.readAs(name, d.dtype);
    if (data.byteLength !== this.#slabBytes[j]) {
      throw new RangeError(`${name}: ${data.byteLength} bytes, expected ${this.#slabBytes[j]}`);
    }
    return new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  }

  /**
   * Reads expert (l, e) from the checkpoint by offset, converted to the compute
   * dtype, into slot `slot` (`queue.writeBuffer`: ordered after the work already
   * submitted, before the next submission). One expert of host memory at a time.
   */
  async #read(l: number, e: number, slot: number, count = true): Promise<void> {
    const q = this.#dev.device.queue;
    for (const [j, w] of (["w1", "w3", "w2"] as const).entries()) {
      const n = this.#slabBytes[j];
      q.writeBuffer(this.#pool[j], slot * n, await this.#tensor(l, e, w, j));
    }
    if (!count) return;
    this.stats.diskBytesRead += this.expertBytes;
    if (this.decoding) this.stats.decodeDiskBytes += this.expertBytes;
  }

  #copy(enc: GPUCommandEncoder, layer: number, expert: number, slot: number): void {
    let off = 0;
    for (let j = 0; j < 3; j++) {
      const n = this.#slabBytes[j];
      enc.copyBufferToBuffer(this.#host[layer][expert]!, off, this.#pool[j], slot * n, n);
      off += n;
    }
  }

  /** Bytes of one expert. */
  get expertBytes(): number {
    return this.#slabBytes[0] * 2 + this.#slabBytes[2];
  }

  /**
   * Copy commands for a forward pass of `plan`: before the first kernel of each
   * MoE layer (its router), that layer's non-pinned experts are copied into
   * the rotating slots. Pass as `RunOptions.hooks`.
   */
  hooks(plan: Plan): EncodeHooks | undefined {
    if (this.plan.allResident) return undefined;
    const h = this.#hooks.get(plan);
    if (h) return h;
    const map = new Map<number, (enc: GPUCommandEncoder) => void>();
    this.prefixes.forEach((p, l) => {
      const at = moeRouterKernel(plan, p);
      const todo = this.plan.host[l];
      if (todo.length === 0) return;
      const prev = map.get(at);
      map.set(at, (enc) => {
        prev?.(enc);
        for (const e of todo) this.#copy(enc, l, e, this.#placed(l, e));
        this.stats.bytesUploaded += todo.length * this.expertBytes;
        if (this.decoding) this.stats.decodeBytesUploaded += todo.length * this.expertBytes;
      });
    });
    this.#hooks.set(plan, map);
    return map;
  }

  /**
   * Host barriers of a streamed forward pass of `plan` when experts are on disk:
   * before each MoE layer's router the host reads that layer's disk-tier experts
   * from the checkpoint and writes them into their rotating slots (the GPU runs
   * the previous layers meanwhile; no readback). Pass as `RunOptions.barriers`.
   */
  barriers(plan: Plan): HostBarriers | undefined {
    if (!this.#disk || this.plan.allResident) return undefined;
    const have = this.#barriers.get(plan);
    if (have) return have;
    const map = new Map<number, () => Promise<void>>();
    this.prefixes.forEach((p, l) => {
      const todo = this.plan.disk[l];
      if (todo.length === 0) return;
      map.set(moeRouterKernel(plan, p), async () => {
        for (const e of todo) await this.#read(l, e, this.#placed(l, e));
        this.stats.bytesUploaded += todo.length * this.expertBytes;
        if (this.decoding) this.stats.decodeBytesUploaded += todo.length * this.expertBytes;
      });
    });
    this.#barriers.set(plan, map);
    return map;
  }

  /** Records that a streamed pass put expert (l, e) in its rotating slot; returns the slot. */
  #placed(l: number, e: number): number {
    const slot = this.plan.tables[l][e];
    // The cache's view of the rotating slots after a streamed run.
    const j = slot - this.#rot0, old = this.#owner[j];
    if (old >= 0) this.#where[old] = -1;
    this.#owner[j] = l * this.plan.experts + e;
    this.#where[l * this.plan.experts + e] = j;
    return slot;
  }

  /** Counts one forward pass (called by the runner per submitted step). */
  countStep(): void {
    this.stats.steps++;
  }

  /**
   * Folds a readback of the `moe.usage` state in: `decodeSteps` steps ran since
   * the previous call (0 for prefill, which is counted in usage only).
   */
  observeUsage(usage: Uint32Array, decodeSteps: number): void {
    const L = this.plan.layers, E = this.plan.experts;
    const prev = this.#lastUsage ?? new Uint32Array(L * E);
    const st = this.stats;
    st.decodeSteps += decodeSteps;
    for (let l = 0; l < L; l++) {
      const pin = new Set(this.plan.pinned[l]);
      for (let e = 0; e < E; e++) {
        const d = (usage[l * E + e] - prev[l * E + e]) >>> 0;
        st.usage[l][e] += d;
        if (decodeSteps === 0) continue;
        st.routed[l] += d;
        if (pin.has(e)) st.hits[l] += d;
        else st.streamedUsed[l] += Math.min(d, decodeSteps);
      }
      if (decodeSteps > 0 && !this.plan.allResident) {
        st.streamed[l] += (E - this.plan.pinned[l].length) * decodeSteps;
      }
    }
    this.#lastUsage = usage.slice();
  }

  /** Forgets the usage baseline (the runner zeroes `moe.usage` with the other states). */
  resetUsageBaseline(): void {
    this.#lastUsage = undefined;
  }

  /** Zeroes the counters. */
  resetStats(): void {
    this.stats = emptyStats(this.plan.layers, this.plan.experts);
  }

  /** Rates derived from the counters. */
  summary(): ExpertStatsSummary {
    const st = this.stats;
    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
    const n = Math.max(1, st.decodeSteps);
    const streamed = sum(st.streamed);
    return {
      hitRate: sum(st.routed) ? sum(st.hits) / sum(st.routed) : 1,
      prefetchAccuracy: streamed ? sum(st.streamedUsed) / streamed : 1,
      bytesPerToken: st.decodeSteps ? st.decodeBytesUploaded / n : this.plan.bytesPerStep,
      roundTripsPerToken: st.decodeRoundTrips / n,
      diskBytesPerToken: st.decodeDiskBytes / n,
      temporalAccuracy: st.temporalCorrect / st.temporalPredicted,
      lookaheadAccuracy: st.lookaheadCorrect / st.lookaheadPredicted,
      hitRateByLayer: st.routed.map((r, l) => (r ? st.hits[l] / r : 1)),
    };
  }

  /** Routing statistics gathered so far, in the stored-file format. */
  routingStats(): RoutingStats {
    return {
      version: 1,
      layers: this.plan.layers,
      experts: this.plan.experts,
      counts: this.stats.usage.map((r) => [...r]),
    };
  }

  /** A printable report of the counters. */
  report(): string {
    const s = this.summary();
    const st = this.stats;
    const lines = [
      `expert scheduler (${this.policy}): ${this.plan.slots} slots (${this.plan.rotating} ` +
      `rotating), ${st.decodeSteps} decode steps, ${st.misses} misses, ${st.reruns} reruns`,
      `  hit rate ${(100 * s.hitRate).toFixed(1)}%, prefetch accuracy ${
        (100 * s.prefetchAccuracy).toFixed(1)
      }%, uploaded ${formatBytes(st.bytesUploaded)} (${formatBytes(s.bytesPerToken)}/token), ` +
      `round trips ${s.roundTripsPerToken.toFixed(2)}/token`,
    ];
    if (st.temporalPredicted > 0) {
      const pct = (v: number) => (Number.isNaN(v) ? "—" : `${(100 * v).toFixed(1)}%`);
      lines.push(
        `  prefetch (${this.prefetch}): predictor accuracy, next step's experts in layers after ` +
          `the first: temporal ${pct(s.temporalAccuracy)}, router lookahead ${
            pct(s.lookaheadAccuracy)
          }`,
      );
    }
    if (this.plan.disk.some((r) => r.length > 0)) {
      lines.push(
        `  disk tier: ${this.plan.disk.reduce((a, r) => a + r.length, 0)} experts read from ` +
          `the checkpoint when needed, ${formatBytes(st.diskBytesRead)} read ` +
          `(${formatBytes(s.diskBytesPerToken)}/token)`,
      );
    }
    s.hitRateByLayer.forEach((h, l) => {
      lines.push(
        `  layer ${l}: hit ${(100 * h).toFixed(1)}%, streamed ${st.streamed[l]}, used ${
          st.streamedUsed[l]
        }`,
      );
    });
    return lines.join("\n");
  }

  /** Frees the host tier and closes the disk tier's checkpoint. */
  dispose(): void {
    for (const row of this.#host) for (const b of row) b?.destroy();
    this.#host.length = 0;
    this.#disk?.ckpt.close();
    this.#disk = undefined;
  }
}

/** Where the disk tier reads experts from. */
interface DiskTier {
  ckpt: Checkpoint;
  name: (layer: number, expert: number, which: "w1" | "w3" | "w2") => string;
  dtype: "f32" | "f16";
}

/**
 * Index of the router kernel of MoE layer `prefix` in `plan`: the last kernel
 * binding the router weight before the first one binding the layer's slot
 * table (the router lookahead applies the same weight one layer earlier).
 *
 * @example
 * ```ts ignore
 * import { moeRouterKernel } from "./expert_scheduler.ts";
 * const at = moeRouterKernel(model.decode.lastPlan!, "model.layers.0.block_sparse_moe");
 * ```
 */
export function moeRouterKernel(plan: Plan, prefix: string): number {
  const binds = (name: string) => {
    const slot = plan.params.get(name)?.slot;
    return (k: Plan["kernels"][number]) =>
      slot !== undefined && k.bindings.some((b) => b.slot === slot);
  };
  const router = binds(`${prefix}.router`), table = binds(`${prefix}.slot_table`);
  const end = plan.kernels.findIndex(table);
  let at = -1;
  plan.kernels.forEach((k, i) => {
    if ((end < 0 || i < end) && router(k)) at = i;
  });
  if (at < 0) throw new Error(`internal: no router kernel of MoE layer ${prefix} in the plan`);
  return at;
}

function emptyStats(L: number, E: number): ExpertStats {
  const z = () => new Array(L).fill(0);
  return {
    steps: 0,
    decodeSteps: 0,
    bytesUploaded: 0,
    schedulerRoundTrips: 0,
    routed: z(),
    hits: z(),
    streamed: z(),
    streamedUsed: z(),
    usage: Array.from({ length: L }, () => new Array(E).fill(0)),
    decodeBytesUploaded: 0,
    misses: 0,
    reruns: 0,
    decodeRoundTrips: 0,
    diskBytesRead: 0,
    decodeDiskBytes: 0,
    temporalPredicted: 0,
    temporalCorrect: 0,
    lookaheadPredicted: 0,
    lookaheadCorrect: 0,
  };
}

/**
 * An SVG heatmap of expert usage (layers × experts), darker = more routed pairs.
 *
 * @example
 * ```ts
 * import { usageHeatmapSvg } from "./expert_scheduler.ts";
 * const svg = usageHeatmapSvg([[5, 0, 1, 2], [0, 3, 3, 2]]);
 * svg.startsWith("<svg"); // true
 * ```
 */
export function usageHeatmapSvg(
  usage: readonly (readonly number[])[],
  title = "expert usage",
): string {
  const L = usage.length, E = usage[0]?.length ?? 0;
  const c = 28, left = 70, top = 40;
  const w = left + E * c + 20, h = top + L * c + 30;
  const max = Math.max(1, ...usage.flat());
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="20" font-size="14">${escapeXml(title)}</text>`,
  ];
  usage.forEach((row, l) => {
    out.push(
      `<text x="${left - 6}" y="${top + l * c + c / 2 + 4}" text-anchor="end">layer ${l}</text>`,
    );
    row.forEach((v, e) => {
      const a = v / max;
      const shade = Math.round(255 * (1 - a));
      out.push(
        `<rect x="${left + e * c}" y="${top + l * c}" width="${c - 1}" height="${c - 1}" ` +
          `fill="rgb(${shade},${shade},255)"><title>layer ${l} expert ${e}: ${v}</title></rect>`,
      );
    });
  });
  for (let e = 0; e < E; e++) {
    out.push(
      `<text x="${left + e * c + c / 2}" y="${top + L * c + 14}" text-anchor="middle">${e}</text>`,
    );
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}

function escapeXml(s: string): string {
  return s.replace(
    /[<>&"]/g,
    (ch) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[ch]!,
  );
}
