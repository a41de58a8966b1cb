/**
 * ggml's Q6_K super-block: 256 elements in sixteen sub-blocks of 16, each
 * `x = d·sc·(q − 32)` with a signed 8-bit sub-block scale `sc` and a 6-bit code
 * `q`. Encoded as llama.cpp's `quantize_row_q6_K_ref` writes it (each sub-block
 * fitted by `make_qx_quants`), decoded as `dequantize_row_q6_K` reads it.
 *
 * Layout (little-endian, 210 bytes): `{u8 ql[128]; u8 qh[64]; i8 scales[16];
 * f16 d}`. Each half of 128 elements owns 64 bytes of `ql` and 32 of `qh`; in
 * half `h`, element `32k + l` (k = 0..3) has its low 4 bits in
 * `ql[64h + l + 32·(k & 1)]` (low nibble for k < 2, high for k ≥ 2) and its top
 * 2 bits at bits `2k..2k+1` of `qh[32h + l]`; its scale is
 * `scales[8h + 2k + (l >> 4)]`, i.e. `scales[e >> 4]` for element `e`.
 *
 * @module
 */

import { GROUP_MAX_EPS, nearestInt, readF16, signedAbsMax, writeF16 } from "./scalar.ts";

const f = Math.fround;
const TENTH = f(0.1);

// Scratch for one super-block; the codecs are synchronous, so one set serves all calls.
const L = new Uint8Array(256);
const scales = new Float32Array(16);
/** Each value's weight (x², or its importance) and weight·x (float32), taken once for the 19 trial grids. */
const ws = new Float32Array(32);
const wxs = new Float32Array(32);

/**
 * `make_qx_quants(n, nmax, x, L, 1, qw)` (n ≤ 32): signed codes of the `n`
 * values at `x[xo]`, stored biased by `nmax` into `Lo[lo..]`, weighted by
 * `qw[qo..]` (an importance matrix's weights) or, without them, by x²;
 * returns the least-squares scale of the best of 19 grids (the signed extreme
 * on code −nmax, then nudged by ±0.1…0.9 codes).
 *
 * @example
 * ```ts
 * import { makeQxQuants } from "./q6_k.ts";
 * const codes = new Uint8Array(16);
 * const x = Float32Array.from({ length: 16 }, (_, i) => i - 8);
 * makeQxQuants(16, 4, x, 0, codes, 0, undefined, 0);
 * codes[0]; // 0: −8 is code −4, biased by 4
 * ```
 */
export function makeQxQuants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  Lo: Uint8Array,
  lo: number,
  qw: Float32Array | undefined,
  qo: number,
): number {
  const max = signedAbsMax(x, xo, n);
  if (Math.abs(max) < GROUP_MAX_EPS) {
    Lo.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = f(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * xi))));
    Lo[lo + i] = l + nmax;
    const w = qw ? qw[qo + i] : f(xi * xi);
    ws[i] = w;
    wxs[i] = f(w * xi);
    sumlx = f(sumlx + f(wxs[i] * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  let scale = suml2 !== 0 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(TENTH * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[xo + i]))));
      sumlx = f(sumlx + f(wxs[i] * l));
      suml2 = f(suml2 + f(f(ws[i] * l) * l));
    }
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(f(iscale * x[xo + i]));
        Lo[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/**
 * Quantizes the 256 floats at `x[xo]` into the Q6_K block at `y[yo]`, byte for
 * byte as llama.cpp's `quantize_row_q6_K_ref`, or, given the 256 importance
 * values at `qw[qo]`, as `quantize_row_q6_K_impl` with them (llama-quantize
 * with an importance matrix: each sub-block's fit weighted by them directly).
 *
 * @example
 * ```ts
 * import { quantizeBlockQ6_K } from "./q6_k.ts";
 * const y = new Uint8Array(210);
 * quantizeBlockQ6_K(new Float32Array(256).fill(-1), 0, y, 0);
 * y[192]; // 0x80: the largest sub-block scale is stored as −128
 * ```
 */
export function quantizeBlockQ6_K(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  qw?: Float32Array,
  qo = 0,
): void {
  let maxScale = 0;
  let maxAbsScale = 0;
  for (let ib = 0; ib < 16; ib++) {
    const scale = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib, qw, qo + 16 * ib);
    scales[ib] = scale;
    if (Math.abs(scale) > maxAbsScale) {
      maxAbsScale = Math.abs(scale);
      maxScale = scale;
    }
  }
  if (maxAbsScale < GROUP_MAX_EPS) {
    y.fill(0, yo, yo + 210);
    return;
  }
  const iscale = f(-128 / maxScale);
  writeF16(y, yo + 208, f(1 / iscale));
  const d = readF16(y, yo + 208);
  for (let ib = 0; ib < 16; ib++) {
    y[yo + 192 + ib] = Math.min(127, nearestInt(f(iscale * scales[ib]))) & 0xff;
  }
  for (let j = 0; j < 16; j++) {
    const dj = f(d * ((y[yo + 192 + j] << 24) >> 24));
    // A zero sub-block scale keeps make_qx_quants's codes, as in C.
    if (dj === 0) continue;
    for (let i = 0; i < 16; i++) {
      const l = nearestInt(f(x[xo + 16 * j + i] / dj));
      L[16 * j + i] = Math.max(-32, Math.min(31, l)) + 32;
    }
  }
  for (let h = 0; h < 2; h++) {
    const ql = yo + 64 * h;
    const qh = yo + 128 + 32 * h;
    const e = 128 * h;
    for (let l = 0; l < 32; l++) {
      const q1 = L[e + l], q2 = L[e + l + 32], q3 = L[e + l + 64], q4 = L[e + l + 96];
      y[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
      y[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
      y[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
    }
  }
}

/**
 * Decodes the Q6_K block at `b[bo]` into `out[oo..oo+256)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ6_K } from "./q6_k.ts";
 * const b = new Uint8Array(210);
 * b[209] = 0x3c; // d = 1
 * b[192] = 0xfe; // sub-block 0 scale -2
 * b[128] = 0x03; // element 0's top bits: code 0x30 = 48
 * const out = new Float32Array(256);
 * dequantizeBlockQ6_K(b, 0, out, 0);
 * out[0]; // -2 * (48 - 32) = -32
 * ```
 */
export function dequantizeBlockQ6_K(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = readF16(b, bo + 208);
  for (let h = 0; h < 2; h++) {
    const ql = bo + 64 * h;
    const qh = bo + 128 + 32 * h;
    for (let k = 0; k < 4; k++) {
      const lowOff = ql + 32 * (k & 1);
      const shift = k < 2 ? 0 : 4;
      for (let l = 0; l < 32; l++) {
        const q = ((b[lowOff + l] >> shift) & 0xf) | (((b[qh + l] >> (2 * k)) & 3) << 4);
        const e = 128 * h + 32 * k + l;
        const sc = (b[bo + 192 + (e >> 4)] << 24) >> 24;
        out[oo + e] = f(d * sc) * (q - 32);
      }
    }
  }
}
