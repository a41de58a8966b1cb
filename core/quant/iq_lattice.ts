/**
 * ggml's lattice formats IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M,
 * decoded as `dequantize_row_iq*` of `ggml-quants.c` reads them (each value
 * rounded to float32 as there). Every format holds 256-element super-blocks; runs
 * of 8 (IQ2, IQ1) or 4 (IQ3) elements are one point of a codebook
 * (`iq_grids.ts`), with signs stored apart (IQ2, IQ3) or a ±1/8 shift (IQ1).
 * Kiln reads these formats and writes IQ3_XXS and IQ3_S (`iq3_encode.ts`);
 * llama-quantize writes IQ2 and IQ1 only with an importance matrix.
 *
 * Layouts (little-endian; `d` an f16 super-block scale; `ib` a 32-element block):
 * - IQ2_XXS, 66 bytes `{d; u32 pairs[8][2]}`: pair `ib` = 4 grid bytes, then
 *   4 × 7 sign bits and a 4-bit scale `s` on top; `x = d·(½ + s)/4 · ±grid`.
 * - IQ2_XS, 74 bytes `{d; u16 qs[32]; u8 scales[8]}`: 9-bit grid index and 7
 *   sign bits a `qs`; a 4-bit scale per 16 elements.
 * - IQ2_S, 82 bytes `{d; u8 qs[32]; u8 signs[32]; u8 qh[8]; u8 scales[8]}`:
 *   10-bit grid index (2 high bits in `qh`), 8 sign bits a point.
 * - IQ3_XXS, 98 bytes `{d; u8 qs[64]; u32 scales_signs[8]}`: two 4-element
 *   points a run of 8, `x = d·(½ + s)/2 · ±grid`.
 * - IQ3_S, 110 bytes `{d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]}`:
 *   9-bit indices, `x = d·(1 + 2s) · ±grid`.
 * - IQ1_S, 50 bytes `{d; u8 qs[32]; u16 qh[8]}`: 11-bit indices (3 high bits
 *   a point in `qh`), a 3-bit scale and the shift's sign a block,
 *   `x = d·(2s + 1)·(grid ± ⅛)`.
 * - IQ1_M, 56 bytes `{u8 qs[32]; u8 qh[16]; u16 scales[4]}`: the f16 `d` spread
 *   over the scales' top nibbles, 3-bit scales per 16 elements, a shift sign a point.
 *
 * Signs: IQ2_XXS, IQ2_XS and IQ3_XXS store 7 of 8 sign bits; the eighth makes the
 * count of minus signs even (ggml's `ksigns_iq2xs`).
 *
 * @module
 */

import { gridLevel, IQ_GRIDS, type IqGridName } from "./iq_grids.ts";
import { readF16 } from "./scalar.ts";

const f = Math.fround;

/**
 * A 7-bit sign index widened with its parity bit (ggml's `ksigns_iq2xs`).
 *
 * @example
 * ```ts
 * import { ksigns } from "./iq_lattice.ts";
 * ksigns(1); // 129
 * ksigns(3); // 3
 * ```
 */
export function ksigns(i: number): number {
  let p = i;
  p ^= p >> 4;
  p ^= p >> 2;
  p ^= p >> 1;
  return i | ((p & 1) << 7);
}

const u16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const u32 = (b: Uint8Array, o: number) =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;

/** Level `j` of point `index` of grid `g`. */
function level(g: IqGridName, index: number, j: number): number {
  const { points, bits } = IQ_GRIDS[g];
  return gridLevel(g, (points[index] >> (bits * j)) & ((1 << bits) - 1));
}

/** Writes `n` elements `scale · level · ±1` of one point (sign bit j of `signs`). */
function signedPoint(
  g: IqGridName,
  index: number,
  scale: number,
  signs: number,
  n: number,
  out: Float32Array,
  oo: number,
): void {
  for (let j = 0; j < n; j++) {
    const v = f(scale * level(g, index, j));
    out[oo + j] = signs & (1 << j) ? -v : v;
  }
}

