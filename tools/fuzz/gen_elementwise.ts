/**
 * Elementwise ops for the generator: unary maths, binary arithmetic with
 * broadcasting, comparisons, `where` and casts — each only where its operands'
 * bounds make it well-conditioned, with conditioning chains (`abs().add(0.5)`,
 * `sigmoid().add(0.25)`, …) built in front of an operand that is not.
 *
 * @module
 */

import { type DType, isFloat } from "../../core/dtype.ts";
import { broadcastShapes, type Dim } from "../../core/shape.ts";
import type { OpName } from "../../ops/registry.ts";
import type { DataSpec } from "./spec.ts";
import { type Gen, type Info, infoOf, MAX_ELEMS, type Val } from "./gen.ts";

/** Last dim of a shape (undefined for scalars). */
export function lastDim(s: readonly Dim[]): Dim | undefined {
  return s[s.length - 1];
}

/** Largest magnitude a value may have. */
export function mag(i: Info): number {
  return Math.max(Math.abs(i.lo), Math.abs(i.hi));
}

/**
 * Whether an inexact result of shape `out` still holds independent continuous
 * data along its last axis: some inexact operand that varies was not broadcast
 * along it.
 */
export function variesOf(out: readonly Dim[], exact: boolean, ...xs: readonly Val[]): boolean {
  return !exact &&
    xs.some((x) => x.info.varies && !x.info.exact && lastDim(x.shape) === lastDim(out));
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));
const silu = (x: number) => x * sig(x);
const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(0.7978845608 * (x + 0.044715 * x ** 3)));
const softplus = (x: number) => (x > 20 ? x : Math.log1p(Math.exp(x)));

/** True when `i` is bounded away from zero on the positive side (log, sqrt, rsqrt). */
function positiveEnough(i: Info): boolean {
  return i.lo >= 0.05 && i.lo >= i.hi * 1e-3;
}

/** A smooth function's range over [lo, hi], with its interior minimum where it has one. */
function withMin(f: (x: number) => number, at: number, min: number) {
  return (lo: number, hi: number): [number, number] => [
    Math.min(f(lo), f(hi), lo < at && hi > at ? min : Infinity),
    Math.max(f(lo), f(hi)),
  ];
}

interface UnaryDef {
  /** Whether the operand's bounds suit it. */
  ok(i: Info): boolean;
  /** Result bounds. */
  range(lo: number, hi: number): [number, number];
  /** Exact operands give exact results (and integers are accepted). */
  exact?: boolean;
}

/** The unary ops, their domains and ranges. */
export const UNARY: Readonly<Record<string, UnaryDef>> = {
  neg: { ok: () => true, range: (lo, hi) => [-hi, -lo], exact: true },
  abs: {
    ok: () => true,
    range: (lo, hi) => (lo >= 0 ? [lo, hi] : hi <= 0 ? [-hi, -lo] : [0, Math.max(-lo, hi)]),
    exact: true,
  },
  relu: { ok: () => true, range: (lo, hi) => [Math.max(lo, 0), Math.max(hi, 0)], exact: true },
  exp: { ok: (i) => i.hi <= 4, range: (lo, hi) => [Math.exp(lo), Math.exp(hi)] },
  log: { ok: positiveEnough, range: (lo, hi) => [Math.log(lo), Math.log(hi)] },
  sqrt: { ok: positiveEnough, range: (lo, hi) => [Math.sqrt(lo), Math.sqrt(hi)] },
  rsqrt: { ok: positiveEnough, range: (lo, hi) => [1 / Math.sqrt(hi), 1 / Math.sqrt(lo)] },
  tanh: { ok: () => true, range: (lo, hi) => [Math.tanh(lo), Math.tanh(hi)] },
  sigmoid: { ok: () => true, range: (lo, hi) => [sig(lo), sig(hi)] },
  silu: { ok: () => true, range: withMin(silu, -1.2785, -0.2785) },
  // Far left, GELU is x/2 · (1 + erf) with erf ≈ −1: f32 cancels what f64 keeps.
  gelu: { ok: (i) => i.lo >= -3, range: withMin(gelu, -0.7518, -0.1701) },
  gelu_erf: { ok: (i) => i.lo >= -3, range: withMin(gelu, -0.7518, -0.1701) },
  // log(1 + eˣ) loses eˣ in f32 once it is below an ulp of 1.
  softplus: { ok: (i) => i.lo >= -6, range: (lo, hi) => [softplus(lo), softplus(hi)] },
};

