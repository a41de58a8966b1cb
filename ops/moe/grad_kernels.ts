/**
 * The WGSL kernels of `moe_grad` after the (reused) router and sort: grouped
 * passes over the expert-sorted rows, the weight gradients per expert segment
 * (each output element sums its expert's rows in row order, i.e. token order),
 * the per-token combine and the router backward. No float atomics anywhere.
 *
 * @module
 */

import type { DeviceCaps, KernelSource } from "../types.ts";
import { f32, flatLaunch, flatMain, KernelIo, u32 } from "../wgsl/mod.ts";
import { MOE_NONE, moeScratchLength, type ResolvedMoeConfig } from "./config.ts";
import { unbiasedPick } from "./losses.ts";

/**
 * Scratch buffers of `moe_grad`, in scratch order: the router's and the
 * sort's (as the forward's kernels write them), then the backward's own.
 *
 * @example
 * ```ts
 * import { MOE_GRAD_SCRATCH } from "./grad_kernels.ts";
 * MOE_GRAD_SCRATCH.indexOf("h"); // 9
 * ```
 */
export const MOE_GRAD_SCRATCH = [
  "logits",
  "probs",
  "topk_idx",
  "topk_w",
  "sorted_token",
  "sorted_w",
  "tile_expert",
  "slot_pos",
  "counts",
  "h",
  "ga",
  "gb",
  "hp",
  "dxs",
  "fsum",
  "dys",
] as const;

/**
 * One scratch buffer of `moe_grad`.
 *
 * @example
 * ```ts
 * import type { MoeGradScratch } from "./grad_kernels.ts";
 * const b: MoeGradScratch = "dxs";
 * ```
 */
export type MoeGradScratch = typeof MOE_GRAD_SCRATCH[number];

/**
 * Elements of each scratch buffer for config `c`.
 *
 * @example
 * ```ts ignore
 * moeGradScratchLength(c, "h"); // c.rowsMax · c.ff
 * ```
 */
export function moeGradScratchLength(c: ResolvedMoeConfig, b: MoeGradScratch): number {
  switch (b) {
    case "logits":
      return c.T * c.E;
    case "counts":
      return c.E;
    case "ga":
    case "gb":
    case "hp":
      return c.rowsMax * c.ff;
    case "dxs":
    case "dys":
      return c.rowsMax * c.d;
    case "fsum":
      return c.E + 1;
    default: // the forward's routing buffers and h
      return moeScratchLength(c, b);
  }
}

/** Operand positions of `moe_grad` (inputs and outputs). */
const IN = {
  x: 0,
  logits: 1,
  w1: 2,
  w3: 3,
  w2: 4,
  dy: 5,
  dlogits: 6,
  dtopkw: 7,
  daux: 8,
  mask: 9,
  b1: 11,
  b3: 12,
  b2: 13,
};
const OUT = { dx: 0, dz: 1, dw1: 2, dw3: 3, dw2: 4, db1: 5, db3: 6, db2: 7 };

/**
 * Names of one kernel's operands, recorded through its {@linkcode KernelIo};
 * `vec4` views of raw arrays are recorded too.
 *
 * @example
 * ```ts
 * import { GradIo } from "./grad_kernels.ts";
 * const g = new GradIo();
 * g.s("h"); // "scratch9"
 * ```
 */
export class GradIo {
  /** The operand recorder. */
  readonly io: KernelIo = new KernelIo();
  /** Element types of the arrays viewed as vectors. */
  readonly types: Record<string, string> = {};
  /** Scratch buffer `b` (as `vec4<f32>` when `lanes` is 4). */
  s(b: MoeGradScratch, lanes = 1): string {
    const name = this.io.scratch(MOE_GRAD_SCRATCH.indexOf(b));
    if (lanes === 4) this.types[name] = "vec4<f32>";
    return name;
  }
  /** Raw input array (as `vec4<f32>` when `lanes` is 4). */
  in(b: keyof typeof IN, lanes = 1): string {
    const name = this.io.in(IN[b]);
    if (lanes === 4) this.types[name] = "vec4<f32>";
    return name;
  }
  /** Element `i` of an input read through its load function (fused prologues). */
  load(b: keyof typeof IN, i: string): string {
    return this.io.load(IN[b], i);
  }
  /** Store of output `b`. */
  store(b: keyof typeof OUT, i: string, v: string): string {
    return this.io.store(OUT[b], i, v);
  }
}

