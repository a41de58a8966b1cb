/**
 * Cross-entropy fused with the LM head: `loss_t = logsumexp_v(h_t·W_v) −
 * h_t·W_target` without a `[T, V]` logits (or probabilities) buffer, and its
 * gradient recomputed from the saved log-sum-exp (as FlashAttention's
 * backward recomputes scores). Targets outside `[0, V)` — PyTorch's
 * `ignore_index = -100` among them — give a loss of 0 and no gradient.
 *
 * @module
 */

import type { OpDef } from "../types.ts";
import { inferXent, inferXentGrad, type LmHeadXentAttrs } from "./attrs.ts";
import { emitXent, emitXentGrad } from "./lower.ts";
import { referenceXent, referenceXentGrad } from "./reference.ts";

export type { LmHeadXentAttrs } from "./attrs.ts";

/**
 * `lm_head_xent(h [...I, d], W [V, d], targets [...I])` → `loss [...I]`,
 * `lse [...I]` (f32): the per-token loss and the log-sum-exp of the token's
 * logits (what the backward recomputes probabilities from; a z-loss may use it).
 *
 * @example
 * ```ts ignore
 * const [loss, lse] = g.apply("lm_head_xent", [h, w, targets], { block: 0 });
 * ```
 */
export const lmHeadXent: OpDef<LmHeadXentAttrs> = {
  arity: 3,
  attrNames: ["block"],
  infer: inferXent,
  reference: (inputs) => referenceXent(inputs),
  lower: { kind: "kernel", prologue: false, epilogue: false, emit: emitXent },
};

/**
 * `lm_head_xent_grad(h, W, targets, lse, dloss [...I], dlse [...I])` →
 * `dh [...I, d]`, `dW [V, d]`: the gradients of `Σ dloss·loss + dlse·lse`.
 *
 * @example
 * ```ts ignore
 * const [dh, dw] = g.apply("lm_head_xent_grad", [h, w, tg, lse, dloss, dlse], { block: 0 });
 * ```
 */
export const lmHeadXentGrad: OpDef<LmHeadXentAttrs> = {
  arity: 6,
  attrNames: ["block"],
  infer: inferXentGrad,
  reference: (inputs) => referenceXentGrad(inputs),
  lower: { kind: "kernel", prologue: false, epilogue: false, emit: emitXentGrad },
};
