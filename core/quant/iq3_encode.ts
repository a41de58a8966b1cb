/**
 * The IQ3_XXS and IQ3_S encoders, byte for byte as ggml's reference quantizers
 * (`quantize_row_iq3_xxs_ref`, `quantize_row_iq3_s_ref`, which llama-quantize
 * also runs when it has no importance matrix): each 32-element sub-block takes
 * the sign pattern of its values (IQ3_XXS: an even number of minus signs a run
 * of 8, the cheapest value flipped to make it so), then tries 31 scales (IQ3_S:
 * 19); at each, every run of 4 magnitudes is rounded to levels `2l + 1` and,
 * where that point is not on the grid (256 points; IQ3_S 512), replaced by its
 * best neighbour on the grid (weighted by `|x|`). The best scale by
 * `(Σwxq)² / Σwq²` wins; the sub-block scales are then coded in 4 bits against
 * the block's `d`.
 *
 * Arithmetic is float32 at every step, as in C (`Math.fround`), in ggml's
 * order; the neighbour lists are built as `iq3xs_init_impl` builds them.
 *
 * @module
 */

import { type LatticeData, latticeData, levelSums, oddLevel, signRun } from "./lattice_search.ts";
import { imatrixWeight, sumSquares, writeF16 } from "./scalar.ts";

const f = Math.fround;

/** Scratch of {@linkcode bestNeighbour}: `scale·v` at index v. */
const scaled = new Float64Array(16);

/**
 * ggml's `iq3_find_best_neighbour`: of the neighbours listed at `at`, the
 * point nearest `x[xo…xo+3]` at `scale` weighted by `w`; writes its level
 * indices to `L[xo…]`.
 */
function bestNeighbour(
  d: LatticeData,
  at: number,
  x: Float32Array,
  w: Float32Array,
  xo: number,
  scale: number,
  L: Int8Array,
): void {
  const count = d.neighbours[at];
  const x0 = x[xo], x1 = x[xo + 1], x2 = x[xo + 2], x3 = x[xo + 3];
  const w0 = w[xo], w1 = w[xo + 1], w2 = w[xo + 2], w3 = w[xo + 3];
  // scale·v for the grid's values (the odd levels 1…15), once a call, not once a term.
  for (let v = 1; v < 16; v += 2) scaled[v] = f(scale * v);
  const grid = d.grid, nb = d.neighbours;
  let best = Infinity, index = -1;
  for (let j = 1; j <= count; j++) {
    const p = nb[at + j], g = 4 * p;
    // d2 starts at 0 in ggml, so its first sum is the first term.
    const e0 = f(scaled[grid[g]] - x0);
    let d2 = f(f(w0 * e0) * e0);
    const e1 = f(scaled[grid[g + 1]] - x1);
    d2 = f(d2 + f(f(w1 * e1) * e1));
    const e2 = f(scaled[grid[g + 2]] - x2);
    d2 = f(d2 + f(f(w2 * e2) * e2));
    const e3 = f(scaled[grid[g + 3]] - x3);
    d2 = f(d2 + f(f(w3 * e3) * e3));
    if (d2 < best) {
      best = d2;
      index = p;
    }
  }
  for (let i = 0; i < 4; i++) L[xo + i] = (d.grid[4 * index + i] - 1) >> 1;
}

/**
 * Whether the level indices `L[o…o+3]` are a grid point; if not, they become
 * their best neighbour's.
 */
function snapToGrid(
  d: LatticeData,
  xval: Float32Array,
  waux: Float32Array,
  o: number,
  scale: number,
  L: Int8Array,
): boolean {
  let u = 0;
  for (let i = 0; i < 4; i++) u |= L[o + i] << (3 * i);
  const m = d.map[u];
  if (m >= 0) return true;
  bestNeighbour(d, -m - 1, xval, waux, o, scale, L);
  return false;
}

/** GROUP_MAX_EPS_IQ3_XXS: sub-blocks whose largest magnitude is below it quantize to zero. */
const GROUP_MAX_EPS = f(1e-8);

/** Scratch of one sub-block's search (ggml's stack arrays). */
class SubBlock {
  readonly weight = new Float32Array(32);
  readonly waux = new Float32Array(32);
  readonly xval = new Float32Array(32);
  readonly L = new Int8Array(32);
  readonly Laux = new Int8Array(32);
  readonly onGrid = new Array<boolean>(8);
  readonly onGridAux = new Array<boolean>(8);
  /** Sign bits of each run of 8 (IQ3_XXS: 7 stored, the 8th implied by parity). */
  readonly signs = new Uint8Array(4);
}