const NONE = `const NONE: u32 = ${u32(MOE_NONE)};`;

/**
 * A kernel running `body` once per flat index `i < n` (with `NONE` and
 * `helpers` in scope), carrying the operands and vector views `g` recorded.
 *
 * @example
 * ```ts ignore
 * flat("moe_grad_x", "grad_x", 64, caps, "  let t = i;", "", new GradIo());
 * ```
 */
export function flat(
  label: string,
  role: string,
  n: number,
  caps: DeviceCaps,
  body: string,
  helpers: string,
  g: GradIo,
): KernelSource {
  const { wg, workgroups, index } = flatLaunch(Math.max(1, n), caps);
  const code = `${NONE}\n${helpers}\n${flatMain(wg, index, n, body)}`;
  return { label, role, code, workgroups, uses: g.io.uses, arrayTypes: { ...g.types } };
}

/**
 * WGSL `seg_start(e)`: the first sorted row of expert e (segments padded to the
 * row tile, as the sort lays them out).
 *
 * @example
 * ```ts ignore
 * const helpers = segStart(c, g);
 * ```
 */
export function segStart(c: ResolvedMoeConfig, g: GradIo): string {
  const TM = c.tile.rows;
  return `fn seg_start(e: u32) -> u32 {
  var s = 0u;
  for (var q = 0u; q < e; q++) {
    let kp = min(${g.s("counts")}[q], ${u32(c.capacity)});
    s += (kp + ${u32(TM - 1)}) / ${u32(TM)} * ${u32(TM)};
  }
  return s;
}`;
}

/**
 * `dys[row, c] = dy[sorted_token[row], c]` (0 on padding rows): the incoming
 * gradient gathered into expert order once, so the GEMMs read it as vectors.
 *
 * @example
 * ```ts ignore
 * emitGradGatherDy(c, caps).role; // "grad_gather"
 * ```
 */
export function emitGradGatherDy(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { d } = c;
  const body = `  let tok = ${g.s("sorted_token")}[i / ${u32(d)}];
  var v = 0.0;
  if (tok != NONE) { v = ${g.load("dy", `tok * ${u32(d)} + i % ${u32(d)}`)}; }
  ${g.s("dys")}[i] = v;`;
  return flat(`moe_grad_gather_dy_${d}`, "grad_gather", c.rowsMax * d, caps, body, "", g);
}

/**
 * `dx[t, c] = Σ_j dxs[slot_pos[t, j], c]` over the token's kept slots, in slot order.
 *
 * @example
 * ```ts ignore
 * emitGradCombine(c, caps).role; // "grad_combine"
 * ```
 */
export function emitGradCombine(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { d, k, T } = c;
  const body = `  let t = i / ${u32(d)};
  let cc = i % ${u32(d)};
  var acc = 0.0;
  for (var j = 0u; j < ${u32(k)}; j++) {
    let pos = ${g.s("slot_pos")}[t * ${u32(k)} + j];
    if (pos != NONE) { acc += ${g.s("dxs")}[pos * ${u32(d)} + cc]; }
  }
  ${g.store("dx", "i", "acc")};`;
  return flat(`moe_grad_combine_${d}`, "grad_combine", T * d, caps, body, "", g);
}

/**
 * One workgroup: `fsum[e]` = masked picks of expert e (before drops, as the
 * forward's balance loss counts them) and `fsum[E]` = Σ mask, each summed
 * over tokens in order by one invocation.
 *
 * @example
 * ```ts ignore
 * emitGradCounts(c, caps).role; // "grad_counts"
 * ```
 */
