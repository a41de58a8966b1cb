/**
 * The id a sampler returns when a row of logits has no meaningful draw, kept
 * on the lowest floor so the runtime's decode loop can tell it from a token
 * without importing the sample op.
 *
 * @module
 */

/**
 * The id `sample` returns for a row of logits holding a NaN or `+Inf`, or no
 * finite logit (`-Inf` alone is a mask): `0xFFFFFFFF`, outside every vocabulary.
 *
 * @example
 * ```ts
 * import { SAMPLE_NON_FINITE } from "./sample_id.ts";
 * SAMPLE_NON_FINITE === 0xffffffff; // true
 * ```
 */
export const SAMPLE_NON_FINITE = 0xffffffff;