/** ggml's σ² of a super-block with an importance matrix: 2·Σx²/256 (float32). */
const superBlockSigma2 = (x: Float32Array, xo: number) => f(f(2 * sumSquares(x, xo, 256)) / 256);

/**
 * The search of ggml's `quantize_row_iq3_{xxs,s}_impl` for the sub-block
 * `x[xb … xb+31]`: fills `sb.L` and `sb.signs` and returns its scale, or
 * undefined for a sub-block ggml skips (all zero; IQ3_XXS: all below 1e-8).
 */
function searchSubBlock(
  xxs: boolean,
  d: LatticeData,
  x: Float32Array,
  xb: number,
  sb: SubBlock,
  qw: Float32Array | undefined,
  qo: number,
  sigma2: number,
): number | undefined {
  const { weight, waux, xval, L, Laux, onGrid, onGridAux, signs } = sb;
  const kMaxQ = 8;
  for (let i = 0; i < 32; i++) {
    weight[i] = qw ? imatrixWeight(qw[qo + i], x[xb + i], sigma2) : f(x[xb + i] * x[xb + i]);
  }
  for (let i = 0; i < 32; i++) waux[i] = f(Math.sqrt(weight[i]));
  for (let k = 0; k < 4; k++) signs[k] = signRun(x, xb, weight, xval, k, xxs);
  let max = xval[0];
  for (let i = 1; i < 32; i++) max = Math.max(max, xval[i]);
  L.fill(0);
  if (xxs ? max < GROUP_MAX_EPS : max === 0) return undefined;
  let best = 0;
  let scale = f(max / (2 * kMaxQ - 1));
  onGrid.fill(xxs);
  const range = xxs ? 15 : 9;
  for (let is = -range; is <= range; is++) {
    const id = f(f(2 * kMaxQ - 1 + f(is * f(0.2))) / max);
    const thisScale = f(1 / id);
    for (let k = 0; k < 8; k++) {
      for (let i = 0; i < 4; i++) Laux[4 * k + i] = oddLevel(id, xval[4 * k + i], kMaxQ - 1);
      onGridAux[k] = snapToGrid(d, xval, waux, 4 * k, thisScale, Laux);
    }
    const [sumqx, sumq2] = levelSums(32, weight, xval, Laux);
    if (sumq2 > 0 && f(sumqx * sumqx) > f(best * sumq2)) {
      scale = f(sumqx / sumq2);
      best = f(scale * sumqx);
      L.set(Laux);
      for (let k = 0; k < 8; k++) onGrid[k] = onGridAux[k];
    }
  }
  if (onGrid.some((g) => !g) && scale > 0) {
    const id = f(1 / scale);
    for (let k = 0; k < 8; k++) {
      // IQ3_S redoes every point here (ggml's `continue` is commented out there).
      if (xxs && onGrid[k]) continue;
      for (let i = 0; i < 4; i++) L[4 * k + i] = oddLevel(id, xval[4 * k + i], kMaxQ - 1);
      snapToGrid(d, xval, waux, 4 * k, scale, L);
    }
    const [sumqx, sumq2] = levelSums(32, weight, xval, L);
    if (sumq2 > 0) scale = f(sumqx / sumq2);
  }
  if (scale < 0) {
    // ggml: "should never happen"; the scale is coded unsigned, so flip the signs.
    scale = -scale;
    for (let k = 0; k < 4; k++) signs[k] = ~signs[k] & (xxs ? 127 : 255);
  }
  return scale;
}

/** The grid index of sub-block point `k` (its level indices must be on the grid). */
function gridIndex(d: LatticeData, L: Int8Array, k: number): number {
  let u = 0;
  for (let i = 0; i < 4; i++) u |= L[4 * k + i] << (3 * i);
  const index = d.map[u];
  if (index < 0) throw new Error(`internal: IQ3 point ${u} is not on the grid`);
  return index;
}

/** The 4-bit code of sub-block scale `s` against `d`'s reciprocal `id`. */
const scaleCode = (id: number, s: number) => oddLevel(id, s, 15);

