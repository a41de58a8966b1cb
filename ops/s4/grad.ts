/**
 * `s4_kernel_grad`: the gradient of the Vandermonde kernel generation
 * K̄ₗ = c·Re Σₙ Wₙ Āₙˡ (Wₙ = Cₙ B̄ₙ) with respect to the continuous parameters
 * A, B, C and log Δ, given dK̄ [H, L].
 *
 * Per state, everything follows from two polynomials in Ā evaluated by Horner
 * (stable for |Ā| ≤ 1, no powers to drift): G = Σₗ dKₗ Āˡ and its derivative
 * G' = Σₗ l·dKₗ Āˡ⁻¹. The loss is Σₗ dKₗ K̄ₗ = c·Re Σₙ Wₙ G(Āₙ), so with the
 * gradient of a complex value written ∂/∂re + i·∂/∂im (conjugate-linear):
 *
 * - g_W = c·conj(G), g_Ā = c·conj(W·G'); g_C = g_W·conj(B̄), g_B̄ = g_W·conj(C);
 * - B̄ = Δ·q(z)·B with z = ΔA: g_B = Δ·g_B̄·conj(q);
 * - g_z = g_Ā·conj(Ā'(z)) + g_B̄·conj(Δ·B·q'(z)), g_A = Δ·g_z;
 * - d/d log Δ = Σₙ Re(conj(g_z)·z) + Re(conj(g_B̄)·B̄) (Δ scales z and B̄).
 *
 * ZOH: Ā = eᶻ = Ā', q = (eᶻ − 1)/z, q' = (eᶻ − q)/z — by their Taylor series
 * where |z| < 1, since both differences cancel there. Bilinear:
 * Ā = (1 + z/2)/(1 − z/2), Ā' = 1/(1 − z/2)², q = 1/(1 − z/2), q' = ½·Ā'.
 *
 * The device form runs one invocation per (h, n) over the L taps, then one per
 * h sums log Δ's N2 terms in order (no atomics: deterministic).
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { formatShape } from "../../core/shape.ts";
import type { HostTensor, KernelEmission, OpDef } from "../types.ts";
import { f32, flatKernel, KernelIo } from "../wgsl/mod.ts";
import { WGSL_COMPLEX } from "../fft/mod.ts";
import type { S4Discretisation } from "./discretise.ts";
import {
  cadd as add,
  cconj as conj,
  cdiv as div,
  cmul as mul,
  type Complex as C,
  cscale as scale,
} from "./complex.ts";

/**
 * Attributes of `s4_kernel_grad` (those of the `s4_kernel` it differentiates).
 *
 * @example
 * ```ts
 * import type { S4KernelGradAttrs } from "@kiln/kiln";
 * const attrs: S4KernelGradAttrs = { discretisation: "zoh", conj: true };
 * ```
 */
export interface S4KernelGradAttrs {
  /** ZOH or bilinear. */
  readonly discretisation: S4Discretisation;
  /** Conjugate-pair states (factor 2 on the real part). */
  readonly conj: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: string | boolean;
}

/** Taylor terms of q and q' where |z| < 1: 1/(K+2)! is below each precision's unit. */
const TERMS_F64 = 20;
const TERMS_F32 = 12;

function factorial(k: number): number {
  let f = 1;
  for (let i = 2; i <= k; i++) f *= i;
  return f;
}

/**
 * Ā, Ā'(z), q and q'(z) of one state (z = ΔA) in float64, where B̄ = Δ·q(z)·B.
 *
 * @example
 * ```ts ignore
 * discDerivs([-0.5, 0], "bilinear").abar; // [0.6, 0]
 * ```
 */
