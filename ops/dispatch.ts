/**
 * Dispatch-grid helper shared by every kernel lowering. A leaf module: ops import it
 * without pulling in the compiler (which imports the op registry).
 *
 * @module
 */

/** Splits a flat workgroup count over x/y so no dimension exceeds the device limit. */
export function grid(groups: number, maxPerDim: number): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(groups, 1), 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  if (y > maxPerDim) {
    throw new RangeError(`Dispatch of ${groups} workgroups exceeds the device's grid`);
  }
  return [Math.ceil(groups / y), y, 1];
}
