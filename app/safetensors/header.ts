/**
 * Validation of a safetensors header and of a sharded checkpoint's index: every
 * size, offset, dtype and field is checked before any weight is read, and each
 * error names the file, the tensor and the field or byte range involved.
 *
 * @module
 */

import { dtypeSize, isSafeDType, SAFE_DTYPES, type SafeDType } from "./dtypes.ts";

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
 * Largest header accepted: real ones are a few MB; this stops a bad length from
 * allocating GBs.
 *
 * @example
 * ```ts
 * import { MAX_HEADER_BYTES } from "./header.ts";
 * MAX_HEADER_BYTES; // 104857600 (100 MiB)
 * ```
 */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const SUPPORTED = SAFE_DTYPES.join(", ");

/**
 * A validated header: its tensors in header order and its `__metadata__`.
 *
 * @example
 * ```ts
 * import { type ParsedHeader, parseHeader } from "./header.ts";
 * const json = JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
 * const bytes = new TextEncoder().encode(json);
 * const header: ParsedHeader = parseHeader("m.safetensors", bytes, 8 + bytes.length + 8);
 * header.tensors.get("w")!.offset; // 8 + bytes.length
 * ```
 */
export interface ParsedHeader {
  /** Tensors by name, in header order. */
  tensors: Map<string, TensorInfo>;
  /** The `__metadata__` entries, or `{}`. */
  metadata: Record<string, string>;
}

/**
 * Parses and validates the JSON header of a file of `fileSize` bytes (`bytes`
 * are file bytes 8..8+n): a `SyntaxError` for bytes that are not a UTF-8 JSON
 * object, a `TypeError` for a field of the wrong type or an unknown dtype, a
 * `RangeError` for sizes and spans that do not fit the data or overlap.
 *
 * @example
 * ```ts
 * import { parseHeader } from "./header.ts";
 * const bytes = new TextEncoder().encode(`{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}}`);
 * parseHeader("m.safetensors", bytes, 8 + bytes.length + 6).tensors.get("w")!.byteLength; // 6
 * ```
 */
export function parseHeader(path: string, bytes: Uint8Array, fileSize: number): ParsedHeader {
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
    const want = numel * dtypeSize(dtype);
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

/**
 * Parses an index file into tensor → shard file name, in weight_map order. A
 * shard name that leaves the folder is a `RangeError`.
 *
 * @example
 * ```ts
 * import { parseIndex } from "./header.ts";
 * const json = `{"weight_map":{"a":"model-00001-of-00002.safetensors"}}`;
 * parseIndex("model.safetensors.index.json", new TextEncoder().encode(json)).get("a");
 * // "model-00001-of-00002.safetensors"
 * ```
 */
export function parseIndex(path: string, bytes: Uint8Array): Map<string, string> {
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
