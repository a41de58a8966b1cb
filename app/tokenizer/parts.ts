/**
 * The pieces of a Hugging Face `tokenizer.json` around the model: normalizers,
 * pre-tokenizers and decoders, each parsed from JSON with errors that name the
 * file and the field path. Private to the tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import {
  asArray,
  asObject,
  asString,
  checkDepth,
  describe,
  type JsonObject,
  JsonPath,
  optBool,
  optInt,
  optString,
  quote,
  typeOf,
} from "./json.ts";

import {
  type Budget,
  budgetFor,
  compileHfRegex,
  compileRegex,
  escapeRegex,
  parsePattern,
  replaceWithin,
  spend,
  total,
} from "./patterns.ts";

export type { Budget };

// The JSON helpers moved to json.ts; re-exported for the files that import them from here.
export { asArray, asObject, asString, describe, JsonPath, optBool, optInt, optString, typeOf };
export type { JsonObject } from "./json.ts";

/** A TypeError for an unsupported component type, listing what is supported. */
function unsupported(at: JsonPath, type: string, supported: readonly string[]): TypeError {
  return at.key("type").error(
    `${quote(type)} is not supported (supported: ${supported.join(", ")})`,
  );
}

// ---------------------------------------------------------------------------------------
// Normalizers

/** A normalizer: text in, text out, within `budget` (made from the text when absent). */
export type Normalizer = (text: string, budget?: Budget) => string;

const NORMALIZERS = [
  "Sequence",
  "Prepend",
  "Replace",
  "NFC",
  "NFD",
  "NFKC",
  "NFKD",
  "Lowercase",
  "Strip",
];

/** Parses `normalizer` (null gives undefined). */
export function parseNormalizer(value: unknown, at: JsonPath): Normalizer | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      checkDepth(at);
      const list = asArray(obj.normalizers, at.key("normalizers"))
        .map((n, i) => parseNormalizer(n, at.key("normalizers").index(i)))
        .filter((n): n is Normalizer => n !== undefined);
      return (text, budget = budgetFor(text.length)) =>
        list.reduce((t, n) => {
          const out = n(t, budget);
          spend(out.length, budget, at);
          return out;
        }, text);
    }
    case "Prepend": {
      const prefix = asString(obj.prepend, at.key("prepend"));
      // Hugging Face prepends only to non-empty text.
      return (text, budget = budgetFor(text.length)) => {
        if (text.length === 0) return text;
        spend(prefix.length + text.length, budget, at);
        return prefix + text;
      };
    }
    case "Replace": {
      const pattern = parsePattern(obj.pattern, at.key("pattern"));
      const content = asString(obj.content, at.key("content"));
      return (text, budget = budgetFor(text.length)) =>
        replaceWithin(text, pattern, content, budget, at);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD":
      return (text) => text.normalize(type);
    case "Lowercase":
      return (text) => text.toLowerCase();
    case "Strip": {
      const left = optBool(obj, "strip_left", at, true);
      const right = optBool(obj, "strip_right", at, true);
      return (text) => {
        let t = text;
        if (left) t = t.replace(/^\p{White_Space}+/u, "");
        if (right) t = t.replace(/\p{White_Space}+$/u, "");
        return t;
      };
    }
    default:
      throw unsupported(at, type, NORMALIZERS);
  }
}

// ---------------------------------------------------------------------------------------
// Pre-tokenizers

/** A piece of text between pre-tokenizer splits; `first` marks the piece at input offset 0. */
export interface Piece {
  text: string;
  first: boolean;
}

/** A pre-tokenizer: pieces in, finer pieces out, within `budget` (made from the input when absent). */
export type PreTokenizer = (pieces: Piece[], budget?: Budget) => Piece[];

const PRE_TOKENIZERS = [
  "Sequence",
  "ByteLevel",
  "Split",
  "Metaspace",
  "Digits",
  "Whitespace",
  "WhitespaceSplit",
];

/** The GPT-2 split regex that ByteLevel uses when `use_regex` is true. */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

type SplitBehavior =
  | "Removed"
  | "Isolated"
  | "MergedWithPrevious"
  | "MergedWithNext"
  | "Contiguous";
