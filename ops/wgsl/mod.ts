/**
 * The WGSL vocabulary every kernel is written with: literals, dispatch grids
 * and entry points from the device's limits, coordinate arithmetic, and the
 * recorded operand names of {@linkcode KernelIo}.
 *
 * @example
 * ```ts
 * import { flatMain, KernelIo, lit } from "./mod.ts";
 * const io = new KernelIo();
 * const code = flatMain(64, "gid.x", 10, `  ${io.store(0, "i", lit(1))};`);
 * ```
 *
 * @module
 */

export { f32, f32Array, lit, u32, u32Array, unpackHalves } from "./literal.ts";
export {
  coordExpr,
  flatIndex,
  flatLaunch,
  flatMain,
  flatWorkgroupSize,
  grid,
  groupIndex,
} from "./grid.ts";
export { KernelIo, type KernelSymbol, segmentElems } from "./io.ts";
export { flatKernel } from "./kernel.ts";
