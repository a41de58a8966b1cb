/**
 * The attributes, operand positions, shape rule and float64 CPU reference of
 * `selective_scan_grad`, the selective scan's backward: the oracle its
 * chunked kernels and the finite-difference checks are held against.
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { formatShape } from "../../core/shape.ts";
import type { HostTensor } from "../types.ts";
import { checkpointShape, checkpointsOf, type ScanAttrs, scanSlots } from "./attrs.ts";
import { inferScanLike } from "./infer.ts";

/**
 * Attributes of `selective_scan_grad`: the forward scan's, plus whether a
 * gradient of the final state comes after dy. `chunk` is the checkpoint
 * spacing of the backward (0 picks one); `algorithm` is ignored.
 *
 * @example
 * ```ts
 * import type { ScanGradAttrs } from "@kiln/kiln";
 * const attrs: ScanGradAttrs = {
 *   gate: true, deltaBias: true, softplus: true, initialState: false,
 *   finalState: false, algorithm: "auto", chunk: 16, finalGrad: false,
 * };
 * ```
 */
export interface ScanGradAttrs extends ScanAttrs {
  /** A gradient of the final state `[B, I, N]` f32 follows dy. */
  readonly finalGrad: boolean;
}

/**
 * Where dy, the final state's gradient and the forward's saved states (with
 * `checkpoints`) sit among `selective_scan_grad`'s inputs (after the forward's
 * operands), and how many inputs there are.
 *
 * @example
 * ```ts ignore
 * gradSlots(attrs); // { count: 6, gy: 6, ghF: undefined, ck: undefined, inputs: 7 }
 * ```
 */
export function gradSlots(
  attrs: ScanGradAttrs,
): { count: number; gy: number; ghF: number | undefined; ck: number | undefined; inputs: number } {
  const { count } = scanSlots(attrs, false);
  const ghF = attrs.finalGrad ? count + 1 : undefined;
  const next = count + 1 + (attrs.finalGrad ? 1 : 0);
  const ck = checkpointsOf(attrs) > 0 ? next : undefined;
  return { count, gy: count, ghF, ck, inputs: next + (ck !== undefined ? 1 : 0) };
}

/**
 * Shape rule of `selective_scan_grad`: the forward's operands (checked by the
 * scan's own rule), dy like u, the final state's gradient `[B, I, N]` f32 when
 * `finalGrad` → one gradient per forward operand, in its shape and dtype.
 *
 * @example
 * ```ts ignore
 * inferScanGrad([u, dt, A, B, C, D, dy], attrs); // [du, ddt, dA, dB, dC, dD]
 * ```
 */
export function inferScanGrad(
  inputs: readonly TensorType[],
  attrs: ScanGradAttrs,
): TensorType[] {
  if (typeof attrs.finalGrad !== "boolean") {
    throw new TypeError(`selective_scan_grad: finalGrad must be a boolean, got ${attrs.finalGrad}`);
  }
  const s = gradSlots(attrs);
  if (inputs.length !== s.inputs) {
    throw new RangeError(
      `selective_scan_grad: the attributes call for ${s.inputs} inputs, got ${inputs.length}`,
    );
  }
  const fwd = inputs.slice(0, s.count);
  const [y, h] = inferScanLike(fwd, { ...attrs, finalState: true }, false);
  const gy = inputs[s.gy];
  if (formatShape(gy.shape) !== formatShape(y.shape) || gy.dtype !== y.dtype) {
    throw new RangeError(
      `selective_scan_grad: dy must be ${y.dtype}${formatShape(y.shape)} like y, got ${gy.dtype}${
        formatShape(gy.shape)
      }`,
    );
  }
  if (s.ghF !== undefined) {
    const g = inputs[s.ghF];
    if (formatShape(g.shape) !== formatShape(h.shape) || g.dtype !== "f32") {
      throw new RangeError(
        `selective_scan_grad: the final state's gradient must be f32${
          formatShape(h.shape)
        }, got ${g.dtype}${formatShape(g.shape)}`,
      );
    }
  }
  if (s.ck !== undefined) {
    if (attrs.last === true) {
      throw new TypeError("selective_scan_grad: a `last` input (padded rows) has no gradient");
    }
    const u = fwd[0].shape, N = fwd[2].shape[1];
    const want = checkpointShape(u[0], u[1], u[2], N, checkpointsOf(attrs));
    const ck = inputs[s.ck];
    if (formatShape(ck.shape) !== formatShape(want) || ck.dtype !== "f32") {
      throw new RangeError(
        `selective_scan_grad: the saved states must be f32${formatShape(want)} (checkpoints ${
          checkpointsOf(attrs)
        }), got ${ck.dtype}${formatShape(ck.shape)}`,
      );
    }
  }
  return fwd.map((t) => ({ shape: t.shape, dtype: t.dtype }));
}

