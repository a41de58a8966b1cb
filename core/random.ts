/**
 * A small seeded PRNG shared by weight initialisers, examples and tests, so a
 * seed reproduces the same numbers everywhere.
 *
 * @module
 */

/**
 * Mulberry32: returns a function giving uniform numbers in [0, 1).
 *
 * @example
 * ```ts
 * import { mulberry32 } from "@kiln/kiln";
 * const rand = mulberry32(42);
 * rand(); // same value on every run
 * ```
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
