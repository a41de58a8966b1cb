/**
 * ggml's one- and two-level formats with one f16 scale a block: the ternary
 * TQ1_0 and TQ2_0 (BitNet-style, 256 elements) and the binary Q1_0 and two-bit
 * Q2_0, written as ggml's `quantize_row_*_ref` writes them and read as
 * `dequantize_row_tq1_0` / `_tq2_0` / `_q1_0` / `_q2_0` read them (ggml 2026).
 *
 * The ternary formats take d = the block's largest magnitude and each value's
 * `round(x/d)` in {−1, 0, 1}; Q2_0 the same in {−1, 0, 1, 2}; Q1_0 d = the mean
 * magnitude and each value's sign.
 *
 * Layouts (little-endian):
 * - TQ1_0 (54 bytes): `{u8 qs[48]; u8 qh[4]; f16 d}`, five trits a byte in
 *   qs and four in qh, the first element the most significant trit: trit n of
 *   byte q is `((q·3ⁿ mod 256)·3) >> 8`. Elements 0–159 are trit n = e / 32 of
 *   qs[e mod 32]; 160–239 trit n = (e − 160) / 16 of qs[32 + e mod 16];
 *   240–255 trit n = (e − 240) / 4 of qh[e mod 4]. x = d·(trit − 1).
 * - TQ2_0 (66 bytes): `{u8 qs[64]; f16 d}`, crumbs: element e has crumb
 *   l = (e mod 128) / 32 of qs[32·(e / 128) + e mod 32]; x = d·(crumb − 1).
 * - Q1_0 (18 bytes, 128 elements): `{f16 d; u8 qs[16]}`, bit e mod 8 of
 *   qs[e / 8]: x = +d if set, −d if not.
 * - Q2_0 (18 bytes, 64 elements): `{f16 d; u8 qs[16]}`, crumb e mod 4 of
 *   qs[e / 4]: x = d·(crumb − 1).
 *
 * @module
 */

import { absMax, readF16, roundHalfAway, writeF16 } from "./scalar.ts";

const f = Math.fround;

/** `1/d`, or 0 for a zero scale (`d ? 1.0f/d : 0.0f`). */
const inverse = (d: number) => (d !== 0 ? f(1 / d) : 0);

/** TQ1_0's five (or four, then a zero) trits as a byte: ⌈q·256/243⌉ of their base-3 number. */
const packTrits = (q: number) => Math.floor((q * 256 + 242) / 243);

/**
 * Quantizes the 256 floats at `x[xo]` into the TQ1_0 block at `y[yo]`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockTQ1_0, quantizeBlockTQ1_0 } from "./low_bit.ts";
 * const x = new Float32Array(256).map((_, i) => [-1, 0, 1][i % 3]);
 * const y = new Uint8Array(54);
 * quantizeBlockTQ1_0(x, 0, y, 0);
 * const back = new Float32Array(256);
 * dequantizeBlockTQ1_0(y, 0, back, 0);
 * back[5]; // 1
 * ```
 */
export function quantizeBlockTQ1_0(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const d = absMax(x, xo, 256), id = inverse(d);
  writeF16(y, yo + 52, d);
  const trit = (e: number) => roundHalfAway(f(x[xo + e] * id)) + 1;
  // qs[0..32): elements m + 32n; qs[32..48): 160 + m + 16n; qh: 240 + j + 4m.
  for (let m = 0; m < 32; m++) {
    let q = 0;
    for (let n = 0; n < 5; n++) q = q * 3 + trit(m + 32 * n);
    y[yo + m] = packTrits(q);
  }
  for (let m = 0; m < 16; m++) {
    let q = 0;
    for (let n = 0; n < 5; n++) q = q * 3 + trit(160 + m + 16 * n);
    y[yo + 32 + m] = packTrits(q);
  }
  for (let j = 0; j < 4; j++) {
    let q = 0;
    for (let m = 0; m < 4; m++) q = q * 3 + trit(240 + j + 4 * m);
    y[yo + 48 + j] = packTrits(q * 3);
  }
}

/**
 * Quantizes the 256 floats at `x[xo]` into the TQ2_0 block at `y[yo]`.
 *
 * @example
 * ```ts
 * import { quantizeBlockTQ2_0 } from "./low_bit.ts";
 * const y = new Uint8Array(66);
 * quantizeBlockTQ2_0(new Float32Array(256).fill(2), 0, y, 0);
 * y[0]; // 0xaa: four crumbs of 2 (+1)
 * ```
 */
export function quantizeBlockTQ2_0(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const d = absMax(x, xo, 256), id = inverse(d);
  writeF16(y, yo + 64, d);
  for (let h = 0; h < 2; h++) {
    for (let m = 0; m < 32; m++) {
      let q = 0;
      for (let n = 0; n < 4; n++) {
        q += ((roundHalfAway(f(x[xo + 128 * h + m + 32 * n] * id)) + 1) & 3) << (2 * n);
      }
      y[yo + 32 * h + m] = q;
    }
  }
}

/**
 * Quantizes the 128 floats at `x[xo]` into the Q1_0 block at `y[yo]`: d is
 * their mean magnitude (summed in float32, in order), a bit their sign.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ1_0 } from "./low_bit.ts";
 * const y = new Uint8Array(18);
 * quantizeBlockQ1_0(new Float32Array(128).fill(-0.5), 0, y, 0);
 * [y[0], y[1], y[2]]; // [0x00, 0x38, 0]: d = 0.5, every bit clear
 * ```
 */
