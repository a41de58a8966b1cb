/**
 * Constant tables kernels index at run time, by name: today the lattice
 * formats' codebooks (`core/quant/iq_grids.ts`) as their points' levels, a byte
 * each (IQ1's −1/0/1 biased to 0/1/2), so a kernel turns four of them into
 * floats with a mask and a convert: a point is one u32 (IQ3's four levels) or
 * two (IQ2 and IQ1: eight). A kernel names a table through
 * `KernelIo.table(name)`; the compiler binds it as `array<vec4<u32>, n>` (a
 * uniform buffer on CPU adapters, read-only storage on GPUs), the planner gives
 * each plan one buffer per table, and the runtime fills it from here once.
 *
 * Why not WGSL constants: a run-time-indexed `const` array compiles to a copy
 * at every use and private arrays to a copy per invocation; on lavapipe a
 * 512-word codebook as private arrays picked by a switch compiled in 1.6 s and
 * looked up 3-16× slower than a uniform buffer, which compiled in 30 ms
 * (`bench/table_lookup_bench.ts`).
 *
 * @module
 */

import { gridLevel, IQ_GRIDS, type IqGridName } from "./quant/iq_grids.ts";

/**
 * Names of the constant tables (the lattice codebooks, by ggml's grid names).
 *
 * @example
 * ```ts
 * import type { KernelTableName } from "./kernel_tables.ts";
 * const name: KernelTableName = "iq2xxs";
 * ```
 */
export type KernelTableName = IqGridName;

const cache = new Map<KernelTableName, Uint32Array>();

/**
 * Whether `name` is a table this build knows (a prebuilt plan may name one a
 * later version dropped).
 *
 * @example
 * ```ts
 * import { isKernelTable } from "./kernel_tables.ts";
 * isKernelTable("iq1s"); // true
 * isKernelTable("nope"); // false
 * ```
 */
export function isKernelTable(name: string): name is KernelTableName {
  return Object.hasOwn(IQ_GRIDS, name);
}

/**
 * The words of table `name`: grid point `p`'s levels as bytes, level `j` in
 * byte `j`, from word `p · width / 4` on (IQ1 levels plus one); the length a
 * whole number of `vec4<u32>`s.
 *
 * @example
 * ```ts
 * import { kernelTable } from "./kernel_tables.ts";
 * kernelTable("iq2xxs").length; // 512 (256 points of 8 levels)
 * kernelTable("iq2xxs")[0].toString(16); // "8080808" (levels 8, 8, 8, 8)
 * ```
 */
export function kernelTable(name: KernelTableName): Uint32Array {
  if (!isKernelTable(name)) throw new RangeError(`Unknown kernel table "${name}"`);
  let words = cache.get(name);
  if (!words) {
    const { points, width, bits } = IQ_GRIDS[name];
    const bias = name === "iq1s" ? 1 : 0;
    const bytes = new Uint8Array(Math.ceil((points.length * width) / 16) * 16);
    points.forEach((pt, p) => {
      for (let j = 0; j < width; j++) {
        bytes[p * width + j] = gridLevel(name, (pt >> (bits * j)) & ((1 << bits) - 1)) + bias;
      }
    });
    words = new Uint32Array(bytes.buffer);
    cache.set(name, words);
  }
  return words;
}
