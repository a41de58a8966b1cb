/**
 * Patterns and growth limits for the components of a `tokenizer.json`:
 * regular expressions written for Hugging Face's Rust engines compiled as
 * JavaScript ones (and compiled at load, so a bad one fails there), literal
 * patterns, and the budget that stops a component from growing text without
 * bound. Private to the tokenizer.
 *
 * @module
 */

import { asObject, type JsonPath, quote } from "./json.ts";

/**
 * Compiles a pattern written for Hugging Face's Rust regex engines (Oniguruma /
 * fancy-regex) as a JavaScript global Unicode RegExp. `\s` and `\S` are rewritten to the
 * Unicode White_Space property because JavaScript's `\s` differs from theirs (it
 * includes U+FEFF and lacks U+0085), and a bare script name (`\p{Han}`, which
 * Oniguruma takes) becomes `\p{Script=Han}`.
 *
 * @example
 * ```ts
 * import { compileHfRegex } from "./patterns.ts";
 * import { JsonPath } from "./json.ts";
 * compileHfRegex("\\p{Han}+", new JsonPath("tokenizer.json", "pre_tokenizer")).test("漢字"); // true
 * ```
 */
export function compileHfRegex(pattern: string, at: JsonPath): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\" && i + 1 < pattern.length) {
      const n = pattern[i + 1];
      if (n === "s") out += "\\p{White_Space}";
      else if (n === "S") out += "\\P{White_Space}";
      else if ((n === "p" || n === "P") && pattern[i + 2] === "{") {
        // Oniguruma takes a bare script name (`\p{Han}`); JavaScript wants `\p{Script=Han}`.
        const close = pattern.indexOf("}", i + 3);
        const name = close < 0 ? "" : pattern.slice(i + 3, close);
        if (name && !/[=^]/.test(name) && !isProperty(name) && isProperty(`Script=${name}`)) {
          out += `\\${n}{Script=${name}}`;
          i = close;
          continue;
        }
        out += c + n;
      } else out += c + n;
      i++;
    } else out += c;
  }
  return compileRegex(out, `regex ${quote(pattern)}`, at);
}

/** Whether `\p{name}` is a property JavaScript knows. */
function isProperty(name: string): boolean {
  try {
    new RegExp(`\\p{${name}}`, "u");
    return true;
  } catch {
    return false;
  }
}

/**
 * A global Unicode RegExp, compiled now: V8 compiles on first use, so a pattern
 * too large to compile would otherwise fail in the middle of an encode. A
 * SyntaxError names `what` at `at`.
 *
 * @example
 * ```ts
 * import { compileRegex } from "./patterns.ts";
 * import { JsonPath } from "./json.ts";
 * compileRegex("a+", "regex", new JsonPath("tokenizer.json", "pre_tokenizer.pattern")).test("aa"); // true
 * ```
 */
export function compileRegex(source: string, what: string, at: JsonPath): RegExp {
  try {
    const re = new RegExp(source, "gu");
    re.test("");
    re.lastIndex = 0;
    return re;
  } catch (e) {
    // V8's message repeats the whole pattern; keep only its reason.
    const m = (e as Error).message;
    throw new SyntaxError(
      `${at.source}: ${at.path} ${what} does not compile: ${m.slice(m.lastIndexOf(": ") + 2)}`,
    );
  }
}

/**
 * A `{String: s}` or `{Regex: r}` pattern as a global RegExp.
 *
 * @example
 * ```ts
 * import { parsePattern } from "./patterns.ts";
 * import { JsonPath } from "./json.ts";
 * parsePattern({ String: "." }, new JsonPath("tokenizer.json", "normalizer.pattern")).test("a"); // false
 * ```
 */
export function parsePattern(value: unknown, at: JsonPath): RegExp {
  const obj = asObject(value, at);
  if (typeof obj.String === "string") {
    return compileRegex(escapeRegex(obj.String), `pattern ${quote(obj.String)}`, at.key("String"));
  }
  if (typeof obj.Regex === "string") return compileHfRegex(obj.Regex, at.key("Regex"));
  throw at.error(
    `must be {"String": …} or {"Regex": …} (got keys ${
      Object.keys(obj).slice(0, 5).map(quote).join(", ") || "none"
    })`,
  );
}

