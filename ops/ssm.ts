/**
 * Mamba (S6) ops for the compiler: the causal depthwise conv1d in front of the
 * scan, its conv-state update, the single-token conv step, the selective scan
 * (one pass over L, or chunked in three passes where the device needs the
 * parallelism — the compiler picks per device, see `chooseScan` — plus the
 * one-thread-per-channel baseline) and the single-token SSM step. The step ops
 * update their state in place (`inplace`), so with `g.state` + `g.assign` a decode
 * token costs O(1) and the state never leaves the device.
 *
 * Layouts are row-major: activations `[B, L, I]`, B and C `[B, L, N]`, A `[I, N]`,
 * D and the Δ bias `[I]`, SSM states `[B, I, N]` (always f32, even when the
 * activations are f16), conv weight `[I, 1, k]` (HF) or `[I, k]`, conv states
 * `[B, I, S]` holding the last S pre-conv inputs, oldest first (S ≥ k − 1; HF
 * keeps S = k).
 *
 * The kernels are written for this compiler's contract (`in{j}`/`out{j}` raw
 * arrays when direct, `in{j}_load`/`out{j}_store` otherwise, `scratch{j}`). On a
 * CPU adapter a thread owns many channels, so each B/C row load is shared, and
 * reads u/Δ/z and writes y as vec4 channel groups when the layout allows; on a GPU
 * a thread owns one channel (`DeviceCaps.cpuCores` tells them apart).
 *
 * @module
 */

import type { TensorType } from "../core/graph.ts";
import { type Dim, formatShape, numel } from "../core/shape.ts";
import { allocHost, isFloat } from "../core/dtype.ts";
import { grid } from "./wgsl/grid.ts";
import type {
  HostTensor,
  KernelContext,
  KernelEmission,
  KernelOperand,
  KernelSource,
  OpDef,
  ScratchSpec,
} from "./types.ts";

const LOG2E = 1.4426950408889634;

// ------------------------------------------------------------------ attributes

/**
 * Attributes of `conv1d_causal`.
 *
 * @example
 * ```ts
 * import type { Conv1dAttrs } from "@kiln/kiln";
 * const attrs: Conv1dAttrs = { bias: true, state: false, silu: true };
 * ```
 */
export interface Conv1dAttrs {
  /** A bias `[I]` input follows the weight. */
  readonly bias: boolean;
  /** A conv state `[B, I, S]` input (the inputs before t = 0) comes last. */
  readonly state: boolean;
  /** Apply silu to the output. */
  readonly silu: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  readonly [k: string]: boolean;
}

/**
 * Attributes of `conv1d_step`.
 *
 * @example
 * ```ts
 * import type { Conv1dStepAttrs } from "@kiln/kiln";
 * const attrs: Conv1dStepAttrs = { bias: true, silu: true };
 * ```
 */
export interface Conv1dStepAttrs {
  /** A bias `[I]` input follows the weight. */
  readonly bias: boolean;
  /** Apply silu to the output. */
  readonly silu: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  readonly [k: string]: boolean;
}

/**
 * Attributes of `selective_scan` and `ssm_step`. `ssm_step` also takes `deltaRank`
 * (a number, 0 when absent): R > 0 fuses dt_proj, delta is then the low-rank
 * `[B, R]` and dt_proj's weight `[I, R]` comes last (`ssmStep`'s `deltaProj`).
 *
 * @example
 * ```ts
 * import type { ScanAttrs } from "@kiln/kiln";
 * const attrs: ScanAttrs = {
 *   gate: true,
 *   deltaBias: true,
 *   softplus: true,
 *   initialState: false,
 *   finalState: true,
 *   algorithm: "auto",
 *   chunk: 0,
 * };
 * ```
 */
export interface ScanAttrs {
  /** A gate z `[B, L, I]` input follows D: y ← y·silu(z). */
  readonly gate: boolean;
  /** A Δ bias `[I]` input follows (z and) D: Δ ← Δ + bias. */
  readonly deltaBias: boolean;
  /** Δ ← softplus(Δ (+ bias)), fused into the scan. */
  readonly softplus: boolean;
  /** `selective_scan` only: an initial state `[B, I, N]` f32 input comes last. */
  readonly initialState: boolean;
  /** `selective_scan` only: add output 1, the final state `[B, I, N]` f32. */
  readonly finalState: boolean;
  /**
   * `selective_scan` only: `"auto"` (the default: the compiler picks one pass or the
   * chunked scan for the device, and says why in the plan), `"chunked"` (three
   * passes; one when the chunk covers L) or `"sequential"` (the one-thread-per-channel
   * baseline).
   */
  readonly algorithm: string;
  /** Chunk length of the chunked scan; 0 picks one. A chunk > 0 implies `"chunked"`. */
  readonly chunk: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  readonly [k: string]: boolean | string | number;
}

// ------------------------------------------------------------------ shape rules

/** Accepted values of the scan's `algorithm` attribute. */
export const SCAN_ALGORITHMS: readonly string[] = ["auto", "chunked", "sequential"];

function show(op: string, inputs: readonly TensorType[]): string {
  return `${op}(${inputs.map((t) => `${t.dtype}${formatShape(t.shape)}`).join(", ")})`;
}

function sameDim(a: Dim, b: Dim): boolean {
  return a === b || typeof a === "string" || typeof b === "string";
}

function checkFloat(what: string, t: TensorType, name: string): void {
  if (!isFloat(t.dtype)) {
    throw new TypeError(`${what}: ${name} must be a float tensor, got ${t.dtype}`);
  }
}

/** Conv weight `[I, 1, k]` or `[I, k]` → [I, k]. */
function convWeightDims(what: string, w: TensorType): [Dim, Dim] {
  if (w.shape.length === 3 && w.shape[1] === 1) return [w.shape[0], w.shape[2]];
  if (w.shape.length === 2) return [w.shape[0], w.shape[1]];
  throw new RangeError(`${what}: weight must be [I, 1, k] or [I, k], got ${formatShape(w.shape)}`);
}

function countInputs(what: string, inputs: readonly TensorType[], want: number): void {
  if (inputs.length !== want) {
    throw new RangeError(
      `${what}: the attributes call for ${want} inputs, got ${inputs.length}`,
    );
  }
}

function inferConv(inputs: readonly TensorType[], attrs: Conv1dAttrs): TensorType[] {
  const what = show("conv1d_causal", inputs);
  countInputs(what, inputs, 2 + (attrs.bias ? 1 : 0) + (attrs.state ? 1 : 0));
  const [x, w] = inputs;
  if (x.shape.length !== 3) {
    throw new RangeError(`${what}: x must be [B, L, I], got ${formatShape(x.shape)}`);
  }
  checkFloat(what, x, "x");
  const [I, k] = convWeightDims(what, w);
  checkFloat(what, w, "weight");
  if (!sameDim(I, x.shape[2])) {
    throw new RangeError(`${what}: weight has ${I} channels but x has ${x.shape[2]}`);
  }
  if (attrs.bias) checkVec(what, inputs[2], I, "bias");
  if (attrs.state) {
    const s = inputs[inputs.length - 1];
    if (
      s.shape.length !== 3 || !sameDim(s.shape[0], x.shape[0]) || !sameDim(s.shape[1], I)
    ) {
      throw new RangeError(
        `${what}: state must be [B, I, S] = [${x.shape[0]}, ${I}, S], got ${formatShape(s.shape)}`,
      );
    }
    checkFloat(what, s, "state");
    if (typeof s.shape[2] === "number" && typeof k === "number" && s.shape[2] < k - 1) {
      throw new RangeError(
        `${what}: state holds ${s.shape[2]} steps but kernel width ${k} needs at least ${k - 1}`,
      );
    }
  } else if (typeof k === "number" && typeof x.shape[1] === "number" && k > x.shape[1]) {
    throw convLengthError(what, k, x.shape[1]);
  }
  return [{ shape: x.shape, dtype: x.dtype }];
}

