/**
 * Binary and ternary elementwise ops with numpy broadcasting: arithmetic,
 * maximum/minimum, comparisons (u32 0/1 results) and `where`.
 *
 * @module
 */

import type { DType } from "../core/dtype.ts";
import { elementwiseOp, viaF32 } from "./elementwise.ts";
import type { OpDef } from "./types.ts";
import type { NoAttrs } from "./unary.ts";

function intDiv(a: number, b: number, dt: DType): number {
  // WGSL defines integer division by zero as returning the dividend.
  if (b === 0) return a;
  return dt === "u32" ? Math.floor((a >>> 0) / (b >>> 0)) : Math.trunc(a / b);
}

function arith(
  name: string,
  scalar: (a: number, b: number, dt: DType) => number,
  op: string,
): OpDef<NoAttrs> {
  return elementwiseOp<NoAttrs>({
    name,
    arity: 2,
    accepts: "any",
    scalar: ([a, b], [dt]) => scalar(a, b, dt),
    expr: ([a, b]) => `(${a} ${op} ${b})`,
  });
}

/** a + b. */
export const add: OpDef<NoAttrs> = arith("add", (a, b) => a + b, "+");
/** a − b. */
export const sub: OpDef<NoAttrs> = arith("sub", (a, b) => a - b, "-");
/** a · b. */
export const mul: OpDef<NoAttrs> = arith(
  "mul",
  (a, b, dt) => (dt === "i32" ? Math.imul(a, b) : dt === "u32" ? Math.imul(a, b) >>> 0 : a * b),
  "*",
);
/** a / b (integer division truncates; x/0 = x for integers, as WGSL defines). */
export const div: OpDef<NoAttrs> = arith(
  "div",
  (a, b, dt) => (dt === "f32" || dt === "f16" ? a / b : intDiv(a, b, dt)),
  "/",
);

function powScalar(a: number, b: number): number {
  return Math.pow(a, b);
}

/** a ** b for floats; a negative base needs an integer exponent, as in numpy. */
export const pow: OpDef<NoAttrs> = elementwiseOp<NoAttrs>({
  name: "pow",
  arity: 2,
  accepts: "float",
  scalar: ([a, b]) => powScalar(a, b),
  expr: ([a, b], [dt]) =>
    viaF32(dt, a, (x) => {
      const y = dt === "f16" ? `f32(${b})` : b;
      // WGSL pow is undefined for x < 0; handle integer exponents by sign.
      return `select(pow(abs(${x}), ${y}) * select(1.0, -1.0, fract(${y} * 0.5) != 0.0), ` +
        `select(pow(${x}, ${y}), bitcast<f32>(0x7fc00000u), ${x} < 0.0), ` +
        `${x} >= 0.0 || fract(${y}) != 0.0)`;
    }),
});

/** Elementwise maximum. */
export const maximum: OpDef<NoAttrs> = elementwiseOp<NoAttrs>({
  name: "maximum",
  arity: 2,
  accepts: "any",
  scalar: ([a, b]) => Math.max(a, b),
  expr: ([a, b]) => `max(${a}, ${b})`,
});

/** Elementwise minimum. */
export const minimum: OpDef<NoAttrs> = elementwiseOp<NoAttrs>({
  name: "minimum",
  arity: 2,
  accepts: "any",
  scalar: ([a, b]) => Math.min(a, b),
  expr: ([a, b]) => `min(${a}, ${b})`,
});

function compare(name: string, scalar: (a: number, b: number) => boolean, op: string) {
  return elementwiseOp<NoAttrs>({
    name,
    arity: 2,
    accepts: "any",
    outDtype: () => "u32",
    scalar: ([a, b]) => (scalar(a, b) ? 1 : 0),
    expr: ([a, b]) => `select(0u, 1u, ${a} ${op} ${b})`,
  });
}

/** a == b → u32 0/1. */
export const equal: OpDef<NoAttrs> = compare("equal", (a, b) => a === b, "==");
/** a != b → u32 0/1. */
export const notEqual: OpDef<NoAttrs> = compare("not_equal", (a, b) => a !== b, "!=");
/** a < b → u32 0/1. */
export const less: OpDef<NoAttrs> = compare("less", (a, b) => a < b, "<");
/** a <= b → u32 0/1. */
export const lessEqual: OpDef<NoAttrs> = compare("less_equal", (a, b) => a <= b, "<=");
/** a > b → u32 0/1. */
export const greater: OpDef<NoAttrs> = compare("greater", (a, b) => a > b, ">");
/** a >= b → u32 0/1. */
export const greaterEqual: OpDef<NoAttrs> = compare("greater_equal", (a, b) => a >= b, ">=");

/** where(cond, a, b): a where cond is non-zero, else b; all three broadcast. */
export const where: OpDef<NoAttrs> = elementwiseOp<NoAttrs>({
  name: "where",
  arity: 3,
  accepts: "any",
  sameDtype: [1, 2],
  outDtype: (d) => d[1],
  scalar: ([c, a, b]) => (c !== 0 ? a : b),
  expr: ([c, a, b], [cd]) => `select(${b}, ${a}, ${c} != ${cd}(0))`,
});