/** Applies unary `op` (its domain already checked). */
export function un(g: Gen, op: string, x: Val): Val | null {
  const d = UNARY[op];
  const [lo, hi] = d.range(x.info.lo, x.info.hi);
  const exact = !!d.exact && x.info.exact;
  return g.emit(op as OpName, [x], {}, ([t]) => [
    infoOf(t.dtype, lo, hi, { exact, step: x.info.step }, variesOf(t.shape, exact, x)),
  ])?.[0] ?? null;
}

function corners(f: (a: number, b: number) => number, a: Info, b: Info): [number, number] {
  const c = [f(a.lo, b.lo), f(a.lo, b.hi), f(a.hi, b.lo), f(a.hi, b.hi)];
  return [Math.min(...c), Math.max(...c)];
}

/** Bounds of a binary op's result (float division only by values bounded away from 0). */
function binRange(op: string, a: Info, b: Info, dtype: DType): [number, number] {
  switch (op) {
    case "add":
      return [a.lo + b.lo, a.hi + b.hi];
    case "sub":
      return [a.lo - b.hi, a.hi - b.lo];
    case "mul":
      return corners((x, y) => x * y, a, b);
    case "maximum":
      return [Math.max(a.lo, b.lo), Math.max(a.hi, b.hi)];
    case "minimum":
      return [Math.min(a.lo, b.lo), Math.min(a.hi, b.hi)];
    case "div":
      if (dtype === "u32") return [0, a.hi];
      if (dtype === "i32") return [-mag(a), mag(a)];
      return corners((x, y) => x / y, a, b);
    case "pow": {
      if (a.lo > 0) return corners(Math.pow, a, b);
      // Integer exponent of a signed base.
      const e = b.lo;
      const c = [a.lo ** e, a.hi ** e];
      if (e % 2 === 0 && a.lo < 0 && a.hi > 0) c.push(0);
      return [Math.min(...c), Math.max(...c)];
    }
  }
  throw new Error(`binRange: ${op}`);
}

/** Applies binary `op` (its operands already conditioned). */
export function bin(g: Gen, op: string, a: Val, b: Val): Val | null {
  const [lo, hi] = binRange(op, a.info, b.info, a.dtype);
  const keeps = op === "add" || op === "sub" || op === "maximum" || op === "minimum";
  const exact = a.info.exact && b.info.exact && (keeps || op === "mul");
  const step = op === "mul" ? a.info.step * b.info.step : Math.min(a.info.step, b.info.step);
  return g.emit(op as OpName, [a, b], {}, ([t]) => [
    infoOf(t.dtype, lo, hi, { exact, step }, variesOf(t.shape, exact, a, b)),
  ])?.[0] ?? null;
}

/** A value bounded away from zero on the positive side, built from `x` if need be. */
export function positive(g: Gen, x: Val): Val | null {
  if (positiveEnough(x.info)) return x;
  const dt = x.dtype;
  const how = g.int(0, 3);
  if (how === 1) {
    const s = un(g, "sigmoid", x);
    return s && bin(g, "add", s, g.scalar(0.25, dt));
  }
  if (how === 2 && mag(x.info) <= 20) {
    const sq = bin(g, "mul", x, x);
    return sq && bin(g, "add", sq, g.scalar(1, dt));
  }
  if (how === 3 && x.info.hi <= 4 && x.info.lo >= -3) return un(g, "exp", x);
  const a = un(g, "abs", x);
  return a && bin(g, "add", a, g.scalar(g.pick([0.5, 1]), dt));
}

/** `x` brought within [-bound, bound] (bound ≥ 2; exactly, by a power of two, half the time). */
export function tame(g: Gen, x: Val, bound = 4): Val | null {
  const m = mag(x.info);
  if (m <= bound) return x;
  if (g.chance(0.5)) {
    const t = un(g, "tanh", x);
    return t && bin(g, "mul", t, g.scalar(2, x.dtype));
  }
  return bin(g, "mul", x, g.scalar(2 ** -Math.ceil(Math.log2(m / bound)), x.dtype));
}

/** A shape that broadcasts against `s`: the same, a suffix, some dims 1, or one more axis. */
export function partnerShape(g: Gen, s: readonly Dim[]): Dim[] {
  const k = g.weighted([[3, 0], [2, 1], [2, 2], [1, 3]] as const);
  if (k === 1) return s.slice(g.int(1, Math.max(1, s.length)));
  if (k === 2) return s.map((d) => (g.chance(0.4) ? 1 : d));
  if (k === 3 && s.length < 4 && g.maxNumel(s) <= MAX_ELEMS / 8) return [g.pick([1, 2, 3]), ...s];
  return [...s];
}

