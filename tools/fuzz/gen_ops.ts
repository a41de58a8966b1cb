/**
 * Structural ops for the generator: reductions, matmul, softmax and norms,
 * layout (reshape, transpose, slice, concat), gather, cumsum, top-k, write_rows,
 * RoPE and attention. Each builder picks an operand from the pool (or makes a
 * leaf that fits), chooses attributes the op's shape rule accepts, raises the
 * minimum of any symbol the op needs non-empty, and reports what it knows of the
 * result.
 *
 * @module
 */

import { type DType, isFloat } from "../../core/dtype.ts";
import type { Dim } from "../../core/shape.ts";
import type { OpName } from "../../ops/registry.ts";
import { floatLeaf, lastDim, mag, specLike, tame, variesOf } from "./gen_elementwise.ts";
import { type Gen, type Info, infoOf, LONG_MENU, MAX_ELEMS, type Val } from "./gen.ts";

/** A new leaf with a long last axis: the row-per-workgroup and chunked kernels. */
function longLeaf(g: Gen): Val {
  return g.leaf([g.int(1, 3), g.pick(LONG_MENU)], g.floatType(), g.uniform());
}

/** Index results: exact when the keys are, else outputs only (near ties may differ). */
function indexInfo(key: Val, n: number): Info {
  const i = infoOf("u32", 0, Math.max(0, n - 1), { exact: true, step: 1 }, false);
  return key.info.exact ? i : { ...i, exact: false, terminal: true };
}

/** Bounds of a sum of up to `n` (at least `nMin`) terms in [lo, hi]. */
function sumRange(i: Info, nMin: number, n: number): [number, number] {
  const lo = i.lo > 0 && nMin >= 1 ? i.lo : Math.min(0, i.lo) * n;
  const hi = i.hi < 0 && nMin >= 1 ? i.hi : Math.max(0, i.hi) * n;
  return [lo, hi];
}

/** sum, mean, max, min, argmax or logsumexp along a random axis. */
export function reduce(g: Gen): boolean {
  const x = (g.chance(0.1) ? longLeaf(g) : g.take((v) => v.shape.length >= 1)) ?? floatLeaf(g);
  const r = x.shape.length;
  if (r === 0) return false;
  const float = isFloat(x.dtype);
  const op = g.pick(
    float
      ? ["sum", "sum", "mean", "max", "min", "argmax", "logsumexp"] as const
      : ["sum", "max", "min", "argmax"] as const,
  );
  const axis = g.int(-r, r - 1);
  const d = x.shape[axis < 0 ? axis + r : axis];
  if (op !== "sum" && !g.atLeast(d, 1)) return false;
  if (op === "logsumexp" && x.info.hi > 40) return false;
  const R = g.dimMax(d), Rmin = g.dimMin(d);
  const keepdims = g.chance(0.3);
  return !!g.emit(op, [x], { axis, keepdims }, ([t]) => {
    if (op === "argmax") return [indexInfo(x, R)];
    let [lo, hi] = [x.info.lo, x.info.hi];
    if (op === "sum") [lo, hi] = sumRange(x.info, Rmin, R);
    if (op === "logsumexp") hi += Math.log(Math.max(R, 1));
    const exact = x.info.exact && (op === "sum" || op === "max" || op === "min");
    return [infoOf(t.dtype, lo, hi, { exact, step: x.info.step }, !exact && x.info.varies)];
  });
}

