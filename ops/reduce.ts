/**
 * Reductions along one axis: sum, mean, max, min, argmax, logsumexp.
 *
 * The input is viewed as `[outer, R, inner]` (R = the reduced axis). Two kernel
 * shapes, chosen from the concrete shape:
 * - **row**: one workgroup per output, its threads stride over R and combine in
 *   workgroup memory with a tree. Used when R is large (≥ 128) and the outputs are
 *   few or the axis is contiguous (inner = 1), so a thread per output would leave
 *   the device idle or walk R alone.
 * - **column**: one thread per output looping over R; neighbouring threads read
 *   neighbouring `inner` positions, so the loads coalesce.
 *
 * Floats accumulate in f32 (also for f16 inputs); i32/u32 sum/max/min use integer
 * arithmetic (sums wrap like two's complement). logsumexp is one online pass
 * (running max and rescaled sum).
 *
 * Empty axis (R = 0, possible only through a symbolic dimension bound to 0 since
 * the shape rule rejects a literal 0 for max/min/argmax): sum 0, mean NaN,
 * max −∞ (i32: −2³¹, u32: 0), min +∞ (i32: 2³¹−1, u32: 2³²−1), argmax 0,
 * logsumexp −∞. NaN propagation through max/min/argmax is not guaranteed on the GPU.
 *
 * @module
 */

import { groupIndex } from "./wgsl/grid.ts";
import { allocHost, type DType, type HostArray, isFloat } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { formatShape, normAxis } from "../core/shape.ts";
import { f32, flatLaunch, grid, KernelIo, lit } from "./wgsl/mod.ts";
import type { DeviceCaps, HostTensor, KernelContext, KernelEmission, OpDef } from "./types.ts";

/**
 * Attributes of a reduction.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type ReduceAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: ReduceAttrs = { axis: -1, keepdims: true };
 * g.output("s", g.apply("sum", [g.input("x", ["T", 64])], attrs)[0]); // f32[T, 1]
 * ```
 */
export interface ReduceAttrs {
  /** Axis reduced (negative counts from the end). */
  readonly axis: number;
  /** Keep the reduced axis as size 1. */
  readonly keepdims: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number | boolean;
}

/** The reductions Kiln knows. */
export type ReduceKind = "sum" | "mean" | "max" | "min" | "argmax" | "logsumexp";

/** Shape rule shared by all reductions. */
export function inferReduce(op: ReduceKind, x: TensorType, attrs: ReduceAttrs): TensorType {
  if (typeof attrs.keepdims !== "boolean") {
    throw new TypeError(`${op}: keepdims must be a boolean, got ${JSON.stringify(attrs.keepdims)}`);
  }
  const axis = normAxis(attrs.axis, x.shape.length, `${op} of ${formatShape(x.shape)}`);
  if ((op === "mean" || op === "logsumexp") && !isFloat(x.dtype)) {
    throw new TypeError(`${op}: expects a float tensor, got ${x.dtype}`);
  }
  if ((op === "max" || op === "min" || op === "argmax") && x.shape[axis] === 0) {
    throw new RangeError(
      `${op}: axis ${attrs.axis} of ${formatShape(x.shape)} has size 0 and ${op} has no identity`,
    );
  }
  const shape = attrs.keepdims
    ? x.shape.map((d, i) => (i === axis ? 1 : d))
    : x.shape.filter((_, i) => i !== axis);
  return { shape, dtype: op === "argmax" ? "u32" : x.dtype };
}

// ---------------------------------------------------------------------------
// Shared helpers (also used by softmax and the norms)

/** `[outer, R, inner]` view of `shape` around `axis`. */
export function splitAxis(
  shape: readonly number[],
  axis: number,
): { outer: number; r: number; inner: number } {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return { outer, r: shape[axis], inner };
}

/**
 * A power-of-two workgroup size for one row of `r` elements: about four elements
 * per thread, at least `min`, at most 256 and the device's invocation limit.
 */
