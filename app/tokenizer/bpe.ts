/**
 * The BPE model of a Hugging Face `tokenizer.json`: vocabulary, ranked merges, byte
 * fallback and unknown-token handling, and the parsing of `model.vocab` and
 * `model.merges`. Private to the tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import { asArray, asObject, describe, type JsonPath, quote, tokenId } from "./json.ts";

/**
 * Settings of a BPE model, already validated.
 *
 * @example
 * ```ts
 * import type { BpeOptions } from "./bpe.ts";
 * const options: BpeOptions = { vocab: new Map([["a", 0]]), merges: [], mergesPath: "model.merges",
 *   fuseUnk: false, byteFallback: false, ignoreMerges: false, continuingSubwordPrefix: "", endOfWordSuffix: "" };
 * ```
 */
export interface BpeOptions {
  /** Token string → id. */
  vocab: Map<string, number>;
  /** Merges in rank order, as token-string pairs. */
  merges: readonly (readonly [string, string])[];
  /**
   * Priority of each merge, parallel to `merges` (non-negative integers): lower applies
   * first, and merges of equal priority apply leftmost first, as SentencePiece's
   * by-score BPE does (GGUF "llama" vocabularies). Default: each merge's rank.
   */
  priorities?: ArrayLike<number>;
  /** Where a merge pair came from, for error messages (`model.merges`). */
  mergesPath: string;
  /** The file, for the messages of `tokenize` (default `"tokenizer"`). */
  source?: string;
  /** The unknown token, if the model has one. */
  unkToken?: string;
  /** Consecutive unknown characters collapse into one unknown token. */
  fuseUnk: boolean;
  /** Unknown characters become `<0xNN>` byte tokens when all of those exist. */
  byteFallback: boolean;
  /** A word that is itself in the vocabulary is one token, merges are not run. */
  ignoreMerges: boolean;
  /** Prefix of every symbol but a word's first (WordPiece-like BPE, e.g. "##"). */
  continuingSubwordPrefix: string;
  /** Suffix of a word's last symbol (e.g. "</w>"). */
  endOfWordSuffix: string;
}

const encoder = new TextEncoder();
// ignoreBOM: a token whose rest starts with U+FEFF keeps it (the default drops it).
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** `s` less its first `n` UTF-8 bytes; a SyntaxError naming `where` if that splits a character. */
function dropBytes(s: string, n: number, where: string): string {
  if (n === 0) return s;
  const bytes = encoder.encode(s);
  const b = bytes[n];
  if (bytes.length < n || (b !== undefined && (b & 0xc0) === 0x80)) {
    throw new SyntaxError(
      `${where}: token ${quote(s)} does not start with continuing_subword_prefix`,
    );
  }
  return decoder.decode(bytes.subarray(n));
}

/** Words longer than this are not cached: they are rare and would bloat the cache. */
const CACHE_WORD_MAX = 256;
/** The cache is cleared when it reaches this size, which bounds memory for long runs. */
const CACHE_ENTRIES_MAX = 65_536;
/** Longest piece (character with its prefix and suffix) spelled in byte-fallback tokens. */
const BYTE_PIECE_MAX = 4096;

/**
 * A byte-pair-encoding model. `tokenize(word)` maps one pre-tokenized word to ids,
 * applying merges lowest rank (or given priority) first (ties: leftmost), with a heap
 * so a long word costs O(n log n), not a rescan per merge.
 *
 * @example
 * ```ts
 * const vocab = new Map([["a", 0], ["b", 1], ["ab", 2]]);
 * const bpe = new BpeModel({
 *   vocab, merges: [["a", "b"]], mergesPath: "model.merges", fuseUnk: false,
 *   byteFallback: false, ignoreMerges: false, continuingSubwordPrefix: "", endOfWordSuffix: "",
 * });
 * bpe.tokenize("ab"); // [2]
 * ```
 */
