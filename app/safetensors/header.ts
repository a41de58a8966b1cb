/**
 * Validation of a safetensors header and of a sharded checkpoint's index: every
 * size, offset, dtype and field is checked before any weight is read, and each
 * error names the file, the tensor and the field or byte range involved.
 *
 * @module
 */

import { dtypeSize, isSafeDType, SAFE_DTYPES, type SafeDType } from "./dtypes.ts";
import { type DuplicateKey, findDuplicateKey } from "./json_keys.ts";

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
const utf8 = new TextEncoder();

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
  // JSON.parse keeps the last copy of a repeated key: a tensor named twice would
  // silently load its second copy, so repetition is refused.
  const dup = findDuplicateKey(text);
  if (dup) throw new SyntaxError(`${path}: ${headerDuplicate(dup)} (${range})`);
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
    const what = `${path}: tensor ${quote(name)}`;
    if (!isPlainObject(entry)) {
      throw new TypeError(`${what}: header entry must be an object, got ${describe(entry)}`);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isSafeDType(dtype)) {
      throw new TypeError(
        `${what}: unknown dtype ${
          dtype === undefined
            ? "(missing)"
            : typeof dtype === "string"
            ? quote(dtype)
            : describe(dtype)
        } (supported: ${SUPPORTED})`,
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
      // Checked at every step, as safetensors does: a later 0 must not hide an
      // overflow (the product would be NaN or a rounded, wrong count).
      if (numel > Number.MAX_SAFE_INTEGER) {
        throw new RangeError(
          `${what}: shape ${
            showShape(shape)
          } has more than 2^53 elements (overflow at shape[${i}])`,
        );
      }
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
        `${what}: ${dtype} ${showShape(shape)} needs ${want} bytes but data_offsets ` +
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
        `${path}: tensor ${quote(cur.name)} span [${cur.begin}, ${cur.end}) overlaps tensor ` +
          `${quote(prev.name)} span [${prev.begin}, ${prev.end}) (data offsets)`,
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
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(
      `${path}: index is not valid UTF-8 JSON (bytes 0..${bytes.length}): ${(e as Error).message}`,
    );
  }
  if (!isPlainObject(json)) {
    throw new SyntaxError(`${path}: index must be a JSON object, got ${describe(json)}`);
  }
  // As in a header: JSON.parse would keep only the last of two entries for one tensor.
  const dup = findDuplicateKey(text);
  if (dup) {
    throw new SyntaxError(
      dup.path.length === 1 && dup.path[0] === "weight_map"
        ? `${path}: tensor ${quote(dup.key)} appears twice in weight_map`
        : `${path}: key ${quote(dup.key)} appears twice in the index${at(dup.path)}`,
    );
  }
  const wm = json.weight_map;
  if (!isPlainObject(wm)) {
    throw new SyntaxError(
      `${path}: index field "weight_map" must be an object, got ${describe(wm)}`,
    );
  }
  const out = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(wm)) {
    const entry = `${path}: weight_map[${quote(tensor)}]`;
    if (typeof shard !== "string") {
      throw new TypeError(`${entry} must be a file name, got ${describe(shard)}`);
    }
    // Shards sit beside the index; a path out of the folder is a malformed (or hostile) index.
    const parts = shard.split(/[\\/]/);
    if (shard === "" || shard.startsWith("/") || parts.includes("..")) {
      throw new RangeError(`${entry} = ${quote(shard)} is not a file name inside the folder`);
    }
    // What no file system can open: refused here, with the index named, not by the OS.
    if (shard.includes("\0") || parts.some((p) => utf8.encode(p).length > 255)) {
      throw new RangeError(
        `${entry} = ${
          quote(shard)
        } is not a valid file name (a NUL byte, or a part over 255 bytes)`,
      );
    }
    out.set(tensor, shard);
  }
  return out;
}

/** The message for a key repeated in a safetensors header. */
function headerDuplicate({ path, key }: DuplicateKey): string {
  if (path.length === 0) {
    return key === "__metadata__"
      ? "__metadata__ appears twice in the header"
      : `tensor ${quote(key)} appears twice in the header`;
  }
  const owner = path[0] === "__metadata__" ? "__metadata__" : `tensor ${quote(path[0])}`;
  if (path.length === 1) return `${owner}: field ${quote(key)} appears twice in the header`;
  return `${owner}: key ${quote(key)} appears twice in the header${at(path.slice(1))}`;
}

/** ` (in a.b.c)` for a path of keys, or nothing for the top level. */
function at(path: readonly string[]): string {
  return path.length ? ` (in ${path.map((p) => p.slice(0, 40)).join(".")})` : "";
}

/**
 * A tensor or file name in quotes for messages, cut at 200 characters: a
 * hostile header or index must not make huge messages.
 *
 * @example
 * ```ts
 * import { quote } from "./header.ts";
 * quote("lm_head.weight"); // "\"lm_head.weight\""
 * quote("x".repeat(1000)).length; // 221
 * ```
 */
export function quote(name: string): string {
  return name.length <= 200 ? `"${name}"` : `"${name.slice(0, 200)}…" (${name.length} characters)`;
}

/** A shape for messages, at most 8 dimensions shown. */
function showShape(shape: readonly unknown[]): string {
  const shown = shape.slice(0, 8).join(", ");
  return shape.length <= 8 ? `[${shown}]` : `[${shown}, … ${shape.length} dimensions]`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A value's kind for messages, never more than ~70 characters whatever its size. */
function describe(v: unknown): string {
  if (v === undefined) return "nothing (missing)";
  if (v === null) return "null";
  if (Array.isArray(v)) {
    // Show the first few elements only: the whole array may be huge or deeply nested.
    const head = v.slice(0, 8).map((x) => (x !== null && typeof x === "object" ? "…" : x));
    const text = JSON.stringify(head).slice(0, 60);
    return `array ${v.length <= 8 ? text : `${text.slice(0, -1)}, … ${v.length} elements]`}`;
  }
  if (typeof v === "object") return "an object";
  if (typeof v === "string") return `string ${quote(v.slice(0, 60))}`;
  return `${typeof v} ${String(v)}`;
}
