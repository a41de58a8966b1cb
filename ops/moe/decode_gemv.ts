/**
 * The decode path's expert GEMVs (few tokens, dropless): indexed by the
 * router's `topk_idx`, they read only the chosen experts' weights; no sort, no
 * combine.
 *
 * @module
 */

import type { KernelSource } from "../types.ts";
import { flatLaunch, flatMain, u32 } from "../wgsl/mod.ts";
import type { ResolvedMoeConfig } from "./config.ts";
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

/** Invocations per workgroup of the GEMVs: few tokens make few invocations. */
const GEMV_WG = 32;

/**
 * Decode GEMV 1: one invocation per (token, slot, `cols1` columns):
 * `hd[t, j] = act(x[t]·W1ₑᵀ + b1ₑ, x[t]·W3ₑᵀ + b3ₑ)` with `e = topk_idx[t, j]`, so only the
 * chosen experts' rows of W1/W3 are read.
 *
 * @example
 * ```ts ignore
 * const k = emitDecodeGemv1(resolveMoeConfig({ T: 1, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.label; // "moe_decode_gemv1_4x2_f32"
 * ```
 */
export function emitDecodeGemv1(
  c: ResolvedMoeConfig,
  ctx: MoeEmitContext,
  slabs?: SlabRange,
): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, d, ff, k } = c;
  const N = c.tile.cols1;
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const nct = ff / N;
  const total = T * k * nct;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps, GEMV_WG);
  // Where a load costs per lane and component (llvmpipe): f16 weights as packed
  // words, block formats a block at a time.
  const gemv = ctx.caps.cpuCores > 0;
  const L: string[] = [];
  L.push(`  let pair = i / ${u32(nct)};`);
  L.push(`  let col0 = (i % ${u32(nct)}) * ${u32(N)};`);
  L.push(`  let t = pair / ${u32(k)};`);
  L.push(`  let e = min(${io.arr("topk_idx")}[pair], ${u32(c.E - 1)});`);
  L.push(`  let es = ${slabOf(io, ctx, "e")};`);
  const skip = absent(ctx, "es");
  if (skip) L.push(`  if (${skip}) { return; }`); // not on this device: GEMV 2 skips the pair
  L.push(...outsideSlabs(slabs, "es"));
  const mats = gemm1Weights(c).map((w) =>
    expertMatrix(c, io, w, V, slabs, "es", ff, d, "col0", gemv)
  );
  L.push(...kLoop(c, 1, N, KV, V, io.vec("x", "f32", V), () => `t * ${u32(KV)}`, mats));
  const b1 = biasLets(io, c, "b1", "e", "col0", N, "eb1");
  const b3 = biasLets(io, c, "b3", "e", "col0", N, "eb3");
  L.push(...b1.lines, ...b3.lines);
  L.push("  {");
  const vals = range(N).map((j) =>
    moeActCall(c, plusBias(`acc_0_0_${j}`, b1.names[j]), plusBias(`acc_1_0_${j}`, b3.names[j]))
  );
  L.push(...storeRow(io, "hd", ff, "pair", "col0", vals, false));
  L.push("  }");
  const code = `${flatMain(wg, index, total, L.join("\n"))}\n${moeActHelper(c)}\n`;
  const packed = mats[0].packedHalf ? "_packed" : mats[0].quant?.block ? "_blocks" : "";
  const label = `moe_decode_gemv1_${N}x${mats.length}_${weightName(c)}${packed}${
    slabSuffix(slabs)
  }`;
  return io.kernel(label, "decode_gemv1", code, workgroups);
}

/**
 * Decode GEMV 2: one invocation per (token, `cols2` columns) sums its k slots in
 * slot order: `y[t] = Σⱼ wⱼ · (hd[t, j]·W2ₑⱼᵀ + b2ₑⱼ)`. Reads only chosen experts' W2 rows
 * and writes `y` directly (no combine needed).
 *
 * @example
 * ```ts ignore
 * const k = emitDecodeGemv2(resolveMoeConfig({ T: 1, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.label; // "moe_decode_gemv2_8_f32"
 * ```
 */
export function emitDecodeGemv2(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, d, ff, k } = c;
  const N = c.tile.cols2;
  const V = ff % 4 === 0 ? 4 : 1;
  const KV = ff / V;
  const nct = d / N;
  const total = T * nct;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps, GEMV_WG);
  const L: string[] = [];
  L.push(`  let t = i / ${u32(nct)};`);
  L.push(`  let col0 = (i % ${u32(nct)}) * ${u32(N)};`);
  for (const j of range(N)) L.push(`  var y_${j} = 0.0;`);
  L.push(`  for (var s = 0u; s < ${u32(k)}; s++) {`);
  L.push(`    let pair = t * ${u32(k)} + s;`);
  L.push(`    let e = min(${io.arr("topk_idx")}[pair], ${u32(c.E - 1)});`);
  L.push(`    let es = ${slabOf(io, ctx, "e")};`);
  const skip = absent(ctx, "es");
  if (skip) L.push(`    if (${skip}) { continue; }`);
  // As GEMV 1: packed f16 words, or blocks, where loads cost per component.
  const w2 = expertMatrix(c, io, "w2", V, undefined, "es", d, ff, "col0", ctx.caps.cpuCores > 0);
  const inner = kLoop(c, 1, N, KV, V, io.vec("hd", "f32", V), () => `pair * ${u32(KV)}`, [w2]);
  L.push(...inner.map((s) => "  " + s));
  L.push(`    let w = ${io.arr("topk_w")}[pair];`);
  // The down bias of the pair's expert joins before its routing weight.
  const b2 = biasLets(io, c, "b2", "e", "col0", N, "eb2", "    ");
  L.push(...b2.lines);
  for (const j of range(N)) L.push(`    y_${j} += w * ${plusBias(`acc_0_0_${j}`, b2.names[j])};`);
  L.push("  }");
  L.push("  {");
  const vals = range(N).map((j) => `y_${j}`);
  L.push(...storeRow(io, "y", d, "t", "col0", vals, !ctx.yDirect));
  L.push("  }");
  const code = `${flatMain(wg, index, total, L.join("\n"))}\n`;
  const how = w2.packedHalf ? "_packed" : w2.quant?.block ? "_blocks" : "";
  const label = `moe_decode_gemv2_${N}_${weightName(c)}${how}`;
  return io.kernel(label, "decode_gemv2", code, workgroups);
}
