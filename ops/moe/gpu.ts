/**
 * GPU-shaped expert matmuls for `moe`, the `gpu` target's entry (see
 * `ops/targets.ts`). The router, sort, combine and aux kernels are the
 * portable ones (`moeKernels`); only the expert products are replaced:
 *
 * - decode (T ≤ 4): GEMV 1 and GEMV 2 give a workgroup to a few output
 *   columns of one (token, slot) / token; its invocations stride over K with
 *   vec4 loads (when K is a multiple of 4) and the partial sums meet in a
 *   workgroup-wide reduction (`subgroupAdd` where the device has `subgroups`,
 *   else a workgroup-memory tree). The arithmetic is `decode_gemv.ts`'s:
 *   `hd = act(x·W1ᵀ + b1, x·W3ᵀ + b3)`, `y = Σ_slots w · (hd·W2ᵀ + b2)`.
 * - prefill: grouped GEMM 1 and 2 over workgroup tiles of {@linkcode GPU_ROWS}
 *   sorted rows of one expert by {@linkcode GPU_COLS} columns, A and B staged
 *   in workgroup memory by K chunks, several outputs per invocation; they read
 *   the sort kernel's `sorted_token`, `tile_expert`, `sorted_w` as
 *   `grouped_gemm.ts` does (the sort pads experts to the taller row tile).
 *
 * Fallbacks to the portable `emitMoe`, unchanged: no tokens; block-quantized
 * weights (`weightFormat`); expert weights bound in segments (larger than one
 * binding); a capacity factor; the dense baseline; devices under 64
 * invocations a workgroup; a prefill whose taller-tile scratch would not fit
 * a binding (the portable tile's does).
 *
 * @module
 */

import type { KernelContext, KernelEmission, KernelEmitter, KernelSource } from "../types.ts";
import { grid, groupIndex, u32 } from "../wgsl/mod.ts";
import type { MoeAttrs } from "./attrs.ts";
import { MOE_NONE, moeGated, type ResolvedMoeConfig } from "./config.ts";
import { emitMoe, moeKernels, type MoePrepared, prepareMoe } from "./lower.ts";
import { type MoeBuffer, type MoeEmitContext, MoeIo } from "./operands.ts";
import { absent, range, slabOf, storeRow, weightName } from "./register_tile.ts";
import { expertBias, gemm1Weights, moeActCall, moeActHelper, plusBias } from "./activation.ts";

/** Sorted rows per workgroup tile of the prefill GEMMs (the sort's row tile). */
export const GPU_ROWS = 16;
/** Output columns per workgroup tile of the prefill GEMMs. */
export const GPU_COLS = 32;
/** K elements staged per step of the prefill GEMMs. */
const BK = 16;
/** Invocations of the prefill GEMMs: an 8 × 8 grid over the tile. */
const GEMM_WG = 64;
/** Smallest subgroup WebGPU allows: sizes the per-subgroup slot arrays. */
const MIN_SUBGROUP = 4;

/** Largest of `opts` dividing `n`. */
function divisor(n: number, opts: readonly number[]): number {
  return opts.find((o) => n % o === 0) ?? 1;
}

/** GEMV workgroup: a power of two in [32, 256] near the K vectors, within the device. */
function gemvWorkgroup(KV: number, maxInvocations: number): number {
  let wg = 32;
  while (wg < KV && wg < 256) wg *= 2;
  while (wg > maxInvocations) wg /= 2;
  return wg;
}

