/**
 * The router kernel: logits, probabilities and the top-k routing of every
 * token, the first kernel of every MoE path.
 *
 * @module
 */

import type { KernelSource } from "../types.ts";
import { f32, flatIndex, grid, groupIndex, u32 } from "../wgsl/mod.ts";
import { MOE_NONE, type ResolvedMoeConfig } from "./config.ts";
import { type MoeEmitContext, MoeIo } from "./operands.ts";

/**
 * Fused router: `logits = x·Wgᵀ` (one invocation per (token, expert)), then one
 * invocation per token does softmax / sigmoid, top-k (ties → lower index) and
 * the weights. Writes `logits [T, E]`, `probs [T, E]` (softmax probabilities;
 * for `sigmoid_bias` the normalised affinities s/Σs used by DeepSeek's balance
 * loss), `topk_idx [T, k]`, `topk_w [T, k]`. With given logits (`logitsIn`) it
 * copies them instead of computing them.
 *
 * Selection compares logits for `softmax_topk` and `switch` (same order as
 * the probabilities, but exp/rounding cannot create false ties), `sigmoid +
 * bias` for `sigmoid_bias` and `probability + bias` for `softmax_bias`, among
 * the experts of the kept groups when routing is group-limited.
 *
 * Up to 256 experts a workgroup holds ⌊64/E⌋ tokens (at least one), an
 * invocation per (token, expert); above, a workgroup per token whose 256
 * invocations each take several experts and pick the top k by argmax trees
 * (`emitRouterWide`: the same choices, ties included).
 *
 * @example
 * ```ts ignore
 * const k = emitRouter(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.role; // "router"
 * ```
 */
export function emitRouter(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  if (c.E > ROUTER_WG) return emitRouterWide(c, ctx);
  const io = new MoeIo(ctx.layout);
  const { T, E, k } = c;
  const tpw = Math.max(1, Math.floor(64 / E)); // tokens per workgroup
  const wgSize = tpw * E;
  const workgroups = grid(Math.ceil(T / tpw), ctx.caps.maxWorkgroupsPerDim);
  const { given, sig, logitsLine, score, raw, weightLines, logits, probs, topkIdx } = routerParts(
    c,
    ctx,
    io,
    (i) => `lg[b + ${i}]`,
  );
  const [uE, uk] = [u32(E), u32(k)];
  // t = (flat workgroup) · tpw + lid / E = flat invocation / E, as wgSize = tpw · E.
  const code = `
const NONE: u32 = ${u32(MOE_NONE)};
var<workgroup> lg: array<f32, ${wgSize}>;

@compute @workgroup_size(${wgSize})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tl = lid / ${uE};
  let e = lid % ${uE};
  let t = (${flatIndex(workgroups, wgSize)}) / ${uE};
  if (t < ${u32(T)}) {
${logitsLine}
    lg[lid] = acc;
    ${logits}[t * ${uE} + e] = acc;
  }
  workgroupBarrier();
  if (e != 0u || t >= ${u32(T)}) { return; }
  let b = tl * ${uE};
  var m = lg[b];
  for (var i = 1u; i < ${uE}; i++) { m = max(m, lg[b + i]); }
  var s = 0.0;
  for (var i = 0u; i < ${uE}; i++) { s += ${
    sig ? "1.0 / (1.0 + exp(-lg[b + i]))" : "exp(lg[b + i] - m)"
  }; }
  for (var i = 0u; i < ${uE}; i++) {
    ${probs}[t * ${uE} + i] = ${
    sig ? "(1.0 / (1.0 + exp(-lg[b + i]))) / s" : "exp(lg[b + i] - m) / s"
  };
  }
  // top-k by repeated argmax; strict '>' scanning upwards gives ties to the lower index.
  var taken: array<u32, ${Math.ceil(E / 32)}>;
  var wsel: array<f32, ${k}>;
  var wsum = 0.0;
${c.router === "switch" ? "" : groupLimit(c, score)}
  for (var j = 0u; j < ${uk}; j++) {
    var best = NONE;
    var bv = 0.0;
    for (var i = 0u; i < ${uE}; i++) {
      if ((taken[i / 32u] & (1u << (i % 32u))) != 0u) { continue; }
      let v = ${score};
      if (best == NONE || v > bv) { best = i; bv = v; }
    }
    taken[best / 32u] |= 1u << (best % 32u);
    ${topkIdx}[t * ${uk} + j] = best;
    let raw = ${raw("best")};
    wsel[j] = raw;
    wsum += raw;
  }
${weightLines}
}
`;
  return io.kernel(routerLabel(c, given), "router", code, workgroups);
}

