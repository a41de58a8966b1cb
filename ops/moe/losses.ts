/**
 * The router's training losses: load balancing (Switch / GShard) and the
 * ST-MoE z-loss, in one single-workgroup kernel.
 *
 * @module
 */

import type { KernelSource } from "../types.ts";
import { f32, u32 } from "../wgsl/mod.ts";
import type { ResolvedMoeConfig } from "./config.ts";
import { type MoeEmitContext, MoeIo } from "./operands.ts";

/**
 * Aux losses in one workgroup (deterministic fixed-order reductions):
 * `aux[0] = E · Σᵢ fᵢ·Pᵢ` with `fᵢ` = fraction of the (token, slot) assignments
 * (top-k choices, before any capacity drop) that went to i and `Pᵢ` = mean of
 * `probs[:, i]`; `aux[1] = mean_t (logsumexp logits_t)²` (ST-MoE z-loss).
 * Tokens with `mask[t] = 0` are excluded from every mean. Note HF's
 * `load_balancing_loss_func` normalises the counts by T rather than T·k, so its
 * value is k times `aux[0]`. With `auxCounts` it also writes the routed pairs
 * per expert to `counts` (and to `kept`, equal without a capacity).
 * Above 256 experts each invocation sums whole experts (`emitAuxLossWide`).
 *
 * @example
 * ```ts ignore
 * const k = emitAuxLoss(resolveMoeConfig({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }), ctx);
 * k.label; // "moe_aux_loss_e8"
 * ```
 */
export function emitAuxLoss(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  if (c.E > AUX_WG) return emitAuxLossWide(c, ctx);
  const io = new MoeIo(ctx.layout);
  const { T, E, k } = c;
  const W = AUX_WG;
  const S = Math.floor(W / E); // token stripes per expert
  const [uE, uk, uT, uS, uW] = [u32(E), u32(k), u32(T), u32(S), u32(W)];
  const mask = io.has("mask") ? io.arr("mask") : undefined;
  const mk = (t: string): string => (mask ? `${mask}[${t}]` : "1.0");
  const counts = ctx.auxCounts;
  const logits = io.arr("logits"), probs = io.arr("probs"), topkIdx = io.arr("topk_idx");
  const aux = io.arr("aux");
  const unbiased = c.router === "softmax_bias";
  const countLine = choiceCountLines(unbiased, logits, topkIdx, uE, uk);
  const countLines = counts
    ? `
    var ke = 0u;
    for (var st = 0u; st < ${uS}; st++) { ke += kc[st * ${uE} + ex]; }
    ${io.arr("counts")}[ex] = ke;${io.has("kept") ? `\n    ${io.arr("kept")}[ex] = ke;` : ""}`
    : "";
  const code = `
var<workgroup> pp: array<f32, ${W}>;${counts ? `\nvar<workgroup> kc: array<u32, ${W}>;` : ""}
var<workgroup> cc: array<f32, ${W}>;
var<workgroup> zz: array<f32, ${W}>;
var<workgroup> nn: array<f32, ${W}>;

@compute @workgroup_size(${W})
fn main(@builtin(local_invocation_index) li: u32) {
  let e = li % ${uE};
  let s = li / ${uE};
  var p = 0.0;
  var cnt = 0.0;
  var all = 0u;
  if (s < ${uS}) {
    for (var t = s; t < ${uT}; t += ${uS}) {
      let m = ${mk("t")};
      p += m * ${probs}[t * ${uE} + e];
      ${countLine}
    }
  }
  pp[li] = p;
  cc[li] = cnt;${counts ? "\n  kc[li] = all;" : ""}
${zLossLines(logits, uT, uW, uE, mk)}
  var lb = 0.0;
  for (var ex = 0u; ex < ${uE}; ex++) {
    var pe = 0.0;
    var ce = 0.0;
    for (var st = 0u; st < ${uS}; st++) { pe += pp[st * ${uE} + ex]; ce += cc[st * ${uE} + ex]; }
    lb += ce * pe;${countLines}
  }
  if (nv > 0.0) {
    ${aux}[0] = ${f32(E)} * lb / (nv * ${f32(k)} * nv);
    ${aux}[1] = zs / nv;
  } else {
    ${aux}[0] = 0.0;
    ${aux}[1] = 0.0;
  }
}
`;
  return io.kernel(`moe_aux_loss_e${E}${unbiased ? "_unbiased" : ""}`, "aux", code, [1, 1, 1]);
}

/** Invocations of the aux kernel's one workgroup; E above it takes {@linkcode emitAuxLossWide}. */
const AUX_WG = 256;

/**
 * WGSL lines both aux kernels share, for token `t` and expert `e`: add the
 * token's mask `m` to `cnt` when the balance loss counts the choice — the
 * unbiased top k for `softmax_bias` (see balanceChoices) — and 1 to `all`
 * when the router chose `e`.
 */
