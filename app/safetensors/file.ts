/**
 * One safetensors file: its header, validated when it is opened, and reads of
 * single tensors by offset (so a file never has to fit in memory).
 *
 * @module
 */

import { readFully } from "../read_fully.ts";
import { openRegularFile } from "../fs_errors.ts";
import { convertTensor } from "./convert.ts";
import type { ReadDType } from "./dtypes.ts";
import { MAX_HEADER_BYTES, parseHeader, type TensorInfo } from "./header.ts";

/** Reads are split into chunks this big so progress moves inside large tensors. */

/**
 * One open safetensors file: its validated header and offset reads of its tensors.
 *
 * @example
 * ```ts ignore
 * import { SafetensorsFile } from "@kiln/kiln";
 * const f = await SafetensorsFile.open("./mamba-130m-hf/model.safetensors");
 * for (const [name, info] of f.tensors) console.log(name, info.dtype, info.shape);
 * f.close();
 * ```
 */
export class SafetensorsFile {
  /** The path it was opened with (used in every error message). */
  readonly path: string;
  /** Its tensors by name, in header order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The header's `__metadata__` (string → string), or `{}`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Size of the file in bytes when it was opened. */
  readonly size: number;
  /** Byte offset where the data region begins (8 + header length). */
  readonly dataStart: number;

  #file: Deno.FsFile | undefined;
  // Seek + read is two calls on one shared cursor: reads take turns.
  #queue: Promise<unknown> = Promise.resolve();
  #bytesRead: number;

  private constructor(
    path: string,
    file: Deno.FsFile,
    size: number,
    dataStart: number,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.path = path;
    this.#file = file;
    this.size = size;
    this.dataStart = dataStart;
    this.tensors = tensors;
    this.metadata = Object.freeze(metadata);
    this.#bytesRead = dataStart;
  }

  /**
   * Opens `path` and reads and validates its header (only the header).
   *
   * @example
   * ```ts
   * import { SafetensorsFile } from "./file.ts";
   * const f = await SafetensorsFile.open("model.safetensors");
   * console.log([...f.tensors.keys()]);
   * f.close();
   * ```
   */
  static async open(path: string): Promise<SafetensorsFile> {
    const { file, size } = await openRegularFile(path, "a safetensors file");
    try {
      if (size < 8) {
        throw new RangeError(
          `${path}: file is ${size} bytes, too short for the 8-byte header length (bytes 0..8)`,
        );
      }
      const lenBytes = new Uint8Array(8);
      await readFully(file, path, 0, lenBytes, "the header length");
      const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        throw new RangeError(
          `${path}: header length ${headerLen} (bytes 0..8) exceeds the ${MAX_HEADER_BYTES} byte limit`,
        );
      }
      const n = Number(headerLen);
      if (n > size - 8) {
        throw new RangeError(
          `${path}: header length ${n} (bytes 0..8) runs past the end of the file ` +
            `(${size} bytes, so at most ${size - 8} are left for the header)`,
        );
      }
      const headerBytes = new Uint8Array(n);
      await readFully(file, path, 8, headerBytes, "the header");
      const header = parseHeader(path, headerBytes, size);
      return new SafetensorsFile(path, file, size, 8 + n, header.tensors, header.metadata);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /**
   * Bytes read from disk so far, header included (lets tests prove reads are by offset).
   *
   * @example
   * ```ts ignore
   * import { SafetensorsFile } from "@kiln/kiln";
   * using f = await SafetensorsFile.open("./model.safetensors");
   * await f.readAs("model.norm.weight", "f32");
   * f.bytesRead; // header plus that one tensor, not the whole file
   * ```
   */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /**
   * Whether `close()` has been called.
   *
   * @example
   * ```ts ignore
   * import { SafetensorsFile } from "@kiln/kiln";
   * const f = await SafetensorsFile.open("./model.safetensors");
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
   * ```ts
   * import { SafetensorsFile } from "./file.ts";
   * const f = await SafetensorsFile.open("model.safetensors");
   * f.info("model.norm.weight").shape; // e.g. [4096]
   * ```
   */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new RangeError(`${this.path}: no tensor named "${name}"`);
    return t;
  }

