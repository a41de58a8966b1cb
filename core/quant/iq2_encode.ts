/**
 * The IQ2_XXS, IQ2_XS and IQ2_S encoders, byte for byte as ggml's
 * `quantize_row_iq2_{xxs,xs,s}_impl` with an importance matrix (llama-quantize
 * refuses these types without one): each sub-block (32 elements; IQ2_XS and
 * IQ2_S 16) takes the sign pattern of its values (IQ2_XXS/XS: an even number
 * of minus signs a run of 8, the least important value flipped to make it so,
 * 7 signs stored; IQ2_S all 8), then tries a range of scales; at each, every
 * run of 8 magnitudes is rounded to levels `2l + 1` (l ≤ 2) and, where that
 * point is not on the grid (256 points; IQ2_XS 512, IQ2_S 1024), replaced by
 * its best neighbour (weighted by `√weight`). The best scale by `(Σwxq)² / Σwq²` wins, and the
 * sub-block scales are coded in 4 bits against the block's `d`.
 *
 * Arithmetic is float32 at every step, as in C (`Math.fround`), in ggml's
 * order; the neighbour lists are `iq2xs_init_impl`'s.
 *
 * @module
 */

import { type LatticeData, latticeData, levelSums, oddLevel, signRun } from "./lattice_search.ts";
import { makeQpQuants } from "./qp_fit.ts";
import { GROUP_MAX_EPS, imatrixWeight, sumSquares, writeF16 } from "./scalar.ts";

const f = Math.fround;

/** The point index of the level indices `L[o…o+7]`, snapped to the best neighbour when off the grid. */
function gridPoint(
  d: LatticeData,
  xval: Float32Array,
  waux: Float32Array,
  o: number,
  scale: number,
  L: Int8Array,
): { index: number; onGrid: boolean } {
  let u = 0;
  for (let i = 0; i < 8; i++) u |= L[o + i] << (2 * i);
  const m = d.map[u];
  if (m >= 0) return { index: m, onGrid: true };
  // iq2_find_best_neighbour: the listed point nearest x at `scale`, weighted.
  const at = -m - 1, count = d.neighbours[at];
  let best = Infinity, index = -1;
  for (let j = 1; j <= count; j++) {
    const p = d.neighbours[at + j];
    let d2 = 0;
    for (let i = 0; i < 8; i++) {
      const diff = f(f(scale * d.grid[8 * p + i]) - xval[o + i]);
      d2 = f(d2 + f(f(waux[o + i] * diff) * diff));
    }
    if (d2 < best) {
      best = d2;
      index = p;
    }
  }
  for (let i = 0; i < 8; i++) L[o + i] = (d.grid[8 * index + i] - 1) >> 1;
  return { index, onGrid: false };
}

// Scratch for one sub-block (ggml's stack arrays); the codecs are synchronous.
const weight = new Float32Array(32);
const waux = new Float32Array(32);
const xval = new Float32Array(32);
const L = new Int8Array(32);
const Laux = new Int8Array(32);
const Lqp = new Uint8Array(32);
const signs = new Uint8Array(4);
const onGrid = [true, true, true, true], onGridAux = [true, true, true, true];

/**
 * Weights, magnitudes and sign patterns of the `n` values at `x[xb]`
 * (importance at `qw[qo]`, `sigma2` the super-block's mean square).
 */
function prepare(
  x: Float32Array,
  xb: number,
  n: number,
  qw: Float32Array,
  qo: number,
  sigma2: number,
  parity = true,
): number {
  for (let i = 0; i < n; i++) weight[i] = imatrixWeight(qw[qo + i], x[xb + i], sigma2);
  for (let i = 0; i < n; i++) waux[i] = f(Math.sqrt(weight[i]));
  for (let k = 0; k < n / 8; k++) signs[k] = signRun(x, xb, weight, xval, k, parity);
  let max = xval[0];
  for (let i = 1; i < n; i++) max = xval[i] > max ? xval[i] : max;
  return max;
}

/** ggml's σ² of a super-block for IQ2: Σx²/256 (IQ2_S: 2·Σx²/256; float32, in order). */
function sigma2Of(x: Float32Array, xo: number, twice = false): number {
  const s = sumSquares(x, xo, 256);
  return f((twice ? f(2 * s) : s) / 256);
}

/** A negative fit flips the scale and the stored signs (ggml's "should never happen"). */
function positive(scale: number, runs: number, mask = 127): number {
  if (scale >= 0) return scale;
  for (let k = 0; k < runs; k++) signs[k] = ~signs[k] & mask;
  return -scale;
}

