/**
 * Attributes of the Mamba (S6) ops and where each operand sits among a scan's
 * inputs, which depends on the attributes (the optional gate, Δ bias, initial
 * state and fused dt_proj weight).
 *
 * @module
 */

import type { Dim } from "../../core/shape.ts";

/**
 * Attributes of `conv1d_causal`.
 *
 * @example
 * ```ts
 * import type { Conv1dAttrs } from "@kiln/kiln";
 * const attrs: Conv1dAttrs = { bias: true, state: false, silu: true };
 * ```
 */
export interface Conv1dAttrs {
  /** A bias `[I]` input follows the weight. */
  readonly bias: boolean;
  /** A conv state `[B, I, S]` input (the inputs before t = 0) comes last. */
  readonly state: boolean;
  /** Apply silu to the output. */
  readonly silu: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  readonly [k: string]: boolean;
}

/**
 * Attributes of `conv1d_step`.
 *
 * @example
 * ```ts
 * import type { Conv1dStepAttrs } from "@kiln/kiln";
 * const attrs: Conv1dStepAttrs = { bias: true, silu: true };
 * ```
 */
export interface Conv1dStepAttrs {
  /** A bias `[I]` input follows the weight. */
  readonly bias: boolean;
  /** Apply silu to the output. */
  readonly silu: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  readonly [k: string]: boolean;
}

/**
 * Attributes of `selective_scan` and `ssm_step`. `ssm_step` also takes `deltaRank`
 * (a number, 0 when absent): R > 0 fuses dt_proj, delta is then the low-rank
 * `[B, R]` and dt_proj's weight `[I, R]` comes last (`ssmStep`'s `deltaProj`).
 * `selective_scan` also takes `last` (true when present): a `last` u32 `[1]`
 * input comes last, and the rows of u after row `last` are padding — their Δ is
 * taken as 0, so they leave the state unchanged (the final state is the state
 * after row `last`), and their y comes from that state as usual. A prompt padded
 * up to a compiled chunk length runs so (`mambaMixer`'s `last`). Both it and
 * `selective_scan_grad` take `checkpoints` (the saved chunk states of a
 * training step, see {@linkcode checkpointsOf}).
 *
 * @example
 * ```ts
 * import type { ScanAttrs } from "@kiln/kiln";
 * const attrs: ScanAttrs = {
 *   gate: true,
 *   deltaBias: true,
 *   softplus: true,
 *   initialState: false,
 *   finalState: true,
 *   algorithm: "auto",
 *   chunk: 0,
 * };
 * ```
 */
export interface ScanAttrs {
  /** A gate z `[B, L, I]` input follows D: y ← y·silu(z). */
  readonly gate: boolean;
  /** A Δ bias `[I]` input follows (z and) D: Δ ← Δ + bias. */
  readonly deltaBias: boolean;
  /** Δ ← softplus(Δ (+ bias)), fused into the scan. */
  readonly softplus: boolean;
  /** `selective_scan` only: an initial state `[B, I, N]` f32 input comes last. */
  readonly initialState: boolean;
  /** `selective_scan` only: add output 1, the final state `[B, I, N]` f32. */
  readonly finalState: boolean;
  /**
   * `selective_scan` only: `"auto"` (the default: the compiler picks one pass or the
   * chunked scan for the device, and says why in the plan), `"chunked"` (three
   * passes; one when the chunk covers L) or `"sequential"` (the one-thread-per-channel
   * baseline).
   */
  readonly algorithm: string;
  /** Chunk length of the chunked scan; 0 picks one. A chunk > 0 implies `"chunked"`. */
  readonly chunk: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  readonly [k: string]: boolean | string | number;
}

/**
 * The attributes every scan-like op (`selective_scan`, `ssm_step`,
 * `selective_scan_grad`) declares; each adds its own.
 *
 * @example
 * ```ts ignore
 * const attrNames = [...SCAN_ATTR_NAMES, "last"];
 * ```
 */
export const SCAN_ATTR_NAMES: readonly string[] = [
  "gate",
  "deltaBias",
  "softplus",
  "initialState",
  "finalState",
  "algorithm",
  "chunk",
];

/**
 * The checkpoint spacing of `selective_scan` and `selective_scan_grad`: their
 * `checkpoints` attribute (absent: 0). A forward with `checkpoints` S > 0 adds
 * one output, the state entering every S-th step `[B, ⌈L/S⌉, N, I]` f32
 * (channel-minor, so kernels of any thread shape read a vec4 of channels at a
 * time); a backward with it takes that tensor as its last input and walks
 * back from those states instead of walking L forward again (the
 * `scanCheckpoints` pass pairs them).
 *
 * @example
 * ```ts ignore
 * checkpointsOf({ ...scanAttrs(), checkpoints: 32 }); // 32
 * ```
 */
