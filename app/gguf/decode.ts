/**
 * The GGUF header's byte-level reads: a cursor over the header bytes read so far
 * that decodes GGUF's little-endian scalars, strings and (nested) arrays, and
 * checks every length against the file's size before it allocates anything.
 *
 * The header's size is not known until it has been parsed, so the file is read
 * in chunks: when a read runs past the bytes held (but not past the file), the
 * cursor throws {@linkcode NeedMore}, and the parser retries the entry it was in
 * once more bytes have been pushed.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import { GGUF_VALUE_TYPES, type GgufArray, type GgufValue, type GgufValueType } from "./value.ts";

/**
 * Largest header (metadata and tensor infos) read: real ones are a few MB up to
 * a few tens of MB (a 256k-token vocabulary); this stops a hostile length in a
 * genuinely huge file from allocating GBs.
 *
 * @example
 * ```ts
 * import { MAX_GGUF_HEADER_BYTES } from "./decode.ts";
 * MAX_GGUF_HEADER_BYTES; // 268435456 (256 MiB)
 * ```
 */
export const MAX_GGUF_HEADER_BYTES = 256 * 1024 * 1024;

/**
 * Deepest nesting of arrays read or written: a hostile file of 12-byte array
 * headers could otherwise recurse millions of levels and overflow the stack.
 *
 * @example
 * ```ts
 * import { MAX_ARRAY_DEPTH } from "./decode.ts";
 * MAX_ARRAY_DEPTH; // 64
 * ```
 */
export const MAX_ARRAY_DEPTH = 64;

/**
 * What a message says a read was for; a function when building the text for
 * every element of a 150k-entry array would cost more than the read.
 *
 * @example
 * ```ts
 * import { label, type Label } from "./decode.ts";
 * const l: Label = () => `metadata "tokenizer.ggml.tokens"[${7}]`;
 * label(l); // 'metadata "tokenizer.ggml.tokens"[7]'
 * ```
 */
export type Label = string | (() => string);

/**
 * The text of a {@linkcode Label}.
 *
 * @example
 * ```ts
 * import { label } from "./decode.ts";
 * label("the magic"); // "the magic"
 * ```
 */
export function label(l: Label): string {
  return typeof l === "string" ? l : l();
}

/**
 * Thrown by {@linkcode GgufCursor} when the bytes held end before `end` and the
 * file goes on: the caller reads more and retries (it is not an error).
 *
 * @example
 * ```ts
 * import { NeedMore } from "./decode.ts";
 * new NeedMore(4096).end; // 4096
 * ```
 */
export class NeedMore {
  /** The file offset up to which bytes are needed. */
  readonly end: number;
  /** A signal that bytes up to `end` are needed. */
  constructor(end: number) {
    this.end = end;
  }
}

/**
 * Bytes each value type takes, at least (strings and arrays: their length and
 * headers). Used to refuse a count the rest of the file cannot hold.
 *
 * @example
 * ```ts
 * import { MIN_VALUE_BYTES } from "./decode.ts";
 * MIN_VALUE_BYTES.string; // 8 (a u64 length)
 * ```
 */
export const MIN_VALUE_BYTES: { readonly [T in GgufValueType]: number } = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  bool: 1,
  string: 8,
  array: 12,
  u64: 8,
  i64: 8,
  f64: 8,
};

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// Values are text for people (vocabularies, licences): a stray byte becomes U+FFFD
// rather than making the whole file unreadable. Keys and names must be exact.
const lenientUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * A read position over a GGUF file's first bytes: little-endian decoding with
 * every length checked against the file size (a `RangeError` naming the file,
 * the field and the byte) before anything is allocated.
 *
 * @example
 * ```ts
 * import { GgufCursor } from "./decode.ts";
 * const c = new GgufCursor("m.gguf", 4);
 * c.push(new Uint8Array([7, 0, 0, 0]));
 * c.u32("a count"); // 7
 * ```
 */
export class GgufCursor {
  /** The file's path, for messages. */
  readonly path: string;
  /** The file's size: no read may run past it. */
  readonly fileSize: number;
  /** Offset of the next read. */
  pos = 0;
  #buf = new Uint8Array(0);
  #view = new DataView(this.#buf.buffer);
  #held = 0;

