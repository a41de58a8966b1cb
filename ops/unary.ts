/**
 * Unary elementwise ops: neg, abs, exp, log, sqrt, rsqrt, tanh, sigmoid, silu,
 * gelu (tanh and erf forms), softplus, relu, cast.
 *
 * @module
 */

import { checkDType, type DType, isFloat } from "../core/dtype.ts";
import { elementwiseOp, viaF32 } from "./elementwise.ts";
import type { OpDef } from "./types.ts";
import { f32 } from "./wgsl/mod.ts";

/**
 * Attributes of ops that take none.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type NoAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const none: NoAttrs = {};
 * g.output("y", g.apply("exp", [g.input("x", [4])], none)[0]);
 * ```
 */
export type NoAttrs = Record<string, never>;

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** erf by Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7), matching the WGSL helper. */
export function erf(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y = 1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t * Math.exp(-a * a);
  return s * y;
}

/**
 * WGSL of `fn <name>(x: f32) -> f32`, erf by Abramowitz–Stegun 7.1.26 as
 * {@linkcode erf} (named by the caller, so kernels that do not include the
 * elementwise prelude can carry their own copy).
 *
 * @example
 * ```ts
 * import { erfWgsl } from "./unary.ts";
 * erfWgsl("moe_erf").startsWith("fn moe_erf("); // true
 * ```
 */
export function erfWgsl(name: string): string {
  return `fn ${name}(x: f32) -> f32 {
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return select(y, -y, x < 0.0);
}`;
}

/** WGSL helper functions elementwise expressions may call (`…4`: the same on vec4<f32>). */
export const WGSL_MATH_PRELUDE = `
${erfWgsl("kiln_erf")}
fn kiln_softplus(x: f32) -> f32 {
  // PyTorch's threshold: above 20 softplus(x) == x in f32.
  return select(log(1.0 + exp(x)), x, x > 20.0);
}
fn kiln_sigmoid(x: f32) -> f32 {
  // Split by sign so exp never overflows to inf/inf.
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
fn kiln_softplus4(x: vec4<f32>) -> vec4<f32> {
  return select(log(1.0 + exp(x)), x, x > vec4<f32>(20.0));
}
fn kiln_sigmoid4(x: vec4<f32>) -> vec4<f32> {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= vec4<f32>(0.0));
}
`;

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

function floatUnary(
  name: string,
  scalar: (x: number) => number,
  body: (x: string) => string,
): OpDef<NoAttrs> {
  return elementwiseOp<NoAttrs>({
    name,
    arity: 1,
    accepts: "float",
    scalar: ([x]) => scalar(x),
    expr: ([a], [dt]) => viaF32(dt, a, body),
  });
}

/** Negation (floats and i32). */
export const neg: OpDef<NoAttrs> = elementwiseOp<NoAttrs>({
  name: "neg",
  arity: 1,
  accepts: "number",
  scalar: ([x]) => -x,
  expr: ([a]) => `(-${a})`,
});

/** Absolute value (floats and i32). */
export const abs: OpDef<NoAttrs> = elementwiseOp<NoAttrs>({
  name: "abs",
  arity: 1,
  accepts: "number",
  scalar: ([x]) => Math.abs(x),
  expr: ([a]) => `abs(${a})`,
});

/** Rectified linear unit (floats and i32). */
export const relu: OpDef<NoAttrs> = elementwiseOp<NoAttrs>({
  name: "relu",
  arity: 1,
  accepts: "number",
  scalar: ([x]) => Math.max(x, 0),
  expr: ([a], [dt]) => `max(${a}, ${dt}(0))`,
});

