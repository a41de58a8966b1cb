/**
 * The generator's machinery: a seeded source of choices, a pool of values with
 * what is known about them (a bound on their values, whether they are exact),
 * leaves drawn on demand, and {@linkcode Gen.emit}, which validates every op
 * with the registry's own shape rule before recording it. The ops themselves are
 * chosen in `gen_elementwise.ts` and `gen_ops.ts`, graphs put together in
 * `generate.ts`.
 *
 * What a value knows ({@linkcode Info}) is what keeps the campaign honest:
 * - bounds `[lo, hi]` (interval arithmetic) decide where an op is
 *   well-conditioned: log and sqrt only of values bounded away from zero, exp
 *   only of values ≤ 4, division only by values bounded away from zero;
 * - `exact` marks values both sides compute bit for bit (integers, and floats
 *   on a coarse grid while sums and products of them stay representable):
 *   only those feed comparisons, `where` conditions, casts to integers, gather
 *   ids and consumers of argmax/top-k indices, so a rounding difference can
 *   never flip a discontinuous op;
 * - `terminal` marks indices of inexact keys (near ties may differ): they are
 *   outputs only, compared with tie tolerance.
 *
 * @module
 */

import { type DType, isFloat } from "../../core/dtype.ts";
import type { AttrValue, TensorType } from "../../core/graph.ts";
import { mulberry32 } from "../../core/random.ts";
import type { Dim } from "../../core/shape.ts";
import { opDef, type OpName } from "../../ops/registry.ts";
import type { DataSpec, FuzzNode, Ref } from "./spec.ts";

/** Largest element count of any value (symbols at their largest size). */
export const MAX_ELEMS = 8192;

/** What the generator knows about a value. */
export interface Info {
  /** Lower bound of the values. */
  readonly lo: number;
  /** Upper bound of the values. */
  readonly hi: number;
  /** Computed bit for bit alike on the GPU and the CPU. */
  readonly exact: boolean;
  /** Exact floats are multiples of this (a power of two); integers 1; inexact 0. */
  readonly step: number;
  /** An index of inexact keys: only an output, never an operand. */
  readonly terminal: boolean;
  /** Rows along the last axis hold independent continuous data (safe for layernorm). */
  readonly varies: boolean;
}

/** A value in the pool. */
export interface Val {
  /** Where it comes from. */
  readonly ref: Ref;
  /** Shape (symbols allowed). */
  readonly shape: readonly Dim[];
  /** Element type. */
  readonly dtype: DType;
  /** Bounds and exactness. */
  readonly info: Info;
}

/** Magnitude a float value may reach before the generator stops growing it. */
export function limitOf(dtype: DType): number {
  return dtype === "f16" ? 1000 : dtype === "f32" ? 1e4 : 2 ** 31;
}

/** Whether multiples of `step` bounded by [lo, hi] are exactly representable in `dtype`. */
export function fitsExact(dtype: DType, lo: number, hi: number, step: number): boolean {
  if (!isFloat(dtype)) return true;
  if (!(step > 0)) return false;
  const m = Math.max(Math.abs(lo), Math.abs(hi));
  if (dtype === "f16") return step >= 2 ** -10 && m <= 2048 && m / step <= 2 ** 11;
  return step >= 2 ** -40 && m / step <= 2 ** 24;
}

/** Info of a result from bounds, given whether it may be exact with grid `step`. */
export function infoOf(
  dtype: DType,
  lo: number,
  hi: number,
  exactIf: { exact: boolean; step: number },
  varies: boolean,
): Info {
  if (!isFloat(dtype)) {
    const [min, max] = dtype === "u32" ? [0, 2 ** 32 - 1] : [-(2 ** 31), 2 ** 31 - 1];
    const wraps = !(lo >= min && hi <= max);
    return {
      lo: wraps ? min : lo,
      hi: wraps ? max : hi,
      exact: true,
      step: 1,
      terminal: false,
      varies: false,
    };
  }
  const exact = exactIf.exact && fitsExact(dtype, lo, hi, exactIf.step);
  return { lo, hi, exact, step: exact ? exactIf.step : 0, terminal: false, varies };
}

/** Info of a leaf drawn from `spec`. */
export function leafInfo(dtype: DType, spec: DataSpec): Info {
  if (spec.kind === "uniform") {
    return infoOf(dtype, spec.lo, spec.hi, { exact: false, step: 0 }, true);
  }
  const step = spec.kind === "grid" ? spec.step : 1;
  return infoOf(dtype, spec.lo, spec.hi, { exact: true, step }, false);
}

/** Concrete sizes the generator likes: 1, primes, and sizes not a multiple of 4. */
export const DIM_MENU: readonly number[] = [
  1,
  2,
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  11,
  12,
  13,
  16,
  17,
  23,
  32,
  33,
];

