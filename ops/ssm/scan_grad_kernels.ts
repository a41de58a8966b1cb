/**
 * The sizes and thread shape of the selective scan's backward
 * (`selective_scan_grad`) and its small kernels: the checkpoint walk before
 * the reverse walk (`scan_grad_reverse.ts`), the sums of the dB/dC partials
 * after each reverse segment, and the final per-channel sums.
 *
 * Scratch layout (f32):
 * - 0 packed params: A·log₂e `[I·N]` | D `[I]` | Δ bias `[I]` | a sink for the
 *   cache-line touches | the chunk (u32 bits) | two segment counters (u32 bits,
 *   see {@linkcode counterSlots});
 * - 1 states `[B, blocks, NC (+ ⌈chunk/block⌉), N, wg·cpt]`: per workgroup, the
 *   state entering each chunk, then (unless the reverse walk keeps them in
 *   workgroup memory) the state entering each block of the chunk being walked
 *   back;
 * - 2 dB/dC partials of one segment `[B, segment steps, rows, 2N]`: one row per
 *   lane (CPU) or per workgroup (GPU);
 * - 3 the carried adjoint `[B, 2N + 2, Ipad]`: g (N rows), dA (N rows), dD, and
 *   the Δ bias's gradient, handed from segment to segment; then A·log₂e
 *   `[N, Ipad]`, D and the Δ bias `[Ipad]` copied channel-minor by the
 *   checkpoint walk.
 *
 * @module
 */

import type { KernelContext, KernelSource } from "../types.ts";
import { flatLaunch, KernelIo } from "../wgsl/mod.ts";
import { load, store } from "./access.ts";
import type { ScanSlots } from "./attrs.ts";
import { gradLanes, SCRATCH } from "./scan_grad_lanes.ts";
import type { ScanGradAttrs } from "./scan_grad_reference.ts";

/**
 * Sizes and thread shape of one backward.
 *
 * @example
 * ```ts ignore
 * const p: GradPlan = { B: 1, L: 1024, I: 512, N: 16, chunk: 32, NC: 32, wg: 8, cpt: 8,
 *   block: 4, lanes: true, segSteps: 256, localBlocks: true, workgroupBytes: 32768 };
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
  /** Steps recomputed into registers and walked back at a time (unrolled). */
  readonly block: number;
  /**
   * dB/dC partials per lane, summed by the reduce kernel (no barrier in the
   * reverse walk), instead of per workgroup through workgroup memory.
   */
  readonly lanes: boolean;
  /** Steps whose partials one segment may hold (a segment is ≥ 1 chunk). */
  readonly segSteps: number;
  /**
   * The reverse walk keeps the block starts of a chunk in workgroup memory
   * (of {@linkcode localBlockSlots} blocks) instead of in the states buffer.
   */
  readonly localBlocks: boolean;
  /** The device's workgroup memory in bytes. */
  readonly workgroupBytes: number;
  /**
   * The chunk's entering states come from the forward (the op's saved-states
   * input, `checkpoints`): no checkpoint walk, and the states buffer holds only
   * block starts.
   */
  readonly saved?: boolean;
}

/**
 * Block starts that fit the device's workgroup memory: the size of the
 * reverse walk's workgroup array, so its code does not depend on the chunk.
 *
 * @example
 * ```ts ignore
 * localBlockSlots({ ...plan, N: 16, wg: 8, cpt: 8, workgroupBytes: 32768 }); // 8
 * ```
 */
export function localBlockSlots(p: Pick<GradPlan, "wg" | "cpt" | "N" | "workgroupBytes">): number {
  return Math.floor(p.workgroupBytes / (p.wg * p.cpt * p.N * 4));
}

/**
 * Channel blocks (workgroups) across I.
 *
 * @example
 * ```ts ignore
 * blocksOf({ ...plan, I: 512, wg: 8, cpt: 8 }); // 8
 * ```
 */
export function blocksOf(p: GradPlan): number {
  return Math.ceil(p.I / (p.wg * p.cpt));
}