  /** A cursor at byte 0 of a file of `fileSize` bytes, holding none yet. */
  constructor(path: string, fileSize: number) {
    this.path = path;
    this.fileSize = fileSize;
  }

  /** How many of the file's first bytes are held. */
  get held(): number {
    return this.#held;
  }

  /** Appends the file's next bytes (from offset `held`). */
  push(chunk: Uint8Array): void {
    const need = this.#held + chunk.length;
    if (need > this.#buf.length) {
      // Doubling keeps the copying linear in the header's size.
      const grown = new Uint8Array(Math.max(need, this.#buf.length * 2));
      grown.set(this.#buf.subarray(0, this.#held));
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.#buf.set(chunk, this.#held);
    this.#held = need;
  }

  /** The held bytes `start..end` (a view). */
  bytes(start: number, end: number): Uint8Array {
    return this.#buf.subarray(start, end);
  }

  /** Claims the next `n` bytes and returns where they start. */
  take(n: number, what: Label): number {
    const at = this.pos;
    const end = at + n;
    if (end > this.fileSize) {
      throw new RangeError(
        `${this.path}: file ends at byte ${this.fileSize} inside ${label(what)} ` +
          `(bytes ${at}..${end}); was it truncated?`,
      );
    }
    if (end > MAX_GGUF_HEADER_BYTES) {
      throw new RangeError(
        `${this.path}: ${label(what)} (bytes ${at}..${end}) lies past the ` +
          `${MAX_GGUF_HEADER_BYTES}-byte limit on a GGUF header`,
      );
    }
    if (end > this.#held) throw new NeedMore(end);
    this.pos = end;
    return at;
  }

  /** A u8. */
  u8(what: Label): number {
    return this.#view.getUint8(this.take(1, what));
  }

  /** A little-endian u32. */
  u32(what: Label): number {
    return this.#view.getUint32(this.take(4, what), true);
  }

  /** A little-endian u64. */
  u64(what: Label): bigint {
    return this.#view.getBigUint64(this.take(8, what), true);
  }

  /** A little-endian i64. */
  i64(what: Label): bigint {
    return this.#view.getBigInt64(this.take(8, what), true);
  }

  /**
   * A count of `count` items of at least `each` bytes that the rest of the file
   * must be able to hold, as a number.
   */
  checkCount(count: bigint, each: number, at: number, what: Label): number {
    const left = this.fileSize - this.pos;
    if (count * BigInt(each) > BigInt(left)) {
      const needs = each === 1 ? `${count} bytes` : `at least ${count} × ${each} bytes`;
      throw new RangeError(
        `${this.path}: ${label(what)} is ${count} (byte ${at}), which needs ${needs}, past the ` +
          `end of the file (${left} bytes left after byte ${this.pos}); was it truncated?`,
      );
    }
    return Number(count);
  }

  /**
   * A GGUF string (u64 length, UTF-8 bytes). `exact` refuses bytes that are not
   * UTF-8 (a `SyntaxError`); otherwise they decode to U+FFFD.
   */
  string(what: Label, exact: boolean): string {
    const at = this.pos;
    const n = this.checkCount(this.u64(what), 1, at, () => `the length of ${label(what)}`);
    const start = this.take(n, what);
    const bytes = this.#buf.subarray(start, start + n);
    if (!exact) return lenientUtf8.decode(bytes);
    try {
      return strictUtf8.decode(bytes);
    } catch {
      throw new SyntaxError(
        `${this.path}: ${label(what)} (bytes ${start}..${start + n}) is not valid UTF-8`,
      );
    }
  }

  /** A value type id (u32), which must name one of GGUF's 13 types. */
  valueType(what: Label): GgufValueType {
    const at = this.pos;
    const id = this.u32(what);
    const type = GGUF_VALUE_TYPES[id];
    if (type === undefined) {
      throw new SyntaxError(
        `${this.path}: ${label(what)} is ${id} (byte ${at}), expected a GGUF value type ` +
          `0..${GGUF_VALUE_TYPES.length - 1}`,
      );
    }
    return type;
  }

  /** One value of `type`; `depth` counts the arrays it is inside. */
  value(type: GgufValueType, what: Label, depth = 0): GgufValue {
    const v = this.#view;
    switch (type) {
      case "u8":
        return v.getUint8(this.take(1, what));
      case "i8":
        return v.getInt8(this.take(1, what));
      case "u16":
        return v.getUint16(this.take(2, what), true);
      case "i16":
        return v.getInt16(this.take(2, what), true);
      case "u32":
        return v.getUint32(this.take(4, what), true);
      case "i32":
        return v.getInt32(this.take(4, what), true);
      case "f32":
        return v.getFloat32(this.take(4, what), true);
      case "u64":
        return v.getBigUint64(this.take(8, what), true);
      case "i64":
        return v.getBigInt64(this.take(8, what), true);
      case "f64":
        return v.getFloat64(this.take(8, what), true);
      case "bool": {
        const at = this.take(1, what);
        const b = v.getUint8(at);
        // Any other byte means the reader and writer disagree about the layout.
        if (b > 1) {
          throw new SyntaxError(
            `${this.path}: ${label(what)} is a bool stored as ${b} (byte ${at}), expected 0 or 1`,
          );
        }
        return b === 1;
      }
      case "string":
        return this.string(what, false);
      case "array":
        return this.array(what, depth);
    }
  }

  /**
   * Moves past one value of `type` reading only its lengths, so that a value
   * larger than the bytes held asks for all of them at once (NeedMore) before
   * it is decoded, rather than being decoded again after every read.
   */
  skip(type: GgufValueType, what: Label, depth = 0): void {
    if (type === "string") {
      const at = this.pos;
      this.take(this.checkCount(this.u64(what), 1, at, () => `the length of ${label(what)}`), what);
      return;
    }
    if (type !== "array") {
      this.take(MIN_VALUE_BYTES[type], what);
      return;
    }
    // Too deep, or a bad element type: decoding says so, with the same message.
    if (depth >= MAX_ARRAY_DEPTH) return;
    const elem = GGUF_VALUE_TYPES[this.u32(() => `the element type of ${label(what)}`)];
    if (elem === undefined) return;
    const at = this.pos;
    const size = MIN_VALUE_BYTES[elem];
    const n = this.checkCount(
      this.u64(() => `the length of ${label(what)}`),
      size,
      at,
      () => `the length of ${label(what)} (an array of ${elem})`,
    );
    if (elem !== "string" && elem !== "array") {
      this.take(n * size, what);
      return;
    }
    for (let i = 0; i < n; i++) this.skip(elem, () => `${label(what)}[${i}]`, depth + 1);
  }

  /** An array: element type (u32), count (u64), elements. */
  array(what: Label, depth: number): GgufArray {
    if (depth >= MAX_ARRAY_DEPTH) {
      throw new SyntaxError(
        `${this.path}: ${label(what)} nests arrays deeper than ${MAX_ARRAY_DEPTH} levels ` +
          `(byte ${this.pos})`,
      );
    }
    const type = this.valueType(() => `the element type of ${label(what)}`);
    const at = this.pos;
    const size = MIN_VALUE_BYTES[type];
    const n = this.checkCount(
      this.u64(() => `the length of ${label(what)}`),
      size,
      at,
      () => `the length of ${label(what)} (an array of ${type})`,
    );
    const values: GgufValue[] = new Array(n);
    if (type === "string" || type === "array") {
      for (let i = 0; i < n; i++) {
        values[i] = this.value(type, () => `${label(what)}[${i}]`, depth + 1);
      }
      return { type, values };
    }
    // Fixed-size elements: one bounds check for the whole array, then plain reads.
    const start = this.take(n * size, what);
    const end = this.pos;
    for (let i = 0; i < n; i++) {
      this.pos = start + i * size;
      values[i] = this.value(type, () => `${label(what)}[${i}]`);
    }
    this.pos = end;
    return { type, values };
  }
}

/**
 * A metadata key for messages: `metadata "general.name"`.
 *
 * @example
 * ```ts
 * import { metadataLabel } from "./decode.ts";
 * metadataLabel("general.alignment"); // 'metadata "general.alignment"'
 * ```
 */
export function metadataLabel(key: string): string {
  return `metadata ${quote(key)}`;
}