/** A data spec for a new operand beside `a`: exact data beside exact values. */
export function specLike(g: Gen, a: Val): DataSpec {
  if (a.dtype === "i32") return { kind: "int", lo: -9, hi: 9 };
  if (a.dtype === "u32") return { kind: "int", lo: 0, hi: 9 };
  return a.info.exact ? g.grid() : g.uniform();
}

/** A scalar constant suited to `dtype`. */
function scalarFor(g: Gen, dtype: DType): Val {
  if (dtype === "u32") return g.scalar(g.pick([1, 2, 3, 7]), dtype);
  if (dtype === "i32") return g.scalar(g.pick([1, 2, 3, -1, 7]), dtype);
  return g.scalar(g.pick([0.5, 2, -1, 1.5, 3, 0.25, -0.75]), dtype);
}

/** A second operand for `a`: a scalar, a pool value that broadcasts, or a new leaf. */
export function partner(g: Gen, a: Val, distinct: boolean): Val {
  const r = g.rand();
  if (r < 0.25) return scalarFor(g, a.dtype);
  if (r < 0.55) {
    const b = g.take((v) => {
      if (v.dtype !== a.dtype || (distinct && v.ref === a.ref)) return false;
      const s = broadcastShapes(a.shape, v.shape);
      return s !== undefined && g.maxNumel(s) <= MAX_ELEMS;
    }, 0.2);
    if (b) return b;
  }
  return g.leaf(partnerShape(g, a.shape), a.dtype, specLike(g, a));
}

/** Any value not u32 (neg, abs, relu take floats and i32). */
function signed(v: Val): boolean {
  return v.dtype !== "u32";
}

/** A new float leaf of a random shape. */
export function floatLeaf(g: Gen): Val {
  return g.leaf(g.shape(), g.floatType(), g.chance(0.15) ? g.grid() : g.uniform());
}

/** A unary op on a pool value, conditioning the operand where its domain needs it. */
export function unary(g: Gen): boolean {
  let x = g.take(signed) ?? floatLeaf(g);
  if (!isFloat(x.dtype)) return !!un(g, g.pick(["neg", "abs", "relu"]), x);
  const op = g.pick(Object.keys(UNARY));
  if (!UNARY[op].ok(x.info)) {
    const c = op === "exp"
      ? tame(g, x)
      : op === "log" || op === "sqrt" || op === "rsqrt"
      ? positive(g, x)
      : tame(g, x, 2);
    if (!c) return false;
    x = c;
  }
  return !!un(g, op, x);
}

/** A binary arithmetic op with broadcasting (floats and integers). */
export function binary(g: Gen): boolean {
  const op = g.weighted(
    [[4, "add"], [3, "sub"], [4, "mul"], [2, "div"], [1, "pow"], [2, "maximum"], [
      2,
      "minimum",
    ]] as const,
  );
  if (op === "pow") return pow(g);
  let a = g.take(() => true) ?? floatLeaf(g);
  let b = partner(g, a, op === "sub" || op === "div");
  if (op === "div" && isFloat(a.dtype)) {
    const d = positive(g, b);
    if (!d) return false;
    b = g.chance(0.3) ? (un(g, "neg", d) ?? d) : d;
  } else if (g.chance(0.5)) [a, b] = [b, a];
  if (op === "mul" && mag(a.info) * mag(b.info) > 100 && isFloat(a.dtype)) {
    const t = tame(g, a);
    if (!t) return false;
    a = t;
  }
  return !!bin(g, op, a, b);
}

/** pow: a positive base to a bounded exponent, or any base to an integer power. */
function pow(g: Gen): boolean {
  const x = g.take((v) => isFloat(v.dtype)) ?? floatLeaf(g);
  if (g.chance(0.4) && mag(x.info) <= 5) {
    return !!bin(g, "pow", x, g.scalar(g.pick([2, 3]), x.dtype));
  }
  let base = positive(g, x);
  if (base && base.info.hi > 6) {
    const t = un(g, "tanh", base);
    base = t && bin(g, "add", t, g.scalar(1.5, x.dtype));
  }
  if (!base) return false;
  let e: Val | undefined;
  if (g.chance(0.4)) e = g.scalar(g.pick([2, 3, 0.5, -1, -0.5, 1.5, -2]), x.dtype);
  else {
    e = g.take((v) =>
      v.dtype === x.dtype && v.info.lo >= -2 && v.info.hi <= 2 &&
      broadcastShapes(base!.shape, v.shape) !== undefined, 0.2) ??
      g.leaf(partnerShape(g, base.shape), x.dtype, { kind: "uniform", lo: -1.5, hi: 1.5 });
  }
  return !!bin(g, "pow", base, e);
}

