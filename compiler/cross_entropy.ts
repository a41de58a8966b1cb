/**
 * Language-model cross-entropy on the DSL, fused with the LM head
 * (`lm_head_xent`): the mean over counted tokens of
 * `logsumexp_v(h·W_v) − h·W_target`, with no `[T, V]` logits buffer in the
 * forward or (through its gradient rule) the backward.
 *
 * @module
 */

import type { Tensor } from "./tensor.ts";

/**
 * Options of {@linkcode crossEntropy}.
 *
 * @example
 * ```ts
 * import type { CrossEntropyOptions } from "@kiln/kiln";
 * const o: CrossEntropyOptions = { block: 64 };
 * ```
 */
export interface CrossEntropyOptions {
  /** Rows streamed per kernel step (the op's `block`; 0 or absent: chosen by the lowering). */
  readonly block?: number;
}

/**
 * Per-token results of {@linkcode lmHeadCrossEntropy}.
 *
 * @example
 * ```ts ignore
 * const { loss, lse } = lmHeadCrossEntropy(h, w, targets);
 * ```
 */
export interface TokenCrossEntropy {
  /** Per-token loss `[...I]`, 0 where the target is not counted. */
  readonly loss: Tensor;
  /** Per-token log-sum-exp of the logits `[...I]` (for a z-loss). */
  readonly lse: Tensor;
}

/**
 * Per-token cross-entropy of the logits `h·Wᵀ` against `targets`, fused with
 * the LM head `W [V, d]` (Hugging Face's `lm_head.weight` layout). Targets
 * outside `[0, V)` (PyTorch's `ignore_index = -100` among them) give 0.
 *
 * @example
 * ```ts
 * import { GraphBuilder, lmHeadCrossEntropy } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const h = g.input("h", ["T", 64]);
 * const w = g.param("lm_head.weight", [1000, 64]);
 * const { loss, lse } = lmHeadCrossEntropy(h, w, g.input("targets", ["T"], "i32"));
 * g.output("loss", loss);
 * g.output("z", lse.mul(lse));
 * ```
 */
export function lmHeadCrossEntropy(
  h: Tensor,
  w: Tensor,
  targets: Tensor,
  options: CrossEntropyOptions = {},
): TokenCrossEntropy {
  const [loss, lse] = h.builder.apply("lm_head_xent", [h, w, targets], {
    block: options.block ?? 0,
  });
  return { loss, lse };
}

/**
 * Mean cross-entropy over the counted tokens (targets in `[0, V)`), fused
 * with the LM head `W [V, d]`: a scalar loss to differentiate. When no token
 * is counted the result is 0 rather than PyTorch's NaN (0/0), so a fully
 * padded batch cannot poison an optimizer's state.
 *
 * @example
 * ```ts
 * import { crossEntropy, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const h = g.input("h", ["T", 64]);
 * const w = g.param("lm_head.weight", [1000, 64]);
 * const loss = crossEntropy(h, w, g.input("targets", ["T"], "i32"));
 * const [dw] = g.grad(loss, [w]);
 * g.output("loss", loss);
 * g.output("dw", dw);
 * ```
 */
export function crossEntropy(
  h: Tensor,
  w: Tensor,
  targets: Tensor,
  options: CrossEntropyOptions = {},
): Tensor {
  const { loss } = lmHeadCrossEntropy(h, w, targets, options);
  const V = w.shape[0];
  if (typeof V !== "number") {
    throw new TypeError(`crossEntropy: the LM head's vocabulary size must be fixed, got ${V}`);
  }
  let ok = targets.less(V);
  if (targets.dtype === "i32") ok = ok.mul(targets.greaterEqual(0));
  const count = ok.cast("f32").reshape([-1]).sum(0);
  return loss.reshape([-1]).sum(0).div(count.maximum(1));
}
