/**
 * Where each part of a fused checkpoint tensor sits in it: one after another
 * (Granite's `input_linear`), or packed ({@linkcode FusedPacking}: GPT-OSS's
 * experts stacked, transposed, gate and up interleaved). One index map serves
 * every reader and writer — the weight loader's byte gathers, training
 * checkpoints, the gradient tools — so they cannot disagree.
 *
 * @module
 */

import type { FusedTensor } from "./spec.ts";

/** An indexable array of numbers (any typed array, or a plain one). */
export interface NumberArray {
  readonly length: number;
  [i: number]: number;
}

/**
 * Calls `visit(at, i)` for every element of part `k` of `f`: `at` its index in
 * the stored tensor, `i` its index in the part (row-major `partShape`).
 *
 * @example
 * ```ts
 * import { eachPartElement } from "./fused.ts";
 * const f = { name: "w", shape: [1, 2, 4], parts: ["g", "u"], partShape: [2, 2],
 *   packing: { groups: 1, every: 2, transposed: true } };
 * const at: number[] = [];
 * eachPartElement(f, 1, (a) => at.push(a)); // up: stored columns 1, 3
 * at; // [1, 5, 3, 7]
 * ```
 */
export function eachPartElement(
  f: FusedTensor,
  k: number,
  visit: (at: number, i: number) => void,
): void {
  const n = f.partShape.reduce((a, b) => a * b, 1);
  const pk = f.packing;
  if (!pk) {
    for (let i = 0; i < n; i++) visit(k * n + i, i);
    return;
  }
  // A group is [r, c·every]; part p takes columns p, p + every, …
  const [r, c] = pk.transposed ? [f.partShape[1], f.partShape[0]] : f.partShape;
  const base = Math.floor(k / pk.every) * r * c * pk.every, p = k % pk.every;
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < c; j++) {
      visit(base + (i * c + j) * pk.every + p, pk.transposed ? j * r + i : i * c + j);
    }
  }
}

/**
 * Part `k` of the stored tensor `stored`, written into `out` (its element count).
 *
 * @example
 * ```ts
 * import { readPart } from "./fused.ts";
 * const f = { name: "w", shape: [4], parts: ["a", "b"], partShape: [2] };
 * readPart(f, Float32Array.of(1, 2, 3, 4), 1, new Float32Array(2)); // [3, 4]
 * ```
 */
export function readPart<T extends NumberArray>(
  f: FusedTensor,
  stored: NumberArray,
  k: number,
  out: T,
): T {
  eachPartElement(f, k, (at, i) => (out[i] = stored[at]));
  return out;
}

/**
 * The stored tensor of `f` from its parts' values, in `f.parts` order.
 *
 * @example
 * ```ts
 * import { joinParts } from "./fused.ts";
 * const f = { name: "w", shape: [4], parts: ["a", "b"], partShape: [2] };
 * joinParts(f, [Float32Array.of(1, 2), Float32Array.of(3, 4)]); // [1, 2, 3, 4]
 * ```
 */
export function joinParts(f: FusedTensor, parts: readonly NumberArray[]): Float32Array;
/** …into `out` (the stored tensor's element count), e.g. a Float64Array. */
export function joinParts<T extends NumberArray>(
  f: FusedTensor,
  parts: readonly NumberArray[],
  out: T,
): T;
export function joinParts(
  f: FusedTensor,
  parts: readonly NumberArray[],
  out: NumberArray = new Float32Array(f.shape.reduce((a, b) => a * b, 1)),
): NumberArray {
  parts.forEach((part, k) => eachPartElement(f, k, (at, i) => (out[at] = part[i])));
  return out;
}
