/**
 * Prompt lengths the prefill is compiled for. Kernels bake their sizes in, so
 * every new prompt length used to compile a new set of pipelines (seconds on a
 * CPU adapter). Instead the prefill runs a prompt as consecutive chunks whose
 * lengths come from a small fixed set (powers of four up to a largest chunk),
 * each at its position: the KV caches, convolution and scan states carry from
 * one chunk to the next, exactly as in one run (routing is per token and
 * dropless in a model). A prompt's last chunk may be padded up to a compiled
 * length (`runtime/prompt_plan.ts`), so a model compiles one bucket's set for
 * the first prompt its prefill runs and nothing for later ones, and at most
 * one set per bucket.
 *
 * @module
 */

/** Largest prompt chunk by default: long enough that chunking costs no speed. */
export const DEFAULT_PREFILL_CHUNK = 256;

/**
 * The chunk lengths: 1, 4, 16, … up to `largest` (itself included when it is
 * not a power of four), none over `maxSeq`.
 *
 * @example
 * ```ts
 * import { prefillBuckets } from "./prefill_chunks.ts";
 * prefillBuckets(4096); // [1, 4, 16, 64, 256]
 * prefillBuckets(4096, 100); // [1, 4, 16, 64, 100]
 * ```
 */
export function prefillBuckets(maxSeq: number, largest = DEFAULT_PREFILL_CHUNK): number[] {
  if (!Number.isInteger(largest) || largest < 1) {
    throw new RangeError(
      `loadModel: prefillChunk must be an integer >= 1 or false, got ${largest}`,
    );
  }
  const top = Math.min(largest, maxSeq);
  const out: number[] = [];
  for (let b = 1; b < top; b *= 4) out.push(b);
  out.push(top);
  return out;
}

// The split is the runtime's, so prebuilt model modules chunk prompts the same way.
export { splitPrompt } from "../../runtime/decode.ts";
