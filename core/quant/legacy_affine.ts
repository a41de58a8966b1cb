/**
 * ggml's other 32-element formats, Q4_1, Q5_0 and Q5_1, one block at a time as
 * llama.cpp's `quantize_row_q4_1_ref` / `_q5_0_ref` / `_q5_1_ref` write them
 * and `dequantize_row_*` reads them. They matter beyond themselves:
 * `llama-quantize` stores a row that is not whole 256-element super-blocks in
 * Q5_0 when Q4_K was asked for and in Q5_1 for Q5_K, so a Q4_K_M file of a
 * model whose width is not a multiple of 256 holds Q5_0 tensors.
 *
 * Layouts (little-endian), element `j < 16` in the low nibble of `qs[j]`,
 * `j ≥ 16` in the high nibble of `qs[j − 16]`, and for the 5-bit formats the
 * fifth bit of element `j` as bit `j` of the u32 `qh`:
 * - Q4_1 `{f16 d; f16 m; u8 qs[16]}` (20 bytes), `x = d·q + m`;
 * - Q5_0 `{f16 d; u8 qh[4]; u8 qs[16]}` (22 bytes), `x = d·(q − 16)`;
 * - Q5_1 `{f16 d; f16 m; u8 qh[4]; u8 qs[16]}` (24 bytes), `x = d·q + m`.
 *
 * @module
 */

import { readF16, signedAbsMax, truncToInt32, writeF16 } from "./scalar.ts";

const f = Math.fround;

/** `(int8_t)v` of a float in range, as an integer. */
const int8 = (v: number) => (truncToInt32(v) << 24) >> 24;