export function discDerivs(z: C, method: S4Discretisation): { abar: C; ad: C; q: C; qd: C } {
  if (method === "bilinear") {
    const den: C = [1 - z[0] / 2, -z[1] / 2];
    const q = div([1, 0], den);
    const ad = mul(q, q);
    return { abar: div([1 + z[0] / 2, z[1] / 2], den), ad, q, qd: scale(0.5, ad) };
  }
  if (z[0] * z[0] + z[1] * z[1] < 1) {
    // q = Σ zᵏ/(k+1)!, q' = Σ (k+1)·zᵏ/(k+2)!, by Horner; eᶻ = 1 + z·q.
    let q: C = [1 / factorial(TERMS_F64 + 1), 0];
    let qd: C = [TERMS_F64 / factorial(TERMS_F64 + 1), 0];
    for (let k = TERMS_F64 - 1; k >= 0; k--) {
      q = add(mul(q, z), [1 / factorial(k + 1), 0]);
      if (k < TERMS_F64 - 1) qd = add(mul(qd, z), [(k + 1) / factorial(k + 2), 0]);
    }
    const abar = add([1, 0], mul(z, q));
    return { abar, ad: abar, q, qd };
  }
  const e = Math.exp(z[0]);
  const abar: C = [e * Math.cos(z[1]), e * Math.sin(z[1])];
  const q = div([abar[0] - 1, abar[1]], z);
  return { abar, ad: abar, q, qd: div([abar[0] - q[0], abar[1] - q[1]], z) };
}

/**
 * Gradients of Σ dK̄·K̄ with respect to A, B, C [H·N2·2] and log Δ [H], in float64.
 *
 * @example
 * ```ts ignore
 * const { dA, dB, dC, dLogDt } = s4KernelGradF64(dK, A, B, C, logDt, L, "zoh", true);
 * ```
 */
export function s4KernelGradF64(
  dK: ArrayLike<number>,
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  Cp: ArrayLike<number>,
  logDt: ArrayLike<number>,
  L: number,
  method: S4Discretisation,
  conjPairs: boolean,
): { dA: HostArray; dB: HostArray; dC: HostArray; dLogDt: HostArray } {
  const H = logDt.length, M = A.length / 2, N2 = M / H;
  const cf = conjPairs ? 2 : 1;
  const dA = allocHost("f32", 2 * M), dB = allocHost("f32", 2 * M), dC = allocHost("f32", 2 * M);
  const dLogDt = allocHost("f32", H);
  for (let j = 0; j < M; j++) {
    const h = Math.floor(j / N2);
    const dt = Math.exp(logDt[h]);
    const a: C = [A[2 * j], A[2 * j + 1]], b: C = [B[2 * j], B[2 * j + 1]];
    const c: C = [Cp[2 * j], Cp[2 * j + 1]];
    const z = scale(dt, a);
    const { abar, ad, q, qd } = discDerivs(z, method);
    const bbar = scale(dt, mul(q, b));
    // Horner: p → G(Ā), dp → G'(Ā).
    let pr = 0, pi = 0, dr = 0, di = 0;
    for (let l = L - 1; l >= 0; l--) {
      const nr = dr * abar[0] - di * abar[1] + pr, ni = dr * abar[1] + di * abar[0] + pi;
      dr = nr;
      di = ni;
      const r = pr * abar[0] - pi * abar[1] + dK[h * L + l];
      pi = pr * abar[1] + pi * abar[0];
      pr = r;
    }
    const gW = scale(cf, conj([pr, pi]));
    const gAbar = scale(cf, conj(mul(mul(c, bbar), [dr, di])));
    const gC = mul(gW, conj(bbar)), gBbar = mul(gW, conj(c));
    const gB = scale(dt, mul(gBbar, conj(q)));
    const gz = add(mul(gAbar, conj(ad)), mul(gBbar, conj(scale(dt, mul(b, qd)))));
    dA[2 * j] = dt * gz[0];
    dA[2 * j + 1] = dt * gz[1];
    dB[2 * j] = gB[0];
    dB[2 * j + 1] = gB[1];
    dC[2 * j] = gC[0];
    dC[2 * j + 1] = gC[1];
    dLogDt[h] += gz[0] * z[0] + gz[1] * z[1] + gBbar[0] * bbar[0] + gBbar[1] * bbar[1];
  }
  return { dA, dB, dC, dLogDt };
}

/**
 * WGSL helpers: the complex functions, `struct S4Derivs` and `s4_derivs(z)`
 * giving Ā, Ā', q and q' of one state in f32.
 *
 * @example
 * ```ts ignore
 * flatKernel("s4_grad_params", H * N2, caps, body, derivsWgsl("zoh"), io);
 * ```
 */
export function derivsWgsl(method: S4Discretisation): string {
  return `${WGSL_COMPLEX}
struct S4Derivs { abar: vec2<f32>, ad: vec2<f32>, q: vec2<f32>, qd: vec2<f32> }
${derivsFn(method)}`;
}

