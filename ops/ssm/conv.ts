/**
 * The causal depthwise conv1d in front of Mamba's scan (`conv1d_causal`), its
 * conv-state update (`conv_state_update`) and the single-token conv step
 * (`conv1d_step`). The two state ops update the state in place (`inplace`), so
 * with `g.state` + `g.assign` a decode token costs O(1) and the state never
 * leaves the device.
 *
 * @module
 */

import type { KernelContext, KernelEmission, OpDef } from "../types.ts";
import { KernelIo } from "../wgsl/mod.ts";
import { load, SILU, store } from "./access.ts";
import type { Conv1dAttrs, Conv1dStepAttrs } from "./attrs.ts";
import { convLengthError, inferConv, inferConvStep, inferStateUpdate } from "./infer.ts";
import { referenceConv, referenceConvStep, referenceStateUpdate } from "./reference.ts";

const CONV_WG = 64;
const CONV_TILE = 64;

function emitConv(ctx: KernelContext<Conv1dAttrs>): KernelEmission {
  const [x, w] = ctx.inputs;
  const [B, L, I] = x.shape;
  const k = w.shape[w.shape.length - 1];
  if (B * L * I === 0) return { kernels: [] };
  const sj = ctx.attrs.state ? ctx.inputs.length - 1 : -1;
  if (sj < 0 && k > L) throw convLengthError("conv1d_causal", k, L);
  const S = sj >= 0 ? ctx.inputs[sj].shape[2] : 0;
  const io = new KernelIo();
  const lines: string[] = [];
  for (let j = 0; j < k; j++) {
    lines.push(`  let w${j} = ${load(ctx, io, 1, `i * ${k}u + ${j}u`)};`);
  }
  lines.push(`  let bias = ${ctx.attrs.bias ? load(ctx, io, 2, "i") : "0.0"};`);
  // Window registers v0..v(k-2) hold positions t-(k-1) .. t-1: each x is read once.
  for (let j = 0; j < k - 1; j++) {
    lines.push(`  var v${j}: f32 = hist(b, i32(t0) - ${k - 1 - j}, i);`);
  }
  lines.push(`  for (var t = t0; t < t1; t = t + 1u) {`);
  lines.push(`    let cur = ${load(ctx, io, 0, `(b * ${L}u + t) * ${I}u + i`)};`);
  const terms = ["bias"];
  for (let j = 0; j < k - 1; j++) terms.push(`w${j} * v${j}`);
  terms.push(`w${k - 1} * cur`);
  lines.push(`    var acc = ${terms.join(" + ")};`);
  if (ctx.attrs.silu) lines.push(`    acc = ${SILU("acc")};`);
  lines.push(`    ${store(io, ctx.outputs[0], 0, `(b * ${L}u + t) * ${I}u + i`, "acc")}`);
  for (let j = 0; j < k - 2; j++) lines.push(`    v${j} = v${j + 1};`);
  if (k > 1) lines.push(`    v${k - 2} = cur;`);
  lines.push(`  }`);
  const history = sj >= 0
    ? `return ${load(ctx, io, sj, `(b * ${I}u + i) * ${S}u + u32(${S} + p)`)};`
    : "return 0.0;";
  const code = `fn hist(b: u32, p: i32, i: u32) -> f32 {
  if (p >= 0) { return ${load(ctx, io, 0, `(b * ${L}u + u32(p)) * ${I}u + i`)}; }
  ${history}
}
@compute @workgroup_size(${CONV_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${CONV_WG}u + lid.x;
  if (i >= ${I}u) { return; }
  let b = wid.z;
  let t0 = wid.y * ${CONV_TILE}u;
  let t1 = min(t0 + ${CONV_TILE}u, ${L}u);
${lines.join("\n")}
}`;
  return {
    kernels: [{
      label: `conv1d_causal_k${k}${ctx.attrs.silu ? "_silu" : ""}`,
      code,
      workgroups: [Math.ceil(I / CONV_WG), Math.ceil(L / CONV_TILE), B],
      uses: io.uses,
    }],
  };
}

function emitStateUpdate(ctx: KernelContext<Record<string, never>>): KernelEmission {
  const [s, x] = ctx.inputs;
  const [B, I, S] = s.shape;
  const L = x.shape[1];
  if (B * I * S === 0) return { kernels: [] };
  const io = new KernelIo();
  // In place: the thread reads its whole old row (out0 starts as the old state)
  // before writing any slot.
  const lines: string[] = [];
  if (ctx.inputs.length === 3) {
    // Rows after `last` are padding: the real rows end at n, known at run time.
    const last = ctx.inputs[2].direct ? `${io.in(2)}[0]` : io.load(2, "0u");
    lines.push(`  var o: array<f32, ${S}>;`);
    for (let j = 0; j < S; j++) lines.push(`  o[${j}] = f32(${io.out(0)}[base + ${j}u]);`);
    lines.push(`  let n = i32(min(${L}u, ${last} + 1u));`);
    for (let sl = 0; sl < S; sl++) {
      const x = load(ctx, io, 1, `(b * ${L}u + u32(max(p${sl}, 0))) * ${I}u + i`);
      const old = `o[max(${S} + p${sl}, 0)]`;
      lines.push(`  let p${sl} = n - ${S - sl};`);
      lines.push(`  ${io.out(0)}[base + ${sl}u] = ${s.dtype}(select(${old}, ${x}, p${sl} >= 0));`);
    }
    return perChannelKernel("conv_state_update_last", B, I, S, lines, io);
  }
  for (let j = 0; j < S; j++) lines.push(`  let o${j} = f32(${io.out(0)}[base + ${j}u]);`);
  for (let sl = 0; sl < S; sl++) {
    const p = L - S + sl;
    const src = p >= 0 ? load(ctx, io, 1, `(b * ${L}u + ${p}u) * ${I}u + i`) : `o${S + p}`;
    lines.push(`  ${io.out(0)}[base + ${sl}u] = ${s.dtype}(${src});`);
  }
  return perChannelKernel("conv_state_update", B, I, S, lines, io);
}

