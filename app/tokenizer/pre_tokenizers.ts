/**
 * The pre-tokenizers of a Hugging Face `tokenizer.json`, parsed from JSON with errors
 * that name the file and the field path. Each follows the matching file of
 * tokenizers' `src/pre_tokenizers/`. Private to the tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import {
  asObject,
  asString,
  type JsonObject,
  type JsonPath,
  optBool,
  optInt,
  optString,
  quote,
  sequenceMembers,
  typeOf,
} from "./json.ts";
import {
  type Budget,
  budgetFor,
  compileHfRegex,
  compileRegex,
  escapeRegex,
  parsePattern,
  spend,
  total,
} from "./patterns.ts";
import { BEHAVIORS, type SplitBehavior, splitRanges, toByteLevel } from "./split.ts";

/**
 * A piece of text between pre-tokenizer splits; `start` is where it begins in the
 * input (exact while nothing has changed lengths), which Metaspace's "first" scheme reads.
 *
 * @example
 * ```ts
 * import type { Piece } from "./pre_tokenizers.ts";
 * const p: Piece = { text: "hello", start: 0 };
 * ```
 */
export interface Piece {
  text: string;
  start: number;
}

/**
 * A pre-tokenizer: pieces in, finer pieces out, within `budget` (made from the input when absent).
 *
 * @example
 * ```ts
 * import type { PreTokenizer } from "./pre_tokenizers.ts";
 * const words: PreTokenizer = (ps) => ps.flatMap((p) => p.text.split(" ").map((text) => ({ text, start: p.start })));
 * ```
 */
export type PreTokenizer = (pieces: Piece[], budget?: Budget) => Piece[];

const PRE_TOKENIZERS = [
  "Sequence",
  "ByteLevel",
  "Split",
  "Metaspace",
  "Digits",
  "Whitespace",
  "WhitespaceSplit",
  "Punctuation",
  "CharDelimiterSplit",
  "FixedLength",
];

/**
 * The GPT-2 split regex that ByteLevel uses when `use_regex` is true.
 *
 * @example
 * ```ts
 * import { GPT2_PATTERN } from "./pre_tokenizers.ts";
 * new RegExp(GPT2_PATTERN, "gu").test(" hello"); // true
 * ```
 */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** Rust regex's Unicode `\w` (Alphabetic, marks, decimal digits, connector punctuation, joiners). */
