/**
 * What a generation is asked for (`GenerateOptions`, the sampling settings
 * compiled into a graph pair) and what it reports (`GenerateStats`).
 *
 * @module
 */

/**
 * Options of `Model.generate` and `Model.generateIds`.
 *
 * @example
 * ```ts ignore
 * import { type GenerateOptions, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./mamba-130m-hf");
 * const options: GenerateOptions = { maxTokens: 64, temperature: 0.7, topP: 0.9, seed: 1, stop: ["\n\n"] };
 * for await (const text of model.generate("Once upon a time", options)) console.log(text);
 * ```
 */
export interface GenerateOptions {
  /** Tokens to generate at most (default 64). */
  maxTokens?: number;
  /** 0 (default) is greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (0: off). */
  topK?: number;
  /** Nucleus sampling mass (1: off). */
  topP?: number;
  /** RNG seed (default 0). */
  seed?: number;
  /** Stop when the text contains one of these (the stop string is not emitted). */
  stop?: readonly string[];
  /** Read generated ids back every this many tokens (default 8; 1 reads every token). */
  readEvery?: number;
  /** Prepend BOS as the tokenizer's template says (default true). */
  addSpecialTokens?: boolean;
  /**
   * Keep what the previous generation left in the caches and run only the
   * part of this prompt that differs (default false): a chat's next turn,
   * which repeats the conversation so far. Attention models skip the common
   * prefix of this prompt and the tokens run before; models with recurrent
   * states (Mamba, S4, hybrids) skip the previous prompt when this one
   * extends it. The result is the same computation as a fresh run, rounded
   * differently in the last bits (as between prompt chunk splits).
   * `lastStats.reusedTokens` counts the tokens skipped.
   */
  reusePrefix?: boolean;
}

/**
 * Counters of the last `generate` call.
 *
 * @example
 * ```ts ignore
 * import { type GenerateStats, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./mamba-130m-hf");
 * for await (const text of model.generate("Hello", { maxTokens: 32 })) console.log(text);
 * const s: GenerateStats = model.lastStats!;
 * console.log(((s.generatedTokens - 1) / s.decodeMs) * 1000, "tokens/s");
 * ```
 */
export interface GenerateStats {
  /** Prompt tokens. */
  promptTokens: number;
  /** Prompt tokens not run again: already in the caches (`reusePrefix`). */
  reusedTokens: number;
  /** Generated tokens (including a final EOS). */
  generatedTokens: number;
  /** Host round trips (readbacks). */
  readbacks: number;
  /** Milliseconds compiling pipelines for this prompt length before the clock started (0 when cached). */
  compileMs: number;
  /** Milliseconds for the prefill (until the first token was read). */
  prefillMs: number;
  /** Milliseconds for the decode loop: the generatedTokens − 1 steps after the first token. */
  decodeMs: number;
  /**
   * What ran the prompt: the prefill's chunks, or the decode step token by token
   * (a short prompt whose prefill pipelines were not compiled yet; see
   * `coldPromptTokens`).
   */
  promptRun?: "prefill" | "decode";
}

/**
 * Sampling settings compiled into a graph pair (greedy: temperature 0, no top-k
 * or top-p).
 *
 * @example
 * ```ts
 * import type { Sampling } from "./generate_options.ts";
 * const nucleus: Sampling = { temperature: 0.7, topK: 0, topP: 0.9 };
 * ```
 */
export interface Sampling {
  /** 0 is greedy. */
  temperature: number;
  /** Keep the k most likely tokens (0: off). */
  topK: number;
  /** Nucleus sampling mass (1: off). */
  topP: number;
}
/**
 * Greedy sampling: temperature 0, no top-k or top-p.
 *
 * @example
 * ```ts
 * import { GREEDY } from "./generate_options.ts";
 * GREEDY.temperature; // 0
 * ```
 */
export const GREEDY: Sampling = { temperature: 0, topK: 0, topP: 1 };

/**
 * Length of the longest end of `text` that begins `stop`: held back in case
 * the stop completes.
 *
 * @example
 * ```ts
 * import { stopOverlap } from "./generate_options.ts";
 * stopOverlap("Hello wor", "world"); // 3
 * ```
 */
export function stopOverlap(text: string, stop: string): number {
  for (let n = Math.min(stop.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(stop.slice(0, n))) return n;
  }
  return 0;
}
