/**
 * Quantizing on every core: {@linkcode QuantPool} splits a tensor into runs of
 * whole blocks, encodes them in workers (`quantize_worker.ts`) and joins the
 * blocks. Blocks are encoded independently of each other, so the bytes are
 * those of `quantize` on one thread, whatever the number of threads.
 *
 * The encoders are llama.cpp's reference quantizers in JS: about 4 M elements/s
 * a core for Q4_K and IQ4_XS, 1.2–1.7 M for IQ3 (`BENCHMARKS.md`), so a
 * 47B-parameter model is hours of work on one core. `kiln quantize` and
 * `loadModel(dir, { quantize })` both encode through a pool.
 *
 * Where a worker cannot start (no read permission for the worker's module, a
 * `deno compile` binary without it, a runtime without workers) the pool
 * encodes on the calling thread instead and says why in
 * {@linkcode QuantPool.fallback}: slower, never different.
 *
 * @module
 */

import { checkQuantizable, quantize } from "../core/quant/codecs.ts";
import {
  checkImportance,
  type Importance,
  quantizeWithImportance,
} from "../core/quant/importance.ts";
import { GGML_TYPES, type QuantFormat } from "../core/quant/formats.ts";

/**
 * Options of {@linkcode QuantPool}.
 *
 * @example
 * ```ts
 * import type { QuantPoolOptions } from "./quantize_pool.ts";
 * const one: QuantPoolOptions = { threads: 1 }; // encode on the calling thread
 * ```
 */
export interface QuantPoolOptions {
  /** Workers to encode in (default: the machine's logical cores); 1 encodes on the calling thread. */
  threads?: number;
  /** The worker module's URL (default: `quantize_worker.ts` beside this module); for tests. */
  workerUrl?: string;
}

/**
 * Encodes `data` in `format`, as {@linkcode QuantPool.quantize} does.
 *
 * @example
 * ```ts
 * import { quantize } from "../core/quant/codecs.ts";
 * import type { Quantizer } from "./quantize_pool.ts";
 * const serial: Quantizer = (format, data) => Promise.resolve(quantize(format, data));
 * ```
 */
export type Quantizer = (
  format: QuantFormat,
  data: Float32Array,
  importance?: Importance,
) => Promise<Uint8Array<ArrayBuffer>>;

/** Below this many elements a part's messages cost more than its encode saves. */
const MIN_PART = 1 << 15;

/**
 * Elements `from`..`to` (whole blocks) of the caller's tensor `data`, whose copy
 * the workers read in `shared`.
 */
interface Job {
  id: number;
  format: QuantFormat;
  data: Float32Array;
  importance?: Importance;
  shared: SharedArrayBuffer;
  from: number;
  to: number;
  resolve: (bytes: Uint8Array<ArrayBuffer>) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  job?: Job;
}

/**
 * A pool of workers that quantize tensors, byte for byte as `quantize` does.
 * Close it (or `using` it) when done: its workers keep the process alive.
 *
 * @example
 * ```ts ignore
 * import { QuantPool } from "./quantize_pool.ts";
 * using pool = new QuantPool();
 * const blocks = await pool.quantize("q4_k", new Float32Array(4096 * 4096));
 * ```
 */
export class QuantPool {
  /** How many workers it encodes in at most. */
  readonly threads: number;
  /** Why it encodes on the calling thread after all, once a worker failed to start. */
  fallback: string | undefined;
  #url: string;
  #slots: Slot[] = [];
  #queue: Job[] = [];
  #next = 0;
  #closed = false;
  /** Shared buffers free for the next tensor (reused: a fresh one costs its page faults). */
  #spare: SharedArrayBuffer[] = [];

