/**
 * The `gated_delta` op: the gated delta rule of Gated DeltaNet (Yang et al.,
 * 2024), the linear-attention recurrence of Qwen3-Next's `linear_attention`
 * layers. Per value head h, with a state S `[dk, dv]`, each step t does
 *
 *   S ← exp(g_t)·S;  S ← S + k_t·(β_t·(v_t − Sᵀk_t))ᵀ;  y_t = Sᵀq_t
 *
 * (transformers' `torch_recurrent_gated_delta_rule`, whose chunked form
 * computes the same values). q and k have Hk heads, v, g and β Hv = r·Hk:
 * value head h reads key head ⌊h / r⌋ (transformers' `repeat_interleave`).
 * q and k arrive already normalised and q scaled: the graph does both.
 *
 * Layouts (row-major): q, k `[B, T, Hk, dk]`, v `[B, T, Hv, dv]`, g and β
 * side by side in one `[B, T, Hv, 2]` (so the op binds at most 8 storage
 * buffers, WebGPU's default limit), the state `[B, Hv, dk, dv]` f32
 * (transformers' recurrent state), optional `last` u32 `[1]`: rows after it
 * are padding and leave the state alone.
 *
 * The kernel gives each thread one state column (one value channel of one head)
 * and walks t in order: the column's dk values stay in registers, and columns
 * never exchange values, so no barrier is needed. T steps are sequential; a
 * decode token is one step.
 *
 * @module
 */

import { type Dim, formatShape, numel } from "../../core/shape.ts";
import type { TensorType } from "../../core/graph.ts";
import { allocHost, isFloat } from "../../core/dtype.ts";
import type { HostTensor, KernelContext, KernelEmission, OpDef } from "../types.ts";
import { f32, flatLaunch, KernelIo } from "../wgsl/mod.ts";
import { load, store } from "../ssm/access.ts";
import { checkLast } from "../ssm/infer.ts";

/**
 * Attributes of `gated_delta`: which optional inputs follow q, k, v, g, β.
 *
 * @example
 * ```ts
 * import type { GatedDeltaAttrs } from "@kiln/kiln";
 * const attrs: GatedDeltaAttrs = { initialState: true, last: false };
 * ```
 */
export interface GatedDeltaAttrs {
  /** Input 4 is the state entering step 0 (absent: zeros). */
  readonly initialState: boolean;
  /** The next input is `last`, the index of the last real row. */
  readonly last: boolean;
}

const NAMES = ["q", "k", "v", "gBeta"] as const;

function slotsOf(attrs: GatedDeltaAttrs): { state?: number; last?: number; count: number } {
  let n = 4;
  const state = attrs.initialState ? n++ : undefined;
  const last = attrs.last ? n++ : undefined;
  return { state, last, count: n };
}

/** Dims agree when equal, or when either is a symbol bound at run time. */
function sameDim(a: Dim, b: Dim): boolean {
  return a === b || typeof a === "string" || typeof b === "string";
}