/** Long axes that reach the row-per-workgroup and chunked kernels. */
export const LONG_MENU: readonly number[] = [127, 128, 129, 257, 513, 600, 1025, 1100];

/** Continuous input ranges, each with its weight. */
const UNIFORM_MENU: readonly [number, number, number][] = [
  [-2, 2, 4],
  [-1, 1, 2],
  [0.5, 3, 2],
  [-4, 4, 1],
  [0.05, 1, 1],
  [-3, 0.5, 1],
];

/** The seeded state of one graph being generated. */
export class Gen {
  /** Uniform numbers in [0, 1). */
  readonly rand: () => number;
  /** Nodes so far. */
  readonly nodes: FuzzNode[] = [];
  /** Values ops may take. */
  readonly pool: Val[] = [];
  /** Symbols and their size range. */
  readonly symbols: Record<string, { min: number; max: number }> = {};
  /** Whether f16 may appear (the adapter has shader-f16). */
  readonly f16: boolean;
  /** Probability that a new float leaf is f16. */
  readonly halfBias: number;
  /** Ops recorded. */
  ops = 0;
  /** Probability that {@linkcode Gen.take} returns the newest fitting value. */
  recent = 0.5;
  /** A value {@linkcode Gen.take} returns whenever it fits (fan-out templates). */
  pinned: Val | undefined;
  /** Ops refused by their shape rule or the size budget (a generator statistic). */
  refused = 0;
  readonly #counts: Record<string, number> = {};

