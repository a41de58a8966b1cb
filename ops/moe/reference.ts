/**
 * Float64 CPU reference of the routed-expert FFN layer, written straight from
 * the semantics (HF Mixtral / Qwen2-MoE / DeepSeek-V3 / Switch) and independent
 * of the WGSL kernels: it sorts scores instead of repeated argmax, walks tokens
 * in order for capacity, and never pads or tiles. It is the oracle for
 * `tests/moe_kernels_test.ts`.
 *
 * @module
 */

import { erf } from "../unary.ts";

/**
 * Router variants (same strings as the kernels).
 *
 * @example
 * ```ts
 * import type { MoeReferenceRouter } from "./reference.ts";
 * const r: MoeReferenceRouter = "switch";
 * ```
 */
export type MoeReferenceRouter = "softmax_topk" | "sigmoid_bias" | "softmax_bias" | "switch";

/**
 * Semantics of the layer, as the reference needs them.
 *
 * @example
 * ```ts
 * import type { MoeReferenceConfig } from "./reference.ts";
 * const cfg: MoeReferenceConfig = { T: 4, d: 8, ff: 16, E: 4, k: 2, router: "softmax_topk" };
 * ```
 */
export interface MoeReferenceConfig {
  /** Tokens. */
  T: number;
  /** Model width. */
  d: number;
  /** Expert hidden width. */
  ff: number;
  /** Routed experts. */
  E: number;
  /** Experts per token. */
  k: number;
  /** Router kind. */
  router: MoeReferenceRouter;
  /** `softmax_topk`, `sigmoid_bias`: renormalise the chosen weights (default true). */
  normTopk?: boolean;
  /** `sigmoid_bias`, `softmax_topk`: factor on the (renormalised) weights (default 1). */
  routedScaling?: number;
  /** Expert groups of group-limited routing (default 1). */
  groups?: number;
  /** Groups kept: by their two best scores (`sigmoid_bias`) or their best (default all). */
  groupsKept?: number;
  /** Capacity factor; undefined means dropless. */
  capacityFactor?: number;
  /** Expert activation (default `"swiglu"`; see `MoeActivation`). */
  activation?: "swiglu" | "swiglu_oai" | "geglu" | "geglu_tanh" | "reglu" | "quick_geglu" | "relu2";
  /** `swiglu_oai`: scale inside the sigmoid (default 1.702). */
  alpha?: number;
  /** `swiglu_oai`: clamp of gate (above) and up (both sides); default 7. */
  limit?: number;
}

/**
 * Layer weights, row-major, PyTorch Linear layout per expert.
 *
 * @example
 * ```ts
 * import type { MoeWeights } from "./reference.ts";
 * const w: MoeWeights = { wg: [1, 0, 0, 1], w1: [1, 1, 1, 1], w3: [1, 1, 1, 1], w2: [1, 1, 1, 1] };
 * ```
 */
export interface MoeWeights {
  /** Router `[E, d]`. */
  wg: ArrayLike<number>;
  /** Gate projections `[E, ff, d]`. */
  w1: ArrayLike<number>;
  /** Up projections `[E, ff, d]`. */
  w3: ArrayLike<number>;
  /** Down projections `[E, d, ff]`. */
  w2: ArrayLike<number>;
  /** `sigmoid_bias`, `softmax_bias`: selection bias `[E]`. */
  bias?: ArrayLike<number>;
  /** Router logits `[T, E]` computed elsewhere (then `wg` is unused). */
  logits?: ArrayLike<number>;
  /** Gate projection biases `[E, ff]` (GPT-OSS; absent: none). */
  b1?: ArrayLike<number>;
  /** Up projection biases `[E, ff]`. */
  b3?: ArrayLike<number>;
  /** Down projection biases `[E, d]`, added before the routing weight. */
  b2?: ArrayLike<number>;
}

