/**
 * Operand access shared by the SSM and conv kernels: an f32 load that indexes
 * the raw array when the operand is direct (no accessor call between the loop
 * and the load), a store likewise, and silu.
 *
 * @module
 */

import type { KernelContext, KernelOperand } from "../types.ts";
import type { KernelIo } from "../wgsl/mod.ts";

/**
 * WGSL f32 load of input `j` at `idx`: the raw array when the operand is
 * direct, else its load function.
 *
 * @example
 * ```ts ignore
 * load(ctx, io, 0, "i"); // "f32(in0[i])" or "f32(in0_load(i))"
 * ```
 */
export function load(ctx: KernelContext<unknown>, io: KernelIo, j: number, idx: string): string {
  return ctx.inputs[j].direct ? `f32(${io.in(j)}[${idx}])` : `f32(${io.load(j, idx)})`;
}

/**
 * WGSL statement storing `v` (an f32 expression) to output `j` at `idx`, in the
 * output's dtype.
 *
 * @example
 * ```ts ignore
 * store(io, ctx.outputs[0], 0, "i", "acc"); // "out0[i] = f32(acc);"
 * ```
 */
export function store(io: KernelIo, o: KernelOperand, j: number, idx: string, v: string): string {
  return o.direct
    ? `${io.out(j)}[${idx}] = ${o.dtype}(${v});`
    : `${io.store(j, idx, `${o.dtype}(${v})`)};`;
}

/**
 * silu(x) in WGSL; `vec` "4" for vec4<f32> (the prelude's `kiln_sigmoid4`).
 *
 * @example
 * ```ts ignore
 * SILU("acc"); // "(acc * kiln_sigmoid(acc))"
 * ```
 */
export const SILU = (x: string, vec: "" | "4" = ""): string => `(${x} * kiln_sigmoid${vec}(${x}))`;