  /** A pool of up to `options.threads` workers, started as the work needs them. */
  constructor(options: QuantPoolOptions = {}) {
    const threads = options.threads ?? defaultThreads();
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`QuantPool: threads must be a positive integer, got ${threads}`);
    }
    this.threads = threads;
    this.#url = options.workerUrl ?? new URL("./quantize_worker.ts", import.meta.url).href;
  }

  /**
   * `data` quantized to `format`: the bytes `quantize(format, data)` returns,
   * with its RangeErrors (checked here, over the whole tensor, before any
   * worker sees a part); with `importance`, those of
   * `quantizeWithImportance(format, data, importance.rowLength, importance.values)`,
   * the work split at row boundaries.
   */
  async quantize(
    format: QuantFormat,
    data: Float32Array,
    importance?: Importance,
  ): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#closed) throw new Error("QuantPool: quantize after close()");
    const { blockElems, blockBytes } = GGML_TYPES[format] ?? { blockElems: 1, blockBytes: 1 };
    // The unit a part holds whole: a block, or with an importance vector a row
    // (the legacy formats' weighted fit reads the whole row's mean square).
    const unit = importance ? importance.rowLength : blockElems;
    const units = Math.floor(data.length / unit);
    const parts = Math.min(this.threads, Math.floor(data.length / MIN_PART), units);
    const here = () =>
      importance
        ? quantizeWithImportance(format, data, importance.rowLength, importance.values)
        : quantize(format, data);
    if (parts < 2 || this.fallback !== undefined) return here();
    if (importance) checkImportance(format, data, importance.rowLength, importance.values);
    else checkQuantizable(format, data);
    const out = new Uint8Array((data.length / blockElems) * blockBytes);
    // One copy of the tensor the workers all read (a copy per part, moved to its
    // worker, measured ~25 ms per 8 MB in page faults: more than Q8_0's encode).
    const shared = this.#shared(data.byteLength);
    new Float32Array(shared, 0, data.length).set(data);
    try {
      await Promise.all(
        Array.from({ length: parts }, async (_, p) => {
          const from = Math.floor((units * p) / parts) * unit;
          const to = Math.floor((units * (p + 1)) / parts) * unit;
          const bytes = await this.#submit({ format, data, importance, shared, from, to });
          out.set(bytes, (from / blockElems) * blockBytes);
        }),
      );
    } finally {
      this.#spare.push(shared);
    }
    return out;
  }

  /** A shared buffer of at least `bytes`: a spare one, or a new one. */
  #shared(bytes: number): SharedArrayBuffer {
    const i = this.#spare.findIndex((b) => b.byteLength >= bytes);
    if (i >= 0) return this.#spare.splice(i, 1)[0];
    this.#spare.pop(); // too small: let it go rather than hold two
    return new SharedArrayBuffer(bytes);
  }

  /** Ends the workers; work still queued or running is rejected. */
  close(): void {
    this.#closed = true;
    const gone = new Error("QuantPool: closed before the work finished");
    for (const s of this.#slots) {
      s.worker.terminate();
      s.job?.reject(gone);
    }
    for (const j of this.#queue) j.reject(gone);
    this.#slots = [];
    this.#queue = [];
    this.#spare = [];
  }

  /** Same as {@linkcode QuantPool.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #submit(part: Omit<Job, "id" | "resolve" | "reject">): Promise<Uint8Array<ArrayBuffer>> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ ...part, id: this.#next++, resolve, reject });
      this.#pump();
    });
  }

  /** Hands queued parts to idle workers, starting workers up to `threads`. */
  #pump(): void {
    while (this.#queue.length > 0) {
      if (this.fallback !== undefined) {
        runHere(this.#queue.shift()!);
        continue;
      }
      let slot = this.#slots.find((s) => s.job === undefined);
      if (!slot && this.#slots.length < this.threads) slot = this.#start();
      if (!slot) return;
      const job = this.#queue.shift()!;
      slot.job = job;
      const { id, format, shared, from, to, importance } = job;
      slot.worker.postMessage({ id, format, shared, from, to, importance });
    }
  }

  #start(): Slot | undefined {
    // Without read permission for a local worker module, Deno would print the
    // worker's load error even though it is handled: ask first.
    const denied = readDenied(this.#url);
    if (denied) {
      this.fallback = denied;
      return undefined;
    }
    let worker: Worker;
    try {
      worker = new Worker(this.#url, { type: "module" });
    } catch (e) {
      this.fallback = `workers cannot start here: ${(e as Error).message}`;
      return undefined;
    }
    const slot: Slot = { worker };
    worker.onmessage = (e: MessageEvent) => {
      const job = slot.job!;
      slot.job = undefined;
      const { bytes, error } = e.data as {
        bytes?: Uint8Array<ArrayBuffer>;
        error?: { name: string; message: string };
      };
      if (error) job.reject(rebuild(error));
      else job.resolve(bytes!);
      this.#pump();
    };
    // A worker that fails to load (or dies) leaves its part, and all later
    // work, to the calling thread.
    const fail = (why: string) => {
      worker.terminate();
      this.#slots = this.#slots.filter((s) => s !== slot);
      this.fallback ??= `a worker failed: ${why}`;
      if (slot.job) runHere(slot.job);
      slot.job = undefined;
      this.#pump();
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      fail(e.message);
    };
    worker.onmessageerror = () => fail("a message could not be read");
    this.#slots.push(slot);
    return slot;
  }
}

function runHere(job: Job): void {
  try {
    const part = job.data.subarray(job.from, job.to);
    const imp = job.importance;
    job.resolve(
      imp
        ? quantizeWithImportance(job.format, part, imp.rowLength, imp.values)
        : quantize(job.format, part),
    );
  } catch (e) {
    job.reject(e);
  }
}

/** The encoder's error, as the class it was thrown as (RangeError, TypeError). */
function rebuild(e: { name: string; message: string }): Error {
  const Cls = e.name === "RangeError" ? RangeError : e.name === "TypeError" ? TypeError : Error;
  return new Cls(e.message);
}

/** Why a local worker module could not be read, if it could not. */
function readDenied(url: string): string | undefined {
  if (!url.startsWith("file:")) return undefined;
  const path = decodeURIComponent(new URL(url).pathname);
  try {
    const { state } = Deno.permissions.querySync({ name: "read", path });
    if (state === "granted") return undefined;
    return `no read permission for the worker module ${path} (--allow-read)`;
  } catch {
    return undefined;
  }
}

function defaultThreads(): number {
  const n = globalThis.navigator?.hardwareConcurrency;
  return typeof n === "number" && n >= 1 ? Math.min(64, Math.floor(n)) : 1;
}
