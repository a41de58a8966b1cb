/**
 * CPU references of the fused LM-head cross-entropy and its gradient: the
 * oracles of the GPU kernels. They hold one row of logits at a time, in
 * float64 (JS numbers), and write through `allocHost`, so under
 * `withFloat64Host` they are float64-exact for finite-difference checks.
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import type { HostTensor } from "../../core/types.ts";

/**
 * A target outside `[0, V)` (PyTorch's `ignore_index = -100` among them) is not counted.
 *
 * @example
 * ```ts ignore
 * counted(-100, 32000); // false
 * ```
 */
export function counted(target: number, V: number): boolean {
  return Number.isInteger(target) && target >= 0 && target < V;
}

/** Logits of token `t` against every vocabulary row, in float64. */
function logitsOf(h: HostArray, W: HostArray, t: number, V: number, d: number, row: Float64Array) {
  for (let v = 0; v < V; v++) {
    let acc = 0;
    for (let k = 0; k < d; k++) acc += h[t * d + k] * W[v * d + k];
    row[v] = acc;
  }
}

/** log Σ exp(row), shifted by the max so large logits stay finite. */
function logSumExp(row: Float64Array): number {
  let m = -Infinity;
  for (const x of row) m = Math.max(m, x);
  let s = 0;
  for (const x of row) s += Math.exp(x - m);
  return m + Math.log(s);
}

/**
 * Reference of `lm_head_xent`: per token the loss `lse − h·W_target` (0 where
 * the target is not counted) and the log-sum-exp of its logits.
 *
 * @example
 * ```ts ignore
 * const [loss, lse] = referenceXent([h, W, targets]);
 * ```
 */
export function referenceXent([h, W, targets]: readonly HostTensor[]): HostArray[] {
  const [V, d] = W.shape;
  const N = targets.data.length;
  const loss = allocHost("f32", N), lse = allocHost("f32", N);
  const row = new Float64Array(V);
  for (let t = 0; t < N; t++) {
    logitsOf(h.data, W.data, t, V, d, row);
    const z = logSumExp(row);
    lse[t] = z;
    const tg = targets.data[t];
    loss[t] = counted(tg, V) ? z - row[tg] : 0;
  }
  return [loss, lse];
}

/**
 * Reference of `lm_head_xent_grad`: with `p = exp(logit − lse)` from the saved
 * log-sum-exp, the coefficient of token t and row v is
 * `p·(gl·[counted] + gz) − [v = target]·gl·[counted]`; `dh = C·W`, `dW = Cᵀ·h`.
 *
 * @example
 * ```ts ignore
 * const [dh, dW] = referenceXentGrad([h, W, targets, lse, gl, gz]);
 * ```
 */
export function referenceXentGrad(
  [h, W, targets, lse, gl, gz]: readonly HostTensor[],
): HostArray[] {
  const [V, d] = W.shape;
  const N = targets.data.length;
  const dh = allocHost(h.dtype, N * d), dW = allocHost(W.dtype, V * d);
  const row = new Float64Array(V);
  for (let t = 0; t < N; t++) {
    const tg = targets.data[t];
    const b = counted(tg, V) ? gl.data[t] : 0;
    const a = b + gz.data[t];
    if (a === 0 && b === 0) continue;
    logitsOf(h.data, W.data, t, V, d, row);
    for (let v = 0; v < V; v++) {
      const c = Math.exp(row[v] - lse.data[t]) * a - (v === tg ? b : 0);
      for (let k = 0; k < d; k++) {
        dh[t * d + k] += c * W.data[v * d + k];
        dW[v * d + k] += c * h.data[t * d + k];
      }
    }
  }
  return [dh, dW];
}
