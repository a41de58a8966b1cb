/**
 * The WGSL generator of the selective scan's kernels, shared by every device
 * class and by `ssm_step`: one scan kernel over (channel block, chunk, batch) in
 * a thread shape the caller picks, and the kernel packing the scan's parameters.
 *
 * @module
 */

import type { KernelContext, KernelSource } from "../types.ts";
import { f32, flatLaunch, KernelIo } from "../wgsl/mod.ts";
import { load, SILU, store } from "./access.ts";
import { deltaRankOf, type ScanAttrs, type ScanSlots } from "./attrs.ts";

const LOG2E = 1.4426950408889634;

/**
 * Channels per thread and threads per workgroup of the scan kernels (tuned on lavapipe).
 *
 * @example
 * ```ts ignore
 * const cpuShape: ScanShape = { cpt: 16, wg: 8 };
 * ```
 */
export interface ScanShape {
  /** Channels each thread owns; B/C row loads are shared between them. */
  readonly cpt: number;
  /** Threads per workgroup. */
  readonly wg: number;
}

/**
 * What one scan kernel computes, over which sizes, in which thread shape.
 *
 * @example
 * ```ts ignore
 * const spec: ScanKernelSpec = { label: "scan", mode: "output", batch: 1, length: L,
 *   channels: I, state: N, chunk: L, chunks: 1, shape, slots, softplus: true, init: "zero" };
 * ```
 */
export interface ScanKernelSpec {
  /** Kernel label. */
  readonly label: string;
  /** `"states"`: chunk-end states and ΣΔ into scratch; `"output"`: y. */
  readonly mode: "states" | "output";
  /** B. */
  readonly batch: number;
  /** L. */
  readonly length: number;
  /** I. */
  readonly channels: number;
  /** N. */
  readonly state: number;
  /** Steps per chunk. */
  readonly chunk: number;
  /** Chunks over L. */
  readonly chunks: number;
  /** Thread shape. */
  readonly shape: ScanShape;
  /** Input positions. */
  readonly slots: ScanSlots;
  /** Δ ← softplus(Δ). */
  readonly softplus: boolean;
  /**
   * Where the start state comes from: zero, the carried-in chunk state in
   * `scratch2`, or an expression of the state index (through the kernel's `io`).
   */
  readonly init: "zero" | "chunk" | ((io: KernelIo, idx: string) => string);
  /** Output mode: write the end state to output 1's raw array. */
  readonly final?: boolean;
  /**
   * Output mode: store the state entering every `every`-th step into output
   * `output`, `[B, ⌈L/every⌉, N, I]` f32 (the backward's checkpoints, see
   * `checkpointsOf`).
   */
  readonly checkpoints?: { readonly output: number; readonly every: number };
  /**
   * Read A, D and the Δ bias from their own bindings instead of the packed
   * `scratch0`: saves the pack dispatch where the device allows the bindings.
   */
  readonly directParams?: boolean;
  /**
   * Step kernels with dt_proj fused in (`deltaRank` R > 0): Δ = W·δ computed per
   * channel from the low-rank input (`"direct"`), or read from `scratch0` after A,
   * D and the bias, where the pack kernel put it (`"scratch"`).
   */
  readonly deltaProj?: "direct" | "scratch";
  /**
   * CPU adapters: touch the u/Δ/z rows two steps ahead (one load per cache line),
   * summed into a dummy written to `scratch0[I·N + 2I]`. See `scanKernel`.
   */
  readonly prefetch?: boolean;
  /**
   * One-pass kernels: the `scratch0` index where the pack kernel stored L (as
   * u32 bits). The kernel reads L at run time instead of baking it in, so one
   * WGSL source — and one LLVM compile, seconds on llvmpipe — serves every
   * sequence length.
   */
  readonly lengthSlot?: number;
  /**
   * With a `last` input: the `scratch0` index where the pack kernel stored how
   * many rows are real (`last` + 1, at most L, as u32 bits). From there on Δ
   * is taken as 0, so padding rows leave the state alone; their y is computed
   * from it as usual (finite, never stale memory that later layers would read).
   */
  readonly stopSlot?: number;
}