function convLengthError(what: string, k: number, L: number): RangeError {
  return new RangeError(
    `${what}: kernel width ${k} exceeds the sequence length ${L} and no conv state was given; ` +
      `pass a conv state (zeros for a fresh sequence) so the first outputs have a history`,
  );
}

function checkVec(what: string, t: TensorType, n: Dim, name: string): void {
  if (t.shape.length !== 1 || !sameDim(t.shape[0], n)) {
    throw new RangeError(`${what}: ${name} must be [${n}], got ${formatShape(t.shape)}`);
  }
  checkFloat(what, t, name);
}

/** Splits an activation shape `[..., X]` into rows and X, for step ops. */
function rowsOf(shape: readonly Dim[]): Dim[] {
  return shape.slice(0, -1);
}

function sameRows(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, k) => sameDim(d, b[k]));
}

/** B/S of a step op: the activation's leading dims must be [B] or [B, 1]. */
function stepBatch(what: string, x: TensorType): Dim {
  const r = rowsOf(x.shape);
  if (r.length === 1 || (r.length === 2 && r[1] === 1)) return r[0];
  throw new RangeError(`${what}: x must be [B, I] or [B, 1, I], got ${formatShape(x.shape)}`);
}

function inferConvStep(inputs: readonly TensorType[], attrs: Conv1dStepAttrs): TensorType[] {
  const what = show("conv1d_step", inputs);
  countInputs(what, inputs, 3 + (attrs.bias ? 1 : 0));
  const [s, x, w] = inputs;
  checkFloat(what, x, "x");
  const B = stepBatch(what, x);
  const [I, k] = convWeightDims(what, w);
  if (!sameDim(I, x.shape[x.shape.length - 1])) {
    throw new RangeError(`${what}: weight has ${I} channels but x has ${x.shape.at(-1)}`);
  }
  if (attrs.bias) checkVec(what, inputs[3], I, "bias");
  if (s.shape.length !== 3 || !sameDim(s.shape[0], B) || !sameDim(s.shape[1], I)) {
    throw new RangeError(
      `${what}: state must be [B, I, S] = [${B}, ${I}, S], got ${formatShape(s.shape)}`,
    );
  }
  if (s.dtype !== "f32") throw new TypeError(`${what}: state must be f32, got ${s.dtype}`);
  if (typeof s.shape[2] === "number" && typeof k === "number" && s.shape[2] < k - 1) {
    throw new RangeError(
      `${what}: state holds ${s.shape[2]} steps but kernel width ${k} needs ${k - 1}`,
    );
  }
  return [{ shape: x.shape, dtype: x.dtype }, { shape: s.shape, dtype: "f32" }];
}

function inferStateUpdate(inputs: readonly TensorType[]): TensorType[] {
  const what = show("conv_state_update", inputs);
  const [s, x] = inputs;
  if (s.shape.length !== 3 || x.shape.length !== 3) {
    throw new RangeError(`${what}: expects state [B, I, S] and x [B, L, I]`);
  }
  if (!sameDim(s.shape[0], x.shape[0]) || !sameDim(s.shape[1], x.shape[2])) {
    throw new RangeError(`${what}: state [B, I, S] does not match x [B, L, I]`);
  }
  checkFloat(what, s, "state");
  checkFloat(what, x, "x");
  return [{ shape: s.shape, dtype: s.dtype }];
}

/** Input positions of a scan-like op, by role. */
interface ScanSlots {
  u: number;
  delta: number;
  a: number;
  b: number;
  c: number;
  d: number;
  z?: number;
  bias?: number;
  h0?: number;
  /** ssm_step: the state input (the in-place pair of output 1). */
  state?: number;
  /** ssm_step with `deltaRank` R > 0: dt_proj's weight `[I, R]` (delta is then `[B, R]`). */
  dtW?: number;
}

/** `ssm_step`'s Δ rank: R > 0 when dt_proj is fused in (delta is the low-rank `[B, R]`). */
function deltaRankOf(attrs: ScanAttrs): number {
  return typeof attrs.deltaRank === "number" ? attrs.deltaRank : 0;
}

function scanSlots(attrs: ScanAttrs, step: boolean): { slots: ScanSlots; count: number } {
  let j = step ? 1 : 0;
  const slots: ScanSlots = { u: j++, delta: j++, a: j++, b: j++, c: j++, d: j++ };
  if (step) slots.state = 0;
  if (attrs.gate) slots.z = j++;
  if (attrs.deltaBias) slots.bias = j++;
  if (step && deltaRankOf(attrs) > 0) slots.dtW = j++;
  if (!step && attrs.initialState) slots.h0 = j++;
  return { slots, count: j };
}

function inferScanLike(
  inputs: readonly TensorType[],
  attrs: ScanAttrs,
  step: boolean,
): TensorType[] {
  const op = step ? "ssm_step" : "selective_scan";
  const what = show(op, inputs);
  const { slots, count } = scanSlots(attrs, step);
  countInputs(what, inputs, count);
  if (!step && !SCAN_ALGORITHMS.includes(attrs.algorithm)) {
    throw new TypeError(
      `${op}: algorithm must be "auto", "chunked" or "sequential", got ${
        JSON.stringify(attrs.algorithm)
      }`,
    );
  }
  if (!Number.isInteger(attrs.chunk) || attrs.chunk < 0) {
    throw new RangeError(`${op}: chunk must be an integer >= 0, got ${attrs.chunk}`);
  }
  const u = inputs[slots.u];
  checkFloat(what, u, "u");
  if (!step && u.shape.length !== 3) {
    throw new RangeError(`${what}: u must be [B, L, I], got ${formatShape(u.shape)}`);
  }
  const B = step ? stepBatch(what, u) : u.shape[0];
  const I = u.shape[u.shape.length - 1];
  const act = u.dtype;
  const sameAct = (t: TensorType, name: string) => {
    if (!sameRows(t.shape, u.shape)) {
      throw new RangeError(
        `${what}: ${name} ${formatShape(t.shape)} must match u ${formatShape(u.shape)}`,
      );
    }
    if (t.dtype !== act) throw new TypeError(`${what}: ${name} is ${t.dtype} but u is ${act}`);
  };
  const R = step ? deltaRankOf(attrs) : 0;
  if (!Number.isInteger(R) || R < 0) {
    throw new RangeError(`${op}: deltaRank must be an integer >= 0, got ${R}`);
  }
  if (R === 0) sameAct(inputs[slots.delta], "delta");
  else {
    // Fused dt_proj: delta is the low-rank [B, R], projected by W [I, R] in the kernel.
    const lo = inputs[slots.delta], W = inputs[slots.dtW!];
    if (
      !sameRows(rowsOf(lo.shape), rowsOf(u.shape)) || !sameDim(lo.shape[lo.shape.length - 1], R)
    ) {
      throw new RangeError(
        `${what}: low-rank delta ${formatShape(lo.shape)} must be u's rows × ${R}`,
      );
    }
    if (W.shape.length !== 2 || !sameDim(W.shape[0], I) || !sameDim(W.shape[1], R)) {
      throw new RangeError(
        `${what}: dt_proj weight must be [I, R] = [${I}, ${R}], got ${formatShape(W.shape)}`,
      );
    }
    for (const [t, name] of [[lo, "delta"], [W, "dt_proj weight"]] as const) {
      if (t.dtype !== act) throw new TypeError(`${what}: ${name} is ${t.dtype} but u is ${act}`);
    }
  }
  if (slots.z !== undefined) sameAct(inputs[slots.z], "z");
  const A = inputs[slots.a];
  if (A.shape.length !== 2 || !sameDim(A.shape[0], I)) {
    throw new RangeError(`${what}: A must be [I, N] = [${I}, N], got ${formatShape(A.shape)}`);
  }
  checkFloat(what, A, "A");
  const N = A.shape[1];
  for (const [name, k] of [["B", slots.b], ["C", slots.c]] as const) {
    const t = inputs[k];
    const rows = rowsOf(t.shape);
    if (!sameRows(rows, rowsOf(u.shape))) {
      throw new RangeError(
        `${what}: ${name} ${formatShape(t.shape)} must have u's leading dims ${
          formatShape(rowsOf(u.shape))
        }`,
      );
    }
    if (!sameDim(t.shape[t.shape.length - 1], N)) {
      throw new RangeError(
        `${what}: ${name} has state size ${t.shape.at(-1)} but A ${
          formatShape(A.shape)
        } has N = ${N}`,
      );
    }
    if (t.dtype !== act) throw new TypeError(`${what}: ${name} is ${t.dtype} but u is ${act}`);
  }
  checkVec(what, inputs[slots.d], I, "D");
  if (slots.bias !== undefined) checkVec(what, inputs[slots.bias], I, "delta bias");
  const stateShape = [B, I, N];
  const checkState = (t: TensorType, name: string) => {
    if (t.shape.length !== 3 || !t.shape.every((d, k) => sameDim(d, stateShape[k]))) {
      throw new RangeError(
        `${what}: ${name} must be [B, I, N] = ${formatShape(stateShape)}, got ${
          formatShape(t.shape)
        }`,
      );
    }
    if (t.dtype !== "f32") throw new TypeError(`${what}: ${name} must be f32, got ${t.dtype}`);
  };
  if (slots.h0 !== undefined) checkState(inputs[slots.h0], "initial state");
  if (slots.state !== undefined) checkState(inputs[slots.state], "state");
  const out: TensorType[] = [{ shape: u.shape, dtype: act }];
  if (step || attrs.finalState) out.push({ shape: stateShape, dtype: "f32" });
  return out;
}