function derivsFn(method: S4Discretisation): string {
  if (method === "bilinear") {
    return `fn s4_derivs(z: vec2<f32>) -> S4Derivs {
  let den = vec2<f32>(1.0, 0.0) - 0.5 * z;
  let q = c_div(vec2<f32>(1.0, 0.0), den);
  let ad = c_mul(q, q);
  return S4Derivs(c_div(vec2<f32>(1.0, 0.0) + 0.5 * z, den), ad, q, 0.5 * ad);
}`;
  }
  let series = "";
  for (let k = TERMS_F32 - 1; k >= 0; k--) {
    series += `    q = c_mul(q, z) + vec2<f32>(${f32(1 / factorial(k + 1))}, 0.0);\n`;
    if (k < TERMS_F32 - 1) {
      series += `    qd = c_mul(qd, z) + vec2<f32>(${f32((k + 1) / factorial(k + 2))}, 0.0);\n`;
    }
  }
  return `fn s4_derivs(z: vec2<f32>) -> S4Derivs {
  if (dot(z, z) < 1.0) {
    // Taylor series: (eᶻ − 1)/z and its derivative cancel badly near 0.
    var q = vec2<f32>(${f32(1 / factorial(TERMS_F32 + 1))}, 0.0);
    var qd = vec2<f32>(${f32(TERMS_F32 / factorial(TERMS_F32 + 1))}, 0.0);
${series}    let abar = vec2<f32>(1.0, 0.0) + c_mul(z, q);
    return S4Derivs(abar, abar, q, qd);
  }
  let abar = c_exp(z);
  let q = c_div(abar - vec2<f32>(1.0, 0.0), z);
  return S4Derivs(abar, abar, q, c_div(abar - q, z));
}`;
}

/**
 * WGSL conjugate of a `vec2<f32>` expression.
 *
 * @example
 * ```ts ignore
 * conjW("p"); // "vec2<f32>(p.x, -p.y)"
 * ```
 */
export function conjW(v: string): string {
  return `vec2<f32>(${v}.x, -${v}.y)`;
}

/**
 * Checks the parameter operands and attributes of an S4 gradient op; the
 * errors name `op` and the operand.
 *
 * @example
 * ```ts ignore
 * const { H, N2 } = checkGradParams("s4_kernel_grad", [A, B, C, dt], attrs);
 * ```
 */
export function checkGradParams(
  op: string,
  [A, B, C, dt]: readonly TensorType[],
  a: S4KernelGradAttrs,
): { H: TensorType["shape"][number]; N2: TensorType["shape"][number] } {
  const show = `${op}(A ${formatShape(A.shape)}, B ${formatShape(B.shape)}, C ${
    formatShape(C.shape)
  }, log_dt ${formatShape(dt.shape)})`;
  for (const [name, t] of [["A", A], ["B", B], ["C", C], ["log_dt", dt]] as const) {
    if (t.dtype !== "f32") throw new TypeError(`${show}: ${name} must be f32, got ${t.dtype}`);
  }
  if (A.shape.length !== 3 || A.shape[2] !== 2) {
    throw new RangeError(`${show}: A must be complex [H, N2, 2]`);
  }
  for (const [name, t] of [["B", B], ["C", C]] as const) {
    if (formatShape(t.shape) !== formatShape(A.shape)) {
      throw new RangeError(`${show}: ${name} must have A's shape`);
    }
  }
  const H = A.shape[0];
  if (dt.shape.length !== 1 || dt.shape[0] !== H) {
    throw new RangeError(`${show}: log_dt must be [H] = [${H}]`);
  }
  if (a.discretisation !== "zoh" && a.discretisation !== "bilinear") {
    throw new TypeError(
      `${op}: discretisation must be "zoh" or "bilinear", got ${JSON.stringify(a.discretisation)}`,
    );
  }
  if (typeof a.conj !== "boolean") {
    throw new TypeError(`${op}: conj must be a boolean, got ${JSON.stringify(a.conj)}`);
  }
  return { H, N2: A.shape[1] };
}