/**
 * One scan kernel over (channel block, chunk, batch). Each thread owns `cpt`
 * channels and keeps their N states in registers (llvmpipe vectorises across
 * invocations, so per-thread arrays would live in memory). One B (and C) row load
 * per step serves all `cpt` channels. No early return: a divergent return would
 * put every later load under a mask; out-of-range channels clamp their loads and
 * skip their stores instead.
 *
 * Where I and `cpt` are multiples of 4 (and Δ is not projected in the kernel), a
 * thread owns `cpt` contiguous channels as `cpt/4` vec4 groups and reads u/Δ/z and
 * writes y a vec4 at a time: llvmpipe runs each storage access as a per-lane loop,
 * so a vec4 costs about what a scalar does (I = 1536, L = 8192 one pass: 168 → 135
 * ms). Otherwise channel k of a thread is block·wg·cpt + k·wg + lid, so lanes stay
 * contiguous for scalar u/Δ/z/y.
 *
 * Params come packed in `scratch0`: A·log₂e `[I·N]` | D `[I]` | Δ bias `[I]`.
 * In "states" mode it writes the chunk's ΣΔ to `scratch1 [B, NC, I]` and its end
 * state (from zero) to `scratch2 [B, NC, I, N]`; in "output" mode it writes y.
 *
 * @example
 * ```ts ignore
 * const kernel = scanKernel(ctx, spec); // one KernelSource, `uses` recorded
 * ```
 */
