/**
 * One GGUF file: its header, read in chunks and validated when it is opened,
 * and reads of single tensors by offset (so a 40 GB file never has to fit in
 * memory).
 *
 * @module
 */

import { readFully } from "../read_fully.ts";
import { openRegularFile } from "../fs_errors.ts";
import { bf16ToF32 } from "../safetensors/convert.ts";
import { quote } from "../safetensors/header.ts";
import { MAX_GGUF_HEADER_BYTES } from "./decode.ts";
import { GgufHeaderParser } from "./header.ts";
import type { GgufTensorInfo } from "./types.ts";
import { GgufMetadata } from "./metadata.ts";

/** Tensor reads are split into chunks this big. */
/** The header's first read; later reads double what is held (up to 64 MiB a read). */
const FIRST_HEADER_READ = 1024 * 1024;

/**
 * Options for {@linkcode GgufFile.open}.
 *
 * @example
 * ```ts ignore
 * import { GgufFile, type GgufOpenOptions } from "./mod.ts";
 * const options: GgufOpenOptions = { onProgress: (done, total) => console.log(done, total) };
 * const f = await GgufFile.open("./model.gguf", options);
 * ```
 */
export interface GgufOpenOptions {
  /**
   * Told, after each chunk of the header is parsed, how many of its entries
   * (metadata pairs plus tensor infos) are done out of how many there are.
   */
  onProgress?: (done: number, total: number) => void;
}

/**
 * One open GGUF file: its validated header (metadata with typed getters, tensor
 * infos) and offset reads of its tensors.
 *
 * @example
 * ```ts ignore
 * import { GgufFile } from "./mod.ts";
 * using f = await GgufFile.open("./qwen3-0.6b-q8_0.gguf");
 * const arch = f.string("general.architecture");
 * const layers = f.number(`${arch}.block_count`);
 * for (const [name, t] of f.tensors) console.log(name, t.type.name, t.shape);
 * const norm = await f.readF32("output_norm.weight");
 * ```
 */
export class GgufFile extends GgufMetadata {
  /** Format version (2 and 3 differ only in that 3 allows big-endian files). */
  readonly version: 2 | 3;
  /** Its tensors by name, in file order. */
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  /** `general.alignment`, or 32: every tensor's offset from `dataOffset` is a multiple. */
  readonly alignment: number;
  /** Absolute offset where the tensor data begins. */
  readonly dataOffset: number;
  /** Size of the file in bytes when it was opened. */
  readonly size: number;

