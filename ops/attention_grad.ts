/**
 * The backward ops of `attention` (FlashAttention-2's recomputing backward):
 *
 * - `attention_lse(q, k, pos)` → lse f32 [T, Hq]: each query row's log-sum-exp of
 *   its visible scaled scores, streamed over the keys like the forward (the
 *   optimiser folds it into a matching forward, `attention` with `lse`, so in a
 *   training graph the statistic is saved rather than recomputed);
 * - `attention_dq(q, k, v, pos, dO, lse, delta)` → dQ [T, Hq, D]: per query row,
 *   the probabilities recomputed from lse as the keys stream past;
 * - `attention_dkv(q, k, v, pos, dO, lse, delta)` → dK, dV [S, Hkv, D]: per key
 *   row, the same probabilities recomputed while the query rows of its KV head's
 *   group stream past (the query heads of a group summed in a fixed order).
 *
 * With P = softmax(scale·QKᵀ + mask) and O = P·V: dV = Pᵀ·dO,
 * dS = P ∘ (dO·Vᵀ − delta) with delta_i = Σ_d dO_id·O_id (= Σ_j P_ij·(dO·Vᵀ)_ij),
 * dQ = scale·dS·K, dK = scale·dSᵀ·Q. No [T, S] matrix exists at any point: every
 * probability is rebuilt as exp(scale·q·k − lse) where it is used, and each
 * output element is written by exactly one invocation (deterministic, no atomics).
 *
 * Masks are the forward's (`ops/attention.ts`): query t sits at pos + t, key j at
 * j; keys at or past pos + T are ignored; causal sees j ≤ pos + t, a window W
 * also needs pos + t − j < W. A query row that sees no key has no gradient; its
 * lse is {@linkcode LSE_NONE}, so every recomputed probability underflows to 0.
 *
 * @module
 */

import { allocHost } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { formatShape } from "../core/shape.ts";
import type { HostTensor, OpDef } from "./types.ts";
import { attention, type AttentionAttrs } from "./attention.ts";
import { emitAttentionDkv, emitAttentionDq, emitAttentionLse } from "./attention_grad_kernels.ts";

/**
 * The log-sum-exp `attention_lse` gives a query row that sees no key: large and
 * finite (kernels need not handle infinities), so exp(s − lse) is exactly 0.
 *
 * @example
 * ```ts
 * import { LSE_NONE } from "./attention_grad.ts";
 * Math.exp(3 - LSE_NONE); // 0
 * ```
 */
export const LSE_NONE = 1e30;

/** Whether query row t (absolute position at) sees key j. */
function visible(attrs: AttentionAttrs, at: number, j: number): boolean {
  return (!attrs.causal || j <= at) && (!(attrs.window > 0) || at - j < attrs.window);
}

/** Σ_d a[ao + d]·b[bo + d]. */
function dot(a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, D: number) {
  let s = 0;
  for (let d = 0; d < D; d++) s += a[ao + d] * b[bo + d];
  return s;
}

/** Sizes of an attention operand set. */
function dims(q: HostTensor, k: HostTensor, pos: HostTensor) {
  const [T, Hq, D] = q.shape;
  const [S, Hkv] = k.shape;
  return { T, Hq, D, S, Hkv, G: Hq / Hkv, p: pos.data[0], valid: Math.min(S, pos.data[0] + T) };
}

/** Float64 reference of `attention_lse`. */
function referenceLse([q, k, pos]: readonly HostTensor[], attrs: AttentionAttrs): Float64Array {
  const { T, Hq, D, Hkv, G, p, valid } = dims(q, k, pos);
  const out = new Float64Array(T * Hq);
  const s = new Float64Array(Math.max(valid, 1));
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / G), qo = (t * Hq + h) * D;
      let mx = -Infinity;
      for (let j = 0; j < valid; j++) {
        s[j] = visible(attrs, p + t, j)
          ? dot(q.data, qo, k.data, (j * Hkv + kh) * D, D) * attrs.scale
          : -Infinity;
        mx = Math.max(mx, s[j]);
      }
      if (mx === -Infinity) {
        out[t * Hq + h] = LSE_NONE;
        continue;
      }
      let sum = 0;
      for (let j = 0; j < valid; j++) if (s[j] !== -Infinity) sum += Math.exp(s[j] - mx);
      out[t * Hq + h] = mx + Math.log(sum);
    }
  }
  return out;
}

/**
 * Float64 reference of `attention_dq` and `attention_dkv` together: for every
 * visible (query row, key) pair, P from lse, dS = P·(dO·v − delta).
 */
function referenceGrads(
  [q, k, v, pos, dO, lse, delta]: readonly HostTensor[],
  attrs: AttentionAttrs,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { T, Hq, D, S, Hkv, G, p, valid } = dims(q, k, pos);
  const dq = new Float64Array(T * Hq * D);
  const dk = new Float64Array(S * Hkv * D);
  const dv = new Float64Array(S * Hkv * D);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / G), row = t * Hq + h, qo = row * D;
      for (let j = 0; j < valid; j++) {
        if (!visible(attrs, p + t, j)) continue;
        const ko = (j * Hkv + kh) * D;
        const pr = Math.exp(dot(q.data, qo, k.data, ko, D) * attrs.scale - lse.data[row]);
        const ds = pr * (dot(dO.data, qo, v.data, ko, D) - delta.data[row]) * attrs.scale;
        for (let d = 0; d < D; d++) {
          dq[qo + d] += ds * k.data[ko + d];
          dk[ko + d] += ds * q.data[qo + d];
          dv[ko + d] += pr * dO.data[qo + d];
        }
      }
    }
  }
  return { dq, dk, dv };
}

