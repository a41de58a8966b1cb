/**
 * ggml's Q4_K and Q5_K super-blocks: 256 elements in eight sub-blocks of 32,
 * each `x = d·sc·q − dmin·m` with 6-bit sub-block scales `sc` and mins `m` packed
 * into 12 bytes. Encoded as llama.cpp's `quantize_row_q4_K_ref` /
 * `quantize_row_q5_K_ref` write them (each sub-block fitted by
 * `make_qkx2_quants`), decoded as `dequantize_row_q4_K` / `_q5_K` read them.
 *
 * Layouts (little-endian): Q4_K `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}`
 * (144 bytes); Q5_K `{f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}`
 * (176 bytes). Each 64 elements share 32 bytes of `qs`: the first 32 take the
 * low nibbles, the next 32 the high ones. Q5_K's fifth bit of element `64g + l`
 * is bit `2g` of `qh[l]`, of element `64g + 32 + l` bit `2g + 1`.
 *
 * Scales byte packing (`get_scale_min_k4`): for sub-block `j < 4`, `sc` is the
 * low 6 bits of `scales[j]` and `m` those of `scales[j + 4]`; for `j ≥ 4`, the
 * low 4 bits come from the low / high nibble of `scales[j + 4]` and the top 2
 * from bits 6–7 of `scales[j − 4]` / `scales[j]`.
 *
 * @module
 */

import { nearestInt, readF16, sumSquares, writeF16 } from "./scalar.ts";

const f = Math.fround;
/** The grid step `0.1f`: a float32 constant in C, so the float32 nearest 0.1. */
const TENTH = f(0.1);

/** 6-bit scale of sub-block `j` of the scales bytes at `q[o]`. */
function scaleK4(j: number, q: Uint8Array, o: number): number {
  return j < 4 ? q[o + j] & 63 : (q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4);
}

/** 6-bit min of sub-block `j` of the scales bytes at `q[o]`. */
function minK4(j: number, q: Uint8Array, o: number): number {
  return j < 4 ? q[o + j + 4] & 63 : (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4);
}

// Scratch for one super-block; the codecs are synchronous, so one set serves all calls.
const L = new Uint8Array(256);
const laux = new Uint8Array(32);
const weights = new Float32Array(32);
const scales = new Float32Array(16);
const mins = new Float32Array(16);

/**
 * `make_qkx2_quants` for `n` values at `x[xo]` (weights in `w`; errors
 * absolute with `useMad`, else squared): codes `0..nmax` into `Lo[lo..]`
 * and `mo[j]` = −(the fitted offset); returns the fitted scale. It starts from
 * the min/max grid, then tries `nstep + 1` stretched grids, refitting scale and
 * offset by weighted least squares and keeping the one of least weighted
 * squared error. With weights given it is also `make_qkx3_quants` (the two
 * differ only when no weights are passed). `w`, `Lo` and `mo` default to this
 * module's scratch arrays.
 *
 * @example
 * ```ts
 * import { makeQkx2Quants } from "./k_quants.ts";
 * const x = Float32Array.from({ length: 32 }, (_, i) => i / 31);
 * const w = new Float32Array(32).fill(1), codes = new Uint8Array(32), mins = new Float32Array(1);
 * const scale = makeQkx2Quants(15, x, 0, 0, 0, Math.fround(-0.9), Math.fround(0.05), 36, 32, false, w, codes, mins);
 * codes[31]; // 15
 * scale > 0; // true
 * ```
 */