export function rowWorkgroup(caps: DeviceCaps, r: number, min = 32): number {
  let cap = 1;
  while (cap * 2 <= Math.min(256, caps.maxInvocations)) cap *= 2;
  let wg = Math.min(min, cap);
  while (wg < cap && wg * 4 < r) wg *= 2;
  return wg;
}

/**
 * WGSL literal of the lowest finite f32: a safe start for running maxima.
 *
 * @example
 * ```ts
 * import { F32_LOWEST } from "./reduce.ts";
 * const init = `var m: f32 = ${F32_LOWEST};`;
 * ```
 */
export const F32_LOWEST: string = f32(-3.4028234663852886e38);
/** WGSL literal of the largest finite f32. */
const F32_MAX = f32(3.4028234663852886e38);

/**
 * WGSL tree reduction over workgroup arrays `arrays` (each `array<_, wg>`), already
 * filled at `t` by every thread. `combine` emits statements that merge slot `b`
 * into slot `a` (`a`, `b` are index expressions). Leaves the result at index 0,
 * visible to every thread after the final barrier.
 */
export function wgslTree(wg: number, combine: (a: string, b: string) => string): string {
  return `  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) {
${combine("t", "t + s")}
    }
    workgroupBarrier();
  }`;
}

/** Element type of the accumulator for a reduction over `dtype`. */
function accType(dtype: DType): DType {
  return isFloat(dtype) ? "f32" : dtype;
}

// ---------------------------------------------------------------------------
// CPU reference

