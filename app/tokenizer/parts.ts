/**
 * The pieces of a Hugging Face `tokenizer.json` around the model: normalizers here
 * (each following the matching file of tokenizers' `src/normalizers/`), pre-tokenizers
 * (`pre_tokenizers.ts`) and decoders (`decoders.ts`) re-exported, each parsed from JSON
 * with errors that name the file and the field path. Private to the tokenizer
 * (`tokenizer.ts`).
 *
 * @module
 */

import {
  asArray,
  asObject,
  asString,
  describe,
  JsonPath,
  optBool,
  optInt,
  optString,
  quote,
  sequenceMembers,
  typeOf,
} from "./json.ts";

import { type Budget, budgetFor, parsePattern, replaceWithin, spend } from "./patterns.ts";
import { toByteLevel } from "./split.ts";

/**
 * How long text may grow in one run of a component (see patterns.ts).
 *
 * @example
 * ```ts
 * import type { Budget } from "./parts.ts";
 * const b: Budget = { max: 1000 };
 * ```
 */
export type { Budget };
export { BYTE_TO_CHAR, CHAR_TO_BYTE, splitBy, toByteLevel } from "./split.ts";
export {
  GPT2_PATTERN,
  parsePreTokenizer,
  type Piece,
  type PreTokenizer,
} from "./pre_tokenizers.ts";
export { type Decoder, incompleteTail, parseDecoder } from "./decoders.ts";

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

/**
 * A normalizer: text in, text out, within `budget` (made from the text when absent).
 *
 * @example
 * ```ts
 * import type { Normalizer } from "./parts.ts";
 * const nfc: Normalizer = (text) => text.normalize("NFC");
 * ```
 */
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
  "StripAccents",
  "Nmt",
  "ByteLevel",
  "BertNormalizer",
];

/** Whether Nmt drops a code point: the control characters of unicode.rs `do_nmt`. */
function nmtDrops(cp: number): boolean {
  return (cp >= 0x01 && cp <= 0x08) || cp === 0x0b || (cp >= 0x0e && cp <= 0x1f) ||
    cp === 0x7f || cp === 0x8f || cp === 0x9f;
}
/** Nmt's characters that become a space. */
const NMT_SPACE = /[\t\n\f\r\u1680\u200B-\u200F\u2028\u2029\u2581\uFEFF\uFFFD]/gu;

/**
 * Lowercases character by character, as tokenizers' `NormalizedString::lowercase` does
 * with Rust's `char::to_lowercase`: unlike `String.prototype.toLowerCase`, a final Σ
 * becomes σ, not ς (Final_Sigma is the one context rule JavaScript applies).
 *
 * @example
 * ```ts
 * import { lowercase } from "./parts.ts";
 * lowercase("ΟΔΟΣ"); // "οδοσ"
 * ```
 */
export function lowercase(text: string): string {
  return text.split("Σ").map((s) => s.toLowerCase()).join("σ");
}

/** bert.rs `is_chinese_char`: the CJK ideograph blocks BertNormalizer pads with spaces. */
const CJK =
  /[\u4E00-\u9FFF\u3400-\u4DBF\u{20000}-\u{2A6DF}\u{2A700}-\u{2B73F}\u{2B740}-\u{2B81F}\u{2B920}-\u{2CEAF}\uF900-\uFAFF\u{2F800}-\u{2FA1F}]/gu;

/**
 * Parses `normalizer` (null gives undefined).
 *
 * @example
 * ```ts
 * import { JsonPath, parseNormalizer } from "./parts.ts";
 * parseNormalizer({ type: "Lowercase" }, new JsonPath("tokenizer.json", "normalizer"))?.("AΣ"); // "aσ"
 * ```
 */
export function parseNormalizer(value: unknown, at: JsonPath): Normalizer | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      const list = sequenceMembers(obj, "normalizers", at, parseNormalizer);
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
      return lowercase;
    case "StripAccents":
      // strip.rs: drops combining marks (it does not decompose first).
      return (text) => text.replace(/\p{M}/gu, "");
    case "Nmt":
      return (text) =>
        Array.from(text).filter((c) => !nmtDrops(c.codePointAt(0)!)).join("")
          .replace(NMT_SPACE, " ");
    case "ByteLevel":
      return (text) => toByteLevel(text);
    case "BertNormalizer": {
      const clean = optBool(obj, "clean_text", at, true);
      const chinese = optBool(obj, "handle_chinese_chars", at, true);
      const lower = optBool(obj, "lowercase", at, true);
      const strip = optBool(obj, "strip_accents", at, lower);
      return (text, budget = budgetFor(text.length)) => {
        let t = text;
        // bert.rs: NUL, U+FFFD and other controls go (not tab/newline/CR), whitespace becomes " ".
        if (clean) {
          t = t.replace(/(?![\t\n\r])[\0\uFFFD\p{C}]/gu, "").replace(/\p{White_Space}/gu, " ");
        }
        if (chinese) {
          t = t.replace(CJK, " $& ");
          spend(t.length, budget, at);
        }
        if (strip) t = t.normalize("NFD").replace(/\p{Mn}/gu, "");
        return lower ? lowercase(t) : t;
      };
    }
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