export function emitGradCounts(c: ResolvedMoeConfig): KernelSource {
  const g = new GradIo();
  const { T, E, k } = c;
  const code = `@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  for (var q = li; q <= ${u32(E)}; q += 256u) {
    var acc = 0.0;
    for (var t = 0u; t < ${u32(T)}; t++) {
      let m = ${g.load("mask", "t")};
      if (q == ${u32(E)}) { acc += m; continue; }
${
    c.router === "softmax_bias"
      // The balance loss counts the unbiased top k (see balanceChoices).
      ? `      ${unbiasedPick(g.in("logits"), "t", "q", u32(E), u32(k))}
      if (pick) { acc += m; }`
      : `      for (var j = 0u; j < ${u32(k)}; j++) {
        if (${g.s("topk_idx")}[t * ${u32(k)} + j] == q) { acc += m; }
      }`
  }
    }
    ${g.s("fsum")}[q] = acc;
  }
}`;
  return {
    label: `moe_grad_counts_e${E}${c.router === "softmax_bias" ? "_unbiased" : ""}`,
    role: "grad_counts",
    code,
    workgroups: [1, 1, 1],
    uses: g.io.uses,
  };
}

/**
 * WGSL lines both router-gradient kernels share: the token's mask `m`, the
 * counted tokens `nv` and the aux / z-loss coefficients `cA`, `cZ`.
 */
function lossCoefficients(c: ResolvedMoeConfig, g: GradIo, fsum: string): string {
  const { E, k } = c, uE = u32(E);
  return `  let m = ${g.load("mask", "t")};
  let nv = ${fsum}[${uE}];
  var cA = 0.0;
  var cZ = 0.0;
  if (nv > 0.0) {
    cA = ${g.load("daux", "0u")} * ${f32(E)} / (${f32(k)} * nv * nv);
    cZ = 2.0 * ${g.load("daux", "1u")} / nv;
  }`;
}

/**
 * WGSL lines both router-gradient kernels share: each slot's expert `ix[j]`
 * and dL/dw `gj[j]` (the weight's own gradient plus the expert output's dot
 * with dy, through `hp` and, with a down bias, `downBias`).
 */
function slotGradients(c: ResolvedMoeConfig, g: GradIo, downBias: string): string {
  const { E, k, ff } = c, [uk, FF] = [u32(k), u32(ff)];
  return `  for (var j = 0u; j < ${uk}; j++) {
    ix[j] = min(${g.s("topk_idx")}[t * ${uk} + j], ${u32(E - 1)});
    var acc = ${g.load("dtopkw", `t * ${uk} + j`)};
    let pos = ${g.s("slot_pos")}[t * ${uk} + j];
    if (pos != NONE) {
      for (var n = 0u; n < ${FF}; n++) { acc += ${g.s("hp")}[pos * ${FF} + n]; }${downBias}
    }
    gj[j] = acc;
  }`;
}

/**
 * Per token: the routing weights' gradients (`dtopkw` plus Σ_n hp of each kept
 * slot, plus `dy·b2ₑ` with expert biases) through the weight function
 * (renormalised softmax, plain softmax, or scaled sigmoid over the chosen),
 * plus the balance loss through the mean
 * probabilities and the z-loss through the log-sum-exp, plus the gradient
 * already flowing into the logits: `dz [t, :]`. Above 256 experts the
 * token's E-long arrays give way to recomputation (`emitGradRouterWide`).
 *
 * @example
 * ```ts ignore
 * emitGradRouter(c, caps).role; // "grad_router"
 * ```
 */
