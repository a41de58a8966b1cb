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
import { f16Bits, imatrixWeight, nearestInt, sumSquares, writeF16 } from "./scalar.ts";

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
 * ggml's `iq1_find_best_neighbour2`: of the grid points listed for the off-grid
 * word whose map entry is `gi`, the one nearest `x[xo…xo+7]` at `scale` with
 * levels `xs`, in the weights `w[wo…]` (the first of equals).
 */
function bestNeighbour(
  d: ReturnType<typeof latticeData>,
  gi: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  wo: number,
  scale: number,
  xs: readonly number[],
): number {
  const at = -gi - 1, count = d.neighbours[at];
  let bestD2 = Infinity, best = -1;
  for (let n = 1; n <= count; n++) {
    const p = d.neighbours[at + n];
    let d2 = 0;
    for (let i = 0; i < 8; i++) {
      const q = xs[(d.grid[8 * p + i] - 1) >> 1];
      const diff = f(f(scale * q) - x[xo + i]);
      d2 = f(d2 + f(f(w[wo + i] * diff) * diff));
    }
    if (d2 < bestD2) {
      bestD2 = d2;
      best = p;
    }
  }
  return best;
}

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
        gi = bestNeighbour(d, gi, x, xb + 8 * k, weight, 8 * k, scale, xx);
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

/** GROUP_MAX_EPS_IQ1_M. */
const EPS_M = f(1e-7);
/** The qh bits of each IQ1_M shift pair (k: first half +/−, second half +/−): ggml's `masks`. */
const SHIFT_MASKS = [0x00, 0x80, 0x08, 0x88];
// Scratch for one IQ1_M block: its weights; per sorted position of a sub-block and
// level, w·q·x and w·q² at ±1/8.
const wM = new Float32Array(256);
const orderM = Array.from({ length: 16 }, (_, i) => i);
const qxP = new Float32Array(48), qxM = new Float32Array(48);
const q2P = new Float32Array(48), q2M = new Float32Array(48);
// Running sums w·q·x (0…3) and w·q² (4…7) of the four sign pairs; float32 storage rounds each add.
const head = new Float32Array(8), mid = new Float32Array(8), tail = new Float32Array(8);

/** Adds sorted value `j`'s terms at level `lv` to the running sums `s`. */
function addTerm(s: Float32Array, j: number, lv: number): void {
  const at = 3 * j + lv;
  const px = qxP[at], mx = qxM[at], p2 = q2P[at], m2 = q2M[at];
  const first = orderM[j] < 8;
  s[0] += px;
  s[1] += first ? px : mx;
  s[2] += first ? mx : px;
  s[3] += mx;
  s[4] += p2;
  s[5] += first ? p2 : m2;
  s[6] += first ? m2 : p2;
  s[7] += m2;
}

/** The levels of IQ1_M half `k` (0, 1) of a sub-block with shift pair `s` (0…3). */
const halfLevels = (s: number, k: number) => (k === 0 ? s < 2 : s % 2 === 0) ? X_P : X_M;

/**
 * ggml's IQ1_M weights of the block's 256 values into `wM`: `qw·√(σ² + x²)`, or
 * `x²` without a matrix (ggml computes them again for its final refit; once is
 * the same numbers).
 */
function iq1mWeights(
  x: Float32Array,
  xo: number,
  qw: Float32Array | undefined,
  qo: number,
  sigma2: number,
): void {
  for (let i = 0; i < 256; i++) {
    wM[i] = qw ? imatrixWeight(qw[qo + i], x[xo + i], sigma2) : f(x[xo + i] * x[xo + i]);
  }
}

/**
 * One IQ1_M block (56 bytes: the low 8 bits of 32 eleven-bit grid indices,
 * per 16-element sub-block a byte of their top 3 bits ×2 and the two halves'
 * shift signs, then four u16 words of 3-bit sub-block scales whose top nibbles
 * hold the f16 block scale) of `x[xo … xo+255]` at `y[yo]`, byte for byte as
 * ggml's `quantize_row_iq1_m_impl`: fitted with the importance values at
 * `qw[qo …]`, or with weights `x²` when `qw` is undefined (ggml quantizes
 * IQ1_M without a matrix; llama-quantize refuses to, but for the embeddings
 * and output). As IQ1_S, each sub-block's three-run split is searched
 * exhaustively — here for each of the four sign pairs of its two halves —
 * then snapped to the grid; the block scale is refitted over the whole block.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ1_M } from "./iq1_encode.ts";
 * const y = new Uint8Array(56);
 * quantizeBlockIQ1_M(new Float32Array(256).map((_, i) => Math.sin(i)), 0, y, 0, undefined, 0);
 * ```
 */