export function checkpointsOf(attrs: ScanAttrs): number {
  const s = attrs.checkpoints;
  if (s === undefined) return 0;
  if (typeof s !== "number" || !Number.isInteger(s) || s < 0) {
    throw new RangeError(`selective_scan: checkpoints must be an integer >= 0, got ${s}`);
  }
  return s;
}

/**
 * The shape of the saved states at spacing `every` (see {@linkcode checkpointsOf}).
 *
 * @example
 * ```ts ignore
 * checkpointShape(2, 100, 64, 16, 32); // [2, 4, 16, 64]
 * ```
 */
export function checkpointShape(B: Dim, L: Dim, I: Dim, N: Dim, every: number): Dim[] {
  if (typeof L !== "number") {
    throw new RangeError(`selective_scan: checkpoints need a static sequence length, got ${L}`);
  }
  return [B, Math.ceil(L / every), N, I];
}

/**
 * Accepted values of the scan's `algorithm` attribute.
 *
 * @example
 * ```ts ignore
 * SCAN_ALGORITHMS.includes("chunked"); // true
 * ```
 */
export const SCAN_ALGORITHMS: readonly string[] = ["auto", "chunked", "sequential"];

/**
 * The scan-like attribute record with defaults filled in.
 *
 * @example
 * ```ts ignore
 * scanAttrs({ gate: true }).algorithm; // "auto"
 * ```
 */
export function scanAttrs(partial: Partial<ScanAttrs> = {}): ScanAttrs {
  return {
    gate: partial.gate ?? false,
    deltaBias: partial.deltaBias ?? false,
    softplus: partial.softplus ?? false,
    initialState: partial.initialState ?? false,
    finalState: partial.finalState ?? false,
    algorithm: partial.algorithm ?? "auto",
    chunk: partial.chunk ?? 0,
  };
}

/**
 * Input positions of a scan-like op, by role.
 *
 * @example
 * ```ts ignore
 * const slots: ScanSlots = { u: 0, delta: 1, a: 2, b: 3, c: 4, d: 5, z: 6 };
 * ```
 */
export interface ScanSlots {
  /** The input u. */
  u: number;
  /** Δ before bias and softplus (ssm_step with `deltaRank` R > 0: the low-rank `[B, R]`). */
  delta: number;
  /** A `[I, N]`. */
  a: number;
  /** B `[..., N]`. */
  b: number;
  /** C `[..., N]`. */
  c: number;
  /** D `[I]`. */
  d: number;
  /** The gate z, when `gate`. */
  z?: number;
  /** The Δ bias, when `deltaBias`. */
  bias?: number;
  /** selective_scan: the initial state, when `initialState`. */
  h0?: number;
  /** selective_scan: the `last` u32 [1] input (rows after it are padding), when `last`. */
  last?: number;
  /** ssm_step: the state input (the in-place pair of output 1). */
  state?: number;
  /** ssm_step with `deltaRank` R > 0: dt_proj's weight `[I, R]` (delta is then `[B, R]`). */
  dtW?: number;
}

/**
 * `ssm_step`'s Δ rank: R > 0 when dt_proj is fused in (delta is the low-rank `[B, R]`).
 *
 * @example
 * ```ts ignore
 * deltaRankOf({ ...scanAttrs(), deltaRank: 4 }); // 4
 * ```
 */
export function deltaRankOf(attrs: ScanAttrs): number {
  return typeof attrs.deltaRank === "number" ? attrs.deltaRank : 0;
}

/**
 * Where each operand of `selective_scan` (`step` false) or `ssm_step` sits, and
 * how many inputs the attributes call for.
 *
 * @example
 * ```ts ignore
 * scanSlots(scanAttrs({ gate: true }), false); // { slots: { u: 0, …, z: 6 }, count: 7 }
 * ```
 */
export function scanSlots(attrs: ScanAttrs, step: boolean): { slots: ScanSlots; count: number } {
  let j = step ? 1 : 0;
  const slots: ScanSlots = { u: j++, delta: j++, a: j++, b: j++, c: j++, d: j++ };
  if (step) slots.state = 0;
  if (attrs.gate) slots.z = j++;
  if (attrs.deltaBias) slots.bias = j++;
  if (step && deltaRankOf(attrs) > 0) slots.dtW = j++;
  if (!step && attrs.initialState) slots.h0 = j++;
  if (!step && attrs.last === true) slots.last = j++;
  return { slots, count: j };
}
