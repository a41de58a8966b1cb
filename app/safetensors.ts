/**
 * A streaming, validating reader for safetensors files and Hugging Face model
 * folders (one `model.safetensors`, or `model.safetensors.index.json` + shards).
 *
 * Only the header is read when a file is opened; each tensor is later read by
 * offset, so a 90 GB checkpoint never has to fit in memory. Headers are checked
 * completely at open time, so a bad file fails before any weight is used:
 *
 * - `RangeError`: sizes and offsets (file too short, header length too big or
 *   past the end, spans out of the data or overlapping, byte count ≠ shape × dtype,
 *   negative or non-integer numbers);
 * - `SyntaxError`: a header or index that is not UTF-8 JSON of the right shape;
 * - `TypeError`: a field of the wrong type, an unknown dtype, a conversion that
 *   makes no sense (BOOL as float), use after `close()`;
 * - `Deno.errors.NotFound`: a shard named by the index is missing.
 *
 * Every message starts with the file's path and names the tensor and the field
 * or byte range involved.
 *
 * @example
 * ```ts
 * import { Checkpoint } from "./safetensors.ts";
 * const ckpt = await Checkpoint.open("models/mamba-130m");
 * const norm = await ckpt.readF32("backbone.norm_f.weight");
 * ckpt.close();
 * ```
 *
 * @module
 */

import { join } from "node:path";
import type { Progress } from "./progress.ts";

/**
 * The element types a safetensors header may name (the byte-sized ones).
 *
 * @example
 * ```ts
 * import type { SafeDType } from "@kiln/kiln";
 * const dtype: SafeDType = "BF16"; // read as f32 or f16 with readAs
 * ```
 */
export type SafeDType =
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E4M3"
  | "F8_E5M2"
  | "F8_E8M0"
  | "U16"
  | "I16"
  | "F16"
  | "BF16"
  | "U32"
  | "I32"
  | "F32"
  | "U64"
  | "I64"
  | "F64";

const DTYPE_SIZE: { readonly [D in SafeDType]: number } = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  U16: 2,
  I16: 2,
  F16: 2,
  BF16: 2,
  U32: 4,
  I32: 4,
  F32: 4,
  U64: 8,
  I64: 8,
  F64: 8,
};

/**
 * Bytes per element of a safetensors dtype.
 *
 * @example
 * ```ts
 * import { dtypeSize } from "./safetensors.ts";
 * dtypeSize("BF16"); // 2
 * ```
 */
export function dtypeSize(dtype: SafeDType): number {
  return DTYPE_SIZE[dtype];
}

/**
 * Whether `s` is a dtype this reader understands.
 *
 * @example
 * ```ts
 * import { isSafeDType } from "./safetensors.ts";
 * isSafeDType("F32"); // true
 * isSafeDType("F4"); // false (sub-byte types are not supported)
 * ```
 */
export function isSafeDType(s: unknown): s is SafeDType {
  return typeof s === "string" && Object.hasOwn(DTYPE_SIZE, s);
}

/**
 * Where one tensor lives.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint, type TensorInfo } from "@kiln/kiln";
 * const ckpt = await Checkpoint.open("./mamba-130m-hf");
 * const info: TensorInfo = ckpt.info("backbone.norm_f.weight");
 * console.log(info.dtype, info.shape, info.file, info.byteLength);
 * ckpt.close();
 * ```
 */
export interface TensorInfo {
  /** Its name in the checkpoint, e.g. `model.norm.weight`. */
  readonly name: string;
  /** Element type as stored. */
  readonly dtype: SafeDType;
  /** Dimensions; `[]` is a scalar. */
  readonly shape: readonly number[];
  /** Path of the file that holds it. */
  readonly file: string;
  /** Absolute byte offset of its first byte in `file`. */
  readonly offset: number;
  /** Its size in bytes (elements × dtype size). */
  readonly byteLength: number;
}

/**
 * Float types a tensor can be read as.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint, type ReadDType } from "@kiln/kiln";
 * const ckpt = await Checkpoint.open("./mamba-130m-hf");
 * const as: ReadDType = "f16";
 * const w = await ckpt.readAs("backbone.norm_f.weight", as);
 * ckpt.close();
 * ```
 */
export type ReadDType = "f32" | "f16";

/** Largest header accepted: real ones are a few MB; this stops a bad length from allocating GBs. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Reads are split into chunks this big so progress moves inside large tensors. */
const CHUNK_BYTES = 16 * 1024 * 1024;