/** e^x. */
export const exp: OpDef<NoAttrs> = floatUnary("exp", Math.exp, (x) => `exp(${x})`);
/** Natural logarithm. */
export const log: OpDef<NoAttrs> = floatUnary("log", Math.log, (x) => `log(${x})`);
/** Square root. */
export const sqrt: OpDef<NoAttrs> = floatUnary("sqrt", Math.sqrt, (x) => `sqrt(${x})`);
/** 1/√x. */
export const rsqrt: OpDef<NoAttrs> = floatUnary(
  "rsqrt",
  (x) => 1 / Math.sqrt(x),
  (x) => `inverseSqrt(${x})`,
);
/** Hyperbolic tangent. */
export const tanh: OpDef<NoAttrs> = floatUnary(
  "tanh",
  Math.tanh,
  // Clamped: some drivers evaluate tanh through exp and return NaN for large |x|.
  (x) => `tanh(clamp(${x}, -15.0, 15.0))`,
);
/** Logistic sigmoid. */
export const sigmoidOp: OpDef<NoAttrs> = floatUnary(
  "sigmoid",
  sigmoid,
  (x) => `kiln_sigmoid(${x})`,
);
/** x·sigmoid(x), a.k.a. swish. */
export const silu: OpDef<NoAttrs> = floatUnary(
  "silu",
  (x) => x * sigmoid(x),
  (x) => `(${x} * kiln_sigmoid(${x}))`,
);
/**
 * WGSL of `tanh(√(2/π)·(x + 0.044715·x³))`, the tanh inside GELU's tanh form,
 * its argument clamped (some drivers evaluate tanh through exp and return NaN
 * for large |x|). Shared by the `gelu` op and the MoE experts' GEGLU gate.
 *
 * @example
 * ```ts
 * import { geluTanhWgsl } from "./unary.ts";
 * geluTanhWgsl("v").startsWith("tanh(clamp("); // true
 * ```
 */
export function geluTanhWgsl(x: string): string {
  return `tanh(clamp(${
    f32(SQRT_2_OVER_PI)
  } * (${x} + 0.044715 * ${x} * ${x} * ${x}), -15.0, 15.0))`;
}

/** GELU, tanh approximation (GPT-2 style). */
export const geluTanh: OpDef<NoAttrs> = floatUnary(
  "gelu",
  (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))),
  (x) => `(0.5 * ${x} * (1.0 + ${geluTanhWgsl(x)}))`,
);
/** GELU, exact erf form. */
export const geluErf: OpDef<NoAttrs> = floatUnary(
  "gelu_erf",
  (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
  (x) => `(0.5 * ${x} * (1.0 + kiln_erf(${x} * ${f32(Math.SQRT1_2)})))`,
);
/** log(1 + e^x) with PyTorch's linear threshold at 20. */
export const softplus: OpDef<NoAttrs> = floatUnary(
  "softplus",
  (x) => (x > 20 ? x : Math.log1p(Math.exp(x))),
  (x) => `kiln_softplus(${x})`,
);

/**
 * Attributes of `cast`.
 *
 * @example
 * ```ts
 * import { type CastAttrs, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: CastAttrs = { to: "f16" };
 * g.output("y", g.apply("cast", [g.input("x", [4])], attrs)[0]); // x.cast("f16")
 * ```
 */
export interface CastAttrs {
  /** Target dtype. */
  readonly to: DType;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: DType;
}

function castScalar(x: number, from: DType, to: DType): number {
  if (to === "f32" || to === "f16") return x;
  if (isFloat(from)) {
    if (Number.isNaN(x)) return 0;
    const t = Math.trunc(x);
    return to === "i32"
      ? Math.min(Math.max(t, -2147483648), 2147483647)
      : Math.min(Math.max(t, 0), 4294967295);
  }
  return to === "i32" ? x | 0 : x >>> 0;
}

/** Converts to another dtype (floats truncate and saturate into integers). */
export const cast: OpDef<CastAttrs> = elementwiseOp<CastAttrs>({
  name: "cast",
  arity: 1,
  accepts: "any",
  attrNames: ["to"],
  checkAttrs: (a) => void checkDType(a.to, "cast attribute 'to'"),
  outDtype: (_, a) => a.to,
  scalar: ([x], [from], a) => castScalar(x, from, a.to),
  expr: ([x], [from], out) => {
    if (from === out) return x;
    // WGSL float→int conversion saturates, but f16→u32 of negatives goes via f32.
    if (from === "f16" && out !== "f32") return `${out}(f32(${x}))`;
    if (from === "i32" && out === "u32") return `bitcast<u32>(${x})`;
    if (from === "u32" && out === "i32") return `bitcast<i32>(${x})`;
    return `${out}(${x})`;
  },
});
