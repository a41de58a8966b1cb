/**
 * Which representation an S4 layer runs in for a concrete sequence length —
 * the recurrence for decode, the FFT convolution for prefill, unless a mode is
 * forced — and the reason the plan shows.
 *
 * @module
 */

import { convFftLength } from "../fft/mod.ts";

/**
 * Representation requested for an S4 layer.
 *
 * @example
 * ```ts
 * import { s4Choice, type S4Mode } from "@kiln/kiln";
 * const mode: S4Mode = "auto";
 * s4Choice(mode, 1).representation; // "recurrent"
 * ```
 */
export type S4Mode = "auto" | "conv" | "recurrent" | "direct";

/**
 * The representation a plan uses and why.
 *
 * @example
 * ```ts
 * import { type S4Choice, s4Choice } from "@kiln/kiln";
 * const c: S4Choice = s4Choice("auto", 512);
 * console.log(c.representation, c.reason); // "fft" and why
 * ```
 */
export interface S4Choice {
  /** Representation used. */
  readonly representation: "fft" | "recurrent" | "direct";
  /** One-line reason, shown in plans. */
  readonly reason: string;
}

/**
 * Which representation an S4 layer runs for sequence length `T`, and why.
 *
 * @example
 * ```ts
 * import { s4Choice } from "@kiln/kiln";
 * s4Choice("auto", 1).representation; // "recurrent"
 * s4Choice("auto", 512).representation; // "fft"
 * ```
 */
export function s4Choice(mode: S4Mode, T: number): S4Choice {
  if (mode === "conv") {
    return {
      representation: "fft",
      reason: `mode "conv": FFT convolution, n = ${convFftLength(T, T)}`,
    };
  }
  if (mode === "direct") {
    return { representation: "direct", reason: `mode "direct": O(T²) causal sum` };
  }
  if (mode === "recurrent") {
    return { representation: "recurrent", reason: `mode "recurrent": T = ${T} sequential steps` };
  }
  if (T <= 1) {
    return {
      representation: "recurrent",
      reason:
        `auto: T = ${T} is decode, the recurrence costs O(N) per token and updates the state in place`,
    };
  }
  return {
    representation: "fft",
    reason: `auto: T = ${T} > 1 is prefill, FFT convolution (n = ${
      convFftLength(T, T)
    }) is O(T log T) and parallel over T, vs O(T²) direct and T sequential recurrence steps`,
  };
}
