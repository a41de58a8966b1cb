/**
 * Dispatch grids and entry points: how a kernel covers its work within the
 * device's limits, written once.
 *
 * @module
 */

import type { DeviceCaps } from "../../core/types.ts";

/**
 * Splits a flat workgroup count over x/y so no dimension exceeds the device's
 * `maxWorkgroupsPerDim`.
 *
 * @example
 * ```ts
 * import { grid } from "./grid.ts";
 * grid(100_000, 65535); // [50000, 2, 1]
 * ```
 */
export function grid(groups: number, maxPerDim: number): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(groups, 1), 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  if (y > maxPerDim) {
    throw new RangeError(`Dispatch of ${groups} workgroups exceeds the device's grid`);
  }
  return [Math.ceil(groups / y), y, 1];
}

/**
 * Workgroup size for one-thread-per-element kernels on this device.
 *
 * @example
 * ```ts ignore
 * flatWorkgroupSize(device.caps); // 256
 * ```
 */
export function flatWorkgroupSize(caps: DeviceCaps, want = 256): number {
  return Math.max(1, Math.min(want, caps.maxInvocations));
}

/**
 * The flat thread index of a dispatch split over x/y by {@linkcode grid}, as a
 * WGSL expression of `gid` (the global invocation id).
 *
 * @example
 * ```ts
 * import { flatIndex } from "./grid.ts";
 * flatIndex([100, 1, 1], 256); // "gid.x"
 * flatIndex([50000, 2, 1], 256); // "gid.x + gid.y * 12800000u"
 * ```
 */
export function flatIndex(workgroups: readonly [number, number, number], wg: number): string {
  return workgroups[1] > 1 ? `gid.x + gid.y * ${workgroups[0] * wg}u` : "gid.x";
}

/**
 * The flat workgroup index of a dispatch that `grid` split over x/y, as a WGSL
 * expression of `wid` (the `workgroup_id` builtin): for kernels that give each
 * workgroup one row (`flatIndex` is its per-thread counterpart).
 *
 * @example
 * ```ts
 * import { groupIndex } from "./grid.ts";
 * groupIndex([100, 1, 1]); // "wid.x"
 * groupIndex([50000, 2, 1]); // "wid.x + wid.y * 50000u"
 * ```
 */
export function groupIndex(workgroups: readonly [number, number, number]): string {
  return workgroups[1] > 1 ? `wid.x + wid.y * ${workgroups[0]}u` : "wid.x";
}

/**
 * A one-thread-per-element launch over `n` items: workgroup size, grid and the
 * WGSL index expression.
 *
 * @example
 * ```ts ignore
 * const { wg, workgroups, index } = flatLaunch(1000, device.caps);
 * ```
 */
export function flatLaunch(
  n: number,
  caps: DeviceCaps,
  want = 256,
): { wg: number; workgroups: [number, number, number]; index: string } {
  const wg = flatWorkgroupSize(caps, want);
  const workgroups = grid(Math.ceil(n / wg), caps.maxWorkgroupsPerDim);
  return { wg, workgroups, index: flatIndex(workgroups, wg) };
}

/**
 * A compute entry point `main` of `wg` threads whose body sees `i`, the flat
 * index, and returns early past `n`.
 *
 * @example
 * ```ts
 * import { flatMain } from "./grid.ts";
 * flatMain(64, "gid.x", 100, "  out0_store(i, 0.0);");
 * ```
 */
export function flatMain(wg: number, index: string, n: number, body: string): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${index};
  if (i >= ${n}u) { return; }
${body}
}`;
}

/**
 * WGSL expression of coordinate `k` of flat index `i` in a row-major shape whose
 * strides are `strides` (dimension sizes `dims`).
 *
 * @example
 * ```ts
 * import { coordExpr } from "./grid.ts";
 * coordExpr("i", [4, 5], [5, 1], 1); // "(i % 5u)"
 * ```
 */
export function coordExpr(
  i: string,
  dims: readonly number[],
  strides: readonly number[],
  k: number,
): string {
  // An empty shape (a run-time dim of 0) has no element to locate: no `/ 0u`.
  if (dims[k] === 1 || dims.includes(0)) return "0u";
  const q = strides[k] === 1 ? i : `(${i} / ${strides[k]}u)`;
  // The outermost coordinate needs no modulo (i < numel).
  return k === 0 || strides[k] * dims[k] === strides[0] * dims[0] ? q : `(${q} % ${dims[k]}u)`;
}