export function scanKernel(ctx: KernelContext<ScanAttrs>, s: ScanKernelSpec): KernelSource {
  const io = new KernelIo();
  const { cpt, wg } = s.shape;
  const I = s.channels, N = s.state, L = s.length;
  const sl = s.slots;
  const vec = N % 4 === 0;
  // Channels per unit k: 4 when the thread's channels are read as vec4 groups.
  const V = I % 4 === 0 && cpt % 4 === 0 && !s.deltaProj ? 4 : 1;
  const units = cpt / V;
  const T = V === 4 ? "vec4<f32>" : "f32";
  const arrayTypes: Record<string, string> = {};
  const bcRow = (j: number, tag: string): string[] => {
    const lines: string[] = [];
    const op = ctx.inputs[j];
    if (vec && op.direct) {
      arrayTypes[`in${j}`] = `vec4<${op.dtype}>`;
      for (let q = 0; q < N / 4; q++) {
        lines.push(`    let ${tag}v${q} = vec4<f32>(${io.in(j)}[r * ${N / 4}u + ${q}u]);`);
      }
      for (let n = 0; n < N; n++) lines.push(`    let ${tag}${n} = ${tag}v${n >> 2}[${n & 3}];`);
    } else {
      for (let n = 0; n < N; n++) {
        lines.push(`    let ${tag}${n} = ${load(ctx, io, j, `r * ${N}u + ${n}u`)};`);
      }
    }
    return lines;
  };
  // A per-channel value of unit k: `at(e)` is channel j{k} + e's scalar.
  const perChannel = (at: (e: number) => string): string =>
    V === 1 ? at(0) : `vec4<f32>(${[0, 1, 2, 3].map(at).join(", ")})`;
  const plus = (e: number) => (e === 0 ? "" : ` + ${e}u`);
  // Unit k's u/Δ/z at row `row`.
  const rowLoad = (slot: number, row: string, k: number): string => {
    const op = ctx.inputs[slot];
    if (V === 4 && op.direct) {
      arrayTypes[`in${slot}`] = `vec4<${op.dtype}>`;
      return `vec4<f32>(${io.in(slot)}[${row} * ${I / 4}u + j${k} / 4u])`;
    }
    return perChannel((e) => load(ctx, io, slot, `${row} * ${I}u + j${k}${plus(e)}`));
  };
  const storeY = (k: number): string => {
    const o = ctx.outputs[0];
    if (V === 4 && o.direct) {
      arrayTypes.out0 = `vec4<${o.dtype}>`;
      return `${io.out(0)}[r * ${I / 4}u + i${k} / 4u] = vec4<${o.dtype}>(acc);`;
    }
    if (V === 1) return store(io, o, 0, `r * ${I}u + i${k}`, "acc");
    return [0, 1, 2, 3].map((e) => store(io, o, 0, `r * ${I}u + i${k}${plus(e)}`, `acc[${e}]`))
      .join(" ");
  };
  const el = (v: string, e: number) => (V === 1 ? v : `${v}[${e}]`);
  const exact = I % (wg * cpt) === 0;
  const pre: string[] = [];
  const body: string[] = [];
  const post: string[] = [];
  // Long walks issue the next row's loads at the top of each step, so their cache
  // misses overlap the state math: the one-pass scan at I = 1536, L = 8192 went
  // from 194 to 163 ms and the sequential baseline from 665 to 393 ms. Short chunks
  // gain nothing and pay for the extra live values (pass 1 at chunk 64: 90 → 107 ms).
  // On llvmpipe a load that misses holds up retirement right away, so loading a row
  // a step early hides nothing once each lane reads its own line: the hardware
  // prefetchers miss rows a stride apart. One scalar load per lane and line two
  // rows ahead makes those misses overlap each other instead: 134 → 122 ms at
  // 16 channels per thread (I = 1536, L = 8192, one pass).
  const touch = s.prefetch === true && V === 4 && s.chunk >= 8;
  const pipelined = s.chunk >= 256 && !touch;
  const next: string[] = [];
  const shift: string[] = [];
  // L as the kernel sees it: a run-time value where the pack kernel stores it.
  const Lx = s.lengthSlot === undefined ? `${L}u` : "len";
  if (pipelined) pre.push(`  let r0 = b * ${Lx} + min(t0, ${Lx} - 1u);`);
  for (let k = 0; k < units; k++) {
    pre.push(
      V === 1
        ? `  let i${k} = wid.x * ${wg * cpt}u + ${k * wg}u + lid.x;`
        : `  let i${k} = (wid.x * ${wg}u + lid.x) * ${cpt}u + ${4 * k}u;`,
    );
    pre.push(`  let j${k} = min(i${k}, ${I - V}u);`);
    pre.push(exact ? `  let ok${k} = true;` : `  let ok${k} = i${k} < ${I}u;`);
    const param = (what: "a" | "d" | "bias", n = 0): string =>
      perChannel((e) => {
        const ch = `j${k}${plus(e)}`;
        if (s.directParams) {
          const slot = what === "a" ? sl.a : what === "d" ? sl.d : sl.bias!;
          return load(ctx, io, slot, what === "a" ? `(${ch}) * ${N}u + ${n}u` : ch);
        }
        const off = what === "a" ? "" : `${what === "d" ? I * N : I * N + I}u + `;
        return `${io.scratch(0)}[${off}${what === "a" ? `(${ch}) * ${N}u + ${n}u` : ch}]`;
      });
    for (let n = 0; n < N; n++) {
      const a = param("a", n);
      pre.push(`  let a${k}_${n} = ${s.directParams ? `${a} * ${f32(LOG2E)}` : a};`);
    }
    if (s.mode === "output") pre.push(`  let d${k} = ${param("d")};`);
    if (sl.bias !== undefined) pre.push(`  let db${k} = ${param("bias")};`);
    const hb = s.mode === "states" ? "" : `  let hb${k} = (b * ${I}u + j${k}) * ${N}u;`;
    if (hb) pre.push(hb);
    for (let n = 0; n < N; n++) {
      const init = s.init === "zero"
        ? `${T}(0.0)`
        : perChannel((e) =>
          s.init === "chunk"
            ? `${io.scratch(2)}[((b * ${s.chunks}u + c) * ${I}u + j${k}${plus(e)}) * ${N}u + ${n}u]`
            : (s.init as (io: KernelIo, idx: string) => string)(io, `hb${k} + ${e * N + n}u`)
        );
      pre.push(`  var h${k}_${n}: ${T} = ${init};`);
    }
    if (s.mode === "states") pre.push(`  var ds${k}: ${T} = ${T}(0.0);`);

    // This step's u, Δ (and z) of unit k: x/d/z{k}_c, loaded one step ahead
    // when `pipelined`, else at the top of the step.
    const rowLoads: [string, number][] = [["x", sl.u]];
    if (!s.deltaProj) rowLoads.push(["d", sl.delta]);
    else {
      body.push(
        s.deltaProj === "direct"
          ? `    let d${k}_c = dp${k};`
          : `    let d${k}_c = ${io.scratch(0)}[${I * N + 2 * I}u + b * ${I}u + j${k}];`,
      );
    }
    if (s.mode === "output" && sl.z !== undefined) rowLoads.push(["z", sl.z]);
    if (pipelined) {
      for (const [v, slot] of rowLoads) {
        pre.push(`  var ${v}${k}_c = ${rowLoad(slot, "r0", k)};`);
        next.push(`    let ${v}${k}_n = ${rowLoad(slot, "rn", k)};`);
        shift.push(`    ${v}${k}_c = ${v}${k}_n;`);
      }
    } else {
      for (const [v, slot] of rowLoads) body.push(`    let ${v}${k}_c = ${rowLoad(slot, "r", k)};`);
    }
    body.push(`    {`);
    body.push(`      let x = x${k}_c;`);
    let dt = `d${k}_c`;
    if (sl.bias !== undefined) dt = `${dt} + db${k}`;
    if (s.softplus) dt = `kiln_softplus${V === 4 ? "4" : ""}(${dt})`;
    // Padding rows (from `stop` on): Δ = 0 keeps the state.
    if (s.stopSlot !== undefined) dt = `select(${dt}, ${T}(0.0), t >= stop)`;
    body.push(`      let dt = ${dt};`);
    if (s.mode === "states") body.push(`      ds${k} = ds${k} + dt;`);
    body.push(`      let du = dt * x;`);
    if (s.mode === "output") body.push(`      var acc = d${k} * x;`);
    for (let n = 0; n < N; n++) {
      // a is pre-scaled by log2(e): exp(Δ·A) costs one exp2.
      body.push(`      h${k}_${n} = fma(exp2(dt * a${k}_${n}), h${k}_${n}, du * bb${n});`);
      if (s.mode === "output") body.push(`      acc = fma(h${k}_${n}, ${T}(cc${n}), acc);`);
    }
    if (s.mode === "output") {
      if (sl.z !== undefined) {
        body.push(`      let zz = z${k}_c;`);
        body.push(`      acc = acc * ${SILU("zz", V === 4 ? "4" : "")};`);
      }
      body.push(`      if (ok${k}) { ${storeY(k)} }`);
    }
    body.push(`    }`);

    if (s.mode === "states") {
      post.push(`  if (ok${k}) {`);
      for (let e = 0; e < V; e++) {
        const ch = `i${k}${plus(e)}`;
        post.push(
          `    ${io.scratch(1)}[(b * ${s.chunks}u + c) * ${I}u + ${ch}] = ${el(`ds${k}`, e)};`,
        );
        post.push(`    let sb${e} = ((b * ${s.chunks}u + c) * ${I}u + ${ch}) * ${N}u;`);
        for (let n = 0; n < N; n++) {
          post.push(`    ${io.scratch(2)}[sb${e} + ${n}u] = ${el(`h${k}_${n}`, e)};`);
        }
      }
      post.push(`  }`);
    } else if (s.final) {
      post.push(`  if (ok${k}) {`);
      for (let e = 0; e < V; e++) {
        for (let n = 0; n < N; n++) {
          post.push(`    ${io.out(1)}[hb${k} + ${e * N + n}u] = ${el(`h${k}_${n}`, e)};`);
        }
      }
      post.push(`  }`);
    }
  }
  if (s.deltaProj === "direct") {
    // dt_proj fused: each low-rank δ load serves all of the thread's channels.
    const R = deltaRankOf(ctx.attrs);
    for (let k = 0; k < cpt; k++) pre.push(`  var dp${k}: f32 = 0.0;`);
    pre.push(`  for (var q = 0u; q < ${R}u; q = q + 1u) {`);
    pre.push(`    let dl = ${load(ctx, io, sl.delta, `b * ${R}u + q`)};`);
    for (let k = 0; k < cpt; k++) {
      pre.push(`    dp${k} = fma(${load(ctx, io, sl.dtW!, `j${k} * ${R}u + q`)}, dl, dp${k});`);
    }
    pre.push(`  }`);
  }
  const touches: string[] = [];
  if (touch) {
    const streams = [sl.u, sl.delta, ...(s.mode === "output" && sl.z !== undefined ? [sl.z] : [])]
      .filter((slot) => ctx.inputs[slot].direct);
    for (const slot of streams) {
      arrayTypes[`in${slot}`] = `vec4<${ctx.inputs[slot].dtype}>`;
      // One per 64-byte line: every fourth vec4 group of the thread.
      for (let k = 0; k < units; k += 4) {
        touches.push(`f32(${io.in(slot)}[rp * ${I / 4}u + j${k} / 4u].x)`);
      }
    }
    pre.push(`  var touched: f32 = 0.0;`);
    post.push(`  ${io.scratch(0)}[${I * N + 2 * I}u] = touched;`);
  }
  const rows = [...bcRow(sl.b, "bb"), ...(s.mode === "output" ? bcRow(sl.c, "cc") : [])];
  if (s.checkpoints) rows.unshift(...checkpointStores(ctx, io, s.checkpoints, units, V, N, I));
  if (s.checkpoints && V === 4) arrayTypes[`out${s.checkpoints.output}`] = "vec4<f32>";
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.y;
  let b = wid.z;
${
    s.lengthSlot === undefined
      ? `  let t0 = c * ${s.chunk}u;\n  let t1 = min(t0 + ${s.chunk}u, ${L}u);`
      : `  let len = bitcast<u32>(${
        io.scratch(0)
      }[${s.lengthSlot}u]);\n  let t0 = 0u;\n  let t1 = len;`
  }
${s.stopSlot === undefined ? "" : `  let stop = bitcast<u32>(${io.scratch(0)}[${s.stopSlot}u]);`}
${pre.join("\n")}
  for (var t = t0; t < t1; t = t + 1u) {
    let r = b * ${Lx} + t;
${pipelined ? `    let rn = b * ${Lx} + min(t + 1u, t1 - 1u);\n${next.join("\n")}` : ""}
${
    touches.length
      ? `    let rp = b * ${Lx} + min(t + 2u, t1 - 1u);\n    touched = touched + ${
        touches.join(" + ")
      };`
      : ""
  }
${rows.join("\n")}
${body.join("\n")}
${shift.join("\n")}
  }
${post.join("\n")}
}`;
  return {
    label: s.label,
    code,
    workgroups: [Math.ceil(I / (wg * cpt)), s.chunks, s.batch],
    arrayTypes,
    uses: io.uses,
  };
}

/**
 * The checkpoint stores at the top of a step: on every `every`-th step, each
 * unit's states (the state entering step t) into the checkpoints output,
 * channel-minor (a vec4 of channels per store where units are vec4 groups).
 */
function checkpointStores(
  ctx: KernelContext<ScanAttrs>,
  io: KernelIo,
  ck: { readonly output: number; readonly every: number },
  units: number,
  V: number,
  N: number,
  I: number,
): string[] {
  const NC = ctx.outputs[ck.output].shape[1] as number;
  const out = io.out(ck.output);
  const lines = [
    `    if (t % ${ck.every}u == 0u) {`,
    `      let ckr = (b * ${NC}u + t / ${ck.every}u) * ${N}u;`,
  ];
  for (let k = 0; k < units; k++) {
    const at = (n: number) => `(ckr + ${n}u) * ${I / V}u + i${k}${V === 4 ? " / 4u" : ""}`;
    const stores = [...Array(N).keys()].map((n) => `${out}[${at(n)}] = h${k}_${n};`);
    lines.push(`      if (ok${k}) { ${stores.join(" ")} }`);
  }
  lines.push(`    }`);
  return lines;
}

/**
 * Kernel packing A·log₂e, D and the Δ bias into `scratch0` (f32), so the scan
 * kernels bind one small buffer instead of three and stay within 8 bindings.
 * It also copies input `copy.input` into output 1 (an initial state into the
 * in-place state buffer of the one-pass scan), projects ssm_step's low-rank Δ
 * (`proj`), stores `length` for one-pass kernels and, with a `last` input,
 * where the real rows stop (`stop`).
 *
 * @example
 * ```ts ignore
 * const pack = packKernel(ctx, slots, I, N); // scratch0 = A·log₂e | D | Δ bias
 * ```
 */
export function packKernel(
  ctx: KernelContext<ScanAttrs>,
  slots: ScanSlots,
  I: number,
  N: number,
  copy?: { input: number; count: number },
  proj?: { R: number; rows: number },
  length?: { slot: number; value: number },
  stop?: { slot: number; length: number },
): KernelSource {
  const io = new KernelIo();
  const total = Math.max(I * N, copy?.count ?? 0, (proj?.rows ?? 0) * I);
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps);
  const params = io.scratch(0);
  const lines = [
    `  if (j < ${I * N}u) { ${params}[j] = ${load(ctx, io, slots.a, "j")} * ${f32(LOG2E)}; }`,
    `  if (j < ${I}u) {`,
    `    ${params}[${I * N}u + j] = ${load(ctx, io, slots.d, "j")};`,
    `    ${params}[${I * N + I}u + j] = ${
      slots.bias !== undefined ? load(ctx, io, slots.bias, "j") : "0.0"
    };`,
    `  }`,
  ];
  if (copy) {
    lines.push(
      `  if (j < ${copy.count}u) { ${io.out(1)}[j] = ${load(ctx, io, copy.input, "j")}; }`,
    );
  }
  if (length) {
    lines.push(`  if (j == 0u) { ${params}[${length.slot}u] = bitcast<f32>(${length.value}u); }`);
  }
  if (stop && slots.last !== undefined) {
    const last = ctx.inputs[slots.last].direct
      ? `${io.in(slots.last)}[0]`
      : io.load(slots.last, "0u");
    lines.push(
      `  if (j == 0u) { ${params}[${stop.slot}u] = bitcast<f32>(min(${stop.length}u, ${last} + 1u)); }`,
    );
  }
  if (proj) {
    // ssm_step's fused dt_proj where the step cannot bind W and δ too: Δ[b, i] after D and the bias.
    lines.push(
      `  if (j < ${proj.rows * I}u) {`,
      `    let b = j / ${I}u;`,
      `    let i = j % ${I}u;`,
      `    var acc: f32 = 0.0;`,
      `    for (var q = 0u; q < ${proj.R}u; q = q + 1u) {`,
      `      acc = fma(${load(ctx, io, slots.dtW!, `i * ${proj.R}u + q`)}, ${
        load(ctx, io, slots.delta, `b * ${proj.R}u + q`)
      }, acc);`,
      `    }`,
      `    ${params}[${I * N + 2 * I}u + j] = acc;`,
      `  }`,
    );
  }
  // No early return past `total`: each store has its own bound.
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = ${index};
${lines.join("\n")}
}`;
  return { label: "ssm_pack_params", code, workgroups, uses: io.uses };
}