// ------------------------------------------------------------------ references

function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

function silu(x: number): number {
  return x >= 0 ? x / (1 + Math.exp(-x)) : x * Math.exp(x) / (1 + Math.exp(x));
}

function referenceConv(
  inputs: readonly HostTensor[],
  attrs: Conv1dAttrs,
): HostTensor["data"] {
  const [x, w] = inputs;
  const [B, L, I] = x.shape;
  const k = w.shape[w.shape.length - 1];
  const bias = attrs.bias ? inputs[2].data : undefined;
  const st = attrs.state ? inputs[inputs.length - 1] : undefined;
  if (!st && k > L) throw convLengthError("conv1d_causal", k, L);
  const S = st ? st.shape[2] : 0;
  const y = allocHost(x.dtype, numel(x.shape));
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      for (let t = 0; t < L; t++) {
        let acc = bias ? bias[i] : 0;
        for (let j = 0; j < k; j++) {
          const p = t - (k - 1) + j;
          const v = p >= 0
            ? x.data[(b * L + p) * I + i]
            : st
            ? st.data[(b * I + i) * S + S + p]
            : 0;
          acc += w.data[i * k + j] * v;
        }
        y[(b * L + t) * I + i] = attrs.silu ? silu(acc) : acc;
      }
    }
  }
  return y;
}

function referenceStateUpdate(inputs: readonly HostTensor[]): HostTensor["data"] {
  const [s, x] = inputs;
  const [B, I, S] = s.shape;
  const L = x.shape[1];
  const out = s.data.slice();
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      for (let sl = 0; sl < S; sl++) {
        const p = L - S + sl; // position in x; < 0 comes from the old state
        out[(b * I + i) * S + sl] = p >= 0
          ? x.data[(b * L + p) * I + i]
          : s.data[(b * I + i) * S + S + p];
      }
    }
  }
  return out;
}

function referenceConvStep(inputs: readonly HostTensor[], attrs: Conv1dStepAttrs) {
  const [s, x, w] = inputs;
  const [B, I, S] = s.shape;
  const k = w.shape[w.shape.length - 1];
  const bias = attrs.bias ? inputs[3].data : undefined;
  const y = allocHost(x.dtype, numel(x.shape));
  const ns = s.data.slice();
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      const row = (b * I + i) * S;
      const xt = x.data[b * I + i];
      let acc = (bias ? bias[i] : 0) + w.data[i * k + k - 1] * xt;
      for (let j = 0; j < k - 1; j++) acc += w.data[i * k + j] * s.data[row + S - (k - 1) + j];
      y[b * I + i] = attrs.silu ? silu(acc) : acc;
      for (let j = 0; j < S - 1; j++) ns[row + j] = s.data[row + j + 1];
      if (S > 0) ns[row + S - 1] = xt;
    }
  }
  return [y, ns];
}

/** Float64 sequential scan over [B, L, I] with states [B, I, N]; the oracle. */
function referenceScan(
  inputs: readonly HostTensor[],
  attrs: ScanAttrs,
  step: boolean,
): HostTensor["data"][] {
  const { slots } = scanSlots(attrs, step);
  const u = inputs[slots.u], A = inputs[slots.a];
  const delta = slots.dtW !== undefined
    ? projectDelta(inputs[slots.delta], inputs[slots.dtW], u)
    : inputs[slots.delta];
  const Bm = inputs[slots.b], Cm = inputs[slots.c], D = inputs[slots.d];
  const z = slots.z !== undefined ? inputs[slots.z] : undefined;
  const bias = slots.bias !== undefined ? inputs[slots.bias] : undefined;
  const h0 = slots.h0 !== undefined
    ? inputs[slots.h0]
    : slots.state !== undefined
    ? inputs[slots.state]
    : undefined;
  const I = u.shape[u.shape.length - 1], N = A.shape[1];
  const rows = numel(u.shape) / I;
  const [Bn, L] = step ? [rows, 1] : [u.shape[0], u.shape[1]];
  const y = allocHost(u.dtype, numel(u.shape));
  const hOut = new Float32Array(Bn * I * N);
  const h = new Float64Array(N);
  for (let b = 0; b < Bn; b++) {
    for (let i = 0; i < I; i++) {
      for (let n = 0; n < N; n++) h[n] = h0 ? h0.data[(b * I + i) * N + n] : 0;
      for (let t = 0; t < L; t++) {
        const r = b * L + t;
        const x = u.data[r * I + i];
        let dt = delta.data[r * I + i] + (bias ? bias.data[i] : 0);
        if (attrs.softplus) dt = softplus(dt);
        let acc = D.data[i] * x;
        for (let n = 0; n < N; n++) {
          h[n] = Math.exp(dt * A.data[i * N + n]) * h[n] + dt * Bm.data[r * N + n] * x;
          acc += h[n] * Cm.data[r * N + n];
        }
        if (z) acc *= silu(z.data[r * I + i]);
        y[r * I + i] = acc;
      }
      for (let n = 0; n < N; n++) hOut[(b * I + i) * N + n] = h[n];
    }
  }
  return step || attrs.finalState ? [y, hOut] : [y];
}

/** Reference of the fused dt_proj: delta[r, i] = Σ_q lo[r, q]·W[i, q], summed in float64, stored f32 like the kernel's. */
function projectDelta(lo: HostTensor, W: HostTensor, u: HostTensor): HostTensor {
  const [I, R] = W.shape;
  const rows = numel(u.shape) / I;
  const data = new Float32Array(rows * I);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < I; i++) {
      let acc = 0;
      for (let q = 0; q < R; q++) acc += lo.data[r * R + q] * W.data[i * R + q];
      data[r * I + i] = acc;
    }
  }
  return { data, shape: u.shape, dtype: "f32" };
}

