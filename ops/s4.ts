/**
 * S4 / S4D ops: a diagonal linear time-invariant SSM run in one of three
 * representations, chosen when the plan is built for a concrete T.
 *
 * Parameters per channel h (H channels) and stored state n (N2 of them):
 * continuous `A [H, N2, 2]`, `B [H, N2, 2]`, `C [H, N2, 2]` (complex as re, im)
 * and `log_dt [H]`. Discretisation (attribute): ZOH Ā = exp(ΔA),
 * B̄ = (exp(ΔA) − 1)/A · B, or bilinear Ā = (1 + ΔA/2)/(1 − ΔA/2),
 * B̄ = ΔB/(1 − ΔA/2). With `conj` the N2 stored states stand for N = 2·N2 states
 * in conjugate pairs and the output is 2·Re(C·h); without it (real S4D-Real
 * states) the output is Re(C·h).
 *
 * - `s4_kernel(A, B, C, log_dt)` → K̄ [H, L]: the Vandermonde product
 *   K̄ₗ = c·Re Σₙ Cₙ B̄ₙ Āₙˡ on the GPU.
 * - `s4(x [B, T, H], A, B, C, log_dt)` → y [B, T, H] from a zero state.
 * - `s4_state(x, A, B, C, log_dt, state [B, H, N2, 2])` → [y, new state]: starts
 *   from `state` and returns the state after the last step, updated in place.
 *
 * Representations (`mode`): `recurrent` (hₜ = Ā hₜ₋₁ + B̄ xₜ, yₜ = c·Re(C hₜ),
 * one thread per (b, h)); `conv` (K̄ by Vandermonde, then FFT convolution padded
 * to ≥ 2T); `direct` (K̄, then the O(T²) causal sum); `auto` picks the recurrence
 * for decode (T = 1) and the FFT convolution for prefill (T > 1). The chosen
 * representation and the reason are in the first kernel's label, so
 * `exe.inspect()` shows them. With a state, the conv and direct forms add the
 * initial state's response c·Re Σₙ Cₙ Āₙᵗ⁺¹ hₙ and compute the final state
 * Āᵀh + Σₛ Āᵀ⁻¹⁻ˢ B̄ xₛ, so prefill by convolution hands over to decode.
 *
 * @module
 */

import { formatShape } from "../core/shape.ts";
import type { TensorType } from "../core/graph.ts";
import type { Dim } from "../core/shape.ts";
import type { DeviceCaps, HostTensor, KernelEmission, KernelSource, OpDef } from "./types.ts";
import { flatKernel } from "./layout.ts";
import { convFftKernels, convFftLength, directConvKernel, WGSL_COMPLEX } from "./fft.ts";

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
 * Representation requested for an S4 layer.
 *
 * @example
 * ```ts
 * import { s4Choice, type S4Mode } from "@kiln/kiln";
 * const mode: S4Mode = "auto";
 * s4Choice(mode, 1).representation; // "recurrent"
 * ```
 */
export type S4Mode = "auto" | "conv" | "recurrent" | "direct";

/**
 * Attributes of `s4` and `s4_state`.
 *
 * @example
 * ```ts
 * import type { S4Attrs } from "@kiln/kiln";
 * const attrs: S4Attrs = { mode: "auto", discretisation: "zoh", conj: true, name: "s4" };
 * ```
 */
export interface S4Attrs {
  /** Representation: `auto` chooses per T when the plan is built. */
  readonly mode: S4Mode;
  /** ZOH or bilinear. */
  readonly discretisation: S4Discretisation;
  /** States are conjugate pairs (output 2·Re) rather than independent (output Re). */
  readonly conj: boolean;
  /** Layer name shown in plans. */
  readonly name: string;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: string | boolean;
}

/**
 * Attributes of `s4_kernel`.
 *
 * @example
 * ```ts
 * import type { S4KernelAttrs } from "@kiln/kiln";
 * const attrs: S4KernelAttrs = { length: "T", discretisation: "zoh", conj: true };
 * ```
 */
export interface S4KernelAttrs {
  /** Kernel length L (a number or a symbolic dimension). */
  readonly length: Dim;
  /** ZOH or bilinear. */
  readonly discretisation: S4Discretisation;
  /** Conjugate-pair states (factor 2 on the real part). */
  readonly conj: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: Dim | boolean;
}

