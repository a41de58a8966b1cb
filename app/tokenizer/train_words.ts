/**
 * The first half of training a byte-level BPE: cutting a corpus into words and
 * counting each distinct one, exactly as Hugging Face's `Tokenizer.train(files)`
 * feeds its trainer — each line (with its line ending) is one sequence, split
 * by the GPT-2 regex of the ByteLevel pre-tokenizer. Only distinct words are
 * kept, so the merge loop works on a few hundred thousand strings however large
 * the corpus is.
 *
 * @module
 */

import { JsonPath } from "./json.ts";
import { GPT2_PATTERN } from "./parts.ts";
import { compileHfRegex } from "./patterns.ts";

/**
 * Distinct pre-tokenized words of a corpus and how often each occurs. Words are
 * kept as the original text (their byte-level spelling is a bijection of it).
 *
 * Lines are split apart before the regex runs, as Hugging Face reads training
 * files line by line (keeping the `\n`): `"a  \n  b"` gives `"  \n"` and `" "`
 * then `" b"`, where the whole text would give `"  \n "`. A special token that
 * occurs in the text is not treated specially, again as Hugging Face does (the
 * trainer learns merges from its characters like any other word's).
 *
 * @example
 * ```ts
 * import { WordCounts } from "./train_words.ts";
 * const words = new WordCounts();
 * words.add("the cat and the hat\n");
 * words.get(" the"); // 1
 * words.get("the"); // 1
 * words.get("\n"); // 1
 * ```
 */
export class WordCounts {
  readonly #counts = new Map<string, number>();
  readonly #re = compileHfRegex(GPT2_PATTERN, new JsonPath("BPE trainer", "pre_tokenizer"));
  #chars = 0;

  /** Adds the words of `text` (one document or file; split into lines here). */
  add(text: string): void {
    let start = 0;
    while (start < text.length) {
      const nl = text.indexOf("\n", start);
      const end = nl < 0 ? text.length : nl + 1;
      this.#addLine(text.slice(start, end));
      start = end;
    }
    this.#chars += text.length;
  }

  /** Counts the regex's pieces of one line; text between matches (none for GPT-2's) is a piece too. */
  #addLine(line: string): void {
    const re = this.#re;
    re.lastIndex = 0;
    let last = 0;
    for (let m = re.exec(line); m !== null; m = re.exec(line)) {
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      if (m.index > last) this.#count(line.slice(last, m.index));
      this.#count(m[0]);
      last = m.index + m[0].length;
    }
    if (last < line.length) this.#count(line.slice(last));
  }

  #count(word: string): void {
    this.#counts.set(word, (this.#counts.get(word) ?? 0) + 1);
  }

  /** How often `word` occurred (0 if never). */
  get(word: string): number {
    return this.#counts.get(word) ?? 0;
  }

  /** Number of distinct words. */
  get size(): number {
    return this.#counts.size;
  }

  /** UTF-16 code units of text added so far. */
  get chars(): number {
    return this.#chars;
  }

  /** Each distinct word with its count, in first-seen order. */
  entries(): IterableIterator<[string, number]> {
    return this.#counts.entries();
  }
}
