/**
 * S4 / S4D layers built with the DSL: HiPPO-LegS and the diagonal initialisations
 * (S4D-LegS, S4D-Lin, S4D-Real), and an `s4Layer` whose representation
 * (FFT convolution, recurrence, direct sum) is chosen per sequence length.
 *
 * Parameters are the continuous ones (A, B, C, log Δ, D); discretisation (ZOH or
 * bilinear) happens inside the kernels, so training later updates the same
 * tensors the S4D papers do.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { Dim } from "../core/shape.ts";
import { discretiseDiagonal, type S4Discretisation, type S4Mode } from "../ops/s4/mod.ts";
import { mulberry32 as mulberry } from "../core/random.ts";

export { discretiseDiagonal, s4Choice, s4KernelF64 } from "../ops/s4/mod.ts";
export type { DiscreteS4, S4Choice, S4Discretisation, S4Mode } from "../ops/s4/mod.ts";

/**
 * Dense HiPPO matrices: A [N·N] row-major and B [N], float64.
 *
 * @example
 * ```ts
 * import { type HippoMatrices, hippoLegS } from "@kiln/kiln";
 * const h: HippoMatrices = hippoLegS(4);
 * [h.N, h.A.length, h.B.length]; // [4, 16, 4]
 * ```
 */
export interface HippoMatrices {
  /** State size. */
  readonly N: number;
  /** A, row-major N×N. */
  readonly A: Float64Array;
  /** B [N]. */
  readonly B: Float64Array;
}

/**
 * HiPPO-LegS: Aₙₖ = −√(2n+1)√(2k+1) (n > k), −(n+1) (n = k), 0 (n < k); Bₙ = √(2n+1).
 *
 * @example
 * ```ts
 * import { hippoLegS } from "@kiln/kiln";
 * const { A, B } = hippoLegS(2);
 * [A[0], A[2], A[3], B[1]]; // [-1, -√3, -2, √3]
 * ```
 */
export function hippoLegS(N: number): HippoMatrices {
  checkN(N, "hippoLegS", false);
  const A = new Float64Array(N * N), B = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    B[n] = Math.sqrt(2 * n + 1);
    for (let k = 0; k <= n; k++) {
      A[n * N + k] = n > k ? -Math.sqrt(2 * n + 1) * Math.sqrt(2 * k + 1) : -(n + 1);
    }
  }
  return { N, A, B };
}

/**
 * HiPPO-LegS as normal plus low rank: A = S − P Pᵀ with S = −½I + skew-symmetric.
 *
 * @example
 * ```ts
 * import { type HippoNplr, hippoLegSNplr } from "@kiln/kiln";
 * const { S, P }: HippoNplr = hippoLegSNplr(4);
 * P[0]; // √½
 * ```
 */
export interface HippoNplr {
  /** Normal part S [N·N]. */
  readonly S: Float64Array;
  /** Low-rank factor P [N], Pₙ = √(n + ½). */
  readonly P: Float64Array;
}

/**
 * The normal-plus-low-rank form of HiPPO-LegS that S4 diagonalises.
 *
 * @example
 * ```ts
 * import { hippoLegSNplr } from "@kiln/kiln";
 * const { S } = hippoLegSNplr(4);
 * S[0]; // −0.5: the diagonal of S is −½
 * ```
 */
export function hippoLegSNplr(N: number): HippoNplr {
  const { A } = hippoLegS(N);
  const P = new Float64Array(N);
  for (let n = 0; n < N; n++) P[n] = Math.sqrt(n + 0.5);
  const S = new Float64Array(N * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < N; k++) S[n * N + k] = A[n * N + k] + P[n] * P[k];
  }
  return { S, P };
}

/**
 * Eigenvalues of the normal part of HiPPO-LegS: −½ + iω with ω > 0, one per
 * conjugate pair (N/2 values, ascending ω) — S4D-LegS's diagonal A. Computed by
 * cyclic Jacobi on the symmetric positive semi-definite −K² (K the skew part),
 * whose eigenvalues are ω².
 *
 * @example
 * ```ts
 * import { hippoLegSDiagonal } from "@kiln/kiln";
 * const [re] = hippoLegSDiagonal(8);
 * re; // −0.5
 * ```
 */
