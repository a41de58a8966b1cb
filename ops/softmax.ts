/**
 * Softmax along an axis, computed stably (max-subtracted) in f32, in one kernel.
 *
 * With the input viewed as `[outer, R, inner]`:
 * - axis last (inner = 1) and R ≥ 32: one workgroup per row. Each thread keeps a
 *   running max and rescaled sum over its strided elements (online softmax), the
 *   workgroup merges them with a tree, then each thread writes its elements. Rows of
 *   up to 16 elements per thread stay in registers, so the input (and any fused
 *   prologue) is read once; longer rows are read twice.
 * - otherwise: one thread per `(outer, inner)` slice, same online pass then a write
 *   pass; neighbouring threads touch neighbouring `inner` positions.
 *
 * A row of all −∞ gives NaN (0/0), as in PyTorch.
 *
 * @module
 */

import { allocHost, isFloat } from "../core/dtype.ts";
import { normAxis } from "../core/shape.ts";
import type { KernelContext, KernelEmission, OpDef } from "./types.ts";
import { F32_LOWEST, rowWorkgroup, splitAxis, wgslTree } from "./reduce.ts";
import { groupIndex } from "./wgsl/grid.ts";
import { flatLaunch, grid, KernelIo } from "./wgsl/mod.ts";

/**
 * Attributes of `softmax`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type SoftmaxAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: SoftmaxAttrs = { axis: -1 };
 * g.output("p", g.apply("softmax", [g.input("logits", ["T", 100])], attrs)[0]);
 * ```
 */
export interface SoftmaxAttrs {
  /** Axis normalised over. */
  readonly axis: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

/** Most elements a thread keeps in registers in the workgroup-per-row kernel. */
const MAX_CACHED = 16;

const ONLINE_STEP =
  `if (x > m) { sm = sm * exp(m - x) + 1.0; m = x; } else { sm = sm + exp(x - m); }`;

/** Emits the softmax kernel for concrete operands. */
export function emitSoftmax(ctx: KernelContext<SoftmaxAttrs>): KernelEmission {
  const x = ctx.inputs[0];
  const out = ctx.outputs[0].dtype;
  const axis = normAxis(ctx.attrs.axis, x.shape.length, "softmax");
  const { outer, r, inner } = splitAxis(x.shape, axis);
  const rows = outer * inner;
  const io = new KernelIo();
  if (inner === 1 && r >= 32) {
    const wg = rowWorkgroup(ctx.caps, r);
    const k = Math.max(1, Math.ceil(r / wg));
    const cached = k <= MAX_CACHED;
    const workgroups = grid(rows, ctx.caps.maxWorkgroupsPerDim);
    const code = `var<workgroup> ks_m: array<f32, ${wg}>;
var<workgroup> ks_s: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let o = ${groupIndex(workgroups)};
  if (o >= ${rows}u) { return; }
  let base = o * ${r}u;
${cached ? `  var xs: array<f32, ${k}>;` : ""}
  var m: f32 = ${F32_LOWEST};
  var sm: f32 = 0.0;
  for (var k = 0u; k < ${k}u; k = k + 1u) {
    let c = t + k * ${wg}u;
    if (c < ${r}u) {
      let x = f32(${io.load(0, "base + c")});
${cached ? "      xs[k] = x;" : ""}
      ${ONLINE_STEP}
    }
  }
  ks_m[t] = m;
  ks_s[t] = sm;
${
      wgslTree(
        wg,
        (p, q) =>
          `      let ma = ks_m[${p}]; let mb = ks_m[${q}]; let mm = max(ma, mb);
      ks_s[${p}] = ks_s[${p}] * exp(ma - mm) + ks_s[${q}] * exp(mb - mm);
      ks_m[${p}] = mm;`,
      )
    }
  let gm = ks_m[0];
  let gs = ks_s[0];
  for (var k = 0u; k < ${k}u; k = k + 1u) {
    let c = t + k * ${wg}u;
    if (c < ${r}u) {
      let x = ${cached ? "xs[k]" : `f32(${io.load(0, "base + c")})`};
      ${io.store(0, "base + c", `${out}(exp(x - gm) / gs)`)};
    }
  }
}
`;
    return { kernels: [{ label: "softmax_row", code, workgroups, uses: io.uses }] };
  }
  const { wg, workgroups, index } = flatLaunch(rows, ctx.caps, 64);
  const baseExpr = inner === 1 ? `o * ${r}u` : `(o / ${inner}u) * ${r * inner}u + o % ${inner}u`;
  const at = (k: string) => (inner === 1 ? `base + ${k}` : `base + ${k} * ${inner}u`);
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o = ${index};
  if (o >= ${rows}u) { return; }
  let base = ${baseExpr};
  var m: f32 = ${F32_LOWEST};
  var sm: f32 = 0.0;
  for (var r = 0u; r < ${r}u; r = r + 1u) {
    let x = f32(${io.load(0, at("r"))});
    ${ONLINE_STEP}
  }
  for (var r = 0u; r < ${r}u; r = r + 1u) {
    let i = ${at("r")};
    ${io.store(0, "i", `${out}(exp(f32(${io.load(0, "i")}) - m) / sm)`)};
  }
}
`;
  return { kernels: [{ label: "softmax_col", code, workgroups, uses: io.uses }] };
}

/** Softmax. */
export const softmax: OpDef<SoftmaxAttrs> = {
  arity: 1,
  attrNames: ["axis"],
  infer([x], attrs) {
    if (!isFloat(x.dtype)) throw new TypeError(`softmax: expects a float tensor, got ${x.dtype}`);
    normAxis(attrs.axis, x.shape.length, "softmax");
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  reference([x], attrs, outs) {
    const axis = normAxis(attrs.axis, x.shape.length, "softmax");
    const { outer, r, inner } = splitAxis(x.shape, axis);
    const out = allocHost(outs[0].dtype, x.data.length);
    const d = x.data;
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < inner; j++) {
        const base = o * r * inner + j;
        let m = -Infinity;
        for (let k = 0; k < r; k++) m = Math.max(m, d[base + k * inner]);
        let s = 0;
        for (let k = 0; k < r; k++) s += Math.exp(d[base + k * inner] - m);
        for (let k = 0; k < r; k++) out[base + k * inner] = Math.exp(d[base + k * inner] - m) / s;
      }
    }
    return [out];
  },
  lower: { kind: "kernel", prologue: true, epilogue: true, emit: emitSoftmax },
};