export function makeQkx2Quants(
  nmax: number,
  x: Float32Array,
  xo: number,
  lo: number,
  j: number,
  rmin: number,
  rdelta: number,
  nstep: number,
  n = 32,
  useMad = false,
  w: Float32Array = weights,
  Lo: Uint8Array = L,
  mo: Float32Array = mins,
): number {
  let min = x[xo];
  let max = x[xo];
  let sumW = w[0];
  let sumX = f(sumW * x[xo]);
  // The same sums in float64 (and Σ w·x²), for the bound that skips a trial grid.
  let dW = sumW, dX = sumW * x[xo], dX2 = sumW * x[xo] * x[xo];
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i];
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const wi = w[i];
    sumW = f(sumW + wi);
    sumX = f(sumX + f(wi * xi));
    dW += wi;
    dX += wi * xi;
    dX2 += wi * xi * xi;
  }
  const maxAbs = Math.max(-min, max);
  if (min > 0) min = 0;
  if (max === min) {
    Lo.fill(0, lo, lo + n);
    mo[j] = -min;
    return 0;
  }
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(xi - min)))));
    Lo[lo + i] = l;
    let diff = f(f(f(scale * l) + min) - xi);
    diff = useMad ? Math.abs(diff) : f(diff * diff);
    bestError = f(bestError + f(w[i] * diff));
  }
  if (nstep < 1) {
    mo[j] = -min;
    return scale;
  }
  // Whether the best so far is a least-squares fit of its codes (not the first grid).
  let bestFitted = false;
  for (let is = 0; is <= nstep; is++) {
    // `min` moves to each better fit's offset, and later grids start from it.
    iscale = f(f(f(rmin + f(rdelta * is)) + nmax) / f(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    let dL = 0, dL2 = 0, dXL = 0;
    let same = bestFitted;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(xi - min)))));
      laux[i] = l;
      same &&= l === Lo[lo + i];
      const wi = w[i];
      const wl = f(wi * l);
      sumL = f(sumL + wl);
      sumL2 = f(sumL2 + f(wl * l));
      sumXL = f(sumXL + f(wl * xi));
      dL += wi * l;
      dL2 += wi * l * l;
      dXL += wi * l * xi;
    }
    // The best fit's own codes: the same sums, the same fit, the same error, not kept.
    if (same) continue;
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (!(D > 0)) continue;
    let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
    let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = f(sumXL / sumL2);
    }
    if (
      !useMad &&
      worseForSure(thisScale, thisMin, nmax, maxAbs, bestError, dW, dX, dX2, dL, dL2, dXL)
    ) {
      continue;
    }
    let curError = 0;
    for (let i = 0; i < n; i++) {
      let diff = f(f(f(thisScale * laux[i]) + thisMin) - x[xo + i]);
      diff = useMad ? Math.abs(diff) : f(diff * diff);
      curError = f(curError + f(w[i] * diff));
    }
    if (curError < bestError) {
      for (let i = 0; i < n; i++) Lo[lo + i] = laux[i];
      bestError = curError;
      scale = thisScale;
      min = thisMin;
      bestFitted = true;
    }
  }
  mo[j] = -min;
  return scale;
}

/**
 * Whether the trial grid (codes with weighted sums `dL` = Σ w·l, `dL2` = Σ w·l²,
 * `dXL` = Σ w·l·x, in float64) fitted to scale `s` and offset `m` must have a
 * float32 weighted squared error above `best`, so that make_qkx2_quants's error
 * loop cannot keep it and may be skipped. The exact error Σ w·(s·l + m − x)²
 * comes from the sums in closed form; the float32 loop's result differs from it
 * by at most its rounding: each difference d three roundings off (δ ≤ 3·2⁻²⁴·K,
 * K the largest |s·l| + |m| + |x|), so each square by 2|d|·δ + δ², then
 * weighted and summed over ≤ 32 terms (≤ 40·2⁻²⁴ relative). The grid is skipped only when the closed form exceeds
 * `best` by more than twice that bound (and the float64 cancellation), so the
 * codes chosen are the loop's own, byte for byte; about nine grids in ten are.
 */
