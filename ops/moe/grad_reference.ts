/**
 * CPU reference of the MoE layer's backward pass (`moe_grad`): the gradients
 * of x (through the experts), the router logits, the stacked expert weights
 * and (GPT-OSS) the experts' biases, for every activation, written straight from the forward's semantics (`reference.ts`,
 * whose routing it recomputes from the logits) in float64 arithmetic.
 *
 * @module
 */

import {
  balanceChoices,
  gateFunction,
  moeReference,
  type MoeReferenceConfig,
} from "./reference.ts";

/**
 * The incoming gradients and forward operands of one MoE layer, flattened to
 * `T` tokens.
 *
 * @example
 * ```ts
 * import type { MoeGradOperands } from "./grad_reference.ts";
 * const z = [0, 0];
 * const o: MoeGradOperands = {
 *   x: [1], logits: [0.5, -0.5], w1: [1, 1], w3: [1, 1], w2: [1, 1],
 *   dy: [1], dlogits: z, dtopkw: [0], daux: z, mask: [1], bias: z,
 * };
 * ```
 */
export interface MoeGradOperands {
  /** Tokens `[T, d]`. */
  readonly x: ArrayLike<number>;
  /** Router logits `[T, E]` (the forward's output 1). */
  readonly logits: ArrayLike<number>;
  /** Gate projections `[E, ff, d]`. */
  readonly w1: ArrayLike<number>;
  /** Up projections `[E, ff, d]`. */
  readonly w3: ArrayLike<number>;
  /** Down projections `[E, d, ff]`. */
  readonly w2: ArrayLike<number>;
  /** dL/dy `[T, d]`. */
  readonly dy: ArrayLike<number>;
  /** dL/d logits output `[T, E]` (zeros when the logits feed nothing else). */
  readonly dlogits: ArrayLike<number>;
  /** dL/d routing weights output `[T, k]` (zeros without `routing`). */
  readonly dtopkw: ArrayLike<number>;
  /** dL/d (aux loss, z loss) `[2]`. */
  readonly daux: ArrayLike<number>;
  /** Padding mask `[T]` (ones without one). */
  readonly mask: ArrayLike<number>;
  /** `sigmoid_bias`, `softmax_bias`: selection bias `[E]` (zeros otherwise). */
  readonly bias: ArrayLike<number>;
  /** Expert gate biases `[E, ff]` (absent: none). */
  readonly b1?: ArrayLike<number>;
  /** Expert up biases `[E, ff]` (absent: none). */
  readonly b3?: ArrayLike<number>;
  /** Expert down biases `[E, d]` (absent: none). */
  readonly b2?: ArrayLike<number>;
}

/**
 * What the backward pass produces, in float64.
 *
 * @example
 * ```ts
 * import type { MoeGradResult } from "./grad_reference.ts";
 * const r: MoeGradResult = {
 *   dx: new Float64Array(1), dlogits: new Float64Array(2),
 *   dw1: new Float64Array(2), dw3: new Float64Array(2), dw2: new Float64Array(2),
 *   db1: new Float64Array(2), db3: new Float64Array(2), db2: new Float64Array(2),
 * };
 * ```
 */
