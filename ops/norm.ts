/**
 * Normalisations over the last axis: RMSNorm and LayerNorm, statistics in f32.
 *
 * One kernel each, one workgroup per row: threads stride over the row, partial
 * sums meet in a workgroup-memory tree, then every thread writes its elements.
 * Rows of up to 16 elements per thread stay in registers, so the input (and any
 * fused prologue) is read once; longer rows are re-read per pass.
 *
 * Conventions: RMSNorm follows HF Llama/Mamba — `w * T(x * rsqrt(mean(x²) + eps))`
 * with the statistics in f32 and the normalised value cast to the tensor dtype
 * before the weight multiplies it. LayerNorm follows PyTorch — biased variance
 * (two-pass: mean, then Σ(x − mean)²) and `(x − mean) · rstd · w + b` in f32.
 *
 * @module
 */

import { allocHost, type DType, type HostArray, isFloat, roundHost } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { formatShape } from "../core/shape.ts";
import type { HostTensor, KernelContext, KernelEmission, OpDef } from "./types.ts";
import { rowWorkgroup, wgslTree } from "./reduce.ts";
import { groupIndex } from "./wgsl/grid.ts";
import { f32, grid, KernelIo } from "./wgsl/mod.ts";

/**
 * Attributes of the norms.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type NormAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: NormAttrs = { eps: 1e-5 };
 * g.output("y", g.apply("rmsnorm", [g.input("x", ["T", 64]), g.param("w", [64])], attrs)[0]);
 * ```
 */