function worseForSure(
  s: number,
  m: number,
  nmax: number,
  maxAbs: number,
  best: number,
  dW: number,
  dX: number,
  dX2: number,
  dL: number,
  dL2: number,
  dXL: number,
): boolean {
  const a = s * s * dL2, b = 2 * s * m * dL, c = m * m * dW, d = 2 * s * dXL, e = 2 * m * dX;
  const exact = a + b + c - d - e + dX2;
  const K = Math.abs(s) * nmax + Math.abs(m) + maxAbs;
  // Relative rounding, plus the absolute 2⁻¹⁵⁰ of a result in float32's
  // subnormal range (values near 1e-20 square into it).
  const delta = 3.1 * 2 ** -24 * K + 2 ** -147;
  // Σ w·(2|d|·δ + δ²), with Σ w·|d| ≤ √(Σw · Σ w·d²) (Cauchy–Schwarz).
  const perTerm = 2 * delta * Math.sqrt(dW * Math.max(exact, 0)) + dW * delta * delta;
  const cancel = 1e-13 * (Math.abs(a) + Math.abs(b) + c + Math.abs(d) + Math.abs(e) + dX2);
  // The square, the weighting and the sum may each be subnormal: 2⁻¹⁵⁰ a term and step.
  const tiny = (dW + 64) * 2 ** -148;
  const bound = 2 * (perTerm + 40 * 2 ** -24 * (exact + perTerm) + cancel + tiny);
  return exact - bound > best;
}

/**
 * The part Q4_K and Q5_K share: fits the eight sub-blocks, writes `d`, `dmin`
 * and the packed scales at `y[yo]`, and leaves each element's code
 * (`0..nmax`) in `L`.
 */
function quantizeSuperBlock(
  nmax: number,
  rmin: number,
  nstep: number,
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const so = xo + 32 * j;
    const avX = f(Math.sqrt(f(sumSquares(x, so, 32) / 32)));
    for (let l = 0; l < 32; l++) weights[l] = f(avX + Math.abs(x[so + l]));
    scales[j] = makeQkx2Quants(nmax, x, so, 32 * j, j, rmin, TENTH, nstep);
    if (scales[j] > maxScale) maxScale = scales[j];
    if (mins[j] > maxMin) maxMin = mins[j];
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  for (let j = 0; j < 8; j++) {
    // C stores nearest_int's result in a uint8 before clamping: a negative
    // code wraps to a large one and clamps to 63.
    lsc[j] = Math.min(63, nearestInt(f(invScale * scales[j])) & 0xff);
    lmn[j] = Math.min(63, nearestInt(f(invMin * mins[j])) & 0xff);
  }
  packScalesK4(lsc, lmn, y, yo + 4);
  writeF16(y, yo, f(maxScale / 63));
  writeF16(y, yo + 2, f(maxMin / 63));
  requantK4(nmax, x, xo, y, yo, L);
}

const lsc = new Uint8Array(8), lmn = new Uint8Array(8);

/**
 * Packs Q4_K/Q5_K's eight 6-bit sub-block scales `ls` and mins `lm` into the
 * twelve bytes at `y[sb]`, as ggml's `get_scale_min_k4` reads them.
 *
 * @example
 * ```ts
 * import { packScalesK4 } from "./k_quants.ts";
 * const y = new Uint8Array(12);
 * packScalesK4([1, 2, 3, 4, 5, 6, 7, 63], [0, 0, 0, 0, 0, 0, 0, 0], y, 0);
 * [y[0], y[3], y[11]]; // [1, 0xc4, 0x0f]
 * ```
 */
export function packScalesK4(
  ls: ArrayLike<number>,
  lm: ArrayLike<number>,
  y: Uint8Array,
  sb: number,
): void {
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      y[sb + j] = ls[j];
      y[sb + j + 4] = lm[j];
    } else {
      y[sb + j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
      y[sb + j - 4] |= (ls[j] >> 4) << 6;
      y[sb + j] |= (lm[j] >> 4) << 6;
    }
  }
}