/** A float64 result in a host array of `dtype` (float64 itself under `withFloat64Host`). */
function host(r: Float64Array, dtype: TensorType["dtype"]) {
  const out = allocHost(dtype, r.length);
  for (let i = 0; i < r.length; i++) out[i] = r[i];
  return out;
}

/** The forward's checks of q, k, v, pos and the attributes, under this op's name. */
function inferQkv(
  op: string,
  [q, k, v, pos]: readonly TensorType[],
  attrs: AttentionAttrs,
): void {
  try {
    attention.infer([q, k, v, pos], attrs);
  } catch (e) {
    if (e instanceof Error) e.message = `${op}: ${e.message}`;
    throw e;
  }
  // The forward of an empty head is empty; a log-sum-exp of [T, Hq] would not be.
  if (!((q.shape[2] as number) > 0)) {
    throw new RangeError(`${op}: headDim must be at least 1, got ${q.shape[2]}`);
  }
}

/** Checks dO [T, Hq, D] (q's type), lse and delta f32 [T, Hq]. */
function inferGradInputs(op: string, inputs: readonly TensorType[]): void {
  const [q, , , , dO, lse, delta] = inputs;
  if (dO.dtype !== q.dtype || formatShape(dO.shape) !== formatShape(q.shape)) {
    throw new TypeError(
      `${op}: dO must match q ${q.dtype}${formatShape(q.shape)}, got ${dO.dtype}${
        formatShape(dO.shape)
      }`,
    );
  }
  const rows = formatShape(q.shape.slice(0, 2));
  for (const [name, x] of [["lse", lse], ["delta", delta]] as const) {
    if (x.dtype !== "f32" || formatShape(x.shape) !== rows) {
      throw new TypeError(
        `${op}: ${name} must be f32${rows}, got ${x.dtype}${formatShape(x.shape)}`,
      );
    }
  }
}

const ATTRS = ["scale", "causal", "window", "splits"];

/**
 * attention_lse(q [T, Hq, D], k [S, Hkv, D], pos u32 [1]) → f32 [T, Hq]: the
 * log-sum-exp of each query row's visible scores scale·q·k ({@linkcode LSE_NONE}
 * where it sees none). Takes `attention`'s attributes (`splits` is unused).
 *
 * @example
 * ```ts ignore
 * const [lse] = g.apply("attention_lse", [q, k, pos], attrs);
 * ```
 */
export const attentionLse: OpDef<AttentionAttrs> = {
  arity: 3,
  attrNames: ATTRS,
  infer([q, k, pos], attrs) {
    inferQkv("attention_lse", [q, k, k, pos], attrs);
    return [{ shape: q.shape.slice(0, 2), dtype: "f32" }];
  },
  reference([q, k, pos], attrs, [out]) {
    return [host(referenceLse([q, k, pos], attrs), out.dtype)];
  },
  foldable: false,
  lower: { kind: "kernel", prologue: [0, 1], epilogue: false, emit: emitAttentionLse },
};

/**
 * attention_dq(q, k, v, pos, dO [T, Hq, D], lse f32 [T, Hq], delta f32 [T, Hq])
 * → dQ [T, Hq, D]: `attention`'s gradient with respect to q, given lse from
 * `attention_lse` and delta = Σ_d dO·O per row.
 *
 * @example
 * ```ts ignore
 * const [dq] = g.apply("attention_dq", [q, k, v, pos, dO, lse, delta], attrs);
 * ```
 */
export const attentionDq: OpDef<AttentionAttrs> = {
  arity: 7,
  attrNames: ATTRS,
  infer(inputs, attrs) {
    inferQkv("attention_dq", inputs, attrs);
    inferGradInputs("attention_dq", inputs);
    return [{ shape: inputs[0].shape, dtype: inputs[0].dtype }];
  },
  reference(inputs, attrs, [out]) {
    return [host(referenceGrads(inputs, attrs).dq, out.dtype)];
  },
  foldable: false,
  lower: { kind: "kernel", prologue: [0, 1, 2, 4], epilogue: true, emit: emitAttentionDq },
};

/**
 * attention_dkv(q, k, v, pos, dO, lse, delta) → dK, dV [S, Hkv, D]: `attention`'s
 * gradients with respect to k and v (zero for keys no query sees), each KV
 * head's summed over the query heads of its group.
 *
 * @example
 * ```ts ignore
 * const [dk, dv] = g.apply("attention_dkv", [q, k, v, pos, dO, lse, delta], attrs);
 * ```
 */
export const attentionDkv: OpDef<AttentionAttrs> = {
  arity: 7,
  attrNames: ATTRS,
  infer(inputs, attrs) {
    inferQkv("attention_dkv", inputs, attrs);
    inferGradInputs("attention_dkv", inputs);
    const k = inputs[1];
    return [{ shape: k.shape, dtype: k.dtype }, { shape: k.shape, dtype: k.dtype }];
  },
  reference(inputs, attrs, [dk, dv]) {
    const r = referenceGrads(inputs, attrs);
    return [host(r.dk, dk.dtype), host(r.dv, dv.dtype)];
  },
  foldable: false,
  lower: { kind: "kernel", prologue: [0, 1, 2, 4], epilogue: false, emit: emitAttentionDkv },
};
