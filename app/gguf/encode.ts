/**
 * GGUF metadata values checked against their stated types and encoded
 * little-endian, into a growable buffer the writer lays the header out in.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import { type Label, label, MAX_ARRAY_DEPTH } from "./decode.ts";
import { GGUF_VALUE_TYPES, type GgufArray, type GgufValueType } from "./value.ts";

/**
 * A growable little-endian byte buffer.
 *
 * @example
 * ```ts
 * import { ByteSink } from "./encode.ts";
 * const s = new ByteSink();
 * s.string("GGUF");
 * s.finish(8).length; // 16: a u64 length, 4 bytes, padding
 * ```
 */
export class ByteSink {
  #buf = new Uint8Array(4096);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #room(n: number): number {
    const at = this.length;
    if (at + n > this.#buf.length) {
      const grown = new Uint8Array(Math.max(at + n, this.#buf.length * 2));
      grown.set(this.#buf.subarray(0, at));
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.length = at + n;
    return at;
  }

  // Each method claims its room before touching the buffer: claiming may replace it.
  bytes(b: Uint8Array): void {
    const at = this.#room(b.length);
    this.#buf.set(b, at);
  }
  u8(v: number): void {
    const at = this.#room(1);
    this.#view.setUint8(at, v);
  }
  i8(v: number): void {
    const at = this.#room(1);
    this.#view.setInt8(at, v);
  }
  u16(v: number): void {
    const at = this.#room(2);
    this.#view.setUint16(at, v, true);
  }
  i16(v: number): void {
    const at = this.#room(2);
    this.#view.setInt16(at, v, true);
  }
  u32(v: number): void {
    const at = this.#room(4);
    this.#view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.#room(4);
    this.#view.setInt32(at, v, true);
  }
  f32(v: number): void {
    const at = this.#room(4);
    this.#view.setFloat32(at, v, true);
  }
  f64(v: number): void {
    const at = this.#room(8);
    this.#view.setFloat64(at, v, true);
  }
  u64(v: bigint): void {
    const at = this.#room(8);
    this.#view.setBigUint64(at, v, true);
  }
  i64(v: bigint): void {
    const at = this.#room(8);
    this.#view.setBigInt64(at, v, true);
  }
  string(s: string): void {
    const b = utf8.encode(s);
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  /** The bytes written, zero-padded to a multiple of `align`. */
  finish(align: number): Uint8Array {
    this.#room((align - (this.length % align)) % align);
    return this.#buf.slice(0, this.length);
  }
}

const utf8 = new TextEncoder();

const INT_RANGE: Partial<Record<GgufValueType, readonly [number, number]>> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};
const BIG_RANGE: Partial<Record<GgufValueType, readonly [bigint, bigint]>> = {
  u64: [0n, 2n ** 64n - 1n],
  i64: [-(2n ** 63n), 2n ** 63n - 1n],
};

/**
 * A JS value's kind and a glimpse of it, for messages.
 *
 * @example
 * ```ts
 * import { describe } from "./encode.ts";
 * describe(1.5); // "number 1.5"
 * ```
 */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === "string") return `string ${quote(v.slice(0, 60))}`;
  if (Array.isArray(v)) return `a JS array of ${v.length}`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}

/**
 * Checks `value` against `type` and appends its encoding (a `TypeError` for a
 * value of the wrong kind, a `RangeError` for one out of the type's range, each
 * naming `file` and `what`).
 *
 * @example
 * ```ts
 * import { ByteSink, encodeValue } from "./encode.ts";
 * const s = new ByteSink();
 * encodeValue(s, "m.gguf", "u16", 513, 'metadata "x"', 0);
 * s.finish(1); // Uint8Array [1, 2]
 * ```
 */
export function encodeValue(
  sink: ByteSink,
  file: string,
  type: GgufValueType,
  value: unknown,
  what: Label,
  depth: number,
): void {
  const bad = (cls: typeof TypeError, expected: string) =>
    new cls(`${file}: ${label(what)} is ${describe(value)}, expected ${expected}`);
  const ints = INT_RANGE[type];
  if (ints) {
    if (typeof value !== "number") throw bad(TypeError, `a number (${type})`);
    if (!Number.isInteger(value) || value < ints[0] || value > ints[1]) {
      throw bad(RangeError, `a ${type}: an integer ${ints[0]}..${ints[1]}`);
    }
    sink[type as "u8"](value);
    return;
  }
  const bigs = BIG_RANGE[type];
  if (bigs) {
    // A safe integer number is accepted too: writing a count as u64 is common.
    if (typeof value === "number" && !Number.isSafeInteger(value)) {
      throw bad(RangeError, `a ${type}: a bigint, or an integer number below 2^53`);
    }
    if (typeof value !== "bigint" && typeof value !== "number") {
      throw bad(TypeError, `a bigint (${type})`);
    }
    const v = BigInt(value);
    if (v < bigs[0] || v > bigs[1]) throw bad(RangeError, `a ${type}: ${bigs[0]}..${bigs[1]}`);
    sink[type as "u64"](v);
    return;
  }
  switch (type) {
    case "f32":
    case "f64":
      if (typeof value !== "number") throw bad(TypeError, `a number (${type})`);
      sink[type](value);
      return;
    case "bool":
      if (typeof value !== "boolean") throw bad(TypeError, "a boolean");
      sink.u8(value ? 1 : 0);
      return;
    case "string":
      if (typeof value !== "string") throw bad(TypeError, "a string");
      sink.string(value);
      return;
    case "array": {
      const a = value as GgufArray;
      if (typeof a !== "object" || a === null || !Array.isArray(a.values)) {
        throw bad(TypeError, "a GgufArray { type, values }");
      }
      const id = GGUF_VALUE_TYPES.indexOf(a.type);
      if (id < 0) {
        throw new TypeError(
          `${file}: ${label(what)} has element type ${describe(a.type)}, expected one of ` +
            GGUF_VALUE_TYPES.join(", "),
        );
      }
      if (depth + 1 >= MAX_ARRAY_DEPTH) {
        throw new RangeError(
          `${file}: ${label(what)} nests arrays deeper than ${MAX_ARRAY_DEPTH} levels`,
        );
      }
      sink.u32(id);
      sink.u64(BigInt(a.values.length));
      a.values.forEach((v, i) =>
        encodeValue(sink, file, a.type, v, () => `${label(what)}[${i}]`, depth + 1)
      );
      return;
    }
  }
  throw new TypeError(
    `${file}: ${label(what)} has type ${describe(type)}, expected one of ` +
      GGUF_VALUE_TYPES.join(", "),
  );
}