/**
 * The representation a plan uses and why.
 *
 * @example
 * ```ts
 * import { type S4Choice, s4Choice } from "@kiln/kiln";
 * const c: S4Choice = s4Choice("auto", 512);
 * console.log(c.representation, c.reason); // "fft" and why
 * ```
 */
export interface S4Choice {
  /** Representation used. */
  readonly representation: "fft" | "recurrent" | "direct";
  /** One-line reason, shown in plans. */
  readonly reason: string;
}

const MODES: readonly string[] = ["auto", "conv", "recurrent", "direct"];
const DISCS: readonly string[] = ["zoh", "bilinear"];

/**
 * Which representation an S4 layer runs for sequence length `T`, and why.
 *
 * @example
 * ```ts
 * import { s4Choice } from "@kiln/kiln";
 * s4Choice("auto", 1).representation; // "recurrent"
 * s4Choice("auto", 512).representation; // "fft"
 * ```
 */
export function s4Choice(mode: S4Mode, T: number): S4Choice {
  if (mode === "conv") {
    return {
      representation: "fft",
      reason: `mode "conv": FFT convolution, n = ${convFftLength(T, T)}`,
    };
  }
  if (mode === "direct") {
    return { representation: "direct", reason: `mode "direct": O(T²) causal sum` };
  }
  if (mode === "recurrent") {
    return { representation: "recurrent", reason: `mode "recurrent": T = ${T} sequential steps` };
  }
  if (T <= 1) {
    return {
      representation: "recurrent",
      reason:
        `auto: T = ${T} is decode, the recurrence costs O(N) per token and updates the state in place`,
    };
  }
  return {
    representation: "fft",
    reason: `auto: T = ${T} > 1 is prefill, FFT convolution (n = ${
      convFftLength(T, T)
    }) is O(T log T) and parallel over T, vs O(T²) direct and T sequential recurrence steps`,
  };
}

function checkParams(
  op: string,
  ps: readonly TensorType[],
  attrs: { discretisation: unknown; conj: unknown },
) {
  const [A, B, C, dt] = ps;
  const show = `${op}(A ${formatShape(A.shape)}, B ${formatShape(B.shape)}, C ${
    formatShape(C.shape)
  }, log_dt ${formatShape(dt.shape)})`;
  for (const [name, t] of [["A", A], ["B", B], ["C", C], ["log_dt", dt]] as const) {
    if (t.dtype !== "f32") throw new TypeError(`${op}: ${name} must be f32, got ${t.dtype}`);
  }
  if (A.shape.length !== 3 || A.shape[2] !== 2) {
    throw new RangeError(`${show}: A must be complex [H, N2, 2]`);
  }
  const [H, N2] = A.shape;
  for (const [name, t] of [["B", B], ["C", C]] as const) {
    if (formatShape(t.shape) !== formatShape(A.shape)) {
      throw new RangeError(`${show}: ${name} must have A's shape ${formatShape(A.shape)}`);
    }
  }
  if (dt.shape.length !== 1 || dt.shape[0] !== H) {
    throw new RangeError(`${show}: log_dt must be [H] = [${H}]`);
  }
  if (typeof H !== "number" || typeof N2 !== "number") {
    throw new RangeError(`${show}: H and N2 must be concrete`);
  }
  if (!DISCS.includes(attrs.discretisation as string)) {
    throw new TypeError(
      `${op}: discretisation must be "zoh" or "bilinear", got ${
        JSON.stringify(attrs.discretisation)
      }`,
    );
  }
  if (typeof attrs.conj !== "boolean") {
    throw new TypeError(`${op}: conj must be a boolean, got ${JSON.stringify(attrs.conj)}`);
  }
  return { H, N2 };
}

// ---------------------------------------------------------------- CPU (float64)

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