export function quantizeBlockQ1_0(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  let sum = 0;
  for (let j = 0; j < 128; j++) sum = f(sum + Math.abs(x[xo + j]));
  writeF16(y, yo, f(sum / 128));
  for (let j = 0; j < 16; j++) {
    let b = 0;
    for (let k = 0; k < 8; k++) if (x[xo + 8 * j + k] >= 0) b |= 1 << k;
    y[yo + 2 + j] = b;
  }
}

/**
 * Quantizes the 64 floats at `x[xo]` into the Q2_0 block at `y[yo]`: d their
 * largest magnitude, codes `round(x/d) + 1` clamped to 0–3.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ2_0 } from "./low_bit.ts";
 * const y = new Uint8Array(18);
 * quantizeBlockQ2_0(new Float32Array(64).fill(1), 0, y, 0);
 * y[2]; // 0xaa: four codes of 2 (+1)
 * ```
 */
export function quantizeBlockQ2_0(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const d = absMax(x, xo, 64), id = d > 0 ? f(1 / d) : 0;
  writeF16(y, yo, d);
  for (let j = 0; j < 16; j++) {
    let b = 0;
    for (let k = 0; k < 4; k++) {
      const q = Math.max(0, Math.min(3, roundHalfAway(f(x[xo + 4 * j + k] * id)) + 1));
      b |= q << (2 * k);
    }
    y[yo + 2 + j] = b;
  }
}

/**
 * Trit `n` (0 = most significant) of a TQ1_0 byte, as ggml extracts it: the
 * byte times 3ⁿ keeps its low 8 bits, and the top of that times 3 is the trit.
 *
 * @example
 * ```ts
 * import { tq1Trit } from "./low_bit.ts";
 * tq1Trit(0, 0); // 0
 * ```
 */
export function tq1Trit(q: number, n: number): number {
  return (((q * 3 ** n) & 0xff) * 3) >> 8;
}

/**
 * Decodes the TQ1_0 block at `b[bo]` into `out[oo..oo+256)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockTQ1_0 } from "./low_bit.ts";
 * const b = new Uint8Array(54);
 * b[53] = 0x3c; // d = 1
 * const out = new Float32Array(256);
 * dequantizeBlockTQ1_0(b, 0, out, 0);
 * out[0]; // -1: trit 0
 * ```
 */
export function dequantizeBlockTQ1_0(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = readF16(b, bo + 52);
  const put = (e: number, q: number, n: number) => {
    out[oo + e] = f((tq1Trit(q, n) - 1) * d);
  };
  for (let n = 0; n < 5; n++) {
    for (let m = 0; m < 32; m++) put(n * 32 + m, b[bo + m], n);
  }
  for (let n = 0; n < 5; n++) {
    for (let m = 0; m < 16; m++) put(160 + n * 16 + m, b[bo + 32 + m], n);
  }
  for (let n = 0; n < 4; n++) {
    for (let j = 0; j < 4; j++) put(240 + n * 4 + j, b[bo + 48 + j], n);
  }
}

/**
 * Decodes the TQ2_0 block at `b[bo]` into `out[oo..oo+256)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockTQ2_0 } from "./low_bit.ts";
 * const b = new Uint8Array(66).fill(0x55); // every crumb 1: zero
 * b[64] = 0; b[65] = 0x3c; // d = 1
 * const out = new Float32Array(256);
 * dequantizeBlockTQ2_0(b, 0, out, 0);
 * out[7]; // 0
 * ```
 */
export function dequantizeBlockTQ2_0(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = readF16(b, bo + 64);
  for (let e = 0; e < 256; e++) {
    const q = (b[bo + 32 * (e >> 7) + (e & 31)] >> (2 * ((e & 127) >> 5))) & 3;
    out[oo + e] = f((q - 1) * d);
  }
}

/**
 * Decodes the Q1_0 block at `b[bo]` into `out[oo..oo+128)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ1_0 } from "./low_bit.ts";
 * const b = new Uint8Array(18);
 * b[1] = 0x3c; // d = 1
 * b[2] = 1; // element 0 positive
 * const out = new Float32Array(128);
 * dequantizeBlockQ1_0(b, 0, out, 0);
 * [out[0], out[1]]; // [1, -1]
 * ```
 */
export function dequantizeBlockQ1_0(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = readF16(b, bo);
  for (let e = 0; e < 128; e++) out[oo + e] = (b[bo + 2 + (e >> 3)] >> (e & 7)) & 1 ? d : -d;
}

/**
 * Decodes the Q2_0 block at `b[bo]` into `out[oo..oo+64)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ2_0 } from "./low_bit.ts";
 * const b = new Uint8Array(18);
 * b[1] = 0x3c; // d = 1
 * b[2] = 0b11; // element 0: crumb 3
 * const out = new Float32Array(64);
 * dequantizeBlockQ2_0(b, 0, out, 0);
 * [out[0], out[1]]; // [2, -1]
 * ```
 */
export function dequantizeBlockQ2_0(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = readF16(b, bo);
  for (let e = 0; e < 64; e++) {
    out[oo + e] = f((((b[bo + 2 + (e >> 2)] >> (2 * (e & 3))) & 3) - 1) * d);
  }
}