/**
 * One IQ2_XXS block (66 bytes: f16 `d`, then per 32-element sub-block a word
 * of four grid indices and a word of 4×7 signs and a 4-bit scale) of
 * `x[xo … xo+255]` at `y[yo]`, fitted with the importance values at
 * `qw[qo …]`, as `quantize_row_iq2_xxs_impl`.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ2_XXS } from "./iq2_encode.ts";
 * const y = new Uint8Array(66);
 * quantizeBlockIQ2_XXS(new Float32Array(256).map((_, i) => Math.sin(i)), 0, y, 0, new Float32Array(256).fill(1), 0);
 * ```
 */
export function quantizeBlockIQ2_XXS(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw: Float32Array,
  qo: number,
): void {
  const d = latticeData("iq2xxs", 2);
  const kMaxQ = 3;
  const q2 = new Uint32Array(16);
  const scales = new Float32Array(8);
  let maxScale = 0;
  const sigma2 = sigma2Of(x, xo);
  y.fill(0, yo, yo + 66);
  for (let ib = 0; ib < 8; ib++) {
    const max = prepare(x, xo + 32 * ib, 32, qw, qo + 32 * ib, sigma2);
    if (max < GROUP_MAX_EPS) {
      scales[ib] = 0;
      L.fill(0);
      continue;
    }
    let scale = makeQpQuants(32, kMaxQ + 1, xval, Lqp, weight);
    const effMax = f(scale * kMaxQ);
    if (effMax <= 0) {
      scales[ib] = 0;
      L.fill(0);
      continue;
    }
    for (let i = 0; i < 32; i++) L[i] = Lqp[i];
    let best = 0;
    for (let is = -6; is <= 6; is++) {
      const id = f(f(2 * kMaxQ - 1 + f(is * f(0.1))) / effMax);
      const thisScale = f(1 / id);
      for (let k = 0; k < 4; k++) {
        for (let i = 0; i < 8; i++) Laux[8 * k + i] = oddLevel(id, xval[8 * k + i], kMaxQ - 1);
        gridPoint(d, xval, waux, 8 * k, thisScale, Laux);
      }
      const [sumqx, sumq2] = levelSums(32, weight, xval, Laux);
      if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
        scale = f(sumqx / sumq2);
        best = f(scale * sumqx);
        L.set(Laux);
      }
    }
    if (scale > 0) {
      const id = f(1 / scale);
      for (let k = 0; k < 4; k++) {
        for (let i = 0; i < 8; i++) L[8 * k + i] = oddLevel(id, xval[8 * k + i], kMaxQ - 1);
        gridPoint(d, xval, waux, 8 * k, scale, L);
      }
      const [sumqx, sumq2] = levelSums(32, weight, xval, L);
      if (sumq2 > 0) scale = f(sumqx / sumq2);
    }
    scale = positive(scale, 4);
    for (let k = 0; k < 4; k++) {
      const { index } = gridPoint(d, xval, waux, 8 * k, scale, L);
      q2[2 * ib] |= index << (8 * k);
      q2[2 * ib + 1] |= signs[k] << (7 * k);
    }
    scales[ib] = scale;
    maxScale = Math.max(maxScale, scale);
  }
  if (!maxScale) return;
  const dd = f(maxScale / 31);
  writeF16(y, yo, dd);
  const id = f(1 / dd);
  for (let ib = 0; ib < 8; ib++) {
    q2[2 * ib + 1] = (q2[2 * ib + 1] | (oddLevel(id, scales[ib], 15) << 28)) >>> 0;
  }
  y.set(new Uint8Array(q2.buffer), yo + 2);
}

/**
 * One IQ2_XS block (74 bytes: f16 `d`, per 16-element sub-block two 16-bit
 * words of a 9-bit grid index and 7 signs, then eight bytes of two 4-bit
 * scales) of `x[xo … xo+255]` at `y[yo]`, fitted with the importance values
 * at `qw[qo …]`, as `quantize_row_iq2_xs_impl`.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ2_XS } from "./iq2_encode.ts";
 * const y = new Uint8Array(74);
 * quantizeBlockIQ2_XS(new Float32Array(256).map((_, i) => Math.cos(i)), 0, y, 0, new Float32Array(256).fill(1), 0);
 * ```
 */
export function quantizeBlockIQ2_XS(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw: Float32Array,
  qo: number,
): void {
  y.fill(0, yo, yo + 74);
  const q2 = new Uint16Array(32);
  const dd = search16(false, x, xo, qw, qo, (ib, k, index) => {
    q2[2 * ib + k] = index | (signs[k] << 9);
  });
  if (dd === undefined) return;
  writeF16(y, yo, dd.d);
  for (let ib = 0; ib < 16; ib++) y[yo + 66 + (ib >> 1)] |= dd.code(ib) << (4 * (ib & 1));
  y.set(new Uint8Array(q2.buffer), yo + 2);
}

