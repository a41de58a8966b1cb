/**
 * Shape helpers of the gradient rules: undoing a broadcast (summing a
 * gradient back to an operand's shape) and doing one (fanning a reduced
 * gradient out over the reduced axis).
 *
 * @module
 */

import type { DType } from "../../core/dtype.ts";
import type { Shape } from "../../core/shape.ts";
import type { GraphBuilder } from "../builder.ts";
import type { Tensor } from "../tensor.ts";

/**
 * `t` summed down to `shape`, undoing numpy broadcasting: leading axes `t` has
 * beyond `shape` are summed away, axes where `shape` has 1 are summed keeping
 * the axis.
 *
 * @example
 * ```ts ignore
 * sumTo(gy, [1, 8]); // gy [T, 8] → [1, 8]
 * ```
 */
export function sumTo(t: Tensor, shape: Shape): Tensor {
  let r = t;
  while (r.shape.length > shape.length) r = r.sum(0, false);
  for (let k = 0; k < shape.length; k++) {
    if (shape[k] === 1 && r.shape[k] !== 1) r = r.sum(k, true);
  }
  return r;
}

/**
 * `t` broadcast to `shape` (a view: no copy unless a kernel needs one).
 *
 * @example
 * ```ts ignore
 * expandTo(rowSums, x.shape); // [T, 1] → [T, D]
 * ```
 */
export function expandTo(t: Tensor, shape: Shape): Tensor {
  if (t.shape.length === shape.length && t.shape.every((d, k) => d === shape[k])) return t;
  return t.builder.apply("expand", [t], { shape: [...shape] })[0];
}

/**
 * A tensor of `value` in `shape` (a broadcast scalar constant).
 *
 * @example
 * ```ts ignore
 * filled(g, 0, ["T", 8], "f32");
 * ```
 */
export function filled(g: GraphBuilder, value: number, shape: Shape, dtype: DType): Tensor {
  return expandTo(g.constant(value, [], dtype), shape);
}

/**
 * `t` with a size-1 axis inserted at `axis` (what a reduction without
 * `keepdims` removed).
 *
 * @example
 * ```ts ignore
 * keepAxis(rowSums, 1); // [T] → [T, 1]
 * ```
 */
export function keepAxis(t: Tensor, axis: number): Tensor {
  const shape = [...t.shape];
  shape.splice(axis, 0, 1);
  return t.reshape(shape);
}