/**
 * The codes (`0..nmax`) of the 256 values at `x[xo]` under the scales, mins,
 * `d` and `dmin` already written in the Q4_K/Q5_K block at `y[yo]`, into `Lo`;
 * a sub-block whose scale is zero keeps the codes `Lo` holds, as in C.
 *
 * @example
 * ```ts
 * import { requantK4 } from "./k_quants.ts";
 * const y = new Uint8Array(144), codes = new Uint8Array(256);
 * y[1] = 0x3c; // d = 1
 * y[4] = 1; // sub-block 0: scale 1
 * requantK4(15, new Float32Array(256).fill(7), 0, y, 0, codes);
 * codes[0]; // 7
 * ```
 */
export function requantK4(
  nmax: number,
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  Lo: Uint8Array,
): void {
  const sb = yo + 4;
  const d = readF16(y, yo);
  const dmin = readF16(y, yo + 2);
  for (let j = 0; j < 8; j++) {
    const dj = f(d * scaleK4(j, y, sb));
    if (dj === 0) continue;
    const dm = f(dmin * minK4(j, y, sb));
    for (let i = 0; i < 32; i++) {
      const l = nearestInt(f(f(x[xo + 32 * j + i] + dm) / dj));
      Lo[32 * j + i] = Math.max(0, Math.min(nmax, l));
    }
  }
}

/**
 * Quantizes the 256 floats at `x[xo]` into the Q4_K block at `y[yo]`, byte for
 * byte as llama.cpp's `quantize_row_q4_K_ref`.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ4_K } from "./k_quants.ts";
 * const y = new Uint8Array(144);
 * quantizeBlockQ4_K(new Float32Array(256), 0, y, 0);
 * y.every((b) => b === 0); // true
 * ```
 */
export function quantizeBlockQ4_K(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  quantizeSuperBlock(15, -1, 20, x, xo, y, yo);
  packQ4Codes(L, y, yo);
}

/**
 * Packs a Q4_K block's 256 codes (0–15) into its `qs` at `y[yo + 16]`: in each
 * 64-element group, element `l` in the low nibble of byte `l`, element
 * `32 + l` in the high one.
 *
 * @example
 * ```ts
 * import { packQ4Codes } from "./k_quants.ts";
 * const y = new Uint8Array(144);
 * packQ4Codes(new Uint8Array(256).fill(15), y, 0);
 * y[16]; // 0xff
 * ```
 */
export function packQ4Codes(L: ArrayLike<number>, y: Uint8Array, yo: number): void {
  for (let g = 0; g < 4; g++) {
    const q = yo + 16 + 32 * g;
    for (let l = 0; l < 32; l++) y[q + l] = L[64 * g + l] | (L[64 * g + 32 + l] << 4);
  }
}

/**
 * Quantizes the 256 floats at `x[xo]` into the Q5_K block at `y[yo]`, byte for
 * byte as llama.cpp's `quantize_row_q5_K_ref`.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ5_K } from "./k_quants.ts";
 * const y = new Uint8Array(176);
 * quantizeBlockQ5_K(new Float32Array(256).fill(2), 0, y, 0);
 * y.subarray(16, 48).every((b) => b === 0xff); // true: every code is 31
 * ```
 */
export function quantizeBlockQ5_K(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  quantizeSuperBlock(31, -0.5, 15, x, xo, y, yo);
  packQ5Codes(L, y, yo);
}

/**
 * Packs a Q5_K block's 256 codes (0–31) into its `qh` and `qs` (from
 * `y[yo + 16]`): low four bits as Q4_K's nibbles, each fifth bit in `qh`.
 *
 * @example
 * ```ts
 * import { packQ5Codes } from "./k_quants.ts";
 * const y = new Uint8Array(176);
 * packQ5Codes(new Uint8Array(256).fill(31), y, 0);
 * [y[16], y[48]]; // [0xff, 0xff]
 * ```
 */
export function packQ5Codes(L: ArrayLike<number>, y: Uint8Array, yo: number): void {
  const qh = yo + 16;
  y.fill(0, qh, qh + 32);
  for (let g = 0; g < 4; g++) {
    const ql = yo + 48 + 32 * g;
    for (let l = 0; l < 32; l++) {
      const l1 = L[64 * g + l];
      const l2 = L[64 * g + 32 + l];
      y[qh + l] |= ((l1 >> 4) << (2 * g)) | ((l2 >> 4) << (2 * g + 1));
      y[ql + l] = (l1 & 0xf) | ((l2 & 0xf) << 4);
    }
  }
}

