/**
 * Layout ops: reshape (a free view), transpose/permute, slice and concat.
 *
 * @module
 */

import { allocHost, byteSize, type DType, type HostArray } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { type Dim, formatShape, normAxis, numel, stridesOf, symbolicSize } from "../core/shape.ts";
import { coordExpr, flatKernel, KernelIo, lit } from "./wgsl/mod.ts";

// Compatibility re-export for code that still imports these from here (ops being
// moved); import them from ./wgsl/mod.ts. Delete once nothing does.
import type { DeviceCaps, KernelContext, KernelEmission, OpDef } from "./types.ts";
import type { NoAttrs } from "./unary.ts";

// --- shared kernel helpers (zeroOf is also used by gather) --------------------------

/**
 * `sum_k coord_k(i) * mul_k` as WGSL, dropping zero terms: the input index of
 * output element `i` of a view whose axis k steps the input by `mul_k`.
 *
 * @example
 * ```ts
 * import { remapExpr } from "./layout.ts";
 * remapExpr("i", [2, 3], [1, 2]); // transpose of a [3, 2] input
 * ```
 */
export function remapExpr(i: string, dims: readonly number[], mul: readonly number[]): string {
  const strides = stridesOf(dims);
  const terms: string[] = [];
  for (let k = 0; k < dims.length; k++) {
    if (dims[k] === 1 || mul[k] === 0) continue;
    const c = coordExpr(i, dims, strides, k);
    terms.push(mul[k] === 1 ? c : `${c} * ${mul[k]}u`);
  }
  return terms.length ? terms.join(" + ") : "0u";
}

/**
 * Zero of a dtype as a WGSL literal.
 *
 * @example
 * ```ts
 * import { zeroOf } from "./layout.ts";
 * zeroOf("u32"); // "0u"
 * ```
 */
export function zeroOf(dtype: DType): string {
  return lit(0, dtype);
}

/**
 * Number of bindings `count` elements of `dtype` take (segments above maxBindingSize).
 *
 * @example
 * ```ts ignore
 * bindingCount(1 << 20, "f32", device.caps); // 1 where a binding holds 4 MiB
 * ```
 */
export function bindingCount(count: number, dtype: DType, caps: DeviceCaps): number {
  const elem = byteSize(dtype);
  if (count * elem <= caps.maxBindingSize) return 1;
  const segElems = Math.floor(
    Math.floor(caps.maxBindingSize / caps.offsetAlignment) * caps.offsetAlignment / elem,
  );
  return Math.ceil(count / segElems);
}

/**
 * Attributes of `reshape`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type ReshapeAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: ReshapeAttrs = { shape: ["T", 8, -1] };
 * g.output("y", g.apply("reshape", [g.input("x", ["T", 512])], attrs)[0]); // f32[T, 8, 64]
 * ```
 */
export interface ReshapeAttrs {
  /** Target shape; one entry may be -1 (inferred). */
  readonly shape: readonly Dim[];
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: readonly Dim[];
}

function splitSize(shape: readonly Dim[]): { n: number; syms: string[] } {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) typeof d === "number" ? (n *= d) : syms.push(d);
  return { n, syms };
}

/** Shape rule of reshape, resolving one -1 when the sizes allow it. */
export function inferReshape(x: TensorType, target: readonly Dim[]): Dim[] {
  const show = `reshape ${formatShape(x.shape)} to ${formatShape(target)}`;
  const holes = target.filter((d) => d === -1).length;
  if (holes > 1) throw new RangeError(`${show}: at most one dimension may be -1`);
  for (const d of target) {
    if (typeof d === "number" && d !== -1 && (!Number.isInteger(d) || d < 0)) {
      throw new RangeError(`${show}: invalid dimension ${d}`);
    }
  }
  const src = splitSize(x.shape);
  const known = splitSize(target.filter((d) => d !== -1));
  const out = [...target];
  if (holes === 1) {
    const rest = [...src.syms];
    for (const s of known.syms) {
      const i = rest.indexOf(s);
      if (i < 0) throw new RangeError(`${show}: symbol "${s}" does not appear in the input shape`);
      rest.splice(i, 1);
    }
    if (known.n === 0 || src.n % known.n !== 0) {
      throw new RangeError(`${show}: ${src.n} elements do not divide by ${known.n}`);
    }
    const n = src.n / known.n;
    let fill: Dim;
    if (rest.length === 0) fill = n;
    else if (rest.length === 1 && n === 1) fill = rest[0];
    else throw new RangeError(`${show}: cannot infer -1 symbolically; give the dimension`);
    out[out.indexOf(-1)] = fill;
  }
  if (symbolicSize(out) !== symbolicSize(x.shape)) {
    throw new RangeError(`${show}: element counts differ`);
  }
  return out;
}