/** Float64 recurrence: the reference of `s4` / `s4_state`. Mutates `state` ([B, H, N2, 2] flat). */
function recurrenceF64(
  x: HostTensor,
  [A, B, C, dt]: readonly HostTensor[],
  attrs: { discretisation: S4Discretisation; conj: boolean },
  state: Float64Array,
): Float32Array {
  const [Bt, T, H] = x.shape;
  const N2 = A.shape[1];
  const d = discretiseDiagonal(A.data, B.data, dt.data, attrs.discretisation);
  const cf = attrs.conj ? 2 : 1;
  const y = new Float32Array(Bt * T * H);
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

// ---------------------------------------------------------------- WGSL

/** Outputs each thread of the Vandermonde kernels computes (powers stepped by Ā in between). */
const CHUNK = 8;

interface S4Wgsl {
  readonly H: number;
  readonly N2: number;
  readonly disc: S4Discretisation;
  readonly conj: boolean;
  /** Input indices of A, B, C, log_dt. */
  readonly ins: readonly [number, number, number, number];
}

/** WGSL of `s4_disc(h, n)`: Ā, B̄ and log Ā (for powers) of one state, plus `s4_c(h, n)`. */
function discWgsl(s: S4Wgsl): string {
  const [ia, ib, ic, idt] = s.ins;
  const zoh = `  let em1 = c_expm1(za);
  // (exp(ΔA) − 1)/(ΔA), with its limit 1 + ΔA/2 where ΔA ≈ 0.
  let q = select(c_div(em1, za), vec2<f32>(1.0, 0.0) + 0.5 * za, dot(za, za) < 1e-20);
  return S4Disc(em1 + vec2<f32>(1.0, 0.0), c_mul(q, dt * b), za);`;
  const bil = `  let den = vec2<f32>(1.0, 0.0) - 0.5 * za;
  let abar = c_div(vec2<f32>(1.0, 0.0) + 0.5 * za, den);
  // log|Ā| = ½(log1p(|1+z/2|² − 1) − log1p(|1−z/2|² − 1)): accurate when |Ā| ≈ 1.
  let u = za.x + 0.25 * dot(za, za);
  let lg = 0.5 * (r_log1p(u) - r_log1p(-za.x + 0.25 * dot(za, za)));
  return S4Disc(abar, c_div(dt * b, den), vec2<f32>(lg, atan2(abar.y, abar.x)));`;
  return `${WGSL_COMPLEX}
struct S4Disc { abar: vec2<f32>, bbar: vec2<f32>, loga: vec2<f32> }
fn r_expm1(x: f32) -> f32 {
  if (abs(x) < 1e-2) { return x * (1.0 + x * (0.5 + x * (0.16666667 + x * 0.041666668))); }
  return exp(x) - 1.0;
}
fn r_log1p(x: f32) -> f32 {
  if (abs(x) < 1e-2) { return x * (1.0 - x * (0.5 - x * (0.33333334 - x * 0.25))); }
  return log(1.0 + x);
}
fn c_expm1(a: vec2<f32>) -> vec2<f32> {
  // e^x·cos y − 1 = expm1(x)·cos y − 2·sin²(y/2): no cancellation for small z.
  let s = sin(0.5 * a.y);
  return vec2<f32>(r_expm1(a.x) * cos(a.y) - 2.0 * s * s, exp(a.x) * sin(a.y));
}
fn s4_c(h: u32, n: u32) -> vec2<f32> {
  let j = 2u * (h * ${s.N2}u + n);
  return vec2<f32>(in${ic}_load(j), in${ic}_load(j + 1u));
}
fn s4_disc(h: u32, n: u32) -> S4Disc {
  let j = 2u * (h * ${s.N2}u + n);
  let a = vec2<f32>(in${ia}_load(j), in${ia}_load(j + 1u));
  let b = vec2<f32>(in${ib}_load(j), in${ib}_load(j + 1u));
  let dt = exp(in${idt}_load(h));
  let za = dt * a;
${s.disc === "zoh" ? zoh : bil}
}`;
}

/**
 * Vandermonde kernel: for ℓ < `len`, c·Re Σₙ Cₙ B̄ₙ Āₙˡ; threads cover [H, `span`]
 * (zero for len ≤ ℓ < span) and `store(h, l, v)` writes value v of (h, ℓ).
 */
function vandermondeKernel(
  s: S4Wgsl,
  len: number,
  span: number,
  caps: DeviceCaps,
  store: (h: string, l: string, v: string) => string,
  label: string,
): KernelSource {
  const chunks = Math.ceil(span / CHUNK);
  const cf = s.conj ? "2.0" : "1.0";
  const body = `  let h = i / ${chunks}u;
  let l0 = (i % ${chunks}u) * ${CHUNK}u;
  var acc: array<f32, ${CHUNK}>;
  if (l0 < ${len}u) {
    for (var n = 0u; n < ${s.N2}u; n = n + 1u) {
      let d = s4_disc(h, n);
      let coef = c_mul(s4_c(h, n), d.bbar);
      var p = c_mul(coef, c_exp(f32(l0) * d.loga));
      for (var q = 0u; q < ${CHUNK}u; q = q + 1u) {
        acc[q] = acc[q] + p.x;
        p = c_mul(p, d.abar);
      }
    }
  }
  for (var q = 0u; q < ${CHUNK}u; q = q + 1u) {
    let l = l0 + q;
    if (l < ${span}u) {
      ${store("h", "l", `select(0.0, ${cf} * acc[q], l < ${len}u)`)}
    }
  }`;
  return flatKernel(label, s.H * chunks, caps, body, discWgsl(s));
}

/** Stateful pieces: the initial state's response into scratch `ys`, and the final state. */
function stateKernels(
  s: S4Wgsl,
  Bt: number,
  T: number,
  ys: number,
  caps: DeviceCaps,
): { response: KernelSource; final: KernelSource } {
  const { H, N2 } = s;
  const chunks = Math.ceil(T / CHUNK);
  const cf = s.conj ? "2.0" : "1.0";
  const response = flatKernel(
    "state_response",
    Bt * H * chunks,
    caps,
    `  let bh = i / ${chunks}u;
  let h = bh % ${H}u;
  let t0 = (i % ${chunks}u) * ${CHUNK}u;
  var acc: array<f32, ${CHUNK}>;
  for (var n = 0u; n < ${N2}u; n = n + 1u) {
    let d = s4_disc(h, n);
    let at = 2u * (bh * ${N2}u + n);
    let h0 = vec2<f32>(out1[at], out1[at + 1u]);
    // C·Ā^(t+1)·h0 for t = t0, t0 + 1, …
    var p = c_mul(c_mul(s4_c(h, n), h0), c_exp(f32(t0 + 1u) * d.loga));
    for (var q = 0u; q < ${CHUNK}u; q = q + 1u) {
      acc[q] = acc[q] + p.x;
      p = c_mul(p, d.abar);
    }
  }
  for (var q = 0u; q < ${CHUNK}u; q = q + 1u) {
    let t = t0 + q;
    if (t < ${T}u) { scratch${ys}[((bh / ${H}u) * ${T}u + t) * ${H}u + h] = ${cf} * acc[q]; }
  }`,
    discWgsl(s),
  );
  const final = flatKernel(
    "final_state",
    Bt * H * N2,
    caps,
    `  let n = i % ${N2}u;
  let bh = i / ${N2}u;
  let h = bh % ${H}u;
  let d = s4_disc(h, n);
  var st = vec2<f32>(out1[2u * i], out1[2u * i + 1u]);
  let row = (bh / ${H}u) * ${T * H}u + h;
  for (var t = 0u; t < ${T}u; t = t + 1u) {
    st = c_mul(d.abar, st) + d.bbar * in0_load(row + t * ${H}u);
  }
  out1[2u * i] = st.x;
  out1[2u * i + 1u] = st.y;`,
    discWgsl(s),
  );
  return { response, final };
}

/** One thread per (b, h) walks T steps with the N2 states in registers. */
function recurrentKernel(s: S4Wgsl, Bt: number, T: number, stateful: boolean, caps: DeviceCaps) {
  const { H, N2 } = s;
  const cf = s.conj ? "2.0" : "1.0";
  return flatKernel(
    "recurrence",
    Bt * H,
    caps,
    `  let h = i % ${H}u;
  var ab: array<vec2<f32>, ${N2}>;
  var bb: array<vec2<f32>, ${N2}>;
  var cc: array<vec2<f32>, ${N2}>;
  var st: array<vec2<f32>, ${N2}>;
  for (var n = 0u; n < ${N2}u; n = n + 1u) {
    let d = s4_disc(h, n);
    ab[n] = d.abar;
    bb[n] = d.bbar;
    cc[n] = s4_c(h, n);
    ${
      stateful
        ? `st[n] = vec2<f32>(out1[2u * (i * ${N2}u + n)], out1[2u * (i * ${N2}u + n) + 1u]);`
        : ""
    }
  }
  let row = (i / ${H}u) * ${T * H}u + h;
  for (var t = 0u; t < ${T}u; t = t + 1u) {
    let xv = in0_load(row + t * ${H}u);
    var acc = 0.0;
    for (var n = 0u; n < ${N2}u; n = n + 1u) {
      let v = c_mul(ab[n], st[n]) + bb[n] * xv;
      st[n] = v;
      acc = acc + cc[n].x * v.x - cc[n].y * v.y;
    }
    out0_store(row + t * ${H}u, ${cf} * acc);
  }${
      stateful
        ? `
  for (var n = 0u; n < ${N2}u; n = n + 1u) {
    out1[2u * (i * ${N2}u + n)] = st[n].x;
    out1[2u * (i * ${N2}u + n) + 1u] = st[n].y;
  }`
        : ""
    }`,
    discWgsl(s),
  );
}

function emitS4(
  attrs: S4Attrs,
  inputs: readonly { shape: readonly number[] }[],
  outputs: readonly { direct: boolean }[],
  caps: DeviceCaps,
  stateful: boolean,
): KernelEmission {
  const [Bt, T, H] = inputs[0].shape;
  const N2 = inputs[1].shape[1];
  if (stateful && !outputs[1].direct) {
    throw new RangeError(
      `s4_state "${attrs.name}": state of ${Bt * H * N2 * 8} bytes exceeds one binding`,
    );
  }
  const s: S4Wgsl = { H, N2, disc: attrs.discretisation, conj: attrs.conj, ins: [1, 2, 3, 4] };
  const choice = s4Choice(attrs.mode, T);
  const head = (k: KernelSource, i: number): KernelSource => ({
    ...k,
    label: i === 0
      ? `[${choice.representation}] ${
        attrs.name ? `"${attrs.name}" ` : ""
      }${choice.reason}; ${k.label}`
      : `${choice.representation}/${k.label}`,
  });
  if (choice.representation === "recurrent") {
    return { kernels: [recurrentKernel(s, Bt, T, stateful, caps)].map(head) };
  }
  const sk = stateful
    ? stateKernels(s, Bt, T, choice.representation === "fft" ? 5 : 1, caps)
    : undefined;
  if (choice.representation === "direct") {
    // K̄ stored [T, H] so that neighbouring threads (channels) read neighbouring taps.
    const k = vandermondeKernel(
      s,
      T,
      T,
      caps,
      (h, l, v) => `scratch0[${l} * ${H}u + ${h}] = ${v};`,
      "vandermonde",
    );
    const conv = directConvKernel(
      T,
      H,
      T,
      Bt * T * H,
      caps,
      (h, l) => `scratch0[${l} * ${H}u + ${h}]`,
      sk ? "scratch1[i]" : "",
    );
    return {
      kernels: [k, ...(sk ? [sk.response] : []), conv, ...(sk ? [sk.final] : [])].map(head),
      scratch: [
        { length: H * T, type: "f32" },
        ...(sk ? [{ length: Bt * T * H, type: "f32" as const }] : []),
      ],
    };
  }
  const n = convFftLength(T, T);
  const packK = vandermondeKernel(
    s,
    T,
    n,
    caps,
    (h, l, v) => `scratch1[${h} * ${n}u + ${l}] = vec2<f32>(${v}, 0.0);`,
    "vandermonde",
  );
  const conv = convFftKernels({
    batch: Bt,
    T,
    H,
    n,
    caps,
    packK,
    extra: sk ? "scratch5[i]" : "",
    scratch: sk ? [{ length: Bt * T * H, type: "f32" }] : [],
    first: sk ? [sk.response] : [],
  });
  return {
    kernels: [...conv.kernels, ...(sk ? [sk.final] : [])].map(head),
    scratch: conv.scratch,
  };
}

function inferS4(op: string, inputs: readonly TensorType[], attrs: S4Attrs, stateful: boolean) {
  const [x, ...rest] = inputs;
  const { H, N2 } = checkParams(op, rest.slice(0, 4), attrs);
  if (!MODES.includes(attrs.mode)) {
    throw new TypeError(
      `${op}: mode must be "auto", "conv", "recurrent" or "direct", got ${
        JSON.stringify(attrs.mode)
      }`,
    );
  }
  if (typeof attrs.name !== "string") throw new TypeError(`${op}: name must be a string`);
  if (x.dtype !== "f32") throw new TypeError(`${op}: x must be f32, got ${x.dtype}`);
  if (x.shape.length !== 3 || x.shape[2] !== H) {
    throw new RangeError(
      `${op}: x must be [B, T, H] with H = ${H} (from A), got ${formatShape(x.shape)}`,
    );
  }
  const out: TensorType[] = [{ shape: x.shape, dtype: "f32" }];
  if (stateful) {
    const st = inputs[5];
    const want = [x.shape[0], H, N2, 2];
    if (formatShape(st.shape) !== formatShape(want) || st.dtype !== "f32") {
      throw new RangeError(
        `${op}: state must be f32${formatShape(want)} ([B, H, N2, 2]), got ${st.dtype}${
          formatShape(st.shape)
        }`,
      );
    }
    out.push({ shape: st.shape, dtype: "f32" });
  }
  return out;
}

/** s4(x [B, T, H], A, B, C, log_dt) → y [B, T, H], from a zero state. */
export const s4: OpDef<S4Attrs> = {
  arity: 5,
  attrNames: ["mode", "discretisation", "conj", "name"],
  infer(inputs, attrs) {
    return inferS4("s4", inputs, attrs, false);
  },
  reference([x, ...ps], attrs) {
    const [Bt, , H] = x.shape;
    const state = new Float64Array(Bt * H * ps[0].shape[1] * 2);
    return [recurrenceF64(x, ps, attrs, state)];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ attrs, inputs, outputs, caps }) {
      return emitS4(attrs, inputs, outputs, caps, false);
    },
  },
};

