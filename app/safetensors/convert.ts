/**
 * Conversion of a tensor's stored bytes to the f32 or f16 Kiln computes in:
 * every float and integer safetensors dtype, with the exact and the rounding
 * cases spelled out.
 *
 * @module
 */

import { dtypeSize, type ReadDType, type SafeDType } from "./dtypes.ts";

/**
 * Converts a tensor's raw little-endian bytes from `from` to f32 or f16. F32 to
 * f32 and F16 to f16 reuse `raw`'s memory when it is aligned; BF16 → f32 is exact
 * (a 16-bit shift); to f16 rounds to nearest even. Integers convert to the
 * nearest float; BOOL throws a `TypeError`.
 *
 * @example
 * ```ts
 * import { convertTensor } from "./convert.ts";
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
  const size = dtypeSize(from);
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
 * import { bf16ToF32 } from "./convert.ts";
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
 * import { f32ToBf16 } from "./convert.ts";
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
 * import { f32ToF16 } from "./convert.ts";
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
 * import { f16ToF32 } from "./convert.ts";
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
