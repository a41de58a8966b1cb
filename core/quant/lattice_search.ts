/**
 * What the lattice encoders (`./iq3_encode.ts`, `./iq2_encode.ts`) share: a
 * grid's points as levels `2l + 1`, the map from each word of level indices to
 * its point, and for a word off the grid its neighbour list — the points at
 * its `want` smallest squared distances, ordered by distance then index, as
 * ggml's `iq3xs_init_impl` / `iq2xs_init_impl` build them (each sorts
 * (distance, index) pairs and cuts after the `want`-th distinct distance).
 * Also the level rounding and the fit's sums they both use.
 *
 * @module
 */

import { IQ_GRIDS } from "./iq_grids.ts";
import { nearestInt } from "./scalar.ts";

const f = Math.fround;

/** The grids the encoders search. */
type SearchedGrid = "iq3xxs" | "iq3s" | "iq2xxs" | "iq2xs" | "iq2s" | "iq1s";

/**
 * A grid for quantizing: point levels, its map and neighbours.
 *
 * @example
 * ```ts
 * import { latticeData, type LatticeData } from "./lattice_search.ts";
 * const d: LatticeData = latticeData("iq3xxs", 2);
 * d.grid.length; // 1024: 256 points of 4 levels
 * ```
 */
export interface LatticeData {
  /** Levels `2l + 1` of each point, `width` a point. */
  readonly grid: Int8Array;
  /** Point index of each word of level indices, or `−(offset + 1)` into `neighbours`. */
  readonly map: Int32Array;
  /** Per off-grid word: a count, then that many point indices, nearest first. */
  readonly neighbours: Uint16Array;
}

const cache = new Map<SearchedGrid, LatticeData>();

/**
 * The grid `name`'s search data with neighbour lists of `want` distances. On
 * the 2-bit grids, words holding a level index of 3 (which ggml lists too) are
 * never looked up — levels are clamped to 2 — and are left out.
 *
 * @example
 * ```ts
 * import { latticeData } from "./lattice_search.ts";
 * latticeData("iq2xxs", 2).map.length; // 65536 words of 8 two-bit levels
 * ```
 */
export function latticeData(name: SearchedGrid, want: number): LatticeData {
  const hit = cache.get(name);
  if (hit) return hit;
  const { points, width, bits } = IQ_GRIDS[name];
  const n = points.length, mask = (1 << bits) - 1;
  const grid = new Int8Array(width * n);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < width; i++) {
      grid[width * k + i] = 2 * ((points[k] >> (bits * i)) & mask) + 1;
    }
  }
  const map = new Int32Array(1 << (bits * width)).fill(-1);
  for (let k = 0; k < n; k++) map[points[k]] = k;
  const lists: number[] = [];
  const d2 = new Int32Array(n);
  const pos = new Int8Array(width);
  words: for (let u = 0; u < map.length; u++) {
    if (map[u] >= 0) continue;
    for (let i = 0; i < width; i++) {
      const l = (u >> (bits * i)) & mask;
      if (bits === 2 && l === 3) continue words;
      pos[i] = 2 * l + 1;
    }
    // The `want` smallest distinct squared distances, ascending.
    const near: number[] = [];
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < width; i++) {
        const d = grid[width * j + i] - pos[i];
        s += d * d;
      }
      d2[j] = s;
      if (near.length < want || s < near[near.length - 1]) {
        if (near.includes(s)) continue;
        near.push(s);
        near.sort((a, b) => a - b);
        if (near.length > want) near.pop();
      }
    }
    map[u] = -(lists.length + 1);
    const at = lists.push(0) - 1;
    for (const dist of near) {
      for (let j = 0; j < n; j++) {
        if (d2[j] !== dist) continue;
        lists.push(j);
        lists[at]++;
      }
    }
  }
  const data = { grid, map, neighbours: Uint16Array.from(lists) };
  cache.set(name, data);
  return data;
}

/**
 * The sign step of the IQ2/IQ3 searches for run `k` (8 values) of the values
 * at `x[xb]`: their magnitudes into `xval`, and the run's sign bits. With
 * `parity` (IQ3_XXS, IQ2_XXS/XS: 7 signs stored, the 8th implied) an odd count
 * flips the value of least `weight·x²` to positive, and 7 bits are returned.
 *
 * @example
 * ```ts
 * import { signRun } from "./lattice_search.ts";
 * const xval = new Float32Array(8);
 * signRun(new Float32Array([-1, 2, 3, 4, 5, 6, 7, 8]), 0, new Float32Array(8).fill(1), xval, 0, false); // 1
 * ```
 */
export function signRun(
  x: Float32Array,
  xb: number,
  weight: Float32Array,
  xval: Float32Array,
  k: number,
  parity: boolean,
): number {
  let flips = 0, s = 0;
  for (let i = 0; i < 8; i++) {
    const v = x[xb + 8 * k + i];
    if (v >= 0) xval[8 * k + i] = v;
    else {
      xval[8 * k + i] = -v;
      flips++;
      s |= 1 << i;
    }
  }
  if (!parity) return s;
  if (flips % 2) {
    // An odd count: flip the value that costs least (the 8th sign is implied).
    let imin = 0, min = f(f(weight[8 * k] * x[xb + 8 * k]) * x[xb + 8 * k]);
    for (let i = 1; i < 8; i++) {
      const v = x[xb + 8 * k + i];
      const ax = f(f(weight[8 * k + i] * v) * v);
      if (ax < min) {
        min = ax;
        imin = i;
      }
    }
    xval[8 * k + imin] = -xval[8 * k + imin];
    s ^= 1 << imin;
  }
  return s & 127;
}

/**
 * ggml's `nearest_int(0.5f·(id·v − 1))` clamped to `0 … top`: the `l` whose odd
 * multiple `2l + 1` of `1/id` is nearest `v` (levels and sub-block scales alike).
 *
 * @example
 * ```ts
 * import { oddLevel } from "./lattice_search.ts";
 * oddLevel(1, 5, 7); // 2: 5 = 2·2 + 1
 * ```
 */
export const oddLevel = (id: number, v: number, top: number): number =>
  Math.max(0, Math.min(top, nearestInt(f(0.5 * f(f(id * v) - 1)))));

/**
 * `Σ w·x·q` and `Σ w·q²` over `n` values with `q = 2L + 1`, in float32 as ggml sums them.
 *
 * @example
 * ```ts
 * import { levelSums } from "./lattice_search.ts";
 * levelSums(1, new Float32Array([1]), new Float32Array([3]), new Int8Array([1])); // [9, 9]
 * ```
 */
export function levelSums(
  n: number,
  weight: Float32Array,
  xval: Float32Array,
  L: Int8Array,
): [number, number] {
  let sumqx = 0, sumq2 = 0;
  for (let i = 0; i < n; i++) {
    const w = weight[i], q = 2 * L[i] + 1;
    sumqx = f(sumqx + f(f(w * xval[i]) * q));
    sumq2 = f(sumq2 + f(f(w * q) * q));
  }
  return [sumqx, sumq2];
}
