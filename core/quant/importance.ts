/**
 * Quantizing with an importance matrix, as `llama-quantize --imatrix` does: each
 * weight's error counts in proportion to how strongly its input column is
 * activated (the matrix holds, per column, the mean of the squared activations
 * that reached it on calibration text). ggml's `quantize_*` take that vector
 * per row and switch to their `quantize_row_*_impl` fits, which weigh each
 * element by `qw·√(σ² + x²)` (σ² the block's or row's mean square) and fit the
 * K-quants' sub-block scales and mins by weighted least squares
 * (`make_qp_quants`) instead of rounding them to a grid.
 *
 * {@linkcode quantizeWithImportance} writes the bytes ggml's
 * `ggml_quantize_chunk(type, …, imatrix)` writes: float32 arithmetic in C's
 * order at every step, as the reference encoders of `./codecs.ts`.
 *
 * @module
 */

import { GGML_TYPES, IMATRIX_ONLY_FORMATS, quantBytes, type QuantFormat } from "./formats.ts";
import { checkQuantizable, checkValues, quantize } from "./codecs.ts";
import { quantizeBlockIQ2_S, quantizeBlockIQ2_XS, quantizeBlockIQ2_XXS } from "./iq2_encode.ts";
import { quantizeBlockIQ1_M, quantizeBlockIQ1_S } from "./iq1_encode.ts";
import {
  makeQkx2Quants,
  packCrumbs,
  packQ4Codes,
  packQ5Codes,
  packScalesK4,
  requantK4,
  requantQ2,
} from "./k_quants.ts";
import { requantQ3 } from "./q3_k.ts";
import { makeQxQuants, quantizeBlockQ6_K } from "./q6_k.ts";
import { quantizeBlockIQ4_NL, quantizeBlockIQ4_XS } from "./iq4.ts";
import { quantizeBlockIQ3_S, quantizeBlockIQ3_XXS } from "./iq3_encode.ts";
import { packLegacyCodes } from "./legacy_affine.ts";
import { makeQpQuants } from "./qp_fit.ts";
import { imatrixWeight, sumSquares, writeF16 } from "./scalar.ts";

const f = Math.fround;
const RMIN = f(-0.9), RDELTA = f(0.05);

// Scratch for one block; the codecs are synchronous, so one set serves all calls.
const L = new Uint8Array(256);
const Li = new Uint8Array(256);
const weight = new Float32Array(32);
const sw = new Float32Array(16);
const scales = new Float32Array(16);
const mins = new Float32Array(16);
const Ls = new Uint8Array(16), Lm = new Uint8Array(16);

/** `weight[l] = qw[qo + l]·√(σ² + x²)` for `n` values; returns their float32 sum. */
function setWeights(
  x: Float32Array,
  xo: number,
  n: number,
  qw: Float32Array,
  qo: number,
  sigma2: number,
): number {
  let sum = 0;
  for (let l = 0; l < n; l++) {
    weight[l] = imatrixWeight(qw[qo + l], x[xo + l], sigma2);
  }
  for (let l = 0; l < n; l++) sum = f(sum + weight[l]);
  return sum;
}

/**
 * One block encoder with an importance vector: the block at `x[xo]`, its
 * importance values at `qw[qo]`, and (for the 32-element formats, whose σ² is
 * the whole row's) the row's mean square.
 */
type WeightedEncode = (
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw: Float32Array,
  qo: number,
  rowSigma2: number,
) => void;

/**
 * `make_qkx3_quants(n, nmax, …, -0.9, 0.05, 36, false)` of the `n` values at
 * `x[xo]` weighted by {@linkcode weight}: codes into `L[lo..]`, −offset into
 * `mins[j]`; returns the scale.
 */
function fitAffine(nmax: number, x: Float32Array, xo: number, lo: number, j: number, n: number) {
  return makeQkx2Quants(nmax, x, xo, lo, j, RMIN, RDELTA, 36, n, false, weight, L, mins);
}

/** `quantize_row_q2_K_impl`: sixteen affine sub-blocks, scales and mins fitted by make_qp_quants. */
const q2K: WeightedEncode = (x, xo, y, yo, qw, qo) => {
  const sigma2 = f(sumSquares(x, xo, 256) / 256);
  for (let j = 0; j < 16; j++) {
    sw[j] = setWeights(x, xo + 16 * j, 16, qw, qo + 16 * j, sigma2);
    scales[j] = fitAffine(3, x, xo + 16 * j, 16 * j, j, 16);
  }
  const dm = makeQpQuants(16, 15, scales, Ls, sw);
  const mm = makeQpQuants(16, 15, mins, Lm, sw);
  writeF16(y, yo + 80, dm);
  writeF16(y, yo + 82, mm);
  for (let j = 0; j < 16; j++) y[yo + j] = Ls[j] | (Lm[j] << 4);
  requantQ2(x, xo, y, yo, L);
  packCrumbs(L, y, yo + 16);
};

