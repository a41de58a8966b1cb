/**
 * The OCP microscaling 4-bit float formats as ggml stores them: MXFP4 (32
 * E2M1 values under one E8M0 power-of-two scale; gpt-oss's experts,
 * llama-quantize's `MXFP4_MOE`) and NVFP4 (64 values in four runs of 16, each
 * under an unsigned E4M3 scale), written as ggml's `quantize_row_mxfp4_ref` /
 * `quantize_row_nvfp4_ref` write them and read as `dequantize_row_mxfp4` /
 * `dequantize_row_nvfp4` read them (ggml 2026). Each value takes the code whose
 * value is nearest (the first of equals); MXFP4's scale is 2^(⌊log₂ amax⌋ − 2),
 * NVFP4's the E4M3 nearest amax/6.
 *
 * ggml keeps the E2M1 values doubled, as small integers (`kvalues_fp4`: 0, 1,
 * 2, 3, 4, 6, 8, 12 and their negatives), and halves the scales instead.
 *
 * Layouts:
 * - MXFP4 (17 bytes): `{u8 e; u8 qs[16]}`; element j < 16 is the low nibble
 *   of qs[j], j ≥ 16 the high nibble of qs[j − 16]; x = kv·2^(e − 128) (ggml's
 *   `e8m0_to_fp32_half`, exact down to e = 0's 2^−128).
 * - NVFP4 (36 bytes): `{u8 d[4]; u8 qs[32]}`; run s holds elements 16s…16s+15,
 *   element j < 8 of the run in the low nibble of qs[8s + j], j ≥ 8 in the high
 *   nibble of qs[8s + j − 8]; x = kv·ue4m3(d[s])/2, where 0x00 and 0x7F read as 0
 *   and the top bit is not part of the value.
 *
 * @module
 */

import { absMax } from "./scalar.ts";

const f = Math.fround;

/** A float32's bits. */
const F32 = new Float32Array(1), U32 = new Uint32Array(F32.buffer);

/**
 * The code whose value (times the halved scale `e`) is nearest `x`, the first
 * of equals: ggml's `best_index_mxfp4`, float32 arithmetic.
 */
function bestFp4(x: number, e: number): number {
  let best = 0, bestErr = f(Math.abs(f(FP4_VALUES[0] * e) - x));
  for (let i = 1; i < 16; i++) {
    const err = f(Math.abs(f(f(FP4_VALUES[i] * e) - x)));
    if (err < bestErr) {
      best = i;
      bestErr = err;
    }
  }
  return best;
}

/**
 * The unsigned E4M3 byte of `x` as ggml's `ggml_fp32_to_ue4m3` rounds it (half
 * up on the first dropped bit; 448 and above to 0x7E, the largest it writes;
 * subnormals below 2^−6).
 *
 * @example
 * ```ts
 * import { toUe4m3 } from "./fp4.ts";
 * toUe4m3(1); // 0x38
 * ```
 */
export function toUe4m3(x: number): number {
  if (!(x > 0)) return 0;
  F32[0] = Math.min(x, 448);
  const v = F32[0], bits = U32[0];
  let exp = ((bits >>> 23) & 0xff) - 127 + 7;
  if (exp <= 0) {
    const man = Math.min(7, Math.trunc(f(f(v * 512) + 0.5)));
    return man < 1 ? 0 : man;
  }
  if (exp >= 15) return 0x7e;
  let man = ((bits >>> 20) & 7) + ((bits >>> 19) & 1);
  if (man > 7) {
    man = 0;
    if (++exp >= 15) return 0x7e;
  }
  return (exp << 3) | man;
}

/**
 * ggml's `kvalues_fp4`: twice the E2M1 value of each 4-bit code.
 *
 * @example
 * ```ts
 * import { FP4_VALUES } from "./fp4.ts";
 * FP4_VALUES[7]; // 12: E2M1 6.0, doubled
 * ```
 */
export const FP4_VALUES: readonly number[] = [
  0,
  1,
  2,
  3,
  4,
  6,
  8,
  12,
  0,
  -1,
  -2,
  -3,
  -4,
  -6,
  -8,
  -12,
];

/**
 * Half of the E8M0 scale `e`: 2^(e − 128), as ggml's `e8m0_to_fp32_half`.
 *
 * @example
 * ```ts
 * import { e8m0Half } from "./fp4.ts";
 * e8m0Half(128); // 1
 * ```
 */
export function e8m0Half(e: number): number {
  return f(2 ** (e - 128));
}