export interface MoeGradResult {
  /** dL/dx through the experts only `[T, d]` (the router's share is `dlogits · Wg`). */
  readonly dx: Float64Array;
  /** dL/d router logits, every path into them summed `[T, E]`. */
  readonly dlogits: Float64Array;
  /** dL/dW1 `[E, ff, d]`. */
  readonly dw1: Float64Array;
  /** dL/dW3 `[E, ff, d]`. */
  readonly dw3: Float64Array;
  /** dL/dW2 `[E, d, ff]`. */
  readonly dw2: Float64Array;
  /** dL/db1 `[E, ff]`: the gate pre-activation gradients of each expert's kept pairs summed. */
  readonly db1: Float64Array;
  /** dL/db3 `[E, ff]`: the up pre-activation gradients summed likewise. */
  readonly db3: Float64Array;
  /** dL/db2 `[E, d]`: `Σ w·dy` over each expert's kept pairs. */
  readonly db2: Float64Array;
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/**
 * `act(a, b)` with its partial derivatives `[act, ∂act/∂a, ∂act/∂b]`. The
 * clamps of `swiglu_oai` pass the gradient where their input is inside the
 * range, boundary included, and 0 where they clamp (PyTorch's `clamp`).
 */
function activationGrad(cfg: MoeReferenceConfig): (a: number, b: number) => number[] {
  if ((cfg.activation ?? "swiglu") === "swiglu") {
    return (a, b) => {
      const s = sigmoid(a), silu = a * s;
      return [silu * b, b * s * (1 + a * (1 - s)), silu];
    };
  }
  if (cfg.activation === "relu2") return (a) => [Math.max(a, 0) ** 2, 2 * Math.max(a, 0), 0];
  const gate = gateFunction(cfg.activation);
  if (gate) return (a, b) => [gate.f(a) * b, gate.df(a) * b, gate.f(a)];
  const alpha = cfg.alpha ?? 1.702, limit = cfg.limit ?? 7;
  return (a, b) => {
    const g = Math.min(a, limit), u = Math.min(Math.max(b, -limit), limit);
    const s = sigmoid(alpha * g), glu = g * s;
    const da = a <= limit ? (u + 1) * (s + alpha * glu * (1 - s)) : 0;
    return [(u + 1) * glu, da, -limit <= b && b <= limit ? glu : 0];
  };
}

/**
 * The backward pass of the routed expert layer. Top-k selection and capacity
 * drops are piecewise constant: gradients flow through the chosen weights and
 * the kept pairs only; the load-balancing loss differentiates through the
 * mean probabilities `Pᵢ` (the routed fractions `fᵢ` are counts), the z-loss
 * through the log-sum-exp of every token's logits. Masked tokens (mask 0)
 * take no share of either loss.
 *
 * @example
 * ```ts
 * import { moeGradReference } from "./grad_reference.ts";
 * const cfg = { T: 1, d: 1, ff: 1, E: 2, k: 1, router: "switch" as const };
 * const z = [0, 0];
 * const r = moeGradReference(cfg, {
 *   x: [1], logits: [0.5, -0.5], w1: [1, 1], w3: [1, 1], w2: [1, 1],
 *   dy: [1], dlogits: z, dtopkw: [0], daux: z, mask: [1], bias: z,
 * });
 * r.dw2.length; // 2
 * ```
 */
export function moeGradReference(cfg: MoeReferenceConfig, o: MoeGradOperands): MoeGradResult {
  const { T, d, ff, E, k, router } = cfg;
  const sig = router === "sigmoid_bias";
  const fwd = moeReference(
    cfg,
    { wg: new Float64Array(E * d), logits: o.logits, w1: o.w1, w3: o.w3, w2: o.w2, bias: o.bias },
    o.x,
    o.mask,
  );
  const dx = new Float64Array(T * d);
  const dz = new Float64Array(T * E);
  const dw1 = new Float64Array(E * ff * d);
  const dw3 = new Float64Array(E * ff * d);
  const dw2 = new Float64Array(E * d * ff);
  const db1 = new Float64Array(E * ff), db3 = new Float64Array(E * ff);
  const db2 = new Float64Array(E * d);
  const act = activationGrad(cfg);
  // Expert pairs: y_t += w · (W2ₑ act(W1ₑ x + b1ₑ, W3ₑ x + b3ₑ) + b2ₑ); gw = dL/dw of each kept pair.
  const gw = Float64Array.from({ length: T * k }, (_, i) => o.dtopkw[i]);
  const a = new Float64Array(ff), b = new Float64Array(ff), dh = new Float64Array(ff);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      if (!fwd.keptSlot[t * k + j]) continue;
      const e = fwd.topkIdx[t * k + j], w = fwd.topkW[t * k + j];
      for (let n = 0; n < ff; n++) {
        let sa = o.b1?.[e * ff + n] ?? 0, sb = o.b3?.[e * ff + n] ?? 0, sh = 0;
        for (let c = 0; c < d; c++) {
          sa += o.w1[(e * ff + n) * d + c] * o.x[t * d + c];
          sb += o.w3[(e * ff + n) * d + c] * o.x[t * d + c];
          sh += o.w2[(e * d + c) * ff + n] * o.dy[t * d + c];
        }
        a[n] = sa, b[n] = sb, dh[n] = sh; // dh = W2ₑᵀ dy (without the weight)
      }
      for (let c = 0; c < d; c++) {
        gw[t * k + j] += (o.b2?.[e * d + c] ?? 0) * o.dy[t * d + c];
        db2[e * d + c] += w * o.dy[t * d + c];
      }
      for (let n = 0; n < ff; n++) {
        const [h, da, db] = act(a[n], b[n]);
        gw[t * k + j] += h * dh[n];
        for (let c = 0; c < d; c++) dw2[(e * d + c) * ff + n] += w * o.dy[t * d + c] * h;
        const ga = w * dh[n] * da, gb = w * dh[n] * db;
        db1[e * ff + n] += ga;
        db3[e * ff + n] += gb;
        for (let c = 0; c < d; c++) {
          dw1[(e * ff + n) * d + c] += ga * o.x[t * d + c];
          dw3[(e * ff + n) * d + c] += gb * o.x[t * d + c];
          dx[t * d + c] += ga * o.w1[(e * ff + n) * d + c] + gb * o.w3[(e * ff + n) * d + c];
        }
      }
    }
  }
  // Aux losses: fᵢ (masked picks per expert, before drops) and the valid-token count.
  const f = new Float64Array(E);
  let nValid = 0;
  for (let t = 0; t < T; t++) {
    nValid += o.mask[t];
    const row = Array.from({ length: E }, (_, e) => o.logits[t * E + e]);
    for (const e of balanceChoices(router, row, fwd.topkIdx, t, k)) f[e] += o.mask[t];
  }
  const cA = nValid > 0 ? (o.daux[0] * E) / (k * nValid * nValid) : 0;
  const cZ = nValid > 0 ? (2 * o.daux[1]) / nValid : 0;
  for (let t = 0; t < T; t++) {
    const z = Array.from({ length: E }, (_, e) => o.logits[t * E + e]);
    const mx = Math.max(...z);
    const ex = z.map((v) => Math.exp(v - mx));
    const se = ex.reduce((p, q) => p + q, 0);
    const p = ex.map((v) => v / se);
    const lse = mx + Math.log(se);
    const m = o.mask[t];
    const idx = Array.from({ length: k }, (_, j) => fwd.topkIdx[t * k + j]);
    const g = Array.from({ length: k }, (_, j) => gw[t * k + j]);
    const out = dz.subarray(t * E, (t + 1) * E);
    if (sig) {
      // w_j = sc · s_j / S (S over the chosen; S = 1 without renormalising),
      // q = s / Σ s (the balance loss's probabilities).
      const s = z.map(sigmoid);
      const norm = cfg.normTopk ?? true;
      const S = norm ? idx.reduce((acc, e) => acc + s[e], 0) : 1;
      const Q = s.reduce((acc, v) => acc + v, 0);
      const sc = cfg.routedScaling ?? 1;
      const mean = norm ? idx.reduce((acc, e, j) => acc + g[j] * s[e], 0) / S : 0;
      const ds = new Float64Array(E);
      idx.forEach((e, j) => (ds[e] += (sc / S) * (g[j] - mean)));
      const dq = Array.from({ length: E }, (_, e) => cA * f[e] * m);
      const dqq = dq.reduce((acc, v, e) => acc + v * s[e], 0) / Q;
      for (let e = 0; e < E; e++) {
        ds[e] += (dq[e] - dqq) / Q;
        out[e] = ds[e] * s[e] * (1 - s[e]) + cZ * m * lse * p[e];
      }
    } else {
      const dp = new Float64Array(E);
      // Softmax weights carry routedScaling too (DeepSeek-V2); switch's do not. The
      // selection bias of softmax_bias only chose the experts: no gradient through it.
      const soft = router === "softmax_topk" || router === "softmax_bias";
      const sc = soft ? cfg.routedScaling ?? 1 : 1;
      if (soft && (cfg.normTopk ?? true)) {
        // w_j = sc · p_j / S: dp_j = sc · (g_j − Σᵢ gᵢ wᵢ) / S.
        const S = idx.reduce((acc, e) => acc + p[e], 0);
        const mean = idx.reduce((acc, e, j) => acc + g[j] * p[e], 0) / S;
        idx.forEach((e, j) => (dp[e] += (sc * (g[j] - mean)) / S));
      } else {
        idx.forEach((e, j) => (dp[e] += sc * g[j]));
      }
      for (let e = 0; e < E; e++) dp[e] += cA * f[e] * m;
      const dot = dp.reduce((acc, v, e) => acc + v * p[e], 0);
      for (let e = 0; e < E; e++) out[e] = p[e] * (dp[e] - dot) + cZ * m * lse * p[e];
    }
    for (let e = 0; e < E; e++) out[e] += o.dlogits[t * E + e];
  }
  return { dx, dlogits: dz, dw1, dw3, dw2, db1, db3, db2 };
}