/** The block's min and max in float32, as the reference's first loop finds them. */
function minMax(x: Float32Array, xo: number): [number, number] {
  let min = f(3.4028234663852886e38), max = -min;
  for (let j = 0; j < 32; j++) {
    const v = x[xo + j];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return [min, max];
}

/**
 * Stores the 32 codes (each < 32) as llama.cpp packs them: low four bits in
 * `qs` at `y[qo]`, fifth bits (when `qh` ≥ 0, the byte offset of `qh`) as
 * bits of a little-endian u32.
 *
 * @example
 * ```ts
 * import { packLegacyCodes } from "./legacy_affine.ts";
 * const y = new Uint8Array(20);
 * packLegacyCodes(new Array(32).fill(17), y, 4, 0);
 * [y[0], y[4]]; // [0xff, 0x11]
 * ```
 */
export function packLegacyCodes(
  codes: ArrayLike<number>,
  y: Uint8Array,
  qo: number,
  qh: number,
): void {
  let bits = 0;
  for (let j = 0; j < 16; j++) {
    y[qo + j] = (codes[j] & 0xf) | ((codes[j + 16] & 0xf) << 4);
    bits |= ((codes[j] >> 4) & 1) << j;
    bits |= ((codes[j + 16] >> 4) & 1) << (j + 16);
  }
  if (qh >= 0) {
    for (let b = 0; b < 4; b++) y[qh + b] = (bits >>> (8 * b)) & 0xff;
  }
}

/** The 32 codes of a block (bits of `qh` at byte `qh` when it is ≥ 0). */
function unpack(b: Uint8Array, qo: number, qh: number): Int32Array {
  const bits = qh >= 0 ? b[qh] | (b[qh + 1] << 8) | (b[qh + 2] << 16) | (b[qh + 3] << 24) : 0;
  const q = new Int32Array(32);
  for (let j = 0; j < 16; j++) {
    q[j] = (b[qo + j] & 0xf) | (((bits >>> j) & 1) << 4);
    q[j + 16] = (b[qo + j] >> 4) | (((bits >>> (j + 16)) & 1) << 4);
  }
  return q;
}

/**
 * The affine formats' quantizer: `d = (max − min)/(2^bits − 1)`, codes
 * `trunc((x − min)/d + 0.5)` in float32 (Q4_1 clamps to 15 through an int8).
 */
function quantizeAffine(bits: 4 | 5, x: Float32Array, xo: number, y: Uint8Array, yo: number) {
  const [min, max] = minMax(x, xo);
  const d = f(f(max - min) / ((1 << bits) - 1));
  // `d ? 1/d : 0` in C: NaN counts as true there, so test against zero explicitly.
  const id = d !== 0 ? f(1 / d) : 0;
  writeF16(y, yo, d);
  writeF16(y, yo + 2, min);
  const codes = new Int32Array(32);
  for (let j = 0; j < 32; j++) {
    const v = f(f(f(x[xo + j] - min) * id) + 0.5);
    codes[j] = bits === 4 ? Math.min(15, int8(v)) & 0xff : truncToInt32(v) & 0xff;
  }
  packLegacyCodes(codes, y, bits === 4 ? yo + 4 : yo + 8, bits === 4 ? -1 : yo + 4);
}

/**
 * Quantizes the 32 floats at `x[xo]` into the Q4_1 block at `y[yo]`: the
 * block's min and `(max − min)/15` as f16, codes rounded half up from the min.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ4_1 } from "./legacy_affine.ts";
 * const y = new Uint8Array(20);
 * quantizeBlockQ4_1(new Float32Array(32).map((_, i) => i % 16), 0, y, 0);
 * y[5]; // 0x11: elements 1 and 17 are both code 1
 * ```
 */
export function quantizeBlockQ4_1(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  quantizeAffine(4, x, xo, y, yo);
}

/**
 * Quantizes the 32 floats at `x[xo]` into the Q5_1 block at `y[yo]`, as
 * {@linkcode quantizeBlockQ4_1} with 31 steps and the fifth bits in `qh`.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ5_1 } from "./legacy_affine.ts";
 * const y = new Uint8Array(24);
 * quantizeBlockQ5_1(new Float32Array(32).map((_, i) => i), 0, y, 0);
 * y[7]; // 0xff: elements 16–31 have their fifth bit set
 * ```
 */
export function quantizeBlockQ5_1(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  quantizeAffine(5, x, xo, y, yo);
}

/**
 * Quantizes the 32 floats at `x[xo]` into the Q5_0 block at `y[yo]`: the scale
 * is the signed value of largest magnitude over −16 (so that value lands on
 * code 0), codes `min(31, trunc(x/d + 16.5))` in float32.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ5_0 } from "./legacy_affine.ts";
 * const y = new Uint8Array(22);
 * quantizeBlockQ5_0(new Float32Array(32).fill(-16), 0, y, 0);
 * y[6]; // 0: every element is code 0, the block's extreme
 * ```
 */
export function quantizeBlockQ5_0(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const d = f(signedAbsMax(x, xo, 32) / -16);
  const id = d !== 0 ? f(1 / d) : 0;
  writeF16(y, yo, d);
  const codes = new Int32Array(32);
  for (let j = 0; j < 32; j++) codes[j] = Math.min(31, int8(f(f(x[xo + j] * id) + 16.5))) & 0xff;
  packLegacyCodes(codes, y, yo + 6, yo + 2);
}

/**
 * Decodes the Q4_1 block at `b[bo]` into `out[oo..oo+32)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ4_1 } from "./legacy_affine.ts";
 * const b = new Uint8Array(20);
 * b[1] = 0x3c; // d = 1
 * b[3] = 0xbc; // m = -1
 * b[4] = 0xf2; // element 0 code 2, element 16 code 15
 * const out = new Float32Array(32);
 * dequantizeBlockQ4_1(b, 0, out, 0);
 * [out[0], out[16]]; // [1, 14]
 * ```
 */
export function dequantizeBlockQ4_1(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo), m = readF16(b, bo + 2);
  const q = unpack(b, bo + 4, -1);
  for (let j = 0; j < 32; j++) out[oo + j] = f(q[j] * d) + m;
}

/**
 * Decodes the Q5_0 block at `b[bo]` into `out[oo..oo+32)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ5_0 } from "./legacy_affine.ts";
 * const b = new Uint8Array(22);
 * b[1] = 0x3c; // d = 1
 * b[2] = 0x01; // fifth bit of element 0
 * const out = new Float32Array(32);
 * dequantizeBlockQ5_0(b, 0, out, 0);
 * [out[0], out[1]]; // [0, -16]
 * ```
 */
export function dequantizeBlockQ5_0(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo);
  const q = unpack(b, bo + 6, bo + 2);
  for (let j = 0; j < 32; j++) out[oo + j] = (q[j] - 16) * d;
}

/**
 * Decodes the Q5_1 block at `b[bo]` into `out[oo..oo+32)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ5_1 } from "./legacy_affine.ts";
 * const b = new Uint8Array(24);
 * b[1] = 0x3c; // d = 1
 * b[7] = 0x80; // fifth bit of element 31
 * const out = new Float32Array(32);
 * dequantizeBlockQ5_1(b, 0, out, 0);
 * out[31]; // 16
 * ```
 */
export function dequantizeBlockQ5_1(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo), m = readF16(b, bo + 2);
  const q = unpack(b, bo + 8, bo + 4);
  for (let j = 0; j < 32; j++) out[oo + j] = f(q[j] * d) + m;
}
