/**
 * Added tokens (`added_tokens` of a `tokenizer.json`): special and user tokens found
 * in the text before the model sees it, leftmost-longest, honouring `lstrip`,
 * `rstrip` and `single_word`, and the parsing of that list. Private to the
 * tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import { asArray, asObject, asString, type JsonPath, optBool, tokenId } from "./json.ts";

/** One entry of `added_tokens`. */
export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
}

/** A stretch of text: plain text for the model, or an added token's id. */
export type Segment = { text: string; start: number } | { id: number };

const WORD_CHAR = /[\p{L}\p{N}\p{M}_]/u;
const SPACE = /\p{White_Space}/u;

/**
 * Finds added tokens in text. Candidates are grouped by first character, longest first,
 * so a scan costs one map lookup per position plus the few candidates that share it.
 *
 * @example
 * ```ts
 * import { AddedTokenMatcher } from "./added_tokens.ts";
 * const m = new AddedTokenMatcher([{ id: 7, content: "<s>", special: true, lstrip: false,
 *   rstrip: false, singleWord: false, normalized: false }], (t) => t.content);
 * m.split("a<s>b", 0); // [{ text: "a", start: 0 }, { id: 7 }, { text: "b", start: 4 }]
 * ```
 */
export class AddedTokenMatcher {
  readonly #byFirst = new Map<string, { pattern: string; token: AddedToken }[]>();

  /** @param tokens the tokens to find; @param pattern the text each is matched as */
  constructor(tokens: readonly AddedToken[], pattern: (t: AddedToken) => string) {
    for (const token of tokens) {
      const p = pattern(token);
      if (p.length === 0) continue;
      const first = String.fromCodePoint(p.codePointAt(0)!);
      let list = this.#byFirst.get(first);
      if (!list) this.#byFirst.set(first, list = []);
      list.push({ pattern: p, token });
    }
    for (const list of this.#byFirst.values()) {
      list.sort((a, b) => b.pattern.length - a.pattern.length);
    }
  }

  /** True when there is nothing to find. */
  get empty(): boolean {
    return this.#byFirst.size === 0;
  }

  /** Splits `text` (which starts at `offset` of the input) around added tokens. */
  split(text: string, offset: number): Segment[] {
    if (this.empty) return [{ text, start: offset }];
    const out: Segment[] = [];
    let plainStart = 0;
    let i = 0;
    while (i < text.length) {
      const cp = text.codePointAt(i)!;
      const width = cp > 0xffff ? 2 : 1;
      const list = this.#byFirst.get(String.fromCodePoint(cp));
      let hit: { start: number; end: number; id: number } | undefined;
      if (list) {
        for (const { pattern, token } of list) {
          if (!text.startsWith(pattern, i)) continue;
          let end = i + pattern.length;
          if (token.singleWord && (wordCharBefore(text, i) || wordCharAt(text, end))) continue;
          let start = i;
          if (token.lstrip) { while (start > plainStart && SPACE.test(text[start - 1])) start--; }
          if (token.rstrip) { while (end < text.length && SPACE.test(text[end])) end++; }
          hit = { start, end, id: token.id };
          break;
        }
      }
      if (!hit) {
        i += width;
        continue;
      }
      if (hit.start > plainStart) {
        out.push({ text: text.slice(plainStart, hit.start), start: offset + plainStart });
      }
      out.push({ id: hit.id });
      plainStart = i = hit.end;
    }
    if (plainStart < text.length) {
      out.push({ text: text.slice(plainStart), start: offset + plainStart });
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