function inferGatedDelta(inputs: readonly TensorType[], attrs: GatedDeltaAttrs): TensorType[] {
  const what = `gated_delta(${inputs.map((t) => formatShape(t.shape)).join(", ")})`;
  const slots = slotsOf(attrs);
  if (inputs.length !== slots.count) {
    throw new TypeError(
      `${what}: expects ${slots.count} inputs for these attributes, got ${inputs.length}`,
    );
  }
  const [q, k, v, gb] = inputs;
  NAMES.forEach((name, j) => {
    if (!isFloat(inputs[j].dtype)) {
      throw new TypeError(`${what}: ${name} must be f32 or f16, got ${inputs[j].dtype}`);
    }
  });
  if (q.shape.length !== 4 || v.shape.length !== 4) {
    throw new RangeError(
      `${what}: expects q, k [B, T, Hk, dk], v [B, T, Hv, dv], gBeta [B, T, Hv, 2]`,
    );
  }
  if (k.shape.length !== 4 || !q.shape.every((d, i) => sameDim(d, k.shape[i]))) {
    throw new RangeError(
      `${what}: k ${formatShape(k.shape)} must have q's shape ${formatShape(q.shape)}`,
    );
  }
  const [B, T, Hk, dk] = q.shape, [, , Hv, dv] = v.shape;
  if (!sameDim(v.shape[0], B) || !sameDim(v.shape[1], T)) {
    throw new RangeError(`${what}: v's batch and time ${formatShape(v.shape)} must match q's`);
  }
  if (gb.shape.length !== 4 || ![B, T, Hv, 2].every((d, i) => sameDim(d, gb.shape[i]))) {
    throw new RangeError(`${what}: gBeta must be [B, T, Hv, 2] = ${formatShape([B, T, Hv, 2])}`);
  }
  if (
    typeof Hk !== "number" || typeof Hv !== "number" || typeof dk !== "number" ||
    typeof dv !== "number"
  ) {
    throw new RangeError(`${what}: heads and head sizes must be concrete`);
  }
  if (Hv % Hk !== 0) {
    throw new RangeError(`${what}: value heads ${Hv} must be a multiple of key heads ${Hk}`);
  }
  const stateType: TensorType = { shape: [B, Hv, dk, dv], dtype: "f32" };
  if (slots.state !== undefined) {
    const s = inputs[slots.state];
    if (
      s.dtype !== "f32" || s.shape.length !== 4 ||
      !s.shape.every((d, i) => sameDim(d, stateType.shape[i]))
    ) {
      throw new TypeError(
        `${what}: state must be f32 ${formatShape(stateType.shape)}, got ${s.dtype}${
          formatShape(s.shape)
        }`,
      );
    }
  }
  if (slots.last !== undefined) checkLast(what, inputs[slots.last]);
  return [{ shape: v.shape, dtype: v.dtype }, stateType];
}

/**
 * The gated delta rule on host tensors, summed in float64 (the oracle of the
 * kernel's tests).
 *
 * @example
 * ```ts ignore
 * const [y, state] = referenceGatedDelta(inputs, { initialState: false, last: false });
 * ```
 */
export function referenceGatedDelta(
  inputs: readonly HostTensor[],
  attrs: GatedDeltaAttrs,
): HostTensor["data"][] {
  const slots = slotsOf(attrs);
  const [q, k, v, gb] = inputs;
  const [B, T, Hk, dk] = q.shape, Hv = v.shape[2], dv = v.shape[3], rep = Hv / Hk;
  const s0 = slots.state !== undefined ? inputs[slots.state].data : undefined;
  const real = slots.last !== undefined ? Math.min(T, inputs[slots.last].data[0] + 1) : T;
  const y = allocHost(v.dtype, numel(v.shape));
  const out = allocHost("f32", B * Hv * dk * dv);
  const S = new Float64Array(dk * dv);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hv; h++) {
      const sb = (b * Hv + h) * dk * dv, hk = Math.floor(h / rep);
      for (let e = 0; e < dk * dv; e++) S[e] = s0 ? s0[sb + e] : 0;
      for (let t = 0; t < real; t++) {
        const r = b * T + t, kb = (r * Hk + hk) * dk, vb = (r * Hv + h) * dv;
        const decay = Math.exp(gb.data[(r * Hv + h) * 2]), bt = gb.data[(r * Hv + h) * 2 + 1];
        for (let e = 0; e < dk * dv; e++) S[e] *= decay;
        for (let c = 0; c < dv; c++) {
          let kv = 0;
          for (let i = 0; i < dk; i++) kv += S[i * dv + c] * k.data[kb + i];
          const delta = (v.data[vb + c] - kv) * bt;
          let o = 0;
          for (let i = 0; i < dk; i++) {
            S[i * dv + c] += k.data[kb + i] * delta;
            o += S[i * dv + c] * q.data[kb + i];
          }
          y[vb + c] = o;
        }
      }
      out.set(S, sb);
    }
  }
  return [y, out];
}

