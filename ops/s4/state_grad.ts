/**
 * `s4_state_grad`: the part of `s4_state`'s gradient that the zero-state
 * convolution (`s4`'s rule) does not cover — the initial state's response
 * yₜ += c·Re Σₙ Cₙ Āₙᵗ⁺¹ h0ₙ and the final state
 * h_T = Āᵀ h0 + B̄·S(Ā) with S(Ā) = Σₛ xₛ Āᵀ⁻¹⁻ˢ.
 *
 * Per (b, h, n), with g = dL/dh_T (complex, ∂/∂re + i·∂/∂im):
 *
 * - response: P = Σₜ dyₜ Āᵗ⁺¹ = Ā·G(Ā), P' = G + Ā·G' (G by Horner);
 *   g_C += c·conj(h0·P), g_h0 += c·conj(C·P), g_Ā += c·conj(C·h0·P');
 * - final state: g_h0 += conj(Āᵀ)·g, g_Ā += conj(T·Āᵀ⁻¹·h0 + B̄·S')·g,
 *   g_B̄ += conj(S)·g, dxₛ += Re Σₙ conj(g)·B̄·Āᵀ⁻¹⁻ˢ;
 *
 * then Ā and B̄ chain to A, B and log Δ as in `s4_kernel_grad`. Nothing of
 * size [B, T, H, N2] is stored: the device form runs one invocation per
 * (b, h, n) over T, sums over the batch per (h, n) and over (b, n) per h in
 * order (deterministic), and — only when a gradient reaches the final state
 * (`final`) — one per (b, h) walks T backwards for dx with the N2 powers in
 * registers.
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import { formatShape } from "../../core/shape.ts";
import type { HostTensor, KernelEmission, OpDef } from "../types.ts";
import { f32, flatKernel, KernelIo } from "../wgsl/mod.ts";
import { cadd, cconj, cmul, type Complex, cscale } from "./complex.ts";
import { checkGradParams, conjW, derivsWgsl, discDerivs, type S4KernelGradAttrs } from "./grad.ts";

/**
 * Attributes of `s4_state_grad`: the `s4_state`'s, and whether a gradient flows
 * into its final state (without one, the passes over x and the dx kernel are
 * left out: dx and the final-state terms are zero).
 *
 * @example
 * ```ts
 * import type { S4StateGradAttrs } from "@kiln/kiln";
 * const attrs: S4StateGradAttrs = { discretisation: "zoh", conj: true, final: false };
 * ```
 */
export interface S4StateGradAttrs extends S4KernelGradAttrs {
  /** A gradient flows into the final state (dstate is not all zeros). */
  readonly final: boolean;
}

/** Partials per (b, h, n) in scratch: dA (2), dB (2), dC (2), d log Δ (1). */
const PARTS = 7;

/**
 * Float64 reference of `s4_state_grad`: [dx, dA, dB, dC, dlog_dt, dh0].
 *
 * @example
 * ```ts ignore
 * const [dx, dA, dB, dC, dLogDt, dh0] = s4StateGradF64(inputs, attrs);
 * ```
 */
