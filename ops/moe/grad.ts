/**
 * `moe_grad`: the backward pass of the routed expert layer (`moe`) as one op,
 * MegaBlocks-style and dropless unless the forward had a capacity.
 *
 * Inputs, in order (all f32; T tokens flattened):
 * 0. `x [T, d]`, 1. router `logits [T, E]` (the forward's output 1),
 * 2. `w1 [E, ff, d]`, 3. `w3 [E, ff, d]`, 4. `w2 [E, d, ff]`,
 * 5. `dy [T, d]`, 6. `dlogits [T, E]` (gradient into the logits output),
 * 7. `dtopkw [T, k]` (into the routing weights output), 8. `daux [2]` (into the
 *    losses), 9. `mask [T]`, 10. `bias [E]` (`sigmoid_bias`, `softmax_bias`; zeros otherwise),
 * then with the `expertBias` attribute 11. `b1 [E, ff]`, 12. `b3 [E, ff]`,
 * 13. `b2 [E, d]` (the experts' biases).
 * Absent gradients are passed as zeros (broadcast constants, no buffers).
 *
 * Outputs: `dx [T, d]` through the experts (the router's share is
 * `dz · Wg`, a matmul the gradient rule adds), `dz [T, E]` (every path into the
 * logits summed), `dw1`, `dw3`, `dw2` (shapes of the weights), and with
 * `expertBias` `db1`, `db3 [E, ff]`, `db2 [E, d]`.
 *
 * The `activation`, `alpha` and `limit` attributes are the forward's: the
 * hidden recompute and its backward use the same activation (`swiglu_oai`'s
 * clamps pass the gradient inside their range, boundary included, as
 * PyTorch's `clamp` does).
 *
 * The kernels recompute the routing from the logits with the forward's own
 * router and sort kernels (so selection, ties and capacity drops are exactly
 * the forward's), then run grouped passes over the expert-sorted rows: dy
 * gathered into expert order, `dh = dy·W2ₑ`, the hidden recompute with the
 * activation's backward, dW2 (and db2), dW1/dW3 (and db1/db3), dx rows, then
 * the per-token combine, the loss counts and the router backward (11 launches
 * whatever E is). Every sum runs in a fixed order (no float atomics), so
 * results are deterministic.
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { type Dim, formatShape } from "../../core/shape.ts";
import type { HostTensor, OpDef } from "../types.ts";
import { activationOf, checkAttrs, expertBiasOf, groupLimitOf, MOE_SHARED_ATTRS } from "./attrs.ts";
import type { MoeRouterKind } from "./config.ts";
import { emitMoeGrad } from "./grad_lower.ts";
import { moeGradReference } from "./grad_reference.ts";

/**
 * Attributes of `moe_grad`: the forward's routing semantics, and optionally
 * its experts' `activation` (with `alpha`, `limit`) and `expertBias`, as
 * `moe` takes them.
 *
 * @example
 * ```ts
 * import type { MoeGradAttrs } from "@kiln/kiln";
 * const a: MoeGradAttrs = {
 *   experts: 8, topK: 2, router: "softmax_topk", normTopk: true, routedScaling: 1, capacityFactor: 0,
 * };
 * ```
 */
export interface MoeGradAttrs {
  /** Routed experts E. */
  readonly experts: number;
  /** Experts per token k. */
  readonly topK: number;
  /** Router kind, as the forward's. */
  readonly router: MoeRouterKind;
  /** `softmax_topk`, `sigmoid_bias`: the chosen weights were renormalised. */
  readonly normTopk: boolean;
  /** `sigmoid_bias`: factor on the weights. */
  readonly routedScaling: number;
  /** Capacity factor (0: dropless). */
  readonly capacityFactor: number;
  /**
   * Attributes are plain records, so graphs stay serialisable. Optional, as
   * `moe`'s: `activation` (`"swiglu"` when absent) with `alpha` and `limit`,
   * `expertBias` (three more inputs and outputs), and `groups`, `groupsKept`
   * (the forward's group-limited routing, which the recomputed routing repeats).
   */
  [key: string]: number | string | boolean;
}

const NAMES = [
  "x",
  "logits",
  "w1",
  "w3",
  "w2",
  "dy",
  "dlogits",
  "dtopkw",
  "daux",
  "mask",
  "bias",
  "b1",
  "b3",
  "b2",
] as const;

