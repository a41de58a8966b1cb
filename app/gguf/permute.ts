/**
 * llama.cpp's q/k row order for its normal (non-NeoX) RoPE: rows as the
 * converter's `LlamaModel.permute` leaves them, and back.
 *
 * @module
 */

/**
 * Row `r` of a tensor in llama.cpp's q/k order holds HF row `hfRow(r)`:
 * `LlamaModel.permute` reshapes the rows to `[heads, 2, d/2]` and swaps the
 * last two axes, so GGUF row `h·d + 2j + i` is HF row `h·d + i·d/2 + j`.
 *
 * @example
 * ```ts
 * import { permutedRowSource } from "./permute.ts";
 * // one head of 4 rows: GGUF rows 0..3 hold HF rows 0, 2, 1, 3
 * [0, 1, 2, 3].map((r) => permutedRowSource(r, 4, 1)); // [0, 2, 1, 3]
 * ```
 */
export function permutedRowSource(r: number, rows: number, heads: number): number {
  const d = rows / heads;
  const h = Math.floor(r / d), w = r % d;
  const j = w >> 1, i = w & 1;
  return h * d + i * (d / 2) + j;
}

/**
 * Reorders whole rows of `src` (`rows` rows of equal byte length) between HF
 * and llama.cpp's q/k order: `toGguf` applies `LlamaModel.permute`, otherwise
 * its inverse. Works on any element type, quantized rows included. `heads` must
 * divide `rows` into heads of an even number of rows.
 *
 * @example
 * ```ts
 * import { permuteRows } from "./permute.ts";
 * const hf = new Uint8Array([0, 1, 2, 3]); // 4 rows of one byte, one head
 * permuteRows(hf, 4, 1, true); // Uint8Array [0, 2, 1, 3]
 * ```
 */
export function permuteRows(
  src: Uint8Array,
  rows: number,
  heads: number,
  toGguf: boolean,
): Uint8Array {
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0 || src.length % rows !== 0) {
    throw new RangeError(
      `permuteRows: ${rows} rows (${src.length} bytes) do not split into ${heads} heads of an ` +
        "even number of whole rows",
    );
  }
  const rb = src.length / rows;
  const out = new Uint8Array(src.length);
  for (let r = 0; r < rows; r++) {
    const s = permutedRowSource(r, rows, heads);
    if (toGguf) out.set(src.subarray(s * rb, (s + 1) * rb), r * rb);
    else out.set(src.subarray(r * rb, (r + 1) * rb), s * rb);
  }
  return out;
}