/**
 * Half of the unsigned E4M3 scale `x` (4 exponent bits biased by 7, 3 mantissa
 * bits, subnormal below exponent 1), as ggml's `ggml_ue4m3_to_fp32`: 0x00 and
 * 0x7F are 0, and bit 7 is ignored.
 *
 * @example
 * ```ts
 * import { ue4m3Half } from "./fp4.ts";
 * ue4m3Half(0x38); // 0.5: 1.0 halved
 * ```
 */
export function ue4m3Half(x: number): number {
  if (x === 0 || x === 0x7f) return 0;
  const exp = (x >> 3) & 15, man = x & 7;
  return f((exp === 0 ? man * 2 ** -9 : (1 + man / 8) * 2 ** (exp - 7)) * 0.5);
}

/**
 * Quantizes the 32 floats at `x[xo]` into the MXFP4 block at `y[yo]`: scale
 * exponent ⌊log₂ amax⌋ − 2 + 127 (float32 `log2f`; 0 for an all-zero block).
 *
 * @example
 * ```ts
 * import { quantizeBlockMXFP4 } from "./fp4.ts";
 * const y = new Uint8Array(17);
 * quantizeBlockMXFP4(new Float32Array(32).fill(6), 0, y, 0);
 * [y[0], y[1]]; // [127, 0x77]: scale 2^0, code 7 (6.0)
 * ```
 */
export function quantizeBlockMXFP4(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const amax = absMax(x, xo, 32);
  // C's (uint8_t) of the float: through int32 on x86-64, then the low byte.
  const e = amax > 0 ? (Math.floor(f(Math.log2(amax))) + 125) & 0xff : 0;
  y[yo] = e;
  const d = e8m0Half(e);
  for (let j = 0; j < 16; j++) {
    y[yo + 1 + j] = bestFp4(x[xo + j], d) | (bestFp4(x[xo + 16 + j], d) << 4);
  }
}

/**
 * Quantizes the 64 floats at `x[xo]` into the NVFP4 block at `y[yo]`: each run
 * of 16 under the E4M3 scale nearest its amax/6.
 *
 * @example
 * ```ts
 * import { quantizeBlockNVFP4 } from "./fp4.ts";
 * const y = new Uint8Array(36);
 * quantizeBlockNVFP4(new Float32Array(64).fill(6), 0, y, 0);
 * [y[0], y[4]]; // [0x38, 0x77]: scale 1.0, code 7 (6.0)
 * ```
 */
export function quantizeBlockNVFP4(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  for (let s = 0; s < 4; s++) {
    const xb = xo + 16 * s;
    const ue = toUe4m3(f(absMax(x, xb, 16) / 6));
    y[yo + s] = ue;
    const d = ue4m3Half(ue);
    for (let j = 0; j < 8; j++) {
      y[yo + 4 + 8 * s + j] = bestFp4(x[xb + j], d) | (bestFp4(x[xb + 8 + j], d) << 4);
    }
  }
}

/**
 * Decodes the MXFP4 block at `b[bo]` into `out[oo..oo+32)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockMXFP4 } from "./fp4.ts";
 * const b = new Uint8Array(17);
 * b[0] = 128; // scale 1
 * b[1] = 0x97; // element 0: code 7 (12), element 16: code 9 (−1)
 * const out = new Float32Array(32);
 * dequantizeBlockMXFP4(b, 0, out, 0);
 * [out[0], out[16]]; // [12, -1]
 * ```
 */
export function dequantizeBlockMXFP4(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  const d = e8m0Half(b[bo]);
  for (let j = 0; j < 16; j++) {
    const q = b[bo + 1 + j];
    out[oo + j] = f(FP4_VALUES[q & 15] * d);
    out[oo + j + 16] = f(FP4_VALUES[q >> 4] * d);
  }
}

/**
 * Decodes the NVFP4 block at `b[bo]` into `out[oo..oo+64)`.
 *
 * @example
 * ```ts
 * import { dequantizeBlockNVFP4 } from "./fp4.ts";
 * const b = new Uint8Array(36);
 * b[0] = 0x38; // run 0's scale: 1.0
 * b[4] = 0x07; // element 0: code 7 (12)
 * const out = new Float32Array(64);
 * dequantizeBlockNVFP4(b, 0, out, 0);
 * out[0]; // 6: 12 × 1.0 / 2
 * ```
 */
export function dequantizeBlockNVFP4(
  b: Uint8Array,
  bo: number,
  out: Float32Array,
  oo: number,
): void {
  for (let s = 0; s < 4; s++) {
    const d = ue4m3Half(b[bo + s]);
    for (let j = 0; j < 8; j++) {
      const q = b[bo + 4 + 8 * s + j];
      out[oo + 16 * s + j] = f(FP4_VALUES[q & 15] * d);
      out[oo + 16 * s + j + 8] = f(FP4_VALUES[q >> 4] * d);
    }
  }
}
