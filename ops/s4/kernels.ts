/**
 * WGSL of the S4 kernels: discretisation on the device (`s4_disc`), the
 * Vandermonde product K̄ₗ = c·Re Σₙ Cₙ B̄ₙ Āₙˡ, the recurrence, and the stateful
 * pieces the convolution forms need (the initial state's response and the final
 * state). Every kernel reaches its operands through its own `KernelIo`.
 *
 * @module
 */

import type { DeviceCaps, KernelSource } from "../types.ts";
import { f32, flatKernel, KernelIo } from "../wgsl/mod.ts";
import { WGSL_COMPLEX } from "../fft/mod.ts";
import type { S4Discretisation } from "./discretise.ts";

/** Outputs each thread of the Vandermonde kernels computes (powers stepped by Ā in between). */
const CHUNK = 8;

/**
 * What the S4 kernels are generated for.
 *
 * @example
 * ```ts ignore
 * const s: S4Wgsl = { H: 8, N2: 32, disc: "zoh", conj: true, ins: [1, 2, 3, 4] };
 * ```
 */
export interface S4Wgsl {
  /** Channels. */
  readonly H: number;
  /** Stored states per channel. */
  readonly N2: number;
  /** ZOH or bilinear. */
  readonly disc: S4Discretisation;
  /** Conjugate-pair states (factor 2 on the real part). */
  readonly conj: boolean;
  /** Input indices of A, B, C, log_dt. */
  readonly ins: readonly [number, number, number, number];
}

/** WGSL of `s4_disc(h, n)`: Ā, B̄ and log Ā (for powers) of one state, plus `s4_c(h, n)`. */
function discWgsl(s: S4Wgsl, io: KernelIo): string {
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
  return vec2<f32>(${io.load(ic, "j")}, ${io.load(ic, "j + 1u")});
}
fn s4_disc(h: u32, n: u32) -> S4Disc {
  let j = 2u * (h * ${s.N2}u + n);
  let a = vec2<f32>(${io.load(ia, "j")}, ${io.load(ia, "j + 1u")});
  let b = vec2<f32>(${io.load(ib, "j")}, ${io.load(ib, "j + 1u")});
  let dt = exp(${io.load(idt, "h")});
  let za = dt * a;
${s.disc === "zoh" ? zoh : bil}
}`;
}

/** The output factor c: 2 for conjugate pairs (2·Re), else 1. */
function factor(s: S4Wgsl): string {
  return f32(s.conj ? 2 : 1);
}

/**
 * Vandermonde kernel: for ℓ < `len`, c·Re Σₙ Cₙ B̄ₙ Āₙˡ; threads cover [H, `span`]
 * (zero for len ≤ ℓ < span) and `store(io, h, l, v)` writes value v of (h, ℓ).
 *
 * @example
 * ```ts ignore
 * vandermondeKernel(s, L, L, caps, (io, h, l, v) => `${io.store(0, `${h} * ${L}u + ${l}`, v)};`, "vandermonde");
 * ```
 */
export function vandermondeKernel(
  s: S4Wgsl,
  len: number,
  span: number,
  caps: DeviceCaps,
  store: (io: KernelIo, h: string, l: string, v: string) => string,
  label: string,
): KernelSource {
  const io = new KernelIo();
  const chunks = Math.ceil(span / CHUNK);
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
      ${store(io, "h", "l", `select(0.0, ${factor(s)} * acc[q], l < ${len}u)`)}
    }
  }`;
  return flatKernel(label, s.H * chunks, caps, body, discWgsl(s, io), io);
}

/**
 * Stateful pieces: the initial state's response into scratch `ys`, and the
 * final state (both read the state from output 1, where it starts).
 *
 * @example
 * ```ts ignore
 * const { response, final } = stateKernels(s, B, T, 5, caps);
 * ```
 */
export function stateKernels(
  s: S4Wgsl,
  Bt: number,
  T: number,
  ys: number,
  caps: DeviceCaps,
): { response: KernelSource; final: KernelSource } {
  const { H, N2 } = s;
  const chunks = Math.ceil(T / CHUNK);
  const rio = new KernelIo();
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
    let h0 = vec2<f32>(${rio.out(1)}[at], ${rio.out(1)}[at + 1u]);
    // C·Ā^(t+1)·h0 for t = t0, t0 + 1, …
    var p = c_mul(c_mul(s4_c(h, n), h0), c_exp(f32(t0 + 1u) * d.loga));
    for (var q = 0u; q < ${CHUNK}u; q = q + 1u) {
      acc[q] = acc[q] + p.x;
      p = c_mul(p, d.abar);
    }
  }
  for (var q = 0u; q < ${CHUNK}u; q = q + 1u) {
    let t = t0 + q;
    if (t < ${T}u) { ${rio.scratch(ys)}[((bh / ${H}u) * ${T}u + t) * ${H}u + h] = ${
      factor(s)
    } * acc[q]; }
  }`,
    discWgsl(s, rio),
    rio,
  );
  const fio = new KernelIo();
  const state = fio.out(1);
  const final = flatKernel(
    "final_state",
    Bt * H * N2,
    caps,
    `  let n = i % ${N2}u;
  let bh = i / ${N2}u;
  let h = bh % ${H}u;
  let d = s4_disc(h, n);
  var st = vec2<f32>(${state}[2u * i], ${state}[2u * i + 1u]);
  let row = (bh / ${H}u) * ${T * H}u + h;
  for (var t = 0u; t < ${T}u; t = t + 1u) {
    st = c_mul(d.abar, st) + d.bbar * ${fio.load(0, `row + t * ${H}u`)};
  }
  ${state}[2u * i] = st.x;
  ${state}[2u * i + 1u] = st.y;`,
    discWgsl(s, fio),
    fio,
  );
  return { response, final };
}

/**
 * One thread per (b, h) walks T steps with the N2 states in registers; with
 * `stateful` it starts from output 1 and leaves the last state there.
 *
 * @example
 * ```ts ignore
 * const k = recurrentKernel(s, B, 1, true, caps); // a decode step
 * ```
 */
export function recurrentKernel(
  s: S4Wgsl,
  Bt: number,
  T: number,
  stateful: boolean,
  caps: DeviceCaps,
): KernelSource {
  const { H, N2 } = s;
  const io = new KernelIo();
  const state = (): string => io.out(1);
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
        ? `st[n] = vec2<f32>(${state()}[2u * (i * ${N2}u + n)], ${state()}[2u * (i * ${N2}u + n) + 1u]);`
        : ""
    }
  }
  let row = (i / ${H}u) * ${T * H}u + h;
  for (var t = 0u; t < ${T}u; t = t + 1u) {
    let xv = ${io.load(0, `row + t * ${H}u`)};
    var acc = 0.0;
    for (var n = 0u; n < ${N2}u; n = n + 1u) {
      let v = c_mul(ab[n], st[n]) + bb[n] * xv;
      st[n] = v;
      acc = acc + cc[n].x * v.x - cc[n].y * v.y;
    }
    ${io.store(0, `row + t * ${H}u`, `${factor(s)} * acc`)};
  }${
      stateful
        ? `
  for (var n = 0u; n < ${N2}u; n = n + 1u) {
    ${state()}[2u * (i * ${N2}u + n)] = st[n].x;
    ${state()}[2u * (i * ${N2}u + n) + 1u] = st[n].y;
  }`
        : ""
    }`,
    discWgsl(s, io),
    io,
  );
}