/** An exact value: from the pool, else a new grid or integer leaf. */
export function exactVal(g: Gen, pred: (v: Val) => boolean = () => true): Val {
  const v = g.take((v) => v.info.exact && pred(v));
  if (v) return v;
  if (g.chance(0.5)) return g.leaf(g.shape(), g.floatType(), g.grid());
  const dt = g.pick(["i32", "u32"] as const);
  return g.leaf(
    g.shape(),
    dt,
    dt === "i32" ? { kind: "int", lo: -9, hi: 9 } : { kind: "int", lo: 0, hi: 12 },
  );
}

/** A comparison of exact values (u32 0/1). */
export function compare(g: Gen): Val | null {
  const a = exactVal(g);
  let b: Val;
  if (g.chance(0.4)) {
    b = isFloat(a.dtype)
      ? g.scalar(g.pick([0, 0.5, 1, -1, 2]), a.dtype)
      : g.scalar(g.pick([0, 1, 3, 5]), a.dtype);
  } else {
    b = g.take((v) =>
      v.info.exact && v.dtype === a.dtype && v.ref !== a.ref &&
      broadcastShapes(a.shape, v.shape) !== undefined, 0.2) ??
      g.leaf(partnerShape(g, a.shape), a.dtype, specLike(g, a));
  }
  const op = g.pick(["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]);
  const [x, y] = g.chance(0.5) ? [a, b] : [b, a];
  return g.emit(op as OpName, [x, y], {}, () => [
    infoOf("u32", 0, 1, { exact: true, step: 1 }, false),
  ])?.[0] ?? null;
}

/** where(cond, a, b) with an exact condition. */
export function where(g: Gen): boolean {
  const cond = g.take((v) => v.info.exact && v.dtype === "u32" && v.info.hi <= 1) ??
    compare(g) ?? exactVal(g);
  const fits = (v: Val) => {
    const s = broadcastShapes(cond.shape, v.shape);
    return s !== undefined && g.maxNumel(s) <= MAX_ELEMS;
  };
  const a = g.take((v) => v.ref !== cond.ref && fits(v)) ??
    g.leaf(partnerShape(g, cond.shape), g.floatType(), g.uniform());
  const b = g.chance(0.3)
    ? g.scalar(isFloat(a.dtype) ? g.pick([0, -1, 0.5]) : g.pick([0, 1]), a.dtype)
    : g.take(
      (v) => v.dtype === a.dtype && fits(v) && broadcastShapes(a.shape, v.shape) !== undefined,
      0.3,
    ) ??
      g.leaf(partnerShape(g, a.shape), a.dtype, specLike(g, a));
  const exact = a.info.exact && b.info.exact;
  return !!g.emit("where", [cond, a, b], {}, ([t]) => [
    infoOf(t.dtype, Math.min(a.info.lo, b.info.lo), Math.max(a.info.hi, b.info.hi), {
      exact,
      step: Math.min(a.info.step, b.info.step),
    }, variesOf(t.shape, exact, a, b)),
  ]);
}

/** A cast the value's bounds and exactness make deterministic on both sides. */
export function cast(g: Gen): boolean {
  const x = g.take(() => true) ?? exactVal(g);
  const i = x.info;
  const targets: DType[] = [];
  if (isFloat(x.dtype)) {
    if (i.exact) targets.push("i32", "u32");
    if (mag(i) <= 1000 && g.f16) targets.push(x.dtype === "f32" ? "f16" : "f32");
    if (x.dtype === "f16") targets.push("f32");
  } else {
    targets.push(x.dtype === "i32" ? "u32" : "i32");
    if (mag(i) <= 2 ** 24) targets.push("f32");
    if (mag(i) <= 2048 && g.f16) targets.push("f16");
  }
  if (!targets.length) return false;
  const to = g.pick(targets);
  let lo = i.lo, hi = i.hi;
  if (to === "i32" && isFloat(x.dtype)) [lo, hi] = [Math.trunc(lo), Math.trunc(hi)];
  if (to === "u32" && isFloat(x.dtype)) {
    [lo, hi] = [Math.max(0, Math.trunc(lo)), Math.max(0, Math.trunc(hi))];
  }
  // Bit casts between integers wrap: out-of-range bounds become the whole range.
  if (to === "u32" && x.dtype === "i32" && lo < 0) [lo, hi] = [-1, Infinity];
  if (to === "i32" && x.dtype === "u32" && hi >= 2 ** 31) [lo, hi] = [-Infinity, Infinity];
  const step = isFloat(x.dtype) ? i.step : 1;
  return !!g.emit("cast", [x], { to }, ([t]) => [
    infoOf(t.dtype, lo, hi, { exact: i.exact, step }, variesOf(t.shape, i.exact, x)),
  ]);
}