/**
 * Decodes the Q4_K block at `b[bo]` into `out[oo..oo+256)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ4_K } from "./k_quants.ts";
 * const b = new Uint8Array(144);
 * b[1] = 0x3c; // d = 1 (dmin = 0)
 * b[4] = 2; // sub-block 0 scale 2
 * b[16] = 0x53; // element 0 code 3, element 32 code 5
 * const out = new Float32Array(256);
 * dequantizeBlockQ4_K(b, 0, out, 0);
 * out[0]; // 6
 * ```
 */
export function dequantizeBlockQ4_K(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  decodeK(b, bo, out, oo, false);
}

/**
 * Decodes the Q5_K block at `b[bo]` into `out[oo..oo+256)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ5_K } from "./k_quants.ts";
 * const b = new Uint8Array(176);
 * b[1] = 0x3c; // d = 1
 * b[4] = 1; // sub-block 0 scale 1
 * b[16] = 1; // element 0's fifth bit
 * const out = new Float32Array(256);
 * dequantizeBlockQ5_K(b, 0, out, 0);
 * out[0]; // 16
 * ```
 */
export function dequantizeBlockQ5_K(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  decodeK(b, bo, out, oo, true);
}

function decodeK(b: Uint8Array, bo: number, out: Float32Array, oo: number, five: boolean): void {
  const d = readF16(b, bo);
  const dmin = readF16(b, bo + 2);
  const sb = bo + 4;
  const qh = bo + 16;
  const qs = five ? bo + 48 : bo + 16;
  for (let g = 0; g < 4; g++) {
    for (let half = 0; half < 2; half++) {
      const j = 2 * g + half;
      const dj = f(d * scaleK4(j, b, sb));
      const mj = f(dmin * minK4(j, b, sb));
      const shift = 4 * half;
      const hbit = 2 * g + half;
      const o = oo + 32 * j;
      for (let l = 0; l < 32; l++) {
        let q = (b[qs + 32 * g + l] >> shift) & 0xf;
        if (five) q |= ((b[qh + l] >> hbit) & 1) << 4;
        out[o + l] = f(dj * q) - mj;
      }
    }
  }
}

/**
 * Quantizes the 256 floats at `x[xo]` into the Q2_K block at `y[yo]`, byte for
 * byte as llama.cpp's `quantize_row_q2_K_ref`: sixteen sub-blocks of 16, each
 * fitted by `make_qkx2_quants` (codes 0–3, absolute-error weights |x|), their
 * scales and mins as 4-bit multiples of `d` and `dmin`.
 *
 * Layout (84 bytes): `{u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}`, scale byte
 * `j` = sub-block j's scale (low nibble) and min (high); in half `h`, element
 * `128h + 32k + l` is bits `2k..2k+1` of `qs[32h + l]`.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ2_K } from "./k_quants.ts";
 * const y = new Uint8Array(84);
 * quantizeBlockQ2_K(new Float32Array(256).fill(3), 0, y, 0);
 * y[16]; // 0xff: every code is 3
 * ```
 */
export function quantizeBlockQ2_K(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  let maxScale = 0, maxMin = 0;
  for (let j = 0; j < 16; j++) {
    for (let l = 0; l < 16; l++) weights[l] = Math.abs(x[xo + 16 * j + l]);
    scales[j] = makeQkx2Quants(3, x, xo + 16 * j, 16 * j, j, -0.5, TENTH, 15, 16, true);
    if (scales[j] > maxScale) maxScale = scales[j];
    if (mins[j] > maxMin) maxMin = mins[j];
  }
  const sb = yo, qs = yo + 16;
  if (maxScale > 0) {
    const iscale = f(15 / maxScale);
    for (let j = 0; j < 16; j++) y[sb + j] = nearestInt(f(iscale * scales[j])) & 0xff;
    writeF16(y, yo + 80, f(maxScale / 15));
  } else {
    y.fill(0, sb, sb + 16);
    writeF16(y, yo + 80, 0);
  }
  if (maxMin > 0) {
    const iscale = f(15 / maxMin);
    for (let j = 0; j < 16; j++) y[sb + j] |= (nearestInt(f(iscale * mins[j])) << 4) & 0xff;
    writeF16(y, yo + 82, f(maxMin / 15));
  } else {
    writeF16(y, yo + 82, 0);
  }
  requantQ2(x, xo, y, yo, L);
  packCrumbs(L, y, qs);
}

