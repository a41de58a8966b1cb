/**
 * ggml's non-linear 4-bit formats IQ4_NL and IQ4_XS: each 4-bit code indexes
 * a fixed table of 16 signed levels (denser near zero, as trained weights are)
 * times a scale. Encoded as llama-quantize writes them without an importance
 * matrix (`quantize_iq4_nl` / `quantize_iq4_xs`: each 32-element block's scale
 * fitted by x²-weighted least squares over 15 candidate grids), decoded as
 * `dequantize_row_iq4_nl` / `_iq4_xs` read them. IQ4_NL is also what
 * `llama-quantize` writes for Q2_K / Q3_K rows that are not whole super-blocks.
 *
 * Layouts (little-endian): IQ4_NL `{f16 d; u8 qs[16]}` (18 bytes, 32 elements),
 * `x = d·T[q]`; IQ4_XS `{f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}`
 * (136 bytes, 256 elements), block `ib`'s 6-bit scale `ls` = nibble `ib % 2`
 * of `scales_l[ib / 2]` plus bits `2ib, 2ib+1` of `scales_h` as bits 4–5,
 * `x = d·(ls − 32)·T[q]`. In every 32-element block, element `j < 16` is the
 * low nibble of its `qs[j]`, `j ≥ 16` the high nibble of `qs[j − 16]`.
 *
 * @module
 */

import {
  GROUP_MAX_EPS,
  imatrixWeight,
  nearestInt,
  readF16,
  signedAbsMax,
  sumSquares,
  writeF16,
} from "./scalar.ts";

const f = Math.fround;

/**
 * ggml's `kvalues_iq4nl`: the 16 levels a code indexes.
 *
 * @example
 * ```ts
 * import { IQ4_LEVELS } from "./iq4.ts";
 * IQ4_LEVELS[8]; // 1
 * ```
 */
export const IQ4_LEVELS: readonly number[] = [
  -127,
  -104,
  -83,
  -65,
  -49,
  -35,
  -22,
  -10,
  1,
  13,
  25,
  38,
  53,
  69,
  89,
  113,
];

const LEVELS = new Int32Array(IQ4_LEVELS);
/** For each integer i in [−127, 112], the k with LEVELS[k] ≤ i < LEVELS[k + 1] (at index i + 127). */
const BELOW = new Uint8Array(240);
for (let i = -127, k = 0; i <= 112; i++) {
  while (LEVELS[k + 1] <= i) k++;
  BELOW[i + 127] = k;
}

/**
 * `best_index_int8`: the level nearest `x` (ties to the upper one). ggml's
 * binary search ends on the two levels around `x`; every gap between levels
 * spans whole integers, so `floor(x)` finds the lower one.
 */
function bestIndex(x: number): number {
  if (x <= -127) return 0;
  if (x >= 113) return 15;
  const k = BELOW[Math.floor(x) + 127];
  return f(x - LEVELS[k]) < f(LEVELS[k + 1] - x) ? k : k + 1;
}

/** What {@linkcode sums} leaves: Σ w·q·x and Σ w·q² (two numbers, no array a call). */
let sumQX = 0, sumQ2 = 0;

/** Σ w·q·x and Σ w·q² (into sumQX, sumQ2) of the 32 values at `x[xo]` on the grid `1/id`. */
function sums(x: Float32Array, xo: number, id: number): void {
  let sumqx = 0, sumq2 = 0;
  for (let j = 0; j < 32; j++) {
    const xj = x[xo + j];
    const q = LEVELS[bestIndex(f(id * xj))], w = weight[j];
    sumqx = f(sumqx + f(f(w * q) * xj));
    sumq2 = f(sumq2 + f(f(w * q) * q));
  }
  sumQX = sumqx;
  sumQ2 = sumq2;
}

// Scratch for one block; the codecs are synchronous, so one set serves all calls.
const L = new Uint8Array(256);
const scales = new Float32Array(8);
/** The block's weights: x², or an importance matrix's `qw·√(σ² + x²)`. */
const weight = new Float32Array(32);

/**
 * Fills {@linkcode weight} for the 32 values at `x[xo]`: x² without an
 * importance matrix, else `qw[qo + j]·√(σ² + x²)` as `quantize_row_iq4_nl_impl`.
 */
function setWeights(
  x: Float32Array,
  xo: number,
  qw: Float32Array | undefined,
  qo: number,
  sigma2: number,
) {
  for (let j = 0; j < 32; j++) {
    const xj = x[xo + j];
    weight[j] = qw ? imatrixWeight(qw[qo + j], xj, sigma2) : f(xj * xj);
  }
}

/** ggml's σ² of the `n` values at `x[xo]`: Σx² (float32, in order) · 2/n. */
function sigma2Of(x: Float32Array, xo: number, n: number): number {
  return f(sumSquares(x, xo, n) * f(2 / n));
}

/**
 * `quantize_row_iq4_nl_impl`'s fit of one 32-element block (ntry 7): the
 * least-squares scale of the best of the grids putting the signed extreme on
 * level −127 ± 0…7; 0 for an all-zero block.
 */
function fitBlock(x: Float32Array, xo: number): number {
  const max = signedAbsMax(x, xo, 32);
  if (Math.abs(max) < GROUP_MAX_EPS) return 0;
  const d0 = f(-max / IQ4_LEVELS[0]);
  sums(x, xo, f(1 / d0));
  let d = sumQ2 > 0 ? f(sumQX / sumQ2) : 0;
  let best = f(d * sumQX);
  for (let itry = -7; itry <= 7; itry++) {
    sums(x, xo, f((itry + IQ4_LEVELS[0]) / max));
    const sumqx = sumQX, sumq2 = sumQ2;
    if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
      d = f(sumqx / sumq2);
      best = f(d * sumqx);
    }
  }
  return d;
}