/** Entry point of a workgroup-per-item kernel: `g` the item, `t` the invocation. */
function header(wg: number, sg: boolean, workgroups: readonly [number, number, number]): string {
  const sgArgs = sg
    ? ", @builtin(subgroup_size) sgs: u32, @builtin(subgroup_invocation_id) sid: u32"
    : "";
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32${sgArgs}) {
  let g = ${groupIndex(workgroups)};`;
}

/**
 * Workgroup-wide sums of `vals` (one f32 expression each, per invocation)
 * into `let <name>_i`; every invocation sees the same bits. Returns the shared
 * declaration and the statements.
 */
function reduceAll(
  vals: readonly string[],
  wg: number,
  sg: boolean,
  name: string,
): { shared: string; code: string[] } {
  const n = vals.length;
  const L: string[] = [];
  if (sg) {
    const slots = Math.ceil(wg / MIN_SUBGROUP);
    vals.forEach((v, i) => {
      L.push(`  let ${name}_sg${i} = subgroupAdd(${v});`);
      L.push(`  if (sid == 0u) { red[${u32(i * slots)} + t / sgs] = ${name}_sg${i}; }`);
    });
    L.push("  workgroupBarrier();");
    for (const i of range(n)) {
      L.push(`  var ${name}_${i} = red[${u32(i * slots)}];`);
      L.push(`  for (var q = 1u; q < (${u32(wg)} + sgs - 1u) / sgs; q++) {`);
      L.push(`    ${name}_${i} += red[${u32(i * slots)} + q];`);
      L.push("  }");
    }
    return { shared: `var<workgroup> red: array<f32, ${n * slots}>;`, code: L };
  }
  vals.forEach((v, i) => L.push(`  red[${u32(i * wg)} + t] = ${v};`));
  L.push("  workgroupBarrier();");
  L.push(`  for (var s = ${u32(wg / 2)}; s > 0u; s = s >> 1u) {`);
  L.push("    if (t < s) {");
  for (const i of range(n)) L.push(`      red[${u32(i * wg)} + t] += red[${u32(i * wg)} + t + s];`);
  L.push("    }");
  L.push("    workgroupBarrier();");
  L.push("  }");
  for (const i of range(n)) L.push(`  let ${name}_${i} = red[${u32(i * wg)}];`);
  return { shared: `var<workgroup> red: array<f32, ${n * wg}>;`, code: L };
}

/** One weight vector as f32 (f16 weights widened after the load). */
function wvec(c: ResolvedMoeConfig, io: MoeIo, b: MoeBuffer, V: number): (i: string) => string {
  const read = io.weight(b, c.weightDtype, V);
  if (c.weightDtype === "f32") return read;
  return (i) => (V === 4 ? `vec4<f32>(${read(i)})` : `f32(${read(i)})`);
}

/** Horizontal sum of an accumulator of width V. */
const hsum = (a: string, V: number) => (V === 4 ? `dot(${a}, vec4<f32>(1.0))` : a);

/**
 * Decode GEMV 1: a workgroup per (token, slot, NC columns of ff) strides over
 * d, then reduces: `hd[pair, col] = act(x[t]·W1ₑ[col] + b1ₑ[col], x[t]·W3ₑ[col] + b3ₑ[col])`.
 * An expert absent from the slot table leaves the pair unwritten (GEMV 2
 * skips it).
 */
function gemv1(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, d, ff, k, E } = c;
  const sg = ctx.caps.subgroups;
  const NC = divisor(ff, [4, 2]);
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const WG = gemvWorkgroup(KV, ctx.caps.maxInvocations);
  const nct = ff / NC;
  const groups = T * k * nct;
  const workgroups = grid(groups, ctx.caps.maxWorkgroupsPerDim);
  const zero = V === 4 ? "vec4<f32>(0.0)" : "0.0";
  const x = io.vec("x", "f32", V);
  // Ungated experts (relu2) read no W3.
  const w1 = wvec(c, io, "w1", V);
  const w3 = moeGated(c.activation) ? wvec(c, io, "w3", V) : undefined;
  const L: string[] = [];
  L.push(`  if (g >= ${u32(groups)}) { return; }`);
  L.push(`  let pair = g / ${u32(nct)};`);
  L.push(`  let col0 = (g % ${u32(nct)}) * ${u32(NC)};`);
  L.push(`  let tok = pair / ${u32(k)};`);
  L.push(`  let e = min(${io.arr("topk_idx")}[pair], ${u32(E - 1)});`);
  L.push(`  let es = ${slabOf(io, ctx, "e")};`);
  const skip = absent(ctx, "es");
  L.push(`  let live = ${skip ? `!(${skip})` : "true"};`);
  for (const j of range(NC)) {
    L.push(`  var a1_${j} = ${zero};`);
    if (w3) L.push(`  var a3_${j} = ${zero};`);
  }
  L.push("  if (live) {");
  L.push(`    for (var kv = t; kv < ${u32(KV)}; kv += ${u32(WG)}) {`);
  L.push(`      let xv = ${x}[tok * ${u32(KV)} + kv];`);
  for (const j of range(NC)) {
    const row = `(es * ${u32(ff)} + col0 + ${u32(j)}) * ${u32(KV)} + kv`;
    L.push(`      a1_${j} += xv * ${w1(row)};`);
    if (w3) L.push(`      a3_${j} += xv * ${w3(row)};`);
  }
  L.push("    }");
  L.push("  }");
  const vals = range(NC).flatMap((j) =>
    w3 ? [hsum(`a1_${j}`, V), hsum(`a3_${j}`, V)] : [hsum(`a1_${j}`, V)]
  );
  const per = w3 ? 2 : 1; // reduced values per column
  const red = reduceAll(vals, WG, sg, "r");
  L.push(...red.code);
  L.push("  if (live && t == 0u) {");
  const bias = (b: "b1" | "b3", j: number) => expertBias(io, c, b, "e", `col0 + ${u32(j)}`);
  const outs = range(NC).map((j) =>
    moeActCall(
      c,
      plusBias(`r_${per * j}`, bias("b1", j)),
      plusBias(`r_${per * j + 1}`, bias("b3", j)),
    )
  );
  L.push(...storeRow(io, "hd", ff, "pair", "col0", outs, false));
  L.push("  }");
  const code = `${red.shared}\n${header(WG, sg, workgroups)}\n${L.join("\n")}\n}\n${
    moeActHelper(c)
  }\n`;
  const label = `moe_gpu_decode_gemv1_wg${WG}x${NC}_${weightName(c)}${sg ? "_sg" : ""}`;
  return io.kernel(label, "decode_gemv1", code, workgroups);
}

/**
 * Decode GEMV 2: a workgroup per (token, NC columns of d) sums its k slots,
 * `y[t, col] = Σⱼ wⱼ · (hd[t, j]·W2ₑⱼ[col] + b2ₑⱼ[col])`, striding over ff, then
 * reduces (the biases join after the reduction, added once).
 */
function gemv2(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, d, ff, k, E } = c;
  const sg = ctx.caps.subgroups;
  const NC = divisor(d, [4, 2]);
  const V = ff % 4 === 0 ? 4 : 1;
  const KV = ff / V;
  const WG = gemvWorkgroup(KV, ctx.caps.maxInvocations);
  const nct = d / NC;
  const groups = T * nct;
  const workgroups = grid(groups, ctx.caps.maxWorkgroupsPerDim);
  const zero = V === 4 ? "vec4<f32>(0.0)" : "0.0";
  const hd = io.vec("hd", "f32", V);
  const w2 = wvec(c, io, "w2", V);
  const L: string[] = [];
  L.push(`  if (g >= ${u32(groups)}) { return; }`);
  L.push(`  let tok = g / ${u32(nct)};`);
  L.push(`  let col0 = (g % ${u32(nct)}) * ${u32(NC)};`);
  for (const j of range(NC)) L.push(`  var y_${j} = ${zero};`);
  L.push(`  for (var s = 0u; s < ${u32(k)}; s++) {`);
  L.push(`    let pair = tok * ${u32(k)} + s;`);
  L.push(`    let e = min(${io.arr("topk_idx")}[pair], ${u32(E - 1)});`);
  L.push(`    let es = ${slabOf(io, ctx, "e")};`);
  const skip = absent(ctx, "es");
  if (skip) L.push(`    if (${skip}) { continue; }`);
  L.push(`    let w = ${io.arr("topk_w")}[pair];`);
  for (const j of range(NC)) L.push(`    var p_${j} = ${zero};`);
  L.push(`    for (var kv = t; kv < ${u32(KV)}; kv += ${u32(WG)}) {`);
  L.push(`      let hv = ${hd}[pair * ${u32(KV)} + kv];`);
  for (const j of range(NC)) {
    L.push(`      p_${j} += hv * ${w2(`(es * ${u32(d)} + col0 + ${u32(j)}) * ${u32(KV)} + kv`)};`);
  }
  L.push("    }");
  for (const j of range(NC)) L.push(`    y_${j} += w * p_${j};`);
  L.push("  }");
  const red = reduceAll(range(NC).map((j) => hsum(`y_${j}`, V)), WG, sg, "r");
  L.push(...red.code);
  L.push("  if (t == 0u) {");
  let outs = range(NC).map((j) => `r_${j}`);
  if (c.expertBias) {
    // The invocations' partial sums hold no bias: Σⱼ wⱼ · b2ₑⱼ joins after the reduction.
    for (const j of range(NC)) L.push(`    var bs_${j} = 0.0;`);
    L.push(`    for (var s = 0u; s < ${u32(k)}; s++) {`);
    L.push(`      let pair = tok * ${u32(k)} + s;`);
    L.push(`      let e = min(${io.arr("topk_idx")}[pair], ${u32(E - 1)});`);
    const gone = absent(ctx, slabOf(io, ctx, "e"));
    if (gone) L.push(`      if (${gone}) { continue; }`);
    L.push(`      let w = ${io.arr("topk_w")}[pair];`);
    for (const j of range(NC)) {
      L.push(`      bs_${j} += w * ${expertBias(io, c, "b2", "e", `col0 + ${u32(j)}`)};`);
    }
    L.push("    }");
    outs = outs.map((v, j) => `${v} + bs_${j}`);
  }
  L.push(...storeRow(io, "y", d, "tok", "col0", outs, !ctx.yDirect));
  L.push("  }");
  const code = `${red.shared}\n${header(WG, sg, workgroups)}\n${L.join("\n")}\n}\n`;
  const label = `moe_gpu_decode_gemv2_wg${WG}x${NC}_${weightName(c)}${sg ? "_sg" : ""}`;
  return io.kernel(label, "decode_gemv2", code, workgroups);
}

/**
 * Grouped GEMM 1 (`gemm` 1) or 2 on workgroup tiles: GPU_ROWS sorted rows of
 * one expert × GPU_COLS output columns, K staged BK at a time in workgroup
 * memory; invocation (tr, tc) of an 8 × 8 grid computes rows tr + 8i and
 * columns tc + 8j. GEMM 1: `h[row] = act(x[tok]·W1ₑᵀ + b1ₑ, x[tok]·W3ₑᵀ + b3ₑ)` (padding
 * rows read token 0, never used); GEMM 2: `o[row] = sorted_w[row] · (h[row]·W2ₑᵀ + b2ₑ)`,
 * zero rows for an expert absent from the slot table.
 */
function groupedGemm(c: ResolvedMoeConfig, ctx: MoeEmitContext, gemm: 1 | 2): KernelSource {
  const io = new MoeIo(ctx.layout);
  const R = c.tile.rows, BN = GPU_COLS, BKP = BK + 1;
  const [K, N] = gemm === 1 ? [c.d, c.ff] : [c.ff, c.d];
  const mats: MoeBuffer[] = gemm === 1 ? gemm1Weights(c) : ["w2"];
  const RT = R / 8, CT = BN / 8;
  const nct = Math.ceil(N / BN);
  const groups = c.tilesMax * nct;
  const workgroups = grid(groups, ctx.caps.maxWorkgroupsPerDim);
  const NONE = u32(MOE_NONE);
  const S: string[] = [
    `var<workgroup> sa: array<f32, ${R * BKP}>;`,
    "var<workgroup> hdr: array<u32, 2>;",
  ];
  mats.forEach((_, m) => S.push(`var<workgroup> sb${m}: array<f32, ${BN * BKP}>;`));
  const L: string[] = [];
  L.push(`  if (g >= ${u32(groups)}) { return; }`);
  L.push(`  let tile = g / ${u32(nct)};`);
  L.push(`  let col0 = (g % ${u32(nct)}) * ${u32(BN)};`);
  L.push("  if (t == 0u) {");
  L.push(`    let e0 = ${io.arr("tile_expert")}[tile];`);
  L.push("    hdr[0] = e0;");
  L.push(`    let ec = min(e0, ${u32(c.E - 1)});`);
  L.push(`    hdr[1] = ${slabOf(io, ctx, "ec")};`);
  L.push("  }");
  // Both are the same for the whole workgroup: loaded uniformly, early exits are legal.
  L.push("  let e = workgroupUniformLoad(&hdr[0]);");
  L.push("  let es = workgroupUniformLoad(&hdr[1]);");
  L.push(`  if (e == ${NONE}) { return; }`);
  L.push(`  let row0 = tile * ${u32(R)};`);
  L.push("  let tr = t / 8u;");
  L.push("  let tc = t % 8u;");
  const outIdx = (ri: number, cj: number) =>
    [`row0 + tr + ${u32(8 * ri)}`, `col0 + tc + ${u32(8 * cj)}`] as const;
  const out = io.arr(gemm === 1 ? "h" : "o");
  const skip = absent(ctx, "es");
  if (skip) {
    L.push(`  if (${skip}) {`);
    if (gemm === 2) {
      for (const ri of range(RT)) {
        for (const cj of range(CT)) {
          const [row, col] = outIdx(ri, cj);
          L.push(`    if (${col} < ${u32(N)}) { ${out}[(${row}) * ${u32(N)} + ${col}] = 0.0; }`);
        }
      }
    }
    L.push("    return;");
    L.push("  }");
  }
  // Loader coordinates: invocation t loads k offset t % BK of rows t / BK + 4l.
  const per = GEMM_WG / BK;
  L.push(`  let lk = t % ${u32(BK)};`);
  L.push(`  let lr = t / ${u32(BK)};`);
  const aLoads = (R * BK) / GEMM_WG, bLoads = (BN * BK) / GEMM_WG;
  const sortedToken = io.arr("sorted_token");
  for (const l of range(aLoads)) {
    const r = `lr + ${u32(l * per)}`;
    if (gemm === 1) {
      L.push(`  let tk${l} = ${sortedToken}[row0 + ${r}];`);
      L.push(`  let ar${l} = select(tk${l}, 0u, tk${l} == ${NONE}) * ${u32(K)};`);
    } else {
      L.push(`  let ar${l} = (row0 + ${r}) * ${u32(K)};`);
    }
  }
  const A = io.arr(gemm === 1 ? "x" : "h");
  const W = mats.map((b) => wvec(c, io, b, 1));
  for (const m of range(mats.length)) {
    for (const ri of range(RT)) {
      for (const cj of range(CT)) L.push(`  var c${m}_${ri}_${cj} = 0.0;`);
    }
  }
  L.push(`  for (var k0 = 0u; k0 < ${u32(K)}; k0 += ${u32(BK)}) {`);
  L.push("    let kg = k0 + lk;");
  L.push(`    let kin = kg < ${u32(K)};`);
  for (const l of range(aLoads)) {
    L.push(
      `    sa[(lr + ${u32(l * per)}) * ${u32(BKP)} + lk] = select(0.0, ${A}[ar${l} + kg], kin);`,
    );
  }
  for (const l of range(bLoads)) {
    L.push(`    let n${l} = col0 + lr + ${u32(l * per)};`);
    L.push(`    let bin${l} = kin && n${l} < ${u32(N)};`);
    L.push(`    let bi${l} = select(0u, (es * ${u32(N)} + n${l}) * ${u32(K)} + kg, bin${l});`);
    mats.forEach((_, m) => {
      L.push(
        `    sb${m}[(lr + ${u32(l * per)}) * ${u32(BKP)} + lk] = select(0.0, ${
          W[m](`bi${l}`)
        }, bin${l});`,
      );
    });
  }
  L.push("    workgroupBarrier();");
  L.push(`    for (var kk = 0u; kk < ${u32(BK)}; kk++) {`);
  for (const ri of range(RT)) {
    L.push(`      let a${ri} = sa[(tr + ${u32(8 * ri)}) * ${u32(BKP)} + kk];`);
  }
  for (const m of range(mats.length)) {
    for (const cj of range(CT)) {
      L.push(`      let b${m}_${cj} = sb${m}[(tc + ${u32(8 * cj)}) * ${u32(BKP)} + kk];`);
      for (const ri of range(RT)) L.push(`      c${m}_${ri}_${cj} += a${ri} * b${m}_${cj};`);
    }
  }
  L.push("    }");
  L.push("    workgroupBarrier();");
  L.push("  }");
  const sortedW = gemm === 2 ? io.arr("sorted_w") : "";
  for (const ri of range(RT)) {
    if (gemm === 2) L.push(`  let sw${ri} = ${sortedW}[row0 + tr + ${u32(8 * ri)}];`);
    for (const cj of range(CT)) {
      const [row, col] = outIdx(ri, cj);
      const bias = (b: "b1" | "b3" | "b2") => expertBias(io, c, b, "e", col);
      const v = gemm === 1
        ? moeActCall(
          c,
          plusBias(`c0_${ri}_${cj}`, bias("b1")),
          plusBias(`c1_${ri}_${cj}`, bias("b3")),
        )
        : `sw${ri} * ${plusBias(`c0_${ri}_${cj}`, bias("b2"))}`;
      L.push(`  if (${col} < ${u32(N)}) { ${out}[(${row}) * ${u32(N)} + ${col}] = ${v}; }`);
    }
  }
  const code = `${S.join("\n")}\n${header(GEMM_WG, false, workgroups)}\n${L.join("\n")}\n}\n${
    gemm === 1 ? moeActHelper(c) : ""
  }\n`;
  const label = `moe_gpu_grouped_gemm${gemm}_${R}x${BN}_${weightName(c)}`;
  return io.kernel(label, gemm === 1 ? "gemm1" : "gemm2", code, workgroups);
}

/** True when the GPU kernels cover this layer (see the module doc for the rest). */
function covered(p: MoePrepared): boolean {
  const { c, path, emit } = p;
  const direct = (["w1", "w3", "w2"] as const).every((b) => emit.layout[b]?.via === undefined);
  return c.weightFormat === undefined && c.capacityFactor === undefined && direct &&
    path !== "dense" && emit.caps.maxInvocations >= 64;
}

/**
 * The `gpu` target's `moe` emitter: the portable router, sort, combine and aux
 * kernels around GPU-shaped expert GEMVs (decode) and workgroup-tiled grouped
 * GEMMs (prefill) for dense f32/f16 weights bound whole, with or without a slot
 * table; the portable `emitMoe` for everything else.
 *
 * @example
 * ```ts
 * import { TARGET_TABLES } from "../targets.ts";
 * import { moeGpu } from "./gpu.ts";
 * TARGET_TABLES.gpu.emitters.moe === moeGpu; // true
 * ```
 */
export const moeGpu: KernelEmitter<MoeAttrs> = (ctx: KernelContext<MoeAttrs>): KernelEmission => {
  const p0 = prepareMoe(ctx);
  if (p0 === undefined || !covered(p0)) return emitMoe(ctx);
  let p = p0;
  if (p0.path === "prefill") {
    try {
      p = prepareMoe(ctx, { rows: GPU_ROWS })!;
    } catch (e) {
      if (e instanceof RangeError) return emitMoe(ctx); // taller tiles' scratch too large
      throw e;
    }
  }
  const kernels = moeKernels(p.c, p.path, p.aux, p.emit).map((k) => {
    switch (k.role) {
      case "decode_gemv1":
        return gemv1(p.c, p.emit);
      case "decode_gemv2":
        return gemv2(p.c, p.emit);
      case "gemm1":
        return groupedGemm(p.c, p.emit, 1);
      case "gemm2":
        return groupedGemm(p.c, p.emit, 2);
      default:
        return k;
    }
  });
  return { kernels, scratch: p.scratch };
};