/**
 * Escapes a literal for a Unicode-mode RegExp (outside a character class). Only
 * syntax characters and `/` may be escaped there: `\\-` is a SyntaxError.
 *
 * @example
 * ```ts
 * import { escapeRegex } from "./patterns.ts";
 * escapeRegex("a.b"); // "a\\.b"
 * ```
 */
export function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|\/]/g, "\\$&");
}

/**
 * How long text may grow in one run of a normalizer, pre-tokenizer or decoder:
 * a file whose Replace fills every position with a long string, Sequenced, would
 * otherwise grow text exponentially (a hang, then out of memory).
 *
 * @example
 * ```ts
 * import type { Budget } from "./patterns.ts";
 * const b: Budget = { max: 65_536 };
 * ```
 */
export interface Budget {
  /** The most characters the text may reach. */
  max: number;
}

/**
 * 64× the input plus 64 Ki characters: far beyond any real tokenizer (≤ 18× for NFKC).
 *
 * @example
 * ```ts
 * import { budgetFor } from "./patterns.ts";
 * budgetFor(10).max; // 66176
 * ```
 */
export function budgetFor(length: number): Budget {
  return { max: 64 * length + 65_536 };
}

/**
 * Throws a RangeError when `length` is over the budget, naming the component at `at`.
 *
 * @example
 * ```ts
 * import { budgetFor, spend } from "./patterns.ts";
 * import { JsonPath } from "./json.ts";
 * spend(100, budgetFor(10), new JsonPath("tokenizer.json", "normalizer")); // fine
 * ```
 */
export function spend(length: number, budget: Budget, at: JsonPath): void {
  if (length > budget.max) {
    throw at.rangeError(
      `makes the text longer than ${budget.max} characters (64 times its input, plus 64 Ki)`,
    );
  }
}

/**
 * The matches of `re` in `text` as Hugging Face finds them (`SysRegex::find_iter`, the
 * onig crate's `FindMatches`): like `matchAll`, except that an empty match starting
 * where the previous match ended is dropped.
 *
 * @example
 * ```ts
 * import { findMatches } from "./patterns.ts";
 * findMatches(/a|(?=b)/gu, "ab"); // [[0, 1]]: JavaScript would also give the empty match at 1
 * ```
 */
export function findMatches(re: RegExp, text: string): [number, number][] {
  const out: [number, number][] = [];
  let lastEnd = -1;
  re.lastIndex = 0;
  for (const m of text.matchAll(re)) {
    const s = m.index!, e = s + m[0].length;
    if (s === e && s === lastEnd) continue;
    out.push([s, e]);
    lastEnd = e;
  }
  return out;
}

/**
 * `text` with every match of `pattern` replaced by `content`, matches found as
 * {@link findMatches} does (tokenizers' `NormalizedString::replace` and the Replace
 * decoder): empty text is left alone. Fails as soon as the result would exceed the budget.
 *
 * @example
 * ```ts
 * import { budgetFor, replaceWithin } from "./patterns.ts";
 * import { JsonPath } from "./json.ts";
 * replaceWithin("a b", / /g, "▁", budgetFor(3), new JsonPath("tokenizer.json", "normalizer")); // "a▁b"
 * ```
 */
export function replaceWithin(
  text: string,
  pattern: RegExp,
  content: string,
  budget: Budget,
  at: JsonPath,
): string {
  if (text.length === 0) return text;
  let length = text.length;
  let out = "";
  let last = 0;
  for (const [s, e] of findMatches(pattern, text)) {
    length += content.length - (e - s);
    spend(length, budget, at);
    out += text.slice(last, s) + content;
    last = e;
  }
  return out + text.slice(last);
}

/**
 * Total length of some strings or pieces.
 *
 * @example
 * ```ts
 * import { total } from "./patterns.ts";
 * total(["ab", { text: "c" }]); // 3
 * ```
 */
export function total(items: readonly (string | { text: string })[]): number {
  let n = 0;
  for (const x of items) n += typeof x === "string" ? x.length : x.text.length;
  return n;
}
