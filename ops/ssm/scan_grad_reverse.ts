/**
 * The reverse walk of `selective_scan_grad`: one thread per `cpt` channels of
 * one batch row, over one segment of L (a few chunks) per dispatch.
 *
 * On llvmpipe every storage or workgroup-memory access whose address is not a
 * constant runs as a loop over the 8 lanes, a few hundred instructions per
 * vec4 (about three quarters of a profile of the earlier kernel, which kept
 * every recomputed state in a workspace, fell in those loops), while values in
 * registers (or spilled to the stack) cost next to nothing. A barrier turns
 * the whole kernel into an LLVM coroutine whose loop-carried values then live
 * in memory (the barriers of the earlier kernel's dB/dC sums cost about 15 %).
 * So the walk keeps the states it walks back through in registers, `block`
 * steps at a time, and has no barrier where the plan says `lanes`:
 *
 * 1. per chunk (last to first): walk it forward once more from its checkpoint
 *    (the checkpoint walk's, or the forward's saved states) and keep the state
 *    entering each block (in workgroup memory where it fits, else in the
 *    states slots after the checkpoints);
 * 2. per block (last to first): recompute its `block` steps, unrolled, into
 *    named values (the states h, the decays e = exp(ΔA), Δ, u and the B row of
 *    every step), then walk them backwards, unrolled too, carrying the adjoint
 *    g in registers:
 *
 *   g ← g + dy₀ₜ·Cₜ;  dBₜ += g·Δₜuₜ;  dCₜ += dy₀ₜ·hₜ;  duₜ = D·dy₀ₜ + Δₜ·Σ g·Bₜ;
 *   g ← g·eₜ;  q = g·hₜ₋₁;  dA += q·Δₜ;  dΔₜ = Σ q·A + uₜ·Σ g·Bₜ.
 *
 * Steps past the end of a partial block run as identity steps (Δ = 0, dy = 0)
 * with their stores skipped, so every block runs the same unrolled code. The
 * walk reads u and Δ three times (checkpoints, block starts, block), and C,
 * dy and z once.
 *
 * du, dΔ (and dz) go straight out. The dB/dC terms (sums over channels) of
 * each step go to the partials: with `lanes`, one row per lane, summed over
 * the rows by the reduce kernel after each segment; else (GPU) summed over
 * the workgroup in workgroup memory after each block. g, dA, dD and the Δ
 * bias's gradient come in from, and go back to, the carry buffer, so the next
 * segment's dispatch goes on where this one stopped. Which segment a dispatch
 * walks, and the chunk length, are read at run time (scratch0), so one
 * compiled kernel serves every segment, and every chunk length whose block
 * starts fit in workgroup memory.
 *
 * @module
 */

import type { KernelContext, KernelSource } from "../types.ts";
import { f32, KernelIo } from "../wgsl/mod.ts";
import type { ScanSlots } from "./attrs.ts";
import {
  blocksOf,
  chunkLines,
  counterSlots,
  type GradPlan,
  localBlockSlots,
  partialRows,
} from "./scan_grad_kernels.ts";
import { gradLanes, SCRATCH } from "./scan_grad_lanes.ts";
import type { ScanGradAttrs } from "./scan_grad_reference.ts";

/**
 * The reverse walk's kernel over one segment (see the module doc).
 *
 * @example
 * ```ts ignore
 * const k = reverseKernel(ctx, slots, plan, gy); // + the saved states' input slot, if any
 * ```
 */
