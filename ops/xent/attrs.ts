/**
 * Attributes and shape rules of the fused LM-head cross-entropy ops.
 *
 * @module
 */

import type { TensorType } from "../../core/graph.ts";
import { formatShape } from "../../core/shape.ts";

/**
 * Attributes of `lm_head_xent` and `lm_head_xent_grad`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type LmHeadXentAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: LmHeadXentAttrs = { block: 0 };
 * const h = g.input("h", ["T", 64]);
 * const w = g.param("lm_head.weight", [1000, 64]);
 * const [loss] = g.apply("lm_head_xent", [h, w, g.input("targets", ["T"], "i32")], attrs);
 * g.output("loss", loss);
 * ```
 */
export interface LmHeadXentAttrs {
  /**
   * Rows streamed per step: vocabulary rows in the forward and `dh` kernels,
   * tokens in `dW`'s. 0 lets the lowering choose; tests set small blocks to
   * cross many block edges at small sizes.
   */
  readonly block: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

function checkBlock(op: string, a: LmHeadXentAttrs): void {
  if (!Number.isInteger(a.block) || a.block < 0) {
    throw new RangeError(`${op}: block must be a non-negative integer, got ${a.block}`);
  }
}

/** Checks `h [...I, d]`, `W [V, d]` (f32) and `targets [...I]` (i32/u32). */
function checkOperands(op: string, [h, w, tg]: readonly TensorType[]): void {
  if (h.dtype !== "f32") throw new TypeError(`${op}: h must be f32, got ${h.dtype}`);
  if (w.dtype !== "f32") throw new TypeError(`${op}: W must be f32, got ${w.dtype}`);
  if (w.shape.length !== 2) {
    throw new RangeError(`${op}: W must be [V, d], got ${formatShape(w.shape)}`);
  }
  const [V, d] = w.shape;
  if (typeof V === "number" && V < 1) throw new RangeError(`${op}: W has no vocabulary rows`);
  if (typeof d === "number" && d < 1) throw new RangeError(`${op}: W has a hidden size of 0`);
  if (h.shape.length < 1 || h.shape[h.shape.length - 1] !== d) {
    throw new RangeError(
      `${op}: h ${formatShape(h.shape)} must end with W's hidden size ${d} (W ${
        formatShape(w.shape)
      })`,
    );
  }
  if (tg.dtype !== "i32" && tg.dtype !== "u32") {
    throw new TypeError(`${op}: targets must be i32 or u32, got ${tg.dtype}`);
  }
  const lead = h.shape.slice(0, -1);
  if (tg.shape.length !== lead.length || tg.shape.some((x, k) => x !== lead[k])) {
    throw new RangeError(
      `${op}: targets ${formatShape(tg.shape)} must have h's leading shape ${formatShape(lead)}`,
    );
  }
}

/**
 * Shape rule of `lm_head_xent`: per-token loss and log-sum-exp, f32.
 *
 * @example
 * ```ts ignore
 * inferXent([h, w, targets], { block: 0 }); // [loss, lse], each targets' shape
 * ```
 */
export function inferXent(inputs: readonly TensorType[], a: LmHeadXentAttrs): TensorType[] {
  checkBlock("lm_head_xent", a);
  checkOperands("lm_head_xent", inputs);
  const shape = inputs[2].shape;
  return [{ shape, dtype: "f32" }, { shape, dtype: "f32" }];
}

/**
 * Shape rule of `lm_head_xent_grad`: `dh` like h, `dW` like W.
 *
 * @example
 * ```ts ignore
 * inferXentGrad([h, w, targets, lse, dloss, dlse], { block: 0 }); // [dh, dW]
 * ```
 */
export function inferXentGrad(inputs: readonly TensorType[], a: LmHeadXentAttrs): TensorType[] {
  const op = "lm_head_xent_grad";
  checkBlock(op, a);
  checkOperands(op, inputs);
  const tg = inputs[2];
  for (const [k, name] of [[3, "lse"], [4, "dloss"], [5, "dlse"]] as const) {
    const x = inputs[k];
    if (x.dtype !== "f32" || formatShape(x.shape) !== formatShape(tg.shape)) {
      throw new TypeError(
        `${op}: ${name} must be f32${formatShape(tg.shape)} like the targets, got ${x.dtype}${
          formatShape(x.shape)
        }`,
      );
    }
  }
  return [{ shape: inputs[0].shape, dtype: "f32" }, { shape: inputs[1].shape, dtype: "f32" }];
}