/** Reshape: same elements in row-major order, new shape; shares the input's buffer. */
export const reshape: OpDef<ReshapeAttrs> = {
  arity: 1,
  attrNames: ["shape"],
  infer: ([x], attrs) => [{ shape: inferReshape(x, attrs.shape), dtype: x.dtype }],
  reference: ([x]) => [x.data.slice()],
  lower: { kind: "alias" },
};

/**
 * Stop-gradient: the input itself (sharing its buffer), but `grad` sends no
 * gradient back through it (PyTorch's `detach`).
 */
export const stopGradient: OpDef<NoAttrs> = {
  arity: 1,
  attrNames: [],
  infer: ([x]) => [{ shape: [...x.shape], dtype: x.dtype }],
  reference: ([x]) => [x.data.slice()],
  lower: { kind: "alias" },
};

/**
 * Attributes of `transpose`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type TransposeAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: TransposeAttrs = { perm: [1, 0] };
 * g.output("y", g.apply("transpose", [g.input("x", [2, 3])], attrs)[0]); // f32[3, 2]
 * ```
 */
export interface TransposeAttrs {
  /** Output axis i is input axis perm[i]. */
  readonly perm: readonly number[];
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: readonly number[];
}

/** Shape rule of transpose. */
export function inferTranspose(x: TensorType, perm: readonly number[]): Dim[] {
  const r = x.shape.length;
  const seen = new Set(perm);
  if (
    perm.length !== r || seen.size !== r ||
    perm.some((p) => !Number.isInteger(p) || p < 0 || p >= r)
  ) {
    throw new RangeError(
      `transpose: perm [${perm.join(", ")}] is not a permutation of the ${r} axes of ${
        formatShape(x.shape)
      }`,
    );
  }
  return perm.map((p) => x.shape[p]);
}

/**
 * Simplifies a transpose: drops size-1 axes and merges runs of output axes that are
 * also adjacent, in order, in the input. Returns the merged output dims and, per
 * merged output axis, its stride in the input.
 */
export function collapseTranspose(
  shape: readonly number[],
  perm: readonly number[],
): { dims: number[]; inStrides: number[] } {
  const keptIn = shape.map((_, a) => a).filter((a) => shape[a] !== 1);
  const rank = new Map(keptIn.map((a, r) => [a, r]));
  const outAxes = perm.filter((a) => shape[a] !== 1);
  const groups: number[][] = [];
  for (const a of outAxes) {
    const last = groups[groups.length - 1];
    if (last && rank.get(last[last.length - 1])! + 1 === rank.get(a)!) last.push(a);
    else groups.push([a]);
  }
  // Merged input: groups ordered by their first input axis.
  const byIn = [...groups].sort((x, y) => x[0] - y[0]);
  const inDims = byIn.map((g) => g.reduce((n, a) => n * shape[a], 1));
  const inStr = stridesOf(inDims);
  const strideOf = new Map(byIn.map((g, r) => [g, inStr[r]]));
  return {
    dims: groups.map((g) => g.reduce((n, a) => n * shape[a], 1)),
    inStrides: groups.map((g) => strideOf.get(g)!),
  };
}

/** CPU transpose on typed arrays. */
function transposeRef(
  x: HostArray,
  shape: readonly number[],
  perm: readonly number[],
  dtype: DType,
): HostArray {
  const n = numel(shape);
  const out = allocHost(dtype, n);
  const { dims, inStrides } = collapseTranspose(shape, perm);
  if (dims.length <= 1) {
    out.set(x.subarray(0, n) as never);
    return out;
  }
  const r = dims.length;
  const coord = new Array<number>(r).fill(0);
  let src = 0;
  for (let i = 0; i < n; i++) {
    out[i] = x[src];
    // Odometer increment over the output's coordinates.
    for (let k = r - 1; k >= 0; k--) {
      coord[k]++;
      src += inStrides[k];
      if (coord[k] < dims[k]) break;
      src -= inStrides[k] * dims[k];
      coord[k] = 0;
    }
  }
  return out;
}