/**
 * Partial rows per step: one per lane or one per workgroup.
 *
 * @example
 * ```ts ignore
 * partialRows({ ...plan, I: 512, wg: 8, cpt: 8, lanes: true }); // 64
 * ```
 */
export function partialRows(p: GradPlan): number {
  return blocksOf(p) * (p.lanes ? p.wg : 1);
}

/**
 * Chunks per segment, steps per segment, and segments (reverse dispatches).
 *
 * @example
 * ```ts ignore
 * segmentsOf({ ...plan, L: 1024, chunk: 32, NC: 32, segSteps: 256 });
 * // { chunks: 8, steps: 256, count: 4 }
 * ```
 */
export function segmentsOf(p: GradPlan): { chunks: number; steps: number; count: number } {
  const chunks = Math.min(p.NC, Math.max(1, Math.floor(p.segSteps / p.chunk)));
  return { chunks, steps: chunks * p.chunk, count: Math.ceil(p.NC / chunks) };
}

/**
 * `scratch0` indices of the segment counters (u32 bits). The reverse walk reads
 * `reverse` and writes `reduce`, the reduce kernel reads `reduce` and writes
 * `reverse`: no dispatch writes what it reads, so every invocation of one
 * sees the same segment.
 *
 * @example
 * ```ts ignore
 * counterSlots(512, 16).reverse; // 9218
 * ```
 */
export function counterSlots(I: number, N: number): { reverse: number; reduce: number } {
  return { reverse: I * N + 2 * I + 2, reduce: I * N + 2 * I + 3 };
}

/**
 * WGSL `let`s of the run-time sizes: the chunk, the chunk count `nc`, the
 * state slots per workgroup and the chunks per segment `cps`.
 *
 * @example
 * ```ts ignore
 * chunkLines(plan, io.scratch(0)); // ["let chunk = bitcast<u32>(scratch0[…]);", …]
 * ```
 */
export function chunkLines(p: GradPlan, params: string): string[] {
  return [
    `let chunk = bitcast<u32>(${params}[${p.I * p.N + 2 * p.I + 1}u]);`,
    `let nc = (${p.L}u + chunk - 1u) / chunk;`,
    `let slots = ${p.saved ? "0u" : "nc"}${
      p.localBlocks ? "" : ` + (chunk + ${p.block - 1}u) / ${p.block}u`
    };`,
    `let cps = min(nc, max(1u, ${p.segSteps}u / chunk));`,
  ];
}

/**
 * The checkpoint walk: L forward from h0, keeping the state entering each
 * chunk (skipped where the plan says `saved`: the forward kept them). It also
 * starts the carried adjoint (g = the final state's gradient or 0), copies
 * A·log₂e, D and the Δ bias channel-minor for the reverse walk, and resets
 * the segment counters.
 *
 * @example
 * ```ts ignore
 * const k = checkpointKernel(ctx, slots, plan, ghF);
 * ```
 */
