/**
 * The arithmetic of the quantized checkpoint formats Kiln dequantizes as it
 * loads (see `CheckpointQuantization`), each written from the format's
 * definition and checked against llama.cpp's converter, which dequantizes the
 * same folders independently:
 *
 * - scaled weights (FP8, compressed-tensors float/int, ModelOpt FP8):
 *   `w · s`, the scale per block (a grid rounded up at the edges) or
 *   broadcast as NumPy broadcasts `s` padded with trailing 1s (per tensor,
 *   per output channel), minus a zero point where one is stored;
 * - compressed-tensors `pack-quantized`: `bits`-bit fields of int32 words,
 *   low bits first, along each row; minus the zero point (packed the same way
 *   along the column of groups) or 2^(bits−1); times a scale per group;
 * - GPTQ: `bits`-bit fields of int32 words packed along the input dimension
 *   (`qweight [in/pack, out]`), zero points packed along the output
 *   (`qzeros [groups, out/pack]`, stored minus one in v1), the group of input
 *   `i` being `g_idx[i]`: `W[o, i] = scales[g, o] · (q[i, o] − z[g, o])`.
 *
 * @module
 */

/**
 * Multiplies `w` (`[...lead, rows, cols]`) in place by block scales `s`
 * (`[...lead, ⌈rows/br⌉, ⌈cols/bc⌉]`).
 *
 * @example
 * ```ts
 * import { scaleBlocks } from "./dequant_formats.ts";
 * const w = new Float32Array([1, 1, 1, 1]);
 * scaleBlocks(w, [2, 2], new Float32Array([2, 3]), [1, 2]); // w = [2, 2, 3, 3]
 * ```
 */
export function scaleBlocks(
  w: Float32Array,
  shape: readonly number[],
  s: Float32Array,
  block: readonly [number, number],
): void {
  const [rows, cols] = shape.slice(-2);
  const [br, bc] = block;
  const gr = Math.ceil(rows / br), gc = Math.ceil(cols / bc);
  const mats = rows * cols === 0 ? 0 : w.length / (rows * cols);
  for (let m = 0; m < mats; m++) {
    for (let i = 0; i < rows; i++) {
      const row = (m * rows + i) * cols;
      const srow = (m * gr + Math.floor(i / br)) * gc;
      for (let j = 0; j < cols; j++) w[row + j] *= s[srow + Math.floor(j / bc)];
    }
  }
}

/**
 * Whether a scale of shape `s` broadcasts against a weight of shape `w` as
 * NumPy does once `s` is padded with trailing 1s (`[out]` is per row).
 *
 * @example
 * ```ts
 * import { broadcasts } from "./dequant_formats.ts";
 * [broadcasts([4, 1], [4, 8]), broadcasts([4], [4, 8]), broadcasts([3], [4, 8])]; // [true, true, false]
 * ```
 */
export function broadcasts(s: readonly number[], w: readonly number[]): boolean {
  if (s.length > w.length) return s.reduce((a, b) => a * b, 1) === 1;
  return s.every((d, i) => d === 1 || d === w[i]);
}

/**
 * `w = (w − zp) · s` in place, `s` and `zp` (same shape as `s`, optional)
 * broadcast against `w` as {@linkcode broadcasts} says.
 *
 * @example
 * ```ts
 * import { scaleBroadcast } from "./dequant_formats.ts";
 * const w = new Float32Array([1, 2, 3, 4]);
 * scaleBroadcast(w, [2, 2], new Float32Array([10, 100]), [2, 1]); // w = [10, 20, 300, 400]
 * ```
 */
