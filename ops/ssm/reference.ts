/**
 * CPU references of the Mamba (S6) ops: the oracles every kernel is tested
 * against, the scan in float64.
 *
 * @module
 */

import { numel } from "../../core/shape.ts";
import { allocHost } from "../../core/dtype.ts";
import type { HostTensor } from "../types.ts";
import {
  checkpointsOf,
  type Conv1dAttrs,
  type Conv1dStepAttrs,
  type ScanAttrs,
  scanSlots,
} from "./attrs.ts";
import { convLengthError } from "./infer.ts";

function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

function silu(x: number): number {
  return x >= 0 ? x / (1 + Math.exp(-x)) : x * Math.exp(x) / (1 + Math.exp(x));
}

/**
 * Reference of `conv1d_causal`.
 *
 * @example
 * ```ts ignore
 * const y = referenceConv([x, w], { bias: false, state: false, silu: false });
 * ```
 */
export function referenceConv(
  inputs: readonly HostTensor[],
  attrs: Conv1dAttrs,
): HostTensor["data"] {
  const [x, w] = inputs;
  const [B, L, I] = x.shape;
  const k = w.shape[w.shape.length - 1];
  const bias = attrs.bias ? inputs[2].data : undefined;
  const st = attrs.state ? inputs[inputs.length - 1] : undefined;
  if (!st && k > L) throw convLengthError("conv1d_causal", k, L);
  const S = st ? st.shape[2] : 0;
  const y = allocHost(x.dtype, numel(x.shape));
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      for (let t = 0; t < L; t++) {
        let acc = bias ? bias[i] : 0;
        for (let j = 0; j < k; j++) {
          const p = t - (k - 1) + j;
          const v = p >= 0
            ? x.data[(b * L + p) * I + i]
            : st
            ? st.data[(b * I + i) * S + S + p]
            : 0;
          acc += w.data[i * k + j] * v;
        }
        y[(b * L + t) * I + i] = attrs.silu ? silu(acc) : acc;
      }
    }
  }
  return y;
}

/**
 * Rows of a run that are real: all L, or rows 0..last when a `last` input says
 * the rest are padding.
 */
function realRows(L: number, last: HostTensor | undefined): number {
  return last ? Math.min(L, last.data[0] + 1) : L;
}

/**
 * Reference of `conv_state_update`: the last S inputs of (state ++ x), x cut
 * after row `last` when that input is given.
 *
 * @example
 * ```ts ignore
 * const next = referenceStateUpdate([state, x]);
 * ```
 */
export function referenceStateUpdate(inputs: readonly HostTensor[]): HostTensor["data"] {
  const [s, x, last] = inputs;
  const [B, I, S] = s.shape;
  const L = x.shape[1];
  const n = realRows(L, last);
  const out = s.data.slice();
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      for (let sl = 0; sl < S; sl++) {
        const p = n - S + sl; // position in x; < 0 comes from the old state
        out[(b * I + i) * S + sl] = p >= 0
          ? x.data[(b * L + p) * I + i]
          : s.data[(b * I + i) * S + S + p];
      }
    }
  }
  return out;
}

/**
 * Reference of `conv1d_step`: [y, the shifted state].
 *
 * @example
 * ```ts ignore
 * const [y, next] = referenceConvStep([state, x, w], { bias: false, silu: true });
 * ```
 */
export function referenceConvStep(
  inputs: readonly HostTensor[],
  attrs: Conv1dStepAttrs,
): HostTensor["data"][] {
  const [s, x, w] = inputs;
  const [B, I, S] = s.shape;
  const k = w.shape[w.shape.length - 1];
  const bias = attrs.bias ? inputs[3].data : undefined;
  const y = allocHost(x.dtype, numel(x.shape));
  const ns = s.data.slice();
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      const row = (b * I + i) * S;
      const xt = x.data[b * I + i];
      let acc = (bias ? bias[i] : 0) + w.data[i * k + k - 1] * xt;
      for (let j = 0; j < k - 1; j++) acc += w.data[i * k + j] * s.data[row + S - (k - 1) + j];
      y[b * I + i] = attrs.silu ? silu(acc) : acc;
      for (let j = 0; j < S - 1; j++) ns[row + j] = s.data[row + j + 1];
      if (S > 0) ns[row + S - 1] = xt;
    }
  }
  return [y, ns];
}

