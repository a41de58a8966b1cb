/**
 * The expert GEMMs of the prefill path (all row tiles of all experts in one
 * launch per GEMM, then the combine) and of the dense baseline (every token
 * through every expert, with the same register tile so a benchmark compares
 * routing, not code quality).
 *
 * Padding rows and empty tiles exit before the K loop; the GEMMs use no
 * barriers (see `register_tile.ts` for why the tiles look the way they do).
 *
 * @module
 */

import type { KernelSource } from "../types.ts";
import { flatLaunch, flatMain, u32 } from "../wgsl/mod.ts";
import { MOE_NONE, type ResolvedMoeConfig } from "./config.ts";
import { type MoeEmitContext, MoeIo, type SlabRange } from "./operands.ts";
import { biasLets, gemm1Weights, moeActCall, moeActHelper, plusBias } from "./activation.ts";
import {
  absent,
  expertMatrix,
  kLoop,
  outsideSlabs,
  range,
  slabOf,
  slabSuffix,
  storeRow,
  weightName,
} from "./register_tile.ts";

const NONE = `const NONE: u32 = ${u32(MOE_NONE)};`;

function gemm1Like(
  c: ResolvedMoeConfig,
  mode: "grouped" | "dense",
  ctx: MoeEmitContext,
  slabs?: SlabRange,
): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { d, ff, E, T } = c;
  const { rows: R, cols1: N, wgSize } = c.tile;
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const nct = ff / N;
  const tpe = Math.ceil(T / R);
  const tiles = mode === "grouped" ? c.tilesMax : E * tpe;
  const total = tiles * nct;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps, wgSize);
  const L: string[] = [];
  L.push(`  let tile = i / ${u32(nct)};`);
  L.push(`  let col0 = (i % ${u32(nct)}) * ${u32(N)};`);
  if (mode === "grouped") {
    // Empty / padding tiles leave before touching any weight.
    L.push(`  let e = ${io.arr("tile_expert")}[tile];`);
    L.push("  if (e == NONE) { return; }");
    L.push(`  let es = ${slabOf(io, ctx, "e")};`);
    const skip = absent(ctx, "es");
    if (skip) L.push(`  if (${skip}) { return; }`); // GEMM 2 writes the tile's zero rows
    L.push(...outsideSlabs(slabs, "es"));
    L.push(`  let row0 = tile * ${u32(R)};`);
    const sortedToken = io.arr("sorted_token");
    for (const r of range(R)) {
      // The gather is folded into the A load; padding rows read token 0 and are never used.
      L.push(`  let tok${r} = ${sortedToken}[row0 + ${u32(r)}];`);
      L.push(`  let ar${r} = select(tok${r}, 0u, tok${r} == NONE);`);
    }
  } else {
    L.push(`  let e = tile / ${u32(tpe)};`);
    L.push(`  let es = min(${slabOf(io, ctx, "e")}, ${u32((ctx.slotTable ?? E) - 1)});`);
    L.push(...outsideSlabs(slabs, "es"));
    L.push(`  let row0 = tile * ${u32(R)};`);
    for (const r of range(R)) {
      L.push(`  let ar${r} = min((tile % ${u32(tpe)}) * ${u32(R)} + ${u32(r)}, ${u32(T - 1)});`);
    }
  }
  L.push(
    ...kLoop(
      c,
      R,
      N,
      KV,
      V,
      io.vec("x", "f32", V),
      (r) => `ar${r} * ${u32(KV)}`,
      gemm1Weights(c).map((w) => expertMatrix(c, io, w, V, slabs, "es", ff, d, "col0")),
    ),
  );
  const out = mode === "grouped" ? "h" : "hdense";
  // Expert e's gate and up biases (by expert, not slab), read once for all R rows.
  const b1 = biasLets(io, c, "b1", "e", "col0", N, "eb1");
  const b3 = biasLets(io, c, "b3", "e", "col0", N, "eb3");
  L.push(...b1.lines, ...b3.lines);
  for (const r of range(R)) {
    L.push("  {");
    const vals = range(N).map((j) =>
      moeActCall(
        c,
        plusBias(`acc_0_${r}_${j}`, b1.names[j]),
        plusBias(`acc_1_${r}_${j}`, b3.names[j]),
      )
    );
    L.push(...storeRow(io, out, ff, `row0 + ${u32(r)}`, "col0", vals, false));
    L.push("  }");
  }
  const code = `${NONE}\n${flatMain(wg, index, total, L.join("\n"))}\n${moeActHelper(c)}\n`;
  const mats = gemm1Weights(c).length;
  const label = `moe_${mode}_gemm1_${R}x${N}x${mats}_${weightName(c)}${slabSuffix(slabs)}`;
  return io.kernel(label, mode === "grouped" ? "gemm1" : "dense_gemm1", code, workgroups);
}