/** Codes of the 32 values at `x[xo]` on the grid `1/id`, packed into 16 bytes at `y[yo]`. */
function packBlock(x: Float32Array, xo: number, id: number, y: Uint8Array, yo: number): void {
  for (let j = 0; j < 32; j++) L[j] = bestIndex(f(id * x[xo + j]));
  for (let j = 0; j < 16; j++) y[yo + j] = L[j] | (L[16 + j] << 4);
}

/**
 * Quantizes the 32 floats at `x[xo]` into the IQ4_NL block at `y[yo]`, byte
 * for byte as llama-quantize's `quantize_iq4_nl`: without an importance matrix,
 * or with its 32 values at `qw[qo]`.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ4_NL } from "./iq4.ts";
 * const y = new Uint8Array(18);
 * quantizeBlockIQ4_NL(new Float32Array(32).fill(-127), 0, y, 0);
 * y[2]; // 0: every value on level −127
 * ```
 */
export function quantizeBlockIQ4_NL(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw?: Float32Array,
  qo = 0,
) {
  setWeights(x, xo, qw, qo, qw ? sigma2Of(x, xo, 32) : 0);
  const d = fitBlock(x, xo);
  writeF16(y, yo, d);
  packBlock(x, xo, d !== 0 ? f(1 / d) : 0, y, yo + 2);
}

/**
 * Quantizes the 256 floats at `x[xo]` into the IQ4_XS block at `y[yo]`, byte
 * for byte as llama-quantize's `quantize_iq4_xs` (without an importance
 * matrix, or with its 256 values at `qw[qo]`): each block's fitted scale as a
 * 6-bit multiple of the super-block's.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ4_XS } from "./iq4.ts";
 * const y = new Uint8Array(136);
 * quantizeBlockIQ4_XS(new Float32Array(256), 0, y, 0);
 * [y[1], y[2], y[4], y[8]]; // [0x80, 0xaa, 0, 0x88]: d = −0, scales 32 − 32, codes on level 1
 * ```
 */
export function quantizeBlockIQ4_XS(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw?: Float32Array,
  qo = 0,
) {
  let maxScale = 0, amaxScale = 0;
  const sigma2 = qw ? sigma2Of(x, xo, 256) : 0;
  for (let ib = 0; ib < 8; ib++) {
    setWeights(x, xo + 32 * ib, qw, qo + 32 * ib, sigma2);
    scales[ib] = fitBlock(x, xo + 32 * ib);
    if (Math.abs(scales[ib]) > amaxScale) {
      amaxScale = Math.abs(scales[ib]);
      maxScale = scales[ib];
    }
  }
  // The super-block scale and the 6-bit steps use the float32 d, not its f16.
  const d = f(-maxScale / 32);
  writeF16(y, yo, d);
  const id = d !== 0 ? f(1 / d) : 0;
  let high = 0;
  y.fill(0, yo + 4, yo + 8);
  for (let ib = 0; ib < 8; ib++) {
    const l = Math.max(-32, Math.min(31, nearestInt(f(id * scales[ib]))));
    const dl = f(d * l);
    packBlock(x, xo + 32 * ib, dl !== 0 ? f(1 / dl) : 0, y, yo + 8 + 16 * ib);
    y[yo + 4 + (ib >> 1)] |= ((l + 32) & 0xf) << (4 * (ib & 1));
    high |= ((l + 32) >> 4) << (2 * ib);
  }
  y[yo + 2] = high & 0xff;
  y[yo + 3] = high >> 8;
}

/**
 * Decodes the IQ4_NL block at `b[bo]` into `out[oo..oo+32)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ4_NL } from "./iq4.ts";
 * const b = new Uint8Array(18);
 * b[1] = 0x3c; // d = 1
 * b[2] = 0xf0; // element 0 level 0, element 16 level 15
 * const out = new Float32Array(32);
 * dequantizeBlockIQ4_NL(b, 0, out, 0);
 * [out[0], out[16]]; // [-127, 113]
 * ```
 */
export function dequantizeBlockIQ4_NL(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  decodeBlock(b, bo + 2, readF16(b, bo), out, oo);
}

/**
 * Decodes the IQ4_XS block at `b[bo]` into `out[oo..oo+256)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ4_XS } from "./iq4.ts";
 * const b = new Uint8Array(136);
 * b[1] = 0x3c; // d = 1
 * b[2] = 0b10; // block 0's scale: top bits 2, low nibble 1 → 33 − 32
 * b[4] = 1;
 * b[8] = 0x0f; // element 0 level 15
 * const out = new Float32Array(256);
 * dequantizeBlockIQ4_XS(b, 0, out, 0);
 * out[0]; // 113
 * ```
 */
export function dequantizeBlockIQ4_XS(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo), high = b[bo + 2] | (b[bo + 3] << 8);
  for (let ib = 0; ib < 8; ib++) {
    const ls = ((b[bo + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 0xf) | (((high >> (2 * ib)) & 3) << 4);
    decodeBlock(b, bo + 8 + 16 * ib, f(d * (ls - 32)), out, oo + 32 * ib);
  }
}

/** 32 elements from the 16 code bytes at `b[qo]`, times `d`. */
function decodeBlock(b: Uint8Array, qo: number, d: number, out: Float32Array, oo: number): void {
  for (let j = 0; j < 16; j++) {
    out[oo + j] = d * IQ4_LEVELS[b[qo + j] & 0xf];
    out[oo + 16 + j] = d * IQ4_LEVELS[b[qo + j] >> 4];
  }
}
