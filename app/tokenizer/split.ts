/**
 * Splitting a string around pattern matches as Hugging Face's
 * `NormalizedString::split` does for each `SplitDelimiterBehavior`, and the GPT-2
 * byte-to-character table that byte-level components share. Private to the tokenizer.
 *
 * @module
 */

import { findMatches } from "./patterns.ts";

/**
 * What becomes of the matches when splitting (tokenizers' `SplitDelimiterBehavior`).
 *
 * @example
 * ```ts
 * import type { SplitBehavior } from "./split.ts";
 * const b: SplitBehavior = "MergedWithNext"; // Metaspace's: "▁a▁b" → ["▁a", "▁b"]
 * ```
 */
export type SplitBehavior =
  | "Removed"
  | "Isolated"
  | "MergedWithPrevious"
  | "MergedWithNext"
  | "Contiguous";

/**
 * Every {@link SplitBehavior}, for validating `behavior` fields.
 *
 * @example
 * ```ts
 * import { BEHAVIORS } from "./split.ts";
 * BEHAVIORS.includes("Isolated"); // true
 * ```
 */
export const BEHAVIORS: readonly SplitBehavior[] = [
  "Removed",
  "Isolated",
  "MergedWithPrevious",
  "MergedWithNext",
  "Contiguous",
];

/**
 * Splits `text` around the matches of `re` (found as {@link findMatches} does) as
 * tokenizers' `NormalizedString::split` does: segments alternate between non-matches and
 * matches (empty matches included: they still cut the text), `invert` swaps the two
 * kinds (`Invert(pattern)`), the behaviour folds them, and empty pieces are dropped as
 * `PreTokenizedString::split` drops them.
 *
 * @example
 * ```ts
 * import { splitBy } from "./split.ts";
 * splitBy("a,b", /,/gu, "MergedWithPrevious", false); // ["a,", "b"]
 * ```
 */
export function splitBy(
  text: string,
  re: RegExp,
  behavior: SplitBehavior,
  invert: boolean,
): string[] {
  return splitRanges(text, re, behavior, invert).map(([s, e]) => text.slice(s, e));
}

/**
 * {@link splitBy}, as `[start, end]` ranges of `text`.
 *
 * @example
 * ```ts
 * import { splitRanges } from "./split.ts";
 * splitRanges("a,b", /,/gu, "Removed", false); // [[0, 1], [2, 3]]
 * ```
 */
export function splitRanges(
  text: string,
  re: RegExp,
  behavior: SplitBehavior,
  invert: boolean,
): [number, number][] {
  if (text.length === 0) return [];
  // [start, end, isMatch], as tokenizers' `Pattern::find_matches` (pattern.rs) lists them.
  const segs: [number, number, boolean][] = [];
  let prev = 0;
  for (const [s, e] of findMatches(re, text)) {
    if (prev !== s) segs.push([prev, s, invert]);
    segs.push([s, e, !invert]);
    prev = e;
  }
  if (prev !== text.length) segs.push([prev, text.length, invert]);
  // [start, end] pieces, folded exactly as normalizer.rs `split` folds them.
  let pieces: [number, number][] = [];
  let previousMatch = false;
  switch (behavior) {
    case "Isolated":
      pieces = segs.map(([s, e]) => [s, e]);
      break;
    case "Removed":
      pieces = segs.filter(([, , m]) => !m).map(([s, e]) => [s, e]);
      break;
    case "Contiguous":
      for (const [s, e, m] of segs) {
        if (m === previousMatch && pieces.length > 0) pieces[pieces.length - 1][1] = e;
        else pieces.push([s, e]);
        previousMatch = m;
      }
      break;
    case "MergedWithPrevious":
      for (const [s, e, m] of segs) {
        if (m && !previousMatch && pieces.length > 0) pieces[pieces.length - 1][1] = e;
        else pieces.push([s, e]);
        previousMatch = m;
      }
      break;
    case "MergedWithNext":
      // Folded from the end: a match joins the piece after it unless that is a match too.
      for (let i = segs.length - 1; i >= 0; i--) {
        const [s, e, m] = segs[i];
        if (m && !previousMatch && pieces.length > 0) pieces[pieces.length - 1][0] = s;
        else pieces.push([s, e]);
        previousMatch = m;
      }
      pieces.reverse();
      break;
  }
  return pieces.filter(([s, e]) => e > s);
}

/**
 * Bytes → printable unicode characters, GPT-2's reversible table.
 *
 * @example
 * ```ts
 * import { BYTE_TO_CHAR } from "./split.ts";
 * BYTE_TO_CHAR[32]; // "Ġ"
 * ```
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
})();

/**
 * The inverse of {@link BYTE_TO_CHAR}.
 *
 * @example
 * ```ts
 * import { CHAR_TO_BYTE } from "./split.ts";
 * CHAR_TO_BYTE.get("Ġ"); // 32
 * ```
 */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(
  BYTE_TO_CHAR.map((c, b) => [c, b]),
);

const encoder = new TextEncoder();

/**
 * Maps text to its UTF-8 bytes spelled with the byte-level alphabet.
 *
 * @example
 * ```ts
 * import { toByteLevel } from "./split.ts";
 * toByteLevel(" é"); // "ĠÃ©"
 * ```
 */
export function toByteLevel(text: string): string {
  let out = "";
  for (const b of encoder.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}
