/**
 * Added tokens (`added_tokens` of a `tokenizer.json`): special and user tokens found
 * in the text before the model sees it, leftmost-longest, honouring `lstrip`,
 * `rstrip` and `single_word`, the ids Hugging Face gives them, and the parsing of that
 * list, all following tokenizers' `src/tokenizer/added_vocabulary.rs`. Private to the
 * tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import { asArray, asObject, asString, type JsonPath, optBool, tokenId } from "./json.ts";

/**
 * One entry of `added_tokens`.
 *
 * @example
 * ```ts
 * import type { AddedToken } from "./added_tokens.ts";
 * const eos: AddedToken = { id: 2, content: "</s>", special: true, lstrip: false,
 *   rstrip: false, singleWord: false, normalized: false };
 * ```
 */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
}

/**
 * A stretch of text: plain text for the model (`start`: where it begins in the input), or
 * an added token's id.
 *
 * @example
 * ```ts
 * import type { Segment } from "./added_tokens.ts";
 * const segs: Segment[] = [{ text: "a", start: 0 }, { id: 7 }];
 * ```
 */
export type Segment = { text: string; start: number } | { id: number };

/** Rust regex's Unicode `\w`, which added_vocabulary.rs uses for `single_word`. */
const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
/** Rust regex's `\s` (White_Space: all in the BMP, so one UTF-16 unit each). */
const SPACE = /\p{White_Space}/u;

/**
 * Finds added tokens in text as tokenizers' `AddedVocabulary::find_matches` does: a
 * leftmost-longest scan that resumes after each match, accepted or not. A match that
 * `single_word` rejects (or a special token while they are encoded as text) is dropped,
 * and neither a shorter token at its start nor a token inside it is tried. Candidates
 * are grouped by first character, longest first.
 *
 * @example
 * ```ts
 * import { AddedTokenMatcher } from "./added_tokens.ts";
 * const bos = { id: 7, content: "<s>", special: true, lstrip: false, rstrip: false,
 *   singleWord: false, normalized: false };
 * const m = new AddedTokenMatcher([{ token: bos, pattern: "<s>" }]);
 * m.split("a<s>b", 0, false); // [{ text: "a", start: 0 }, { id: 7 }, { text: "b", start: 4 }]
 * ```
 */
export class AddedTokenMatcher {
  readonly #byFirst = new Map<string, { pattern: string; token: AddedToken }[]>();

  /** @param entries the tokens to find, each with the text it is matched as */
  constructor(entries: readonly { token: AddedToken; pattern: string }[]) {
    for (const { token, pattern } of entries) {
      if (pattern.length === 0) continue;
      const first = String.fromCodePoint(pattern.codePointAt(0)!);
      let list = this.#byFirst.get(first);
      if (!list) this.#byFirst.set(first, list = []);
      list.push({ pattern, token });
    }
    for (const list of this.#byFirst.values()) {
      list.sort((a, b) => b.pattern.length - a.pattern.length);
    }
  }

  /** The leftmost-longest match at or after `from`, or undefined. */
  #next(text: string, from: number): { start: number; end: number; token: AddedToken } | undefined {
    for (let i = from; i < text.length;) {
      const cp = text.codePointAt(i)!;
      const list = this.#byFirst.get(String.fromCodePoint(cp));
      if (list) {
        for (const { pattern, token } of list) {
          if (text.startsWith(pattern, i)) return { start: i, end: i + pattern.length, token };
        }
      }
      i += cp > 0xffff ? 2 : 1;
    }
    return undefined;
  }

  /**
   * Splits `text` (which starts at `offset` of the input) around added tokens;
   * `skipSpecial` leaves special tokens as text (tokenizers' `encode_special_tokens`).
   */
  split(text: string, offset: number, skipSpecial: boolean): Segment[] {
    if (this.#byFirst.size === 0) return text.length ? [{ text, start: offset }] : [];
    const out: Segment[] = [];
    let startOffset = 0;
    for (let m = this.#next(text, 0); m; m = this.#next(text, m.end)) {
      const { token } = m;
      if (skipSpecial && token.special) continue;
      if (token.singleWord && (wordCharBefore(text, m.start) || wordCharAt(text, m.end))) continue;
      let start = m.start, stop = m.end;
      // added_vocabulary.rs: lstrip's start is max(start of the whitespace, previous
      // split's end), so a match inside what an earlier rstrip took starts at its end.
      if (token.lstrip) {
        while (start > startOffset && SPACE.test(text[start - 1])) start--;
        start = Math.max(start, startOffset);
      }
      // The scan resumes at m.end, not at stop: a token starting with whitespace can
      // still match inside what rstrip took, as in Hugging Face.
      if (token.rstrip) { while (stop < text.length && SPACE.test(text[stop])) stop++; }
      // That leaves it empty when the match lay wholly in the stripped run: Hugging Face's
      // `PreTokenizedString::split` then drops it. (Start past stop panics there: dropped too.)
      if (start >= stop) continue;
      if (startOffset < start) {
        out.push({ text: text.slice(startOffset, start), start: offset + startOffset });
      }
      out.push({ id: token.id });
      startOffset = stop;
    }
    if (startOffset < text.length) {
      out.push({ text: text.slice(startOffset), start: offset + startOffset });
    }
    return out;
  }
}