function emitConvStep(ctx: KernelContext<Conv1dStepAttrs>): KernelEmission {
  const [s, , w] = ctx.inputs;
  const [B, I, S] = s.shape;
  const k = w.shape[w.shape.length - 1];
  if (B * I === 0) return { kernels: [] };
  const io = new KernelIo();
  const lines: string[] = [];
  lines.push(`  let xt = ${load(ctx, io, 1, "b * " + I + "u + i")};`);
  for (let j = 0; j < S; j++) lines.push(`  let o${j} = ${io.out(1)}[base + ${j}u];`);
  // The window is the last k−1 state slots and x_t, so S = k − 1 and S = k both work.
  const terms = [
    ctx.attrs.bias ? load(ctx, io, 3, "i") : "0.0",
    `${load(ctx, io, 2, `i * ${k}u + ${k - 1}u`)} * xt`,
  ];
  for (let j = 0; j < k - 1; j++) {
    terms.push(`${load(ctx, io, 2, `i * ${k}u + ${j}u`)} * o${S - (k - 1) + j}`);
  }
  lines.push(`  var acc = ${terms.join(" + ")};`);
  if (ctx.attrs.silu) lines.push(`  acc = ${SILU("acc")};`);
  lines.push(`  ${store(io, ctx.outputs[0], 0, `b * ${I}u + i`, "acc")}`);
  for (let j = 0; j < S - 1; j++) lines.push(`  ${io.out(1)}[base + ${j}u] = o${j + 1};`);
  if (S > 0) lines.push(`  ${io.out(1)}[base + ${S - 1}u] = xt;`);
  return perChannelKernel(`conv1d_step_k${k}`, B, I, S, lines, io);
}

/**
 * One thread per (batch row b, channel i) of a `[B, I, S]` conv state; `lines` see
 * `b`, `i` and `base`, the offset of the thread's state row, and reach their
 * operands through `io`.
 */
function perChannelKernel(
  label: string,
  B: number,
  I: number,
  S: number,
  lines: string[],
  io: KernelIo,
): KernelEmission {
  const code = `@compute @workgroup_size(${CONV_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${CONV_WG}u + lid.x;
  if (i >= ${I}u) { return; }
  let b = wid.y;
  let base = (b * ${I}u + i) * ${S}u;
${lines.join("\n")}
}`;
  return {
    kernels: [{ label, code, workgroups: [Math.ceil(I / CONV_WG), B, 1], uses: io.uses }],
  };
}

/**
 * conv1d_causal(x [B, L, I], weight [I, 1, k], bias? [I], state? [B, I, S]) → y [B, L, I]:
 * y[b,t,i] = bias[i] + Σⱼ w[i,j]·x[b, t−(k−1)+j, i], silu optional; positions
 * before 0 come from the state (slot S−1 newest) or are zero. Without a state,
 * k > L is rejected: the output would see mostly padding.
 *
 * @example
 * ```ts ignore
 * opDef("conv1d_causal") === conv1dCausal; // in the op table
 * ```
 */
export const conv1dCausal: OpDef<Conv1dAttrs> = {
  arity: [2, 4],
  attrNames: ["bias", "state", "silu"],
  infer: inferConv,
  reference: (inputs, attrs) => [referenceConv(inputs, attrs)],
  lower: { kind: "kernel", prologue: true, epilogue: true, emit: emitConv },
};

/**
 * conv_state_update(state [B, I, S], x [B, L, I], last? u32 [1]) → the last S
 * inputs of (state ++ x), in place: on a `g.state` assigned this output, nothing
 * is copied. With `last`, the rows of x after row `last` are padding and left out.
 *
 * @example
 * ```ts ignore
 * opDef("conv_state_update") === convStateUpdate; // in the op table
 * ```
 */
export const convStateUpdate: OpDef<Record<string, never>> = {
  arity: [2, 3],
  attrNames: [],
  infer: inferStateUpdate,
  reference: (inputs) => [referenceStateUpdate(inputs)],
  lower: {
    kind: "kernel",
    prologue: [1],
    epilogue: false,
    inplace: [[0, 0]],
    emit: emitStateUpdate,
  },
};

/**
 * conv1d_step(state [B, I, S], x [B, (1,) I], weight, bias?) → [y, state']: one
 * decode token through the causal conv; the state shifts left in place.
 *
 * @example
 * ```ts ignore
 * opDef("conv1d_step") === conv1dStep; // in the op table
 * ```
 */
export const conv1dStep: OpDef<Conv1dStepAttrs> = {
  arity: [3, 4],
  attrNames: ["bias", "silu"],
  infer: inferConvStep,
  reference: (inputs, attrs) => referenceConvStep(inputs, attrs),
  lower: {
    kind: "kernel",
    prologue: [1, 2, 3],
    epilogue: true,
    inplace: [[1, 0]],
    emit: emitConvStep,
  },
};