function choiceCountLines(
  unbiased: boolean,
  logits: string,
  topkIdx: string,
  uE: string,
  uk: string,
): string {
  return unbiased
    ? `${unbiasedPick(logits, "t", "e", uE, uk)}
      if (pick) { cnt += m; }
      for (var j = 0u; j < ${uk}; j++) {
        if (${topkIdx}[t * ${uk} + j] == e) { all += 1u; }
      }`
    : `for (var j = 0u; j < ${uk}; j++) {
        if (${topkIdx}[t * ${uk} + j] == e) { cnt += m; all += 1u; }
      }`;
}

/**
 * WGSL lines both aux kernels share: each thread's masked sum of lse² and token
 * count over its stripe of tokens (`zz`, `nn`), then thread 0's totals `zs`
 * and `nv` (the other threads return).
 */
function zLossLines(
  logits: string,
  uT: string,
  uW: string,
  uE: string,
  mk: (t: string) => string,
): string {
  return `  var z = 0.0;
  var n = 0.0;
  for (var t = li; t < ${uT}; t += ${uW}) {
    var mx = ${logits}[t * ${uE}];
    for (var i = 1u; i < ${uE}; i++) { mx = max(mx, ${logits}[t * ${uE} + i]); }
    var se = 0.0;
    for (var i = 0u; i < ${uE}; i++) { se += exp(${logits}[t * ${uE} + i] - mx); }
    let lse = mx + log(se);
    z += ${mk("t")} * lse * lse;
    n += ${mk("t")};
  }
  zz[li] = z;
  nn[li] = n;
  workgroupBarrier();
  if (li != 0u) { return; }
  var nv = 0.0;
  var zs = 0.0;
  for (var i = 0u; i < ${uW}; i++) { nv += nn[i]; zs += zz[i]; }`;
}

/**
 * The aux losses for E above {@linkcode AUX_WG} (no room for a token stripe
 * per expert): invocation `lid` sums the tokens of experts `lid, lid + 256, …`
 * in token order and leaves `fᵢ·Pᵢ` (unscaled) in an E-long workgroup array,
 * which invocation 0 adds in expert order; the z-loss is striped over tokens
 * as in {@linkcode emitAuxLoss}. The same sums as a one-stripe layout.
 */
function emitAuxLossWide(c: ResolvedMoeConfig, ctx: MoeEmitContext): KernelSource {
  const io = new MoeIo(ctx.layout);
  const { T, E, k } = c;
  const W = AUX_WG;
  const [uE, uk, uT, uW] = [u32(E), u32(k), u32(T), u32(W)];
  const mask = io.has("mask") ? io.arr("mask") : undefined;
  const mk = (t: string): string => (mask ? `${mask}[${t}]` : "1.0");
  const counts = ctx.auxCounts;
  const logits = io.arr("logits"), probs = io.arr("probs"), topkIdx = io.arr("topk_idx");
  const aux = io.arr("aux");
  const unbiased = c.router === "softmax_bias";
  const countLine = choiceCountLines(unbiased, logits, topkIdx, uE, uk);
  const countLines = counts
    ? `\n    ${io.arr("counts")}[e] = all;${
      io.has("kept") ? `\n    ${io.arr("kept")}[e] = all;` : ""
    }`
    : "";
  const code = `
var<workgroup> pc: array<f32, ${E}>;
var<workgroup> zz: array<f32, ${W}>;
var<workgroup> nn: array<f32, ${W}>;

@compute @workgroup_size(${W})
fn main(@builtin(local_invocation_index) li: u32) {
  for (var e = li; e < ${uE}; e += ${uW}) {
    var p = 0.0;
    var cnt = 0.0;
    var all = 0u;
    for (var t = 0u; t < ${uT}; t++) {
      let m = ${mk("t")};
      p += m * ${probs}[t * ${uE} + e];
      ${countLine}
    }
    pc[e] = cnt * p;${countLines}
  }
${zLossLines(logits, uT, uW, uE, mk)}
  var lb = 0.0;
  for (var e = 0u; e < ${uE}; e++) { lb += pc[e]; }
  if (nv > 0.0) {
    ${aux}[0] = ${f32(E)} * lb / (nv * ${f32(k)} * nv);
    ${aux}[1] = zs / nv;
  } else {
    ${aux}[0] = 0.0;
    ${aux}[1] = 0.0;
  }
}
`;
  return io.kernel(`moe_aux_loss_e${E}${unbiased ? "_unbiased" : ""}`, "aux", code, [1, 1, 1]);
}

/**
 * WGSL lines setting `pick`: whether expert `e` is among the top k of token
 * `t`'s `logits` (fewer than k experts rank above it: a larger logit, or an
 * equal one at a lower index) — the unbiased choice the balance loss of a
 * `softmax_bias` router counts.
 *
 * @example
 * ```ts ignore
 * unbiasedPick("logits", "t", "e", "8u", "2u"); // "let pick = …"
 * ```
 */
export function unbiasedPick(logits: string, t: string, e: string, uE: string, uk: string): string {
  return `var above = 0u;
      let le = ${logits}[${t} * ${uE} + ${e}];
      for (var o = 0u; o < ${uE}; o++) {
        let lo = ${logits}[${t} * ${uE} + o];
        if (lo > le || (lo == le && o < ${e})) { above += 1u; }
      }
      let pick = above < ${uk};`;
}
