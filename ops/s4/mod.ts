/**
 * S4 / S4D ops: a diagonal linear time-invariant SSM run in one of three
 * representations, chosen when the plan is built for a concrete T.
 *
 * Parameters per channel h (H channels) and stored state n (N2 of them):
 * continuous `A [H, N2, 2]`, `B [H, N2, 2]`, `C [H, N2, 2]` (complex as re, im)
 * and `log_dt [H]`. Discretisation (attribute, `discretise.ts`): ZOH
 * Ā = exp(ΔA), B̄ = (exp(ΔA) − 1)/A · B, or bilinear Ā = (1 + ΔA/2)/(1 − ΔA/2),
 * B̄ = ΔB/(1 − ΔA/2). With `conj` the N2 stored states stand for N = 2·N2 states
 * in conjugate pairs and the output is 2·Re(C·h); without it (real S4D-Real
 * states) the output is Re(C·h).
 *
 * - `s4_kernel(A, B, C, log_dt)` → K̄ [H, L]: the Vandermonde product
 *   K̄ₗ = c·Re Σₙ Cₙ B̄ₙ Āₙˡ on the GPU.
 * - `s4(x [B, T, H], A, B, C, log_dt)` → y [B, T, H] from a zero state.
 * - `s4_state(x, A, B, C, log_dt, state [B, H, N2, 2])` → [y, new state]: starts
 *   from `state` and returns the state after the last step, updated in place.
 * - Backward (issue 16): `s4_kernel_grad` (`grad.ts`, dK̄ → dA, dB, dC, d log Δ
 *   by Horner over the Vandermonde powers) and `s4_state_grad` (`state_grad.ts`,
 *   the initial state's response and the final state, and the state's own
 *   gradient); the rules are in `compiler/grad/rules_s4.ts`.
 *
 * Representations (`mode`, `choice.ts`): `recurrent` (hₜ = Ā hₜ₋₁ + B̄ xₜ,
 * yₜ = c·Re(C hₜ), one thread per (b, h)); `conv` (K̄ by Vandermonde, then FFT
 * convolution padded to ≥ 2T); `direct` (K̄, then the O(T²) causal sum); `auto`
 * picks the recurrence for decode (T = 1) and the FFT convolution for prefill
 * (T > 1). The chosen representation and the reason are in the first kernel's
 * label (and its `choice`), so `exe.inspect()` shows them. With a state, the
 * conv and direct forms add the initial state's response c·Re Σₙ Cₙ Āₙᵗ⁺¹ hₙ
 * and compute the final state Āᵀh + Σₛ Āᵀ⁻¹⁻ˢ B̄ xₛ, so prefill by convolution
 * hands over to decode.
 *
 * @example
 * ```ts
 * import { discretiseDiagonal } from "./mod.ts";
 * discretiseDiagonal([-1, 0], [1, 0], [Math.log(0.5)], "bilinear").aRe[0]; // 0.6
 * ```
 *
 * @module
 */

export { type S4Choice, s4Choice, type S4Mode } from "./choice.ts";
export {
  type DiscreteS4,
  discretiseDiagonal,
  type S4Discretisation,
  s4KernelF64,
} from "./discretise.ts";
export { s4, type S4Attrs, s4Kernel, type S4KernelAttrs, s4State } from "./ops.ts";
