/**
 * `conv1d_causal_grad`: the backward of the causal depthwise conv1d in front
 * of Mamba's scan. With `a = bias + Σⱼ w[j]·x[t−(k−1)+j]` and `y = silu(a)` (or
 * a): `ga = dy·silu'(a)`, dx[t] = Σⱼ w[j]·ga[t+(k−1)−j], dw[j] = Σ_{b,t}
 * ga[t]·x[t−(k−1)+j], dbias = Σ ga, and the conv state's slots (positions
 * before 0) take the dx of their positions.
 *
 * Three kernels: ga into scratch (`[B, L, I]`, the size of the activation),
 * dx and the state's gradient one element per thread, dw and dbias one
 * (channel, tap) per thread summing over B·L in order (deterministic).
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { formatShape } from "../../core/shape.ts";
import type { HostTensor, KernelContext, KernelEmission, KernelSource, OpDef } from "../types.ts";
import { flatLaunch, KernelIo } from "../wgsl/mod.ts";
import { load, store } from "./access.ts";
import type { Conv1dAttrs } from "./attrs.ts";
import { inferConv } from "./infer.ts";

/**
 * Shape rule of `conv1d_causal_grad`: the conv's operands then dy like y →
 * one gradient per operand.
 *
 * @example
 * ```ts ignore
 * inferConvGrad([x, w, dy], { bias: false, state: false, silu: true }); // [dx, dw]
 * ```
 */
export function inferConvGrad(inputs: readonly TensorType[], attrs: Conv1dAttrs): TensorType[] {
  const fwd = inputs.slice(0, -1);
  const [y] = inferConv(fwd, attrs);
  const gy = inputs[inputs.length - 1];
  if (formatShape(gy.shape) !== formatShape(y.shape) || gy.dtype !== y.dtype) {
    throw new RangeError(
      `conv1d_causal_grad: dy must be ${y.dtype}${formatShape(y.shape)} like y, got ${gy.dtype}${
        formatShape(gy.shape)
      }`,
    );
  }
  return fwd.map((t) => ({ shape: t.shape, dtype: t.dtype }));
}

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/**
 * Float64 reference of `conv1d_causal_grad`.
 *
 * @example
 * ```ts ignore
 * const [dx, dw] = referenceConvGrad([x, w, dy], { bias: false, state: false, silu: true });
 * ```
 */
export function referenceConvGrad(
  inputs: readonly HostTensor[],
  attrs: Conv1dAttrs,
): HostArray[] {
  const [x, w] = inputs;
  const gy = inputs[inputs.length - 1].data;
  const [B, L, I] = x.shape;
  const k = w.shape[w.shape.length - 1];
  const bias = attrs.bias ? inputs[2].data : undefined;
  const st = attrs.state ? inputs[inputs.length - 2] : undefined;
  const S = st ? st.shape[2] : 0;
  const out = inputs.slice(0, -1).map((t) => allocHost(t.dtype, t.data.length));
  const [dx, dw] = out;
  const dbias = attrs.bias ? out[2] : undefined;
  const dst = st ? out[out.length - 1] : undefined;
  const xAt = (b: number, p: number, i: number) =>
    p >= 0 ? x.data[(b * L + p) * I + i] : st ? st.data[(b * I + i) * S + S + p] : 0;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      for (let t = 0; t < L; t++) {
        let a = bias ? bias[i] : 0;
        for (let j = 0; j < k; j++) a += w.data[i * k + j] * xAt(b, t - (k - 1) + j, i);
        let ga = gy[(b * L + t) * I + i];
        if (attrs.silu) {
          const s = sigmoid(a);
          ga *= s * (1 + a * (1 - s));
        }
        if (dbias) dbias[i] += ga;
        for (let j = 0; j < k; j++) {
          const p = t - (k - 1) + j;
          dw[i * k + j] += ga * xAt(b, p, i);
          const g = ga * w.data[i * k + j];
          if (p >= 0) dx[(b * L + p) * I + i] += g;
          else if (dst && S + p >= 0) dst[(b * I + i) * S + S + p] += g;
        }
      }
    }
  }
  return out;
}

