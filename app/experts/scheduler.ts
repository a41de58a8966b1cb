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

import type { Plan } from "../../compiler/plan.ts";
import type { GpuDevice } from "../../runtime/device.ts";
import type { Executable } from "../../runtime/executable.ts";
import type { EncodeHooks, HostBarriers } from "../../runtime/gpu_executor.ts";
import type { ExpertPlan, RoutingStats } from "./placement.ts";
import type { WeightSource } from "../model/source.ts";
import type { ExpertFormats } from "./tiers.ts";
import {
  type ExpertPolicy,
  type ExpertPrefetch,
  NOT_RESIDENT,
  type WindowCheck,
} from "./policy.ts";
import { moeRouterKernel } from "./router_kernel.ts";
import {
  describeExpertStats,
  emptyExpertStats,
  type ExpertStats,
  type ExpertStatsSummary,
  summarizeExpertStats,
} from "./stats.ts";
import { type ExpertTensorName, ExpertTiers } from "./tiers.ts";

// The slot pool is the graphs' to name; the scheduler fills it (kept exported from here).
export { SLOT_POOL } from "../../models/states.ts";

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
  /** The slot pool and the host and disk tiers experts are moved into it from. */
  readonly #tiers: ExpertTiers;
  readonly #barriers = new WeakMap<Plan, HostBarriers>();
  readonly #hooks = new WeakMap<Plan, EncodeHooks>();
  #lastUsage?: Uint32Array;
  /** Replacement policy. */
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
  #disposed = false;

  private constructor(
    dev: GpuDevice,
    plan: ExpertPlan,
    prefixes: readonly string[],
    tiers: ExpertTiers,
    tableBufs: GPUBuffer[],
    policy: ExpertPolicy,
  ) {
    this.#dev = dev;
    this.plan = plan;
    this.prefixes = prefixes;
    this.#tiers = tiers;
    this.#tableBufs = tableBufs;
    this.policy = policy;
    this.stats = emptyExpertStats(plan.layers, plan.experts);
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

  /** Throws once disposed: the tiers and slot tables it would write are freed. */
  #live(): void {
    if (this.#disposed) {
      throw new TypeError("ExpertScheduler was disposed (with its model); load the model again");
    }
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
    this.#live();
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
    this.#live();
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
      if (this.#tiers.inHost(l, e)) {
        enc ??= device.createCommandEncoder();
        this.#tiers.copy(enc, l, e, rot0 + victim);
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

  /** Non-pinned entries (`l·E + e`) routed in `row`, in entry order (layer by layer). */
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
    ckpt: WeightSource,
    plan: ExpertPlan,
    prefixes: readonly string[],
    tensorName: ExpertTensorName,
    dtype: "f32" | "f16",
    policy: ExpertPolicy = "stream",
    disk?: WeightSource,
    formats?: ExpertFormats,
  ): Promise<ExpertScheduler> {
    if (exe.device.kind !== "gpu") {
      throw new TypeError("ExpertScheduler: a memory budget needs a GPU device");
    }
    if (plan.disk.some((r) => r.length > 0) && !disk) {
      throw new TypeError("ExpertScheduler: the plan reads experts from disk; pass a checkpoint");
    }
    // Until loaded, the tiers read from the load's checkpoint.
    const tiers = ExpertTiers.allocate(exe, dtype, ckpt, tensorName, formats);
    const tables: Record<string, Uint32Array> = {};
    prefixes.forEach((p, l) => tables[`${p}.slot_table`] = plan.tables[l]);
    exe.setParams(tables);
    const s = new ExpertScheduler(
      exe.device as GpuDevice,
      plan,
      prefixes,
      tiers,
      prefixes.map((p) => exe.paramBuffer(`${p}.slot_table`)!),
      policy,
    );
    try {
      await tiers.fill(plan);
    } catch (e) {
      s.dispose();
      throw e;
    }
    // The load's checkpoint is closed after loading; the disk tier reads its own.
    tiers.useDisk(disk);
    return s;
  }

  /**
   * Reads expert (l, e) from the checkpoint into slot `slot` (see
   * `ExpertTiers.read`) and counts the bytes as disk reads.
   */
  async #read(l: number, e: number, slot: number): Promise<void> {
    this.#live();
    await this.#tiers.read(l, e, slot);
    this.stats.diskBytesRead += this.expertBytes;
    if (this.decoding) this.stats.decodeDiskBytes += this.expertBytes;
  }

  /** Bytes of one expert. */
  get expertBytes(): number {
    return this.#tiers.expertBytes;
  }

  /**
   * Copy commands for a forward pass of `plan`: before the first kernel of each
   * MoE layer (its router), that layer's non-pinned experts are copied into
   * the rotating slots. Pass as `RunOptions.hooks`.
   */
  hooks(plan: Plan): EncodeHooks | undefined {
    this.#live();
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
        for (const e of todo) this.#tiers.copy(enc, l, e, this.#placed(l, e));
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
    this.#live();
    if (!this.#tiers.hasDisk || this.plan.allResident) return undefined;
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
    this.stats = emptyExpertStats(this.plan.layers, this.plan.experts);
  }

  /** Rates derived from the counters. */
  summary(): ExpertStatsSummary {
    return summarizeExpertStats(this.stats, this.plan);
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
    return describeExpertStats(this.stats, this.plan, this.policy, this.prefetch);
  }

  /**
   * Frees the host tier and closes the disk tier's checkpoint. Idempotent;
   * the methods that move experts then throw a TypeError saying so.
   */
  dispose(): void {
    this.#disposed = true;
    this.#tiers.dispose();
  }
}