  /**
   * Reads the raw bytes of tensor `name`, into `into` when given (it must hold at
   * least the tensor's bytes; the returned view is exactly that long).
   *
   * @example
   * ```ts
   * import { SafetensorsFile } from "./file.ts";
   * const f = await SafetensorsFile.open("model.safetensors");
   * const bytes = await f.read("model.norm.weight");
   * f.close();
   * ```
   */
  read(name: string, into?: Uint8Array, onBytes?: (bytes: number) => void): Promise<Uint8Array> {
    const info = this.info(name);
    let dst: Uint8Array;
    if (into) {
      if (into.byteLength < info.byteLength) {
        return Promise.reject(
          new RangeError(
            `${this.path}: tensor "${name}" is ${info.byteLength} bytes but the buffer ` +
              `passed to read() holds ${into.byteLength}`,
          ),
        );
      }
      dst = into.subarray(0, info.byteLength);
    } else {
      dst = new Uint8Array(info.byteLength);
    }
    return this.#readAt(name, info.offset, dst, onBytes);
  }

  /**
   * Reads bytes `[start, start + length)` of tensor `name` (a part of a fused
   * tensor), into `into` when given; a range past the tensor is a RangeError.
   *
   * @example
   * ```ts
   * import { SafetensorsFile } from "./file.ts";
   * const f = await SafetensorsFile.open("model.safetensors");
   * const firstRow = await f.readRange("model.norm.weight", 0, 16);
   * f.close();
   * ```
   */
  readRange(
    name: string,
    start: number,
    length: number,
    into?: Uint8Array,
    onBytes?: (bytes: number) => void,
  ): Promise<Uint8Array> {
    const info = this.info(name);
    if (
      !Number.isSafeInteger(start) || !Number.isSafeInteger(length) || start < 0 || length < 0 ||
      start + length > info.byteLength
    ) {
      return Promise.reject(
        new RangeError(
          `${this.path}: bytes ${start}..${start + length} are not inside tensor "${name}" ` +
            `(${info.byteLength} bytes)`,
        ),
      );
    }
    if (into && into.byteLength < length) {
      return Promise.reject(
        new RangeError(
          `${this.path}: a ${length}-byte range of tensor "${name}" does not fit the buffer ` +
            `passed to readRange() (${into.byteLength} bytes)`,
        ),
      );
    }
    const dst = into ? into.subarray(0, length) : new Uint8Array(length);
    return this.#readAt(name, info.offset + start, dst, onBytes);
  }

  #readAt(
    name: string,
    offset: number,
    dst: Uint8Array,
    onBytes?: (bytes: number) => void,
  ): Promise<Uint8Array> {
    return this.#exclusive(async () => {
      const file = this.#file;
      if (!file) throw new TypeError(`${this.path}: read("${name}") after close()`);
      await readFully(file, this.path, offset, dst, `tensor "${name}"`, (k) => {
        this.#bytesRead += k;
        onBytes?.(k);
      });
      return dst;
    });
  }

  /**
   * Reads tensor `name` converted to f32 or f16 (see {@linkcode convertTensor}).
   *
   * @example
   * ```ts
   * import { SafetensorsFile } from "./file.ts";
   * const f = await SafetensorsFile.open("model.safetensors");
   * const w = await f.readAs("model.norm.weight", "f32");
   * f.close();
   * ```
   */
  async readAs(
    name: string,
    dtype: ReadDType,
    onBytes?: (bytes: number) => void,
  ): Promise<Float32Array | Float16Array> {
    const info = this.info(name);
    const raw = await this.read(name, undefined, onBytes);
    return convertTensor(raw, info.dtype, dtype, `${this.path}: tensor "${name}"`);
  }

  /**
   * Closes the file. Reads already queued fail with a `TypeError`. Idempotent.
   *
   * @example
   * ```ts
   * import { SafetensorsFile } from "./file.ts";
   * const f = await SafetensorsFile.open("model.safetensors");
   * f.close();
   * ```
   */
  close(): void {
    const file = this.#file;
    this.#file = undefined;
    file?.close();
  }

  /** Lets `using f = await SafetensorsFile.open(p)` close it. */
  [Symbol.dispose](): void {
    this.close();
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}