  /** A generator seeded by `seed`. */
  constructor(seed: number, f16: boolean) {
    this.rand = mulberry32(seed);
    this.f16 = f16;
    this.halfBias = f16 && this.chance(0.3) ? 0.5 : 0;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.rand() < p;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }
  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)];
  }
  /** One element of `xs` by weight. */
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of xs) total += w;
    let u = this.rand() * total;
    for (const [w, x] of xs) {
      if ((u -= w) < 0) return x;
    }
    return xs[xs.length - 1][1];
  }
  /** A fresh name with `prefix` (x0, x1, …). */
  name(prefix: string): string {
    const n = this.#counts[prefix] ?? 0;
    this.#counts[prefix] = n + 1;
    return `${prefix}${n}`;
  }

  /** Largest size a dim takes. */
  dimMax(d: Dim): number {
    return typeof d === "number" ? d : this.symbols[d].max;
  }
  /** Smallest size a dim takes. */
  dimMin(d: Dim): number {
    return typeof d === "number" ? d : this.symbols[d].min;
  }
  /** Element count at the symbols' largest sizes. */
  maxNumel(shape: readonly Dim[]): number {
    return shape.reduce<number>((a, d) => a * this.dimMax(d), 1);
  }
  /** Requires symbol `d` (if it is one) to be at least `n` in every run. */
  atLeast(d: Dim, n: number): boolean {
    if (typeof d === "number") return d >= n;
    const s = this.symbols[d];
    if (s.max < n) return false;
    s.min = Math.max(s.min, n);
    return true;
  }

  /** A random dim: a symbol sometimes, else a size from the menu. */
  dim(symbolic = 0.3): Dim {
    const syms = Object.keys(this.symbols);
    if (syms.length && this.chance(symbolic)) return this.pick(syms);
    return this.weighted(DIM_MENU.map((d) => [d <= 8 ? 3 : 1, d] as const));
  }
  /** A random shape of `rank` (default 1..3) within the element budget. */
  shape(rank = this.weighted([[3, 1], [5, 2], [3, 3], [1, 4]] as const)): Dim[] {
    for (let tries = 0; tries < 20; tries++) {
      const s = Array.from({ length: rank }, () => this.dim());
      if (this.maxNumel(s) <= MAX_ELEMS / 4) return s;
    }
    return Array.from({ length: rank }, () => this.int(1, 3));
  }
  /** f32, or f16 with the graph's bias when the adapter allows it. */
  floatType(): DType {
    return this.chance(this.halfBias) ? "f16" : "f32";
  }
  /** A continuous range from the menu. */
  uniform(): DataSpec {
    const [lo, hi] = this.weighted(UNIFORM_MENU.map(([lo, hi, w]) => [w, [lo, hi]] as const));
    return { kind: "uniform", lo, hi };
  }
  /** A grid range (exact values). */
  grid(): DataSpec {
    const step = this.pick([1, 0.5, 0.25]);
    const [lo, hi] = this.pick([[-4, 4], [0, 6], [-8, 8], [-2, 3]] as const);
    return { kind: "grid", lo, hi, step };
  }

  /**
   * A new leaf of `shape`: an input, or (concrete shapes) sometimes a parameter or
   * a small constant. `kind` forces one.
   */
  leaf(
    shape: readonly Dim[],
    dtype: DType,
    spec: DataSpec,
    kind?: "input" | "param" | "const",
  ): Val {
    const concrete = shape.every((d) => typeof d === "number");
    const n = concrete ? (shape as number[]).reduce((a, b) => a * b, 1) : Infinity;
    const k = kind ??
      (concrete && n <= 16 && this.chance(0.1)
        ? "const"
        : concrete && this.chance(0.25)
        ? "param"
        : "input");
    const id = this.nodes.length;
    if (k === "const") {
      const values: number[] = [];
      for (let i = 0; i < n; i++) values.push(this.#draw(spec, dtype));
      this.nodes.push({ kind: "const", shape: shape as number[], dtype, values });
    } else {
      const name = this.name(k === "param" ? "w" : "x");
      this.nodes.push({ kind: k, name, shape: [...shape], dtype, data: spec });
    }
    const v: Val = {
      ref: { node: id, out: 0 },
      shape: [...shape],
      dtype,
      info: leafInfo(dtype, spec),
    };
    this.pool.push(v);
    return v;
  }

  /** A scalar constant (shape []), as `x.add(2)` lifts a number. */
  scalar(value: number, dtype: DType): Val {
    const id = this.nodes.length;
    this.nodes.push({ kind: "const", shape: [], dtype, values: [value] });
    const exact = Number.isInteger(value * 4);
    const info = infoOf(dtype, value, value, { exact, step: 0.25 }, false);
    return { ref: { node: id, out: 0 }, shape: [], dtype, info };
  }

  /** An input named `prefix…` (pos, ids), not added to the pool. */
  special(prefix: string, shape: readonly Dim[], dtype: DType, spec: DataSpec): Val {
    const id = this.nodes.length;
    this.nodes.push({
      kind: "input",
      name: this.name(prefix),
      shape: [...shape],
      dtype,
      data: spec,
    });
    return { ref: { node: id, out: 0 }, shape: [...shape], dtype, info: leafInfo(dtype, spec) };
  }

  /** A u32 [1] position input with values in [lo, hi]. */
  pos(lo: number, hi: number): Val {
    return this.special("pos", [1], "u32", { kind: "int", lo, hi: Math.max(lo, hi) });
  }

  #draw(spec: DataSpec, dtype: DType): number {
    const u = this.rand();
    let v: number;
    if (spec.kind === "uniform") v = spec.lo + (spec.hi - spec.lo) * u;
    else if (spec.kind === "grid") {
      const steps = Math.floor((spec.hi - spec.lo) / spec.step);
      v = spec.lo + spec.step * Math.min(steps, Math.floor(u * (steps + 1)));
    } else v = spec.lo + Math.min(spec.hi - spec.lo, Math.floor(u * (spec.hi - spec.lo + 1)));
    // Stored as the dtype holds it, so the printed constant is the value used.
    return dtype === "f16" ? Math.f16round(v) : dtype === "f32" ? Math.fround(v) : v;
  }

  /**
   * A pool value satisfying `pred`: the newest with probability `recent` (chains
   * that fuse), else any (fan-out: a value several kernels read).
   */
  take(pred: (v: Val) => boolean, recent = this.recent): Val | undefined {
    if (this.pinned && !this.pinned.info.terminal && pred(this.pinned)) return this.pinned;
    const ok = this.pool.filter((v) => !v.info.terminal && pred(v));
    if (!ok.length) return undefined;
    return this.chance(recent) ? ok[ok.length - 1] : this.pick(ok);
  }

  /**
   * Records `op` on `inputs` if its shape rule accepts them and every result fits
   * the budget; `info` gives what is known of each result (null refuses the op,
   * for bounds past the dtype's limit). Returns the results, or null.
   */
  emit(
    op: OpName,
    inputs: readonly Val[],
    attrs: Readonly<Record<string, AttrValue>>,
    info: (types: TensorType[]) => (Info | null)[],
  ): Val[] | null {
    let types: TensorType[];
    try {
      types = opDef(op).infer(inputs.map((v) => ({ shape: v.shape, dtype: v.dtype })), attrs);
    } catch {
      this.refused++;
      return null;
    }
    const infos = info(types);
    const bad = types.some((t, i) => {
      const inf = infos[i];
      if (!inf || this.maxNumel(t.shape) > MAX_ELEMS) return true;
      return isFloat(t.dtype) &&
        !(Math.max(Math.abs(inf.lo), Math.abs(inf.hi)) <= limitOf(t.dtype));
    });
    if (bad) {
      this.refused++;
      return null;
    }
    const id = this.nodes.length;
    this.nodes.push({ kind: "op", op, inputs: inputs.map((v) => v.ref), attrs });
    this.ops++;
    const vals = types.map((t, i): Val => ({
      ref: { node: id, out: i },
      shape: t.shape,
      dtype: t.dtype,
      info: infos[i]!,
    }));
    this.pool.push(...vals);
    return vals;
  }
}