export function s4StateGradF64(
  [dy, dst, x, A, B, C, logDt, h0]: readonly HostTensor[],
  attrs: S4StateGradAttrs,
): HostArray[] {
  const [Bt, T, H] = x.shape;
  const N2 = A.shape[1];
  const cf = attrs.conj ? 2 : 1;
  const pair = (d: ArrayLike<number>, j: number): Complex => [d[2 * j], d[2 * j + 1]];
  const dx = allocHost("f32", Bt * T * H), dh0 = allocHost("f32", Bt * H * N2 * 2);
  const dA = allocHost("f32", H * N2 * 2), dB = allocHost("f32", H * N2 * 2);
  const dC = allocHost("f32", H * N2 * 2), dLogDt = allocHost("f32", H);
  for (let b = 0; b < Bt; b++) {
    for (let h = 0; h < H; h++) {
      const dt = Math.exp(logDt.data[h]);
      for (let n = 0; n < N2; n++) {
        const j = h * N2 + n, s = (b * H + h) * N2 + n;
        const z = cscale(dt, pair(A.data, j));
        const bp = pair(B.data, j), c = pair(C.data, j);
        const { abar, ad, q, qd } = discDerivs(z, attrs.discretisation);
        const bbar = cscale(dt, cmul(q, bp));
        const st = pair(h0.data, s), g = pair(dst.data, s);
        const at = (t: number) => (b * T + t) * H + h;
        let p: Complex = [0, 0], dp: Complex = [0, 0];
        for (let t = T - 1; t >= 0; t--) {
          dp = cadd(cmul(dp, abar), p);
          p = cadd(cmul(p, abar), [dy.data[at(t)], 0]);
        }
        const P = cmul(abar, p), Pd = cadd(p, cmul(abar, dp));
        let S: Complex = [0, 0], dS: Complex = [0, 0], pw: Complex = [1, 0], pwm: Complex = [0, 0];
        for (let t = 0; t < T; t++) {
          dS = cadd(cmul(dS, abar), S);
          S = cadd(cmul(S, abar), [x.data[at(t)], 0]);
          pwm = pw;
          pw = cmul(pw, abar);
        }
        const gC = cscale(cf, cconj(cmul(st, P)));
        const gh0 = cadd(cscale(cf, cconj(cmul(c, P))), cmul(cconj(pw), g));
        const dh = cadd(cscale(T, cmul(pwm, st)), cmul(bbar, dS));
        const gAbar = cadd(cscale(cf, cconj(cmul(cmul(c, st), Pd))), cmul(cconj(dh), g));
        const gBbar = cmul(cconj(S), g);
        const gB = cscale(dt, cmul(gBbar, cconj(q)));
        const gz = cadd(cmul(gAbar, cconj(ad)), cmul(gBbar, cconj(cscale(dt, cmul(bp, qd)))));
        dA[2 * j] += dt * gz[0];
        dA[2 * j + 1] += dt * gz[1];
        dB[2 * j] += gB[0];
        dB[2 * j + 1] += gB[1];
        dC[2 * j] += gC[0];
        dC[2 * j + 1] += gC[1];
        dLogDt[h] += gz[0] * z[0] + gz[1] * z[1] + gBbar[0] * bbar[0] + gBbar[1] * bbar[1];
        dh0[2 * s] = gh0[0];
        dh0[2 * s + 1] = gh0[1];
        // dxₜ += Re(conj(g)·B̄·Āᵀ⁻¹⁻ᵗ), from the last step backwards.
        let w = cmul(cconj(g), bbar);
        for (let t = T - 1; t >= 0; t--) {
          dx[at(t)] += w[0];
          w = cmul(w, abar);
        }
      }
    }
  }
  return [dx, dA, dB, dC, dLogDt, dh0];
}

/**
 * s4_state_grad(dy [B, T, H], dstate [B, H, N2, 2], x [B, T, H], A, B, C, log_dt,
 * state [B, H, N2, 2]) → [dx, dA, dB, dC, dlog_dt, dstate0].
 *
 * @example
 * ```ts ignore
 * opDef("s4_state_grad") === s4StateGrad; // in the op table
 * ```
 */