/**
 * The codes (0–3) of the 256 values at `x[xo]` under the scales, mins, `d`
 * and `dmin` already written in the Q2_K block at `y[yo]`, into `Lo`; a
 * sub-block whose scale is zero keeps the codes `Lo` holds, as in C.
 *
 * @example
 * ```ts
 * import { requantQ2 } from "./k_quants.ts";
 * const y = new Uint8Array(84), codes = new Uint8Array(256);
 * y[0] = 1; // sub-block 0: scale 1, min 0
 * y[81] = 0x3c; // d = 1
 * requantQ2(new Float32Array(256).fill(2), 0, y, 0, codes);
 * codes[0]; // 2
 * ```
 */
export function requantQ2(x: Float32Array, xo: number, y: Uint8Array, yo: number, Lo: Uint8Array) {
  const d = readF16(y, yo + 80), dmin = readF16(y, yo + 82);
  for (let j = 0; j < 16; j++) {
    const dj = f(d * (y[yo + j] & 0xf));
    // A zero sub-block scale keeps make_qkx2_quants's codes, as in C.
    if (dj === 0) continue;
    const dm = f(dmin * (y[yo + j] >> 4));
    for (let i = 0; i < 16; i++) {
      const l = nearestInt(f(f(x[xo + 16 * j + i] + dm) / dj));
      Lo[16 * j + i] = Math.max(0, Math.min(3, l));
    }
  }
}

/**
 * Packs the 256 2-bit codes of `L` (0–3 each) as Q2_K and Q3_K store them: in
 * half `h`, element `128h + 32k + l` at bits `2k..2k+1` of byte `32h + l` from
 * `at`.
 *
 * @example
 * ```ts
 * import { packCrumbs } from "./k_quants.ts";
 * const y = new Uint8Array(64);
 * packCrumbs(new Uint8Array(256).fill(3), y, 0);
 * y[0]; // 0xff
 * ```
 */
export function packCrumbs(L: ArrayLike<number>, y: Uint8Array, at: number): void {
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const e = 128 * h + l;
      y[at + 32 * h + l] = L[e] | (L[e + 32] << 2) | (L[e + 64] << 4) | (L[e + 96] << 6);
    }
  }
}

/**
 * Decodes the Q2_K block at `b[bo]` into `out[oo..oo+256)`:
 * `x = d·(sc & 15)·q − dmin·(sc >> 4)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ2_K } from "./k_quants.ts";
 * const b = new Uint8Array(84);
 * b[0] = 0x12; // sub-block 0: scale 2, min 1
 * b[16] = 3; // element 0: code 3
 * b[81] = 0x3c; // d = 1
 * b[83] = 0x3c; // dmin = 1
 * const out = new Float32Array(256);
 * dequantizeBlockQ2_K(b, 0, out, 0);
 * [out[0], out[1]]; // [5, -1]
 * ```
 */
export function dequantizeBlockQ2_K(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo + 80), dmin = readF16(b, bo + 82);
  for (let j = 0; j < 16; j++) {
    const sc = b[bo + j], dl = f(d * (sc & 0xf)), ml = f(dmin * (sc >> 4));
    for (let e = 16 * j; e < 16 * j + 16; e++) {
      const q = (b[bo + 16 + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
      out[oo + e] = f(dl * q) - ml;
    }
  }
}
