/**
 * Gradient rules of RoPE and attention.
 *
 * RoPE rotates each (x1, x2) pair by an angle fixed by the position: an
 * orthogonal map times `scale`, so its transpose — the gradient — is the
 * rotation by −angle times the same scale (`rope` with `inverse`). Positions
 * are integers and get none.
 *
 * Attention uses FlashAttention-2's backward (`ops/attention_grad.ts`): the
 * rule asks for the per-row log-sum-exp with `attention_lse`, which the
 * optimiser's pass (`compiler/passes/attention_lse.ts`) turns into a second
 * result of the forward (saved, not recomputed) and which runs as its own
 * streaming pass over the keys only where no matching forward exists;
 * delta = Σ dO·O per row is a fused elementwise reduction, and dQ / dK, dV are
 * two kernels that rebuild each probability from lse where they use it. No
 * [T, S] value appears in the graph.
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import type { GradTable } from "./types.ts";

/** `t` in f32 (the backward kernels' lse and delta are f32 whatever the storage). */
function inF32(t: Tensor): Tensor {
  return t.dtype === "f32" ? t : t.cast("f32");
}

/**
 * Rules of `rope` and `attention`.
 *
 * @example
 * ```ts ignore
 * import { ATTENTION_RULES } from "./rules_attention.ts";
 * "attention" in ATTENTION_RULES; // true
 * ```
 */
export const ATTENTION_RULES: GradTable = {
  rope: ({ g, inputs: [, pos], grads: [gy], attrs }) => [
    g.apply("rope", [gy!, pos], { ...attrs, inverse: !attrs.inverse })[0],
    undefined,
  ],
  attention: ({ g, inputs: [q, k, v, pos], outputs: [o], grads: [gy, gl], attrs, needs }) => {
    const { lse: _, ...a } = attrs;
    // A forward whose log-sum-exp L is used (attention sinks) gets its gradient
    // too: ∂L/∂sⱼ = pⱼ, so dS = P·(dP − delta) + gL·P = P·(dP − (delta − gL)).
    const dO = gy ?? o.mul(0);
    const lse = g.apply("attention_lse", [q, k, pos], a)[0];
    const rowDelta = inF32(dO).mul(inF32(o)).sum(-1, false);
    const delta = gl ? rowDelta.sub(gl) : rowDelta;
    const operands = [q, k, v, pos, dO, lse, delta];
    const dq = needs[0] ? g.apply("attention_dq", operands, a)[0] : undefined;
    const [dk, dv] = needs[1] || needs[2] ? g.apply("attention_dkv", operands, a) : [];
    return [dq, needs[1] ? dk : undefined, needs[2] ? dv : undefined, undefined];
  },
};
