/**
 * Discretisation of S4's diagonal continuous system (ZOH or bilinear) and the
 * float64 references built on it: the recurrence and the convolution kernel K̄.
 *
 * @module
 */

import { allocHost } from "../../core/dtype.ts";
import type { HostTensor } from "../types.ts";

/**
 * How the continuous system is discretised.
 *
 * @example
 * ```ts
 * import { discretise, type S4Discretisation } from "@kiln/kiln";
 * const method: S4Discretisation = "bilinear";
 * discretise([-1, 0], [1, 0], 0.5, method).abar[0]; // 0.6
 * ```
 */
export type S4Discretisation = "zoh" | "bilinear";
/**
 * Discretised diagonal system in float64, flat complex arrays [H·N2].
 *
 * @example
 * ```ts
 * import { type DiscreteS4, discretiseDiagonal } from "@kiln/kiln";
 * const d: DiscreteS4 = discretiseDiagonal([-1, 0], [1, 0], [Math.log(0.5)], "zoh");
 * [d.aRe[0], d.aIm[0]]; // [e^(−0.5), 0]
 * ```
 */
export interface DiscreteS4 {
  /** Ā re/im. */
  readonly aRe: Float64Array;
  /** Ā im. */
  readonly aIm: Float64Array;
  /** B̄ re. */
  readonly bRe: Float64Array;
  /** B̄ im. */
  readonly bIm: Float64Array;
}

/**
 * Discretises complex diagonal `A`, `B` ([H, N2, 2] flat) with steps exp(log_dt) in float64.
 *
 * @example
 * ```ts
 * import { discretiseDiagonal } from "@kiln/kiln";
 * const d = discretiseDiagonal([-1, 0], [1, 0], [Math.log(0.5)], "bilinear");
 * d.aRe[0]; // (1 − 0.25) / (1 + 0.25) = 0.6
 * ```
 */
export function discretiseDiagonal(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  logDt: ArrayLike<number>,
  method: S4Discretisation,
): DiscreteS4 {
  const H = logDt.length, M = A.length / 2, N2 = M / H;
  const aRe = new Float64Array(M), aIm = new Float64Array(M);
  const bRe = new Float64Array(M), bIm = new Float64Array(M);
  for (let j = 0; j < M; j++) {
    const dt = Math.exp(logDt[Math.floor(j / N2)]);
    const ar = A[2 * j], ai = A[2 * j + 1], br = B[2 * j], bi = B[2 * j + 1];
    const zr = dt * ar, zi = dt * ai;
    if (method === "zoh") {
      const e = Math.exp(zr);
      // exp(z) − 1 without cancellation for small z.
      const s = Math.sin(zi / 2);
      const mr = Math.expm1(zr) * Math.cos(zi) - 2 * s * s, mi = e * Math.sin(zi);
      aRe[j] = e * Math.cos(zi);
      aIm[j] = e * Math.sin(zi);
      // (exp(z) − 1)/z · Δ·B
      const d = zr * zr + zi * zi;
      let qr = 1 + zr / 2, qi = zi / 2;
      if (d > 1e-24) {
        qr = (mr * zr + mi * zi) / d;
        qi = (mi * zr - mr * zi) / d;
      }
      bRe[j] = dt * (qr * br - qi * bi);
      bIm[j] = dt * (qr * bi + qi * br);
    } else {
      const nr = 1 + zr / 2, ni = zi / 2, dr = 1 - zr / 2, di = -zi / 2;
      const d = dr * dr + di * di;
      aRe[j] = (nr * dr + ni * di) / d;
      aIm[j] = (ni * dr - nr * di) / d;
      const pr = dt * br, pi = dt * bi;
      bRe[j] = (pr * dr + pi * di) / d;
      bIm[j] = (pi * dr - pr * di) / d;
    }
  }
  return { aRe, aIm, bRe, bIm };
}

/**
 * Float64 recurrence: the reference of `s4` / `s4_state`. Mutates `state`
 * ([B, H, N2, 2] flat) and returns y [B, T, H].
 *
 * @example
 * ```ts ignore
 * const y = recurrenceF64(x, [A, B, C, logDt], { discretisation: "zoh", conj: true }, state);
 * ```
 */
export function recurrenceF64(
  x: HostTensor,
  [A, B, C, dt]: readonly HostTensor[],
  attrs: { discretisation: S4Discretisation; conj: boolean },
  state: Float64Array,
): Float32Array {
  const [Bt, T, H] = x.shape;
  const N2 = A.shape[1];
  const d = discretiseDiagonal(A.data, B.data, dt.data, attrs.discretisation);
  const cf = attrs.conj ? 2 : 1;
  // Float64 inside `withFloat64Host` (finite-difference checks), f32 otherwise.
  const y = allocHost("f32", Bt * T * H) as Float32Array;
  for (let b = 0; b < Bt; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const xv = x.data[(b * T + t) * H + h];
        let acc = 0;
        for (let n = 0; n < N2; n++) {
          const j = h * N2 + n, s = 2 * ((b * H + h) * N2 + n);
          const sr = d.aRe[j] * state[s] - d.aIm[j] * state[s + 1] + d.bRe[j] * xv;
          const si = d.aRe[j] * state[s + 1] + d.aIm[j] * state[s] + d.bIm[j] * xv;
          state[s] = sr;
          state[s + 1] = si;
          acc += C.data[2 * j] * sr - C.data[2 * j + 1] * si;
        }
        y[(b * T + t) * H + h] = cf * acc;
      }
    }
  }
  return y;
}

/**
 * K̄ [H, L] in float64: K̄ₗ = c·Re Σₙ Cₙ B̄ₙ Āₙˡ.
 *
 * @example
 * ```ts
 * import { s4KernelF64 } from "@kiln/kiln";
 * const k = s4KernelF64([-1, 0], [1, 0], [1, 0], [0], 3, "bilinear", false);
 * k.length; // 3
 * ```
 */
export function s4KernelF64(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  C: ArrayLike<number>,
  logDt: ArrayLike<number>,
  L: number,
  method: S4Discretisation,
  conj: boolean,
): Float64Array {
  const H = logDt.length, N2 = A.length / 2 / H;
  const d = discretiseDiagonal(A, B, logDt, method);
  const K = new Float64Array(H * L);
  const cf = conj ? 2 : 1;
  for (let h = 0; h < H; h++) {
    for (let n = 0; n < N2; n++) {
      const j = h * N2 + n;
      // coef = C·B̄, then multiply by Ā each step.
      let pr = C[2 * j] * d.bRe[j] - C[2 * j + 1] * d.bIm[j];
      let pi = C[2 * j] * d.bIm[j] + C[2 * j + 1] * d.bRe[j];
      for (let l = 0; l < L; l++) {
        K[h * L + l] += cf * pr;
        const r = pr * d.aRe[j] - pi * d.aIm[j];
        pi = pr * d.aIm[j] + pi * d.aRe[j];
        pr = r;
      }
    }
  }
  return K;
}
