/**
 * The IQ1_S encoder, byte for byte as ggml's `quantize_row_iq1_s_impl` with an
 * importance matrix (it has no other fit; llama-quantize refuses IQ1_S
 * without one). Each 32-element sub-block takes values −1, 0, +1 shifted by
 * ±1/8: the weighted least-squares optimum over every split of the sorted
 * values into three runs is found exactly (prefix sums of w·x and w), then
 * each run of 8 codes is snapped to the 2048-point grid (the best of its
 * neighbours when off it) and the scale refitted; sub-block scales are coded
 * in 3 bits with the shift's sign, against the block's `d`.
 *
 * Arithmetic is float32 at every step, as in C, in ggml's order; values sort
 * stably (glibc's merge sort), so ties keep their order.
 *
 * @module
 */

import { latticeData } from "./lattice_search.ts";
import { imatrixWeight, nearestInt, sumSquares, writeF16 } from "./scalar.ts";

const f = Math.fround;

/** Code levels with the +1/8 and −1/8 shifts (IQ1S_DELTA). */
const X_P = [f(-0.875), f(0.125), f(1.125)];
const X_M = [f(-1.125), f(-0.125), f(0.875)];
/** GROUP_MAX_EPS_IQ1_S. */
const EPS = f(1e-12);

// Scratch for one sub-block.
const weight = new Float32Array(32);
const sumx = new Float32Array(33);
const sumw = new Float32Array(33);
const L = new Int8Array(32);
const order = Array.from({ length: 32 }, (_, i) => i);

/**
 * One IQ1_S block (50 bytes: f16 `d`, the low 8 bits of 32 eleven-bit grid
 * indices, then per sub-block a u16 of their top 3 bits ×4, a 3-bit scale and
 * the shift's sign) of `x[xo … xo+255]` at `y[yo]`, fitted with the
 * importance values at `qw[qo …]`.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ1_S } from "./iq1_encode.ts";
 * const y = new Uint8Array(50);
 * quantizeBlockIQ1_S(new Float32Array(256).map((_, i) => Math.sin(i)), 0, y, 0, new Float32Array(256).fill(1), 0);
 * ```
 */
