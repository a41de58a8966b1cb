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
 * includes U+FEFF and lacks U+0085).
 */
export function compileHfRegex(pattern: string, at: JsonPath): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\" && i + 1 < pattern.length) {
      const n = pattern[i + 1];
      if (n === "s") out += "\\p{White_Space}";
      else if (n === "S") out += "\\P{White_Space}";
      else out += c + n;
      i++;
    } else out += c;
  }
  return compileRegex(out, `regex ${quote(pattern)}`, at);
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

/** A `{String: s}` or `{Regex: r}` pattern as a global RegExp. */
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
 */
export function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|\/]/g, "\\$&");
}

/**
 * How long text may grow in one run of a normalizer, pre-tokenizer or decoder:
 * a file whose Replace fills every position with a long string, Sequenced, would
 * otherwise grow text exponentially (a hang, then out of memory).
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
 * `text.replace(pattern, content)`, failing as soon as the result would exceed the budget.
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
  let length = text.length;
  return text.replace(pattern, (m: string) => {
    length += content.length - m.length;
    spend(length, budget, at);
    return content;
  });
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