// ------------------------------------------------------------------ WGSL helpers

/** WGSL f32 load of input `j` at `idx`, raw when the operand is direct. */
function load(ctx: KernelContext<unknown>, j: number, idx: string): string {
  return ctx.inputs[j].direct ? `f32(in${j}[${idx}])` : `f32(in${j}_load(${idx}))`;
}

/** WGSL store of output `j`. */
function store(o: KernelOperand, j: number, idx: string, v: string): string {
  return o.direct
    ? `out${j}[${idx}] = ${o.dtype}(${v});`
    : `out${j}_store(${idx}, ${o.dtype}(${v}));`;
}

/** silu(x) in WGSL; `vec` "4" for vec4<f32> (the prelude's `kiln_sigmoid4`). */
const SILU = (x: string, vec: "" | "4" = "") => `(${x} * kiln_sigmoid${vec}(${x}))`;

/** Channels per thread and threads per workgroup of the scan kernels (tuned on lavapipe). */
interface ScanShape {
  /** Channels each thread owns; B/C row loads are shared between them. */
  readonly cpt: number;
  /** Threads per workgroup. */
  readonly wg: number;
}

interface ScanKernelSpec {
  readonly label: string;
  readonly mode: "states" | "output";
  readonly batch: number;
  readonly length: number;
  readonly channels: number;
  readonly state: number;
  readonly chunk: number;
  readonly chunks: number;
  readonly shape: ScanShape;
  readonly slots: ScanSlots;
  readonly softplus: boolean;
  /** Where the start state comes from. */
  readonly init: "zero" | "chunk" | ((idx: string) => string);
  /** Buffer receiving the end state (output mode), if any. */
  readonly final?: string;
  /**
   * Read A, D and the Δ bias from their own bindings instead of the packed
   * `scratch0`: saves the pack dispatch where the device allows the bindings.
   */
  readonly directParams?: boolean;
  /**
   * Step kernels with dt_proj fused in (`deltaRank` R > 0): Δ = W·δ computed per
   * channel from the low-rank input (`"direct"`), or read from `scratch0` after A,
   * D and the bias, where the pack kernel put it (`"scratch"`).
   */
  readonly deltaProj?: "direct" | "scratch";
  /**
   * CPU adapters: touch the u/Δ/z rows two steps ahead (one load per cache line),
   * summed into a dummy written to `scratch0[I·N + 2I]`. See `scanKernel`.
   */
  readonly prefetch?: boolean;
  /**
   * One-pass kernels: the `scratch0` index where the pack kernel stored L (as
   * u32 bits). The kernel reads L at run time instead of baking it in, so one
   * WGSL source — and one LLVM compile, seconds on llvmpipe — serves every
   * sequence length.
   */
  readonly lengthSlot?: number;
}

/**
 * One scan kernel over (channel block, chunk, batch). Each thread owns `cpt`
 * channels and keeps their N states in registers (llvmpipe vectorises across
 * invocations, so per-thread arrays would live in memory). One B (and C) row load
 * per step serves all `cpt` channels. No early return: a divergent return would
 * put every later load under a mask; out-of-range channels clamp their loads and
 * skip their stores instead.
 *
 * Where I and `cpt` are multiples of 4 (and Δ is not projected in the kernel), a
 * thread owns `cpt` contiguous channels as `cpt/4` vec4 groups and reads u/Δ/z and
 * writes y a vec4 at a time: llvmpipe runs each storage access as a per-lane loop,
 * so a vec4 costs about what a scalar does (I = 1536, L = 8192 one pass: 168 → 135
 * ms). Otherwise channel k of a thread is block·wg·cpt + k·wg + lid, so lanes stay
 * contiguous for scalar u/Δ/z/y.
 *
 * Params come packed in `scratch0`: A·log₂e `[I·N]` | D `[I]` | Δ bias `[I]`.
 * In "states" mode it writes the chunk's ΣΔ to `scratch1 [B, NC, I]` and its end
 * state (from zero) to `scratch2 [B, NC, I, N]`; in "output" mode it writes y.
 */
