/**
 * The OCP microscaling 4-bit float formats as ggml stores them: MXFP4 (32
 * E2M1 values under one E8M0 power-of-two scale; gpt-oss's experts,
 * llama-quantize's `MXFP4_MOE`) and NVFP4 (64 values in four runs of 16, each
 * under an unsigned E4M3 scale), read as `dequantize_row_mxfp4` /
 * `dequantize_row_nvfp4` read them (ggml 2026). Kiln reads them;
 * llama-quantize writes them.
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

const f = Math.fround;

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