/** `quantize_row_q3_K_impl`: symmetric sub-blocks, their scales fitted by a weighted make_qx_quants. */
const q3K: WeightedEncode = (x, xo, y, yo, qw, qo) => {
  const sigma2 = f(f(2 * sumSquares(x, xo, 256)) / 256);
  for (let j = 0; j < 16; j++) {
    sw[j] = setWeights(x, xo + 16 * j, 16, qw, qo + 16 * j, sigma2);
    scales[j] = makeQxQuants(16, 4, x, xo + 16 * j, Li, 16 * j, weight, 0);
  }
  const sb = yo + 96;
  y.fill(0, sb, sb + 12);
  const d = makeQxQuants(16, 32, scales, 0, Ls, 0, sw, 0);
  for (let j = 0; j < 16; j++) {
    const l = Ls[j];
    if (j < 8) y[sb + j] = l & 0xf;
    else y[sb + j - 8] |= (l & 0xf) << 4;
    y[sb + 8 + (j % 4)] |= (l >> 4) << (2 * (j >> 2));
  }
  writeF16(y, yo + 108, d);
  requantQ3(x, xo, y, yo, Li);
};

/** `quantize_row_q{4,5}_K_impl`: eight affine sub-blocks, scales and mins fitted by make_qp_quants. */
function q45K(five: boolean): WeightedEncode {
  const nmax = five ? 31 : 15;
  return (x, xo, y, yo, qw, qo) => {
    const sigma2 = f(f(2 * sumSquares(x, xo, 256)) / 256);
    for (let j = 0; j < 8; j++) {
      sw[j] = setWeights(x, xo + 32 * j, 32, qw, qo + 32 * j, sigma2);
      scales[j] = fitAffine(nmax, x, xo + 32 * j, 32 * j, j, 32);
    }
    const dBlock = makeQpQuants(8, 63, scales, Ls, sw);
    const mBlock = makeQpQuants(8, 63, mins, Lm, sw);
    if (five) {
      for (let j = 0; j < 8; j++) {
        Ls[j] = Math.min(63, Ls[j]);
        Lm[j] = Math.min(63, Lm[j]);
      }
    }
    y.fill(0, yo + 4, yo + 16);
    packScalesK4(Ls, Lm, y, yo + 4);
    writeF16(y, yo, dBlock);
    writeF16(y, yo + 2, mBlock);
    requantK4(nmax, x, xo, y, yo, L);
    if (five) packQ5Codes(L, y, yo);
    else packQ4Codes(L, y, yo);
  };
}

/** `quantize_row_q{4,5}_0_impl`: one symmetric weighted fit a block; σ² is the row's. */
function q0(five: boolean): WeightedEncode {
  return (x, xo, y, yo, qw, qo, rowSigma2) => {
    setWeights(x, xo, 32, qw, qo, rowSigma2);
    const d = makeQxQuants(32, five ? 16 : 8, x, xo, Li, 0, weight, 0);
    writeF16(y, yo, d);
    packLegacyCodes(Li, y, five ? yo + 6 : yo + 2, five ? yo + 2 : -1);
  };
}

/** `quantize_row_q{4,5}_1_impl`: one affine weighted fit (make_qkx3_quants) a block. */
function q1(five: boolean): WeightedEncode {
  return (x, xo, y, yo, qw, qo, rowSigma2) => {
    setWeights(x, xo, 32, qw, qo, rowSigma2);
    const d = fitAffine(five ? 31 : 15, x, xo, 0, 0, 32);
    writeF16(y, yo, d);
    writeF16(y, yo + 2, -mins[0]);
    packLegacyCodes(L, y, five ? yo + 8 : yo + 4, five ? yo + 4 : -1);
  };
}

const WEIGHTED: Partial<Record<QuantFormat, WeightedEncode>> = {
  q2_k: q2K,
  q3_k: q3K,
  q4_k: q45K(false),
  q5_k: q45K(true),
  q6_k: (x, xo, y, yo, qw, qo) => quantizeBlockQ6_K(x, xo, y, yo, qw, qo),
  q4_0: q0(false),
  q5_0: q0(true),
  q4_1: q1(false),
  q5_1: q1(true),
  iq4_nl: (x, xo, y, yo, qw, qo) => quantizeBlockIQ4_NL(x, xo, y, yo, qw, qo),
  iq4_xs: (x, xo, y, yo, qw, qo) => quantizeBlockIQ4_XS(x, xo, y, yo, qw, qo),
  iq3_xxs: (x, xo, y, yo, qw, qo) => quantizeBlockIQ3_XXS(x, xo, y, yo, qw, qo),
  iq3_s: (x, xo, y, yo, qw, qo) => quantizeBlockIQ3_S(x, xo, y, yo, qw, qo),
  iq2_xxs: (x, xo, y, yo, qw, qo) => quantizeBlockIQ2_XXS(x, xo, y, yo, qw, qo),
  iq2_xs: (x, xo, y, yo, qw, qo) => quantizeBlockIQ2_XS(x, xo, y, yo, qw, qo),
  iq2_s: (x, xo, y, yo, qw, qo) => quantizeBlockIQ2_S(x, xo, y, yo, qw, qo),
  iq1_s: (x, xo, y, yo, qw, qo) => quantizeBlockIQ1_S(x, xo, y, yo, qw, qo),
  iq1_m: (x, xo, y, yo, qw, qo) => quantizeBlockIQ1_M(x, xo, y, yo, qw, qo),
};

