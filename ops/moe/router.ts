/**
 * The router kernel: logits, probabilities and the top-k routing of every
 * token, the first kernel of every MoE path.
 *
 * @module
 */

import type { KernelSource } from "../types.ts";
import { f32, flatIndex, grid, u32 } from "../wgsl/mod.ts";
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
 * @example
 * ```ts ignore
 * const k = emitRouter(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.role; // "router"
 * ```
 */
export function emitRouter(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, d, E, k } = c;
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const tpw = Math.max(1, Math.floor(64 / E)); // tokens per workgroup
  const wgSize = tpw * E;
  const workgroups = grid(Math.ceil(T / tpw), ctx.caps.maxWorkgroupsPerDim);
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
    ? `(1.0 / (1.0 + exp(-lg[b + i])) + ${io.arr("bias")}[i])`
    : softBias
    ? `(exp(lg[b + i] - m) / s + ${io.arr("bias")}[i])`
    : "lg[b + i]";
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
    let raw = ${sig ? "1.0 / (1.0 + exp(-lg[b + best]))" : "exp(lg[b + best] - m) / s"};
    wsel[j] = raw;
    wsum += raw;
  }
${weightLines.join("\n")}
}
`;
  const groups = c.groupsKept < c.groups ? `_g${c.groupsKept}of${c.groups}` : "";
  const label = `moe_router_${c.router}_e${E}k${k}${groups}${given ? "_given" : ""}`;
  return io.kernel(label, "router", code, workgroups);
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