export interface NormAttrs {
  /** Added to the variance before the square root. */
  readonly eps: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

function inferNorm(op: string, inputs: readonly TensorType[], attrs: NormAttrs): TensorType[] {
  const [x, ...affine] = inputs;
  if (!isFloat(x.dtype)) throw new TypeError(`${op}: expects a float tensor, got ${x.dtype}`);
  if (x.shape.length < 1) throw new RangeError(`${op}: input must have rank >= 1`);
  if (!(typeof attrs.eps === "number" && attrs.eps >= 0)) {
    throw new RangeError(`${op}: eps must be a number >= 0, got ${attrs.eps}`);
  }
  const d = x.shape[x.shape.length - 1];
  for (const [i, w] of affine.entries()) {
    const name = i === 0 ? "weight" : "bias";
    if (w.shape.length !== 1 || w.shape[0] !== d) {
      throw new RangeError(
        `${op}: ${name} shape ${formatShape(w.shape)} must be [${d}] to match input ${
          formatShape(x.shape)
        }`,
      );
    }
    if (w.dtype !== x.dtype) {
      throw new TypeError(`${op}: ${name} dtype ${w.dtype} differs from input dtype ${x.dtype}`);
    }
  }
  return [{ shape: x.shape, dtype: x.dtype }];
}

/** Rounds to what storing in `dtype` gives. */
function round(dtype: DType, v: number): number {
  return roundHost(dtype, v);
}

function referenceNorm(
  op: "rmsnorm" | "layernorm",
  x: HostTensor,
  w: HostTensor,
  b: HostTensor | undefined,
  eps: number,
  dtype: DType,
): HostArray {
  const d = x.shape[x.shape.length - 1];
  const out = allocHost(dtype, x.data.length);
  const rows = d === 0 ? 0 : x.data.length / d;
  for (let row = 0; row < rows; row++) {
    const base = row * d;
    if (op === "rmsnorm") {
      let ss = 0;
      for (let k = 0; k < d; k++) ss += x.data[base + k] ** 2;
      const r = 1 / Math.sqrt(ss / d + eps);
      for (let k = 0; k < d; k++) out[base + k] = w.data[k] * round(dtype, x.data[base + k] * r);
    } else {
      let s = 0;
      for (let k = 0; k < d; k++) s += x.data[base + k];
      const mean = s / d;
      let v = 0;
      for (let k = 0; k < d; k++) v += (x.data[base + k] - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / d + eps);
      for (let k = 0; k < d; k++) {
        out[base + k] = (x.data[base + k] - mean) * rstd * w.data[k] + b!.data[k];
      }
    }
  }
  return out;
}

/** Most elements a thread keeps in registers. */
const MAX_CACHED = 16;

/** Emits the one-kernel lowering of a norm for concrete operands. */
export function emitNorm(
  op: "rmsnorm" | "layernorm",
  ctx: KernelContext<NormAttrs>,
): KernelEmission {
  const x = ctx.inputs[0];
  const t = ctx.outputs[0].dtype;
  const d = x.shape[x.shape.length - 1];
  const n = x.shape.reduce((a, b) => a * b, 1);
  const rows = d === 0 ? 0 : n / d;
  const wg = rowWorkgroup(ctx.caps, d);
  const k = Math.max(1, Math.ceil(d / wg));
  const cached = k <= MAX_CACHED;
  const epsLit = f32(Math.fround(ctx.attrs.eps), `${op}: eps`);
  const dLit = f32(Math.max(d, 1));
  const workgroups = grid(rows, ctx.caps.maxWorkgroupsPerDim);
  const io = new KernelIo();
  const value = cached ? "xs[k]" : `f32(${io.load(0, "base + c")})`;
  /** A loop over this thread's elements of the row. */
  const each = (body: string) =>
    `  for (var k = 0u; k < ${k}u; k = k + 1u) {
    let c = t + k * ${wg}u;
    if (c < ${d}u) {
      let x = ${value};
${body}
    }
  }`;
  const sumTree = wgslTree(wg, (p, q) => `      kn_red[${p}] = kn_red[${p}] + kn_red[${q}];`);
  const first = cached
    ? `  for (var k = 0u; k < ${k}u; k = k + 1u) {
    let c = t + k * ${wg}u;
    if (c < ${d}u) {
      let x = f32(${io.load(0, "base + c")});
      xs[k] = x;
      acc = acc + ${op === "rmsnorm" ? "x * x" : "x"};
    }
  }`
    : each(`      acc = acc + ${op === "rmsnorm" ? "x * x" : "x"};`);
  let tail: string;
  if (op === "rmsnorm") {
    tail = `  let rs = 1.0 / sqrt(kn_red[0] / ${dLit} + ${epsLit});
${each(`      ${io.store(0, "base + c", `${io.load(1, "c")} * ${t}(x * rs)`)};`)}`;
  } else {
    tail = `  let mean = kn_red[0] / ${dLit};
  workgroupBarrier();
  var sq: f32 = 0.0;
${each("      let dx = x - mean;\n      sq = sq + dx * dx;")}
  kn_red[t] = sq;
${sumTree}
  let rstd = 1.0 / sqrt(kn_red[0] / ${dLit} + ${epsLit});
${
      each(
        `      ${
          io.store(
            0,
            "base + c",
            `${t}((x - mean) * rstd * f32(${io.load(1, "c")}) + f32(${io.load(2, "c")}))`,
          )
        };`,
      )
    }`;
  }
  const code = `var<workgroup> kn_red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let o = ${groupIndex(workgroups)};
  if (o >= ${rows}u) { return; }
  let base = o * ${d}u;
${cached ? `  var xs: array<f32, ${k}>;` : ""}
  var acc: f32 = 0.0;
${first}
  kn_red[t] = acc;
${sumTree}
${tail}
}
`;
  return { kernels: [{ label: op, code, workgroups, uses: io.uses }] };
}

/** RMSNorm: w · x · rsqrt(mean(x²) + eps) over the last axis. */
export const rmsnorm: OpDef<NormAttrs> = {
  arity: 2,
  attrNames: ["eps"],
  infer: (inputs, attrs) => inferNorm("rmsnorm", inputs, attrs),
  reference: (
    [x, w],
    attrs,
    outs,
  ) => [referenceNorm("rmsnorm", x, w, undefined, attrs.eps, outs[0].dtype)],
  lower: { kind: "kernel", prologue: [0], epilogue: true, emit: (ctx) => emitNorm("rmsnorm", ctx) },
};

/** LayerNorm: (x − mean)/√(var + eps) · w + b over the last axis. */
export const layernorm: OpDef<NormAttrs> = {
  arity: 3,
  attrNames: ["eps"],
  infer: (inputs, attrs) => inferNorm("layernorm", inputs, attrs),
  reference: (
    [x, w, b],
    attrs,
    outs,
  ) => [referenceNorm("layernorm", x, w, b, attrs.eps, outs[0].dtype)],
  lower: {
    kind: "kernel",
    prologue: [0],
    epilogue: true,
    emit: (ctx) => emitNorm("layernorm", ctx),
  },
};