/**
 * Decodes one 66-byte IQ2_XXS super-block into 256 floats.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ2_XXS } from "./iq_lattice.ts";
 * const out = new Float32Array(256);
 * dequantizeBlockIQ2_XXS(new Uint8Array(66), 0, out, 0);
 * out[0]; // 0 (d = 0)
 * ```
 */
export function dequantizeBlockIQ2_XXS(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo);
  for (let ib = 0; ib < 8; ib++) {
    const o = bo + 2 + 8 * ib;
    const aux = u32(b, o + 4);
    const db = f(f(d * f(0.5 + (aux >>> 28))) * 0.25);
    for (let l = 0; l < 4; l++) {
      const signs = ksigns((aux >>> (7 * l)) & 127);
      signedPoint("iq2xxs", b[o + l], db, signs, 8, out, oo + 32 * ib + 8 * l);
    }
  }
}

/**
 * Decodes one 74-byte IQ2_XS super-block into 256 floats.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ2_XS } from "./iq_lattice.ts";
 * dequantizeBlockIQ2_XS(new Uint8Array(74), 0, new Float32Array(256), 0);
 * ```
 */
export function dequantizeBlockIQ2_XS(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo);
  for (let ib = 0; ib < 8; ib++) {
    const sc = b[bo + 66 + ib];
    const db = [f(f(d * f(0.5 + (sc & 15))) * 0.25), f(f(d * f(0.5 + (sc >> 4))) * 0.25)];
    for (let l = 0; l < 4; l++) {
      const q = u16(b, bo + 2 + 2 * (4 * ib + l));
      signedPoint("iq2xs", q & 511, db[l >> 1], ksigns(q >> 9), 8, out, oo + 32 * ib + 8 * l);
    }
  }
}

/**
 * Decodes one 82-byte IQ2_S super-block into 256 floats.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ2_S } from "./iq_lattice.ts";
 * dequantizeBlockIQ2_S(new Uint8Array(82), 0, new Float32Array(256), 0);
 * ```
 */
export function dequantizeBlockIQ2_S(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo);
  for (let ib = 0; ib < 8; ib++) {
    const sc = b[bo + 74 + ib];
    const db = [f(f(d * f(0.5 + (sc & 15))) * 0.25), f(f(d * f(0.5 + (sc >> 4))) * 0.25)];
    const qh = b[bo + 66 + ib];
    for (let l = 0; l < 4; l++) {
      const index = b[bo + 2 + 4 * ib + l] | ((qh << (8 - 2 * l)) & 0x300);
      const signs = b[bo + 34 + 4 * ib + l];
      signedPoint("iq2s", index, db[l >> 1], signs, 8, out, oo + 32 * ib + 8 * l);
    }
  }
}

/**
 * Decodes one 98-byte IQ3_XXS super-block into 256 floats.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ3_XXS } from "./iq_lattice.ts";
 * dequantizeBlockIQ3_XXS(new Uint8Array(98), 0, new Float32Array(256), 0);
 * ```
 */
export function dequantizeBlockIQ3_XXS(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo);
  for (let ib = 0; ib < 8; ib++) {
    const aux = u32(b, bo + 66 + 4 * ib);
    const db = f(f(d * f(0.5 + (aux >>> 28))) * 0.5);
    for (let l = 0; l < 4; l++) {
      const signs = ksigns((aux >>> (7 * l)) & 127);
      const o = oo + 32 * ib + 8 * l;
      const q = bo + 2 + 8 * ib + 2 * l;
      signedPoint("iq3xxs", b[q], db, signs, 4, out, o);
      signedPoint("iq3xxs", b[q + 1], db, signs >> 4, 4, out, o + 4);
    }
  }
}

/**
 * Decodes one 110-byte IQ3_S super-block into 256 floats.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ3_S } from "./iq_lattice.ts";
 * dequantizeBlockIQ3_S(new Uint8Array(110), 0, new Float32Array(256), 0);
 * ```
 */