/** Batched matmul with transposes, broadcast batches and GEMV-friendly weights. */
export function matmul(g: Gen): boolean {
  let a = (g.chance(0.08) ? longLeaf(g) : undefined) ??
    g.take((v) => isFloat(v.dtype) && v.shape.length >= 2 && v.shape.length <= 4) ??
    g.leaf(g.shape(g.pick([2, 2, 3])), g.floatType(), g.uniform());
  if (a.shape.length < 2) return false;
  if (mag(a.info) > 64) {
    const t = tame(g, a);
    if (!t) return false;
    a = t;
  }
  const ra = a.shape.length;
  const transA = g.chance(0.25);
  const K = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const batchA = a.shape.slice(0, ra - 2);
  const batch: Dim[] = g.weighted<Dim[]>([
    [3, []],
    [2, [...batchA]],
    [1, batchA.map((d) => (g.chance(0.5) ? 1 : d))],
    [1, batchA.length === 0 ? [g.pick([2, 3])] : [...batchA]],
  ]);
  let N = g.dim(0.15);
  // A long K leaves room for a few columns only.
  if (g.maxNumel([...batch, K, N]) > MAX_ELEMS) N = g.pick([1, 2, 3, 5]);
  const transB = g.chance(0.45);
  const shapeB = [...batch, ...(transB ? [N, K] : [K, N])];
  const Kmax = Math.max(1, g.dimMax(K));
  // Keep |a·b| sums within about 64.
  const s = Math.min(2, 2 ** Math.floor(Math.log2(64 / (Kmax * Math.max(mag(a.info), 1e-3)))));
  const exactB = a.info.exact && g.chance(0.5);
  const b = g.take(
    (v) => v.dtype === a.dtype && v.shape.join() === shapeB.join() && v.ref !== a.ref,
    0.2,
  ) ??
    g.leaf(
      shapeB,
      a.dtype,
      exactB ? { kind: "grid", lo: -2, hi: 2, step: 0.5 } : { kind: "uniform", lo: -s, hi: s },
      shapeB.every((d) => typeof d === "number") && transB && g.chance(0.5) ? "param" : undefined,
    );
  const attrs: Record<string, boolean | string> = { transA, transB };
  const plain = batch.length === 0 || batchA.length === 0 || batch.join() === batchA.join();
  if (plain && g.chance(0.1)) attrs.tile = g.pick(["naive", "tiled"]);
  const B = Kmax * mag(a.info) * mag(b.info);
  const nonneg = a.info.lo >= 0 && b.info.lo >= 0;
  const exact = a.info.exact && b.info.exact;
  return !!g.emit("matmul", [a, b], attrs, ([t]) => [
    infoOf(t.dtype, nonneg ? 0 : -B, B, { exact, step: a.info.step * b.info.step }, !exact),
  ]);
}

/** Softmax along a random axis. */
export function softmax(g: Gen): boolean {
  const x = g.take((v) => isFloat(v.dtype) && v.shape.length >= 1 && mag(v.info) <= 40) ??
    floatLeaf(g);
  if (x.shape.length === 0) return false;
  const axis = g.int(-x.shape.length, x.shape.length - 1);
  const d = x.shape[axis < 0 ? axis + x.shape.length : axis];
  // Softmax and norms of a one-element axis are constants: nothing varies any more.
  return !!g.emit("softmax", [x], { axis }, () => [
    infoOf(x.dtype, 0, 1, { exact: false, step: 0 }, x.info.varies && g.dimMin(d) >= 2),
  ]);
}

/** RMSNorm or LayerNorm over the last axis with weights (and bias) of [D]. */
export function norm(g: Gen): boolean {
  const layer = g.chance(0.5);
  // LayerNorm subtracts the row mean: its rows must vary, or rounding noise is all it sees.
  const ok = (v: Val) =>
    isFloat(v.dtype) && v.shape.length >= 1 &&
    (!layer || (v.info.varies && v.info.hi - v.info.lo >= 0.05 * mag(v.info)));
  const x = g.take(ok) ?? g.leaf(g.shape(), g.floatType(), g.uniform());
  if (!ok(x)) return false;
  const D = lastDim(x.shape)!;
  if (layer && !g.atLeast(D, 2)) return false;
  const w = g.take(
    (v) => v.dtype === x.dtype && v.shape.length === 1 && v.shape[0] === D && mag(v.info) <= 4,
    0.2,
  ) ??
    g.leaf([D], x.dtype, { kind: "uniform", lo: 0.5, hi: 1.5 });
  const inputs = [x, w];
  if (layer) inputs.push(g.leaf([D], x.dtype, { kind: "uniform", lo: -0.5, hi: 0.5 }));
  const eps = g.pick([1e-5, 1e-6, 1e-2]);
  const b = Math.sqrt(Math.max(1, g.dimMax(D))) * mag(w.info) + (layer ? 0.5 : 0);
  return !!g.emit(layer ? "layernorm" : "rmsnorm", inputs, { eps }, () => [
    infoOf(x.dtype, -b, b, { exact: false, step: 0 }, x.info.varies && g.dimMin(D) >= 2),
  ]);
}