export function emitGradRouter(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  if (c.E > GRAD_ROUTER_ARRAYS) return emitGradRouterWide(c, caps);
  const g = new GradIo();
  const { T, E, k, d } = c;
  const [uE, uk] = [u32(E), u32(k)];
  const sig = c.router === "sigmoid_bias";
  // softmax_bias's selection bias only chose the experts: its weights are softmax_topk's.
  const soft = c.router === "softmax_topk" || c.router === "softmax_bias";
  const norm = soft && c.normTopk;
  // Softmax weights scaled by routedScaling (DeepSeek-V2); at 1 the WGSL stays as it was.
  const sc = soft && c.routedScaling !== 1 ? `${f32(c.routedScaling, "moe routedScaling")} * ` : "";
  const fsum = g.s("fsum");
  // The down bias is part of the expert output the weight scales: dL/dw gains dy·b2ₑ.
  const downBias = c.expertBias
    ? `
      for (var cc = 0u; cc < ${u32(d)}; cc++) {
        acc += ${g.s("dys")}[pos * ${u32(d)} + cc] * ${g.in("b2")}[ix[j] * ${u32(d)} + cc];
      }`
    : "";
  const weights = sig
    ? `  var sS = 0.0;
  var mean = 0.0;
  var Q = 0.0;
  var dqq = 0.0;
  for (var e = 0u; e < ${uE}; e++) {
    sv[e] = 1.0 / (1.0 + exp(-${g.in("logits")}[lb + e]));
    Q += sv[e];
    dqq += cA * ${fsum}[e] * m * sv[e];
  }
  dqq /= Q;
${
      c.normTopk
        ? `  for (var j = 0u; j < ${uk}; j++) { sS += sv[ix[j]]; mean += gj[j] * sv[ix[j]]; }
  mean /= sS;`
        : "  sS = 1.0; // the chosen affinities are not renormalised"
    }
  for (var e = 0u; e < ${uE}; e++) { dp[e] = (cA * ${fsum}[e] * m - dqq) / Q; }
  for (var j = 0u; j < ${uk}; j++) {
    dp[ix[j]] += ${f32(c.routedScaling, "moe routedScaling")} / sS * (gj[j] - mean);
  }
  for (var e = 0u; e < ${uE}; e++) {
    let zz = dp[e] * sv[e] * (1.0 - sv[e]) + cZ * m * lse * p[e];
    ${g.store("dz", "lb + e", `zz + ${g.load("dlogits", "lb + e")}`)};
  }`
    : `  for (var e = 0u; e < ${uE}; e++) { dp[e] = cA * ${fsum}[e] * m; }
${
      norm
        ? `  var sS = 0.0;
  var mean = 0.0;
  for (var j = 0u; j < ${uk}; j++) { sS += p[ix[j]]; mean += gj[j] * p[ix[j]]; }
  mean /= sS;
  for (var j = 0u; j < ${uk}; j++) { dp[ix[j]] += ${sc}(gj[j] - mean) / sS; }`
        : `  for (var j = 0u; j < ${uk}; j++) { dp[ix[j]] += ${sc}gj[j]; }`
    }
  var dot = 0.0;
  for (var e = 0u; e < ${uE}; e++) { dot += dp[e] * p[e]; }
  for (var e = 0u; e < ${uE}; e++) {
    let zz = p[e] * (dp[e] - dot) + cZ * m * lse * p[e];
    ${g.store("dz", "lb + e", `zz + ${g.load("dlogits", "lb + e")}`)};
  }`;
  const body = `  let t = i;
  let lb = t * ${uE};
  var p: array<f32, ${E}>;
  var dp: array<f32, ${E}>;${sig ? `\n  var sv: array<f32, ${E}>;` : ""}
  var mx = ${g.in("logits")}[lb];
  for (var e = 1u; e < ${uE}; e++) { mx = max(mx, ${g.in("logits")}[lb + e]); }
  var se = 0.0;
  for (var e = 0u; e < ${uE}; e++) { p[e] = exp(${g.in("logits")}[lb + e] - mx); se += p[e]; }
  for (var e = 0u; e < ${uE}; e++) { p[e] = p[e] / se; }
  let lse = mx + log(se);
${lossCoefficients(c, g, fsum)}
  var ix: array<u32, ${k}>;
  var gj: array<f32, ${k}>;
${slotGradients(c, g, downBias)}
${weights}`;
  return flat(`moe_grad_router_${c.router}_e${E}k${k}`, "grad_router", T, caps, body, "", g);
}

/**
 * Largest E for which {@linkcode emitGradRouter} keeps a token's probabilities
 * and their gradients in E-long private arrays (3 KiB at 256; WGSL allows 8 KiB
 * of function variables, which E = 1024 would pass with two of them).
 */
const GRAD_ROUTER_ARRAYS = 256;

/**
 * {@linkcode emitGradRouter} without E-long arrays, for E above
 * {@linkcode GRAD_ROUTER_ARRAYS}: each expert's probability (and sigmoid) is
 * recomputed from the logits where it is used, and the gradient into it is the
 * balance term plus the weight term of the slot that chose it (`ad[j]`, the
 * k-long part the array version adds to `dp[ix[j]]`). The same expressions in
 * the same order, so the same values; O(E·k) per token instead of O(E + k).
 */