function wordCharBefore(text: string, i: number): boolean {
  if (i === 0) return false;
  const lowSurrogate = i >= 2 && /[\uDC00-\uDFFF]/.test(text[i - 1]);
  return WORD_CHAR.test(text.slice(lowSurrogate ? i - 2 : i - 1, i));
}

function wordCharAt(text: string, i: number): boolean {
  if (i >= text.length) return false;
  return WORD_CHAR.test(String.fromCodePoint(text.codePointAt(i)!));
}

/**
 * The added tokens as Hugging Face registers them (`AddedVocabulary::add_tokens`): empty
 * contents are ignored, and each token takes the id its content already has (an earlier
 * added token, else the model vocabulary), else the next free id from the vocabulary's
 * size, whatever id the file gives. A later token with the same content replaces the
 * earlier one's flags. `specials` are the contents ever marked special; `normalizedText`
 * holds, by id, the normalized content of tokens that were ever added with `normalized`
 * (and that `normalize` changes): the text decode and the normalized matcher use.
 *
 * @example
 * ```ts
 * import { resolveAddedTokens } from "./added_tokens.ts";
 * const t = { id: 99, content: "<x>", special: true, lstrip: false, rstrip: false,
 *   singleWord: false, normalized: false };
 * resolveAddedTokens([t], new Map([["a", 0]])).byId.get(1)?.content; // "<x>"
 * ```
 */
export function resolveAddedTokens(
  tokens: readonly AddedToken[],
  vocab: ReadonlyMap<string, number>,
  normalize?: (text: string) => string,
): {
  byContent: Map<string, number>;
  byId: Map<number, AddedToken>;
  specials: Set<string>;
  normalizedText: Map<number, string>;
} {
  const byContent = new Map<string, number>();
  const byId = new Map<number, AddedToken>();
  const specials = new Set<string>();
  const normalizedText = new Map<number, string>();
  let next = vocab.size;
  for (const t of tokens) {
    if (t.content === "") continue;
    const known = byContent.get(t.content);
    if (known !== undefined && sameFlags(byId.get(known), t)) continue;
    const id = known ?? vocab.get(t.content) ?? next++;
    byContent.set(t.content, id);
    if (t.special) specials.add(t.content);
    byId.set(id, { ...t, id });
    // add_tokens' `normalized_cache` is only ever filled: a later entry with the same
    // content and `normalized: false` keeps the earlier entry's normalized text for decode.
    if (t.normalized && normalize) {
      const normed = normalize(t.content);
      if (normed !== t.content) normalizedText.set(id, normed);
    }
  }
  return { byContent, byId, specials, normalizedText };
}

function sameFlags(a: AddedToken | undefined, b: AddedToken): boolean {
  return a !== undefined && a.content === b.content && a.special === b.special &&
    a.lstrip === b.lstrip && a.rstrip === b.rstrip && a.singleWord === b.singleWord &&
    a.normalized === b.normalized;
}

/**
 * Parses `added_tokens` (absent or null: none). `normalized` defaults to true
 * for non-special tokens, as in Hugging Face.
 *
 * @example
 * ```ts
 * import { parseAddedTokens } from "./added_tokens.ts";
 * import { JsonPath } from "./parts.ts";
 * const [bos] = parseAddedTokens(
 *   [{ id: 1, content: "<s>", special: true }],
 *   new JsonPath("tokenizer.json", "added_tokens"),
 * );
 * bos.normalized; // false
 * ```
 */
export function parseAddedTokens(value: unknown, at: JsonPath): AddedToken[] {
  if (value === undefined || value === null) return [];
  return asArray(value, at).map((v, i) => {
    const here = at.index(i);
    const obj = asObject(v, here);
    const id = tokenId(obj.id, here.key("id"), "is not a non-negative integer");
    const special = optBool(obj, "special", here, false);
    return {
      id,
      content: asString(obj.content, here.key("content")),
      special,
      lstrip: optBool(obj, "lstrip", here, false),
      rstrip: optBool(obj, "rstrip", here, false),
      singleWord: optBool(obj, "single_word", here, false),
      normalized: optBool(obj, "normalized", here, !special),
    };
  });
}