/**
 * Grouped GEMM 1 over all row tiles of all experts in one launch:
 * `h[row] = act(x[sorted_token[row]]·W1ₑᵀ + b1ₑ, x[sorted_token[row]]·W3ₑᵀ + b3ₑ)`
 * (`moe_act`; the biases only with `expertBias`),
 * `e = tile_expert[row / tile.rows]`. Both products share the A loads; tiles past
 * the last one exit at once.
 *
 * @example
 * ```ts ignore
 * const k = emitGroupedGemm1(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.label; // "moe_grouped_gemm1_4x4x2_f32"
 * ```
 */
export function emitGroupedGemm1(
  c: ResolvedMoeConfig,
  ctx: MoeEmitContext,
  slabs?: SlabRange,
): KernelSource {
  return gemm1Like(c, "grouped", ctx, slabs);
}

/**
 * Dense-baseline GEMM 1: every token through every expert,
 * `hdense[e, t] = act(x[t]·W1ₑᵀ + b1ₑ, x[t]·W3ₑᵀ + b3ₑ)` (tokens padded to `tile.rows`
 * per expert). Same register tile as {@linkcode emitGroupedGemm1}.
 *
 * @example
 * ```ts ignore
 * const k = emitDenseGemm1(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * ```
 */
export function emitDenseGemm1(
  c: ResolvedMoeConfig,
  ctx: MoeEmitContext,
  slabs?: SlabRange,
): KernelSource {
  return gemm1Like(c, "dense", ctx, slabs);
}

/**
 * Grouped GEMM 2: `o[row] = sorted_w[row] · (h[row]·W2ₑᵀ + b2ₑ)` for every real row
 * (the routing weight is the epilogue). Results stay in sorted order; the
 * combine kernel sums each token's slots.
 *
 * @example
 * ```ts ignore
 * const k = emitGroupedGemm2(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * ```
 */
export function emitGroupedGemm2(
  c: ResolvedMoeConfig,
  ctx: MoeEmitContext,
  slabs?: SlabRange,
): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { d, ff, tilesMax } = c;
  const { rows: R, cols2: N, wgSize } = c.tile;
  const V = ff % 4 === 0 ? 4 : 1;
  const KV = ff / V;
  const nct = d / N;
  const total = tilesMax * nct;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps, wgSize);
  const L: string[] = [];
  L.push(`  let tile = i / ${u32(nct)};`);
  L.push(`  let col0 = (i % ${u32(nct)}) * ${u32(N)};`);
  L.push(`  let e = ${io.arr("tile_expert")}[tile];`);
  L.push("  if (e == NONE) { return; }");
  L.push(`  let es = ${slabOf(io, ctx, "e")};`);
  L.push(`  let row0 = tile * ${u32(R)};`);
  const skip = absent(ctx, "es");
  if (skip) {
    // An expert on another device: its rows add exactly 0 in the combine.
    L.push(`  if (${skip}) {`);
    for (const r of range(R)) {
      L.push(...storeRow(io, "o", d, `row0 + ${u32(r)}`, "col0", range(N).map(() => "0.0"), false));
    }
    L.push("    return;");
    L.push("  }");
  }
  L.push(...outsideSlabs(slabs, "es"));
  L.push(
    ...kLoop(c, R, N, KV, V, io.vec("h", "f32", V), (r) => `(row0 + ${u32(r)}) * ${u32(KV)}`, [
      expertMatrix(c, io, "w2", V, slabs, "es", d, ff, "col0"),
    ]),
  );
  const sortedW = io.arr("sorted_w");
  // The down bias joins before the routing weight: w · (h·W2ₑᵀ + b2ₑ), once per kept pair.
  const b2 = biasLets(io, c, "b2", "e", "col0", N, "eb2");
  L.push(...b2.lines);
  for (const r of range(R)) {
    L.push("  {");
    L.push(`    let sw = ${sortedW}[row0 + ${u32(r)}];`);
    const vals = range(N).map((j) => `sw * ${plusBias(`acc_0_${r}_${j}`, b2.names[j])}`);
    L.push(...storeRow(io, "o", d, `row0 + ${u32(r)}`, "col0", vals, false));
    L.push("  }");
  }
  const code = `${NONE}\n${flatMain(wg, index, total, L.join("\n"))}\n`;
  const label = `moe_grouped_gemm2_${R}x${N}_${weightName(c)}${slabSuffix(slabs)}`;
  return io.kernel(label, "gemm2", code, workgroups);
}