const SUPPORTED = Object.keys(DTYPE_SIZE).join(", ");

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
   * import { SafetensorsFile } from "./safetensors.ts";
   * const f = await SafetensorsFile.open("model.safetensors");
   * console.log([...f.tensors.keys()]);
   * f.close();
   * ```
   */
  static async open(path: string): Promise<SafetensorsFile> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
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
   * import { SafetensorsFile } from "./safetensors.ts";
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
   * import { SafetensorsFile } from "./safetensors.ts";
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
    return this.#exclusive(async () => {
      const file = this.#file;
      if (!file) throw new TypeError(`${this.path}: read("${name}") after close()`);
      await readFully(file, this.path, info.offset, dst, `tensor "${name}"`, (k) => {
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
   * import { SafetensorsFile } from "./safetensors.ts";
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
   * import { SafetensorsFile } from "./safetensors.ts";
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

/**
 * Options for {@linkcode Checkpoint.open}.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint, type CheckpointOptions, createProgress } from "@kiln/kiln";
 * const options: CheckpointOptions = {
 *   progress: (total) => createProgress({ total, label: "mamba-130m" }),
 * };
 * const ckpt = await Checkpoint.open("./mamba-130m-hf", options);
 * ```
 */
export interface CheckpointOptions {
  /**
   * Told about every byte read: a {@linkcode Progress}, or a function that makes
   * one once the total is known, e.g. `(total) => createProgress({ total, label })`.
   * `close()` calls its `done()`.
   */
  progress?: Progress | ((totalBytes: number) => Progress);
}

/** The index file name Hugging Face uses for sharded checkpoints. */
export const INDEX_FILE = "model.safetensors.index.json";
/** The file name Hugging Face uses for unsharded checkpoints. */
export const SINGLE_FILE = "model.safetensors";

/**
 * A model's weights: one safetensors file, or an index and its shards.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint } from "@kiln/kiln";
 * using ckpt = await Checkpoint.open("./Mixtral-8x7B-v0.1"); // index + shards
 * console.log(ckpt.tensors.size, ckpt.totalBytes);
 * const norm = await ckpt.readF32("model.norm.weight");
 * ```
 */
export class Checkpoint {
  /** The folder (or file) it was opened from. */
  readonly path: string;
  /** The open files: one, or one per shard in index order. */
  readonly files: readonly SafetensorsFile[];
  /** Every tensor by name (for a sharded checkpoint: those in the index's weight_map). */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Sum of all tensors' bytes: what loading everything reads. */
  readonly totalBytes: number;

  #byFile: Map<string, SafetensorsFile>;
  #progress: Progress | undefined;

  private constructor(
    path: string,
    files: SafetensorsFile[],
    tensors: Map<string, TensorInfo>,
    options: CheckpointOptions,
  ) {
    this.path = path;
    this.files = files;
    this.tensors = tensors;
    this.#byFile = new Map(files.map((f) => [f.path, f]));
    let total = 0;
    for (const t of tensors.values()) total += t.byteLength;
    this.totalBytes = total;
    const p = options.progress;
    this.#progress = typeof p === "function" ? p(total) : p;
  }

  /**
   * Opens a model folder: `model.safetensors.index.json` and its shards if the
   * index exists, else `model.safetensors`. `path` may also name a `.safetensors`
   * file or an index file directly. Every header is validated here.
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./safetensors.ts";
   * import { createProgress } from "./progress.ts";
   * const ckpt = await Checkpoint.open("models/mixtral", {
   *   progress: (total) => createProgress({ total, label: "mixtral" }),
   * });
   * ```
   */
  static async open(path: string, options: CheckpointOptions = {}): Promise<Checkpoint> {
    const stat = await Deno.stat(path);
    if (stat.isFile) {
      if (path.endsWith(".json")) return await Checkpoint.#openIndex(path, options);
      const f = await SafetensorsFile.open(path);
      return new Checkpoint(path, [f], new Map(f.tensors), options);
    }
    const index = join(path, INDEX_FILE);
    if (await exists(index)) return await Checkpoint.#openIndex(index, options);
    const single = join(path, SINGLE_FILE);
    if (await exists(single)) {
      const f = await SafetensorsFile.open(single);
      return new Checkpoint(path, [f], new Map(f.tensors), options);
    }
    throw new Deno.errors.NotFound(
      `${path}: neither ${INDEX_FILE} nor ${SINGLE_FILE} is in this folder`,
    );
  }