export class BpeModel {
  readonly #vocab: Map<string, number>;
  /** pairKey(left, right) → merge index (its rank in `merges`). */
  readonly #ranks = new Map<number, number>();
  /** merge index → id of the merged token. */
  readonly #mergedIds: Int32Array;
  /** merge index → priority (lower first; ties leftmost first). */
  readonly #priority: Int32Array;
  readonly #stride: number;
  readonly #unkId: number | undefined;
  readonly #unkToken: string | undefined;
  readonly #fuseUnk: boolean;
  readonly #byteIds: Int32Array | undefined;
  readonly #ignoreMerges: boolean;
  readonly #prefix: string;
  /** The prefix (suffix) is at least as long as every token: no piece with it is one. */
  readonly #hopelessPrefix: boolean;
  readonly #hopelessSuffix: boolean;
  readonly #suffix: string;
  readonly #cache = new Map<string, readonly number[]>();
  readonly #source: string;

  /** Builds the merge table; throws a SyntaxError naming a merge whose tokens are not in the vocabulary. */
  constructor(options: BpeOptions) {
    this.#vocab = options.vocab;
    this.#source = options.source ?? "tokenizer";
    let maxId = -1;
    for (const id of options.vocab.values()) if (id > maxId) maxId = id;
    this.#stride = maxId + 1;
    this.#mergedIds = new Int32Array(options.merges.length);
    this.#priority = priorities(options);
    const prefixBytes = encoder.encode(options.continuingSubwordPrefix).length;
    options.merges.forEach(([a, b], rank) => {
      const where = `${options.mergesPath}[${rank}]`;
      const left = options.vocab.get(a);
      const right = options.vocab.get(b);
      if (left === undefined) {
        throw new SyntaxError(`${where}: token ${quote(a)} is not in model.vocab`);
      }
      if (right === undefined) {
        throw new SyntaxError(`${where}: token ${quote(b)} is not in model.vocab`);
      }
      // model.rs `BpeBuilder::build`: the merged token is a + b less the length of
      // continuing_subword_prefix (in bytes), so "a" + "##b" is "ab".
      const merged = options.vocab.get(a + dropBytes(b, prefixBytes, where));
      if (merged === undefined) {
        throw new SyntaxError(
          `${where}: merged token ${
            quote(a + dropBytes(b, prefixBytes, where))
          } is not in model.vocab`,
        );
      }
      // A repeated pair keeps its last rank, as Hugging Face's HashMap build does.
      this.#ranks.set(left * this.#stride + right, rank);
      this.#mergedIds[rank] = merged;
    });
    this.#unkToken = options.unkToken;
    this.#unkId = options.unkToken === undefined ? undefined : options.vocab.get(options.unkToken);
    this.#fuseUnk = options.fuseUnk;
    this.#ignoreMerges = options.ignoreMerges;
    // A prefix or suffix no shorter than the longest token can never be part of
    // one: drop it rather than build (and hash) a hopeless string per character.
    let longest = 0;
    for (const token of options.vocab.keys()) longest = Math.max(longest, token.length);
    this.#prefix = options.continuingSubwordPrefix;
    this.#suffix = options.endOfWordSuffix;
    this.#hopelessPrefix = this.#prefix.length >= longest;
    this.#hopelessSuffix = this.#suffix.length >= longest;
    if (options.byteFallback) {
      const ids = new Int32Array(256).fill(-1);
      for (let b = 0; b < 256; b++) {
        ids[b] = options.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`) ?? -1;
      }
      this.#byteIds = ids;
    }
  }

  /** Token ids of one word (cached); a character with no token, byte or unk_token is dropped, as tokenizers drops it. */
  tokenize(word: string): readonly number[] {
    if (word.length === 0) return [];
    const hit = this.#cache.get(word);
    if (hit !== undefined) return hit;
    let ids: readonly number[];
    const whole = this.#ignoreMerges ? this.#vocab.get(word) : undefined;
    if (whole !== undefined) ids = [whole];
    else ids = this.#merge(this.#symbols(word));
    if (word.length <= CACHE_WORD_MAX) {
      if (this.#cache.size >= CACHE_ENTRIES_MAX) this.#cache.clear();
      this.#cache.set(word, ids);
    }
    return ids;
  }

  /**
   * The initial symbols, as model.rs `merge_word` makes them: one per character (with
   * the subword prefix and word suffix), or the bytes of that piece when byte_fallback
   * has them all, or unk. A character with no token is dropped when there is no
   * unk_token. An unk is held back until a vocabulary hit or the end (so with fuse_unk
   * unknowns fuse across byte-fallback characters, which then come before it).
   */
  #symbols(word: string): number[] {
    const out: number[] = [];
    const chars = Array.from(word);
    let pending = false;
    for (let i = 0; i < chars.length; i++) {
      let piece = chars[i];
      const prefixed = i > 0 && this.#prefix !== "";
      const suffixed = i === chars.length - 1 && this.#suffix !== "";
      if (prefixed) piece = this.#prefix + piece;
      if (suffixed) piece = piece + this.#suffix;
      const hopeless = (prefixed && this.#hopelessPrefix) || (suffixed && this.#hopelessSuffix);
      const id = hopeless ? undefined : this.#vocab.get(piece);
      if (id !== undefined) {
        if (pending) out.push(this.#unkId!);
        pending = false;
        out.push(id);
        continue;
      }
      if (this.#byteIds !== undefined) {
        if (piece.length > BYTE_PIECE_MAX) {
          // tokenizers spells the prefixed piece out byte by byte; a prefix or
          // suffix this long would give every character thousands of tokens.
          throw new RangeError(
            `${this.#source}: continuing_subword_prefix / end_of_word_suffix of ` +
              `${this.#prefix.length} / ${this.#suffix.length} characters spelled in ` +
              `byte_fallback tokens give one character over ${BYTE_PIECE_MAX} tokens`,
          );
        }
        const byteIds = Array.from(encoder.encode(piece), (b) => this.#byteIds![b]);
        if (byteIds.every((b) => b >= 0)) {
          for (const b of byteIds) out.push(b);
          continue;
        }
      }
      if (this.#unkToken === undefined) continue;
      if (this.#unkId === undefined) {
        const cp = chars[i].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
        throw new RangeError(
          `${this.#source}: character U+${cp} in word ${quote(word.slice(0, 40))} has no ` +
            `token and unk_token ${quote(this.#unkToken)} is not in the vocabulary`,
        );
      }
      if (pending && !this.#fuseUnk) out.push(this.#unkId);
      pending = true;
    }
    if (pending) out.push(this.#unkId!);
    return out;
  }

  /** Applies merges by rank over a linked list of symbols, driven by a binary heap. */
  #merge(ids: number[]): number[] {
    const n = ids.length;
    if (n < 2) return ids;
    const sym = Int32Array.from(ids);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap(n);
    const priority = this.#priority;
    for (let i = 0; i + 1 < n; i++) {
      const m = this.#ranks.get(sym[i] * this.#stride + sym[i + 1]);
      if (m !== undefined) heap.push(priority[m], i);
    }
    while (heap.size > 0) {
      const rank = heap.topRank();
      const pos = heap.pop();
      // Stale entries (a neighbour merged since this one was pushed) are skipped.
      if (sym[pos] < 0) continue;
      const right = next[pos];
      if (right < 0) continue;
      const m = this.#ranks.get(sym[pos] * this.#stride + sym[right]);
      if (m === undefined || priority[m] !== rank) continue;
      sym[pos] = this.#mergedIds[m];
      sym[right] = -1;
      const after = next[right];
      next[pos] = after;
      if (after >= 0) prev[after] = pos;
      const before = prev[pos];
      if (before >= 0) {
        const b = this.#ranks.get(sym[before] * this.#stride + sym[pos]);
        if (b !== undefined) heap.push(priority[b], before);
      }
      if (after >= 0) {
        const a = this.#ranks.get(sym[pos] * this.#stride + sym[after]);
        if (a !== undefined) heap.push(priority[a], pos);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }
}

/** The merge priorities of `options`, checked: each merge's rank when none are given. */
function priorities(options: BpeOptions): Int32Array {
  const n = options.merges.length;
  const given = options.priorities;
  if (given === undefined) return Int32Array.from({ length: n }, (_, i) => i);
  if (given.length !== n) {
    throw new RangeError(
      `${options.mergesPath}: ${given.length} merge priorities for ${n} merges`,
    );
  }
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const p = given[i];
    if (!Number.isInteger(p) || p < 0 || p > 0x7fffffff) {
      throw new RangeError(
        `${options.mergesPath}[${i}]: priority ${p} is not an integer in [0, 2^31)`,
      );
    }
    out[i] = p;
  }
  return out;
}

/** A min-heap of (rank, position), ordered by rank then position. */
class PairHeap {
  #rank: Int32Array;
  #pos: Int32Array;
  size = 0;

  constructor(capacity: number) {
    this.#rank = new Int32Array(Math.max(4, capacity));
    this.#pos = new Int32Array(Math.max(4, capacity));
  }

  #less(i: number, j: number): boolean {
    const ri = this.#rank[i], rj = this.#rank[j];
    return ri < rj || (ri === rj && this.#pos[i] < this.#pos[j]);
  }

  #swap(i: number, j: number): void {
    const r = this.#rank[i], p = this.#pos[i];
    this.#rank[i] = this.#rank[j];
    this.#pos[i] = this.#pos[j];
    this.#rank[j] = r;
    this.#pos[j] = p;
  }

  push(rank: number, pos: number): void {
    if (this.size === this.#rank.length) {
      const r = new Int32Array(this.size * 2), p = new Int32Array(this.size * 2);
      r.set(this.#rank);
      p.set(this.#pos);
      this.#rank = r;
      this.#pos = p;
    }
    let i = this.size++;
    this.#rank[i] = rank;
    this.#pos[i] = pos;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  topRank(): number {
    return this.#rank[0];
  }

  pop(): number {
    const top = this.#pos[0];
    this.size--;
    if (this.size > 0) {
      this.#rank[0] = this.#rank[this.size];
      this.#pos[0] = this.#pos[this.size];
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.size && this.#less(l, m)) m = l;
        if (r < this.size && this.#less(r, m)) m = r;
        if (m === i) break;
        this.#swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/**
 * Parses `model.vocab` (token → id); an id that is not a non-negative integer
 * is a TypeError naming the entry.
 *
 * @example
 * ```ts
 * import { parseVocab } from "./bpe.ts";
 * import { JsonPath } from "./parts.ts";
 * parseVocab({ a: 0, b: 1 }, new JsonPath("tokenizer.json", "model.vocab")).get("b"); // 1
 * ```
 */
export function parseVocab(value: unknown, at: JsonPath): Map<string, number> {
  const obj = asObject(value, at);
  const vocab = new Map<string, number>();
  // Object.keys beats Object.entries by ~3x on a 150k-entry vocabulary.
  for (const tok of Object.keys(obj)) vocab.set(tok, tokenId(obj[tok], at.entry(tok)));
  return vocab;
}

/**
 * Parses `model.merges`, given as `"a b"` strings or `["a", "b"]` pairs
 * (absent: no merges).
 *
 * @example
 * ```ts
 * import { parseMerges } from "./bpe.ts";
 * import { JsonPath } from "./parts.ts";
 * parseMerges(["a b", ["ab", "c"]], new JsonPath("tokenizer.json", "model.merges"));
 * // [["a", "b"], ["ab", "c"]]
 * ```
 */
export function parseMerges(value: unknown, at: JsonPath): [string, string][] {
  const list = value === undefined ? [] : asArray(value, at);
  const out: [string, string][] = [];
  list.forEach((m, i) => {
    if (typeof m === "string") {
      // model.rs `convert_merges_to_hashmap` skips "#version" lines, as in merges.txt.
      if (m.startsWith("#version")) return;
      const parts = m.split(" ");
      if (parts.length === 2 && parts[0] && parts[1]) {
        out.push([parts[0], parts[1]]);
        return;
      }
    } else if (
      Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string"
    ) {
      out.push([m[0], m[1]]);
      return;
    }
    throw at.index(i).error(`is not a pair (expected "a b" or ["a", "b"], got ${describe(m)})`);
  });
  return out;
}