/**
 * Float64 sequential scan over [B, L, I] with states [B, I, N]; the oracle of
 * `selective_scan` (`step` false) and `ssm_step`.
 *
 * @example
 * ```ts ignore
 * const [y, h] = referenceScan(inputs, scanAttrs({ finalState: true }), false);
 * ```
 */
export function referenceScan(
  inputs: readonly HostTensor[],
  attrs: ScanAttrs,
  step: boolean,
): HostTensor["data"][] {
  const { slots } = scanSlots(attrs, step);
  const u = inputs[slots.u], A = inputs[slots.a];
  const delta = slots.dtW !== undefined
    ? projectDelta(inputs[slots.delta], inputs[slots.dtW], u)
    : inputs[slots.delta];
  const Bm = inputs[slots.b], Cm = inputs[slots.c], D = inputs[slots.d];
  const z = slots.z !== undefined ? inputs[slots.z] : undefined;
  const bias = slots.bias !== undefined ? inputs[slots.bias] : undefined;
  const h0 = slots.h0 !== undefined
    ? inputs[slots.h0]
    : slots.state !== undefined
    ? inputs[slots.state]
    : undefined;
  const I = u.shape[u.shape.length - 1], N = A.shape[1];
  const rows = numel(u.shape) / I;
  const [Bn, L] = step ? [rows, 1] : [u.shape[0], u.shape[1]];
  // Padding rows (after `last`) take Δ as 0: they leave the state alone.
  const real = realRows(L, slots.last !== undefined ? inputs[slots.last] : undefined);
  const y = allocHost(u.dtype, numel(u.shape));
  const hOut = allocHost("f32", Bn * I * N); // float64 under withFloat64Host, for finite differences
  // With `checkpoints` S: the state entering every S-th step, [B, ⌈L/S⌉, N, I].
  const every = step ? 0 : checkpointsOf(attrs);
  const NC = every > 0 ? Math.ceil(L / every) : 0;
  const saved = allocHost("f32", Bn * NC * N * I);
  const h = new Float64Array(N);
  for (let b = 0; b < Bn; b++) {
    for (let i = 0; i < I; i++) {
      for (let n = 0; n < N; n++) h[n] = h0 ? h0.data[(b * I + i) * N + n] : 0;
      for (let t = 0; t < L; t++) {
        if (every > 0 && t % every === 0) {
          for (let n = 0; n < N; n++) saved[((b * NC + t / every) * N + n) * I + i] = h[n];
        }
        const r = b * L + t;
        const x = u.data[r * I + i];
        let dt = delta.data[r * I + i] + (bias ? bias.data[i] : 0);
        if (attrs.softplus) dt = softplus(dt);
        if (t >= real) dt = 0;
        let acc = D.data[i] * x;
        for (let n = 0; n < N; n++) {
          h[n] = Math.exp(dt * A.data[i * N + n]) * h[n] + dt * Bm.data[r * N + n] * x;
          acc += h[n] * Cm.data[r * N + n];
        }
        if (z) acc *= silu(z.data[r * I + i]);
        y[r * I + i] = acc;
      }
      for (let n = 0; n < N; n++) hOut[(b * I + i) * N + n] = h[n];
    }
  }
  const out = step || attrs.finalState ? [y, hOut] : [y];
  return every > 0 ? [...out, saved] : out;
}

/** Reference of the fused dt_proj: delta[r, i] = Σ_q lo[r, q]·W[i, q], summed in float64, stored f32 like the kernel's. */
function projectDelta(lo: HostTensor, W: HostTensor, u: HostTensor): HostTensor {
  const [I, R] = W.shape;
  const rows = numel(u.shape) / I;
  const data = new Float32Array(rows * I);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < I; i++) {
      let acc = 0;
      for (let q = 0; q < R; q++) acc += lo.data[r * R + q] * W.data[i * R + q];
      data[r * I + i] = acc;
    }
  }
  return { data, shape: u.shape, dtype: "f32" };
}