/**
 * Everything the layer produces, in float64.
 *
 * @example
 * ```ts
 * import { moeReference, type MoeReferenceResult } from "./reference.ts";
 * const cfg = { T: 1, d: 1, ff: 1, E: 2, k: 1, router: "switch" as const };
 * const r: MoeReferenceResult = moeReference(cfg, { wg: [1, -1], w1: [1, 1], w3: [1, 1], w2: [1, 1] }, [1]);
 * r.topkIdx; // Int32Array [0]
 * ```
 */
export interface MoeReferenceResult {
  /** Output `[T, d]`. */
  y: Float64Array;
  /** Router logits `[T, E]`. */
  logits: Float64Array;
  /** Per-token probabilities used by the aux loss `[T, E]`. */
  probs: Float64Array;
  /** Chosen experts `[T, k]`, best first. */
  topkIdx: Int32Array;
  /** Their weights `[T, k]`. */
  topkW: Float64Array;
  /** Whether each (token, slot) survived the capacity limit `[T, k]`. */
  keptSlot: Uint8Array;
  /** Routed (token, slot) pairs per expert `[E]`. */
  counts: Int32Array;
  /** Kept pairs per expert after capacity `[E]`. */
  keptCounts: Int32Array;
  /** Load-balancing loss `E · Σ fᵢ Pᵢ`. */
  auxLoss: number;
  /** Router z-loss `mean (logsumexp z)²`. */
  zLoss: number;
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/**
 * Group-limited routing: whether expert e may be chosen — it is in one of the
 * `keep` of `groups` equal groups whose `top` best scores sum highest (two for
 * DeepSeek-V3's sigmoid, one for V2's softmax; ties to the lower group).
 */
/**
 * The experts token `t`'s balance-loss counts (`fᵢ`) take: its routed choices
 * `topkIdx`, or for `softmax_bias` the top k of its logits without the bias
 * (ties to the lower index) — transformers' `load_balancing_loss_func`
 * re-ranks the router's probabilities on its own, so ERNIE 4.5's selection
 * bias steers the routing but not the loss.
 *
 * @example
 * ```ts
 * import { balanceChoices } from "./reference.ts";
 * balanceChoices("softmax_bias", [0.1, 2, 1], Uint32Array.of(2, 0), 0, 2); // [1, 2]
 * ```
 */
export function balanceChoices(
  router: string,
  logits: ArrayLike<number>,
  topkIdx: ArrayLike<number>,
  t: number,
  k: number,
): number[] {
  if (router !== "softmax_bias") return Array.from({ length: k }, (_, j) => topkIdx[t * k + j]);
  const E = logits.length;
  return Array.from({ length: E }, (_, e) => e)
    .sort((a, b) => logits[b] - logits[a] || a - b)
    .slice(0, k);
}

function keptGroups(
  score: readonly number[],
  groups: number,
  keep: number,
  top: number,
): (e: number) => boolean {
  if (keep >= groups) return () => true;
  const per = score.length / groups;
  const groupScore = Array.from({ length: groups }, (_, g) => {
    const s = score.slice(g * per, (g + 1) * per).sort((a, b) => b - a);
    return s.slice(0, top).reduce((a, b) => a + b, 0);
  });
  const best = Array.from({ length: groups }, (_, g) => g)
    .sort((a, b) => groupScore[b] - groupScore[a] || a - b)
    .slice(0, keep);
  const kept = new Set(best);
  return (e) => kept.has(Math.floor(e / per));
}

const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * The gate function `f` of the plain gated activations (`act(a, b) = f(a)·b`)
 * and its derivative, in float64 from their definitions: silu, GELU (erf and
 * tanh forms) and ReLU (derivative 0 at 0, as PyTorch's); undefined for
 * `swiglu_oai`, whose clamps also involve `b`.
 *
 * @example
 * ```ts
 * import { gateFunction } from "./reference.ts";
 * gateFunction("reglu")!.f(-2); // 0
 * ```
 */
export function gateFunction(
  activation: MoeReferenceConfig["activation"],
): { f: (x: number) => number; df: (x: number) => number } | undefined {
  switch (activation ?? "swiglu") {
    case "swiglu":
      return { f: (x) => x * sigmoid(x), df: (x) => sigmoid(x) * (1 + x * (1 - sigmoid(x))) };
    case "geglu":
      return {
        f: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
        df: (x) =>
          0.5 * (1 + erf(x / Math.SQRT2)) + x * Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI),
      };
    case "geglu_tanh": {
      const t = (x: number) => Math.tanh(GELU_C * (x + 0.044715 * x ** 3));
      return {
        f: (x) => 0.5 * x * (1 + t(x)),
        df: (x) =>
          0.5 * (1 + t(x)) + 0.5 * x * (1 - t(x) ** 2) * GELU_C * (1 + 3 * 0.044715 * x * x),
      };
    }
    case "reglu":
      return { f: (x) => Math.max(x, 0), df: (x) => (x > 0 ? 1 : 0) };
    case "quick_geglu": {
      const s = (x: number) => sigmoid(1.702 * x);
      return { f: (x) => x * s(x), df: (x) => s(x) + 1.702 * x * s(x) * (1 - s(x)) };
    }
    default:
      return undefined;
  }
}

/** `act(a, b)` of the gate projection a and the up projection b, in float64. */
function activationOf(cfg: MoeReferenceConfig): (a: number, b: number) => number {
  if ((cfg.activation ?? "swiglu") === "swiglu") return (a, b) => a * sigmoid(a) * b;
  if (cfg.activation === "relu2") return (a) => Math.max(a, 0) ** 2; // ungated: W3 unused
  const gate = gateFunction(cfg.activation);
  if (gate) return (a, b) => gate.f(a) * b;
  const alpha = cfg.alpha ?? 1.702, limit = cfg.limit ?? 7;
  return (a, b) => {
    const g = Math.min(a, limit);
    const u = Math.min(Math.max(b, -limit), limit);
    return (u + 1) * g * sigmoid(alpha * g);
  };
}

/**
 * Computes the whole MoE layer in float64.
 *
 * @param mask optional `[T]`, 0 excludes a token from the aux and z losses
 *   (it is still routed and computed, like padding in HF).
 * @param visit optional: hears each kept (token, expert) pair with the
 *   expert's gated activations `[ff]` for that token (the down projection's
 *   input; a scratch array, read it at once).
 *
 * @example
 * ```ts
 * import { moeReference } from "./reference.ts";
 * const cfg = { T: 1, d: 2, ff: 2, E: 2, k: 1, router: "switch" as const };
 * const r = moeReference(cfg, {
 *   wg: [1, 0, 0, 1], w1: new Array(8).fill(0.1), w3: new Array(8).fill(0.1), w2: new Array(8).fill(0.1),
 * }, [1, 2]);
 * console.log(r.y, r.auxLoss);
 * ```
 */
export function moeReference(
  cfg: MoeReferenceConfig,
  w: MoeWeights,
  x: ArrayLike<number>,
  mask?: ArrayLike<number>,
  visit?: (expert: number, t: number, hidden: Float64Array) => void,
): MoeReferenceResult {
  const { T, d, ff, E, k, router } = cfg;
  if (x.length !== T * d) {
    throw new RangeError(`MoE reference x must have T·d = ${T * d} elements: received ${x.length}`);
  }
  const normTopk = cfg.normTopk ?? true;
  const scaling = cfg.routedScaling ?? 1;
  const logits = new Float64Array(T * E);
  const probs = new Float64Array(T * E);
  const topkIdx = new Int32Array(T * k);
  const topkW = new Float64Array(T * k);
  const lse = new Float64Array(T);

  for (let t = 0; t < T; t++) {
    for (let e = 0; e < E; e++) {
      let s = 0;
      if (w.logits) s = w.logits[t * E + e];
      else for (let i = 0; i < d; i++) s += x[t * d + i] * w.wg[e * d + i];
      logits[t * E + e] = s;
    }
    const z = logits.subarray(t * E, (t + 1) * E);
    const mx = Math.max(...z);
    let se = 0;
    for (let e = 0; e < E; e++) se += Math.exp(z[e] - mx);
    lse[t] = mx + Math.log(se);
    const p = Array.from(z, (v) => Math.exp(v - lse[t]));
    const sg = Array.from(z, sigmoid);
    if (router === "sigmoid_bias") {
      const tot = sg.reduce((a, b) => a + b, 0);
      for (let e = 0; e < E; e++) probs[t * E + e] = sg[e] / tot;
    } else {
      for (let e = 0; e < E; e++) probs[t * E + e] = p[e];
    }
    // Selection score; a stable sort by (score desc, index asc) gives ties to the lower index.
    const score = router === "sigmoid_bias"
      ? sg.map((v, e) => v + (w.bias?.[e] ?? 0))
      : router === "softmax_bias"
      ? p.map((v, e) => v + (w.bias?.[e] ?? 0))
      : p;
    const allowed = keptGroups(
      score,
      cfg.groups ?? 1,
      cfg.groupsKept ?? cfg.groups ?? 1,
      router === "sigmoid_bias" ? 2 : 1,
    );
    const order = Array.from({ length: E }, (_, e) => e).filter(allowed).sort((a, b) =>
      score[b] - score[a] || a - b
    );
    const chosen = order.slice(0, k);
    const raw = chosen.map((e) => (router === "sigmoid_bias" ? sg[e] : p[e]));
    const sum = raw.reduce((a, b) => a + b, 0);
    for (let j = 0; j < k; j++) {
      topkIdx[t * k + j] = chosen[j];
      let wt = raw[j];
      if (router !== "switch") wt = (normTopk ? raw[j] / sum : raw[j]) * scaling;
      topkW[t * k + j] = wt;
    }
  }

  // Capacity: tokens take an expert's places in token order; later ones drop.
  const counts = new Int32Array(E);
  for (let i = 0; i < T * k; i++) counts[topkIdx[i]]++;
  const cap = cfg.capacityFactor === undefined
    ? Infinity
    : Math.min(T, Math.floor((cfg.capacityFactor * T * k) / E));
  const keptCounts = new Int32Array(E);
  const keptSlot = new Uint8Array(T * k);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = topkIdx[t * k + j];
      if (keptCounts[e] < cap) {
        keptCounts[e]++;
        keptSlot[t * k + j] = 1;
      }
    }
  }

  const y = new Float64Array(T * d);
  const hid = new Float64Array(ff);
  const act = activationOf(cfg);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      if (!keptSlot[t * k + j]) continue;
      const e = topkIdx[t * k + j];
      for (let n = 0; n < ff; n++) {
        let a = w.b1?.[e * ff + n] ?? 0, b = w.b3?.[e * ff + n] ?? 0;
        const off = (e * ff + n) * d;
        for (let i = 0; i < d; i++) {
          a += w.w1[off + i] * x[t * d + i];
          b += w.w3[off + i] * x[t * d + i];
        }
        hid[n] = act(a, b);
      }
      visit?.(e, t, hid);
      const wt = topkW[t * k + j];
      for (let c = 0; c < d; c++) {
        let s = w.b2?.[e * d + c] ?? 0;
        const off = (e * d + c) * ff;
        for (let n = 0; n < ff; n++) s += w.w2[off + n] * hid[n];
        y[t * d + c] += wt * s;
      }
    }
  }

  // Aux losses over unmasked tokens.
  let nValid = 0;
  const f = new Float64Array(E);
  const P = new Float64Array(E);
  let z2 = 0;
  for (let t = 0; t < T; t++) {
    const m = mask ? mask[t] : 1;
    if (m === 0) continue;
    nValid += m;
    const row = logits.subarray(t * E, (t + 1) * E);
    for (const e of balanceChoices(router, row, topkIdx, t, k)) f[e] += m;
    for (let e = 0; e < E; e++) P[e] += m * probs[t * E + e];
    z2 += m * lse[t] * lse[t];
  }
  let auxLoss = 0, zLoss = 0;
  if (nValid > 0) {
    for (let e = 0; e < E; e++) auxLoss += (f[e] / (nValid * k)) * (P[e] / nValid);
    auxLoss *= E;
    zLoss = z2 / nValid;
  }
  return { y, logits, probs, topkIdx, topkW, keptSlot, counts, keptCounts, auxLoss, zLoss };
}