  #file: Deno.FsFile | undefined;
  // Seek + read is two calls on one shared cursor: reads take turns.
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string, file: Deno.FsFile, size: number, p: GgufHeaderParser) {
    const h = p.finish();
    super(path, h.entries);
    this.#file = file;
    this.size = size;
    this.version = h.version;
    this.tensors = h.tensors;
    this.alignment = h.alignment;
    this.dataOffset = h.dataOffset;
  }

  /**
   * Opens `path` and reads and validates its header (only the header, in
   * chunks: its size is known only once it has been parsed).
   *
   * @example
   * ```ts ignore
   * import { GgufFile } from "./file.ts";
   * const f = await GgufFile.open("model.gguf");
   * console.log(f.version, f.metadata.size, f.tensors.size);
   * f.close();
   * ```
   */
  static async open(path: string, options: GgufOpenOptions = {}): Promise<GgufFile> {
    const { file, size } = await openRegularFile(path, "a GGUF file");
    try {
      const p = new GgufHeaderParser(path, size);
      for (;;) {
        const need = p.advance();
        // The total is known once the counts (bytes 8..24) are parsed.
        const [done, total] = p.progress;
        if (total > 0 || need === 0) options.onProgress?.(done, total);
        if (need === 0) break;
        // Each entry is parsed whole, and a big one (a vocabulary) is retried from
        // its start after each read: doubling what is held keeps that linear.
        const grow = Math.max(FIRST_HEADER_READ, Math.min(p.held, 64 * 1024 * 1024));
        const room = Math.min(size, MAX_GGUF_HEADER_BYTES) - p.held;
        const chunk = new Uint8Array(Math.min(size - p.held, Math.max(need, Math.min(grow, room))));
        await readFully(file, path, p.held, chunk, "the header");
        p.push(chunk);
      }
      return new GgufFile(path, file, size, p);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /**
   * Whether `close()` has been called.
   *
   * @example
   * ```ts ignore
   * import { GgufFile } from "./file.ts";
   * const f = await GgufFile.open("model.gguf");
   * f.close();
   * f.closed; // true
   * ```
   */
  get closed(): boolean {
    return this.#file === undefined;
  }

  /**
   * The tensor's location, or a `RangeError` naming the file and the tensor.
   *
   * @example
   * ```ts ignore
   * import { GgufFile } from "./file.ts";
   * const f = await GgufFile.open("model.gguf");
   * f.info("token_embd.weight").shape; // e.g. [151936, 1024]
   * ```
   */
  info(name: string): GgufTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new RangeError(`${this.path}: no tensor named ${quote(name)}`);
    return t;
  }

  /**
   * Reads the stored bytes of tensor `name` (exactly `info(name).bytes` of them),
   * into `into` when given (it must hold at least that many).
   *
   * @example
   * ```ts ignore
   * import { GgufFile } from "./file.ts";
   * const f = await GgufFile.open("model.gguf");
   * const q = await f.read("blk.0.attn_q.weight"); // q8_0 blocks, as stored
   * f.close();
   * ```
   */
  read(name: string, into?: Uint8Array): Promise<Uint8Array> {
    let t: GgufTensorInfo;
    try {
      t = this.info(name);
    } catch (e) {
      return Promise.reject(e);
    }
    if (into && into.byteLength < t.bytes) {
      return Promise.reject(
        new RangeError(
          `${this.path}: tensor ${quote(name)} is ${t.bytes} bytes but the buffer passed to ` +
            `read() holds ${into.byteLength}`,
        ),
      );
    }
    const dst = into ? into.subarray(0, t.bytes) : new Uint8Array(t.bytes);
    return this.#exclusive(async () => {
      const file = this.#file;
      if (!file) throw new TypeError(`${this.path}: read(${quote(name)}) after close()`);
      await readFully(file, this.path, t.offset, dst, `tensor ${quote(name)}`);
      return dst;
    });
  }

  /**
   * Reads an f32, f16 or bf16 tensor as f32 values (ggml order: `ne0` varies
   * fastest, i.e. row-major in `shape`). A quantized tensor is a `TypeError`.
   *
   * @example
   * ```ts ignore
   * import { GgufFile } from "./file.ts";
   * const f = await GgufFile.open("model.gguf");
   * const norm = await f.readF32("output_norm.weight");
   * f.close();
   * ```
   */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    const kind = t.type.name;
    if (kind !== "f32" && kind !== "f16" && kind !== "bf16") {
      throw new TypeError(
        `${this.path}: tensor ${quote(name)} is ${kind}, expected f32, f16 or bf16 for ` +
          `readF32 (read() gives its ${kind} blocks as stored)`,
      );
    }
    const raw = await this.read(name);
    // `raw` is a fresh buffer at offset 0, so it is aligned for any element view.
    if (kind === "f32") return new Float32Array(raw.buffer, 0, raw.byteLength / 4);
    if (kind === "f16") {
      return new Float32Array(new Float16Array(raw.buffer, 0, raw.byteLength / 2));
    }
    return bf16ToF32(new Uint16Array(raw.buffer, 0, raw.byteLength / 2));
  }

  /**
   * Closes the file. Reads already queued fail with a `TypeError`. Idempotent.
   *
   * @example
   * ```ts ignore
   * import { GgufFile } from "./file.ts";
   * const f = await GgufFile.open("model.gguf");
   * f.close();
   * ```
   */
  close(): void {
    const file = this.#file;
    this.#file = undefined;
    file?.close();
  }

  /** Lets `using f = await GgufFile.open(p)` close it. */
  [Symbol.dispose](): void {
    this.close();
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}
