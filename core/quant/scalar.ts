/**
 * The scalar primitives llama.cpp's reference quantizers are built from, with
 * their exact float32 behaviour: ggml's `nearest_int`, its f16 conversions, and
 * the C casts whose out-of-range results the codecs must reproduce.
 *
 * The codecs emulate C float arithmetic by rounding every operation through
 * `Math.fround`: for `+ − × ÷ √` of float32 operands the float64 result rounded
 * once to float32 is the correctly rounded float32 result, so this matches a
 * compiler that evaluates in float32 without fusing multiply-adds (ggml-base on
 * x86-64, which is built without `-mfma`).
 *
 * @module
 */

const f32 = new Float32Array(1);
const i32 = new Int32Array(f32.buffer);
const f16 = new Float16Array(1);
const u16 = new Uint16Array(f16.buffer);

/**
 * ggml's `nearest_int`: adds 1.5·2²³ in float32 so the FPU's round-half-to-even
 * leaves the integer in the low mantissa bits, and reads it back. Done on the
 * bits (not as `Math.round`) so that ties and out-of-range inputs give what the
 * C code gives.
 *
 * @example
 * ```ts
 * import { nearestInt } from "./scalar.ts";
 * nearestInt(2.5); // 2 (ties go to even)
 * nearestInt(-3.5); // -4
 * ```
 */
export function nearestInt(v: number): number {
  f32[0] = v + 12582912;
  return (i32[0] & 0x007fffff) - 0x00400000;
}

/**
 * The f16 bit pattern ggml stores for float32 `v`: round to nearest even,
 * overflow to ±infinity, NaN as `0x7e00` with its sign (ggml's `GGML_FP32_TO_FP16`).
 *
 * @example
 * ```ts
 * import { f16Bits } from "./scalar.ts";
 * f16Bits(1); // 0x3c00
 * f16Bits(-0); // 0x8000
 * ```
 */
export function f16Bits(v: number): number {
  // ggml keeps a NaN's sign (x86's default NaN, from ∞/∞ or 0·∞, is negative).
  if (Number.isNaN(v)) {
    f32[0] = v;
    return ((i32[0] >>> 31) << 15) | 0x7e00;
  }
  f16[0] = v;
  return u16[0];
}

/**
 * Writes float32 `v` as a little-endian f16 at `bytes[off]`.
 *
 * @example
 * ```ts
 * import { writeF16 } from "./scalar.ts";
 * const b = new Uint8Array(2);
 * writeF16(b, 0, 1); // b is [0x00, 0x3c]
 * ```
 */
export function writeF16(bytes: Uint8Array, off: number, v: number): void {
  const bits = f16Bits(v);
  bytes[off] = bits & 0xff;
  bytes[off + 1] = bits >>> 8;
}

/**
 * Reads the little-endian f16 at `bytes[off]` (any alignment).
 *
 * @example
 * ```ts
 * import { readF16 } from "./scalar.ts";
 * readF16(new Uint8Array([0x00, 0xc0]), 0); // -2
 * ```
 */
export function readF16(bytes: Uint8Array, off: number): number {
  u16[0] = bytes[off] | (bytes[off + 1] << 8);
  return f16[0];
}

/**
 * C's float-to-int conversion as x86-64 performs it (`cvttss2si`): truncation
 * toward zero, and the "integer indefinite" −2³¹ for NaN or anything outside
 * the int32 range. The legacy quantizers cast a float straight to an integer,
 * so a degenerate block (a subnormal scale whose inverse overflows) must land on
 * the same byte as in llama.cpp.
 *
 * @example
 * ```ts
 * import { truncToInt32 } from "./scalar.ts";
 * truncToInt32(-2.7); // -2
 * truncToInt32(NaN); // -2147483648
 * ```
 */
export function truncToInt32(v: number): number {
  return v > -2147483649 && v < 2147483648 ? Math.trunc(v) : -2147483648;
}

/**
 * C's `roundf`: to nearest, ties away from zero (unlike `Math.round`, which
 * sends ties toward +∞).
 *
 * @example
 * ```ts
 * import { roundHalfAway } from "./scalar.ts";
 * roundHalfAway(-2.5); // -3
 * ```
 */
export function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/**
 * The first of the `n` values at `x[xo]` with the largest magnitude, signed
 * (0 when all are zero): the extreme ggml's symmetric formats put on their most
 * negative code (Q4_0, Q5_0, Q3_K's and Q6_K's sub-blocks).
 *
 * @example
 * ```ts
 * import { signedAbsMax } from "./scalar.ts";
 * signedAbsMax(new Float32Array([1, -3, 3]), 0, 3); // -3
 * ```
 */
export function signedAbsMax(x: Float32Array, xo: number, n: number): number {
  let amax = 0, max = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i];
    if (Math.abs(v) > amax) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

/**
 * The largest magnitude of the `n` values at `x[xo]` (0 when all are zero): the
 * `amax` of ggml's symmetric reference quantizers.
 *
 * @example
 * ```ts
 * import { absMax } from "./scalar.ts";
 * absMax(new Float32Array([1, -3, 2]), 0, 3); // 3
 * ```
 */
export function absMax(x: Float32Array, xo: number, n: number): number {
  let amax = 0;
  for (let j = 0; j < n; j++) amax = Math.max(amax, Math.abs(x[xo + j]));
  return amax;
}

/**
 * ggml's `GROUP_MAX_EPS` (1e-15f): a group whose largest magnitude is below it
 * counts as all zero.
 *
 * @example
 * ```ts
 * import { GROUP_MAX_EPS } from "./scalar.ts";
 * GROUP_MAX_EPS > 0; // true
 * ```
 */
export const GROUP_MAX_EPS: number = Math.fround(1e-15);

/**
 * Σx² of the `n` values at `x[xo]`, in float32 and in order, as ggml's
 * quantizers sum it (their σ² is this over the block's or row's length).
 *
 * @example
 * ```ts
 * import { sumSquares } from "./scalar.ts";
 * sumSquares(new Float32Array([1, 2, 3]), 0, 3); // 14
 * ```
 */
export function sumSquares(x: Float32Array, xo: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s = Math.fround(s + Math.fround(x[xo + i] * x[xo + i]));
  return s;
}

/**
 * ggml's weight of a value `v` with importance `q` (an importance matrix's
 * entry for its column) in a group of mean square `sigma2`: `q·√(σ² + v²)`,
 * in float32.
 *
 * @example
 * ```ts
 * import { imatrixWeight } from "./scalar.ts";
 * imatrixWeight(2, 4, 9); // 10
 * ```
 */
export function imatrixWeight(q: number, v: number, sigma2: number): number {
  const f = Math.fround;
  return f(q * f(Math.sqrt(f(sigma2 + f(v * v)))));
}