function checkShapes(inputs: readonly TensorType[], a: S4KernelGradAttrs): TensorType[] {
  const [dK, A, , , dt] = inputs;
  const { H } = checkGradParams("s4_kernel_grad", inputs.slice(1), a);
  if (dK.dtype !== "f32") throw new TypeError(`s4_kernel_grad: dK must be f32, got ${dK.dtype}`);
  if (dK.shape.length !== 2 || dK.shape[0] !== H) {
    throw new RangeError(
      `s4_kernel_grad: dK must be [H, L] with H = ${H}, got ${formatShape(dK.shape)}`,
    );
  }
  return [
    { shape: A.shape, dtype: "f32" },
    { shape: A.shape, dtype: "f32" },
    { shape: A.shape, dtype: "f32" },
    { shape: dt.shape, dtype: "f32" },
  ];
}

/**
 * s4_kernel_grad(dK [H, L], A, B, C [H, N2, 2], log_dt [H]) → [dA, dB, dC, dlog_dt].
 *
 * @example
 * ```ts ignore
 * opDef("s4_kernel_grad") === s4KernelGrad; // in the op table
 * ```
 */
export const s4KernelGrad: OpDef<S4KernelGradAttrs> = {
  arity: 5,
  attrNames: ["discretisation", "conj"],
  infer(inputs, attrs) {
    return checkShapes(inputs, attrs);
  },
  reference([dK, A, B, C, dt]: readonly HostTensor[], attrs) {
    const r = s4KernelGradF64(
      dK.data,
      A.data,
      B.data,
      C.data,
      dt.data,
      dK.shape[1],
      attrs.discretisation,
      attrs.conj,
    );
    return [r.dA, r.dB, r.dC, r.dLogDt];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: false,
    emit({ attrs, inputs, caps }): KernelEmission {
      const [H, L] = inputs[0].shape;
      const N2 = inputs[1].shape[1];
      const io = new KernelIo();
      const ld = (j: number, at: string) => io.load(j, at);
      const body = `  let h = i / ${N2}u;
  let j = 2u * i;
  let a = vec2<f32>(${ld(1, "j")}, ${ld(1, "j + 1u")});
  let b = vec2<f32>(${ld(2, "j")}, ${ld(2, "j + 1u")});
  let c = vec2<f32>(${ld(3, "j")}, ${ld(3, "j + 1u")});
  let dt = exp(${ld(4, "h")});
  let z = dt * a;
  let d = s4_derivs(z);
  let bbar = dt * c_mul(d.q, b);
  // Horner: p = Σ dKₗ Āˡ, dp = Σ l·dKₗ Āˡ⁻¹.
  var p = vec2<f32>(0.0, 0.0);
  var dp = vec2<f32>(0.0, 0.0);
  for (var l = ${L}u; l > 0u; l = l - 1u) {
    dp = c_mul(dp, d.abar) + p;
    p = c_mul(p, d.abar) + vec2<f32>(${ld(0, `h * ${L}u + l - 1u`)}, 0.0);
  }
  let cf = ${f32(attrs.conj ? 2 : 1)};
  let gw = cf * ${conjW("p")};
  let wdp = c_mul(c_mul(c, bbar), dp);
  let gabar = cf * ${conjW("wdp")};
  let gc = c_mul(gw, ${conjW("bbar")});
  let gbbar = c_mul(gw, ${conjW("c")});
  let gb = dt * c_mul(gbbar, ${conjW("d.q")});
  let bqd = dt * c_mul(b, d.qd);
  let gz = c_mul(gabar, ${conjW("d.ad")}) + c_mul(gbbar, ${conjW("bqd")});
  ${io.store(0, "j", "dt * gz.x")};
  ${io.store(0, "j + 1u", "dt * gz.y")};
  ${io.store(1, "j", "gb.x")};
  ${io.store(1, "j + 1u", "gb.y")};
  ${io.store(2, "j", "gc.x")};
  ${io.store(2, "j + 1u", "gc.y")};
  ${io.scratch(0)}[i] = dot(gz, z) + dot(gbbar, bbar);`;
      const helpers = derivsWgsl(attrs.discretisation);
      const sio = new KernelIo();
      const sum = flatKernel(
        "s4_grad_log_dt",
        H,
        caps,
        `  var acc = 0.0;
  for (var n = 0u; n < ${N2}u; n = n + 1u) { acc = acc + ${sio.scratch(0)}[i * ${N2}u + n]; }
  ${sio.store(3, "i", "acc")};`,
        "",
        sio,
      );
      return {
        kernels: [flatKernel("s4_grad_params", H * N2, caps, body, helpers, io), sum],
        scratch: [{ length: H * N2, type: "f32" }],
      };
    },
  },
};
