/**
 * Global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`): one norm
 * over every parameter's gradient, and every gradient scaled by
 * min(1, max / (norm + 1e-6)) — the direction of the whole update is kept.
 *
 * @module
 */

import type { Tensor } from "../builder.ts";

/**
 * The L2 norm of all `grads` together, f32 `[1]`.
 *
 * @example
 * ```ts
 * import { globalNorm, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const a = g.input("a", [3]), b = g.input("b", [2, 2]);
 * g.output("norm", globalNorm([a, b])); // √(Σa² + Σb²)
 * ```
 */
export function globalNorm(grads: readonly Tensor[]): Tensor {
  if (grads.length === 0) throw new RangeError("globalNorm: no gradients");
  const squares = grads.map((d) => {
    const n = (d.shape as number[]).reduce((a, b) => a * b, 1);
    return d.mul(d).reshape([n]).sum(0, true); // [1]
  });
  return squares.reduce((a, b) => a.add(b)).sqrt();
}

/**
 * `grads` scaled so their global norm is at most `maxNorm`, and the norm
 * before clipping.
 *
 * @example
 * ```ts
 * import { clipByGlobalNorm, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const d = g.input("d", [4]);
 * const { grads, norm } = clipByGlobalNorm([d], 1.0);
 * g.output("clipped", grads[0]);
 * g.output("norm", norm);
 * ```
 */
export function clipByGlobalNorm(
  grads: readonly Tensor[],
  maxNorm: number,
): { grads: Tensor[]; norm: Tensor } {
  if (typeof maxNorm !== "number" || !(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new RangeError(`clipByGlobalNorm: maxNorm must be a finite number > 0, got ${maxNorm}`);
  }
  const norm = globalNorm(grads);
  const coef = norm.builder.lift(maxNorm, "f32").div(norm.add(1e-6)).minimum(1);
  return { grads: grads.map((d) => d.mul(coef)), norm };
}
