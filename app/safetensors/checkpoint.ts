/**
 * A model's weights as one object: a single `model.safetensors`, or a sharded
 * checkpoint (`model.safetensors.index.json` and the shard files it names),
 * with reads by tensor name and a progress display.
 *
 * @module
 */

import { join } from "node:path";
import { fileError } from "../fs_errors.ts";
import type { Progress } from "../progress.ts";
import type { ReadDType } from "./dtypes.ts";
import { SafetensorsFile } from "./file.ts";
import { parseIndex, quote, type TensorInfo } from "./header.ts";

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

/**
 * The index file name Hugging Face uses for sharded checkpoints.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { INDEX_FILE } from "./checkpoint.ts";
 * join("models/mixtral", INDEX_FILE); // "models/mixtral/model.safetensors.index.json"
 * ```
 */
export const INDEX_FILE = "model.safetensors.index.json";

/**
 * The file name Hugging Face uses for unsharded checkpoints.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { SINGLE_FILE } from "./checkpoint.ts";
 * join("models/mamba", SINGLE_FILE); // "models/mamba/model.safetensors"
 * ```
 */
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
   * import { Checkpoint } from "./checkpoint.ts";
   * import { createProgress } from "../progress.ts";
   * const ckpt = await Checkpoint.open("models/mixtral", {
   *   progress: (total) => createProgress({ total, label: "mixtral" }),
   * });
   * ```
   */
  static async open(path: string, options: CheckpointOptions = {}): Promise<Checkpoint> {
    let stat: Deno.FileInfo;
    try {
      stat = await Deno.stat(path);
    } catch (e) {
      throw fileError(e, path, "a model folder or a safetensors file");
    }
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
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(indexPath);
    } catch (e) {
      throw fileError(e, indexPath, "the checkpoint's index");
    }
    const weightMap = parseIndex(indexPath, bytes);
    const dir = join(indexPath, "..");
    // Shards by path (`a.safetensors` and `./a.safetensors` are one file, opened once),
    // each with its name in the index and a tensor it should hold, for messages.
    const shards = new Map<string, { shard: string; tensor: string }>();
    for (const [tensor, shard] of weightMap) {
      const p = join(dir, shard);
      if (!shards.has(p)) shards.set(p, { shard, tensor });
    }
    const opened = await Promise.allSettled(
      [...shards].map(async ([p, { shard, tensor }]) => {
        try {
          return await SafetensorsFile.open(p);
        } catch (e) {
          if (e instanceof Deno.errors.NotFound) {
            throw new Deno.errors.NotFound(
              `${indexPath}: shard ${quote(shard)} (which should hold tensor ${quote(tensor)}) ` +
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
    const fail = (e: Error): never => {
      for (const g of files) g.close();
      throw e;
    };
    // A tensor stored in two shards is ambiguous: which copy is the model depends
    // on who reads it (transformers loads every shard and keeps the last).
    const holder = new Map<string, SafetensorsFile>();
    for (const f of files) {
      for (const name of f.tensors.keys()) {
        const other = holder.get(name);
        if (other) {
          fail(
            new RangeError(
              `${indexPath}: tensor ${quote(name)} is in two shards, ` +
                `${quote(other.path)} and ${quote(f.path)}`,
            ),
          );
        }
        holder.set(name, f);
      }
    }
    const byPath = new Map([...shards.keys()].map((p, i) => [p, files[i]]));
    const tensors = new Map<string, TensorInfo>();
    for (const [name, shard] of weightMap) {
      const f = byPath.get(join(dir, shard))!;
      const t = f.tensors.get(name);
      if (!t) {
        fail(
          new RangeError(
            `${indexPath}: weight_map puts tensor ${quote(name)} in ${quote(shard)}, ` +
              `but that shard has no such tensor (it has ${f.tensors.size})`,
          ),
        );
      }
      tensors.set(name, t!);
    }
    return new Checkpoint(join(indexPath, ".."), files, tensors, options);
  }

  /**
   * Whether the checkpoint has a tensor `name`.
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./checkpoint.ts";
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
   * import { Checkpoint } from "./checkpoint.ts";
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
   * import { Checkpoint } from "./checkpoint.ts";
   * const ckpt = await Checkpoint.open("models/mixtral");
   * const bytes = await ckpt.readRaw("model.norm.weight");
   * ```
   */
  readRaw(name: string, into?: Uint8Array): Promise<Uint8Array> {
    return this.#file(name).read(name, into, this.#advance);
  }

  /**
   * Reads bytes `[start, start + length)` of tensor `name` as stored (a part of
   * a fused tensor), into `into` when given.
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./checkpoint.ts";
   * const ckpt = await Checkpoint.open("models/granite");
   * const gate = await ckpt.readRange("model.layers.0.shared_mlp.input_linear.weight", 0, 1024);
   * ```
   */
  readRange(name: string, start: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.#file(name).readRange(name, start, length, into, this.#advance);
  }

  /**
   * Reads tensor `name` as f32 (exact for F32, F16, BF16 and F8; ints convert).
   *
   * @example
   * ```ts
   * import { Checkpoint } from "./checkpoint.ts";
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
   * import { Checkpoint } from "./checkpoint.ts";
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
   * import { Checkpoint } from "./checkpoint.ts";
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

/** Whether `path` exists (a missing path is an answer, not an error). */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