/** Invocations of the router's workgroup for E above it (one token, several experts each). */
const ROUTER_WG = 256;

/** The router kernel's label. */
function routerLabel(c: ResolvedMoeConfig, given: boolean): string {
  const groups = c.groupsKept < c.groups ? `_g${c.groupsKept}of${c.groups}` : "";
  return `moe_router_${c.router}_e${c.E}k${c.k}${groups}${given ? "_given" : ""}`;
}

/** The WGSL pieces both router kernels share (see {@linkcode routerParts}). */
interface RouterParts {
  /** The logits are an input (`logitsIn`). */
  readonly given: boolean;
  /** `sigmoid_bias`: sigmoid affinities rather than softmax probabilities. */
  readonly sig: boolean;
  /** Lines setting `acc`, the logit of token `t` and expert `e`. */
  readonly logitsLine: string;
  /** Selection score of expert `i` (with `m`, `s` the max logit and the normaliser). */
  readonly score: string;
  /** The unbiased weight of expert `i`. */
  readonly raw: (i: string) => string;
  /** Lines writing the k weights from `wsel` and `wsum`. */
  readonly weightLines: string;
  /** Names of the buffers written. */
  readonly logits: string;
  readonly probs: string;
  readonly topkIdx: string;
}

/**
 * The router's logit, score and weight expressions, recording the buffers on
 * `io` in one fixed order (so the generated kernel is the same whichever
 * router kernel asks); `lg(i)` reads logit `i` of the token from workgroup memory.
 */
function routerParts(
  c: ResolvedMoeConfig,
  ctx: MoeEmitContext,
  io: MoeIo,
  lg: (i: string) => string,
): RouterParts {
  const { d, E, k } = c;
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const given = ctx.logitsIn;
  const sig = c.router === "sigmoid_bias";
  const softBias = c.router === "softmax_bias";
  const [uE, uk] = [u32(E), u32(k)];
  const logitsLine = given ? `    let acc = ${io.arr("wg")}[t * ${uE} + e];` : (() => {
    const x = io.vec("x", "f32", V), wg = io.vec("wg", "f32", V);
    const dot = V === 4 ? `dot(${x}[xb + i], ${wg}[wb + i])` : `${x}[xb + i] * ${wg}[wb + i]`;
    return `    let xb = t * ${u32(KV)};
    let wb = e * ${u32(KV)};
    var acc = 0.0;
    for (var i = 0u; i < ${u32(KV)}; i++) { acc += ${dot}; }`;
  })();
  // softmax_bias adds its bias to the probabilities, so it cannot compare logits.
  const score = sig
    ? `(1.0 / (1.0 + exp(-${lg("i")})) + ${io.arr("bias")}[i])`
    : softBias
    ? `(exp(${lg("i")} - m) / s + ${io.arr("bias")}[i])`
    : lg("i");
  const logits = io.arr("logits"), probs = io.arr("probs");
  const topkIdx = io.arr("topk_idx"), topkW = io.arr("topk_w");
  // DeepSeek-V2 scales its softmax weights too; at 1 the WGSL stays as it was.
  const soft = c.router === "softmax_topk" || softBias;
  const scaled = soft && c.routedScaling !== 1
    ? ` * ${f32(c.routedScaling, "moe routedScaling")}`
    : "";
  const weightLines = sig
    ? [
      `  let scale = ${f32(c.routedScaling, "moe routedScaling")}${c.normTopk ? " / wsum" : ""};`,
      `  for (var j = 0u; j < ${uk}; j++) { ${topkW}[t * ${uk} + j] = wsel[j] * scale; }`,
    ]
    : soft && c.normTopk
    ? [`  for (var j = 0u; j < ${uk}; j++) { ${topkW}[t * ${uk} + j] = wsel[j] / wsum${scaled}; }`]
    : [`  for (var j = 0u; j < ${uk}; j++) { ${topkW}[t * ${uk} + j] = wsel[j]${scaled}; }`];
  const raw = (i: string) => sig ? `1.0 / (1.0 + exp(-${lg(i)}))` : `exp(${lg(i)} - m) / s`;
  return {
    given,
    sig,
    logitsLine,
    score,
    raw,
    weightLines: weightLines.join("\n"),
    logits,
    probs,
    topkIdx,
  };
}