export function dequantizeBlockIQ3_S(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo);
  for (let ib = 0; ib < 8; ib++) {
    const db = f(d * (1 + 2 * ((b[bo + 106 + (ib >> 1)] >> (4 * (ib & 1))) & 15)));
    const qh = b[bo + 66 + ib];
    for (let l = 0; l < 4; l++) {
      const q = bo + 2 + 8 * ib + 2 * l;
      const signs = b[bo + 74 + 4 * ib + l];
      const o = oo + 32 * ib + 8 * l;
      signedPoint("iq3s", b[q] | ((qh << (8 - 2 * l)) & 256), db, signs, 4, out, o);
      signedPoint("iq3s", b[q + 1] | ((qh << (7 - 2 * l)) & 256), db, signs >> 4, 4, out, o + 4);
    }
  }
}

/** Writes the 8 elements `scale · (level + delta)` of one IQ1 point. */
function shiftedPoint(index: number, scale: number, delta: number, out: Float32Array, oo: number) {
  for (let j = 0; j < 8; j++) out[oo + j] = f(scale * f(level("iq1s", index, j) + delta));
}

/**
 * Decodes one 50-byte IQ1_S super-block into 256 floats.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ1_S } from "./iq_lattice.ts";
 * dequantizeBlockIQ1_S(new Uint8Array(50), 0, new Float32Array(256), 0);
 * ```
 */
export function dequantizeBlockIQ1_S(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const d = readF16(b, bo);
  for (let ib = 0; ib < 8; ib++) {
    const qh = u16(b, bo + 34 + 2 * ib);
    const dl = f(d * (2 * ((qh >> 12) & 7) + 1));
    const delta = qh & 0x8000 ? -0.125 : 0.125;
    for (let l = 0; l < 4; l++) {
      const index = b[bo + 2 + 4 * ib + l] | (((qh >> (3 * l)) & 7) << 8);
      shiftedPoint(index, dl, delta, out, oo + 32 * ib + 8 * l);
    }
  }
}

/**
 * IQ1_M's f16 super-block scale: the top nibbles of its four u16 scale words.
 *
 * @example
 * ```ts
 * import { iq1mScaleBits } from "./iq_lattice.ts";
 * iq1mScaleBits(new Uint8Array(56), 0); // 0
 * ```
 */
export function iq1mScaleBits(b: Uint8Array, bo: number): number {
  const sc = (k: number) => u16(b, bo + 48 + 2 * k);
  return (sc(0) >> 12) | ((sc(1) >> 8) & 0xf0) | ((sc(2) >> 4) & 0xf00) | (sc(3) & 0xf000);
}

/**
 * Decodes one 56-byte IQ1_M super-block into 256 floats.
 *
 * @example
 * ```ts
 * import { dequantizeBlockIQ1_M } from "./iq_lattice.ts";
 * dequantizeBlockIQ1_M(new Uint8Array(56), 0, new Float32Array(256), 0);
 * ```
 */
export function dequantizeBlockIQ1_M(b: Uint8Array, bo: number, out: Float32Array, oo: number) {
  const bits = iq1mScaleBits(b, bo);
  const d = readF16(new Uint8Array([bits & 255, bits >> 8]), 0);
  for (let ib = 0; ib < 8; ib++) {
    const sc = u16(b, bo + 48 + 2 * (ib >> 1));
    const shift = 6 * (ib & 1);
    const dl = [f(d * (2 * ((sc >> shift) & 7) + 1)), f(d * (2 * ((sc >> (shift + 3)) & 7) + 1))];
    for (let l = 0; l < 4; l++) {
      const qh = b[bo + 32 + 2 * ib + (l >> 1)];
      const high = l & 1 ? qh << 4 : qh << 8;
      const index = b[bo + 4 * ib + l] | (high & 0x700);
      const delta = qh & (l & 1 ? 0x80 : 0x08) ? -0.125 : 0.125;
      shiftedPoint(index, dl[l >> 1], delta, out, oo + 32 * ib + 8 * l);
    }
  }
}