function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/**
 * Float64 reference of `selective_scan_grad`: per channel, the forward states
 * kept whole (this is the oracle, not the kernel), then the adjoint walked
 * back from the last step: gₜ = exp(Δₜ₊₁A)·gₜ₊₁ + Cₜ·dy₀ₜ, from which dΔ, dA, dB,
 * du, and at the start dh₀ = exp(Δ₀A)·g₀.
 *
 * @example
 * ```ts ignore
 * const [du, ddt, dA, dB, dC, dD] = referenceScanGrad(inputs, attrs);
 * ```
 */
export function referenceScanGrad(
  inputs: readonly HostTensor[],
  attrs: ScanGradAttrs,
): HostArray[] {
  const { slots, count } = scanSlots(attrs, false);
  const gs = gradSlots(attrs);
  const at = (k: number | undefined) => (k === undefined ? undefined : inputs[k].data);
  const u = inputs[slots.u], delta = at(slots.delta)!, A = inputs[slots.a];
  const Bm = at(slots.b)!, Cm = at(slots.c)!, D = at(slots.d)!;
  const z = at(slots.z), bias = at(slots.bias), h0 = at(slots.h0);
  const gy = at(gs.gy)!, ghF = at(gs.ghF);
  const [Bn, L, I] = u.shape;
  const N = A.shape[1];
  const out = inputs.slice(0, count).map((t) => allocHost(t.dtype, t.data.length));
  const [du, ddelta, dA, dB, dC, dD] = out;
  const dz = slots.z !== undefined ? out[slots.z] : undefined;
  const dbias = slots.bias !== undefined ? out[slots.bias] : undefined;
  const dh0 = slots.h0 !== undefined ? out[slots.h0] : undefined;
  const hs = new Float64Array((L + 1) * N);
  const dts = new Float64Array(L);
  const g = new Float64Array(N);
  for (let b = 0; b < Bn; b++) {
    for (let i = 0; i < I; i++) {
      for (let n = 0; n < N; n++) hs[n] = h0 ? h0[(b * I + i) * N + n] : 0;
      for (let t = 0; t < L; t++) {
        const r = b * L + t;
        let dt = delta[r * I + i] + (bias ? bias[i] : 0);
        if (attrs.softplus) dt = softplus(dt);
        dts[t] = dt;
        const x = u.data[r * I + i];
        for (let n = 0; n < N; n++) {
          hs[(t + 1) * N + n] = Math.exp(dt * A.data[i * N + n]) * hs[t * N + n] +
            dt * Bm[r * N + n] * x;
        }
      }
      for (let n = 0; n < N; n++) g[n] = ghF ? ghF[(b * I + i) * N + n] : 0;
      for (let t = L - 1; t >= 0; t--) {
        const r = b * L + t, ri = r * I + i;
        const x = u.data[ri], dt = dts[t];
        let gy0 = gy[ri];
        if (z && dz) {
          let y0 = D[i] * x;
          for (let n = 0; n < N; n++) y0 += hs[(t + 1) * N + n] * Cm[r * N + n];
          const zv = z[ri], s = sigmoid(zv);
          dz[ri] = gy0 * y0 * s * (1 + zv * (1 - s));
          gy0 *= zv * s;
        }
        dD[i] += gy0 * x;
        let gu = gy0 * D[i], gdt = 0;
        for (let n = 0; n < N; n++) {
          const a = A.data[i * N + n];
          g[n] += gy0 * Cm[r * N + n];
          dC[r * N + n] += gy0 * hs[(t + 1) * N + n];
          const e = Math.exp(dt * a);
          const q = g[n] * hs[t * N + n] * e;
          dA[i * N + n] += q * dt;
          gdt += q * a + g[n] * Bm[r * N + n] * x;
          gu += g[n] * Bm[r * N + n] * dt;
          dB[r * N + n] += g[n] * dt * x;
          g[n] *= e;
        }
        du[ri] = gu;
        const raw = delta[ri] + (bias ? bias[i] : 0);
        const gd = attrs.softplus ? gdt * (raw > 20 ? 1 : sigmoid(raw)) : gdt;
        ddelta[ri] = gd;
        if (dbias) dbias[i] += gd;
      }
      if (dh0) { for (let n = 0; n < N; n++) dh0[(b * I + i) * N + n] = g[n]; }
    }
  }
  return out;
}
