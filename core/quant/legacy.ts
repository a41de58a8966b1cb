/**
 * ggml's 32-element block formats with one f16 scale, Q8_0 and Q4_0: one block
 * at a time, as llama.cpp's `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`
 * write them and `dequantize_row_q8_0` / `dequantize_row_q4_0` read them.
 *
 * Layouts (little-endian): Q8_0 is `{f16 d; int8 qs[32]}` (34 bytes) with
 * `x[j] = d·qs[j]`; Q4_0 is `{f16 d; u8 qs[16]}` (18 bytes) with element `j < 16`
 * in the low nibble of `qs[j]`, element `j ≥ 16` in the high nibble of
 * `qs[j − 16]`, and `x = d·(nibble − 8)`.
 *
 * @module
 */

import { absMax, readF16, roundHalfAway, signedAbsMax, truncToInt32, writeF16 } from "./scalar.ts";

const f = Math.fround;

/**
 * Quantizes the 32 floats at `x[xo]` into the Q8_0 block at `y[yo]`: the scale
 * is amax/127 and each value is rounded half away from zero (`roundf`), as in
 * llama.cpp's reference quantizer.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ8_0 } from "./legacy.ts";
 * const y = new Uint8Array(34);
 * quantizeBlockQ8_0(new Float32Array(32).fill(1), 0, y, 0);
 * y[2]; // 127
 * ```
 */
export function quantizeBlockQ8_0(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const d = f(absMax(x, xo, 32) / 127);
  // `d ? 1/d : 0` in C: NaN counts as true there, so test against zero explicitly.
  const id = d !== 0 ? f(1 / d) : 0;
  writeF16(y, yo, d);
  for (let j = 0; j < 32; j++) {
    y[yo + 2 + j] = truncToInt32(roundHalfAway(f(x[xo + j] * id))) & 0xff;
  }
}

/**
 * Decodes the Q8_0 block at `b[bo]` into `out[oo..oo+32)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ8_0 } from "./legacy.ts";
 * const b = new Uint8Array(34);
 * b[1] = 0x3c; // d = 1
 * b[2] = 0xff; // qs[0] = -1
 * const out = new Float32Array(32);
 * dequantizeBlockQ8_0(b, 0, out, 0);
 * out[0]; // -1
 * ```
 */
export function dequantizeBlockQ8_0(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = readF16(b, bo);
  for (let j = 0; j < 32; j++) out[oo + j] = ((b[bo + 2 + j] << 24) >> 24) * d;
}

/**
 * Quantizes the 32 floats at `x[xo]` into the Q4_0 block at `y[yo]`: the scale
 * is the signed value of largest magnitude over −8 (so that value lands on code
 * 0), and codes are `min(15, trunc(x/d + 8.5))` in float32, as in llama.cpp's
 * reference quantizer.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ4_0 } from "./legacy.ts";
 * const y = new Uint8Array(18);
 * quantizeBlockQ4_0(new Float32Array(32).fill(-8), 0, y, 0);
 * y[2]; // 0 (both nibbles code 0: the block's extreme)
 * ```
 */
export function quantizeBlockQ4_0(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const d = f(signedAbsMax(x, xo, 32) / -8);
  const id = d !== 0 ? f(1 / d) : 0;
  writeF16(y, yo, d);
  for (let j = 0; j < 16; j++) {
    const lo = code4(f(x[xo + j] * id));
    const hi = code4(f(x[xo + 16 + j] * id));
    y[yo + 2 + j] = lo | (hi << 4);
  }
}

/** `MIN(15, (int8_t)(v + 8.5f))` stored to a uint8: the sum is rounded to float32 before truncation. */
function code4(v: number): number {
  const t = (truncToInt32(f(v + 8.5)) << 24) >> 24;
  return Math.min(15, t) & 0xff;
}

/**
 * Decodes the Q4_0 block at `b[bo]` into `out[oo..oo+32)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ4_0 } from "./legacy.ts";
 * const b = new Uint8Array(18);
 * b[1] = 0x3c; // d = 1
 * b[2] = 0xf0; // element 0 code 0, element 16 code 15
 * const out = new Float32Array(32);
 * dequantizeBlockQ4_0(b, 0, out, 0);
 * [out[0], out[16]]; // [-8, 7]
 * ```
 */
export function dequantizeBlockQ4_0(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = readF16(b, bo);
  for (let j = 0; j < 16; j++) {
    const q = b[bo + 2 + j];
    out[oo + j] = ((q & 0xf) - 8) * d;
    out[oo + 16 + j] = ((q >> 4) - 8) * d;
  }
}