const BEHAVIORS: readonly SplitBehavior[] = [
  "Removed",
  "Isolated",
  "MergedWithPrevious",
  "MergedWithNext",
  "Contiguous",
];

/** Splits one string around the matches of `re` as Hugging Face's SplitDelimiterBehavior does. */
export function splitBy(
  text: string,
  re: RegExp,
  behavior: SplitBehavior,
  invert: boolean,
): string[] {
  // Segments: [start, end, isMatch] covering the text.
  const segs: [number, number, boolean][] = [];
  let last = 0;
  re.lastIndex = 0;
  for (const m of text.matchAll(re)) {
    const s = m.index!, e = s + m[0].length;
    if (e === s) continue;
    if (s > last) segs.push([last, s, invert]);
    segs.push([s, e, !invert]);
    last = e;
  }
  if (last < text.length) segs.push([last, text.length, invert]);
  const out: string[] = [];
  switch (behavior) {
    case "Removed":
      for (const [s, e, m] of segs) if (!m) out.push(text.slice(s, e));
      break;
    case "Isolated":
      for (const [s, e] of segs) out.push(text.slice(s, e));
      break;
    case "Contiguous": {
      let prevMatch = false;
      for (const [s, e, m] of segs) {
        if (m && prevMatch) out[out.length - 1] += text.slice(s, e);
        else out.push(text.slice(s, e));
        prevMatch = m;
      }
      break;
    }
    case "MergedWithPrevious": {
      let prevMatch = false;
      for (const [s, e, m] of segs) {
        if (m && !prevMatch && out.length > 0) out[out.length - 1] += text.slice(s, e);
        else out.push(text.slice(s, e));
        prevMatch = m;
      }
      break;
    }
    case "MergedWithNext": {
      let carry = "";
      for (const [s, e, m] of segs) {
        if (m) {
          if (carry) out.push(carry);
          carry = text.slice(s, e);
        } else {
          out.push(carry + text.slice(s, e));
          carry = "";
        }
      }
      if (carry) out.push(carry);
      break;
    }
  }
  return out.filter((s) => s.length > 0);
}

/** Applies a string splitter to each piece; the first sub-piece keeps `first`. */
function eachPiece(pieces: Piece[], split: (text: string, first: boolean) => string[]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    split(p.text, p.first).forEach((text, i) => out.push({ text, first: p.first && i === 0 }));
  }
  return out;
}