function referenceReduce(
  op: ReduceKind,
  x: HostTensor,
  attrs: ReduceAttrs,
  outDtype: DType,
): HostArray {
  const axis = normAxis(attrs.axis, x.shape.length, op);
  const { outer, r, inner } = splitAxis(x.shape, axis);
  const out = allocHost(outDtype, outer * inner);
  const d = x.data;
  const dt = x.dtype;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++) {
      const base = o * r * inner + j;
      let v: number;
      switch (op) {
        case "sum":
        case "mean": {
          let acc = 0;
          if (dt === "i32") { for (let k = 0; k < r; k++) acc = (acc + d[base + k * inner]) | 0; }
          else if (dt === "u32") {
            for (let k = 0; k < r; k++) acc = (acc + d[base + k * inner]) >>> 0;
          } else for (let k = 0; k < r; k++) acc += d[base + k * inner];
          v = op === "mean" ? acc / r : acc;
          break;
        }
        case "max":
        case "min": {
          const sign = op === "max" ? 1 : -1;
          let acc = sign * -Infinity;
          if (r === 0 && dt === "i32") acc = op === "max" ? -(2 ** 31) : 2 ** 31 - 1;
          if (r === 0 && dt === "u32") acc = op === "max" ? 0 : 2 ** 32 - 1;
          for (let k = 0; k < r; k++) {
            const e = d[base + k * inner];
            if (sign * e > sign * acc || Number.isNaN(e)) acc = e;
          }
          v = acc;
          break;
        }
        case "argmax": {
          let best = -Infinity;
          let idx = 0;
          for (let k = 0; k < r; k++) {
            const e = d[base + k * inner];
            if (k === 0 || e > best) {
              best = e;
              idx = k;
            }
          }
          v = idx;
          break;
        }
        case "logsumexp": {
          let m = -Infinity;
          for (let k = 0; k < r; k++) m = Math.max(m, d[base + k * inner]);
          // As PyTorch: an infinite maximum is not subtracted (all −∞ gives −∞, +∞ gives +∞).
          const shift = Number.isFinite(m) ? m : 0;
          let s = 0;
          for (let k = 0; k < r; k++) s += Math.exp(d[base + k * inner] - shift);
          v = shift + Math.log(s);
          break;
        }
      }
      out[o * inner + j] = v;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// WGSL lowering

interface Acc {
  /** Declarations + initial values (per thread). */
  init: string;
  /** Statements folding `x` (accumulator type) at reduction index `r` into the state. */
  step: string;
  /** Workgroup arrays holding the state, and statements storing/loading them. */
  shared: string[];
  save: string;
  /** Merge of shared slot b into slot a. */
  combine(a: string, b: string): string;
  /** State variables read back from slot 0. */
  load: string;
  /** Final value expression, of the output dtype. */
  result: string;
}

function accumulator(op: ReduceKind, inDtype: DType, outDtype: DType, r: number, wg: number): Acc {
  const a = accType(inDtype);
  const out = outDtype;
  const lo = lit(a === "f32" ? -Infinity : a === "i32" ? -2147483648 : 0, a);
  const hi = lit(a === "f32" ? Infinity : a === "i32" ? 2147483647 : 4294967295, a);
  const zero = lit(0, a);
  switch (op) {
    case "sum":
    case "mean":
    case "max":
    case "min": {
      const fn = op === "max" ? "max" : op === "min" ? "min" : "";
      const init = op === "max" ? lo : op === "min" ? hi : zero;
      const merge = (p: string, q: string) => (fn ? `${fn}(${p}, ${q})` : `${p} + ${q}`);
      let result = `${out}(acc)`;
      if (op === "mean") result = r === 0 ? lit(NaN, out) : `${out}(acc / ${f32(r)})`;
      return {
        init: `  var acc: ${a} = ${init};`,
        step: `    acc = ${merge("acc", "x")};`,
        shared: [`var<workgroup> kr_acc: array<${a}, ${wg}>;`],
        save: `  kr_acc[t] = acc;`,
        combine: (p, q) => `      kr_acc[${p}] = ${merge(`kr_acc[${p}]`, `kr_acc[${q}]`)};`,
        load: `  let acc = kr_acc[0];`,
        result,
      };
    }
    case "argmax":
      // `bi` = 0xffffffff marks "no element seen"; ties go to the smaller index.
      return {
        init: `  var bv: ${a} = ${lo};\n  var bi = 0xffffffffu;`,
        step: `    if (bi == 0xffffffffu || x > bv) { bv = x; bi = r; }`,
        shared: [
          `var<workgroup> kr_bv: array<${a}, ${wg}>;`,
          `var<workgroup> kr_bi: array<u32, ${wg}>;`,
        ],
        save: `  kr_bv[t] = bv;\n  kr_bi[t] = bi;`,
        combine: (p, q) =>
          `      let va = kr_bv[${p}]; let vb = kr_bv[${q}]; let ia = kr_bi[${p}]; let ib = kr_bi[${q}];
      if (select(vb > va, vb >= va, ib < ia)) { kr_bv[${p}] = vb; kr_bi[${p}] = ib; }`,
        load: `  let bi = kr_bi[0];`,
        result: `select(bi, 0u, bi == 0xffffffffu)`,
      };
    case "logsumexp":
      // Online: m = running max (starts finite so −∞ inputs add exp(−∞) = 0), s = Σ exp(x − m).
      return {
        init: `  var m: f32 = ${F32_LOWEST};\n  var sm: f32 = 0.0;`,
        step:
          `    if (x > m) { sm = sm * exp(m - x) + 1.0; m = x; } else { sm = sm + exp(x - m); }`,
        shared: [
          `var<workgroup> kr_m: array<f32, ${wg}>;`,
          `var<workgroup> kr_s: array<f32, ${wg}>;`,
        ],
        save: `  kr_m[t] = m;\n  kr_s[t] = sm;`,
        combine: (p, q) =>
          `      let ma = kr_m[${p}]; let mb = kr_m[${q}]; let mm = max(ma, mb);
      kr_s[${p}] = kr_s[${p}] * exp(ma - mm) + kr_s[${q}] * exp(mb - mm);
      kr_m[${p}] = mm;`,
        load: `  let m = kr_m[0];\n  let sm = kr_s[0];`,
        // A +∞ maximum gives +∞ (the sum may be NaN from ∞ − ∞).
        result: `${out}(select(m + log(sm), m, m > ${F32_MAX}))`,
      };
  }
}

/** Emits the kernel of a reduction for concrete operands. */
export function emitReduce(op: ReduceKind, ctx: KernelContext<ReduceAttrs>): KernelEmission {
  const x = ctx.inputs[0];
  const axis = normAxis(ctx.attrs.axis, x.shape.length, op);
  const { outer, r, inner } = splitAxis(x.shape, axis);
  const n = outer * inner;
  const a = accType(x.dtype);
  const io = new KernelIo();
  const load = (i: string) => (a === x.dtype ? io.load(0, i) : `${a}(${io.load(0, i)})`);
  const baseExpr = inner === 1 ? `o * ${r}u` : `(o / ${inner}u) * ${r * inner}u + o % ${inner}u`;
  const at = (k: string) => (inner === 1 ? `base + ${k}` : `base + ${k} * ${inner}u`);
  const useRow = r >= 128 && (inner === 1 || n < 1024);
  if (useRow) {
    const wg = rowWorkgroup(ctx.caps, r);
    const acc = accumulator(op, x.dtype, ctx.outputs[0].dtype, r, wg);
    const workgroups = grid(n, ctx.caps.maxWorkgroupsPerDim);
    const code = `${acc.shared.join("\n")}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let o = ${groupIndex(workgroups)};
  if (o >= ${n}u) { return; }
  let base = ${baseExpr};
${acc.init}
  for (var r = t; r < ${r}u; r = r + ${wg}u) {
    let x = ${load(at("r"))};
${acc.step}
  }
${acc.save}
${wgslTree(wg, acc.combine)}
  if (t == 0u) {
${acc.load.replace(/^ {2}/gm, "    ")}
    ${io.store(0, "o", acc.result)};
  }
}
`;
    return { kernels: [{ label: `${op}_row`, code, workgroups, uses: io.uses }] };
  }
  const { wg, workgroups, index } = flatLaunch(n, ctx.caps, 64);
  const acc = accumulator(op, x.dtype, ctx.outputs[0].dtype, r, wg);
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o = ${index};
  if (o >= ${n}u) { return; }
  let base = ${baseExpr};
${acc.init}
  for (var r = 0u; r < ${r}u; r = r + 1u) {
    let x = ${load(at("r"))};
${acc.step}
  }
  ${io.store(0, "o", acc.result)};
}
`;
  return { kernels: [{ label: `${op}_col`, code, workgroups, uses: io.uses }] };
}

function reduceOp(op: ReduceKind): OpDef<ReduceAttrs> {
  return {
    arity: 1,
    attrNames: ["axis", "keepdims"],
    infer: ([x], attrs) => [inferReduce(op, x, attrs)],
    reference: ([x], attrs, outs) => [referenceReduce(op, x, attrs, outs[0].dtype)],
    lower: { kind: "kernel", prologue: true, epilogue: true, emit: (ctx) => emitReduce(op, ctx) },
  };
}

/** Sum along an axis. */
export const sum: OpDef<ReduceAttrs> = reduceOp("sum");
/** Mean along an axis. */
export const mean: OpDef<ReduceAttrs> = reduceOp("mean");
/** Maximum along an axis. */
export const max: OpDef<ReduceAttrs> = reduceOp("max");
/** Minimum along an axis. */
export const min: OpDef<ReduceAttrs> = reduceOp("min");
/** Index of the maximum along an axis (first on ties), as u32. */
export const argmax: OpDef<ReduceAttrs> = reduceOp("argmax");
/** log Σ exp along an axis, computed stably. */
export const logsumexp: OpDef<ReduceAttrs> = reduceOp("logsumexp");