export const s4StateGrad: OpDef<S4StateGradAttrs> = {
  arity: 8,
  attrNames: ["discretisation", "conj", "final"],
  infer(inputs, attrs) {
    if (typeof attrs.final !== "boolean") {
      throw new TypeError(
        `s4_state_grad: final must be a boolean, got ${JSON.stringify(attrs.final)}`,
      );
    }
    const [dy, dst, x, A, , , dt, st] = inputs;
    const { H, N2 } = checkGradParams("s4_state_grad", inputs.slice(3, 7), attrs);
    if (x.shape.length !== 3 || x.shape[2] !== H) {
      throw new RangeError(
        `s4_state_grad: x must be [B, T, H] with H = ${H}, got ${formatShape(x.shape)}`,
      );
    }
    const want = formatShape([x.shape[0], H, N2, 2]);
    for (
      const [name, t, shape] of [
        ["dy", dy, formatShape(x.shape)],
        ["dstate", dst, want],
        ["state", st, want],
      ] as const
    ) {
      if (t.dtype !== "f32" || formatShape(t.shape) !== shape) {
        throw new RangeError(
          `s4_state_grad: ${name} must be f32${shape}, got ${t.dtype}${formatShape(t.shape)}`,
        );
      }
    }
    return [
      { shape: x.shape, dtype: "f32" },
      { shape: A.shape, dtype: "f32" },
      { shape: A.shape, dtype: "f32" },
      { shape: A.shape, dtype: "f32" },
      { shape: dt.shape, dtype: "f32" },
      { shape: st.shape, dtype: "f32" },
    ];
  },
  reference(inputs, attrs) {
    return s4StateGradF64(inputs, attrs);
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: false,
    emit({ attrs, inputs, outputs, caps }): KernelEmission {
      const [Bt, T, H] = inputs[2].shape;
      const N2 = inputs[3].shape[1];
      const helpers = derivsWgsl(attrs.discretisation);
      // Ā, B̄ of state (h, n) through `io`: inputs 3–6 are A, B, C, log_dt.
      const disc = (io: KernelIo, h: string, j: string) =>
        `let dt = exp(${io.load(6, h)});
  let bp = vec2<f32>(${io.load(4, `2u * ${j}`)}, ${io.load(4, `2u * ${j} + 1u`)});
  let z = dt * vec2<f32>(${io.load(3, `2u * ${j}`)}, ${io.load(3, `2u * ${j} + 1u`)});
  let d = s4_derivs(z);
  let bbar = dt * c_mul(d.q, bp);`;
      const io = new KernelIo();
      const main = `  let n = i % ${N2}u;
  let bh = i / ${N2}u;
  let h = bh % ${H}u;
  let j = h * ${N2}u + n;
  ${disc(io, "h", "j")}
  let c = vec2<f32>(${io.load(5, "2u * j")}, ${io.load(5, "2u * j + 1u")});
  let st = vec2<f32>(${io.load(7, "2u * i")}, ${io.load(7, "2u * i + 1u")});
  let g = vec2<f32>(${io.load(1, "2u * i")}, ${io.load(1, "2u * i + 1u")});
  let row = (bh / ${H}u) * ${T * H}u + h;
  var p = vec2<f32>(0.0, 0.0);
  var dp = vec2<f32>(0.0, 0.0);
  for (var t = ${T}u; t > 0u; t = t - 1u) {
    dp = c_mul(dp, d.abar) + p;
    p = c_mul(p, d.abar) + vec2<f32>(${io.load(0, `row + (t - 1u) * ${H}u`)}, 0.0);
  }
  let pp = c_mul(d.abar, p);
  let ppd = p + c_mul(d.abar, dp);
  var s = vec2<f32>(0.0, 0.0);
  var ds = vec2<f32>(0.0, 0.0);
  var pw = vec2<f32>(1.0, 0.0);
  var pwm = vec2<f32>(0.0, 0.0);${
        attrs.final
          ? `
  for (var t = 0u; t < ${T}u; t = t + 1u) {
    ds = c_mul(ds, d.abar) + s;
    s = c_mul(s, d.abar) + vec2<f32>(${io.load(2, `row + t * ${H}u`)}, 0.0);
    pwm = pw;
    pw = c_mul(pw, d.abar);
  }`
          : ""
      }
  let cf = ${f32(attrs.conj ? 2 : 1)};
  let sp = c_mul(st, pp);
  let cp = c_mul(c, pp);
  let cpd = c_mul(c_mul(c, st), ppd);
  let gc = cf * ${conjW("sp")};
  let gh0 = cf * ${conjW("cp")} + c_mul(${conjW("pw")}, g);
  let dh = ${f32(T)} * c_mul(pwm, st) + c_mul(bbar, ds);
  let gabar = cf * ${conjW("cpd")} + c_mul(${conjW("dh")}, g);
  let gbbar = c_mul(${conjW("s")}, g);
  let gb = dt * c_mul(gbbar, ${conjW("d.q")});
  let bqd = dt * c_mul(bp, d.qd);
  let gz = c_mul(gabar, ${conjW("d.ad")}) + c_mul(gbbar, ${conjW("bqd")});
  ${io.store(5, "2u * i", "gh0.x")};
  ${io.store(5, "2u * i + 1u", "gh0.y")};
  let o = ${PARTS}u * i;
  ${io.scratch(0)}[o] = dt * gz.x;
  ${io.scratch(0)}[o + 1u] = dt * gz.y;
  ${io.scratch(0)}[o + 2u] = gb.x;
  ${io.scratch(0)}[o + 3u] = gb.y;
  ${io.scratch(0)}[o + 4u] = gc.x;
  ${io.scratch(0)}[o + 5u] = gc.y;
  ${io.scratch(0)}[o + 6u] = dot(gz, z) + dot(gbbar, bbar);`;
      const pio = new KernelIo();
      const perState = flatKernel(
        "s4_state_grad_sum_b",
        H * N2,
        caps,
        `  for (var k = 0u; k < 6u; k = k + 1u) {
    var acc = 0.0;
    for (var b = 0u; b < ${Bt}u; b = b + 1u) {
      acc = acc + ${pio.scratch(0)}[${PARTS}u * (b * ${H * N2}u + i) + k];
    }
    let at = 2u * i + k % 2u;
    if (k < 2u) { ${pio.store(1, "at", "acc")}; }
    else if (k < 4u) { ${pio.store(2, "at", "acc")}; }
    else { ${pio.store(3, "at", "acc")}; }
  }`,
        "",
        pio,
      );
      const lio = new KernelIo();
      const logDt = flatKernel(
        "s4_state_grad_log_dt",
        H,
        caps,
        `  var acc = 0.0;
  for (var b = 0u; b < ${Bt}u; b = b + 1u) {
    for (var n = 0u; n < ${N2}u; n = n + 1u) {
      acc = acc + ${lio.scratch(0)}[${PARTS}u * ((b * ${H}u + i) * ${N2}u + n) + 6u];
    }
  }
  ${lio.store(4, "i", "acc")};`,
        "",
        lio,
      );
      const xio = new KernelIo();
      const dx = flatKernel(
        "s4_state_grad_dx",
        Bt * H,
        caps,
        `  let h = i % ${H}u;
  var w: array<vec2<f32>, ${N2}>;
  var ab: array<vec2<f32>, ${N2}>;
  for (var n = 0u; n < ${N2}u; n = n + 1u) {
    let j = h * ${N2}u + n;
    ${disc(xio, "h", "j")}
    let at = 2u * (i * ${N2}u + n);
    let g = vec2<f32>(${xio.load(1, "at")}, ${xio.load(1, "at + 1u")});
    w[n] = c_mul(${conjW("g")}, bbar);
    ab[n] = d.abar;
  }
  let row = (i / ${H}u) * ${T * H}u + h;
  for (var t = ${T}u; t > 0u; t = t - 1u) {
    var acc = 0.0;
    for (var n = 0u; n < ${N2}u; n = n + 1u) {
      acc = acc + w[n].x;
      w[n] = c_mul(w[n], ab[n]);
    }
    ${xio.store(0, `row + (t - 1u) * ${H}u`, "acc")};
  }`,
        helpers,
        xio,
      );
      const zio = new KernelIo();
      const zeros = flatKernel(
        "s4_state_grad_dx_zero",
        Bt * T * H,
        caps,
        `  ${zio.store(0, "i", "0.0")};`,
        "",
        zio,
      );
      const dxKernels = attrs.final ? [dx] : outputs[0].used === false ? [] : [zeros];
      return {
        kernels: [
          flatKernel("s4_state_grad", Bt * H * N2, caps, main, helpers, io),
          perState,
          logDt,
          ...dxKernels,
        ],
        scratch: [{ length: Bt * H * N2 * PARTS, type: "f32" }],
      };
    },
  },
};