export function quantizeBlockIQ1_S(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw: Float32Array,
  qo: number,
): void {
  const d = latticeData("iq1s", 3);
  const scales = new Float32Array(8);
  const shifts = new Int8Array(8);
  const qh = new Uint16Array(8);
  let maxScale = 0;
  y.fill(0, yo, yo + 50);
  const sigma2 = f(f(2 * sumSquares(x, xo, 256)) / 256);
  for (let ib = 0; ib < 8; ib++) {
    const xb = xo + 32 * ib;
    for (let i = 0; i < 32; i++) weight[i] = imatrixWeight(qw[qo + 32 * ib + i], x[xb + i], sigma2);
    let max = Math.abs(x[xb]);
    for (let i = 1; i < 32; i++) max = Math.max(max, Math.abs(x[xb + i]));
    scales[ib] = 0;
    shifts[ib] = 1;
    if (max < EPS) continue;
    // Sort by value (stable), then prefix sums of w·x and w in that order.
    for (let j = 0; j < 32; j++) order[j] = j;
    order.sort((a, b) => x[xb + a] - x[xb + b]);
    sumx[0] = sumw[0] = 0;
    for (let j = 0; j < 32; j++) {
      const i = order[j];
      sumx[j + 1] = f(sumx[j] + f(weight[i] * x[xb + i]));
      sumw[j + 1] = f(sumw[j] + weight[i]);
    }
    let best = -3.4028234663852886e38, scale = max;
    let bi1 = -1, bi2 = -1, bestShift = 0;
    for (let i1 = 0; i1 <= 32; i1++) {
      for (let i2 = i1; i2 <= 32; i2++) {
        for (const [xs, shift] of [[X_P, 1], [X_M, -1]] as const) {
          const sumqx = f(
            f(f(f(sumx[i1] - sumx[0]) * xs[0]) + f(f(sumx[i2] - sumx[i1]) * xs[1])) +
              f(f(sumx[32] - sumx[i2]) * xs[2]),
          );
          const sumq2 = f(
            f(
              f(f(f(sumw[i1] - sumw[0]) * xs[0]) * xs[0]) +
                f(f(f(sumw[i2] - sumw[i1]) * xs[1]) * xs[1]),
            ) + f(f(f(sumw[32] - sumw[i2]) * xs[2]) * xs[2]),
          );
          if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
            scale = f(sumqx / sumq2);
            best = f(scale * sumqx);
            bi1 = i1;
            bi2 = i2;
            bestShift = shift;
          }
        }
      }
    }
    if (bi1 < 0 || bi2 < 0 || bestShift === 0) continue;
    for (let j = 0; j < 32; j++) L[order[j]] = j < bi1 ? 0 : j < bi2 ? 1 : 2;
    if (scale < 0) {
      for (let j = 0; j < 32; j++) L[j] = 2 - L[j];
      scale = -scale;
      bestShift = -bestShift;
    }
    const xx = bestShift === 1 ? X_P : X_M;
    const index = [0, 0, 0, 0];
    let allOnGrid = true;
    for (let k = 0; k < 4; k++) {
      let u = 0;
      for (let j = 0; j < 8; j++) u |= L[8 * k + j] << (2 * j);
      let gi = d.map[u];
      if (gi < 0) {
        allOnGrid = false;
        // iq1_find_best_neighbour2: the listed point nearest x at `scale` (levels xx).
        const at = -gi - 1, count = d.neighbours[at];
        let bestD2 = Infinity;
        gi = -1;
        for (let n = 1; n <= count; n++) {
          const p = d.neighbours[at + n];
          let d2 = 0;
          for (let i = 0; i < 8; i++) {
            const q = xx[(d.grid[8 * p + i] - 1) >> 1];
            const diff = f(f(scale * q) - x[xb + 8 * k + i]);
            d2 = f(d2 + f(f(weight[8 * k + i] * diff) * diff));
          }
          if (d2 < bestD2) {
            bestD2 = d2;
            gi = p;
          }
        }
        for (let i = 0; i < 8; i++) L[8 * k + i] = (d.grid[8 * gi + i] - 1) >> 1;
      }
      index[k] = gi;
    }
    if (!allOnGrid) {
      let sumqx = 0, sumq2 = 0;
      for (let k = 0; k < 4; k++) {
        for (let j = 0; j < 8; j++) {
          const w = weight[8 * k + j], q = xx[(d.grid[8 * index[k] + j] - 1) >> 1];
          sumqx = f(sumqx + f(f(w * q) * x[xb + 8 * k + j]));
          sumq2 = f(sumq2 + f(f(w * q) * q));
        }
      }
      if (sumqx > 0 && sumq2 > 0) scale = f(sumqx / sumq2);
    }
    let h = 0;
    for (let k = 0; k < 4; k++) {
      y[yo + 2 + 4 * ib + k] = index[k] & 255;
      h |= (index[k] >> 8) << (3 * k);
    }
    qh[ib] = h;
    scales[ib] = scale;
    shifts[ib] = bestShift;
    maxScale = Math.max(maxScale, scale);
  }
  if (maxScale) {
    const dd = f(maxScale / 15);
    writeF16(y, yo, f(dd * f(1.125)));
    const id = f(1 / dd);
    for (let ib = 0; ib < 8; ib++) {
      let l = Math.max(0, Math.min(7, nearestInt(f(0.5 * f(f(id * scales[ib]) - 1)))));
      if (shifts[ib] === -1) l |= 8;
      qh[ib] |= l << 12;
    }
  }
  for (let ib = 0; ib < 8; ib++) {
    y[yo + 34 + 2 * ib] = qh[ib] & 255;
    y[yo + 35 + 2 * ib] = qh[ib] >> 8;
  }
}