  static async #openIndex(indexPath: string, options: CheckpointOptions): Promise<Checkpoint> {
    const weightMap = parseIndex(indexPath, await Deno.readFile(indexPath));
    const dir = join(indexPath, "..");
    // First tensor per shard, so a missing shard can be reported with one it should hold.
    const shards = new Map<string, string>();
    for (const [tensor, shard] of weightMap) if (!shards.has(shard)) shards.set(shard, tensor);
    const opened = await Promise.allSettled(
      [...shards].map(async ([shard, tensor]) => {
        const p = join(dir, shard);
        try {
          return await SafetensorsFile.open(p);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) {
            throw new Deno.errors.NotFound(
              `${indexPath}: shard "${shard}" (which should hold tensor "${tensor}") ` +
                `does not exist at ${p}`,
              { cause: e },
            );
          }
          throw e;
        }
      }),
    );
    const files = opened.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = opened.find((r) => r.status === "rejected");
    if (failed) {
      for (const f of files) f.close();
      throw failed.reason;
    }
    const byShard = new Map([...shards.keys()].map((s, i) => [s, files[i]]));
    const tensors = new Map<string, TensorInfo>();
    for (const [name, shard] of weightMap) {
      const f = byShard.get(shard)!;
      const t = f.tensors.get(name);
      if (!t) {
        for (const g of files) g.close();
        throw new RangeError(
          `${indexPath}: weight_map puts tensor "${name}" in "${shard}", ` +
            `but that shard has no such tensor (it has ${f.tensors.size})`,
        );
      }
      tensors.set(name, t);
    }
    return new Checkpoint(join(indexPath, ".."), files, tensors, options);
  }

  /**
   * Whether the checkpoint has a tensor `name`.
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./safetensors.ts";
   * const ckpt = await Checkpoint.open("models/mixtral");
   * ckpt.has("lm_head.weight"); // true
   * ```
   */
  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /**
   * Where tensor `name` lives; a `RangeError` naming it if absent.
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./safetensors.ts";
   * const ckpt = await Checkpoint.open("models/mixtral");
   * ckpt.info("model.norm.weight").dtype; // "BF16"
   * ```
   */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new RangeError(`${this.path}: checkpoint has no tensor named "${name}"`);
    return t;
  }

  /**
   * Reads tensor `name`'s bytes as stored (into `into` when given).
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./safetensors.ts";
   * const ckpt = await Checkpoint.open("models/mixtral");
   * const bytes = await ckpt.readRaw("model.norm.weight");
   * ```
   */
  readRaw(name: string, into?: Uint8Array): Promise<Uint8Array> {
    return this.#file(name).read(name, into, this.#advance);
  }

  /**
   * Reads tensor `name` as f32 (exact for F32, F16, BF16 and F8; ints convert).
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./safetensors.ts";
   * const ckpt = await Checkpoint.open("models/mixtral");
   * const w = await ckpt.readF32("model.norm.weight");
   * ```
   */
  async readF32(name: string): Promise<Float32Array> {
    return (await this.readAs(name, "f32")) as Float32Array;
  }

  /**
   * Reads tensor `name` converted to f32 or f16 (rounded to nearest even).
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./safetensors.ts";
   * const ckpt = await Checkpoint.open("models/mixtral");
   * const w = await ckpt.readAs("model.norm.weight", "f16");
   * ```
   */
  readAs(name: string, dtype: "f32"): Promise<Float32Array>;
  /** Reads tensor `name` converted to f16 (rounded to nearest even). */
  readAs(name: string, dtype: "f16"): Promise<Float16Array>;
  /** Reads tensor `name` converted to `dtype`. */
  readAs(name: string, dtype: ReadDType): Promise<Float32Array | Float16Array>;
  readAs(name: string, dtype: ReadDType): Promise<Float32Array | Float16Array> {
    return this.#file(name).readAs(name, dtype, this.#advance);
  }

  /**
   * Closes every file and ends the progress display. Idempotent.
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./safetensors.ts";
   * const ckpt = await Checkpoint.open("models/mixtral");
   * ckpt.close();
   * ```
   */
  close(): void {
    for (const f of this.files) f.close();
    this.#progress?.done();
  }

  /** Lets `using ckpt = await Checkpoint.open(p)` close it. */
  [Symbol.dispose](): void {
    this.close();
  }

  #advance = (bytes: number): void => {
    this.#progress?.advance(bytes);
  };

  #file(name: string): SafetensorsFile {
    return this.#byFile.get(this.info(name).file)!;
  }
}

