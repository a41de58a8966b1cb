/**
 * The second half of training a byte-level BPE: learning merges from counted
 * words. The algorithm, and so every tie, is Hugging Face's `BpeTrainer`:
 *
 * - ids: special tokens first (in the order given), then the alphabet — the 256
 *   byte characters, or only those seen — sorted by code point, then one per
 *   new merged token in the order it was learned;
 * - each step merges the most frequent adjacent pair (occurrences weighted by
 *   word count, overlapping ones included); among equally frequent pairs the one
 *   with the smallest (left id, right id) wins — ids, not strings, so a byte
 *   beats any merged token and older merged tokens beat newer ones;
 * - training stops at `vocabSize` tokens, when no pair is left, or when the best
 *   pair occurs fewer than `minFrequency` times;
 * - a merge whose result spells an existing token reuses that token's id (the
 *   vocabulary does not grow, the merge is still recorded).
 *
 * Counts are kept per pair and updated incrementally: a merge rewrites only
 * the words that hold the pair (each word's positions ride with its heap entry,
 * as in Hugging Face's trainer), and a heap entry whose count went stale is
 * re-queued with its current count when it reaches the top — counts of
 * existing pairs only fall, so the first entry found current is the best pair.
 *
 * @module
 */

import { BYTE_TO_CHAR } from "./parts.ts";

/** What {@linkcode learnMerges} needs besides the words. */
export interface MergeOptions {
  /** Stop when the vocabulary (specials + alphabet + merged tokens) has this many tokens. */
  vocabSize: number;
  /** Stop when the best pair occurs fewer times than this. */
  minFrequency: number;
  /** Tokens given the first ids, in this order (duplicates kept once). */
  specialTokens: readonly string[];
  /** `"bytes"`: all 256 byte characters (any text encodes); `"seen"`: only those in the words. */
  alphabet: "bytes" | "seen";
}

/** A learned vocabulary: tokens by id and merges in rank order. */
export interface LearnedMerges {
  /** Token strings (byte-level spelling), index = id. */
  vocab: string[];
  /** Merges in rank order, as token-string pairs. */
  merges: [string, string][];
}

/** A queued pair: its count when queued and the words that held it. */
interface Entry {
  count: number;
  key: number;
  words: number[];
}

/**
 * Learns merges from `(word, count)` pairs of original text (not yet byte-level).
 *
 * @example
 * ```ts
 * import { learnMerges } from "./train_merges.ts";
 * const { vocab, merges } = learnMerges([["hello", 3], [" hello", 2]], {
 *   vocabSize: 262, minFrequency: 2, specialTokens: ["<|endoftext|>"], alphabet: "bytes",
 * });
 * vocab.length; // 262
 * merges[0]; // ["e", "l"] (5 times, tied with "h e", "l l", "l o": smallest ids)
 * ```
 */