/** Splits `n` into 1–3 factors. */
function factor(g: Gen, n: number): number[] {
  const out: number[] = [];
  let rest = n;
  for (let k = g.int(1, 3); k > 1; k--) {
    const divs = [];
    for (let d = 1; d <= rest; d++) if (rest % d === 0) divs.push(d);
    const d = g.pick(divs);
    out.push(d);
    rest /= d;
  }
  out.push(rest);
  return out;
}

/** The same value under another name (layout ops keep what is known). */
function same(x: Val): (types: unknown[]) => Info[] {
  return () => [x.info];
}

/** Reshape: concrete runs between symbols refactored (split, merged, 1s added). */
export function reshape(g: Gen): boolean {
  const x = g.take((v) => v.shape.length >= 1) ?? floatLeaf(g);
  const out: Dim[] = [];
  let run = 1, any = false;
  const flush = () => {
    if (any) out.push(...factor(g, run));
    run = 1;
    any = false;
  };
  for (const d of x.shape) {
    if (typeof d === "number") {
      run *= d;
      any = true;
    } else {
      flush();
      out.push(d);
    }
  }
  flush();
  const concrete = out.map((d, i) => [d, i] as const).filter(([d]) => typeof d === "number");
  if (concrete.length && g.chance(0.2)) out[g.pick(concrete)[1]] = -1;
  const [t] = g.emit("reshape", [x], { shape: out }, same(x)) ?? [];
  return !!t;
}