/** s4_state(x, A, B, C, log_dt, state [B, H, N2, 2]) → [y, state after the last step]. */
export const s4State: OpDef<S4Attrs> = {
  arity: 6,
  attrNames: ["mode", "discretisation", "conj", "name"],
  infer(inputs, attrs) {
    return inferS4("s4_state", inputs, attrs, true);
  },
  reference([x, A, B, C, dt, st], attrs) {
    const state = Float64Array.from(st.data);
    const y = recurrenceF64(x, [A, B, C, dt], attrs, state);
    return [y, Float32Array.from(state)];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    inplace: [[1, 5]],
    emit({ attrs, inputs, outputs, caps }) {
      return emitS4(attrs, inputs, outputs, caps, true);
    },
  },
  foldable: false,
};

/** s4_kernel(A, B, C, log_dt) → K̄ [H, length]. */
export const s4Kernel: OpDef<S4KernelAttrs> = {
  arity: 4,
  attrNames: ["length", "discretisation", "conj"],
  infer(inputs, attrs) {
    const { H } = checkParams("s4_kernel", inputs, attrs);
    const L = attrs.length;
    if (!(typeof L === "string" && L.length > 0) && !(Number.isInteger(L) && (L as number) >= 1)) {
      throw new RangeError(
        `s4_kernel: length must be an integer >= 1 or a symbol, got ${JSON.stringify(L)}`,
      );
    }
    return [{ shape: [H, L], dtype: "f32" }];
  },
  reference([A, B, C, dt], attrs, [out]) {
    const K = s4KernelF64(
      A.data,
      B.data,
      C.data,
      dt.data,
      out.shape[1],
      attrs.discretisation,
      attrs.conj,
    );
    return [Float32Array.from(K)];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ attrs, inputs, outputs, caps }) {
      const [H, N2] = inputs[0].shape;
      const L = outputs[0].shape[1];
      const s: S4Wgsl = { H, N2, disc: attrs.discretisation, conj: attrs.conj, ins: [0, 1, 2, 3] };
      return {
        kernels: [
          vandermondeKernel(
            s,
            L,
            L,
            caps,
            (h, l, v) => `out0_store(${h} * ${L}u + ${l}, ${v});`,
            "vandermonde",
          ),
        ],
      };
    },
  },
};