export function learnMerges(
  words: Iterable<readonly [string, number]>,
  options: MergeOptions,
): LearnedMerges {
  // Pair key: left * KEY + right. Ids stay below vocabSize, so keys sort as pairs
  // and, up to 46k tokens, are small integers (V8's fast map keys).
  const KEY = Math.max(1, options.vocabSize);
  const idToWord: string[] = [];
  const wordToId = new Map<string, number>();
  const addToken = (t: string): number => {
    let id = wordToId.get(t);
    if (id === undefined) {
      id = idToWord.length;
      idToWord.push(t);
      wordToId.set(t, id);
    }
    return id;
  };
  for (const t of options.specialTokens) addToken(t);

  // Words as UTF-8 bytes, all in one buffer; the bytes seen decide a "seen" alphabet.
  const encoder = new TextEncoder();
  const encoded: Uint8Array[] = [];
  const counts: number[] = [];
  const seen = new Uint8Array(256);
  let total = 0;
  for (const [word, count] of words) {
    const bytes = encoder.encode(word);
    if (bytes.length === 0 || count <= 0) continue;
    for (const b of bytes) seen[b] = 1;
    encoded.push(bytes);
    counts.push(count);
    total += bytes.length;
  }
  const alphabet = [...Array(256).keys()]
    .filter((b) => options.alphabet === "bytes" || seen[b])
    .sort((x, y) => BYTE_TO_CHAR[x].codePointAt(0)! - BYTE_TO_CHAR[y].codePointAt(0)!);
  const byteId = new Int32Array(256).fill(-1);
  // A special token spelled like a byte character takes that character's place.
  for (const b of alphabet) byteId[b] = addToken(BYTE_TO_CHAR[b]);

  const nWords = encoded.length;
  const sym = new Int32Array(total);
  const start = new Int32Array(nWords);
  const len = new Int32Array(nWords);
  for (let w = 0, at = 0; w < nWords; w++) {
    start[w] = at;
    len[w] = encoded[w].length;
    for (const b of encoded[w]) sym[at++] = byteId[b];
  }
  encoded.length = 0;

  // Pair counts (signed: Hugging Face's bookkeeping can leave residues on merged pairs)
  // and, per pair, the words that gained it since the last time it was queued.
  const pairCount = new Map<number, number>();
  const where = new Map<number, number[]>();
  const bump = (key: number, delta: number, w: number): void => {
    pairCount.set(key, (pairCount.get(key) ?? 0) + delta);
    if (delta > 0) {
      const list = where.get(key);
      if (list === undefined) where.set(key, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  };
  for (let w = 0; w < nWords; w++) {
    const s = start[w], e = s + len[w];
    for (let i = s; i + 1 < e; i++) bump(sym[i] * KEY + sym[i + 1], counts[w], w);
  }
  const heap = new PairHeap();
  const flush = (): void => {
    for (const [key, list] of where) {
      const count = pairCount.get(key)!;
      if (count > 0) heap.push({ count, key, words: list });
    }
    where.clear();
  };
  flush();

  const merges: [number, number][] = [];
  while (idToWord.length < options.vocabSize && heap.size > 0) {
    const top = heap.pop();
    const current = pairCount.get(top.key)!;
    if (top.count !== current) {
      top.count = current;
      heap.push(top);
      continue;
    }
    if (top.count < 1 || top.count < options.minFrequency) break;
    const a = Math.floor(top.key / KEY), b = top.key % KEY;
    const c = addToken(idToWord[a] + idToWord[b]);
    merges.push([a, b]);
    for (const w of top.words) mergeWord(w, a, b, c);
    flush();
  }

  /** Merges (a, b) → c left to right in word `w`, reporting pair changes as Hugging Face's Word::merge does. */
  function mergeWord(w: number, a: number, b: number, c: number): void {
    const s = start[w], end = s + len[w], n = counts[w];
    let i = s, j = s;
    while (i < end) {
      if (sym[i] === a && i + 1 < end && sym[i + 1] === b) {
        if (j > s) {
          bump(sym[j - 1] * KEY + a, -n, w);
          bump(sym[j - 1] * KEY + c, n, w);
        }
        if (i + 2 < end) {
          bump(b * KEY + sym[i + 2], -n, w);
          bump(c * KEY + sym[i + 2], n, w);
        }
        sym[j++] = c;
        i += 2;
      } else {
        sym[j++] = sym[i++];
      }
    }
    len[w] = j - s;
  }

  // A pair merged twice (possible only through a reused id) keeps its last rank,
  // as Hugging Face's pair → rank map does when it is written out.
  const lastRank = new Map<number, number>();
  merges.forEach(([a, b], r) => lastRank.set(a * KEY + b, r));
  const out: [string, string][] = [];
  merges.forEach(([a, b], r) => {
    if (lastRank.get(a * KEY + b) === r) out.push([idToWord[a], idToWord[b]]);
  });
  return { vocab: idToWord, merges: out };
}

/** A max-heap of queued pairs: highest count first, then the smallest (left, right) ids. */
class PairHeap {
  readonly #items: Entry[] = [];

  get size(): number {
    return this.#items.length;
  }

  #before(x: Entry, y: Entry): boolean {
    return x.count > y.count || (x.count === y.count && x.key < y.key);
  }

  push(e: Entry): void {
    const h = this.#items;
    let i = h.push(e) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  pop(): Entry {
    const h = this.#items;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < h.length && this.#before(h[l], h[m])) m = l;
        if (r < h.length && this.#before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}