function emitGradRouterWide(c: ResolvedMoeConfig, caps: DeviceCaps): KernelSource {
  const g = new GradIo();
  const { T, E, k, d } = c;
  const [uE, uk] = [u32(E), u32(k)];
  const sig = c.router === "sigmoid_bias";
  const soft = c.router === "softmax_topk" || c.router === "softmax_bias";
  const norm = soft && c.normTopk;
  const sc = soft && c.routedScaling !== 1 ? `${f32(c.routedScaling, "moe routedScaling")} * ` : "";
  const fsum = g.s("fsum");
  const lg = g.in("logits");
  const downBias = c.expertBias
    ? `
      for (var cc = 0u; cc < ${u32(d)}; cc++) {
        acc += ${g.s("dys")}[pos * ${u32(d)} + cc] * ${g.in("b2")}[ix[j] * ${u32(d)} + cc];
      }`
    : "";
  const pOf = (e: string) => `exp(${lg}[lb + ${e}] - mx) / se`;
  const sOf = (e: string) => `1.0 / (1.0 + exp(-${lg}[lb + ${e}]))`;
  // dp(e): the balance term `base` plus ad[j] when slot j chose e (slots name distinct experts).
  const dpOf = (base: string) =>
    `var de = ${base};
    for (var j = 0u; j < ${uk}; j++) { if (ix[j] == e) { de += ad[j]; } }`;
  const store = (zz: string) =>
    `${g.store("dz", "lb + e", `${zz} + ${g.load("dlogits", "lb + e")}`)};`;
  const weights = sig
    ? `  var sS = 0.0;
  var mean = 0.0;
  var Q = 0.0;
  var dqq = 0.0;
  for (var e = 0u; e < ${uE}; e++) {
    let sve = ${sOf("e")};
    Q += sve;
    dqq += cA * ${fsum}[e] * m * sve;
  }
  dqq /= Q;
${
      c.normTopk
        ? `  for (var j = 0u; j < ${uk}; j++) {
    let sj = ${sOf("ix[j]")};
    sS += sj;
    mean += gj[j] * sj;
  }
  mean /= sS;`
        : "  sS = 1.0; // the chosen affinities are not renormalised"
    }
  for (var j = 0u; j < ${uk}; j++) {
    ad[j] = ${f32(c.routedScaling, "moe routedScaling")} / sS * (gj[j] - mean);
  }
  for (var e = 0u; e < ${uE}; e++) {
    let sve = ${sOf("e")};
    ${dpOf(`(cA * ${fsum}[e] * m - dqq) / Q`)}
    let zz = de * sve * (1.0 - sve) + cZ * m * lse * (${pOf("e")});
    ${store("zz")}
  }`
    : `${
      norm
        ? `  var sS = 0.0;
  var mean = 0.0;
  for (var j = 0u; j < ${uk}; j++) {
    let pj = ${pOf("ix[j]")};
    sS += pj;
    mean += gj[j] * pj;
  }
  mean /= sS;
  for (var j = 0u; j < ${uk}; j++) { ad[j] = ${sc}(gj[j] - mean) / sS; }`
        : `  for (var j = 0u; j < ${uk}; j++) { ad[j] = ${sc}gj[j]; }`
    }
  var dot = 0.0;
  for (var e = 0u; e < ${uE}; e++) {
    ${dpOf(`cA * ${fsum}[e] * m`)}
    dot += de * (${pOf("e")});
  }
  for (var e = 0u; e < ${uE}; e++) {
    let pe = ${pOf("e")};
    ${dpOf(`cA * ${fsum}[e] * m`)}
    let zz = pe * (de - dot) + cZ * m * lse * pe;
    ${store("zz")}
  }`;
  const body = `  let t = i;
  let lb = t * ${uE};
  var mx = ${lg}[lb];
  for (var e = 1u; e < ${uE}; e++) { mx = max(mx, ${lg}[lb + e]); }
  var se = 0.0;
  for (var e = 0u; e < ${uE}; e++) { se += exp(${lg}[lb + e] - mx); }
  let lse = mx + log(se);
${lossCoefficients(c, g, fsum)}
  var ix: array<u32, ${k}>;
  var gj: array<f32, ${k}>;
  var ad: array<f32, ${k}>;
${slotGradients(c, g, downBias)}
${weights}`;
  return flat(`moe_grad_router_${c.router}_e${E}k${k}`, "grad_router", T, caps, body, "", g);
}