export function reverseKernel(
  ctx: KernelContext<ScanGradAttrs>,
  slots: ScanSlots,
  p: GradPlan,
  gySlot: number,
  ckSlot?: number,
): KernelSource {
  const { B, L, I, N, wg, block: S } = p;
  const io = new KernelIo();
  const arrayTypes: Record<string, string> = {};
  const w = gradLanes(ctx, slots, p, io, arrayTypes);
  const { V, T, units, NS } = w;
  const steps = [...Array(S).keys()];
  const blocks = blocksOf(p);
  const RV = N % 4 === 0 ? 4 : 1; // dB/dC terms per partials access
  const RT = RV === 4 ? "vec4<f32>" : "f32";
  const per = (2 * N) / RV;
  const ln2 = f32(Math.LN2);
  const gate = slots.z !== undefined;
  const sig = V === 4 ? "kiln_sigmoid4" : "kiln_sigmoid";
  const dot = (a: string, b: string) => (V === 1 ? `${a} * ${b}` : `dot(${a}, ${b})`);
  const params = io.scratch(SCRATCH.params);
  const parts = io.scratch(SCRATCH.partials);
  if (RV === 4) arrayTypes[`scratch${SCRATCH.partials}`] = "vec4<f32>";
  // The state entering block j of the current chunk: in workgroup memory where
  // the plan says `localBlocks` (each lane reads back only what it wrote, so no
  // barrier; llvmpipe's per-lane loops over workgroup memory skip the bounds
  // checks of storage), else in states slot nc + j.
  const UN = units.length * N;
  const blkAt = (j: string, k: number, n: number) =>
    p.localBlocks
      ? `blk[((${j}) * ${UN}u + ${k * N + n}u) * ${wg}u + lid.x]`
      : w.stateAt(p.saved ? j : `nc + ${j}`, k, n);
  const keep = (j: string, ind: string) =>
    units.flatMap((k) => NS.map((n) => `${ind}${blkAt(j, k, n)} = h${k}_${n};`));
  // What the segments hand on: [variable, carry row, unit, state].
  type Carried = [string, "g" | "gA" | "gD" | "gb", number, number];
  const carried: Carried[] = units.flatMap((k): Carried[] => [
    ...NS.flatMap((n): Carried[] => [[`g${k}_${n}`, "g", k, n], [`gA${k}_${n}`, "gA", k, n]]),
    [`gD${k}`, "gD", k, 0],
    [`gb${k}`, "gb", k, 0],
  ]);

  // 1. The state entering each block of the chunk, from the chunk's checkpoint
  // (a chunk of one block just copies it). Rows two steps ahead are touched so
  // their cache misses overlap this step's.
  const ahead = w.touch([slots.u, slots.delta], `(b * ${L}u + min(t + 2u, ${L - 1}u))`);
  const mid = [
    `{`,
    ...units.flatMap((k) =>
      NS.map((n) =>
        `  var h${k}_${n} = ${
          ckSlot !== undefined ? w.savedAt(ckSlot, "c", k, n) : w.stateAt("c", k, n)
        };`
      )
    ),
    `  for (var j = 0u; j + 1u < nb; j = j + 1u) {`,
    ...keep(`j`, "    "),
    `    for (var t = t0 + j * ${S}u; t < t0 + j * ${S}u + ${S}u; t = t + 1u) {`,
    ...w.walkStep("      ", ahead),
    `    }`,
    `  }`,
    ...keep("nb - 1u", "  "),
    `}`,
  ];

  // 2a. The block's steps recomputed into named values, unrolled. Steps past t1
  // get Δ = 0, so their state is the last real one.
  const fwd: string[] = [];
  for (const k of units) {
    for (const n of NS) fwd.push(`let hs_${k}_${n} = ${blkAt("j", k, n)};`);
  }
  const hName = (s: number, k: number, n: number) => (s < 0 ? `hs_${k}_${n}` : `h${s}_${k}_${n}`);
  for (const s of steps) {
    fwd.push(`let ok${s} = s0 + ${s}u < t1;`);
    fwd.push(`let r${s} = b * ${L}u + min(s0 + ${s}u, t1 - 1u);`);
    fwd.push(...w.row(slots.b, `b${s}_`, `r${s}`));
    for (const k of units) {
      fwd.push(`let raw${s}_${k} = ${w.act(slots.delta, k, `r${s}`)} + db${k};`);
      fwd.push(`let dt${s}_${k} = select(${T}(0.0), ${w.dt(`raw${s}_${k}`)}, ok${s});`);
      fwd.push(`let x${s}_${k} = ${w.act(slots.u, k, `r${s}`)};`);
      fwd.push(`let du${s}_${k} = dt${s}_${k} * x${s}_${k};`);
      for (const n of NS) {
        fwd.push(`let e${s}_${k}_${n} = exp2(dt${s}_${k} * a${k}_${n});`);
        fwd.push(
          `let ${hName(s, k, n)} = fma(e${s}_${k}_${n}, ${
            hName(s - 1, k, n)
          }, du${s}_${k} * b${s}_${n});`,
        );
      }
    }
  }

  // 2b. The adjoint back through the block, unrolled. Steps past t1 see dy = 0
  // and Δ = 0: they leave g, dA, dD unchanged and store nothing.
  const rev: string[] = [];
  for (const s of [...steps].reverse()) {
    const o: string[] = [];
    o.push(...w.row(slots.c, "cc", `r${s}`));
    for (const n of NS) o.push(`var pb${n}: f32 = 0.0;`, `var pc${n}: f32 = 0.0;`);
    for (const k of units) {
      const [x, dt] = [`x${s}_${k}`, `dt${s}_${k}`];
      o.push(`let gyv${k} = select(${T}(0.0), ${w.act(gySlot, k, `r${s}`)}, ok${s});`);
      if (gate) {
        o.push(`var y0${k} = d${k} * ${x};`);
        for (const n of NS) o.push(`y0${k} = fma(${hName(s, k, n)}, ${T}(cc${n}), y0${k});`);
        o.push(`let zz${k} = ${w.act(slots.z!, k, `r${s}`)};`);
        o.push(`let sg${k} = ${sig}(zz${k});`);
        o.push(`let gy0${k} = gyv${k} * zz${k} * sg${k};`);
        o.push(`let dz${k} = gyv${k} * y0${k} * sg${k} * (1.0 + zz${k} * (1.0 - sg${k}));`);
      } else {
        o.push(`let gy0${k} = gyv${k};`);
      }
      o.push(`gD${k} = fma(gy0${k}, ${x}, gD${k});`);
      o.push(`var sB${k} = ${T}(0.0);`);
      o.push(`var ga${k} = ${T}(0.0);`);
      o.push(`let dx${k} = ${dt} * ${x} * m${k};`);
      o.push(`let gm${k} = gy0${k} * m${k};`);
      for (const n of NS) {
        const g = `g${k}_${n}`;
        o.push(`${g} = fma(gy0${k}, ${T}(cc${n}), ${g});`);
        o.push(`pc${n} = pc${n} + ${dot(`gm${k}`, hName(s, k, n))};`);
        o.push(`sB${k} = fma(${g}, ${T}(b${s}_${n}), sB${k});`);
        o.push(`pb${n} = pb${n} + ${dot(g, `dx${k}`)};`);
        o.push(`${g} = ${g} * e${s}_${k}_${n};`);
        o.push(`let q${k}_${n} = ${g} * ${hName(s - 1, k, n)};`);
        o.push(`gA${k}_${n} = fma(q${k}_${n}, ${dt}, gA${k}_${n});`);
        o.push(`ga${k} = fma(q${k}_${n}, a${k}_${n}, ga${k});`);
      }
      // Σₙ g·Bₙ serves du (·Δ) and dΔ (·u); a is A·log₂e, so Σ q·A = ln 2 · Σ q·a.
      o.push(`let gu${k} = fma(sB${k}, ${dt}, gy0${k} * d${k});`);
      o.push(`let gt${k} = fma(ga${k}, ${T}(${ln2}), sB${k} * ${x});`);
      o.push(
        ctx.attrs.softplus
          ? `let gd${k} = select(gt${k} * ${sig}(raw${s}_${k}), gt${k}, raw${s}_${k} > ${T}(20.0));`
          : `let gd${k} = gt${k};`,
      );
      o.push(`gb${k} = gb${k} + select(${T}(0.0), gd${k}, ok${s});`);
      const r = `r${s}`;
      const outs = [w.storeAct(slots.u, k, `gu${k}`, r), w.storeAct(slots.delta, k, `gd${k}`, r)];
      if (gate) outs.push(w.storeAct(slots.z!, k, `dz${k}`, r));
      o.push(`if (ok${s} && i${k} < ${I}u) { ${outs.join(" ")} }`);
    }
    // This lane's dB/dC terms of step s: its partials row, or workgroup memory.
    const pack = (tag: string, q: number) =>
      RV === 4
        ? `vec4<f32>(${[0, 1, 2, 3].map((e) => `${tag}${4 * q + e}`).join(", ")})`
        : `${tag}${q}`;
    const terms = [...Array(N / RV).keys()].flatMap((q) => [
      `${p.lanes ? parts : "red"}[slot + ${q}u] = ${pack("pb", q)};`,
      `${p.lanes ? parts : "red"}[slot + ${N / RV + q}u] = ${pack("pc", q)};`,
    ]);
    if (p.lanes) {
      const row = `wid.x * ${wg}u + lid.x`;
      o.push(
        `let slot = ((b * seglen + s0 + ${s}u - tlo) * ${partialRows(p)}u + ${row}) * ${per}u;`,
      );
      o.push(`if (ok${s}) { ${terms.join(" ")} }`);
    } else {
      o.push(`let slot = (${s * wg}u + lid.x) * ${per}u;`, ...terms);
    }
    rev.push(`{`, ...o.map((l) => "  " + l), `}`);
  }
  if (!p.lanes) {
    // The workgroup sums the block's lanes: one partial per (step, channel block).
    rev.push(
      `workgroupBarrier();`,
      `for (var e = lid.x; e < min(t1 - s0, ${S}u) * ${per}u; e = e + ${wg}u) {`,
      `  let st = e / ${per}u;`,
      `  let n = e % ${per}u;`,
      `  var acc = ${RT}(0.0);`,
      `  for (var w = 0u; w < ${wg}u; w = w + 1u) {`,
      `    acc = acc + red[(st * ${wg}u + w) * ${per}u + n];`,
      `  }`,
      `  ${parts}[((b * seglen + s0 + st - tlo) * ${blocks}u + wid.x) * ${per}u + n] = acc;`,
      `}`,
      `workgroupBarrier();`,
    );
  }

  const c = counterSlots(I, N);
  const carryIn = carried.map(([v, what, k, n]) => `var ${v}: ${T} = ${w.carryAt(what, k, n)};`);
  const carryOut = carried.map(([v, what, k, n]) => `${w.carryAt(what, k, n)} = ${v};`);
  const indent = (ls: string[], ind: string) => ls.map((l) => ind + l).join("\n");
  const code = `${p.lanes ? "" : `var<workgroup> red: array<${RT}, ${S * wg * per}>;\n`}${
    p.localBlocks ? `var<workgroup> blk: array<${T}, ${localBlockSlots(p) * UN * wg}>;\n` : ""
  }@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
${indent(chunkLines(p, params), "  ")}
  let sg = bitcast<u32>(${params}[${c.reverse}u]);
  let chi = nc - min(nc, sg * cps);
  let clo = chi - min(chi, cps);
  let tlo = clo * chunk;
  let seglen = cps * chunk;
${indent(w.pre(["a", "d", "db", "m"], true), "  ")}
${indent(carryIn, "  ")}
  var touched = 0.0;
  for (var cq = chi; cq > clo; cq = cq - 1u) {
    let c = cq - 1u;
    let t0 = c * chunk;
    let t1 = min(t0 + chunk, ${L}u);
    let nb = (t1 - t0 + ${S - 1}u) / ${S}u;
${indent(mid, "    ")}
    for (var jj = 0u; jj < nb; jj = jj + 1u) {
      let j = nb - 1u - jj;
      let s0 = t0 + j * ${S}u;
${indent(fwd, "      ")}
${indent(rev, "      ")}
    }
  }
${indent(carryOut, "  ")}
  if (wid.x == 0u && wid.z == 0u && lid.x == 0u) {
    ${params}[${c.reduce}u] = bitcast<f32>(sg + 1u);
  }
  ${params}[${I * N + 2 * I}u] = touched;
}`;
  return {
    label: `ssm_scan_grad_reverse_B${B}_L${L}_I${I}_N${N}_s${S}_c${p.chunk}`,
    code,
    workgroups: [blocks, 1, B],
    arrayTypes,
    uses: io.uses,
  };
}