export function scaleBroadcast(
  w: Float32Array,
  wShape: readonly number[],
  s: Float32Array,
  sShape: readonly number[],
  zp?: Float32Array,
): void {
  if (s.length === 1) {
    const f = s[0], z = zp ? zp[0] : 0;
    for (let i = 0; i < w.length; i++) w[i] = (w[i] - z) * f;
    return;
  }
  const dims = wShape.length;
  const padded = [...sShape, ...Array(Math.max(0, dims - sShape.length)).fill(1)];
  // Strides of the scale for each weight dimension (0 where it broadcasts).
  const strides = new Array(dims).fill(0);
  let acc = 1;
  for (let d = dims - 1; d >= 0; d--) {
    strides[d] = padded[d] === 1 ? 0 : acc;
    acc *= padded[d];
  }
  const idx = new Array(dims).fill(0);
  for (let i = 0; i < w.length; i++) {
    let k = 0;
    for (let d = 0; d < dims; d++) k += idx[d] * strides[d];
    w[i] = (w[i] - (zp ? zp[k] : 0)) * s[k];
    for (let d = dims - 1; d >= 0; d--) {
      if (++idx[d] < wShape[d]) break;
      idx[d] = 0;
    }
  }
}

/** Field `k` (`bits` wide, low bits first) of int32 word `word`. */
function field(word: number, k: number, bits: number): number {
  return (word >>> (k * bits)) & ((1 << bits) - 1);
}

/**
 * compressed-tensors `pack-quantized`: rows of `bits`-bit fields packed in
 * int32 words (`packed [rows, ⌈cols·bits/32⌉]`), scales `[rows, groups]`,
 * optional zero points packed along the rows (`[⌈rows·bits/32⌉, groups]`).
 *
 * @example
 * ```ts
 * import { unpackCompressed } from "./dequant_formats.ts";
 * // One row of two 4-bit values 9 and 7 (offset 8), scale 0.5: [0.5, -0.5].
 * unpackCompressed(new Int32Array([9 | (7 << 4)]), [1, 2], new Float32Array([0.5]), 2, 4);
 * ```
 */
export function unpackCompressed(
  packed: Int32Array,
  shape: readonly [number, number],
  scale: Float32Array,
  groupSize: number,
  bits: number,
  zeroPoint?: Int32Array,
): Float32Array {
  const [rows, cols] = shape;
  const pack = Math.floor(32 / bits);
  const words = Math.ceil(cols / pack), groups = Math.ceil(cols / groupSize);
  const out = new Float32Array(rows * cols);
  const offset = 1 << (bits - 1);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const q = field(packed[r * words + Math.floor(c / pack)], c % pack, bits);
      const g = Math.floor(c / groupSize);
      const z = zeroPoint
        ? field(zeroPoint[Math.floor(r / pack) * groups + g], r % pack, bits)
        : offset;
      out[r * cols + c] = (q - z) * scale[r * groups + g];
    }
  }
  return out;
}

/**
 * GPTQ: `qweight [in/pack, out]`, `qzeros [groups, out/pack]`, `scales
 * [groups, out]`, `gIdx [in]` → the weight `[out, in]` (`v2`: zero points as
 * stored; v1: stored minus one).
 *
 * @example
 * ```ts
 * import { dequantGptq } from "./dequant_formats.ts";
 * // 8 inputs, 1 output, 4-bit: q = 0..7, zero point stored 7 (v1: 8), scale 1.
 * const q = new Int32Array([0x76543210]);
 * dequantGptq(q, new Int32Array([7]), new Float32Array([1]), new Int32Array(8), 8, 1, 4, false);
 * // [-8, -7, -6, -5, -4, -3, -2, -1]
 * ```
 */
export function dequantGptq(
  qweight: Int32Array,
  qzeros: Int32Array,
  scales: Float32Array,
  gIdx: Int32Array,
  inputs: number,
  outputs: number,
  bits: number,
  v2: boolean,
): Float32Array {
  const pack = 32 / bits;
  const zWords = qzeros.length / (scales.length / outputs);
  const out = new Float32Array(outputs * inputs);
  for (let i = 0; i < inputs; i++) {
    const g = gIdx[i];
    const qRow = Math.floor(i / pack) * outputs, shift = i % pack;
    for (let o = 0; o < outputs; o++) {
      const q = field(qweight[qRow + o], shift, bits);
      const z = field(qzeros[g * zWords + Math.floor(o / pack)], o % pack, bits) + (v2 ? 0 : 1);
      out[o * inputs + i] = scales[g * outputs + o] * (q - z);
    }
  }
  return out;
}
