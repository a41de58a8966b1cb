/**
 * The sizes and thread shape of the selective scan's backward
 * (`selective_scan_grad`), and the reduction of its per-block partial sums
 * into dA, dB, dC, dD and the Δ bias's gradient. The reverse walk itself is in
 * `scan_grad_reverse.ts`.
 *
 * Scratch layout: 0 packed params (A·log₂e | D | Δ bias | – | the chunk as
 * u32 bits), 1 checkpoints `[B, NC, Ipad, N]`, 2 the recomputed states of one
 * chunk per thread `[B, chunk + 1, Ipad, N]` (slot 0 the checkpoint), 3 dB/dC
 * partials per channel block `[B, L, blocks, 2N]`, 4 per-channel dA `[B, I, N]`,
 * dD `[B, I]` and dbias `[B, I]` partials.
 *
 * @module
 */

import type { KernelContext, KernelSource } from "../types.ts";
import { flatLaunch, KernelIo } from "../wgsl/mod.ts";
import { store } from "./access.ts";
import type { ScanSlots } from "./attrs.ts";
import type { ScanGradAttrs } from "./scan_grad_reference.ts";

/**
 * Sizes and thread shape of one backward.
 *
 * @example
 * ```ts ignore
 * const p: GradPlan = { B: 1, L: 1024, I: 512, N: 16, chunk: 32, NC: 32, wg: 8, cpt: 4, sub: 8 };
 * ```
 */
export interface GradPlan {
  /** Batch. */
  readonly B: number;
  /** Sequence length. */
  readonly L: number;
  /** Channels. */
  readonly I: number;
  /** State size. */
  readonly N: number;
  /** Steps per chunk (checkpoint spacing). */
  readonly chunk: number;
  /** Chunks over L. */
  readonly NC: number;
  /** Threads per workgroup. */
  readonly wg: number;
  /** Channels per thread. */
  readonly cpt: number;
  /** Steps whose dB/dC partials the workgroup buffers before summing them. */
  readonly sub: number;
}

/**
 * Channel blocks (workgroups) across I.
 *
 * @example
 * ```ts ignore
 * blocksOf({ ...plan, I: 512, wg: 8, cpt: 4 }); // 16
 * ```
 */
export function blocksOf(p: GradPlan): number {
  return Math.ceil(p.I / (p.wg * p.cpt));
}

/**
 * Sums the partials: dB and dC over channel blocks, dA, dD and dbias over the
 * batch, each stored in its output's dtype.
 *
 * @example
 * ```ts ignore
 * const k = reduceKernel(ctx, slots, plan);
 * ```
 */
export function reduceKernel(
  ctx: KernelContext<ScanGradAttrs>,
  slots: ScanSlots,
  p: GradPlan,
): KernelSource {
  const { B, L, I, N } = p;
  const io = new KernelIo();
  const blocks = blocksOf(p);
  const o = ctx.outputs;
  const total = Math.max(B * L * N, I * N, I);
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps);
  const [p4, p5] = [io.scratch(3), io.scratch(4)];
  const sumB = (off: string, stride: number) =>
    `for (var q = 0u; q < ${B}u; q = q + 1u) { acc = acc + ${p5}[${off} + q * ${stride}u]; }`;
  const lines = [
    `  if (j < ${B * L * N}u) {`,
    `    let bt = j / ${N}u;`,
    `    let n = j % ${N}u;`,
    `    var sb: f32 = 0.0;`,
    `    var sc: f32 = 0.0;`,
    `    for (var w = 0u; w < ${blocks}u; w = w + 1u) {`,
    `      let base = (bt * ${blocks}u + w) * ${2 * N}u + n;`,
    `      sb = sb + ${p4}[base];`,
    `      sc = sc + ${p4}[base + ${N}u];`,
    `    }`,
    `    ${store(io, o[slots.b], slots.b, "j", "sb")}`,
    `    ${store(io, o[slots.c], slots.c, "j", "sc")}`,
    `  }`,
    `  if (j < ${I * N}u) {`,
    `    var acc: f32 = 0.0;`,
    `    ${sumB("j", I * N)}`,
    `    ${store(io, o[slots.a], slots.a, "j", "acc")}`,
    `  }`,
    `  if (j < ${I}u) {`,
    `    var acc: f32 = 0.0;`,
    `    ${sumB(`${B * I * N}u + j`, I)}`,
    `    ${store(io, o[slots.d], slots.d, "j", "acc")}`,
  ];
  if (slots.bias !== undefined) {
    lines.push(
      `    acc = 0.0;`,
      `    ${sumB(`${B * I * N + B * I}u + j`, I)}`,
      `    ${store(io, o[slots.bias], slots.bias, "j", "acc")}`,
    );
  }
  lines.push(`  }`);
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = ${index};
${lines.join("\n")}
}`;
  return { label: "ssm_scan_grad_reduce", code, workgroups, uses: io.uses };
}