/** bytes → printable unicode characters, GPT-2's reversible table. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
})();

/** The inverse of {@link BYTE_TO_CHAR}. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(
  BYTE_TO_CHAR.map((c, b) => [c, b]),
);

const encoder = new TextEncoder();

/** Maps text to its UTF-8 bytes spelled with the byte-level alphabet. */
export function toByteLevel(text: string): string {
  let out = "";
  for (const b of encoder.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}

/** Parses `pre_tokenizer` (null gives undefined). */
export function parsePreTokenizer(value: unknown, at: JsonPath): PreTokenizer | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      checkDepth(at);
      const list = asArray(obj.pretokenizers, at.key("pretokenizers"))
        .map((p, i) => parsePreTokenizer(p, at.key("pretokenizers").index(i)))
        .filter((p): p is PreTokenizer => p !== undefined);
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
      return (pieces) =>
        eachPiece(pieces, (text) => {
          // Hugging Face adds the space to every piece it is given, not just the first.
          const t = addPrefixSpace && !text.startsWith(" ") ? " " + text : text;
          return useRegex ? splitBy(t, re, "Isolated", false) : [t];
        }).map((p) => ({ text: toByteLevel(p.text), first: p.first }));
    }
    case "Split": {
      const re = parsePattern(obj.pattern, at.key("pattern"));
      const behavior = asString(obj.behavior, at.key("behavior")) as SplitBehavior;
      if (!BEHAVIORS.includes(behavior)) {
        throw at.key("behavior").error(
          `${quote(behavior)} is not one of ${BEHAVIORS.join(", ")}`,
        );
      }
      const invert = optBool(obj, "invert", at, false);
      return (pieces) => eachPiece(pieces, (text) => splitBy(text, re, behavior, invert));
    }
    case "Metaspace": {
      const replacement = asString(obj.replacement ?? "▁", at.key("replacement"));
      const scheme = metaspaceScheme(obj, at);
      const split = optBool(obj, "split", at, true);
      const re = compileRegex(escapeRegex(replacement), "replacement", at.key("replacement"));
      return (pieces, budget = budgetFor(total(pieces))) => {
        // Counted before replacing: one step with a long replacement can be huge.
        let spaces = 0;
        for (const p of pieces) {
          for (let i = p.text.indexOf(" "); i >= 0; i = p.text.indexOf(" ", i + 1)) {
            spaces++;
          }
        }
        spend(total(pieces) + (spaces + pieces.length) * replacement.length, budget, at);
        return eachPiece(pieces, (text, first) => {
          let t = text.replaceAll(" ", replacement);
          if (
            !t.startsWith(replacement) && (scheme === "always" || (scheme === "first" && first))
          ) {
            t = replacement + t;
          }
          return split ? splitBy(t, re, "MergedWithNext", false) : [t];
        });
      };
    }
    case "Digits": {
      const individual = optBool(obj, "individual_digits", at, false);
      const re = individual ? /\p{N}/gu : /\p{N}+/gu;
      return (pieces) => eachPiece(pieces, (text) => splitBy(text, re, "Isolated", false));
    }
    case "Whitespace": {
      const re = /\w+|[^\w\s]+/gu;
      return (pieces) =>
        eachPiece(
          pieces,
          (text) => splitBy(text, re, "Isolated", true).filter((s) => !/^\s+$/u.test(s)),
        );
    }
    case "WhitespaceSplit": {
      const re = /\p{White_Space}+/gu;
      return (pieces) => eachPiece(pieces, (text) => splitBy(text, re, "Removed", false));
    }
    default:
      throw unsupported(at, type, PRE_TOKENIZERS);
  }
}

/** Metaspace's prepend scheme from `prepend_scheme` or the legacy `add_prefix_space`. */
function metaspaceScheme(obj: JsonObject, at: JsonPath): "always" | "first" | "never" {
  const s = optString(obj, "prepend_scheme", at);
  if (s === undefined) return optBool(obj, "add_prefix_space", at, true) ? "always" : "never";
  if (s !== "always" && s !== "first" && s !== "never") {
    throw at.key("prepend_scheme").error(`${quote(s)} is not one of always, first, never`);
  }
  return s;
}

// ---------------------------------------------------------------------------------------
// Decoders

/**
 * A decoder step: token strings in, token strings out. It sets `state.incomplete` when
 * the text ends inside a UTF-8 sequence that later tokens could complete, so the stream
 * decoder can hold those bytes back.
 */
export type Decoder = (
  tokens: string[],
  state: { incomplete: boolean; budget?: Budget },
) => string[];

const DECODERS = ["Sequence", "ByteLevel", "ByteFallback", "Fuse", "Replace", "Strip", "Metaspace"];

const lossy = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * How many trailing bytes form a valid but unfinished UTF-8 sequence (0 if none): the
 * bytes a stream must wait on.
 */
export function incompleteTail(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let k = 1; k <= 3 && k <= n; k++) {
    const b = bytes[n - k];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 1;
    if (need <= k) return 0;
    // The second byte of E0/ED/F0/F4 sequences has a narrower range; outside it the bytes are invalid, not unfinished.
    if (k >= 2) {
      const c = bytes[n - k + 1];
      if (
        (b === 0xe0 && c < 0xa0) || (b === 0xed && c > 0x9f) || (b === 0xf0 && c < 0x90) ||
        (b === 0xf4 && c > 0x8f)
      ) {
        return 0;
      }
    }
    return k;
  }
  return 0;
}

/** Parses `<0xNN>` as a byte, or returns -1. */
function byteToken(t: string): number {
  if (t.length !== 6 || !t.startsWith("<0x") || t[5] !== ">") return -1;
  const v = parseInt(t.slice(3, 5), 16);
  return Number.isNaN(v) || !/^[0-9A-Fa-f]{2}$/.test(t.slice(3, 5)) ? -1 : v;
}

