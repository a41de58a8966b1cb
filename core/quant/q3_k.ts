/**
 * ggml's Q3_K super-block: 256 elements in sixteen sub-blocks of 16, each
 * `x = d·sc·q` with a signed 6-bit sub-block scale `sc` (stored biased by 32)
 * and a 3-bit signed code `q ∈ −4…3`. Encoded as llama.cpp's
 * `quantize_row_q3_K_ref` writes it (each sub-block fitted by
 * `make_q3_quants`), decoded as `dequantize_row_q3_K` reads it.
 *
 * Layout (little-endian, 110 bytes): `{u8 hmask[32]; u8 qs[64]; u8 scales[12];
 * f16 d}`. In half `h`, element `e = 128h + 32k + l` has its low two bits at
 * bits `2k..2k+1` of `qs[32h + l]` and its third bit at bit `4h + k` of
 * `hmask[e & 31]`; a clear third bit means `q = low − 4`, a set one `q = low`.
 * Scale `j`'s low four bits are the low (j < 8) or high (j ≥ 8) nibble of
 * `scales[j % 8]`, its top two bits `2·⌊j/4⌋` of `scales[8 + j % 4]`.
 *
 * @module
 */

import { GROUP_MAX_EPS, nearestInt, readF16, signedAbsMax, writeF16 } from "./scalar.ts";
import { packCrumbs } from "./k_quants.ts";

const f = Math.fround;

// Scratch for one super-block; the codecs are synchronous, so one set serves all calls.
const L = new Int8Array(256);
const scales = new Float32Array(16);

/**
 * `make_q3_quants(16, 4, x, L, true)`: signed codes −4…3 for the 16 values at
 * `x[xo]` (the signed extreme on −4), refined by up to five passes of
 * coordinate descent on the x²-weighted least-squares fit, stored biased by 4
 * into `L[lo..]`; returns the fitted scale.
 */
function makeQ3Quants(x: Float32Array, xo: number, lo: number): number {
  const n = 16, nmax = 4;
  const max = signedAbsMax(x, xo, n);
  if (Math.abs(max) < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const clamp = (l: number) => Math.max(-nmax, Math.min(nmax - 1, l));
  const iscale = f(-nmax / max);
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const l = clamp(nearestInt(f(iscale * xi)));
    L[lo + i] = l;
    const w = f(xi * xi);
    sumlx = f(sumlx + f(f(w * xi) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i], li = L[lo + i];
      const w = f(xi * xi);
      let slx = f(sumlx - f(f(w * xi) * li));
      if (!(slx > 0)) continue;
      let sl2 = f(suml2 - f(f(w * li) * li));
      const nl = clamp(nearestInt(f(f(xi * sl2) / slx)));
      if (nl === li) continue;
      slx = f(slx + f(f(w * xi) * nl));
      sl2 = f(sl2 + f(f(w * nl) * nl));
      if (sl2 > 0 && f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
        L[lo + i] = nl;
        sumlx = slx;
        suml2 = sl2;
        changed++;
      }
    }
    if (!changed) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] += nmax;
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}

/** Signed scale `j` (−32…31) of the 12 scale bytes at `b[o]`. */
function scaleQ3(b: Uint8Array, o: number, j: number): number {
  const low = j < 8 ? b[o + j] & 0xf : b[o + j - 8] >> 4;
  return (low | (((b[o + 8 + (j % 4)] >> (2 * (j >> 2))) & 3) << 4)) - 32;
}

/**
 * Quantizes the 256 floats at `x[xo]` into the Q3_K block at `y[yo]`, byte for
 * byte as llama.cpp's `quantize_row_q3_K_ref`.
 *
 * @example
 * ```ts
 * import { quantizeBlockQ3_K } from "./q3_k.ts";
 * const y = new Uint8Array(110);
 * quantizeBlockQ3_K(new Float32Array(256).fill(-1), 0, y, 0);
 * y[0]; // 0: every code is −4, so no third bit is set
 * ```
 */