const WORD = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}";
/** whitespace.rs: `\w+|[^\w\s]+`, with Rust's Unicode classes (JavaScript's `\w` is ASCII). */
const WHITESPACE_RE = new RegExp(`[${WORD}]+|[^${WORD}\\p{White_Space}]+`, "gu");
/** punctuation.rs `is_punc`: ASCII punctuation (symbols included) or Unicode punctuation. */
const PUNCT_RE = /[!-\/:-@\[-`{-~]|\p{P}/gu;
const SPACE_RE = /\p{White_Space}/gu;

/** Applies a splitter (ranges of the text) to each piece; sub-pieces keep their start in the input. */
function eachPiece(pieces: Piece[], split: (text: string) => [number, number][]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    for (const [s, e] of split(p.text)) out.push({ text: p.text.slice(s, e), start: p.start + s });
  }
  return out;
}

/** A behaviour field, checked. */
function behaviorOf(value: unknown, at: JsonPath): SplitBehavior {
  const behavior = asString(value, at) as SplitBehavior;
  if (!BEHAVIORS.includes(behavior)) {
    throw at.error(`${quote(behavior)} is not one of ${BEHAVIORS.join(", ")}`);
  }
  return behavior;
}

/**
 * A one-character field (Rust `char`), or a TypeError naming it.
 *
 * @example
 * ```ts
 * import { oneChar } from "./pre_tokenizers.ts";
 * import { JsonPath } from "./json.ts";
 * oneChar("▁", new JsonPath("tokenizer.json", "pre_tokenizer.replacement")); // "▁"
 * ```
 */
export function oneChar(value: unknown, at: JsonPath): string {
  const s = asString(value, at);
  if (Array.from(s).length !== 1) {
    throw at.error(`must be exactly one character (got ${quote(s)})`);
  }
  return s;
}

/**
 * Parses `pre_tokenizer` (null gives undefined).
 *
 * @example
 * ```ts
 * import { parsePreTokenizer } from "./pre_tokenizers.ts";
 * import { JsonPath } from "./json.ts";
 * const pre = parsePreTokenizer({ type: "WhitespaceSplit" }, new JsonPath("tokenizer.json", "pre_tokenizer"));
 * pre?.([{ text: "a b", start: 0 }]).map((p) => p.text); // ["a", "b"]
 * ```
 */
export function parsePreTokenizer(value: unknown, at: JsonPath): PreTokenizer | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      const list = sequenceMembers(obj, "pretokenizers", at, parsePreTokenizer);
      return (pieces, budget = budgetFor(total(pieces))) =>
        list.reduce((ps, p) => {
          const out = p(ps, budget);
          spend(total(out), budget, at);
          return out;
        }, pieces);
    }
    case "ByteLevel": {
      const addPrefixSpace = optBool(obj, "add_prefix_space", at, true);
      const useRegex = optBool(obj, "use_regex", at, true);
      const re = compileHfRegex(GPT2_PATTERN, at);
      return (pieces) => {
        const out: Piece[] = [];
        for (const p of pieces) {
          // byte_level.rs adds the space to every piece it is given, not just the first.
          const prefixed = addPrefixSpace && !p.text.startsWith(" ");
          const t = prefixed ? " " + p.text : p.text;
          const start = prefixed ? p.start - 1 : p.start;
          for (
            const q of useRegex
              ? eachPiece([{ text: t, start }], (x) => splitRanges(x, re, "Isolated", false))
              : [{ text: t, start }]
          ) {
            out.push({ text: toByteLevel(q.text), start: Math.max(p.start, q.start) });
          }
        }
        return out;
      };
    }
    case "Split": {
      const re = parsePattern(obj.pattern, at.key("pattern"));
      const behavior = behaviorOf(obj.behavior, at.key("behavior"));
      const invert = optBool(obj, "invert", at, false);
      return (pieces) => eachPiece(pieces, (text) => splitRanges(text, re, behavior, invert));
    }
    case "Metaspace":
      return metaspace(obj, at);
    case "Digits": {
      // digits.rs: per-character `char::is_numeric`, Isolated or Contiguous.
      const individual = optBool(obj, "individual_digits", at, false);
      const behavior = individual ? "Isolated" : "Contiguous";
      return (pieces) => eachPiece(pieces, (text) => splitRanges(text, /\p{N}/gu, behavior, false));
    }
    case "Whitespace":
      return (pieces) =>
        eachPiece(pieces, (text) => splitRanges(text, WHITESPACE_RE, "Removed", true));
    case "WhitespaceSplit":
      return (pieces) => eachPiece(pieces, (text) => splitRanges(text, SPACE_RE, "Removed", false));
    case "Punctuation": {
      const behavior = obj.behavior === undefined
        ? "Isolated"
        : behaviorOf(obj.behavior, at.key("behavior"));
      return (pieces) => eachPiece(pieces, (text) => splitRanges(text, PUNCT_RE, behavior, false));
    }
    case "CharDelimiterSplit": {
      const delimiter = oneChar(obj.delimiter, at.key("delimiter"));
      const re = compileRegex(escapeRegex(delimiter), "delimiter", at.key("delimiter"));
      return (pieces) => eachPiece(pieces, (text) => splitRanges(text, re, "Removed", false));
    }
    case "FixedLength": {
      const length = optInt(obj, "length", at, 5);
      // fixed_length.rs chunks by `length` characters; 0 would never advance.
      if (length === 0) throw at.key("length").rangeError("must be at least 1");
      return (pieces) =>
        eachPiece(pieces, (text) => {
          const out: [number, number][] = [];
          let start = 0, count = 0;
          for (let i = 0; i < text.length; i += text.codePointAt(i)! > 0xffff ? 2 : 1) {
            if (count === length) {
              out.push([start, i]);
              start = i;
              count = 0;
            }
            count++;
          }
          if (count > 0) out.push([start, text.length]);
          return out;
        });
    }
    default:
      throw at.key("type").error(
        `${quote(type)} is not supported (supported: ${PRE_TOKENIZERS.join(", ")})`,
      );
  }
}

/** The Metaspace pre-tokenizer (metaspace.rs). */
function metaspace(obj: JsonObject, at: JsonPath): PreTokenizer {
  const replacement = oneChar(obj.replacement ?? "▁", at.key("replacement"));
  const scheme = metaspaceScheme(obj, at);
  const split = optBool(obj, "split", at, true);
  const re = compileRegex(escapeRegex(replacement), "replacement", at.key("replacement"));
  return (pieces, budget = budgetFor(total(pieces))) => {
    // Counted before replacing: one step with a long replacement can be huge.
    let spaces = 0;
    for (const p of pieces) {
      for (let i = p.text.indexOf(" "); i >= 0; i = p.text.indexOf(" ", i + 1)) spaces++;
    }
    spend(total(pieces) + (spaces + pieces.length) * replacement.length, budget, at);
    const out: Piece[] = [];
    for (const p of pieces) {
      let t = p.text.replaceAll(" ", replacement);
      // "first" prepends only to the piece that starts the input (offsets_original().0 == 0).
      const prepend = !t.startsWith(replacement) &&
        (scheme === "always" || (scheme === "first" && p.start === 0));
      if (prepend) t = replacement + t;
      const start = prepend ? p.start - replacement.length : p.start;
      const subs = split
        ? eachPiece([{ text: t, start }], (x) => splitRanges(x, re, "MergedWithNext", false))
        : [{ text: t, start }];
      for (const q of subs) out.push({ text: q.text, start: Math.max(p.start, q.start) });
    }
    return out;
  };
}

/**
 * Metaspace's prepend scheme from `prepend_scheme` (default "always") and the legacy
 * `add_prefix_space`: false means "never", and contradicting an explicit scheme is an
 * error, as metaspace.rs's deserializer says.
 *
 * @example
 * ```ts
 * import { metaspaceScheme } from "./pre_tokenizers.ts";
 * import { JsonPath } from "./json.ts";
 * metaspaceScheme({ add_prefix_space: false }, new JsonPath("tokenizer.json", "decoder")); // "never"
 * ```
 */
export function metaspaceScheme(obj: JsonObject, at: JsonPath): "always" | "first" | "never" {
  const s = optString(obj, "prepend_scheme", at) ?? "always";
  if (s !== "always" && s !== "first" && s !== "never") {
    throw at.key("prepend_scheme").error(`${quote(s)} is not one of always, first, never`);
  }
  if (optBool(obj, "add_prefix_space", at, true) === false) {
    if (s !== "never" && obj.prepend_scheme !== undefined && obj.prepend_scheme !== null) {
      throw at.key("add_prefix_space").error(
        `is false but prepend_scheme is ${quote(s)} (they must agree)`,
      );
    }
    return "never";
  }
  return s;
}