/**
 * Group-limited routing (DeepSeek's `n_group` / `topk_group`): lines that
 * score each group of E/G consecutive experts — by the sum of its two best
 * selection scores (V3's `sigmoid_bias`), or its best (V2's softmax, by the
 * logits, which order as the probabilities do) — keep the best `groupsKept`
 * (ties → lower group) and mark every expert of the other groups as taken, so
 * the top-k that follows skips them. Empty when every group is kept.
 */
function groupLimit(c: ResolvedMoeConfig, score: string): string {
  const { E, groups: G, groupsKept: keep } = c;
  if (keep >= G) return "";
  const per = E / G;
  return `  // group-limited routing: ${keep} of ${G} groups of ${per} experts.
  var gs: array<f32, ${G}>;
  for (var gi = 0u; gi < ${u32(G)}; gi++) {
    var gb1 = 0.0;
    var gb2 = 0.0;
    for (var q = 0u; q < ${u32(per)}; q++) {
      let i = gi * ${u32(per)} + q;
      let v = ${score};
      if (q == 0u || v > gb1) { gb2 = select(gb2, gb1, q > 0u); gb1 = v; } else if (q == 1u || v > gb2) { gb2 = v; }
    }
    gs[gi] = ${c.router === "sigmoid_bias" ? "gb1 + gb2" : "gb1"};
  }
  var gkeep: array<u32, ${Math.ceil(G / 32)}>;
  for (var j = 0u; j < ${u32(keep)}; j++) {
    var best = NONE;
    var bv = 0.0;
    for (var gi = 0u; gi < ${u32(G)}; gi++) {
      if ((gkeep[gi / 32u] & (1u << (gi % 32u))) != 0u) { continue; }
      if (best == NONE || gs[gi] > bv) { best = gi; bv = gs[gi]; }
    }
    gkeep[best / 32u] |= 1u << (best % 32u);
  }
  for (var i = 0u; i < ${u32(E)}; i++) {
    let gi = i / ${u32(per)};
    if ((gkeep[gi / 32u] & (1u << (gi % 32u))) == 0u) { taken[i / 32u] |= 1u << (i % 32u); }
  }`;
}

/**
 * WGSL lines reducing `rv[0..ROUTER_WG)` into `rv[0]` with `op` (`max` or `+`)
 * by a tree of halvings, in a fixed order (the same result on every run); the
 * lines before must have written `rv` and passed a barrier, and every
 * invocation reads `rv[0]` after them.
 */
function treeReduce(op: "max" | "+"): string {
  const both = op === "max" ? "max(rv[lid], rv[lid + h])" : "rv[lid] + rv[lid + h]";
  return `  for (var h = ${u32(ROUTER_WG / 2)}; h > 0u; h >>= 1u) {
    if (lid < h) { rv[lid] = ${both}; }
    workgroupBarrier();
  }`;
}

/**
 * The router for E above {@linkcode ROUTER_WG}: a workgroup per token whose
 * invocations each own the experts `lid + ROUTER_WG·q` (q < ⌈E/ROUTER_WG⌉):
 * they compute those logits, the max and the normaliser are tree reductions,
 * and each of the k top-k rounds is an argmax tree over the invocations' own
 * best untaken experts — (score, index) pairs, the larger score winning and an
 * equal score going to the lower index, so the choice is the one-thread scan's.
 * Group-limited routing marks the experts of dropped groups in workgroup
 * memory first (one invocation, as the scan does). Workgroup memory: the E
 * logits and two ROUTER_WG-long reduction arrays (at most 6 KiB for E = 1024).
 */
