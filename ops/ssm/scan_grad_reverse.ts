/**
 * The reverse walk of `selective_scan_grad`: one thread per `cpt` channels of
 * one batch row. It first walks L forward from h0, keeping the state entering
 * each chunk (the checkpoints, scratch1), then takes the chunks from last to
 * first: recomputes the chunk's states from its checkpoint into its slice of
 * the workspace (scratch2), then walks the chunk backwards, carrying the
 * adjoint g in registers from chunk to chunk:
 *
 *   g ← g + dy₀ₜ·Cₜ;  dBₜ += g·Δₜuₜ;  dCₜ += dy₀ₜ·hₜ;  duₜ = D·dy₀ₜ + Δₜ·Σ g·Bₜ;
 *   g ← g·eₜ (eₜ = exp(ΔₜA));  q = g·hₜ₋₁;  dA += q·Δₜ;  dΔₜ = Σ q·A + uₜ·Σ g·Bₜ.
 *
 * du, dΔ (and dz) go straight out; the dB/dC terms (sums over channels) are
 * summed over the workgroup's lanes in workgroup memory `sub` steps at a time
 * (scratch3); dA, dD and the Δ bias's gradient per channel go to scratch4.
 * The chunk length is read at run time (scratch0), so one compiled kernel
 * serves every chunk.
 *
 * As in the forward's CPU-shaped kernels, where I is a multiple of 4 a thread's
 * channels are vec4 groups: u/Δ/z/dy loads, du/dΔ/dz stores and the workspace
 * move four channels per access (llvmpipe runs each storage access as a
 * per-lane loop, so accesses, not bytes, set the cost), and B/C rows load as
 * vec4 once per step for all of the thread's channels.
 *
 * @module
 */

import type { KernelContext, KernelSource } from "../types.ts";
import { f32, KernelIo } from "../wgsl/mod.ts";
import { load, store } from "./access.ts";
import type { ScanSlots } from "./attrs.ts";
import { blocksOf, type GradPlan } from "./scan_grad_kernels.ts";
import type { ScanGradAttrs } from "./scan_grad_reference.ts";

/**
 * Channels per vector unit of the reverse walk: 4 where the thread's channels
 * are read as vec4 groups, else 1.
 *
 * @example
 * ```ts ignore
 * unitWidth({ ...plan, I: 512, cpt: 8 }); // 4
 * ```
 */
export function unitWidth(p: GradPlan): 1 | 4 {
  return p.I % 4 === 0 && p.cpt % 4 === 0 ? 4 : 1;
}

/**
 * The reverse walk's kernel (see the module doc).
 *
 * @example
 * ```ts ignore
 * const k = reverseKernel(ctx, slots, plan, gy, ghF);
 * ```
 */