/**
 * One IQ2_S block (82 bytes: f16 `d`, the low 8 bits of 32 ten-bit grid
 * indices, 32 sign bytes, their top 2 bits, eight bytes of two 4-bit scales)
 * of `x[xo … xo+255]` at `y[yo]`, fitted with the importance values at
 * `qw[qo …]`, as `quantize_row_iq2_s_impl`.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ2_S } from "./iq2_encode.ts";
 * const y = new Uint8Array(82);
 * quantizeBlockIQ2_S(new Float32Array(256).map((_, i) => Math.sin(i)), 0, y, 0, new Float32Array(256).fill(1), 0);
 * ```
 */
export function quantizeBlockIQ2_S(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw: Float32Array,
  qo: number,
): void {
  y.fill(0, yo, yo + 82);
  const dd = search16(true, x, xo, qw, qo, (ib, k, index) => {
    const i8 = 2 * ib + k;
    y[yo + 2 + i8] = index & 255;
    y[yo + 66 + (i8 >> 2)] |= (index >> 8) << (2 * (i8 & 3));
    y[yo + 34 + i8] = signs[k];
  });
  if (dd === undefined) return;
  writeF16(y, yo, f(dd.d * f(0.9875)));
  for (let ib = 0; ib < 16; ib++) y[yo + 74 + (ib >> 1)] |= dd.code(ib) << (4 * (ib & 1));
}

/**
 * The 16-element sub-block search IQ2_XS and IQ2_S share (IQ2_S: no sign
 * parity, σ² doubled, a 1e-8 floor, its 1024-point grid); `put` stores each
 * point's grid index (the signs are in `signs`). Returns the super-block's
 * `d` and each sub-block's 4-bit scale code, or undefined when all are zero.
 */
function search16(
  isS: boolean,
  x: Float32Array,
  xo: number,
  qw: Float32Array,
  qo: number,
  put: (ib: number, k: number, index: number) => void,
): { d: number; code: (ib: number) => number } | undefined {
  const d = isS ? latticeData("iq2s", 1) : latticeData("iq2xs", 2);
  const kMaxQ = 3;
  const eps = isS ? f(1e-8) : GROUP_MAX_EPS;
  const scales = new Float32Array(16);
  let maxScale = 0;
  const sigma2 = sigma2Of(x, xo, isS);
  for (let ib = 0; ib < 16; ib++) {
    const max = prepare(x, xo + 16 * ib, 16, qw, qo + 16 * ib, sigma2, !isS);
    L.fill(0, 0, 16);
    if (max < eps) {
      scales[ib] = 0;
      continue;
    }
    let best = 0;
    let scale = f(max / (2 * kMaxQ - 1));
    onGrid[0] = onGrid[1] = true;
    for (let is = -9; is <= 9; is++) {
      const id = f(f(2 * kMaxQ - 1 + f(is * f(0.1))) / max);
      const thisScale = f(1 / id);
      for (let k = 0; k < 2; k++) {
        for (let i = 0; i < 8; i++) Laux[8 * k + i] = oddLevel(id, xval[8 * k + i], kMaxQ - 1);
        onGridAux[k] = gridPoint(d, xval, waux, 8 * k, thisScale, Laux).onGrid;
      }
      const [sumqx, sumq2] = levelSums(16, weight, xval, Laux);
      if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
        scale = f(sumqx / sumq2);
        best = f(scale * sumqx);
        for (let i = 0; i < 16; i++) L[i] = Laux[i];
        onGrid[0] = onGridAux[0];
        onGrid[1] = onGridAux[1];
      }
    }
    if ((!onGrid[0] || !onGrid[1]) && scale > 0) {
      const id = f(1 / scale);
      for (let k = 0; k < 2; k++) {
        if (onGrid[k]) continue;
        for (let i = 0; i < 8; i++) L[8 * k + i] = oddLevel(id, xval[8 * k + i], kMaxQ - 1);
        gridPoint(d, xval, waux, 8 * k, scale, L);
      }
      const [sumqx, sumq2] = levelSums(16, weight, xval, L);
      if (sumq2 > 0) scale = f(sumqx / sumq2);
    }
    scale = positive(scale, 2, isS ? 255 : 127);
    for (let k = 0; k < 2; k++) put(ib, k, gridPoint(d, xval, waux, 8 * k, scale, L).index);
    scales[ib] = scale;
    maxScale = Math.max(maxScale, scale);
  }
  if (!maxScale) return undefined;
  const dd = f(maxScale / 31);
  const id = f(1 / dd);
  return { d: dd, code: (ib) => oddLevel(id, scales[ib], 15) };
}