function scanKernel(ctx: KernelContext<ScanAttrs>, s: ScanKernelSpec): KernelSource {
  const { cpt, wg } = s.shape;
  const I = s.channels, N = s.state, L = s.length;
  const sl = s.slots;
  const vec = N % 4 === 0;
  // Channels per unit k: 4 when the thread's channels are read as vec4 groups.
  const V = I % 4 === 0 && cpt % 4 === 0 && !s.deltaProj ? 4 : 1;
  const units = cpt / V;
  const T = V === 4 ? "vec4<f32>" : "f32";
  const arrayTypes: Record<string, string> = {};
  const bcRow = (j: number, tag: string): string[] => {
    const lines: string[] = [];
    const op = ctx.inputs[j];
    if (vec && op.direct) {
      arrayTypes[`in${j}`] = `vec4<${op.dtype}>`;
      for (let q = 0; q < N / 4; q++) {
        lines.push(`    let ${tag}v${q} = vec4<f32>(in${j}[r * ${N / 4}u + ${q}u]);`);
      }
      for (let n = 0; n < N; n++) lines.push(`    let ${tag}${n} = ${tag}v${n >> 2}[${n & 3}];`);
    } else {
      for (let n = 0; n < N; n++) {
        lines.push(`    let ${tag}${n} = ${load(ctx, j, `r * ${N}u + ${n}u`)};`);
      }
    }
    return lines;
  };
  // A per-channel value of unit k: `at(e)` is channel j{k} + e's scalar.
  const perChannel = (at: (e: number) => string): string =>
    V === 1 ? at(0) : `vec4<f32>(${[0, 1, 2, 3].map(at).join(", ")})`;
  const plus = (e: number) => (e === 0 ? "" : ` + ${e}u`);
  // Unit k's u/Δ/z at row `row`.
  const rowLoad = (slot: number, row: string, k: number): string => {
    const op = ctx.inputs[slot];
    if (V === 4 && op.direct) {
      arrayTypes[`in${slot}`] = `vec4<${op.dtype}>`;
      return `vec4<f32>(in${slot}[${row} * ${I / 4}u + j${k} / 4u])`;
    }
    return perChannel((e) => load(ctx, slot, `${row} * ${I}u + j${k}${plus(e)}`));
  };
  const storeY = (k: number): string => {
    const o = ctx.outputs[0];
    if (V === 4 && o.direct) {
      arrayTypes.out0 = `vec4<${o.dtype}>`;
      return `out0[r * ${I / 4}u + i${k} / 4u] = vec4<${o.dtype}>(acc);`;
    }
    if (V === 1) return store(o, 0, `r * ${I}u + i${k}`, "acc");
    return [0, 1, 2, 3].map((e) => store(o, 0, `r * ${I}u + i${k}${plus(e)}`, `acc[${e}]`)).join(
      " ",
    );
  };
  const el = (v: string, e: number) => (V === 1 ? v : `${v}[${e}]`);
  const exact = I % (wg * cpt) === 0;
  const pre: string[] = [];
  const body: string[] = [];
  const post: string[] = [];
  // Long walks issue the next row's loads at the top of each step, so their cache
  // misses overlap the state math: the one-pass scan at I = 1536, L = 8192 went
  // from 194 to 163 ms and the sequential baseline from 665 to 393 ms. Short chunks
  // gain nothing and pay for the extra live values (pass 1 at chunk 64: 90 → 107 ms).
  // On llvmpipe a load that misses holds up retirement right away, so loading a row
  // a step early hides nothing once each lane reads its own line: the hardware
  // prefetchers miss rows a stride apart. One scalar load per lane and line two
  // rows ahead makes those misses overlap each other instead: 134 → 122 ms at
  // 16 channels per thread (I = 1536, L = 8192, one pass).
  const touch = s.prefetch === true && V === 4 && s.chunk >= 8;
  const pipelined = s.chunk >= 256 && !touch;
  const next: string[] = [];
  const shift: string[] = [];
  // L as the kernel sees it: a run-time value where the pack kernel stores it.
  const Lx = s.lengthSlot === undefined ? `${L}u` : "len";
  if (pipelined) pre.push(`  let r0 = b * ${Lx} + min(t0, ${Lx} - 1u);`);
  for (let k = 0; k < units; k++) {
    pre.push(
      V === 1
        ? `  let i${k} = wid.x * ${wg * cpt}u + ${k * wg}u + lid.x;`
        : `  let i${k} = (wid.x * ${wg}u + lid.x) * ${cpt}u + ${4 * k}u;`,
    );
    pre.push(`  let j${k} = min(i${k}, ${I - V}u);`);
    pre.push(exact ? `  let ok${k} = true;` : `  let ok${k} = i${k} < ${I}u;`);
    const param = (what: "a" | "d" | "bias", n = 0): string =>
      perChannel((e) => {
        const ch = `j${k}${plus(e)}`;
        if (s.directParams) {
          const slot = what === "a" ? sl.a : what === "d" ? sl.d : sl.bias!;
          return load(ctx, slot, what === "a" ? `(${ch}) * ${N}u + ${n}u` : ch);
        }
        const off = what === "a" ? "" : `${what === "d" ? I * N : I * N + I}u + `;
        return `scratch0[${off}${what === "a" ? `(${ch}) * ${N}u + ${n}u` : ch}]`;
      });
    for (let n = 0; n < N; n++) {
      const a = param("a", n);
      pre.push(`  let a${k}_${n} = ${s.directParams ? `${a} * ${LOG2E}` : a};`);
    }
    if (s.mode === "output") pre.push(`  let d${k} = ${param("d")};`);
    if (sl.bias !== undefined) pre.push(`  let db${k} = ${param("bias")};`);
    const hb = s.mode === "states" ? "" : `  let hb${k} = (b * ${I}u + j${k}) * ${N}u;`;
    if (hb) pre.push(hb);
    for (let n = 0; n < N; n++) {
      const init = s.init === "zero"
        ? `${T}(0.0)`
        : perChannel((e) =>
          s.init === "chunk"
            ? `scratch2[((b * ${s.chunks}u + c) * ${I}u + j${k}${plus(e)}) * ${N}u + ${n}u]`
            : (s.init as (idx: string) => string)(`hb${k} + ${e * N + n}u`)
        );
      pre.push(`  var h${k}_${n}: ${T} = ${init};`);
    }
    if (s.mode === "states") pre.push(`  var ds${k}: ${T} = ${T}(0.0);`);

    // This step's u, Δ (and z) of unit k: x/d/z{k}_c, loaded one step ahead
    // when `pipelined`, else at the top of the step.
    const rowLoads: [string, number][] = [["x", sl.u]];
    if (!s.deltaProj) rowLoads.push(["d", sl.delta]);
    else {
      body.push(
        s.deltaProj === "direct"
          ? `    let d${k}_c = dp${k};`
          : `    let d${k}_c = scratch0[${I * N + 2 * I}u + b * ${I}u + j${k}];`,
      );
    }
    if (s.mode === "output" && sl.z !== undefined) rowLoads.push(["z", sl.z]);
    if (pipelined) {
      for (const [v, slot] of rowLoads) {
        pre.push(`  var ${v}${k}_c = ${rowLoad(slot, "r0", k)};`);
        next.push(`    let ${v}${k}_n = ${rowLoad(slot, "rn", k)};`);
        shift.push(`    ${v}${k}_c = ${v}${k}_n;`);
      }
    } else {
      for (const [v, slot] of rowLoads) body.push(`    let ${v}${k}_c = ${rowLoad(slot, "r", k)};`);
    }
    body.push(`    {`);
    body.push(`      let x = x${k}_c;`);
    let dt = `d${k}_c`;
    if (sl.bias !== undefined) dt = `${dt} + db${k}`;
    if (s.softplus) dt = `kiln_softplus${V === 4 ? "4" : ""}(${dt})`;
    body.push(`      let dt = ${dt};`);
    if (s.mode === "states") body.push(`      ds${k} = ds${k} + dt;`);
    body.push(`      let du = dt * x;`);
    if (s.mode === "output") body.push(`      var acc = d${k} * x;`);
    for (let n = 0; n < N; n++) {
      // a is pre-scaled by log2(e): exp(Δ·A) costs one exp2.
      body.push(`      h${k}_${n} = fma(exp2(dt * a${k}_${n}), h${k}_${n}, du * bb${n});`);
      if (s.mode === "output") body.push(`      acc = fma(h${k}_${n}, ${T}(cc${n}), acc);`);
    }
    if (s.mode === "output") {
      if (sl.z !== undefined) {
        body.push(`      let zz = z${k}_c;`);
        body.push(`      acc = acc * ${SILU("zz", V === 4 ? "4" : "")};`);
      }
      body.push(`      if (ok${k}) { ${storeY(k)} }`);
    }
    body.push(`    }`);

    if (s.mode === "states") {
      post.push(`  if (ok${k}) {`);
      for (let e = 0; e < V; e++) {
        const ch = `i${k}${plus(e)}`;
        post.push(`    scratch1[(b * ${s.chunks}u + c) * ${I}u + ${ch}] = ${el(`ds${k}`, e)};`);
        post.push(`    let sb${e} = ((b * ${s.chunks}u + c) * ${I}u + ${ch}) * ${N}u;`);
        for (let n = 0; n < N; n++) {
          post.push(`    scratch2[sb${e} + ${n}u] = ${el(`h${k}_${n}`, e)};`);
        }
      }
      post.push(`  }`);
    } else if (s.final) {
      post.push(`  if (ok${k}) {`);
      for (let e = 0; e < V; e++) {
        for (let n = 0; n < N; n++) {
          post.push(`    ${s.final}[hb${k} + ${e * N + n}u] = ${el(`h${k}_${n}`, e)};`);
        }
      }
      post.push(`  }`);
    }
  }
  if (s.deltaProj === "direct") {
    // dt_proj fused: each low-rank δ load serves all of the thread's channels.
    const R = deltaRankOf(ctx.attrs);
    for (let k = 0; k < cpt; k++) pre.push(`  var dp${k}: f32 = 0.0;`);
    pre.push(`  for (var q = 0u; q < ${R}u; q = q + 1u) {`);
    pre.push(`    let dl = ${load(ctx, sl.delta, `b * ${R}u + q`)};`);
    for (let k = 0; k < cpt; k++) {
      pre.push(`    dp${k} = fma(${load(ctx, sl.dtW!, `j${k} * ${R}u + q`)}, dl, dp${k});`);
    }
    pre.push(`  }`);
  }
  const touches: string[] = [];
  if (touch) {
    const streams = [sl.u, sl.delta, ...(s.mode === "output" && sl.z !== undefined ? [sl.z] : [])]
      .filter((slot) => ctx.inputs[slot].direct);
    for (const slot of streams) {
      arrayTypes[`in${slot}`] = `vec4<${ctx.inputs[slot].dtype}>`;
      // One per 64-byte line: every fourth vec4 group of the thread.
      for (let k = 0; k < units; k += 4) {
        touches.push(`f32(in${slot}[rp * ${I / 4}u + j${k} / 4u].x)`);
      }
    }
    pre.push(`  var touched: f32 = 0.0;`);
    post.push(`  scratch0[${I * N + 2 * I}u] = touched;`);
  }
  const rows = [...bcRow(sl.b, "bb"), ...(s.mode === "output" ? bcRow(sl.c, "cc") : [])];
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.y;
  let b = wid.z;
${
    s.lengthSlot === undefined
      ? `  let t0 = c * ${s.chunk}u;\n  let t1 = min(t0 + ${s.chunk}u, ${L}u);`
      : `  let len = bitcast<u32>(scratch0[${s.lengthSlot}u]);\n  let t0 = 0u;\n  let t1 = len;`
  }
${pre.join("\n")}
  for (var t = t0; t < t1; t = t + 1u) {
    let r = b * ${Lx} + t;
${pipelined ? `    let rn = b * ${Lx} + min(t + 1u, t1 - 1u);\n${next.join("\n")}` : ""}
${
    touches.length
      ? `    let rp = b * ${Lx} + min(t + 2u, t1 - 1u);\n    touched = touched + ${
        touches.join(" + ")
      };`
      : ""
  }
${rows.join("\n")}
${body.join("\n")}
${shift.join("\n")}
  }
${post.join("\n")}
}`;
  return {
    label: s.label,
    code,
    workgroups: [Math.ceil(I / (wg * cpt)), s.chunks, s.batch],
    arrayTypes,
  };
}

/**
 * Kernel packing A·log₂e, D and the Δ bias into `scratch0` (f32), so the scan
 * kernels bind one small buffer instead of three and stay within 8 bindings.
 * It also copies `copy.from` into `copy.to` (an initial state into the in-place
 * state buffer of the sequential scan) and stores `length` for one-pass kernels.
 */
function packKernel(
  ctx: KernelContext<ScanAttrs>,
  slots: ScanSlots,
  I: number,
  N: number,
  copy?: { from: string; count: number },
  proj?: { R: number; rows: number },
  length?: { slot: number; value: number },
): KernelSource {
  const total = Math.max(I * N, copy?.count ?? 0, (proj?.rows ?? 0) * I);
  const wg = Math.min(256, ctx.caps.maxInvocations);
  const workgroups = grid(Math.ceil(total / wg), ctx.caps.maxWorkgroupsPerDim);
  const lines = [
    `  if (j < ${I * N}u) { scratch0[j] = ${load(ctx, slots.a, "j")} * ${LOG2E}; }`,
    `  if (j < ${I}u) {`,
    `    scratch0[${I * N}u + j] = ${load(ctx, slots.d, "j")};`,
    `    scratch0[${I * N + I}u + j] = ${
      slots.bias !== undefined ? load(ctx, slots.bias, "j") : "0.0"
    };`,
    `  }`,
  ];
  if (copy) lines.push(`  if (j < ${copy.count}u) { out1[j] = ${copy.from}; }`);
  if (length) {
    lines.push(`  if (j == 0u) { scratch0[${length.slot}u] = bitcast<f32>(${length.value}u); }`);
  }
  if (proj) {
    // ssm_step's fused dt_proj where the step cannot bind W and δ too: Δ[b, i] after D and the bias.
    lines.push(
      `  if (j < ${proj.rows * I}u) {`,
      `    let b = j / ${I}u;`,
      `    let i = j % ${I}u;`,
      `    var acc: f32 = 0.0;`,
      `    for (var q = 0u; q < ${proj.R}u; q = q + 1u) {`,
      `      acc = fma(${load(ctx, slots.dtW!, `i * ${proj.R}u + q`)}, ${
        load(ctx, slots.delta, `b * ${proj.R}u + q`)
      }, acc);`,
      `    }`,
      `    scratch0[${I * N + 2 * I}u + j] = acc;`,
      `  }`,
    );
  }
  const code = `@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x + gid.y * ${workgroups[0] * wg}u;
