/**
 * Whole kernels of the simplest shape: one thread per element.
 *
 * @module
 */

import type { DeviceCaps } from "../../core/types.ts";
import type { KernelSource } from "../types.ts";
import { flatLaunch, flatMain } from "./grid.ts";
import type { KernelIo } from "./io.ts";

/**
 * A kernel running `body` once per flat index `i` in `[0, n)`. The dispatch is
 * split over x/y when it exceeds `maxWorkgroupsPerDim`; `i` is recomputed from
 * both. `body` is WGSL statements that may use `i: u32`; `io` is the recorder
 * the body's operand names came from.
 *
 * @example
 * ```ts ignore
 * const io = new KernelIo();
 * flatKernel("fill", 100, caps, `  ${io.store(0, "i", "0.0")};`, "", io);
 * ```
 */
export function flatKernel(
  label: string,
  n: number,
  caps: DeviceCaps,
  body: string,
  helpers: string,
  io: KernelIo,
): KernelSource {
  const { wg, workgroups, index } = flatLaunch(n, caps);
  const code = `${helpers}\n${flatMain(wg, index, n, body)}`;
  return { label, code, workgroups, uses: io.uses };
}