export function reverseKernel(
  ctx: KernelContext<ScanGradAttrs>,
  slots: ScanSlots,
  p: GradPlan,
  gySlot: number,
  ghFSlot: number | undefined,
): KernelSource {
  const { B, L, I, N, wg, cpt, sub } = p;
  const io = new KernelIo();
  const V = unitWidth(p);
  const T = V === 4 ? "vec4<f32>" : "f32";
  const units = [...Array(cpt / V).keys()];
  const NS = [...Array(N).keys()];
  const blocks = blocksOf(p);
  const Ipad = blocks * wg * cpt;
  const N2 = 2 * N;
  const RV = N % 4 === 0 ? 4 : 1; // dB/dC terms per workgroup-memory access
  const ln2 = f32(Math.LN2);
  const softplus = ctx.attrs.softplus;
  const gate = slots.z !== undefined;
  const arrayTypes: Record<string, string> = {};
  const plus = (e: number) => (e === 0 ? "" : ` + ${e}u`);
  const perChannel = (at: (e: number) => string): string =>
    V === 1 ? at(0) : `vec4<f32>(${[0, 1, 2, 3].map(at).join(", ")})`;
  const el = (v: string, e: number) => (V === 1 ? v : `${v}[${e}]`);
  const dot = (a: string, b: string) => (V === 1 ? `${a} * ${b}` : `dot(${a}, ${b})`);
  // Unit k's value of a [B, L, I] activation at row r.
  const act = (slot: number, k: number): string => {
    const op = ctx.inputs[slot];
    if (V === 4 && op.direct) {
      arrayTypes[`in${slot}`] = `vec4<${op.dtype}>`;
      return `vec4<f32>(${io.in(slot)}[r * ${I / 4}u + j${k} / 4u])`;
    }
    return perChannel((e) => load(ctx, io, slot, `r * ${I}u + j${k}${plus(e)}`));
  };
  const storeAct = (slot: number, k: number, v: string): string => {
    const o = ctx.outputs[slot];
    if (V === 4 && o.direct) {
      arrayTypes[`out${slot}`] = `vec4<${o.dtype}>`;
      return `${io.out(slot)}[r * ${I / 4}u + i${k} / 4u] = vec4<${o.dtype}>(${v});`;
    }
    return [...Array(V).keys()].map((e) =>
      store(io, o, slot, `r * ${I}u + i${k}${plus(e)}`, el(v, e))
    ).join(" ");
  };
  // B or C row r as scalars `tag{n}`: vec4 loads where N and the layout allow.
  const row = (slot: number, tag: string): string[] => {
    const op = ctx.inputs[slot];
    if (N % 4 === 0 && op.direct) {
      arrayTypes[`in${slot}`] = `vec4<${op.dtype}>`;
      return [
        ...[...Array(N / 4).keys()].map((q) =>
          `      let ${tag}v${q} = vec4<f32>(${io.in(slot)}[r * ${N / 4}u + ${q}u]);`
        ),
        ...NS.map((n) => `      let ${tag}${n} = ${tag}v${n >> 2}[${n & 3}];`),
      ];
    }
    return NS.map((n) => `      let ${tag}${n} = ${load(ctx, io, slot, `r * ${N}u + ${n}u`)};`);
  };
  // The workspace: unit k's state n at chunk step `step` (slot 0 the checkpoint).
  // Checkpoints and workspace share a layout: [B, slots, Ipad, N], vec4 groups
  // of channels where V = 4; the chunk (so the slot counts) is read at run time.
  const slotAt = (scratch: number, slots: string, step: string, k: number, n: number) => {
    const arr = io.scratch(scratch);
    if (V === 4) arrayTypes[`scratch${scratch}`] = "vec4<f32>";
    return V === 4
      ? `${arr}[((b * ${slots} + ${step}) * ${Ipad / 4}u + i${k} / 4u) * ${N}u + ${n}u]`
      : `${arr}[((b * ${slots} + ${step}) * ${Ipad}u + i${k}) * ${N}u + ${n}u]`;
  };
  const wsAt = (step: string, k: number, n: number) => slotAt(2, "(chunk + 1u)", step, k, n);
  const ckAt = (step: string, k: number, n: number) => slotAt(1, "nc", step, k, n);

  const pre: string[] = [];
  for (const k of units) {
    pre.push(
      V === 1
        ? `  let i${k} = wid.x * ${wg * cpt}u + ${k * wg}u + lid.x;`
        : `  let i${k} = (wid.x * ${wg}u + lid.x) * ${cpt}u + ${4 * k}u;`,
    );
    pre.push(`  let j${k} = min(i${k}, ${I - V}u);`);
    pre.push(`  let m${k} = select(0.0, 1.0, i${k} < ${I}u);`);
    for (const n of NS) {
      pre.push(
        `  let a${k}_${n} = ${
          perChannel((e) => `${io.scratch(0)}[(j${k}${plus(e)}) * ${N}u + ${n}u]`)
        };`,
      );
      const g0 = ghFSlot !== undefined
        ? perChannel((e) => load(ctx, io, ghFSlot, `(b * ${I}u + j${k}${plus(e)}) * ${N}u + ${n}u`))
        : `${T}(0.0)`;
      pre.push(`  var g${k}_${n}: ${T} = ${g0};`);
      pre.push(`  var gA${k}_${n}: ${T} = ${T}(0.0);`);
      const h0 = slots.h0 !== undefined
        ? perChannel((e) =>
          load(ctx, io, slots.h0!, `(b * ${I}u + j${k}${plus(e)}) * ${N}u + ${n}u`)
        )
        : `${T}(0.0)`;
      pre.push(`  var h${k}_${n}: ${T} = ${h0};`);
    }
    pre.push(
      `  let d${k} = ${perChannel((e) => `${io.scratch(0)}[${I * N}u + j${k}${plus(e)}]`)};`,
    );
    pre.push(
      `  let db${k} = ${
        slots.bias !== undefined
          ? perChannel((e) => `${io.scratch(0)}[${I * N + I}u + j${k}${plus(e)}]`)
          : `${T}(0.0)`
      };`,
    );
    pre.push(`  var gD${k}: ${T} = ${T}(0.0);`);
    pre.push(`  var gb${k}: ${T} = ${T}(0.0);`);
  }
  const sp = V === 4 ? "kiln_softplus4" : "kiln_softplus";
  const sig = V === 4 ? "kiln_sigmoid4" : "kiln_sigmoid";
  const dtOf = (k: number) => [
    `      let raw${k} = ${act(slots.delta, k)} + db${k};`,
    `      let dt${k} = ${softplus ? `${sp}(raw${k})` : `raw${k}`};`,
  ];

  // Phase 1: walk L forward from h0, keeping the state entering each chunk.
  const ck: string[] = [];
  ck.push(`  for (var t = 0u; t < ${L}u; t = t + 1u) {`);
  ck.push(`    if (t % chunk == 0u) {`);
  for (const k of units) {
    for (const n of NS) ck.push(`      ${ckAt("t / chunk", k, n)} = h${k}_${n};`);
  }
  ck.push(`    }`);
  ck.push(`    let r = b * ${L}u + t;`);
  ck.push(...row(slots.b, "bb").map((l) => l.slice(2)));
  for (const k of units) {
    ck.push(...dtOf(k).map((l) => l.slice(2)));
    ck.push(`    let du${k} = dt${k} * ${act(slots.u, k)};`);
    for (const n of NS) {
      ck.push(`    h${k}_${n} = fma(exp2(dt${k} * a${k}_${n}), h${k}_${n}, du${k} * bb${n});`);
    }
  }
  ck.push(`  }`);

  // Recompute the chunk's states from its checkpoint into the workspace.
  const fwd: string[] = [];
  for (const k of units) {
    for (const n of NS) {
      fwd.push(`    h${k}_${n} = ${ckAt("c", k, n)};`);
      fwd.push(`    ${wsAt("0u", k, n)} = h${k}_${n};`);
    }
  }
  fwd.push(`    for (var t = t0; t < t1; t = t + 1u) {`);
  fwd.push(`      let r = b * ${L}u + t;`);
  fwd.push(...row(slots.b, "bb"));
  for (const k of units) {
    fwd.push(...dtOf(k));
    fwd.push(`      let du${k} = dt${k} * ${act(slots.u, k)};`);
    for (const n of NS) {
      fwd.push(`      h${k}_${n} = fma(exp2(dt${k} * a${k}_${n}), h${k}_${n}, du${k} * bb${n});`);
      fwd.push(`      ${wsAt("(t - t0 + 1u)", k, n)} = h${k}_${n};`);
    }
  }
  fwd.push(`    }`);

  // The adjoint back through the chunk; h{k}_{n} enters as the chunk's last state.
  const rev: string[] = [];
  rev.push(`    for (var s = t1; s > t0; s = s - 1u) {`);
  rev.push(`      let t = s - 1u;`);
  rev.push(`      let r = b * ${L}u + t;`);
  rev.push(...row(slots.b, "bb"), ...row(slots.c, "cc"));
  for (const n of NS) rev.push(`      var pb${n}: f32 = 0.0;`, `      var pc${n}: f32 = 0.0;`);
  for (const k of units) {
    rev.push(...dtOf(k));
    rev.push(`      let x${k} = ${act(slots.u, k)};`);
    rev.push(`      let gyv${k} = ${act(gySlot, k)};`);
    if (gate) {
      rev.push(`      var y0${k} = d${k} * x${k};`);
      for (const n of NS) rev.push(`      y0${k} = fma(h${k}_${n}, ${T}(cc${n}), y0${k});`);
      rev.push(`      let zz${k} = ${act(slots.z!, k)};`);
      rev.push(`      let sg${k} = ${sig}(zz${k});`);
      rev.push(`      let gy0${k} = gyv${k} * zz${k} * sg${k};`);
      rev.push(
        `      let dz${k} = gyv${k} * y0${k} * sg${k} * (1.0 + zz${k} * (1.0 - sg${k}));`,
      );
    } else {
      rev.push(`      let gy0${k} = gyv${k};`);
    }
    rev.push(`      gD${k} = fma(gy0${k}, x${k}, gD${k});`);
    rev.push(`      var sB${k} = ${T}(0.0);`);
    rev.push(`      var ga${k} = ${T}(0.0);`);
    rev.push(`      let dx${k} = dt${k} * x${k} * m${k};`);
    rev.push(`      let gm${k} = gy0${k} * m${k};`);
    for (const n of NS) {
      const g = `g${k}_${n}`;
      rev.push(`      ${g} = fma(gy0${k}, ${T}(cc${n}), ${g});`);
      rev.push(`      pc${n} = pc${n} + ${dot(`gm${k}`, `h${k}_${n}`)};`);
      rev.push(`      let hp${k}_${n} = ${wsAt("(t - t0)", k, n)};`);
      rev.push(`      sB${k} = fma(${g}, ${T}(bb${n}), sB${k});`);
      rev.push(`      pb${n} = pb${n} + ${dot(g, `dx${k}`)};`);
      rev.push(`      ${g} = ${g} * exp2(dt${k} * a${k}_${n});`);
      rev.push(`      let q${k}_${n} = ${g} * hp${k}_${n};`);
      rev.push(`      gA${k}_${n} = fma(q${k}_${n}, dt${k}, gA${k}_${n});`);
      rev.push(`      ga${k} = fma(q${k}_${n}, a${k}_${n}, ga${k});`);
      rev.push(`      h${k}_${n} = hp${k}_${n};`);
    }
    // Σₙ g·Bₙ serves du (·Δ) and dΔ (·u); a is A·log₂e, so Σ q·A = ln 2 · Σ q·a.
    rev.push(`      let gu${k} = fma(sB${k}, dt${k}, gy0${k} * d${k});`);
    rev.push(`      let gt${k} = fma(ga${k}, ${T}(${ln2}), sB${k} * x${k});`);
    rev.push(
      softplus
        ? `      let gd${k} = select(gt${k} * ${sig}(raw${k}), gt${k}, raw${k} > ${T}(20.0));`
        : `      let gd${k} = gt${k};`,
    );
    rev.push(`      gb${k} = gb${k} + gd${k};`);
    const stores = [storeAct(slots.u, k, `gu${k}`), storeAct(slots.delta, k, `gd${k}`)];
    if (gate) stores.push(storeAct(slots.z!, k, `dz${k}`));
    rev.push(`      if (i${k} < ${I}u) { ${stores.join(" ")} }`);
  }
  // This lane's dB/dC terms for step t, into workgroup memory.
  const RT = RV === 4 ? "vec4<f32>" : "f32";
  const per = N2 / RV;
  rev.push(`      let slot = (((t - t0) % ${sub}u) * ${wg}u + lid.x) * ${per}u;`);
  for (let q = 0; q < N / RV; q++) {
    const pack = (tag: string) =>
      RV === 4
        ? `vec4<f32>(${[0, 1, 2, 3].map((e) => `${tag}${4 * q + e}`).join(", ")})`
        : `${tag}${q}`;
    rev.push(`      red[slot + ${q}u] = ${pack("pb")};`);
    rev.push(`      red[slot + ${N / RV + q}u] = ${pack("pc")};`);
  }
  // The lowest step of a `sub`-aligned block: the workgroup sums the block's
  // lanes and stores one partial per (step, channel block).
  const p4 = io.scratch(3);
  if (RV === 4) arrayTypes.scratch3 = "vec4<f32>";
  rev.push(`      if ((t - t0) % ${sub}u == 0u) {`);
  rev.push(`        workgroupBarrier();`);
  rev.push(`        let steps = min(t + ${sub}u, t1) - t;`);
  rev.push(`        for (var e = lid.x; e < steps * ${per}u; e = e + ${wg}u) {`);
  rev.push(`          let st = e / ${per}u;`);
  rev.push(`          let n = e % ${per}u;`);
  rev.push(`          var acc = ${RT}(0.0);`);
  rev.push(`          for (var w = 0u; w < ${wg}u; w = w + 1u) {`);
  rev.push(`            acc = acc + red[(st * ${wg}u + w) * ${per}u + n];`);
  rev.push(`          }`);
  rev.push(`          ${p4}[((b * ${L}u + t + st) * ${blocks}u + wid.x) * ${per}u + n] = acc;`);
  rev.push(`        }`);
  rev.push(`        workgroupBarrier();`);
  rev.push(`      }`);
  rev.push(`    }`);

  const post: string[] = [];
  const p5 = io.scratch(4);
  for (const k of units) {
    post.push(`  if (i${k} < ${I}u) {`);
    for (let e = 0; e < V; e++) {
      const ch = `i${k}${plus(e)}`;
      for (const n of NS) {
        post.push(`    ${p5}[(b * ${I}u + ${ch}) * ${N}u + ${n}u] = ${el(`gA${k}_${n}`, e)};`);
      }
      post.push(`    ${p5}[${B * I * N}u + b * ${I}u + ${ch}] = ${el(`gD${k}`, e)};`);
      post.push(`    ${p5}[${B * I * N + B * I}u + b * ${I}u + ${ch}] = ${el(`gb${k}`, e)};`);
      if (slots.h0 !== undefined) {
        const o = ctx.outputs[slots.h0];
        for (const n of NS) {
          const at = `(b * ${I}u + ${ch}) * ${N}u + ${n}u`;
          post.push(`    ${store(io, o, slots.h0, at, el(`g${k}_${n}`, e))}`);
        }
      }
    }
    post.push(`  }`);
  }
  const code = `var<workgroup> red: array<${RT}, ${sub * wg * per}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.z;
  let chunk = bitcast<u32>(${io.scratch(0)}[${I * N + 2 * I + 1}u]);
  let nc = (${L}u + chunk - 1u) / chunk;
${pre.join("\n")}
${ck.join("\n")}
  for (var cc = 0u; cc < nc; cc = cc + 1u) {
    let c = nc - 1u - cc;
    let t0 = c * chunk;
    let t1 = min(t0 + chunk, ${L}u);
${fwd.join("\n")}
${rev.join("\n")}
  }
${post.join("\n")}
}`;
  return {
    label: `ssm_scan_grad_reverse_B${B}_L${L}_I${I}_N${N}_c${p.chunk}`,
    code,
    workgroups: [blocks, 1, B],
    arrayTypes,
    uses: io.uses,
  };
}