/**
 * One weight matrix's importance vector: a value per column (`rowLength` of
 * them), the mean squared activation that reached the column on calibration
 * text; the same vector applies to every row.
 *
 * @example
 * ```ts
 * import type { Importance } from "./importance.ts";
 * const imp: Importance = { rowLength: 4096, values: new Float32Array(4096).fill(1) };
 * ```
 */
export interface Importance {
  /** Elements a row (the matrix's input width). */
  readonly rowLength: number;
  /** One value a column, finite. */
  readonly values: Float32Array;
}

/**
 * The formats whose bytes an importance matrix changes (the others ignore it, as in ggml).
 *
 * @example
 * ```ts
 * import { IMPORTANCE_FORMATS } from "./importance.ts";
 * IMPORTANCE_FORMATS.includes("q4_k"); // true
 * IMPORTANCE_FORMATS.includes("q8_0"); // false
 * ```
 */
export const IMPORTANCE_FORMATS: readonly QuantFormat[] = Object.keys(WEIGHTED) as QuantFormat[];

/**
 * Quantizes `data` — whole rows of `rowLength` elements — to `format` with
 * the importance vector `importance` (one value per column, the same for every
 * row), byte for byte as `ggml_quantize_chunk(type, data, …, importance)`: the
 * K-quants, the legacy 4/5-bit formats, IQ4_NL, IQ4_XS, IQ3 and IQ1_M switch to
 * their weighted fits, and IQ2 and IQ1_S have no other; Q8_0, the ternary, binary and FP4 formats ignore the
 * importance and write what {@linkcode quantize} writes. The checks of
 * `quantize` apply, plus: `rowLength` a whole number of blocks dividing
 * `data.length`, and `importance` that long and finite (RangeErrors naming the
 * format and the offending length or index).
 *
 * @example
 * ```ts
 * import { quantizeWithImportance } from "./importance.ts";
 * const x = Float32Array.from({ length: 512 }, (_, i) => Math.sin(i));
 * const imp = Float32Array.from({ length: 256 }, (_, i) => 1 + (i % 7));
 * const q = quantizeWithImportance("q4_k", x, 256, imp);
 * q.length; // 288: two rows of one 144-byte block
 * ```
 */
export function quantizeWithImportance(
  format: QuantFormat,
  data: Float32Array,
  rowLength: number,
  importance: Float32Array,
): Uint8Array<ArrayBuffer> {
  checkImportance(format, data, rowLength, importance);
  const encode = WEIGHTED[format];
  if (encode === undefined) return quantize(format, data);
  const { blockElems, blockBytes } = GGML_TYPES[format];
  const out = new Uint8Array(quantBytes(format, data.length));
  const rowBytes = quantBytes(format, rowLength);
  const legacy = blockElems === 32;
  for (let r = 0, x = 0; x < data.length; r++, x += rowLength) {
    const sigma2 = legacy ? f(sumSquares(data, x, rowLength) / rowLength) : 0;
    for (let e = 0, b = r * rowBytes; e < rowLength; e += blockElems, b += blockBytes) {
      encode(data, x + e, out, b, importance, e, sigma2);
    }
  }
  return out;
}

/**
 * The checks of {@linkcode quantizeWithImportance}, for callers that split the
 * rows between workers (errors then name indices in the whole tensor).
 *
 * @example
 * ```ts
 * import { checkImportance } from "./importance.ts";
 * try {
 *   checkImportance("q4_k", new Float32Array(512), 256, new Float32Array(128));
 * } catch (e) {
 *   (e as Error).message; // "q4_k: the importance vector has 128 values for rows of 256"
 * }
 * ```
 */
export function checkImportance(
  format: QuantFormat,
  data: Float32Array,
  rowLength: number,
  importance: Float32Array,
): void {
  // The IQ2 formats and IQ1_S have no encoder without an importance matrix.
  if (IMATRIX_ONLY_FORMATS.includes(format)) checkValues(format, data);
  else checkQuantizable(format, data);
  const { blockElems } = GGML_TYPES[format];
  if (!(rowLength > 0) || rowLength % blockElems !== 0 || data.length % rowLength !== 0) {
    throw new RangeError(
      `${format}: rows of ${rowLength} elements must be whole ${blockElems}-element blocks ` +
        `dividing the ${data.length} values`,
    );
  }
  if (importance.length !== rowLength) {
    throw new RangeError(
      `${format}: the importance vector has ${importance.length} values for rows of ${rowLength}`,
    );
  }
  for (let i = 0; i < importance.length; i++) {
    if (!Number.isFinite(importance[i])) {
      throw new RangeError(
        `${format}: importance value ${i} is ${importance[i]}; it must be finite`,
      );
    }
  }
}