/**
 * One IQ3_XXS block (98 bytes: f16 `d`, 64 grid indices, 8 words of signs
 * and scale) of `x[xo … xo+255]` at `y[yo]`, as `quantize_row_iq3_xxs_ref`,
 * or, given an importance matrix's 256 values at `qw[qo]`, as
 * `quantize_row_iq3_xxs_impl` with them.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ3_XXS } from "./iq3_encode.ts";
 * const y = new Uint8Array(98);
 * quantizeBlockIQ3_XXS(new Float32Array(256).map((_, i) => Math.sin(i)), 0, y, 0);
 * ```
 */
export function quantizeBlockIQ3_XXS(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw?: Float32Array,
  qo = 0,
): void {
  const d = latticeData("iq3xxs", 2);
  const sigma2 = qw ? superBlockSigma2(x, xo) : 0;
  const sb = new SubBlock();
  const q3 = new Uint8Array(96);
  const signsAndScales = new Uint32Array(8);
  const scales = new Float32Array(8);
  let maxScale = 0;
  for (let ib = 0; ib < 8; ib++) {
    const scale = searchSubBlock(true, d, x, xo + 32 * ib, sb, qw, qo + 32 * ib, sigma2);
    if (scale === undefined) continue;
    scales[ib] = scale;
    for (let k = 0; k < 8; k++) q3[8 * ib + k] = gridIndex(d, sb.L, k);
    const s = sb.signs;
    signsAndScales[ib] = s[0] | (s[1] << 7) | (s[2] << 14) | (s[3] << 21);
    maxScale = Math.max(maxScale, scale);
  }
  y.fill(0, yo, yo + 98);
  if (!maxScale) return;
  const dl = f(maxScale / 31);
  writeF16(y, yo, f(dl * f(1.0125)));
  const id = f(1 / dl);
  for (let ib = 0; ib < 8; ib++) {
    signsAndScales[ib] = (signsAndScales[ib] | (scaleCode(id, scales[ib]) << 28)) >>> 0;
  }
  new Uint8Array(q3.buffer, 64, 32).set(new Uint8Array(signsAndScales.buffer));
  y.set(q3, yo + 2);
}

/**
 * One IQ3_S block (110 bytes: f16 `d`, 64 low bytes of grid indices, 8 bytes
 * of their ninth bits, 32 sign bytes, 4 bytes of nibble scales) of
 * `x[xo … xo+255]` at `y[yo]`, as `quantize_row_iq3_s_ref`.
 *
 * @example
 * ```ts
 * import { quantizeBlockIQ3_S } from "./iq3_encode.ts";
 * const y = new Uint8Array(110);
 * quantizeBlockIQ3_S(new Float32Array(256).map((_, i) => Math.sin(i)), 0, y, 0);
 * ```
 */
export function quantizeBlockIQ3_S(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw?: Float32Array,
  qo = 0,
): void {
  const d = latticeData("iq3s", 3);
  const sigma2 = qw ? superBlockSigma2(x, xo) : 0;
  const sb = new SubBlock();
  const scales = new Float32Array(8);
  let maxScale = 0;
  y.fill(0, yo, yo + 110);
  // ggml advances its index and sign pointers only past the sub-blocks it
  // writes: after a skipped (all-zero) one, the rest sit 8 indices and 4 sign
  // bytes early (the ninth bits stay in place). Written the same, byte for byte.
  let qs = yo + 2, sg = yo + 74;
  for (let ib = 0; ib < 8; ib++) {
    const scale = searchSubBlock(false, d, x, xo + 32 * ib, sb, qw, qo + 32 * ib, sigma2);
    if (scale === undefined) continue;
    for (let k = 0; k < 8; k++) {
      const index = gridIndex(d, sb.L, k);
      y[qs + k] = index & 255;
      y[yo + 66 + ib] |= (index >> 8) << k;
    }
    qs += 8;
    y.set(sb.signs, sg);
    sg += 4;
    scales[ib] = scale;
    maxScale = Math.max(maxScale, scale);
  }
  if (!maxScale) return;
  const dl = f(maxScale / 31);
  writeF16(y, yo, f(dl * f(1.033)));
  const id = f(1 / dl);
  for (let ib = 0; ib < 8; ib += 2) {
    y[yo + 106 + ib / 2] = scaleCode(id, scales[ib]) | (scaleCode(id, scales[ib + 1]) << 4);
  }
}
