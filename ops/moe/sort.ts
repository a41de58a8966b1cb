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
 * Its workgroup memory (12 words per expert) fits 256 experts; above, the
 * variant `emitSortWide` keeps 2 words per expert and smaller token chunks
 * (see {@linkcode sortWideWords}), with the same result.
 *
 * @example
 * ```ts ignore
 * const k = emitSort(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.workgroups; // [1, 1, 1]
 * ```
 */
export function emitSort(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  if (c.E > SORT_WG) return emitSortWide(c, ctx);
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

/** Invocations of the sort's one workgroup; E above it takes {@linkcode emitSortWide}. */
const SORT_WG = 256;

/** Workgroup memory the kernels may use: WebGPU's default `maxComputeWorkgroupStorageSize`. */
const WG_BYTES = 16384;

/**
 * Rank words per expert of the wide sort: the most (a power of two, at most
 * 8 = 256 tokens per chunk) that fit the workgroup memory beside the 2E
 * words of counts and segments — 8 up to E = 409, 4 up to 682, 2 (64-token
 * chunks) up to 1024 (then 1 up to 1365, past `MOE_MAX_EXPERTS`).
 *
 * @example
 * ```ts
 * import { sortWideWords } from "./sort.ts";
 * [sortWideWords(300), sortWideWords(512), sortWideWords(1024)]; // [8, 4, 2]
 * ```
 */
export function sortWideWords(E: number): number {
  const fit = Math.floor((WG_BYTES / 4 - 2 * E) / E);
  if (fit < 1) throw new RangeError(`MoE sort: E = ${E} experts do not fit workgroup memory`);
  let w = 1;
  while (w * 2 <= Math.min(fit, 8)) w *= 2;
  return w;
}

/**
 * The sort for E above {@linkcode SORT_WG}, with the same result as
 * {@linkcode emitSort} (each expert's pairs in token order, the same drops):
 * E·8 rank words and four E-long arrays would pass 16 KiB of workgroup memory
 * (24 KiB at E = 512), so it keeps two: `cnt`, the histogram that becomes each
 * expert's end of kept rows (`seg + kept`), and `seg`, the segment starts that
 * become each expert's next free row as the chunks are placed (`seg + base`).
 * Tokens go in chunks of C = 32·{@linkcode sortWideWords} (C = 64 at
 * E = 1024); when C < 256 the 256 / C invocations of a token share its k
 * slots (a token's slots name distinct experts, so each rank bit is set once).
 * Every per-expert step loops `e = lid, lid + 256, …`, and the tile table
 * finds a row's expert by binary search over the segment starts.
 */
function emitSortWide(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, E, k, rowsMax } = c;
  const TM = c.tile.rows;
  const W = SORT_WG;
  const NW = sortWideWords(E); // rank words per expert
  const C = 32 * NW; // tokens per chunk
  const G = W / C; // invocations per token
  const nChunks = Math.ceil(T / C);
  const [uE, uk, uT, uW, uTM, uNW] = [u32(E), u32(k), u32(T), u32(W), u32(TM), u32(NW)];
  const topkIdx = io.arr("topk_idx"), topkW = io.arr("topk_w");
  const sortedToken = io.arr("sorted_token"), sortedW = io.arr("sorted_w");
  const slotPos = io.arr("slot_pos"), counts = io.arr("counts");
  const keptLine = io.has("kept") ? `      ${io.arr("kept")}[e] = kp;\n` : "";
  const own = `for (var e = li; e < ${uE}; e += ${uW})`;
  // The slots of token t this invocation handles: all of them, or every G-th.
  const slots = G === 1
    ? `for (var j = 0u; j < ${uk}; j++)`
    : `for (var j = li / ${u32(C)}; j < ${uk}; j += ${u32(G)})`;
  const lane = G === 1 ? "li" : `li % ${u32(C)}`;
  const expert = `min(${topkIdx}[t * ${uk} + j], ${u32(E - 1)})`;
  const code = `
const NONE: u32 = ${u32(MOE_NONE)};
var<workgroup> cnt: array<atomic<u32>, ${E}>;
var<workgroup> seg: array<u32, ${E}>;
var<workgroup> bits: array<atomic<u32>, ${E * NW}>;

@compute @workgroup_size(${W})
fn main(@builtin(local_invocation_index) li: u32) {
  ${own} { atomicStore(&cnt[e], 0u); }
  workgroupBarrier();
  for (var t = li; t < ${uT}; t += ${uW}) {
    for (var j = 0u; j < ${uk}; j++) { atomicAdd(&cnt[${expert}], 1u); }
  }
  workgroupBarrier();
  if (li == 0u) {
    var s = 0u;
    for (var e = 0u; e < ${uE}; e++) {
      let n = atomicLoad(&cnt[e]);
      let kp = min(n, ${u32(c.capacity)});
      ${counts}[e] = n;
${keptLine}      seg[e] = s;
      atomicStore(&cnt[e], s + kp); // from here on: the end of e's kept rows
      s += (kp + ${u32(TM - 1)}) / ${uTM} * ${uTM};
    }
  }
  workgroupBarrier();
  // Tile table and padding rows (disjoint from the rows the scatter writes). A row's
  // expert is the last with seg[e] <= r (empty segments start where the next does),
  // up to the end of the last segment (derived, not stored: at E = 1024 one more word
  // of seg would halve the chunks).
  let last = seg[${u32(E - 1)}];
  let rows = last + (atomicLoad(&cnt[${u32(E - 1)}]) - last + ${u32(TM - 1)}) / ${uTM} * ${uTM};
  for (var r = li; r < ${u32(rowsMax)}; r += ${uW}) {
    var owner = NONE;
    if (r < rows) {
      var lo = 0u;
      var hi = ${u32(E - 1)};
      while (lo < hi) {
        let mid = (lo + hi + 1u) / 2u;
        if (seg[mid] <= r) { lo = mid; } else { hi = mid - 1u; }
      }
      owner = lo;
    }
    if (owner == NONE || r >= atomicLoad(&cnt[owner])) {
      ${sortedToken}[r] = NONE;
      ${sortedW}[r] = 0.0;
    }
    if (r % ${uTM} == 0u) { ${io.arr("tile_expert")}[r / ${uTM}] = owner; }
  }
  for (var ch = 0u; ch < ${u32(nChunks)}; ch++) {
    for (var i = li; i < ${u32(E * NW)}; i += ${uW}) { atomicStore(&bits[i], 0u); }
    workgroupBarrier();
    let lane = ${lane};
    let t = ch * ${u32(C)} + lane;
    let word = lane / 32u;
    let bit = 1u << (lane % 32u);
    if (t < ${uT}) {
      ${slots} { atomicOr(&bits[${expert} * ${uNW} + word], bit); }
    }
    workgroupBarrier();
    if (t < ${uT}) {
      ${slots} {
        let e = ${expert};
        var pos = seg[e] + countOneBits(atomicLoad(&bits[e * ${uNW} + word]) & (bit - 1u));
        for (var w = 0u; w < word; w++) { pos += countOneBits(atomicLoad(&bits[e * ${uNW} + w])); }
        if (pos < atomicLoad(&cnt[e])) {
          ${sortedToken}[pos] = t;
          ${sortedW}[pos] = ${topkW}[t * ${uk} + j];
          ${slotPos}[t * ${uk} + j] = pos;
        } else {
          ${slotPos}[t * ${uk} + j] = NONE;
        }
      }
    }
    workgroupBarrier();
    ${own} {
      var n = 0u;
      for (var w = 0u; w < ${uNW}; w++) { n += countOneBits(atomicLoad(&bits[e * ${uNW} + w])); }
      seg[e] += n;
    }
    workgroupBarrier();
  }
}
`;
  const label = `moe_sort_e${E}_tm${TM}${c.capacity === MOE_NONE ? "" : `_cap${c.capacity}`}`;
  return io.kernel(label, "sort", code, [1, 1, 1]);
}
