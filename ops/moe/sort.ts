/**
 * The prefill path's sort: the (token, slot) pairs grouped by expert, in
 * token order, padded to the GEMMs' row tiles, with the capacity applied.
 *
 * @module
 */

import type { KernelSource } from "../types.ts";
import { u32 } from "../wgsl/mod.ts";
import { MOE_NONE, type ResolvedMoeConfig } from "./config.ts";
import { type MoeEmitContext, MoeIo } from "./operands.ts";

/**
 * On-GPU sort of the (token, slot) pairs by expert, in a single workgroup of 256
 * invocations (the work is O(T·k), tiny next to the GEMMs, and one workgroup
 * makes the whole thing barrier-synchronised without extra launches):
 * histogram (workgroup atomics) → capacity → exclusive prefix sum with each
 * segment padded up to `tile.rows` → tile→expert table and padding rows →
 * scatter, where a pair's rank inside its expert is the number of earlier tokens
 * that chose the same expert (bit masks + popcount per chunk of 256 tokens), so
 * the order is token order regardless of scheduling. Pairs with rank ≥ capacity
 * are dropped (`slot_pos = NONE`).
 *
 * Writes `sorted_token [rowsMax]` (NONE on padding rows), `sorted_w [rowsMax]`,
 * `tile_expert [tilesMax]` (NONE past the last tile), `slot_pos [T, k]` (row of
 * each pair, NONE when dropped), `counts [E]` (routed pairs per expert) and,
 * when the layer has it, `kept [E]` (pairs kept after capacity).
 *
 * @example
 * ```ts ignore
 * const k = emitSort(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.workgroups; // [1, 1, 1]
 * ```
 */
export function emitSort(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, E, k, rowsMax } = c;
  const TM = c.tile.rows;
  const W = 256;
  const nChunks = Math.ceil(T / W);
  const [uE, uk, uT, uW, uTM] = [u32(E), u32(k), u32(T), u32(W), u32(TM)];
  const topkIdx = io.arr("topk_idx"), topkW = io.arr("topk_w");
  const sortedToken = io.arr("sorted_token"), sortedW = io.arr("sorted_w");
  const slotPos = io.arr("slot_pos"), counts = io.arr("counts");
  const keptLine = io.has("kept") ? `      ${io.arr("kept")}[e] = kp;\n` : "";
  const code = `
const NONE: u32 = ${u32(MOE_NONE)};
var<workgroup> cnt: array<atomic<u32>, ${E}>;
var<workgroup> kept: array<u32, ${E}>;
var<workgroup> seg: array<u32, ${E + 1}>;
var<workgroup> base: array<u32, ${E}>;
var<workgroup> bits: array<atomic<u32>, ${E * 8}>;

@compute @workgroup_size(${W})
fn main(@builtin(local_invocation_index) li: u32) {
  if (li < ${uE}) { atomicStore(&cnt[li], 0u); base[li] = 0u; }
  workgroupBarrier();
  for (var ch = 0u; ch < ${u32(nChunks)}; ch++) {
    let t = ch * ${uW} + li;
    if (t < ${uT}) {
      for (var j = 0u; j < ${uk}; j++) { atomicAdd(&cnt[min(${topkIdx}[t * ${uk} + j], ${
    u32(E - 1)
  })], 1u); }
    }
  }
  workgroupBarrier();
  if (li == 0u) {
    var s = 0u;
    for (var e = 0u; e < ${uE}; e++) {
      let n = atomicLoad(&cnt[e]);
      let kp = min(n, ${u32(c.capacity)});
      ${counts}[e] = n;
${keptLine}      kept[e] = kp;
      seg[e] = s;
      s += (kp + ${u32(TM - 1)}) / ${uTM} * ${uTM};
    }
    seg[${uE}] = s;
  }
  workgroupBarrier();
  // Tile table and padding rows (disjoint from the rows the scatter writes).
  for (var r = li; r < ${u32(rowsMax)}; r += ${uW}) {
    var owner = NONE;
    for (var e = 0u; e < ${uE}; e++) {
      if (r >= seg[e] && r < seg[e + 1u]) { owner = e; }
    }
    if (owner == NONE || r - seg[owner] >= kept[owner]) {
      ${sortedToken}[r] = NONE;
      ${sortedW}[r] = 0.0;
    }
    if (r % ${uTM} == 0u) { ${io.arr("tile_expert")}[r / ${uTM}] = owner; }
  }
  for (var ch = 0u; ch < ${u32(nChunks)}; ch++) {
    for (var i = li; i < ${u32(E * 8)}; i += ${uW}) { atomicStore(&bits[i], 0u); }
    workgroupBarrier();
    let t = ch * ${uW} + li;
    let word = li / 32u;
    let bit = 1u << (li % 32u);
    if (t < ${uT}) {
      for (var j = 0u; j < ${uk}; j++) {
        let e = min(${topkIdx}[t * ${uk} + j], ${u32(E - 1)});
        atomicOr(&bits[e * 8u + word], bit);
      }
    }
    workgroupBarrier();
    if (t < ${uT}) {
      for (var j = 0u; j < ${uk}; j++) {
        let e = min(${topkIdx}[t * ${uk} + j], ${u32(E - 1)});
        var rank = base[e] + countOneBits(atomicLoad(&bits[e * 8u + word]) & (bit - 1u));
        for (var w = 0u; w < word; w++) { rank += countOneBits(atomicLoad(&bits[e * 8u + w])); }
        if (rank < kept[e]) {
          let pos = seg[e] + rank;
          ${sortedToken}[pos] = t;
          ${sortedW}[pos] = ${topkW}[t * ${uk} + j];
          ${slotPos}[t * ${uk} + j] = pos;
        } else {
          ${slotPos}[t * ${uk} + j] = NONE;
        }
      }
    }
    workgroupBarrier();
    if (li < ${uE}) {
      var n = 0u;
      for (var w = 0u; w < 8u; w++) { n += countOneBits(atomicLoad(&bits[li * 8u + w])); }
      base[li] += n;
    }
    workgroupBarrier();
  }
}
`;
  const label = `moe_sort_e${E}_tm${TM}${c.capacity === MOE_NONE ? "" : `_cap${c.capacity}`}`;
  return io.kernel(label, "sort", code, [1, 1, 1]);
}
