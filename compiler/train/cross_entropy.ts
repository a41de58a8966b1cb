/**
 * Next-token cross-entropy from ops that all have gradient rules:
 * logsumexp(logits) − the target's logit, picked with a one-hot mask of the
 * targets. It holds `[N, vocab]` values; a fused LM-head cross-entropy can
 * replace it where that matters.
 *
 * @module
 */

import type { Tensor } from "../builder.ts";

/**
 * Mean cross-entropy (nats) of `logits` `[N, V]` against u32 `targets` `[N]`, a
 * scalar `[]`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, softmaxCrossEntropy } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const logits = g.input("logits", [6, 10]);
 * g.output("loss", softmaxCrossEntropy(logits, g.input("targets", [6], "u32")));
 * ```
 */
export function softmaxCrossEntropy(logits: Tensor, targets: Tensor): Tensor {
  if (logits.shape.length !== 2 || typeof logits.shape[1] !== "number") {
    throw new RangeError(
      `softmaxCrossEntropy: logits must be [N, V], got [${logits.shape.join(", ")}]`,
    );
  }
  if (targets.dtype !== "u32" || targets.shape.length !== 1) {
    throw new TypeError(
      `softmaxCrossEntropy: targets must be u32 [N], got ${targets.dtype}[${
        targets.shape.join(", ")
      }]`,
    );
  }
  const V = logits.shape[1];
  const g = logits.builder;
  const iota = g.constant(Uint32Array.from({ length: V }, (_, i) => i), [1, V], "u32");
  const hit = iota.equal(targets.reshape([targets.shape[0], 1])); // [N, V] 0/1
  const picked = logits.where(hit, 0).sum(-1);
  return logits.logsumexp(-1).sub(picked).mean(0);
}
