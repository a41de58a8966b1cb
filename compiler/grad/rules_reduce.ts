/**
 * Gradient rules of reductions and their relatives: sum/mean/max/min,
 * logsumexp, softmax, cumsum and topk's values.
 *
 * @module
 */

import { normAxis } from "../../core/shape.ts";
import type { ReduceAttrs } from "../../ops/reduce.ts";
import type { Tensor } from "../tensor.ts";
import { expandTo, keepAxis } from "./broadcast.ts";
import type { GradRule, GradTable } from "./types.ts";

/** A reduction's result (or its gradient) with the reduced axis back, as size 1. */
function kept(t: Tensor, attrs: ReduceAttrs, rank: number): Tensor {
  return attrs.keepdims ? t : keepAxis(t, normAxis(attrs.axis, rank, "reduction"));
}

/** The reduced axis' length as a broadcastable tensor (symbolic lengths too). */
function countOf(x: Tensor, axis: number): Tensor {
  const g = x.builder;
  return expandTo(g.constant(1, [], x.dtype), x.shape).sum(axis, true);
}

/** max and min: the gradient split evenly among the elements equal to the extreme. */
const extreme: GradRule<ReduceAttrs> = ({ inputs: [x], outputs: [y], grads: [gy], attrs }) => {
  const r = x.shape.length;
  const axis = normAxis(attrs.axis, r, "reduction");
  const hit = x.equal(expandTo(kept(y, attrs, r), x.shape));
  const share = kept(gy!, attrs, r).div(hit.cast(x.dtype).sum(axis, true));
  return [expandTo(share, x.shape).where(hit, 0)];
};

/** Rules of the reductions. */
export const REDUCE_RULES: GradTable = {
  sum: ({ inputs: [x], grads: [gy], attrs }) => [
    expandTo(kept(gy!, attrs, x.shape.length), x.shape),
  ],
  mean: ({ inputs: [x], grads: [gy], attrs }) => {
    const axis = normAxis(attrs.axis, x.shape.length, "mean");
    const n = x.shape[axis];
    const g = kept(gy!, attrs, x.shape.length);
    return [expandTo(typeof n === "number" ? g.div(n) : g.div(countOf(x, axis)), x.shape)];
  },
  max: extreme,
  min: extreme,
  argmax: () => [],
  logsumexp: ({ inputs: [x], outputs: [y], grads: [gy], attrs }) => {
    const r = x.shape.length;
    const p = x.sub(expandTo(kept(y, attrs, r), x.shape)).exp();
    return [p.mul(expandTo(kept(gy!, attrs, r), x.shape))];
  },
  softmax: ({ outputs: [y], grads: [gy], attrs }) => {
    const axis = normAxis(attrs.axis, y.shape.length, "softmax");
    const dot = gy!.mul(y).sum(axis, true);
    return [y.mul(gy!.sub(expandTo(dot, y.shape)))];
  },
  // y_i = Σ_{j≤i} x_j (or j<i, or from the end) ⇒ dx_j = Σ over the i that
  // include j: the same scan run the other way.
  cumsum: ({ grads: [gy], attrs }) => [
    gy!.cumsum(attrs.axis, { exclusive: attrs.exclusive, reverse: !attrs.reverse }),
  ],
  // Each kept value's gradient goes back to the position it was taken from.
  topk: ({ inputs: [x], outputs: [, idx], grads: [gv] }) => {
    if (!gv) return [undefined];
    const n = x.shape[x.shape.length - 1];
    if (typeof n !== "number") {
      throw new TypeError(`topk's gradient needs a fixed last axis, got ${n}`);
    }
    const g = x.builder;
    const iota = g.constant(Array.from({ length: n }, (_, i) => i), [n], "u32");
    const hit = keepAxis(idx, idx.shape.length).equal(iota); // [..., k, n]
    const spread = expandTo(keepAxis(gv, gv.shape.length), hit.shape).where(hit, 0);
    return [spread.sum(-2, false)];
  },
};