${lines.join("\n")}
}`;
  return { label: "ssm_pack_params", code, workgroups };
}

/** Default chunk: enough chunks to give a many-core GPU ≥ 32× the sequential parallelism. */
function pickChunk(L: number): number {
  return L >= 4096 ? 64 : L >= 512 ? 64 : 32;
}

/**
 * Thread shape of the scan kernels for a device.
 *
 * GPU: one channel per thread in 64-lane workgroups, its N states in registers.
 *
 * CPU adapter (llvmpipe): a workgroup is one 8-lane SIMD thread and every storage
 * access a per-lane loop, also when all lanes read the same address. So a thread
 * owns 16 channels: each B/C row load serves all of them, and each step's u/Δ/z
 * cache misses are waited for once per 16 channels. The spilled state registers
 * cost far less than the loads: 2 channels per thread in 128-lane groups ran the
 * I = 1536, L = 8192 scan in 357 ms vs 269 ms at 16 (I = 256: 135 vs 92 ms). More
 * channels run faster still (one pass, same shape: 16 → 122 ms, 32 → 105 ms, 48 →
 * 98 ms) but LLVM compiles the unrolled kernel in 8 s, 27 s and 67 s, so the shape
 * stays at 256 states per thread (fewer channels for larger N). The one-pass kernel
 * reads L at run time, so that compile is paid once per model shape, not once per
 * prompt length; the chunked kernels still bake L in.
 */
function pickShape(
  I: number,
  N: number,
  baseline: boolean,
  caps: { readonly cpuCores: number },
): ScanShape {
  // The baseline is the textbook one thread per channel.
  if (baseline || caps.cpuCores === 0 || I < 128) return { cpt: 1, wg: 64 };
  return { cpt: Math.max(1, Math.min(16, Math.floor(256 / N))), wg: 8 };
}

/** How a selective scan runs on a device, and why (shown in the plan's kernel label). */
interface ScanChoice {
  readonly kind: "baseline" | "onepass" | "chunked";
  readonly chunk: number;
  readonly reason: string;
}

/**
 * The compiler's choice of scan algorithm. The chunked scan computes every state
 * twice (chunk-end states, then outputs) to expose L/chunk-fold parallelism: a GPU
 * needs it, a CPU adapter whose cores are already busy with channel blocks loses
 * by it (I = 1536, L = 8192 on 2 cores: one pass 117 ms, chunked 197 ms).
 */
function chooseScan(
  attrs: ScanAttrs,
  B: number,
  L: number,
  I: number,
  N: number,
  caps: { readonly cpuCores: number },
): ScanChoice {
  if (attrs.algorithm === "sequential") {
    return { kind: "baseline", chunk: L, reason: `"sequential": one thread per channel over L` };
  }
  const chunk = Math.min(L, attrs.chunk || pickChunk(L));
  const NC = Math.ceil(L / chunk);
  if (NC === 1) return { kind: "onepass", chunk: L, reason: `chunk ${chunk} ≥ L = ${L}: one pass` };
  if (attrs.algorithm === "chunked" || attrs.chunk > 0) {
    return { kind: "chunked", chunk, reason: `"chunked": ${NC} chunks of ${chunk}` };
  }
  const cores = caps.cpuCores;
  const shape = pickShape(I, N, false, caps);
  const blocks = B * Math.ceil(I / (shape.wg * shape.cpt));
  if (cores > 0 && blocks >= cores) {
    return {
      kind: "onepass",
      chunk: L,
      reason: `auto: ${blocks} channel blocks keep the CPU adapter's ${cores} cores busy, ` +
        `so one pass over L (chunks would compute every state twice)`,
    };
  }
  return {
    kind: "chunked",
    chunk,
    reason: `auto: ${NC} chunks of ${chunk} × ${blocks} channel blocks = ${NC * blocks} ` +
      `workgroups for ${cores > 0 ? `${cores} CPU cores` : "a GPU"}`,
  };
}

