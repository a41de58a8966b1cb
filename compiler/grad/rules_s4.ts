/**
 * Gradient rules of the S4 family and the long convolutions it runs on: `fft`,
 * `fft_conv`, `direct_conv`, `s4_kernel`, `s4` and `s4_state`.
 *
 * - A causal convolution's input gradient is the convolution run backwards in
 *   time (`conv_grad_input`), its kernel's the correlation of the output
 *   gradient with the input summed over the batch (`conv_grad_kernel`); both by
 *   FFT for `fft_conv`, by the direct sums for `direct_conv`.
 * - The DFT is linear, so its gradient is its adjoint: the unnormalised inverse
 *   (n·ifft) of a forward transform, fft/n of an inverse one, cropped or
 *   zero-padded back to the input's length.
 * - `s4_kernel` goes through `s4_kernel_grad` (the Vandermonde structure, see
 *   `ops/s4/grad.ts`); `s4` from a zero state is exactly the causal convolution
 *   of x with K̄ of length T, so its gradient regenerates K̄ and chains the two.
 * - `s4_state` adds the initial state's response and the final state
 *   (`s4_state_grad`, `ops/s4/state_grad.ts`), which also give the state's
 *   gradient.
 *
 * @module
 */

import type { ConvGradMethod } from "../../ops/fft/conv_grad.ts";
import type { S4Attrs, S4Discretisation } from "../../ops/s4/mod.ts";
import type { Tensor } from "../tensor.ts";
import { filled } from "./broadcast.ts";
import type { GradTable } from "./types.ts";

/** dx and dk of the causal convolution y = x ⋆ k (each only where wanted). */
function convGrads(
  x: Tensor,
  k: Tensor,
  dy: Tensor,
  method: ConvGradMethod,
  needs: readonly boolean[],
): [Tensor | undefined, Tensor | undefined] {
  const g = x.builder;
  return [
    needs[0] ? g.apply("conv_grad_input", [dy, k], { method })[0] : undefined,
    needs[1] ? g.apply("conv_grad_kernel", [dy, x], { length: k.shape[1], method })[0] : undefined,
  ];
}

/** Gradients of A, B, C, log_dt from dK̄ (all four; the op computes them together). */
function kernelGrads(
  dK: Tensor,
  [A, B, C, dt]: readonly Tensor[],
  discretisation: S4Discretisation,
  conj: boolean,
): Tensor[] {
  return dK.builder.apply("s4_kernel_grad", [dK, A, B, C, dt], { discretisation, conj });
}

/** Rules of the S4 / FFT ops. */
export const S4_RULES: GradTable = {
  fft_conv: ({ inputs: [x, k], grads: [dy], needs }) => convGrads(x, k, dy!, "fft", needs),
  direct_conv: ({ inputs: [x, k], grads: [dy], needs }) => convGrads(x, k, dy!, "direct", needs),
  fft: ({ g, inputs: [x], grads: [dy], attrs }) => {
    const r = x.shape.length;
    const L = x.shape[r - 2];
    if (typeof L !== "number") {
      throw new TypeError(`fft's gradient needs a fixed input length, got ${L}`);
    }
    const n = attrs.n;
    // Adjoint of the unnormalised DFT F is conj(F) = n·ifft; of ifft = conj(F)/n it is F/n.
    const back = g.apply("fft", [dy!], { n, inverse: !attrs.inverse })[0]
      .mul(attrs.inverse ? 1 / n : n);
    if (L === n) return [back];
    if (L < n) return [back.slice(r - 2, 0, L)];
    // The forward cropped to n: the dropped tail gets no gradient.
    const tail = [...x.shape];
    tail[r - 2] = L - n;
    return [g.concat([back, filled(g, 0, tail, "f32")], r - 2)];
  },
  s4_kernel: ({ inputs, grads: [dK], attrs }) =>
    kernelGrads(dK!, inputs, attrs.discretisation, attrs.conj),
  s4: ({ inputs: [x, ...ps], grads: [dy], attrs, needs }) =>
    zeroStateGrads(x, ps, dy!, attrs, needs),
  // The zero-state convolution's gradient plus the initial state's response
  // and the final state's (`s4_state_grad`), which also gives the state's.
  s4_state: ({ g, inputs: [x, A, B, C, dt, st], grads: [dy, dst], attrs, needs }) => {
    const ps = [A, B, C, dt];
    const { discretisation, conj } = attrs;
    // Without a gradient into the final state (a training step that only
    // assigns it), x's gradient is the convolution's alone.
    const final = dst !== undefined;
    const state: (Tensor | undefined)[] = g.apply("s4_state_grad", [
      dy ?? filled(g, 0, x.shape, "f32"),
      dst ?? filled(g, 0, st.shape, "f32"),
      x,
      ...ps,
      st,
    ], { discretisation, conj, final });
    if (!final) state[0] = undefined;
    if (!dy) return state;
    const conv = zeroStateGrads(x, ps, dy, attrs, needs.slice(0, 5));
    return state.map((d, i) => conv[i] && d ? conv[i]!.add(d) : conv[i] ?? d);
  },
};

/** Gradients of `s4` from a zero state: K̄ regenerated, then the convolution's and K̄'s rules. */
function zeroStateGrads(
  x: Tensor,
  [A, B, C, dt]: readonly Tensor[],
  dy: Tensor,
  attrs: S4Attrs,
  needs: readonly boolean[],
): (Tensor | undefined)[] {
  const K = x.builder.apply("s4_kernel", [A, B, C, dt], {
    length: x.shape[1],
    discretisation: attrs.discretisation,
    conj: attrs.conj,
  })[0];
  // The direct sums where the forward chose them; FFT for every other mode
  // (training runs whole sequences, where the recurrence's serial T steps lose).
  const method: ConvGradMethod = attrs.mode === "direct" ? "direct" : "fft";
  const [dx, dK] = convGrads(x, K, dy, method, [needs[0], needs.slice(1).some((b) => b)]);
  return [dx, ...(dK ? kernelGrads(dK, [A, B, C, dt], attrs.discretisation, attrs.conj) : [])];
}