export function hippoLegSDiagonal(N: number): Float64Array {
  checkN(N, "hippoLegSDiagonal", true);
  const { S } = hippoLegSNplr(N);
  // M = −K² = KᵀK with K = S + ½I.
  const K = S.map((v, i) => (i % (N + 1) === 0 ? v + 0.5 : v));
  const M = new Float64Array(N * N);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < N; k++) s += K[k * N + i] * K[k * N + j];
      M[i * N + j] = s;
    }
  }
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < N; p++) for (let q = p + 1; q < N; q++) off += M[p * N + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < N; p++) {
      for (let q = p + 1; q < N; q++) {
        const apq = M[p * N + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (M[q * N + q] - M[p * N + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < N; k++) {
          const mkp = M[k * N + p], mkq = M[k * N + q];
          M[k * N + p] = c * mkp - s * mkq;
          M[k * N + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < N; k++) {
          const mpk = M[p * N + k], mqk = M[q * N + k];
          M[p * N + k] = c * mpk - s * mqk;
          M[q * N + k] = s * mpk + c * mqk;
        }
      }
    }
  }
  const w = Array.from({ length: N }, (_, i) => Math.sqrt(Math.max(0, M[i * N + i])));
  w.sort((a, b) => a - b);
  // ω² come in equal pairs (±iω); keep one of each pair.
  const out = new Float64Array(N);
  for (let k = 0; k < N / 2; k++) {
    out[2 * k] = -0.5;
    out[2 * k + 1] = (w[2 * k] + w[2 * k + 1]) / 2;
  }
  return out;
}

/**
 * Initialisations of `s4Layer`.
 *
 * @example
 * ```ts
 * import { initS4, type S4Init } from "@kiln/kiln";
 * const init: S4Init = "legs";
 * const params = initS4({ H: 4, N: 8, init });
 * ```
 */
export type S4Init = "legs" | "lin" | "real";

/**
 * Parameters of one S4 layer as host arrays, keyed like the graph's params.
 *
 * @example
 * ```ts
 * import { initS4, type S4Params } from "@kiln/kiln";
 * const p: S4Params = initS4({ H: 2, N: 4, init: "lin", seed: 1 });
 * p.A.length; // H · N/2 · 2 = 8
 * ```
 */
export interface S4Params {
  /** A [H, N2, 2]. */
  readonly A: Float32Array;
  /** B [H, N2, 2]. */
  readonly B: Float32Array;
  /** C [H, N2, 2]. */
  readonly C: Float32Array;
  /** log Δ [H]. */
  readonly log_dt: Float32Array;
  /** D [H] (skip connection). */
  readonly D: Float32Array;
}

/**
 * Options of {@linkcode initS4}.
 *
 * @example
 * ```ts
 * import { initS4, type InitS4Options } from "@kiln/kiln";
 * const options: InitS4Options = { H: 8, N: 16, init: "real", seed: 7, dtMin: 0.01 };
 * const p = initS4(options);
 * ```
 */
export interface InitS4Options {
  /** Channels. */
  readonly H: number;
  /** State size N (N/2 stored complex states for `legs`/`lin`, N real ones for `real`). */
  readonly N: number;
  /** Initialisation. */
  readonly init: S4Init;
  /** Seed of C, Δ and D. */
  readonly seed?: number;
  /** Smallest Δ (default 0.001). */
  readonly dtMin?: number;
  /** Largest Δ (default 0.1). */
  readonly dtMax?: number;
}

/**
 * Stored states and conjugate-pair flag of an initialisation.
 *
 * @example
 * ```ts
 * import { storedStates } from "@kiln/kiln";
 * storedStates("lin", 16); // { N2: 8, conj: true }
 * storedStates("real", 16); // { N2: 16, conj: false }
 * ```
 */
export function storedStates(init: S4Init, N: number): { N2: number; conj: boolean } {
  return init === "real" ? { N2: N, conj: false } : { N2: N / 2, conj: true };
}

/**
 * S4D initial parameters: `lin` Aₙ = −½ + iπn; `real` Aₙ = −(n+1); `legs` the
 * eigenvalues of HiPPO-LegS's normal part. B = 1, C ~ N(0, ½) complex (real for
 * `real`), log Δ uniform in [log dtMin, log dtMax], D ~ N(0, 1).
 *
 * @example
 * ```ts
 * import { initS4 } from "@kiln/kiln";
 * const p = initS4({ H: 2, N: 4, init: "lin" });
 * [p.A[2], p.A[3]]; // [-0.5, π]
 * ```
 */
export function initS4(o: InitS4Options): S4Params {
  checkN(o.N, "initS4", o.init !== "real");
  if (!Number.isInteger(o.H) || o.H < 1) throw new RangeError(`initS4: H must be >= 1, got ${o.H}`);
  const { N2 } = storedStates(o.init, o.N);
  const rand = mulberry(o.seed ?? 0);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const legs = o.init === "legs" ? hippoLegSDiagonal(o.N) : undefined;
  const A = new Float32Array(o.H * N2 * 2), B = new Float32Array(o.H * N2 * 2);
  const C = new Float32Array(o.H * N2 * 2);
  for (let h = 0; h < o.H; h++) {
    for (let n = 0; n < N2; n++) {
      const j = 2 * (h * N2 + n);
      if (o.init === "lin") [A[j], A[j + 1]] = [-0.5, Math.PI * n];
      else if (o.init === "real") [A[j], A[j + 1]] = [-(n + 1), 0];
      else [A[j], A[j + 1]] = [legs![2 * n], legs![2 * n + 1]];
      B[j] = 1;
      C[j] = normal() * Math.SQRT1_2;
      C[j + 1] = o.init === "real" ? 0 : normal() * Math.SQRT1_2;
    }
  }
  const [lo, hi] = [Math.log(o.dtMin ?? 0.001), Math.log(o.dtMax ?? 0.1)];
  const log_dt = Float32Array.from({ length: o.H }, () => lo + (hi - lo) * rand());
  const D = Float32Array.from({ length: o.H }, normal);
  return { A, B, C, log_dt, D };
}

/**
 * ZOH or bilinear discretisation of one complex state (float64).
 *
 * @example
 * ```ts
 * import { discretise } from "@kiln/kiln";
 * const z = discretise([-1, 0], [1, 0], 0.5, "zoh");
 * z.abar[0]; // e^(−0.5)
 * ```
 */
export function discretise(
  a: readonly [number, number],
  b: readonly [number, number],
  dt: number,
  method: S4Discretisation,
): { abar: [number, number]; bbar: [number, number] } {
  const d = discretiseDiagonal(a, b, [Math.log(dt)], method);
  return { abar: [d.aRe[0], d.aIm[0]], bbar: [d.bRe[0], d.bIm[0]] };
}

/**
 * Options of {@linkcode s4Layer}.
 *
 * @example
 * ```ts
 * import { GraphBuilder, s4Layer, type S4LayerOptions } from "@kiln/kiln";
 * const options: S4LayerOptions = { name: "s4", H: 8, N: 16, mode: "conv", stateful: false };
 * const g = new GraphBuilder();
 * g.output("y", s4Layer(g, g.input("x", [1, "T", 8]), options));
 * ```
 */
export interface S4LayerOptions {
  /** Parameter prefix: `${name}.A`, `.B`, `.C`, `.log_dt`, `.D`; state `${name}.state`. */
  readonly name: string;
  /** Channels (x's last dim). */
  readonly H: number;
  /** State size N. */
  readonly N: number;
  /** Initialisation (decides stored states and conjugate pairs); default `lin`. */
  readonly init?: S4Init;
  /** Default `zoh`. */
  readonly discretisation?: S4Discretisation;
  /** Default `auto`: FFT convolution for prefill (T > 1), recurrence for decode (T = 1). */
  readonly mode?: S4Mode;
  /**
   * Keep the SSM state between runs (default true): prefill leaves the final state,
   * decode continues from it, `exe.resetStates()` starts a new sequence.
   */
  readonly stateful?: boolean;
  /** Add the D·x skip (default true). */
  readonly skip?: boolean;
}

/**
 * An S4D layer on x [B, T, H]: y = SSM(x) + D·x. Declares the params
 * `${name}.{A,B,C,log_dt,D}` (fill them with {@linkcode s4ParamRecord}) and, when
 * stateful, the state `${name}.state` [B, H, N2, 2].
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * import { s4Layer } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "T", 8]);
 * g.output("y", s4Layer(g, x, { name: "s4", H: 8, N: 16 }));
 * ```
 */
export function s4Layer(g: GraphBuilder, x: Tensor, o: S4LayerOptions): Tensor {
  const init = o.init ?? "lin";
  if (!["legs", "lin", "real"].includes(init)) {
    throw new TypeError(
      `s4Layer: init must be "legs", "lin" or "real", got ${JSON.stringify(init)}`,
    );
  }
  checkN(o.N, `s4Layer "${o.name}"`, init !== "real");
  if (x.rank !== 3 || x.shape[2] !== o.H) {
    throw new RangeError(
      `s4Layer "${o.name}": x must be [B, T, H] with H = ${o.H}, got [${x.shape.join(", ")}]`,
    );
  }
  const { N2, conj } = storedStates(init, o.N);
  const p = (k: string, shape: Dim[]) => g.param(`${o.name}.${k}`, shape);
  const A = p("A", [o.H, N2, 2]), B = p("B", [o.H, N2, 2]), C = p("C", [o.H, N2, 2]);
  const dt = p("log_dt", [o.H]);
  const attrs = {
    mode: o.mode ?? "auto",
    discretisation: o.discretisation ?? "zoh",
    conj,
    name: o.name,
  };
  let y: Tensor;
  if (o.stateful ?? true) {
    const state = g.state(`${o.name}.state`, [x.shape[0], o.H, N2, 2]);
    const [out, next] = g.apply("s4_state", [x, A, B, C, dt, state], attrs);
    g.assign(state, next);
    y = out;
  } else {
    y = g.apply("s4", [x, A, B, C, dt], attrs)[0];
  }
  return (o.skip ?? true) ? y.add(x.mul(p("D", [o.H]))) : y;
}

/**
 * Param values of an `s4Layer` named `name`, for `compile(..., { params })`
 * (`skip: false` leaves out D, for a layer built without the skip).
 *
 * @example
 * ```ts
 * import { initS4, s4ParamRecord } from "@kiln/kiln";
 * const params = s4ParamRecord("s4", initS4({ H: 8, N: 16, init: "lin" }));
 * Object.keys(params); // ["s4.A", "s4.B", "s4.C", "s4.log_dt", "s4.D"]
 * ```
 */
export function s4ParamRecord(
  name: string,
  p: S4Params,
  skip = true,
): Record<string, Float32Array> {
  return {
    [`${name}.A`]: p.A,
    [`${name}.B`]: p.B,
    [`${name}.C`]: p.C,
    [`${name}.log_dt`]: p.log_dt,
    ...(skip ? { [`${name}.D`]: p.D } : {}),
  };
}

/**
 * K̄ [H, length] computed on the GPU by the Vandermonde product (`s4_kernel` op).
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * import { s4Kernel } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const [A, B, C] = ["A", "B", "C"].map((k) => g.param(k, [4, 8, 2]));
 * g.output("K", s4Kernel(g, A, B, C, g.param("log_dt", [4]), { length: 64 }));
 * ```
 */
export function s4Kernel(
  g: GraphBuilder,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  logDt: Tensor,
  o: { length: Dim; discretisation?: S4Discretisation; conj?: boolean },
): Tensor {
  return g.apply("s4_kernel", [A, B, C, logDt], {
    length: o.length,
    discretisation: o.discretisation ?? "zoh",
    conj: o.conj ?? true,
  })[0];
}

/**
 * Causal convolution y[b, t, h] = Σₛ k[h, s]·x[b, t − s, h] of x [..., T, H] with
 * k [H, Lk]: by FFT (`method: "fft"`, default) or the direct sum.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * import { longConv } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "T", 4]);
 * g.output("y", longConv(g, x, g.input("k", [4, "T"])));
 * ```
 */
export function longConv(
  g: GraphBuilder,
  x: Tensor,
  k: Tensor,
  method: "fft" | "direct" = "fft",
): Tensor {
  if (method !== "fft" && method !== "direct") {
    throw new TypeError(
      `longConv: method must be "fft" or "direct", got ${JSON.stringify(method)}`,
    );
  }
  return g.apply(method === "fft" ? "fft_conv" : "direct_conv", [x, k], {})[0];
}

/**
 * DFT of complex x [..., L, 2] zero-padded (or cropped) to `n` (a power of two),
 * on the GPU; `inverse` scales by 1/n.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * import { fft } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("X", fft(g, g.input("x", [3, 100, 2]), { n: 128 }));
 * ```
 */
export function fft(g: GraphBuilder, x: Tensor, o: { n: number; inverse?: boolean }): Tensor {
  return g.apply("fft", [x], { n: o.n, inverse: o.inverse ?? false })[0];
}

function checkN(N: number, what: string, even: boolean) {
  if (!Number.isInteger(N) || N < 1 || (even && N % 2 !== 0)) {
    throw new RangeError(
      `${what}: N must be ${even ? "an even" : "an"} integer >= ${even ? 2 : 1}, got ${N}`,
    );
  }
}