function emitConvGrad(ctx: KernelContext<Conv1dAttrs>): KernelEmission {
  const [x, w] = ctx.inputs;
  const [B, L, I] = x.shape;
  const k = w.shape[w.shape.length - 1];
  if (B * L * I === 0) return { kernels: [] };
  const gyj = ctx.inputs.length - 1;
  const sj = ctx.attrs.state ? ctx.inputs.length - 2 : -1;
  const S = sj >= 0 ? ctx.inputs[sj].shape[2] : 0;
  const o = ctx.outputs;

  // 1. ga = dy·silu'(a), recomputing a.
  const io1 = new KernelIo();
  const xAt = (io: KernelIo, p: string) =>
    `select(${
      sj >= 0 ? load(ctx, io, sj, `(b * ${I}u + i) * ${S}u + u32(max(${S} + ${p}, 0))`) : "0.0"
    }, ${load(ctx, io, 0, `(b * ${L}u + u32(clamp(${p}, 0, ${L - 1}))) * ${I}u + i`)}, ${p} >= 0)`;
  const body1 = [
    `  let i = j % ${I}u;`,
    `  let bt = j / ${I}u;`,
    `  let b = bt / ${L}u;`,
    `  let t = i32(bt % ${L}u);`,
    `  var ga = ${load(ctx, io1, gyj, "j")};`,
  ];
  if (ctx.attrs.silu) {
    body1.push(`  var a = ${ctx.attrs.bias ? load(ctx, io1, 2, "i") : "0.0"};`);
    for (let q = 0; q < k; q++) {
      body1.push(
        `  a = fma(${load(ctx, io1, 1, `i * ${k}u + ${q}u`)}, ${
          xAt(io1, `(t - ${k - 1 - q})`)
        }, a);`,
      );
    }
    body1.push(`  let s = kiln_sigmoid(a);`, `  ga = ga * s * (1.0 + a * (1.0 - s));`);
  }
  body1.push(`  ${io1.scratch(0)}[j] = ga;`);
  const k1 = flat(ctx, "conv1d_causal_grad_act", B * L * I, body1, io1);

  // 2. dx (and the state's gradient): Σⱼ w[j]·ga[p + (k−1) − j] over the taps in range.
  const io2 = new KernelIo();
  const ga = io2.scratch(0);
  const taps = (p: string) =>
    [...Array(k).keys()].map((q) =>
      `  { let tt = ${p} + ${k - 1 - q}; if (tt >= 0 && tt < ${L}) { acc = fma(${
        load(ctx, io2, 1, `i * ${k}u + ${q}u`)
      }, ${ga}[(b * ${L}u + u32(tt)) * ${I}u + i], acc); } }`
    );
  const body2 = [
    `  var acc: f32 = 0.0;`,
    `  if (j < ${B * L * I}u) {`,
    `    let i = j % ${I}u;`,
    `    let bt = j / ${I}u;`,
    `    let b = bt / ${L}u;`,
    `    let p = i32(bt % ${L}u);`,
    ...taps("p"),
    `    ${store(io2, o[0], 0, "j", "acc")}`,
    `  } else {`,
    `    let e = j - ${B * L * I}u;`,
    `    let sl = i32(e % ${Math.max(S, 1)}u);`,
    `    let bi = e / ${Math.max(S, 1)}u;`,
    `    let i = bi % ${I}u;`,
    `    let b = bi / ${I}u;`,
    `    let p = sl - ${S};`,
    ...taps("p"),
    sj >= 0 ? `    ${store(io2, o[sj], sj, "e", "acc")}` : "",
    `  }`,
  ];
  const k2 = flat(ctx, "conv1d_causal_grad_x", B * L * I + B * I * S, body2, io2);

  // 3. dw[i, q] (q < k) and dbias[i] (q = k): Σ over b, t in order.
  const io3 = new KernelIo();
  const body3 = [
    `  let i = j / ${k + 1}u;`,
    `  let q = j % ${k + 1}u;`,
    `  var acc: f32 = 0.0;`,
    `  for (var b = 0u; b < ${B}u; b = b + 1u) {`,
    `    for (var tu = 0u; tu < ${L}u; tu = tu + 1u) {`,
    `      let g = ${io3.scratch(0)}[(b * ${L}u + tu) * ${I}u + i];`,
    `      let p = i32(tu) - ${k - 1} + i32(q);`,
    `      acc = fma(g, select(${xAt(io3, "p")}, 1.0, q == ${k}u), acc);`,
    `    }`,
    `  }`,
    `  if (q < ${k}u) { ${store(io3, o[1], 1, `i * ${k}u + q`, "acc")} }`,
    ctx.attrs.bias ? `  else { ${store(io3, o[2], 2, "i", "acc")} }` : "",
  ];
  const k3 = flat(ctx, "conv1d_causal_grad_w", I * (k + 1), body3, io3);
  return {
    kernels: [k1, k2, k3],
    scratch: [{ length: B * L * I, type: "f32" }],
  };
}

/** One thread per flat index `j` in [0, n): `lines` see `j`, `io` recorded their operands. */
function flat(
  ctx: KernelContext<Conv1dAttrs>,
  label: string,
  n: number,
  lines: string[],
  io: KernelIo,
): KernelSource {
  const { wg, workgroups, index } = flatLaunch(n, ctx.caps);
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = ${index};
  if (j >= ${n}u) { return; }
${lines.filter((l) => l !== "").join("\n")}
}`;
  return { label, code, workgroups, uses: io.uses };
}

/**
 * conv1d_causal_grad(x, weight, bias?, state?, dy) → [dx, dweight, dbias?,
 * dstate?]: the gradients of `conv1d_causal` with the same attributes.
 *
 * @example
 * ```ts ignore
 * opDef("conv1d_causal_grad") === conv1dCausalGrad; // in the op table
 * ```
 */
export const conv1dCausalGrad: OpDef<Conv1dAttrs> = {
  arity: [3, 5],
  attrNames: ["bias", "state", "silu"],
  infer: inferConvGrad,
  reference: (inputs, attrs) => referenceConvGrad(inputs, attrs),
  lower: { kind: "kernel", prologue: true, epilogue: false, emit: emitConvGrad },
};