function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function inferMoeGrad(inputs: readonly TensorType[], a: MoeGradAttrs): TensorType[] {
  checkAttrs({ ...a, dense: false });
  const [x, , w1] = inputs;
  if (x.shape.length !== 2) {
    throw new RangeError(`moe_grad: x must be [T, d], got ${formatShape(x.shape)}`);
  }
  const [T, d] = x.shape;
  const E = a.experts, k = a.topK;
  if (w1.shape.length !== 3) {
    throw new RangeError(`moe_grad: w1 must be [E, ff, d], got ${formatShape(w1.shape)}`);
  }
  const ff = w1.shape[1];
  const biases = expertBiasOf({ ...a, dense: false });
  if (inputs.length !== (biases ? 14 : 11)) {
    throw new RangeError(
      `moe_grad: takes ${
        biases ? "14 inputs with" : "11 inputs without"
      } expertBias, got ${inputs.length}`,
    );
  }
  const want: Dim[][] = [
    [T, d],
    [T, E],
    [E, ff, d],
    [E, ff, d],
    [E, d, ff],
    [T, d],
    [T, E],
    [T, k],
    [2],
    [T],
    [E],
    [E, ff],
    [E, ff],
    [E, d],
  ];
  inputs.forEach((t, j) => {
    if (t.dtype !== "f32") {
      throw new TypeError(`moe_grad: ${NAMES[j]} must be f32, got ${t.dtype}`);
    }
    if (!sameShape(t.shape, want[j])) {
      throw new RangeError(
        `moe_grad: ${NAMES[j]} must be ${formatShape(want[j])}, got ${formatShape(t.shape)}`,
      );
    }
  });
  return [
    { shape: [T, d], dtype: "f32" },
    { shape: [T, E], dtype: "f32" },
    { shape: [E, ff, d], dtype: "f32" },
    { shape: [E, ff, d], dtype: "f32" },
    { shape: [E, d, ff], dtype: "f32" },
    ...(biases
      ? [
        { shape: [E, ff], dtype: "f32" },
        { shape: [E, ff], dtype: "f32" },
        { shape: [E, d], dtype: "f32" },
      ] as TensorType[]
      : []),
  ];
}

function referenceMoeGrad(inputs: readonly HostTensor[], a: MoeGradAttrs): HostArray[] {
  const [x, logits, w1, w3, w2, dy, dlogits, dtopkw, daux, mask, bias, b1, b3, b2] = inputs.map((
    t,
  ) => t.data);
  const biases = expertBiasOf({ ...a, dense: false });
  const [T, d] = inputs[0].shape as number[];
  const r = moeGradReference(
    {
      T,
      d,
      ff: inputs[2].shape[1] as number,
      E: a.experts,
      k: a.topK,
      router: a.router,
      normTopk: a.normTopk,
      routedScaling: a.routedScaling,
      ...groupLimitOf(a),
      capacityFactor: a.capacityFactor > 0 ? a.capacityFactor : undefined,
      activation: activationOf({ ...a, dense: false }),
      alpha: typeof a.alpha === "number" ? a.alpha : undefined,
      limit: typeof a.limit === "number" ? a.limit : undefined,
    },
    { x, logits, w1, w3, w2, dy, dlogits, dtopkw, daux, mask, bias, b1, b3, b2 },
  );
  const outs = [r.dx, r.dlogits, r.dw1, r.dw3, r.dw2, ...(biases ? [r.db1, r.db3, r.db2] : [])];
  return outs.map((v) => {
    const out = allocHost("f32", v.length);
    out.set(v);
    return out;
  });
}

/**
 * The backward pass of `moe` (see the module notes for operands and outputs);
 * `moe`'s gradient rule builds it.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../../compiler/builder.ts";
 * const g = new GraphBuilder();
 * const [T, d, E, ff, k] = [6, 8, 4, 16, 2];
 * const f = (name: string, shape: number[]) => g.input(name, shape);
 * const [dx, dz, dw1, dw3, dw2] = g.apply("moe_grad", [
 *   f("x", [T, d]), f("logits", [T, E]), f("w1", [E, ff, d]), f("w3", [E, ff, d]),
 *   f("w2", [E, d, ff]), f("dy", [T, d]), f("dlogits", [T, E]), f("dtopkw", [T, k]),
 *   f("daux", [2]), f("mask", [T]), f("bias", [E]),
 * ], { experts: E, topK: k, router: "softmax_topk", normTopk: true, routedScaling: 1, capacityFactor: 0 });
 * g.output("dw2", dw2);
 * ```
 */
export const moeGrad: OpDef<MoeGradAttrs> = {
  // The 11 operands above, then b1, b3, b2 with expertBias.
  arity: [11, 14],
  attrNames: [...MOE_SHARED_ATTRS.ROUTING, ...MOE_SHARED_ATTRS.EXPERTS],
  infer: inferMoeGrad,
  reference: (inputs, attrs) => referenceMoeGrad(inputs, attrs),
  // The incoming gradients and the mask may be fused views (zeros, broadcasts);
  // x, the logits, the weights and the biases are read as raw arrays.
  lower: { kind: "kernel", prologue: [5, 6, 7, 8, 9], epilogue: false, emit: emitMoeGrad },
};