function emitScan(ctx: KernelContext<ScanAttrs>): KernelEmission {
  const { slots } = scanSlots(ctx.attrs, false);
  const u = ctx.inputs[slots.u];
  const [B, L, I] = u.shape;
  const N = ctx.inputs[slots.a].shape[1];
  if (B * L * I === 0) return { kernels: [] };
  const finalState = ctx.attrs.finalState;
  const h0 = slots.h0;
  const choice = chooseScan(ctx.attrs, B, L, I, N, ctx.caps);
  const chunk = choice.chunk;
  const NC = Math.ceil(L / chunk);
  const tag = `B${B}_L${L}_I${I}_N${N}`;
  const common = {
    batch: B,
    length: L,
    channels: I,
    state: N,
    slots,
    softplus: ctx.attrs.softplus,
    prefetch: ctx.caps.cpuCores > 0,
  };
  // A·log₂e | D | Δ bias | the CPU prefetch touch's sink | L (one-pass kernels).
  const params: ScratchSpec = { length: I * N + 2 * I + 2, type: "f32" };
  const length = { slot: I * N + 2 * I + 1, value: L };
  // The choice and its reason lead the plan's first kernel label (`inspect`).
  const head = (k: KernelSource): KernelSource => ({
    ...k,
    label: `[${choice.kind === "chunked" ? "chunked" : "one pass"}] ${choice.reason}; ${k.label}`,
  });
  if (choice.kind !== "chunked") {
    // One pass per channel over all of L. With both an initial and a final state
    // the pack kernel copies h0 into the final-state output, which the scan then
    // updates in place: 8 bindings with z instead of 9.
    const both = h0 !== undefined && finalState;
    const kernels: KernelSource[] = [
      head(packKernel(
        ctx,
        slots,
        I,
        N,
        both ? { from: load(ctx, h0, "j"), count: B * I * N } : undefined,
        undefined,
        length,
      )),
      scanKernel(ctx, {
        ...common,
        label: `ssm_scan_sequential_${tag}`,
        mode: "output",
        chunk: L,
        chunks: 1,
        shape: pickShape(I, N, choice.kind === "baseline", ctx.caps),
        init: both
          ? (idx) => `out1[${idx}]`
          : h0 !== undefined
          ? (idx) => load(ctx, h0, idx)
          : "zero",
        final: finalState ? "out1" : undefined,
        lengthSlot: length.slot,
      }),
    ];
    return { kernels, scratch: [params] };
  }
  // Chunked: pass 1 (chunk-end states from zero + ΣΔ), pass 2 (carry across
  // chunks with (a₁,b₁)∘(a₀,b₀) = (a₁a₀, a₁b₀ + b₁), a₁ = exp(A·ΣΔ)), pass 3
  // (re-scan each chunk from its carried-in state, write y). Only y and the final
  // state reach memory the graph sees; the per-chunk states are scratch of size
  // [B, L/chunk, I, N], never [B, L, I, N].
  const shape = pickShape(I, N, false, ctx.caps);
  const NC1 = finalState ? NC : NC - 1; // the last chunk's end state only feeds h_final
  const pass1 = scanKernel(ctx, {
    ...common,
    label: `ssm_scan_chunk_states_${tag}_c${chunk}`,
    mode: "states",
    chunk,
    chunks: NC,
    shape,
    init: "zero",
  });
  const pass1Grid: [number, number, number] = [pass1.workgroups[0], NC1, B];
  const wg2 = 64;
  const h0Load = h0 !== undefined ? load(ctx, h0, `b * ${I * N}u + j`) : "0.0";
  const code2 = `@compute @workgroup_size(${wg2})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * ${wg2}u + lid.x;
  if (j >= ${I * N}u) { return; }
  let b = wid.y;
  let i = j / ${N}u;
  let a = scratch0[j];
  var h: f32 = ${h0Load};
  for (var c = 0u; c < ${NC}u; c = c + 1u) {
    let idx = (b * ${NC}u + c) * ${I * N}u + j;
    let st = scratch2[idx];
    scratch2[idx] = h;
    if (c < ${NC1}u) {
      h = fma(exp2(scratch1[(b * ${NC}u + c) * ${I}u + i] * a), h, st);
    }
  }
${finalState ? `  ${store(ctx.outputs[1], 1, `b * ${I * N}u + j`, "h")}` : ""}
}`;
  const pass3 = scanKernel(ctx, {
    ...common,
    label: `ssm_scan_chunk_output_${tag}_c${chunk}`,
    mode: "output",
    chunk,
    chunks: NC,
    shape,
    init: "chunk",
  });
  return {
    kernels: [
      head(packKernel(ctx, slots, I, N)),
      { ...pass1, workgroups: pass1Grid },
      {
        label: `ssm_scan_chunk_carry_${tag}_c${chunk}`,
        code: code2,
        workgroups: [Math.ceil(I * N / wg2), B, 1],
      },
      pass3,
    ],
    scratch: [
      params,
      { length: B * NC * I, type: "f32" },
      { length: B * NC * I * N, type: "f32" },
    ],
  };
}