/** Parses `decoder` (null gives undefined: tokens are then joined with spaces). */
export function parseDecoder(value: unknown, at: JsonPath): Decoder | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      checkDepth(at);
      const list = asArray(obj.decoders, at.key("decoders"))
        .map((d, i) => parseDecoder(d, at.key("decoders").index(i)))
        .filter((d): d is Decoder => d !== undefined);
      return (tokens, state) => {
        const budget = state.budget ??= budgetFor(total(tokens));
        return list.reduce((ts, d) => {
          const out = d(ts, state);
          spend(total(out), budget, at);
          return out;
        }, tokens);
      };
    }
    case "ByteLevel":
      return (tokens, state) => {
        const bytes: number[] = [];
        for (const t of tokens) {
          const mapped: number[] = [];
          let ok = true;
          for (const ch of t) {
            const b = CHAR_TO_BYTE.get(ch);
            if (b === undefined) {
              ok = false;
              break;
            }
            mapped.push(b);
          }
          // A token outside the byte alphabet (an added token, say) contributes its own UTF-8.
          // A loop, not push(...xs): a token of 100k+ characters would overflow the stack.
          for (const b of ok ? mapped : encoder.encode(t)) bytes.push(b);
        }
        const arr = Uint8Array.from(bytes);
        state.incomplete = incompleteTail(arr) > 0;
        return [lossy.decode(arr)];
      };
    case "ByteFallback":
      return (tokens, state) => {
        const out: string[] = [];
        let run: number[] = [];
        const flush = (atEnd: boolean): void => {
          if (run.length === 0) return;
          const arr = Uint8Array.from(run);
          try {
            out.push(strict.decode(arr));
          } catch {
            const tail = incompleteTail(arr);
            if (atEnd && tail > 0) {
              try {
                strict.decode(arr.subarray(0, arr.length - tail));
                state.incomplete = true;
              } catch { /* invalid before the tail: not merely unfinished */ }
            }
            // Hugging Face turns every byte of an invalid run into U+FFFD.
            out.push("\uFFFD".repeat(run.length));
          }
          run = [];
        };
        state.incomplete = false;
        for (const t of tokens) {
          const b = byteToken(t);
          if (b >= 0) run.push(b);
          else {
            flush(false);
            out.push(t);
          }
        }
        flush(true);
        return out;
      };
    case "Fuse":
      return (tokens) => [tokens.join("")];
    case "Replace": {
      const pattern = parsePattern(obj.pattern, at.key("pattern"));
      const content = asString(obj.content, at.key("content"));
      return (tokens, state) => {
        const budget = state.budget ??= budgetFor(total(tokens));
        let length = total(tokens);
        return tokens.map((t) => {
          // What this token may grow to: the budget less the other tokens' text.
          const out = replaceWithin(
            t,
            pattern,
            content,
            { max: budget.max - length + t.length },
            at,
          );
          length += out.length - t.length;
          return out;
        });
      };
    }
    case "Strip": {
      const content = asString(obj.content, at.key("content"));
      const start = optInt(obj, "start", at, 0);
      const stop = optInt(obj, "stop", at, 0);
      return (tokens) =>
        tokens.map((t) => {
          const chars = Array.from(t);
          let s = 0, e = chars.length;
          while (s < start && s < e && chars[s] === content) s++;
          while (chars.length - e < stop && e > s && chars[e - 1] === content) e--;
          return chars.slice(s, e).join("");
        });
    }
    case "Metaspace": {
      const replacement = asString(obj.replacement ?? "▁", at.key("replacement"));
      const scheme = metaspaceScheme(obj, at);
      return (tokens) =>
        // Hugging Face drops every replacement character of the first token, not just a leading one.
        tokens.map((t, i) => t.replaceAll(replacement, i === 0 && scheme !== "never" ? "" : " "));
    }
    default:
      throw unsupported(at, type, DECODERS);
  }
}
