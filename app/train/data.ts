/**
 * Micro-batches from a token stream, as a pure function of the micro-batch's
 * index: sequence b of micro-batch k is the T + 1 tokens from offset
 * ((k·B + b)·T) mod (n − T) (inputs, then the targets shifted by one), so a
 * resumed run needs only the number of micro-batches already consumed.
 *
 * @module
 */

/**
 * The `ids` and `targets` (u32 `[B·T]`) of micro-batch `k`.
 *
 * @example
 * ```ts
 * import { microBatch } from "./data.ts";
 * const { ids, targets } = microBatch(Uint32Array.of(1, 2, 3, 4, 5, 6), 0, 2, 2);
 * [...ids, ...targets]; // [1, 2, 3, 4, 2, 3, 4, 5]
 * ```
 */
export function microBatch(
  tokens: ArrayLike<number>,
  k: number,
  batch: number,
  seq: number,
): { ids: Uint32Array; targets: Uint32Array } {
  const span = tokens.length - seq;
  if (span < 1) {
    throw new RangeError(
      `training data: ${tokens.length} tokens cannot fill one sequence of ${seq} + 1 tokens`,
    );
  }
  const ids = new Uint32Array(batch * seq);
  const targets = new Uint32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    // Offsets as float64 integers: exact far beyond any corpus length.
    const start = ((k * batch + b) * seq) % span;
    for (let t = 0; t < seq; t++) {
      ids[b * seq + t] = tokens[start + t];
      targets[b * seq + t] = tokens[start + t + 1];
    }
  }
  return { ids, targets };
}
