/**
 * The decode step (`ssm_step`) for large state sizes on CPU rasterisers: one
 * thread a channel, its N states walked by a loop instead of unrolled into
 * registers. The unrolled kernel's compile grows with N — LLVM took ~5 s for
 * Mamba-2's N = 128 — while the step loads and stores every state once either
 * way, so the loop costs the step little (see BENCHMARKS.md, "Mamba-2 beside
 * Mamba").
 *
 * @module
 */

import type { KernelContext, KernelSource } from "../types.ts";
import { f32, flatLaunch, KernelIo } from "../wgsl/mod.ts";
import { load, SILU, store } from "./access.ts";
import type { ScanAttrs, ScanSlots } from "./attrs.ts";

/**
 * State sizes from which the CPU rasteriser's step walks its states in a loop.
 *
 * @example
 * ```ts ignore
 * import { LOOP_STATES } from "./step_loop.ts";
 * 128 >= LOOP_STATES; // true: Mamba-2 checkpoints' step loops
 * ```
 */
export const LOOP_STATES = 64;

/**
 * The looped step kernel over B rows of I channels and N states: the state is
 * read and written in place through output 1, y stored to output 0.
 *
 * @example
 * ```ts ignore
 * const kernel = stepLoopKernel(ctx, slots, 1, 1536, 128);
 * ```
 */
export function stepLoopKernel(
  ctx: KernelContext<ScanAttrs>,
  slots: ScanSlots,
  B: number,
  I: number,
  N: number,
): KernelSource {
  const io = new KernelIo();
  const { wg, workgroups, index } = flatLaunch(B * I, ctx.caps, 64);
  let dt = load(ctx, io, slots.delta, "j");
  if (slots.bias !== undefined) dt = `${dt} + ${load(ctx, io, slots.bias, "i")}`;
  if (ctx.attrs.softplus) dt = `kiln_softplus(${dt})`;
  const gate = slots.z === undefined
    ? ""
    : `  let zz = ${load(ctx, io, slots.z, "j")};\n  acc = acc * ${SILU("zz")};\n`;
  const state = io.out(1);
  // a·log₂e: exp(Δ·A) as one exp2, as the unrolled kernel computes it.
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = ${index};
  if (j >= ${B * I}u) { return; }
  let b = j / ${I}u;
  let i = j % ${I}u;
  let x = ${load(ctx, io, slots.u, "j")};
  let dt = ${dt};
  let du = dt * x;
  var acc = ${load(ctx, io, slots.d, "i")} * x;
  let hb = j * ${N}u;
  for (var n = 0u; n < ${N}u; n = n + 1u) {
    let a = ${load(ctx, io, slots.a, `i * ${N}u + n`)} * ${f32(1.4426950408889634)};
    let h = fma(exp2(dt * a), ${state}[hb + n], du * ${load(ctx, io, slots.b, `b * ${N}u + n`)});
    ${state}[hb + n] = h;
    acc = fma(h, ${load(ctx, io, slots.c, `b * ${N}u + n`)}, acc);
  }
${gate}  ${store(io, ctx.outputs[0], 0, "j", "acc")}
}`;
  return { label: `ssm_step_loop_B${B}_I${I}_N${N}`, code, workgroups, uses: io.uses };
}
