/**
 * Gradient rule of the fused LM-head cross-entropy: one `lm_head_xent_grad`
 * node recomputing the logits chunk by chunk from the saved log-sum-exp, so
 * the backward stores no `[T, V]` buffer either.
 *
 * @module
 */

import { filled } from "./broadcast.ts";
import type { GradTable } from "./types.ts";

/**
 * Rules of `lm_head_xent`.
 *
 * @example
 * ```ts ignore
 * "lm_head_xent" in XENT_RULES; // true
 * ```
 */
export const XENT_RULES: GradTable = {
  // Both results are differentiable: the loss, and the log-sum-exp (a z-loss
  // reads it). dlse adds p·dlse to every row's coefficient, ignored rows too.
  lm_head_xent: ({ g, inputs: [h, w, targets], outputs: [loss, lse], grads, attrs, needs }) => {
    if (!needs[0] && !needs[1]) return [];
    const zero = () => filled(g, 0, loss.shape, "f32");
    const [dh, dw] = g.apply(
      "lm_head_xent_grad",
      [h, w, targets, lse, grads[0] ?? zero(), grads[1] ?? zero()],
      attrs,
    );
    return [needs[0] ? dh : undefined, needs[1] ? dw : undefined, undefined];
  },
};