/** Permutes axes; fused into its consumers' loads (a copy only when materialised). */
export const transpose: OpDef<TransposeAttrs> = {
  arity: 1,
  attrNames: ["perm"],
  infer: ([x], a) => [{ shape: inferTranspose(x, a.perm), dtype: x.dtype }],
  reference: ([x], a) => [transposeRef(x.data, x.shape, a.perm, x.dtype)],
  lower: {
    kind: "view",
    index(i, input, _output, attrs) {
      // The input index is the output's coordinates remapped with constant strides.
      const { dims, inStrides } = collapseTranspose(input, attrs.perm);
      return dims.length <= 1 ? i : `(${remapExpr(i, dims, inStrides)})`;
    },
  },
};

/** Sizes before, at and after `axis` of a concrete shape. */
export function splitAt(
  shape: readonly number[],
  axis: number,
): { outer: number; d: number; inner: number } {
  return {
    outer: numel(shape.slice(0, axis)),
    d: shape[axis],
    inner: numel(shape.slice(axis + 1)),
  };
}

/**
 * Attributes of `slice`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type SliceAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: SliceAttrs = { axis: 0, start: 2, end: 6 };
 * g.output("y", g.apply("slice", [g.input("x", [8])], attrs)[0]); // x.slice(0, 2, 6)
 * ```
 */