/**
 * Combine: `y[t] = Σⱼ o[slot_pos[t, j]]` in slot order (dropped slots add 0).
 * A fixed summation order keeps results bit-reproducible, unlike float atomics.
 *
 * @example
 * ```ts ignore
 * const k = emitCombine(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.label; // "moe_combine_k2"
 * ```
 */
export function emitCombine(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, d, k } = c;
  const V = d % 4 === 0 ? 4 : 1;
  const DV = d / V;
  const total = T * DV;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps, 64);
  const zero = V === 4 ? "vec4<f32>(0.0)" : "0.0";
  const o = io.vec("o", "f32", V), slotPos = io.arr("slot_pos");
  const store = ctx.yDirect
    ? `  ${io.vec("y", "f32", V)}[i] = s;`
    : V === 4
    ? ["x", "y", "z", "w"].map((ch, q) => `  ${io.store("y", `i * 4u + ${u32(q)}`, `s.${ch}`)};`)
      .join("\n")
    : `  ${io.store("y", "i", "s")};`;
  const body = `  let t = i / ${u32(DV)};
  let cv = i % ${u32(DV)};
  var s = ${zero};
  for (var j = 0u; j < ${u32(k)}; j++) {
    let p = ${slotPos}[t * ${u32(k)} + j];
    if (p != NONE) { s += ${o}[p * ${u32(DV)} + cv]; }
  }
${store}`;
  const code = `${NONE}\n${flatMain(wg, index, total, body)}\n`;
  return io.kernel(`moe_combine_k${k}`, "combine", code, workgroups);
}

/**
 * Dense-baseline GEMM 2: `y[t] = Σₑ gₜₑ · (hdense[e, t]·W2ₑᵀ + b2ₑ)` where `gₜₑ` is the
 * routing weight of e for t, 0 when e was not chosen (computed anyway).
 *
 * @example
 * ```ts ignore
 * const k = emitDenseGemm2(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * ```
 */
export function emitDenseGemm2(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, d, ff, E, k } = c;
  const { rows: R, cols2: N, wgSize } = c.tile;
  const V = ff % 4 === 0 ? 4 : 1;
  const KV = ff / V;
  const tpe = Math.ceil(T / R);
  const nct = d / N;
  const total = tpe * nct;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps, wgSize);
  const L: string[] = [];
  L.push(`  let tt = i / ${u32(nct)};`);
  L.push(`  let col0 = (i % ${u32(nct)}) * ${u32(N)};`);
  for (const r of range(R)) {
    L.push(`  let tr${r} = min(tt * ${u32(R)} + ${u32(r)}, ${u32(T - 1)});`);
    for (const j of range(N)) L.push(`  var y_${r}_${j} = 0.0;`);
  }
  L.push(`  for (var e = 0u; e < ${u32(E)}; e++) {`);
  L.push(`    let es = min(${slabOf(io, ctx, "e")}, ${u32((ctx.slotTable ?? E) - 1)});`);
  const inner = kLoop(
    c,
    R,
    N,
    KV,
    V,
    io.vec("hdense", "f32", V),
    (r) => `(e * ${u32(tpe * R)} + tt * ${u32(R)} + ${u32(r)}) * ${u32(KV)}`,
    [expertMatrix(c, io, "w2", V, undefined, "es", d, ff, "col0")],
  );
  L.push(...inner.map((s) => "  " + s));
  const b2 = biasLets(io, c, "b2", "e", "col0", N, "eb2", "    ");
  L.push(...b2.lines);
  const topkIdx = io.arr("topk_idx"), topkW = io.arr("topk_w");
  for (const r of range(R)) {
    L.push(`    var gw${r} = 0.0;`);
    L.push(`    for (var j = 0u; j < ${u32(k)}; j++) {`);
    L.push(
      `      if (${topkIdx}[tr${r} * ${u32(k)} + j] == e) { gw${r} = ${topkW}[tr${r} * ${
        u32(k)
      } + j]; }`,
    );
    L.push("    }");
    for (const j of range(N)) {
      L.push(`    y_${r}_${j} += gw${r} * ${plusBias(`acc_0_${r}_${j}`, b2.names[j])};`);
    }
  }
  L.push("  }");
  for (const r of range(R)) {
    L.push(`  if (tt * ${u32(R)} + ${u32(r)} < ${u32(T)}) {`);
    const vals = range(N).map((j) => `y_${r}_${j}`);
    L.push(...storeRow(io, "y", d, `tr${r}`, "col0", vals, !ctx.yDirect));
    L.push("  }");
  }
  const code = `${flatMain(wg, index, total, L.join("\n"))}\n`;
  return io.kernel(`moe_dense_gemm2_${R}x${N}_${weightName(c)}`, "dense_gemm2", code, workgroups);
}