/** A random non-identity permutation. */
export function transpose(g: Gen): boolean {
  const x = g.take((v) => v.shape.length >= 2) ??
    g.leaf(g.shape(g.pick([2, 3])), g.floatType(), g.uniform());
  const r = x.shape.length;
  const perm = Array.from({ length: r }, (_, i) => i);
  for (let i = r - 1; i > 0; i--) {
    const j = g.int(0, i);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  if (perm.every((p, i) => p === i)) [perm[0], perm[1]] = [perm[1], perm[0]];
  return !!g.emit("transpose", [x], { perm }, same(x));
}

/** Slice [start, end) of one axis (empty now and then; symbolic axes get a minimum). */
export function slice(g: Gen): boolean {
  const x = g.take((v) => v.shape.length >= 1) ?? floatLeaf(g);
  const r = x.shape.length;
  const axis = g.int(-r, r - 1);
  const d = x.shape[axis < 0 ? axis + r : axis];
  let start: number, end: number;
  if (typeof d === "number") {
    start = g.int(0, Math.max(0, d - 1));
    end = g.chance(0.04) ? start : g.int(Math.min(start + 1, d), d);
  } else {
    end = g.int(1, Math.min(4, g.dimMax(d)));
    if (!g.atLeast(d, end)) return false;
    start = g.int(0, end - 1);
  }
  return !!g.emit("slice", [x], { axis, start, end }, same(x));
}

/** Concat of a value with slices of itself, itself again, or new leaves. */
export function concat(g: Gen): boolean {
  const x = g.take((v) => v.shape.some((d) => typeof d === "number" && d > 0)) ??
    g.leaf(g.shape(), g.floatType(), g.uniform());
  const axes = x.shape.map((d, i) => [d, i] as const).filter(([d]) => typeof d === "number");
  if (!axes.length) return false;
  const [d, axis] = g.pick(axes) as readonly [number, number];
  const parts: Val[] = [];
  for (let k = g.int(2, 3); k > 0; k--) {
    const how = g.int(0, 2);
    if (how === 0) parts.push(x);
    else if (how === 1 && d > 1) {
      const cut = g.int(1, d - 1);
      const [lo, hi] = g.chance(0.5) ? [0, cut] : [cut, d];
      const [s] = g.emit("slice", [x], { axis, start: lo, end: hi }, same(x)) ?? [];
      if (s) parts.push(s);
    } else {
      const shape = [...x.shape];
      shape[axis] = g.pick([1, 2, 3, 5]);
      parts.push(g.leaf(shape, x.dtype, specLike(g, x)));
    }
  }
  if (parts.length < 1) return false;
  const exact = parts.every((p) => p.info.exact);
  const lo = Math.min(...parts.map((p) => p.info.lo)),
    hi = Math.max(...parts.map((p) => p.info.hi));
  const step = Math.min(...parts.map((p) => p.info.step));
  const ax = g.chance(0.3) ? axis - x.shape.length : axis;
  return !!g.emit("concat", parts, { axis: ax }, ([t]) => [
    infoOf(t.dtype, lo, hi, { exact, step }, variesOf(t.shape, exact, ...parts)),
  ]);
}

/** Rows of a table by integer ids (some out of range: they read zeros). */
export function gather(g: Gen): boolean {
  const table =
    g.take((v) => v.shape.length >= 1 && typeof v.shape[0] === "number" && v.shape[0] > 0) ??
      g.leaf([g.pick([3, 5, 8, 13]), ...g.shape(g.pick([1, 1, 2]))], g.floatType(), g.uniform());
  const V = table.shape[0] as number;
  if (typeof V !== "number" || V < 1) return false;
  const ids = g.take((v) => !isFloat(v.dtype) && v.info.exact && v.shape.length <= 2, 0.5) ??
    (() => {
      const dt = g.pick(["i32", "u32"] as const);
      const shape = g.chance(0.7) ? [g.dim(0.5)] : [g.pick([1, 2, 3]), g.dim(0.4)];
      return g.special("ids", shape, dt, { kind: "int", lo: dt === "i32" ? -2 : 0, hi: V + 1 });
    })();
  const i = table.info;
  return !!g.emit("gather", [table, ids], {}, ([t]) => [
    infoOf(
      t.dtype,
      Math.min(0, i.lo),
      Math.max(0, i.hi),
      { exact: i.exact, step: i.step },
      i.varies && !i.exact,
    ),
  ]);
}

/** Prefix sums along an axis, inclusive or exclusive, forwards or reversed. */
export function cumsum(g: Gen): boolean {
  const x = (g.chance(0.1) ? longLeaf(g) : g.take((v) => v.shape.length >= 1)) ?? floatLeaf(g);
  const r = x.shape.length;
  if (r === 0) return false;
  const axis = g.int(-r, r - 1);
  const d = x.shape[axis < 0 ? axis + r : axis];
  const [lo, hi] = sumRange(x.info, 0, g.dimMax(d));
  const attrs = { axis, exclusive: g.chance(0.3), reverse: g.chance(0.3) };
  return !!g.emit("cumsum", [x], attrs, ([t]) => [
    infoOf(
      t.dtype,
      lo,
      hi,
      { exact: x.info.exact, step: x.info.step },
      !x.info.exact && x.info.varies,
    ),
  ]);
}

/** The k largest along the last axis (values and u32 indices). */
export function topk(g: Gen): boolean {
  const x = (g.chance(0.1) ? longLeaf(g) : g.take((v) => v.shape.length >= 1)) ?? floatLeaf(g);
  if (x.shape.length === 0) return false;
  const n = lastDim(x.shape)!;
  let k: number;
  if (typeof n === "number") {
    if (n < 1) return false;
    k = g.chance(0.15) ? g.int(1, Math.min(n, 64)) : g.int(1, Math.min(n, 8));
  } else {
    k = g.int(1, 3);
    if (!g.atLeast(n, k)) return false;
  }
  return !!g.emit("topk", [x], { k }, () => [x.info, indexInfo(x, g.dimMax(n))]);
}

/** A float value of shape [T, H, D] (D concrete, even for RoPE), from the pool or new. */
function heads(g: Gen, dtype: DType | undefined, even: boolean): Val {
  const fits = (v: Val) => {
    const D = lastDim(v.shape);
    return isFloat(v.dtype) && (dtype === undefined || v.dtype === dtype) && v.shape.length === 3 &&
      typeof D === "number" && D <= 32 && (!even || D % 2 === 0) && mag(v.info) <= 4;
  };
  return g.take(fits, 0.6) ??
    g.leaf(
      [g.dim(0.6), g.pick([1, 2, 3]), g.pick(even ? [2, 4, 6, 8, 16] : [2, 4, 5, 8, 16])],
      dtype ?? g.floatType(),
      g.uniform(),
    );
}

/** RoPE at a position read from a u32 input, θ or explicit frequencies. */
export function rope(g: Gen): boolean {
  const x = heads(g, undefined, true);
  const D = lastDim(x.shape) as number;
  const attrs: Record<string, number | number[]> = { theta: g.pick([10000, 1e6, 500]) };
  if (g.chance(0.2)) {
    attrs.invFreq = Array.from({ length: D / 2 }, () => Math.fround(10 ** (-4 * g.rand())));
    if (g.chance(0.5)) attrs.scale = g.pick([0.5, 1.25]);
  }
  const m = mag(x.info) * 1.5 * ((attrs.scale as number) ?? 1);
  return !!g.emit("rope", [x, g.pos(0, 40)], attrs, () => [
    infoOf(x.dtype, -m, m, { exact: false, step: 0 }, x.info.varies),
  ]);
}

/** Attention over a KV range with grouped heads, causal masks, windows and splits. */
export function attention(g: Gen): boolean {
  const dtype = g.floatType();
  const D = g.pick([2, 4, 5, 8, 16, 32]);
  const Hkv = g.pick([1, 1, 2]);
  const Hq = Hkv * g.pick([1, 2, 3]);
  const q = g.take(
    (v) =>
      v.dtype === dtype && v.shape.length === 3 && v.shape[1] === Hq && v.shape[2] === D &&
      mag(v.info) <= 4,
    0.6,
  ) ??
    g.leaf([g.dim(0.6), Hq, D], dtype, g.uniform());
  const T = q.shape[0];
  const S = g.chance(0.5) ? T : g.dim(0.5);
  const k = g.leaf([S, Hkv, D], dtype, g.uniform());
  const v = g.chance(0.2) ? k : g.leaf([S, Hkv, D], dtype, g.uniform());
  const causal = g.chance(0.7);
  const window = causal && g.chance(0.3) ? g.int(1, 8) : 0;
  const splits = g.chance(0.3) ? g.int(1, 4) : 0;
  let scale = g.chance(0.5) ? 1 / Math.sqrt(D) : g.pick([0.1, 0.3, 0.5]);
  scale = Math.min(scale, 30 / (D * mag(q.info) * mag(k.info)));
  // Mostly a cache that holds every query (pos + T ≤ S); now and then rows that see nothing.
  const room = Math.max(0, g.dimMin(S) - g.dimMax(T));
  const pos = g.chance(0.15) ? g.pos(0, g.dimMax(S) + 2) : g.pos(0, room);
  const m = mag(v.info);
  return !!g.emit("attention", [q, k, v, pos], { scale, causal, window, splits }, () => [
    infoOf(dtype, -m, m, { exact: false, step: 0 }, v.info.varies),
  ]);
}

/** write_rows into a value (not a state): rows pos.. replaced, rows past the end dropped. */
export function writeRows(g: Gen): boolean {
  const dst =
    g.take((v) => v.shape.length >= 1 && typeof v.shape[0] === "number" && v.shape[0] > 0) ??
      g.leaf([g.pick([4, 6, 9]), ...g.shape(1)], g.floatType(), g.uniform());
  const R = dst.shape[0] as number;
  if (typeof R !== "number") return false;
  const srcShape = [g.chance(0.5) ? g.dim(0.6) : g.int(1, R + 1), ...dst.shape.slice(1)];
  const src = g.take(
    (v) =>
      v.dtype === dst.dtype && v.ref !== dst.ref && v.shape.length === srcShape.length &&
      v.shape.slice(1).join() === srcShape.slice(1).join(),
    0.3,
  ) ??
    g.leaf(srcShape, dst.dtype, specLike(g, dst));
  const exact = dst.info.exact && src.info.exact;
  return !!g.emit("write_rows", [dst, src, g.pos(0, R + 1)], {}, ([t]) => [
    infoOf(t.dtype, Math.min(dst.info.lo, src.info.lo), Math.max(dst.info.hi, src.info.hi), {
      exact,
      step: Math.min(dst.info.step, src.info.step),
    }, variesOf(t.shape, exact, dst, src)),
  ]);
}

/** Ops a structural builder above can emit, for the coverage table. */
export const STRUCTURAL_OPS: readonly OpName[] = [
  "sum",
  "mean",
  "max",
  "min",
  "argmax",
  "logsumexp",
  "matmul",
  "softmax",
  "rmsnorm",
  "layernorm",
  "reshape",
  "transpose",
  "slice",
  "concat",
  "gather",
  "cumsum",
  "topk",
  "write_rows",
  "rope",
  "attention",
];