export interface SliceAttrs {
  /** Axis sliced. */
  readonly axis: number;
  /** First index kept. */
  readonly start: number;
  /** One past the last index kept. */
  readonly end: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

/** Keeps `[start, end)` along one axis; fused into its consumers' loads. */
export const slice: OpDef<SliceAttrs> = {
  arity: 1,
  attrNames: ["axis", "start", "end"],
  infer([x], a) {
    const axis = normAxis(a.axis, x.shape.length, `slice of ${formatShape(x.shape)}`);
    const d = x.shape[axis];
    const bad = !Number.isInteger(a.start) || !Number.isInteger(a.end) || a.start < 0 ||
      a.end < a.start || (typeof d === "number" && a.end > d);
    if (bad) {
      throw new RangeError(
        `slice: range [${a.start}, ${a.end}) is invalid for axis ${axis} of ${
          formatShape(x.shape)
        }`,
      );
    }
    const shape = [...x.shape];
    shape[axis] = a.end - a.start;
    return [{ shape, dtype: x.dtype }];
  },
  reference([x], a, [out]) {
    const { outer, d, inner } = splitAt(x.shape, normAxis(a.axis, x.shape.length, "slice"));
    const len = a.end - a.start;
    const res = allocHost(out.dtype, outer * len * inner);
    for (let o = 0; o < outer; o++) {
      const from = (o * d + a.start) * inner;
      res.set(x.data.subarray(from, from + len * inner) as never, o * len * inner);
    }
    return [res];
  },
  lower: {
    kind: "view",
    index(i, shape, _output, attrs) {
      const { outer, d, inner } = splitAt(shape, normAxis(attrs.axis, shape.length, "slice"));
      if (attrs.end > d) {
        // Only reachable when the axis was symbolic at build time.
        throw new RangeError(
          `slice: range [${attrs.start}, ${attrs.end}) is invalid for axis ${attrs.axis} of ${
            formatShape(shape)
          }`,
        );
      }
      const len = (attrs.end - attrs.start) * inner;
      const base = attrs.start * inner;
      // Output element i of row o reads input element o·d·inner + start·inner + (i mod len).
      if (len === 0) return "0u"; // empty slice: no element is ever read
      if (outer === 1) return base === 0 ? i : `(${i} + ${base}u)`;
      return `((${i} / ${len}u) * ${d * inner}u + ${base}u + (${i} % ${len}u))`;
    },
  },
};

/**
 * Attributes of `concat`.
 *
 * @example
 * ```ts
 * import { type ConcatAttrs, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: ConcatAttrs = { axis: 1 };
 * g.output("y", g.apply("concat", [g.input("a", [2, 3]), g.input("b", [2, 5])], attrs)[0]);
 * ```
 */
export interface ConcatAttrs {
  /** Axis joined along. */
  readonly axis: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

/** Joins tensors along an axis (a copy). */
export const concat: OpDef<ConcatAttrs> = {
  arity: [1, 64],
  attrNames: ["axis"],
  infer(xs, a) {
    const r = xs[0].shape.length;
    const axis = normAxis(a.axis, r, `concat of ${formatShape(xs[0].shape)}`);
    let total = 0;
    for (const [i, x] of xs.entries()) {
      const same = x.shape.length === r &&
        x.shape.every((d, k) => k === axis || d === xs[0].shape[k]);
      if (!same) {
        throw new RangeError(
          `concat: operand ${i} shape ${formatShape(x.shape)} does not match ${
            formatShape(xs[0].shape)
          } outside axis ${axis}`,
        );
      }
      if (x.dtype !== xs[0].dtype) {
        throw new TypeError(`concat: operand ${i} dtype ${x.dtype} differs from ${xs[0].dtype}`);
      }
      const d = x.shape[axis];
      if (typeof d !== "number") {
        throw new RangeError(
          `concat: axis ${axis} of operand ${i} is symbolic ("${d}"); concat needs sizes`,
        );
      }
      total += d;
    }
    const shape = [...xs[0].shape];
    shape[axis] = total;
    return [{ shape, dtype: xs[0].dtype }];
  },
  reference(xs, a, [out]) {
    const axis = normAxis(a.axis, xs[0].shape.length, "concat");
    const { outer, inner } = splitAt(xs[0].shape, axis);
    const widths = xs.map((x) => x.shape[axis] * inner);
    const W = widths.reduce((s, w) => s + w, 0);
    const res = allocHost(out.dtype, outer * W);
    for (let o = 0; o < outer; o++) {
      let off = o * W;
      xs.forEach((x, j) => {
        res.set(x.data.subarray(o * widths[j], (o + 1) * widths[j]) as never, off);
        off += widths[j];
      });
    }
    return [res];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit: emitConcat,
  },
};

/**
 * Concat lowering. One kernel copies every operand when the bindings fit; with
 * more operands than `maxStorageBuffers` allows, operands are packed greedily
 * into several kernels, each writing its operands' part of the output (threads
 * cover only that part, so none idle). An output that is not bound directly
 * (a fused epilogue) is assumed to need two extra bindings; if that guess is low
 * the planner sheds the epilogue and retries.
 */
function emitConcat({ attrs, inputs, outputs, caps }: KernelContext<ConcatAttrs>): KernelEmission {
  const axis = normAxis(attrs.axis, inputs[0].shape.length, "concat");
  const { outer, inner } = splitAt(inputs[0].shape, axis);
  const widths = inputs.map((x) => x.shape[axis] * inner);
  const offsets: number[] = [];
  let W = 0;
  for (const w of widths) {
    offsets.push(W);
    W += w;
  }
  const out = outputs[0];
  const outFits = numel(out.shape) * byteSize(out.dtype) <= caps.maxBindingSize;
  const reserve = bindingCount(numel(out.shape), out.dtype, caps) +
    (!out.direct && outFits ? 2 : 0);
  const budget = Math.max(1, caps.maxStorageBuffers - reserve);
  // Greedy packing of non-empty operands into kernels.
  const packs: number[][] = [];
  let used = budget;
  inputs.forEach((x, j) => {
    if (widths[j] === 0) return;
    const cost = bindingCount(numel(x.shape), x.dtype, caps);
    if (used + cost > budget) {
      packs.push([]);
      used = 0;
    }
    packs[packs.length - 1].push(j);
    used += cost;
  });
  if (packs.length === 0) {
    // Empty output: a kernel that does nothing.
    const io = new KernelIo();
    const body = `  ${io.store(0, "i", zeroOf(out.dtype))};`;
    return { kernels: [flatKernel("concat", 0, caps, body, "", io)] };
  }
  const kernels = packs.map((pack, p) => {
    const io = new KernelIo();
    const ws = pack.reduce((s, j) => s + widths[j], 0);
    const lines: string[] = [];
    lines.push(
      outer === 1 ? "  let o = 0u;\n  let c = i;" : `  let o = i / ${ws}u;\n  let c = i % ${ws}u;`,
    );
    let start = 0;
    pack.forEach((j, q) => {
      const local = start ? `c - ${start}u` : "c";
      const dst = `o * ${W}u + ${offsets[j]}u + ${local}`;
      const src = `o * ${widths[j]}u + ${local}`;
      const stmt = `${io.store(0, dst, io.load(j, src))};`;
      const end = start + widths[j];
      if (pack.length === 1) lines.push(`  ${stmt}`);
      else if (q === 0) lines.push(`  if (c < ${end}u) { ${stmt} }`);
      else if (q === pack.length - 1) lines.push(`  else { ${stmt} }`);
      else lines.push(`  else if (c < ${end}u) { ${stmt} }`);
      start = end;
    });
    const label = packs.length > 1 ? `part${p}` : "concat";
    return flatKernel(label, outer * ws, caps, lines.join("\n"), "", io);
  });
  return { kernels };
}
