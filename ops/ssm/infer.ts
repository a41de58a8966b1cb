/**
 * Shape and dtype rules of the Mamba (S6) ops: each names the offending operand
 * or attribute in its error.
 *
 * @module
 */

import type { TensorType } from "../../core/graph.ts";
import { type Dim, formatShape } from "../../core/shape.ts";
import { isFloat } from "../../core/dtype.ts";
import {
  checkpointShape,
  checkpointsOf,
  type Conv1dAttrs,
  type Conv1dStepAttrs,
  deltaRankOf,
  SCAN_ALGORITHMS,
  type ScanAttrs,
  scanSlots,
} from "./attrs.ts";

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

/**
 * Shape rule of `conv1d_causal`: x `[B, L, I]`, weight `[I, 1, k]` or `[I, k]`,
 * bias? `[I]`, state? `[B, I, S ≥ k − 1]` → y like x.
 *
 * @example
 * ```ts ignore
 * inferConv([x, w], { bias: false, state: false, silu: true }); // [{ shape: x.shape, dtype: x.dtype }]
 * ```
 */
export function inferConv(inputs: readonly TensorType[], attrs: Conv1dAttrs): TensorType[] {
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

/**
 * The error of a conv without a state whose kernel is wider than the sequence.
 *
 * @example
 * ```ts ignore
 * throw convLengthError("conv1d_causal", 4, 2);
 * ```
 */
export function convLengthError(what: string, k: number, L: number): RangeError {
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

/**
 * Shape rule of `conv1d_step`: state `[B, I, S]` f32, x `[B, (1,) I]`, weight,
 * bias? → [y like x, the state].
 *
 * @example
 * ```ts ignore
 * inferConvStep([state, x, w], { bias: false, silu: true }); // [y, state']
 * ```
 */
export function inferConvStep(inputs: readonly TensorType[], attrs: Conv1dStepAttrs): TensorType[] {
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

/**
 * Shape rule of `conv_state_update`: state `[B, I, S]`, x `[B, L, I]`, last? u32
 * `[1]` → the state.
 *
 * @example
 * ```ts ignore
 * inferStateUpdate([state, x]); // [{ shape: state.shape, dtype: state.dtype }]
 * ```
 */
export function inferStateUpdate(inputs: readonly TensorType[]): TensorType[] {
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
  if (inputs.length === 3) checkLast(what, inputs[2]);
  return [{ shape: s.shape, dtype: s.dtype }];
}

/**
 * Checks a `last` input (the index of the last real row of a padded run): u32 `[1]`.
 *
 * @example
 * ```ts ignore
 * checkLast("conv_state_update(...)", { shape: [1], dtype: "u32" }); // passes
 * ```
 */
export function checkLast(what: string, t: TensorType): void {
  if (t.dtype !== "u32" || t.shape.length !== 1 || t.shape[0] !== 1) {
    throw new TypeError(`${what}: last must be u32 [1], got ${t.dtype}${formatShape(t.shape)}`);
  }
}

/**
 * Shape rule of `selective_scan` (`step` false) and `ssm_step`: activations
 * alike in shape and dtype, A `[I, N]`, B and C `[..., N]`, D and the Δ bias
 * `[I]`, states `[B, I, N]` f32 → [y like u, the final or next state].
 *
 * @example
 * ```ts ignore
 * inferScanLike([u, dt, A, B, C, D], scanAttrs(), false); // [y]
 * ```
 */
export function inferScanLike(
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
  if (slots.last !== undefined) checkLast(what, inputs[slots.last]);
  if (slots.state !== undefined) checkState(inputs[slots.state], "state");
  const out: TensorType[] = [{ shape: u.shape, dtype: act }];
  if (step || attrs.finalState) out.push({ shape: stateShape, dtype: "f32" });
  const every = step ? 0 : checkpointsOf(attrs);
  if (every > 0) {
    if (slots.last !== undefined) {
      throw new TypeError(`${what}: checkpoints cannot go with a \`last\` input (padded rows)`);
    }
    out.push({ shape: checkpointShape(B, u.shape[1], I, N, every), dtype: "f32" });
  }
  return out;
}