function emitGatedDelta(ctx: KernelContext<GatedDeltaAttrs>): KernelEmission {
  const slots = slotsOf(ctx.attrs);
  const [B, T, Hk, dk] = ctx.inputs[0].shape;
  const [, , Hv, dv] = ctx.inputs[2].shape;
  const n = B * Hv * dv;
  if (n === 0) return { kernels: [] };
  const io = new KernelIo();
  const { wg, workgroups, index } = flatLaunch(n, ctx.caps, 64);
  const init = slots.state === undefined ? "0.0" : load(ctx, io, slots.state, "sb + i * DV");
  const rows = slots.last === undefined
    ? `${T}u`
    : `min(${T}u, ${
      ctx.inputs[slots.last].direct ? `${io.in(slots.last)}[0]` : io.load(slots.last, "0u")
    } + 1u)`;
  const y = (v: string) => store(io, ctx.outputs[0], 0, "vb + c", v);
  // Rows past `last` (padding) keep the state and write zeros.
  const code = `const DK = ${dk}u;
const DV = ${dv}u;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = ${index};
  if (j >= ${n}u) { return; }
  let c = j % DV;
  let bh = j / DV;
  let h = bh % ${Hv}u;
  let b = bh / ${Hv}u;
  let hk = h / ${Hv / Hk}u;
  let sb = bh * DK * DV + c;
  var s: array<f32, ${dk}>;
  for (var i = 0u; i < DK; i = i + 1u) { s[i] = ${init}; }
  let real = ${rows};
  for (var t = 0u; t < ${T}u; t = t + 1u) {
    let r = b * ${T}u + t;
    let vb = (r * ${Hv}u + h) * DV;
    if (t >= real) {
      ${y("0.0")}
      continue;
    }
    let kb = (r * ${Hk}u + hk) * DK;
    let decay = exp(${load(ctx, io, 3, `(r * ${Hv}u + h) * 2u`)});
    let bt = ${load(ctx, io, 3, `(r * ${Hv}u + h) * 2u + 1u`)};
    var kv = ${f32(0)};
    for (var i = 0u; i < DK; i = i + 1u) {
      let si = s[i] * decay;
      s[i] = si;
      kv = fma(si, ${load(ctx, io, 1, "kb + i")}, kv);
    }
    let delta = (${load(ctx, io, 2, "vb + c")} - kv) * bt;
    var o = ${f32(0)};
    for (var i = 0u; i < DK; i = i + 1u) {
      let si = fma(${load(ctx, io, 1, "kb + i")}, delta, s[i]);
      s[i] = si;
      o = fma(si, ${load(ctx, io, 0, "kb + i")}, o);
    }
    ${y("o")}
  }
  for (var i = 0u; i < DK; i = i + 1u) { ${store(io, ctx.outputs[1], 1, "sb + i * DV", "s[i]")} }
}`;
  return {
    kernels: [{
      label: `gated_delta_B${B}_T${T}_H${Hv}_dk${dk}_dv${dv}`,
      code,
      workgroups,
      uses: io.uses,
    }],
  };
}

/**
 * gated_delta(q, k, v, [g, β], state?, last?) → [y, state']: the gated delta rule
 * over T steps (see the module doc). Inference only: training refuses it by name.
 *
 * @example
 * ```ts ignore
 * opDef("gated_delta") === gatedDelta; // in the op table
 * ```
 */
export const gatedDelta: OpDef<GatedDeltaAttrs> = {
  arity: [4, 6],
  attrNames: ["initialState", "last"],
  infer: inferGatedDelta,
  reference: (inputs, attrs) => referenceGatedDelta(inputs, attrs),
  lower: { kind: "kernel", prologue: [0, 1, 2, 3], epilogue: false, emit: emitGatedDelta },
};