export function quantizeBlockQ3_K(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  let maxScale = 0, amax = 0;
  for (let j = 0; j < 16; j++) {
    scales[j] = makeQ3Quants(x, xo + 16 * j, 16 * j);
    const a = Math.abs(scales[j]);
    if (a > amax) {
      amax = a;
      maxScale = scales[j];
    }
  }
  const sb = yo + 96;
  y.fill(0, sb, sb + 12);
  // `if (max_scale)` in C: NaN counts as true there.
  if (maxScale !== 0) {
    const iscale = f(-32 / maxScale);
    for (let j = 0; j < 16; j++) {
      // Stored in an int8_t, then clamped and biased: 0…63.
      const l = Math.max(-32, Math.min(31, (nearestInt(f(iscale * scales[j])) << 24) >> 24)) + 32;
      if (j < 8) y[sb + j] = l & 0xf;
      else y[sb + j - 8] |= (l & 0xf) << 4;
      y[sb + 8 + (j % 4)] |= (l >> 4) << (2 * (j >> 2));
    }
    writeF16(y, yo + 108, f(1 / iscale));
  } else {
    writeF16(y, yo + 108, 0);
  }
  requantQ3(x, xo, y, yo, L);
}

/**
 * Finishes a Q3_K block whose scales and `d` are written at `y[yo]`: the codes
 * of the 256 values at `x[xo]` (a sub-block whose scale is zero keeps the
 * codes `Lo` holds, biased by 4, as in C), their third bits in `hmask` and
 * their low two bits in `qs`.
 *
 * @example
 * ```ts
 * import { requantQ3 } from "./q3_k.ts";
 * const y = new Uint8Array(110);
 * y[96] = 1; y[104] = 2; // sub-block 0: scale 33 − 32 = 1
 * y[109] = 0x3c; // d = 1
 * requantQ3(new Float32Array(256).fill(3), 0, y, 0, new Int8Array(256).fill(4));
 * [y[0], y[32] & 3]; // [0x01, 3]: element 0's code 7 (third bit set, low bits 3)
 * ```
 */
export function requantQ3(
  x: Float32Array,
  xo: number,
  y: Uint8Array,
  yo: number,
  Lo: Int8Array | Uint8Array,
) {
  const sb = yo + 96;
  const d = readF16(y, yo + 108);
  for (let j = 0; j < 16; j++) {
    const dj = f(d * scaleQ3(y, sb, j));
    // A zero sub-block scale keeps make_q3_quants's codes, as in C.
    if (dj === 0) continue;
    for (let i = 0; i < 16; i++) {
      const l = nearestInt(f(x[xo + 16 * j + i] / dj));
      Lo[16 * j + i] = Math.max(-4, Math.min(3, l)) + 4;
    }
  }
  // Third bits: element e's at bit ⌊e/32⌋ of hmask[e % 32]; the low two stay in L.
  y.fill(0, yo, yo + 32);
  for (let e = 0; e < 256; e++) {
    if (Lo[e] > 3) {
      y[yo + (e & 31)] |= 1 << (e >> 5);
      Lo[e] -= 4;
    }
  }
  packCrumbs(Lo, y, yo + 32);
}

/**
 * Decodes the Q3_K block at `b[bo]` into `out[oo..oo+256)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockQ3_K } from "./q3_k.ts";
 * const b = new Uint8Array(110);
 * b[96] = 33 & 0xf; // scale 0: 33 − 32 = 1 (low four bits here,
 * b[104] = 2; //        top two bits 0b10 here)
 * b[32] = 3; // element 0: low bits 3, third bit clear → 3 − 4
 * b[109] = 0x3c; // d = 1
 * const out = new Float32Array(256);
 * dequantizeBlockQ3_K(b, 0, out, 0);
 * out[0]; // -1
 * ```
 */
export function dequantizeBlockQ3_K(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo + 108);
  for (let j = 0; j < 16; j++) {
    const dl = f(d * scaleQ3(b, bo + 96, j));
    for (let e = 16 * j; e < 16 * j + 16; e++) {
      const k = (e >> 5) & 3, l = e & 31;
      const low = (b[bo + 32 + 32 * (e >> 7) + l] >> (2 * k)) & 3;
      const third = (b[bo + l] >> (e >> 5)) & 1;
      out[oo + e] = dl * (low - (third ? 0 : 4));
    }
  }
}