export function quantizeBlockIQ1_M(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw: Float32Array | undefined,
  qo: number,
): void {
  const d = latticeData("iq1s", 3);
  const scales = new Float32Array(16);
  const shifts = new Int8Array(16);
  const sc = new Uint16Array(4);
  let maxScale = 0;
  y.fill(0, yo, yo + 56);
  const sigma2 = f(f(2 * sumSquares(x, xo, 256)) / 256);
  iq1mWeights(x, xo, qw, qo, sigma2);
  for (let ib = 0; ib < 16; ib++) {
    const xb = xo + 16 * ib, wb = 16 * ib;
    let max = Math.abs(x[xb]);
    for (let i = 1; i < 16; i++) max = Math.max(max, Math.abs(x[xb + i]));
    scales[ib] = 0;
    shifts[ib] = 0;
    if (max < EPS_M) continue;
    for (let j = 0; j < 16; j++) orderM[j] = j;
    orderM.sort((a, b) => x[xb + a] - x[xb + b]);
    // Each sorted value's terms at each level, with the +1/8 and −1/8 shifts.
    for (let j = 0; j < 16; j++) {
      const i = orderM[j], w = wM[wb + i], v = x[xb + i];
      for (let lv = 0; lv < 3; lv++) {
        qxP[3 * j + lv] = f(f(w * X_P[lv]) * v);
        qxM[3 * j + lv] = f(f(w * X_M[lv]) * v);
        q2P[3 * j + lv] = f(f(w * X_P[lv]) * X_P[lv]);
        q2M[3 * j + lv] = f(f(w * X_M[lv]) * X_M[lv]);
      }
    }
    let best = -3.4028234663852886e38, scale = max;
    let bi1 = -1, bi2 = -1, bestK = -1;
    // ggml sums each split's terms in sorted order from zero; the states after
    // the level-0 run (`head`) and the level-1 run (`mid`) carry over from the
    // previous split unchanged, so only the level-2 tail is summed anew.
    head.fill(0);
    for (let i1 = 0; i1 <= 16; i1++) {
      if (i1 > 0) addTerm(head, i1 - 1, 0);
      mid.set(head);
      for (let i2 = i1; i2 <= 16; i2++) {
        if (i2 > i1) addTerm(mid, i2 - 1, 1);
        tail.set(mid);
        for (let j = i2; j < 16; j++) addTerm(tail, j, 2);
        // Sign pairs 0: (+,+), 1: (+,−), 2: (−,+), 3: (−,−) for the halves (i < 8, i ≥ 8).
        for (let k = 0; k < 4; k++) {
          const sqx = tail[k], sq2 = tail[4 + k];
          if (sq2 > 0 && f(sqx * sqx) > f(best * sq2)) {
            scale = f(sqx / sq2);
            best = f(scale * sqx);
            bi1 = i1;
            bi2 = i2;
            bestK = k;
          }
        }
      }
    }
    if (bi1 < 0 || bi2 < 0 || bestK < 0) continue;
    for (let j = 0; j < 16; j++) L[orderM[j]] = j < bi1 ? 0 : j < bi2 ? 1 : 2;
    if (scale < 0) {
      for (let j = 0; j < 16; j++) L[j] = 2 - L[j];
      scale = -scale;
      bestK = 3 - bestK;
    }
    const index = [0, 0];
    let allOnGrid = true;
    for (let k = 0; k < 2; k++) {
      let u = 0;
      for (let j = 0; j < 8; j++) u |= L[8 * k + j] << (2 * j);
      let gi = d.map[u];
      if (gi < 0) {
        allOnGrid = false;
        gi = bestNeighbour(d, gi, x, xb + 8 * k, wM, wb + 8 * k, scale, halfLevels(bestK, k));
      }
      index[k] = gi;
    }
    if (!allOnGrid) {
      let sumqx = 0, sumq2 = 0;
      for (let k = 0; k < 2; k++) {
        const xx = halfLevels(bestK, k);
        for (let j = 0; j < 8; j++) {
          const w = wM[wb + 8 * k + j], q = xx[(d.grid[8 * index[k] + j] - 1) >> 1];
          sumqx = f(sumqx + f(f(w * q) * x[xb + 8 * k + j]));
          sumq2 = f(sumq2 + f(f(w * q) * q));
        }
      }
      if (sumqx > 0 && sumq2 > 0) scale = f(sumqx / sumq2);
    }
    y[yo + 2 * ib] = index[0] & 255;
    y[yo + 2 * ib + 1] = index[1] & 255;
    y[yo + 32 + ib] = (index[0] >> 8) | ((index[1] >> 8) << 4);
    scales[ib] = scale;
    shifts[ib] = bestK;
    maxScale = Math.max(maxScale, scale);
  }
  if (!maxScale) return;
  let dd = f(maxScale / 15);
  const id = f(1 / dd);
  let sumqx = 0, sumq2 = 0;
  for (let ib = 0; ib < 16; ib++) {
    const l = Math.max(0, Math.min(7, nearestInt(f(0.5 * f(f(id * scales[ib]) - 1)))));
    sc[ib >> 2] |= l << (3 * (ib & 3));
    const qh = y[yo + 32 + ib] |= SHIFT_MASKS[shifts[ib]];
    const xb = xo + 16 * ib;
    // Refit the block scale over every sub-block as stored (skipped ones: point 0, scale 1).
    for (let k = 0; k < 2; k++) {
      const xx = halfLevels(shifts[ib], k);
      const gi = y[yo + 2 * ib + k] + ((qh << (8 - 4 * k)) & 0x700);
      for (let j = 0; j < 8; j++) {
        const w = wM[16 * ib + 8 * k + j], q = f(xx[(d.grid[8 * gi + j] - 1) >> 1] * (2 * l + 1));
        sumqx = f(sumqx + f(f(w * q) * x[xb + 8 * k + j]));
        sumq2 = f(sumq2 + f(f(w * q) * q));
      }
    }
  }
  if (sumq2 > 0) dd = f(sumqx / sumq2);
  const s = f16Bits(f(dd * f(1.1125)));
  for (let i = 0; i < 4; i++) {
    const word = sc[i] | (((s >> (4 * i)) & 15) << 12);
    y[yo + 48 + 2 * i] = word & 255;
    y[yo + 49 + 2 * i] = word >> 8;
  }
}
