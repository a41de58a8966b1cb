/**
 * Training a GPT-2-style byte-level BPE tokenizer on text, as Hugging Face's
 * `ByteLevelBPETokenizer().train(files, vocab_size, min_frequency,
 * special_tokens)` does — the same words (`train_words.ts`), the same merges and
 * ties (`train_merges.ts`), the same `tokenizer.json` (`train_json.ts`) — so the
 * file loads in Kiln's {@linkcode Tokenizer} and in `tokenizers` alike and both
 * encode with it identically.
 *
 * @module
 */

import { MAX_TOKEN_ID } from "./json.ts";
import { Tokenizer } from "./tokenizer.ts";
import { byteLevelBpeJson } from "./train_json.ts";
import { learnMerges } from "./train_merges.ts";
import { WordCounts } from "./train_words.ts";

export { WordCounts } from "./train_words.ts";

/**
 * Settings of {@linkcode trainByteLevelBpe}.
 *
 * @example
 * ```ts
 * import type { BpeTrainOptions } from "./train.ts";
 * const options: BpeTrainOptions = { vocabSize: 4096, specialTokens: ["<|endoftext|>"] };
 * ```
 */
export interface BpeTrainOptions {
  /**
   * Tokens in the finished vocabulary: special tokens + the 256 byte tokens +
   * merged tokens (fewer when the corpus runs out of pairs first). At least
   * 256 + the number of special tokens.
   */
  vocabSize: number;
  /** A pair occurring fewer times than this is never merged (default 2, as Hugging Face's ByteLevelBPETokenizer). */
  minFrequency?: number;
  /** Tokens with the first ids, written as special added tokens, e.g. `<|endoftext|>` (default none). */
  specialTokens?: readonly string[];
  /**
   * `"bytes"` (default): all 256 byte tokens, so any text encodes. `"seen"`: only
   * the bytes in the corpus, as a bare `BpeTrainer` without `initial_alphabet` does.
   */
  alphabet?: "bytes" | "seen";
}

/**
 * A trained byte-level BPE: its vocabulary, merges and special tokens, and the
 * `tokenizer.json` text that holds them.
 *
 * @example
 * ```ts
 * import { trainByteLevelBpe } from "./train.ts";
 * const bpe = trainByteLevelBpe(["low lower lowest\n"], { vocabSize: 260, minFrequency: 1 });
 * bpe.tokenizer().decode(bpe.tokenizer().encode("lowly")); // "lowly"
 * ```
 */
export interface TrainedBpe {
  /** Token strings by id, spelled in the byte-level alphabet (`Ġ` is a space). */
  readonly vocab: readonly string[];
  /** Merges in rank order. */
  readonly merges: readonly (readonly [string, string])[];
  /** The special tokens, with the first ids. */
  readonly specialTokens: readonly string[];
  /** Distinct words the merges were learned from. */
  readonly words: number;
  /** The `tokenizer.json` text (Hugging Face's layout, no final newline). */
  json(): string;
  /** Kiln's tokenizer for it. */
  tokenizer(): Tokenizer;
}

/**
 * Trains a byte-level BPE on `corpus`: texts (each split into lines, as Hugging
 * Face reads training files) or words already counted with {@linkcode WordCounts}.
 * Bad options are a RangeError or TypeError naming the option.
 *
 * Merges: the most frequent pair first; ties go to the smallest (left id, right
 * id) pair, where ids are special tokens, then bytes by code point of their
 * byte-level character, then merged tokens in the order learned — Hugging
 * Face's rule, so both trainers give the same file.
 *
 * @example
 * ```ts
 * import { trainByteLevelBpe } from "./train.ts";
 * const bpe = trainByteLevelBpe(["the cat the hat the end\n"], {
 *   vocabSize: 300, specialTokens: ["<|endoftext|>"],
 * });
 * bpe.vocab[0]; // "<|endoftext|>"
 * bpe.merges[0]; // ["h", "e"]
 * ```
 */
export function trainByteLevelBpe(
  corpus: Iterable<string> | WordCounts,
  options: BpeTrainOptions,
): TrainedBpe {
  const specialTokens = checkSpecials(options.specialTokens ?? []);
  const alphabet = options.alphabet ?? "bytes";
  if (alphabet !== "bytes" && alphabet !== "seen") {
    throw new TypeError(`alphabet must be "bytes" or "seen", got ${JSON.stringify(alphabet)}`);
  }
  const floor = (alphabet === "bytes" ? 256 : 0) + specialTokens.length;
  const { vocabSize } = options;
  if (!Number.isInteger(vocabSize) || vocabSize < floor || vocabSize > MAX_TOKEN_ID + 1) {
    throw new RangeError(
      `vocabSize must be an integer in [${floor}, ${MAX_TOKEN_ID + 1}]` +
        (alphabet === "bytes"
          ? ` (256 byte tokens + ${specialTokens.length} special)`
          : ` (${specialTokens.length} special tokens)`) +
        `, got ${vocabSize}`,
    );
  }
  const minFrequency = options.minFrequency ?? 2;
  if (!Number.isInteger(minFrequency) || minFrequency < 0) {
    throw new RangeError(`minFrequency must be an integer >= 0, got ${minFrequency}`);
  }
  let words: WordCounts;
  if (corpus instanceof WordCounts) words = corpus;
  else {
    words = new WordCounts();
    for (const text of corpus) {
      if (typeof text !== "string") {
        throw new TypeError(`corpus must hold strings, got ${typeof text}`);
      }
      words.add(text);
    }
  }
  const { vocab, merges } = learnMerges(words.entries(), {
    vocabSize,
    minFrequency,
    specialTokens,
    alphabet,
  });
  let json: string | undefined;
  let tokenizer: Tokenizer | undefined;
  return {
    vocab,
    merges,
    specialTokens,
    words: words.size,
    json: () => json ??= byteLevelBpeJson(vocab, merges, specialTokens),
    tokenizer: () =>
      tokenizer ??= Tokenizer.fromJSON(json ??= byteLevelBpeJson(vocab, merges, specialTokens), {
        source: "trained tokenizer.json",
      }),
  };
}

/** The special tokens, each a non-empty string, duplicates kept once (as Hugging Face does). */
function checkSpecials(list: readonly string[]): string[] {
  if (!Array.isArray(list)) throw new TypeError(`specialTokens must be an array of strings`);
  const out: string[] = [];
  list.forEach((t, i) => {
    if (typeof t !== "string" || t.length === 0) {
      throw new TypeError(
        `specialTokens[${i}] must be a non-empty string, got ${JSON.stringify(t)}`,
      );
    }
    if (!out.includes(t)) out.push(t);
  });
  return out;
}