// ---------------------------------------------------------------------------
// Header and index validation

interface ParsedHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

function parseHeader(path: string, bytes: Uint8Array, fileSize: number): ParsedHeader {
  const range = `bytes 8..${8 + bytes.length}`;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new SyntaxError(`${path}: header is not valid UTF-8 (${range})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(
      `${path}: header is not valid JSON (${range}): ${(e as Error).message}`,
    );
  }
  if (!isPlainObject(json)) {
    throw new SyntaxError(
      `${path}: header must be a JSON object, got ${describe(json)} (${range})`,
    );
  }
  const dataStart = 8 + bytes.length;
  const dataLen = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const spans: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!isPlainObject(entry)) {
        throw new TypeError(`${path}: __metadata__ must be an object, got ${describe(entry)}`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") {
          throw new TypeError(
            `${path}: __metadata__ field "${k}" must be a string, got ${describe(v)}`,
          );
        }
        metadata[k] = v;
      }
      continue;
    }
    const what = `${path}: tensor "${name}"`;
    if (!isPlainObject(entry)) {
      throw new TypeError(`${what}: header entry must be an object, got ${describe(entry)}`);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isSafeDType(dtype)) {
      throw new TypeError(
        `${what}: unknown dtype ${JSON.stringify(dtype) ?? "(missing)"} (supported: ${SUPPORTED})`,
      );
    }
    if (!Array.isArray(shape)) {
      throw new TypeError(`${what}: shape must be an array, got ${describe(shape)}`);
    }
    let numel = 1;
    shape.forEach((d: unknown, i: number) => {
      if (typeof d !== "number") {
        throw new TypeError(`${what}: shape[${i}] must be a number, got ${describe(d)}`);
      }
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new RangeError(`${what}: shape[${i}] is ${d}, not a non-negative integer`);
      }
      numel *= d;
    });
    if (!Array.isArray(offsets) || offsets.length !== 2) {
      throw new TypeError(
        `${what}: data_offsets must be [begin, end], got ${describe(offsets)}`,
      );
    }
    const [begin, end] = offsets as unknown[];
    for (const [field, v] of [["begin", begin], ["end", end]] as const) {
      if (typeof v !== "number") {
        throw new TypeError(`${what}: data_offsets ${field} must be a number, got ${describe(v)}`);
      }
      if (!Number.isSafeInteger(v) || v < 0) {
        throw new RangeError(
          `${what}: data_offsets ${field} is ${v}, not a non-negative integer below 2^53`,
        );
      }
    }
    const b = begin as number;
    const e = end as number;
    if (b > e) throw new RangeError(`${what}: data_offsets [${b}, ${e}] has begin > end`);
    const want = numel * DTYPE_SIZE[dtype];
    if (want !== e - b) {
      throw new RangeError(
        `${what}: ${dtype} [${shape.join(", ")}] needs ${want} bytes but data_offsets ` +
          `[${b}, ${e}) span ${e - b}`,
      );
    }
    if (e > dataLen) {
      throw new RangeError(
        `${what}: span [${b}, ${e}) ends past the end of the data (${dataLen} bytes; ` +
          `file bytes ${dataStart + b}..${dataStart + e} of ${fileSize}) — truncated file?`,
      );
    }
    tensors.set(name, {
      name,
      dtype,
      shape: Object.freeze(shape.slice() as number[]),
      file: path,
      offset: dataStart + b,
      byteLength: e - b,
    });
    if (e > b) spans.push({ name, begin: b, end: e });
  }
  spans.sort((x, y) => x.begin - y.begin || x.end - y.end);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1];
    const cur = spans[i];
    if (cur.begin < prev.end) {
      throw new RangeError(
        `${path}: tensor "${cur.name}" span [${cur.begin}, ${cur.end}) overlaps tensor ` +
          `"${prev.name}" span [${prev.begin}, ${prev.end}) (data offsets)`,
      );
    }
  }
  return { tensors, metadata };
}

/** Parses an index file into tensor → shard file name, in weight_map order. */
function parseIndex(path: string, bytes: Uint8Array): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new SyntaxError(
      `${path}: index is not valid UTF-8 JSON (bytes 0..${bytes.length}): ${(e as Error).message}`,
    );
  }
  if (!isPlainObject(json)) {
    throw new SyntaxError(`${path}: index must be a JSON object, got ${describe(json)}`);
  }
  const wm = json.weight_map;
  if (!isPlainObject(wm)) {
    throw new SyntaxError(
      `${path}: index field "weight_map" must be an object, got ${describe(wm)}`,
    );
  }
  const out = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(wm)) {
    if (typeof shard !== "string") {
      throw new TypeError(
        `${path}: weight_map["${tensor}"] must be a file name, got ${describe(shard)}`,
      );
    }
    // Shards sit beside the index; a path out of the folder is a malformed (or hostile) index.
    if (shard === "" || shard.startsWith("/") || shard.split(/[\\/]/).includes("..")) {
      throw new RangeError(
        `${path}: weight_map["${tensor}"] = "${shard}" is not a file name inside the folder`,
      );
    }
    out.set(tensor, shard);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Conversion

/**
 * Converts a tensor's raw little-endian bytes from `from` to f32 or f16. F32 to
 * f32 and F16 to f16 reuse `raw`'s memory when it is aligned; BF16 → f32 is exact
 * (a 16-bit shift); to f16 rounds to nearest even. Integers convert to the
 * nearest float; BOOL throws a `TypeError`.
 *
 * @example
 * ```ts
 * import { convertTensor } from "./safetensors.ts";
 * const raw = new Uint8Array(new Float32Array([1.5, -2]).buffer);
 * convertTensor(raw, "F32", "f16"); // Float16Array [1.5, -2]
 * ```
 */
export function convertTensor(
  raw: Uint8Array,
  from: SafeDType,
  to: ReadDType,
  what = "tensor",
): Float32Array | Float16Array {
  const size = DTYPE_SIZE[from];
  if (raw.byteLength % size !== 0) {
    throw new RangeError(`${what}: ${raw.byteLength} bytes is not a whole number of ${from}`);
  }
  const n = raw.byteLength / size;
  if (from === "F32" && to === "f32") return view(raw, Float32Array, n);
  if (from === "F16" && to === "f16") return view(raw, Float16Array, n);
  let f32: Float32Array | Float64Array | Float16Array;
  switch (from) {
    case "F32":
      f32 = view(raw, Float32Array, n);
      break;
    case "F16":
      f32 = view(raw, Float16Array, n);
      break;
    case "BF16":
      f32 = bf16ToF32(view(raw, Uint16Array, n));
      break;
    case "F64":
      f32 = view(raw, Float64Array, n);
      break;
    case "F8_E4M3":
    case "F8_E5M2":
    case "F8_E8M0": {
      const table = f8Table(from);
      f32 = new Float32Array(n);
      for (let i = 0; i < n; i++) f32[i] = table[raw[i]];
      break;
    }
    case "BOOL":
      throw new TypeError(`${what}: is BOOL, which cannot be read as ${to}; use readRaw()`);
    default: {
      const ints = intView(raw, from, n);
      const out = to === "f32" ? new Float32Array(n) : new Float16Array(n);
      // 64-bit ints are BigInt elements: Number() them (exact up to 2^53).
      for (let i = 0; i < n; i++) out[i] = Number(ints[i]);
      return out;
    }
  }
  if (to === "f32") return f32 instanceof Float32Array ? f32 : Float32Array.from(f32);
  // Float16Array's constructor rounds each value to nearest even.
  return new Float16Array(f32);
}

/**
 * Widens bfloat16 bit patterns to f32 exactly (bf16 is the top half of an f32).
 *
 * @example
 * ```ts
 * import { bf16ToF32 } from "./safetensors.ts";
 * bf16ToF32(new Uint16Array([0x3fc0]))[0]; // 1.5
 * ```
 */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/**
 * Rounds f32 values to bfloat16 bit patterns (nearest, ties to even; NaN stays NaN).
 *
 * @example
 * ```ts
 * import { f32ToBf16 } from "./safetensors.ts";
 * f32ToBf16(new Float32Array([1.5]))[0]; // 0x3fc0
 * ```
 */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const u = bits[i];
    if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) {
      out[i] = (u >>> 16) | 0x40; // keep NaN a quiet NaN whatever the low bits were
    } else {
      out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/**
 * Converts f32 values to f16, rounding to nearest even (overflow → ±Infinity).
 *
 * @example
 * ```ts
 * import { f32ToF16 } from "./safetensors.ts";
 * f32ToF16(new Float32Array([0.1]))[0]; // 0.0999755859375
 * ```
 */
export function f32ToF16(values: Float32Array): Float16Array {
  return new Float16Array(values);
}

/**
 * Widens f16 values to f32 (exact).
 *
 * @example
 * ```ts
 * import { f16ToF32 } from "./safetensors.ts";
 * f16ToF32(new Float16Array([0.5]))[0]; // 0.5
 * ```
 */
export function f16ToF32(values: Float16Array): Float32Array {
  return new Float32Array(values);
}

type IntArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigInt64Array
  | BigUint64Array;

function intView(raw: Uint8Array, dtype: SafeDType, n: number): IntArray {
  switch (dtype) {
    case "U8":
      return raw;
    case "I8":
      return view(raw, Int8Array, n);
    case "U16":
      return view(raw, Uint16Array, n);
    case "I16":
      return view(raw, Int16Array, n);
    case "U32":
      return view(raw, Uint32Array, n);
    case "I32":
      return view(raw, Int32Array, n);
    case "U64":
      return view(raw, BigUint64Array, n);
    case "I64":
      return view(raw, BigInt64Array, n);
    default:
      throw new TypeError(`dtype ${dtype} is not an integer type`);
  }
}

interface TypedCtor<T> {
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  new (length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** A typed view of `raw`, copying only when its offset is misaligned for `C`. */
function view<T>(raw: Uint8Array, C: TypedCtor<T>, n: number): T {
  // Safetensors data is little-endian; Deno only runs on little-endian hosts.
  if (raw.byteOffset % C.BYTES_PER_ELEMENT === 0 && raw.buffer instanceof ArrayBuffer) {
    return new C(raw.buffer, raw.byteOffset, n);
  }
  const copy = new Uint8Array(n * C.BYTES_PER_ELEMENT);
  copy.set(raw.subarray(0, copy.length));
  return new C(copy.buffer, 0, n);
}

const F8_TABLES = new Map<SafeDType, Float32Array>();

/** Value of each of the 256 bytes of an 8-bit float format. */
function f8Table(dtype: "F8_E4M3" | "F8_E5M2" | "F8_E8M0"): Float32Array {
  let t = F8_TABLES.get(dtype);
  if (t) return t;
  t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    if (dtype === "F8_E8M0") {
      // Exponent only (MX scale): 2^(b-127), 0xff is NaN.
      t[b] = b === 0xff ? NaN : 2 ** (b - 127);
      continue;
    }
    const sign = b & 0x80 ? -1 : 1;
    const [eBits, mBits, bias] = dtype === "F8_E4M3" ? [4, 3, 7] : [5, 2, 15];
    const e = (b >> mBits) & ((1 << eBits) - 1);
    const m = b & ((1 << mBits) - 1);
    const eMax = (1 << eBits) - 1;
    let v: number;
    if (dtype === "F8_E4M3" && e === eMax && m === 7) v = NaN; // E4M3FN: no infinities
    else if (dtype === "F8_E5M2" && e === eMax) v = m === 0 ? Infinity : NaN;
    else if (e === 0) v = (m / (1 << mBits)) * 2 ** (1 - bias);
    else v = (1 + m / (1 << mBits)) * 2 ** (e - bias);
    t[b] = sign * v;
  }
  F8_TABLES.set(dtype, t);
  return t;
}

// ---------------------------------------------------------------------------
// I/O helpers

/** Fills `dst` from `file` at `offset`, in chunks; a short file is a RangeError naming the byte. */
async function readFully(
  file: Deno.FsFile,
  path: string,
  offset: number,
  dst: Uint8Array,
  what: string,
  onBytes?: (bytes: number) => void,
): Promise<void> {
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < dst.length) {
    const n = await file.read(dst.subarray(done, Math.min(done + CHUNK_BYTES, dst.length)));
    if (n === null || n === 0) {
      throw new RangeError(
        `${path}: file ends at byte ${offset + done} while reading ${what} ` +
          `(bytes ${offset}..${offset + dst.length}); was it truncated?`,
      );
    }
    done += n;
    onBytes?.(n);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing (missing)";
  if (v === null) return "null";
  if (Array.isArray(v)) return `array ${JSON.stringify(v).slice(0, 60)}`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${JSON.stringify(v).slice(0, 60)}`;
}