function emitRouterWide(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, E, k } = c;
  const W = ROUTER_WG;
  const P = Math.ceil(E / W); // experts per invocation
  const workgroups = grid(T, ctx.caps.maxWorkgroupsPerDim);
  const { given, sig, logitsLine, score, raw, weightLines, logits, probs, topkIdx } = routerParts(
    c,
    ctx,
    io,
    (i) => `lg[${i}]`,
  );
  const [uE, uk, uW] = [u32(E), u32(k), u32(W)];
  const limited = c.router !== "switch" && c.groupsKept < c.groups;
  const words = Math.ceil(E / 32);
  const own = `for (var e = lid; e < ${uE}; e += ${uW})`;
  // Group-limited routing: one invocation marks the dropped groups' experts, each
  // invocation then copies its own experts' marks into the private mask `mine`.
  const groupLines = limited
    ? `  for (var w = lid; w < ${u32(words)}; w += ${uW}) { taken[w] = 0u; }
  workgroupBarrier();
  if (lid == 0u) {
${groupLimit(c, score).replace(/^/gm, "  ")}
  }
  workgroupBarrier();
  for (var q = 0u; q < ${u32(P)}; q++) {
    let i = lid + q * ${uW};
    if (i < ${uE} && (taken[i / 32u] & (1u << (i % 32u))) != 0u) { mine |= 1u << q; }
  }`
    : "";
  const code = `
const NONE: u32 = ${u32(MOE_NONE)};
var<workgroup> lg: array<f32, ${E}>;
var<workgroup> rv: array<f32, ${W}>;
var<workgroup> ri: array<u32, ${W}>;${
    limited ? `\nvar<workgroup> taken: array<u32, ${words}>;` : ""
  }

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = ${groupIndex(workgroups)};
  if (t >= ${u32(T)}) { return; }
  ${own} {
${logitsLine}
    lg[e] = acc;
    ${logits}[t * ${uE} + e] = acc;
  }
  workgroupBarrier();
  var lm = lg[lid];
  for (var e = lid + ${uW}; e < ${uE}; e += ${uW}) { lm = max(lm, lg[e]); }
  rv[lid] = lm;
  workgroupBarrier();
${treeReduce("max")}
  let m = rv[0];
  workgroupBarrier();
  var ls = 0.0;
  ${own} { ls += ${sig ? "1.0 / (1.0 + exp(-lg[e]))" : "exp(lg[e] - m)"}; }
  rv[lid] = ls;
  workgroupBarrier();
${treeReduce("+")}
  let s = rv[0];
  ${own} {
    ${probs}[t * ${uE} + e] = ${sig ? "(1.0 / (1.0 + exp(-lg[e]))) / s" : "exp(lg[e] - m) / s"};
  }
  var mine = 0u; // bit q: expert lid + ${W}·q is taken
${groupLines}
  var wsel: array<f32, ${k}>;
  var wsum = 0.0;
  for (var j = 0u; j < ${uk}; j++) {
    var best = NONE;
    var bv = 0.0;
    for (var q = 0u; q < ${u32(P)}; q++) {
      let i = lid + q * ${uW};
      if (i >= ${uE} || (mine & (1u << q)) != 0u) { continue; }
      let v = ${score};
      if (best == NONE || v > bv) { best = i; bv = v; }
    }
    workgroupBarrier(); // every invocation has read the last round's winner (and s)
    rv[lid] = bv;
    ri[lid] = best;
    workgroupBarrier();
    for (var h = ${u32(W / 2)}; h > 0u; h >>= 1u) {
      if (lid < h) {
        let oi = ri[lid + h];
        let ov = rv[lid + h];
        let ci = ri[lid];
        if (oi != NONE && (ci == NONE || ov > rv[lid] || (ov == rv[lid] && oi < ci))) {
          rv[lid] = ov;
          ri[lid] = oi;
        }
      }
      workgroupBarrier();
    }
    let win = ri[0];
    if (win % ${uW} == lid) { mine |= 1u << (win / ${uW}); }
    if (lid == 0u) {
      ${topkIdx}[t * ${uk} + j] = win;
      let raw = ${raw("win")};
      wsel[j] = raw;
      wsum += raw;
    }
  }
  if (lid != 0u) { return; }
${weightLines}
}
`;
  return io.kernel(routerLabel(c, given), "router", code, workgroups);
}