export function checkpointKernel(
  ctx: KernelContext<ScanGradAttrs>,
  slots: ScanSlots,
  p: GradPlan,
  ghFSlot: number | undefined,
): KernelSource {
  const { B, L, I, N, wg } = p;
  const io = new KernelIo();
  const arrayTypes: Record<string, string> = {};
  const w = gradLanes(ctx, slots, p, io, arrayTypes);
  const { units, NS, T, V } = w;
  const params = io.scratch(SCRATCH.params);
  const plus = (e: number) => (e === 0 ? "" : ` + ${e}u`);
  const perChannel = (at: (e: number) => string): string =>
    V === 1 ? at(0) : `vec4<f32>(${[0, 1, 2, 3].map(at).join(", ")})`;
  const keep = (slot: string, ind: string) =>
    units.flatMap((k) => NS.map((n) => `${ind}${w.stateAt(slot, k, n)} = h${k}_${n};`));
  const lines = [...chunkLines(p, params), ...w.pre(["a", "d", "db"]), `var touched = 0.0;`];
  // The reverse walk reads A·log₂e, D and the Δ bias from this copy: a vec4
  // of channels per access instead of one access per channel.
  const copy = units.flatMap((k) => [
    ...NS.map((n) => `${w.carryAt("a", k, n)} = a${k}_${n};`),
    `${w.carryAt("d", k)} = d${k};`,
    `${w.carryAt("db", k)} = db${k};`,
  ]);
  lines.push(`if (b == 0u) {`, ...copy.map((l) => "  " + l), `}`);
  for (const k of units) {
    for (const n of NS) {
      const at = (e: number) => `(b * ${I}u + j${k}${plus(e)}) * ${N}u + ${n}u`;
      const h0 = slots.h0 !== undefined
        ? perChannel((e) => load(ctx, io, slots.h0!, at(e)))
        : `${T}(0.0)`;
      if (!p.saved) lines.push(`var h${k}_${n}: ${T} = ${h0};`);
      const g0 = ghFSlot !== undefined ? perChannel((e) => load(ctx, io, ghFSlot, at(e))) : "0.0";
      lines.push(`${w.carryAt("g", k, n)} = ${T}(${g0});`);
      lines.push(`${w.carryAt("gA", k, n)} = ${T}(0.0);`);
    }
    lines.push(`${w.carryAt("gD", k)} = ${T}(0.0);`, `${w.carryAt("gb", k)} = ${T}(0.0);`);
  }
  // Rows two steps ahead are touched so their cache misses overlap this step's.
  const ahead = w.touch([slots.u, slots.delta], `(b * ${L}u + min(t + 2u, ${L - 1}u))`);
  const c = counterSlots(I, N);
  // With the forward's saved states there is nothing to walk.
  const walk = p.saved ? [] : [
    `for (var c = 0u; c + 1u < nc; c = c + 1u) {`,
    ...keep("c", "  "),
    `  for (var t = c * chunk; t < c * chunk + chunk; t = t + 1u) {`,
    ...w.walkStep("    ", ahead),
    `  }`,
    `}`,
    ...keep("nc - 1u", ""),
  ];
  lines.push(
    ...walk,
    `if (wid.x == 0u && wid.z == 0u && lid.x == 0u) {`,
    `  ${params}[${c.reverse}u] = bitcast<f32>(0u);`,
    `  ${params}[${c.reduce}u] = bitcast<f32>(0u);`,
    `}`,
    `${params}[${I * N + 2 * I}u] = touched;`,
  );
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
${lines.map((l) => "  " + l).join("\n")}
}`;
  return {
    label: `ssm_scan_grad_${p.saved ? "setup" : "checkpoints"}_B${B}_L${L}_I${I}_N${N}`,
    code,
    workgroups: [blocksOf(p), 1, B],
    arrayTypes,
    uses: io.uses,
  };
}

/**
 * Sums one segment's dB/dC partials over their rows (a vec4 of states at a time
 * where N allows) into dB and dC, then moves the reverse walk on to the next
 * segment.
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
  const rows = partialRows(p);
  const seg = segmentsOf(p);
  const RV = N % 4 === 0 ? 4 : 1;
  const per = (2 * N) / RV;
  const { wg, workgroups, index } = flatLaunch(B * seg.steps * per, ctx.caps);
  const params = io.scratch(SCRATCH.params);
  const parts = io.scratch(SCRATCH.partials);
  const c = counterSlots(I, N);
  const arrayTypes: Record<string, string> = {};
  if (RV === 4) arrayTypes[`scratch${SCRATCH.partials}`] = "vec4<f32>";
  const o = ctx.outputs;
  // Partial quad q < N/RV is dB's, the rest dC's.
  const stores = [...Array(RV).keys()].map((e) => {
    const v = RV === 4 ? `acc[${e}]` : "acc";
    const n = RV === 4 ? `q * 4u + ${e}u` : "q";
    const nc = RV === 4 ? `(q - ${N / 4}u) * 4u + ${e}u` : `q - ${N}u`;
    return `if (q < ${N / RV}u) { ${store(io, o[slots.b], slots.b, `bt * ${N}u + ${n}`, v)} } ` +
      `else { ${store(io, o[slots.c], slots.c, `bt * ${N}u + ${nc}`, v)} }`;
  });
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = ${index};
${chunkLines(p, params).map((l) => "  " + l).join("\n")}
  let sg = bitcast<u32>(${params}[${c.reduce}u]) - 1u;
  let chi = nc - min(nc, sg * cps);
  let tlo = (chi - min(chi, cps)) * chunk;
  let thi = min(chi * chunk, ${L}u);
  let q = j % ${per}u;
  let tt = (j / ${per}u) % ${seg.steps}u;
  let b = j / ${per * seg.steps}u;
  if (j < ${B * seg.steps * per}u && tlo + tt < thi) {
    var acc = ${RV === 4 ? "vec4<f32>" : "f32"}(0.0);
    let base = (b * ${seg.steps}u + tt) * ${rows}u;
    for (var w = 0u; w < ${rows}u; w = w + 1u) {
      acc = acc + ${parts}[(base + w) * ${per}u + q];
    }
    let bt = b * ${L}u + tlo + tt;
${stores.map((l) => "    " + l).join("\n")}
  }
  if (j == 0u) { ${params}[${c.reverse}u] = bitcast<f32>(sg + 1u); }
}`;
  return { label: "ssm_scan_grad_reduce", code, workgroups, arrayTypes, uses: io.uses };
}