function emitSsmStep(ctx: KernelContext<ScanAttrs>): KernelEmission {
  const { slots } = scanSlots(ctx.attrs, true);
  const u = ctx.inputs[slots.u];
  const I = u.shape[u.shape.length - 1];
  const B = numel(u.shape) / I;
  const N = ctx.inputs[slots.a].shape[1];
  if (B * I === 0) return { kernels: [] };
  const R = deltaRankOf(ctx.attrs);
  const fits = ctx.inputs.length + ctx.outputs.length <= ctx.caps.maxStorageBuffers;
  const scan = scanKernel(ctx, {
    label: `ssm_step_B${B}_I${I}_N${N}${R > 0 ? `_dtR${R}` : ""}`,
    mode: "output",
    batch: B,
    length: 1,
    channels: I,
    state: N,
    chunk: 1,
    chunks: 1,
    shape: pickShape(I, N, false, ctx.caps),
    slots,
    softplus: ctx.attrs.softplus,
    init: (idx) => `out1[${idx}]`,
    final: "out1",
    // A decode step runs every token: skip the pack dispatch when every input and
    // the state can be bound at once (lavapipe allows 32 storage buffers).
    directParams: fits,
    deltaProj: R === 0 ? undefined : fits ? "direct" : "scratch",
  });
  if (fits) return { kernels: [scan] };
  return {
    kernels: [packKernel(ctx, slots, I, N, undefined, R > 0 ? { R, rows: B } : undefined), scan],
    scratch: [{ length: I * N + 2 * I + (R > 0 ? B * I : 0), type: "f32" }],
  };
}

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
  const lines: string[] = [];
  for (let j = 0; j < k; j++) lines.push(`  let w${j} = ${load(ctx, 1, `i * ${k}u + ${j}u`)};`);
  lines.push(`  let bias = ${ctx.attrs.bias ? load(ctx, 2, "i") : "0.0"};`);
  // Window registers v0..v(k-2) hold positions t-(k-1) .. t-1: each x is read once.
  for (let j = 0; j < k - 1; j++) {
    lines.push(`  var v${j}: f32 = hist(b, i32(t0) - ${k - 1 - j}, i);`);
  }
  lines.push(`  for (var t = t0; t < t1; t = t + 1u) {`);
  lines.push(`    let cur = ${load(ctx, 0, `(b * ${L}u + t) * ${I}u + i`)};`);
  const terms = ["bias"];
  for (let j = 0; j < k - 1; j++) terms.push(`w${j} * v${j}`);
  terms.push(`w${k - 1} * cur`);
  lines.push(`    var acc = ${terms.join(" + ")};`);
  if (ctx.attrs.silu) lines.push(`    acc = ${SILU("acc")};`);
  lines.push(`    ${store(ctx.outputs[0], 0, `(b * ${L}u + t) * ${I}u + i`, "acc")}`);
  for (let j = 0; j < k - 2; j++) lines.push(`    v${j} = v${j + 1};`);
  if (k > 1) lines.push(`    v${k - 2} = cur;`);
  lines.push(`  }`);
  const code = `fn hist(b: u32, p: i32, i: u32) -> f32 {
  if (p >= 0) { return ${load(ctx, 0, `(b * ${L}u + u32(p)) * ${I}u + i`)}; }
  ${sj >= 0 ? `return ${load(ctx, sj, `(b * ${I}u + i) * ${S}u + u32(${S} + p)`)};` : "return 0.0;"}
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
    }],
  };
}

function emitStateUpdate(ctx: KernelContext<Record<string, never>>): KernelEmission {
  const [s, x] = ctx.inputs;
  const [B, I, S] = s.shape;
  const L = x.shape[1];
  if (B * I * S === 0) return { kernels: [] };
  // In place: the thread reads its whole old row (out0 starts as the old state)
  // before writing any slot.
  const lines: string[] = [];
  for (let j = 0; j < S; j++) lines.push(`  let o${j} = f32(out0[base + ${j}u]);`);
  for (let sl = 0; sl < S; sl++) {
    const p = L - S + sl;
    const src = p >= 0 ? load(ctx, 1, `(b * ${L}u + ${p}u) * ${I}u + i`) : `o${S + p}`;
    lines.push(`  out0[base + ${sl}u] = ${s.dtype}(${src});`);
  }
  return perChannelKernel("conv_state_update", B, I, S, lines);
}

function emitConvStep(ctx: KernelContext<Conv1dStepAttrs>): KernelEmission {
  const [s, , w] = ctx.inputs;
  const [B, I, S] = s.shape;
  const k = w.shape[w.shape.length - 1];
  if (B * I === 0) return { kernels: [] };
  const lines: string[] = [];
  lines.push(`  let xt = ${load(ctx, 1, "b * " + I + "u + i")};`);
  for (let j = 0; j < S; j++) lines.push(`  let o${j} = out1[base + ${j}u];`);
  // The window is the last k−1 state slots and x_t, so S = k − 1 and S = k both work.
  const terms = [
    ctx.attrs.bias ? load(ctx, 3, "i") : "0.0",
    `${load(ctx, 2, `i * ${k}u + ${k - 1}u`)} * xt`,
  ];
  for (let j = 0; j < k - 1; j++) {
    terms.push(`${load(ctx, 2, `i * ${k}u + ${j}u`)} * o${S - (k - 1) + j}`);
  }
  lines.push(`  var acc = ${terms.join(" + ")};`);
  if (ctx.attrs.silu) lines.push(`  acc = ${SILU("acc")};`);
  lines.push(`  ${store(ctx.outputs[0], 0, `b * ${I}u + i`, "acc")}`);
  for (let j = 0; j < S - 1; j++) lines.push(`  out1[base + ${j}u] = o${j + 1};`);
  if (S > 0) lines.push(`  out1[base + ${S - 1}u] = xt;`);
  return perChannelKernel(`conv1d_step_k${k}`, B, I, S, lines);
}

/**
 * One thread per (batch row b, channel i) of a `[B, I, S]` conv state; `lines` see
 * `b`, `i` and `base`, the offset of the thread's state row.
 */
function perChannelKernel(
  label: string,
  B: number,
  I: number,
  S: number,
  lines: string[],
): KernelEmission {
  const code = `@compute @workgroup_size(${CONV_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * ${CONV_WG}u + lid.x;
  if (i >= ${I}u) { return; }
  let b = wid.y;
  let base = (b * ${I}u + i) * ${S}u;
${lines.join("\n")}
}`;
  return { kernels: [{ label, code, workgroups: [Math.ceil(I / CONV_WG), B, 1] }] };
}

// ------------------------------------------------------------------ op table entries

/**
 * conv1d_causal(x [B, L, I], weight [I, 1, k], bias? [I], state? [B, I, S]) → y [B, L, I]:
 * y[b,t,i] = bias[i] + Σⱼ w[i,j]·x[b, t−(k−1)+j, i], silu optional; positions
 * before 0 come from the state (slot S−1 newest) or are zero. Without a state,
 * k > L is rejected: the output would see mostly padding.
 */
export const conv1dCausal: OpDef<Conv1dAttrs> = {
  arity: [2, 4],
  attrNames: ["bias", "state", "silu"],
  infer: inferConv,
  reference: (inputs, attrs) => [referenceConv(inputs, attrs)],
  lower: { kind: "kernel", prologue: true, epilogue: true, emit: emitConv },
};

/**
 * conv_state_update(state [B, I, S], x [B, L, I]) → the last S inputs of
 * (state ++ x), in place: on a `g.state` assigned this output, nothing is copied.
 */
export const convStateUpdate: OpDef<Record<string, never>> = {
  arity: 2,
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

/**
 * selective_scan(u, delta, A, B, C, D, z?, deltaBias?, h0?) → [y, hFinal?]:
 * Mamba's S6 scan, hₜ = exp(Δₜ·A) ⊙ hₜ₋₁ + Δₜ·Bₜ·uₜ, yₜ = Cₜ·hₜ + D·uₜ, gated by
 * silu(z); Δ = softplus(delta + bias) when asked. State in f32.
 */
export const selectiveScan: OpDef<ScanAttrs> = {
  arity: [6, 9],
  attrNames: ["gate", "deltaBias", "softplus", "initialState", "finalState", "algorithm", "chunk"],
  infer: (inputs, attrs) => inferScanLike(inputs, attrs, false),
  reference: (inputs, attrs) => referenceScan(inputs, attrs, false),
  lower: { kind: "kernel", prologue: true, epilogue: true, emit: emitScan },
};

/**
 * ssm_step(state [B, I, N] f32, u, delta, A, B, C, D, z?, deltaBias?, dtW?) → [y, state']:
 * one decode token of the selective SSM, the state updated in place. With the
 * attribute `deltaRank` R > 0, delta is Mamba's low-rank `[B, R]` and dtW
 * (dt_proj's weight `[I, R]`) projects it inside the kernel: no GEMV dispatch.
 */
export const ssmStep: OpDef<ScanAttrs> = {
  arity: [7, 10],
  attrNames: [
    "gate",
    "deltaBias",
    "softplus",
    "initialState",
    "finalState",
    "algorithm",
    "chunk",
    "deltaRank",
  ],
  infer: (inputs, attrs) => inferScanLike(inputs, attrs, true),
  reference: (inputs, attrs) => referenceScan(inputs, attrs, true),
  lower: {
    kind: "kernel",
    prologue: [1, 2, 3, 4, 5, 6, 7, 8],
    epilogue: true,
    inplace: [[1, 0]],
    emit: emitSsmStep,
  },
};

/** The scan-like attribute record with defaults filled in. */
export function scanAttrs(partial: Partial<ScanAttrs> = {}): ScanAttrs {
  return {
    gate: partial.gate ?? false,
    deltaBias: partial.deltaBias ?? false,
    softplus: partial.softplus ?? false,
    initialState: partial.initialState ?? false,
    finalState: partial.finalState ?? false,
    algorithm: partial.algorithm ?? "auto",
    chunk: partial.chunk ?? 0,
  };
}