/**
 * dA, dD and the Δ bias's gradient summed over the batch from the carried
 * adjoint, and the initial state's gradient (g after the last step back).
 *
 * @example
 * ```ts ignore
 * const k = finalKernel(ctx, slots, plan);
 * ```
 */
export function finalKernel(
  ctx: KernelContext<ScanGradAttrs>,
  slots: ScanSlots,
  p: GradPlan,
): KernelSource {
  const { B, I, N, wg: pwg, cpt } = p;
  const io = new KernelIo();
  const Ipad = blocksOf(p) * pwg * cpt;
  const carry = io.scratch(SCRATCH.carry);
  const o = ctx.outputs;
  const h0 = slots.h0;
  const total = Math.max(I * N, h0 !== undefined ? B * I * N : 0);
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps);
  const at = (b: string, r: string, i: string) =>
    `${carry}[(${b} * ${2 * N + 2}u + ${r}) * ${Ipad}u + ${i}]`;
  const sumB = (r: string, i: string) =>
    `var acc: f32 = 0.0;\n    for (var b = 0u; b < ${B}u; b = b + 1u) { acc = acc + ${
      at("b", r, i)
    }; }`;
  const lines = [
    `  if (j < ${I * N}u) {`,
    `    ${sumB(`${N}u + j % ${N}u`, `j / ${N}u`)}`,
    `    ${store(io, o[slots.a], slots.a, "j", "acc")}`,
    `  }`,
    `  if (j < ${I}u) {`,
    `    ${sumB(`${2 * N}u`, "j")}`,
    `    ${store(io, o[slots.d], slots.d, "j", "acc")}`,
    `  }`,
  ];
  if (slots.bias !== undefined) {
    lines.push(
      `  if (j < ${I}u) {`,
      `    ${sumB(`${2 * N + 1}u`, "j")}`,
      `    ${store(io, o[slots.bias], slots.bias, "j", "acc")}`,
      `  }`,
    );
  }
  if (h0 !== undefined) {
    const g = at(`(j / ${I * N}u)`, `j % ${N}u`, `(j / ${N}u) % ${I}u`);
    lines.push(`  if (j < ${B * I * N}u) { ${store(io, o[h0], h0, "j", g)} }`);
  }
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = ${index};
${lines.join("\n")}
}`;
  return { label: "ssm_scan_grad_final", code, workgroups, uses: io.uses };
}
