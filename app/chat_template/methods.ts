/**
 * Attribute and item access as Jinja's sandbox resolves them, and the Python
 * methods of strings, dicts and lists that templates call (`strip`, `split`,
 * `startswith`, `items`, `get`, …). Methods that change a list or dict in
 * place are unsafe in transformers' immutable sandbox: reading them gives an
 * undefined value whose call raises.
 *
 * @module
 */

import {
  isTuple,
  Markup,
  Namespace,
  num,
  pyEq,
  PyFunction,
  pyStr,
  tuple,
  tupleField,
  typeName,
  Undefined,
} from "./values.ts";
import { strFormat } from "./pyformat.ts";
import { LoopContext } from "./loop.ts";

/**
 * `obj.key` (`mode` "attr": an attribute first, then an item) or `obj[key]`
 * ("item": an item first, then an attribute), as Jinja's `getattr` and
 * `getitem` do; missing: Undefined with Jinja's message.
 *
 * @example
 * ```ts
 * import { attribute } from "./methods.ts";
 * attribute(new Map([["role", "user"]]), "role", "attr"); // "user"
 * ```
 */
export function attribute(obj: unknown, key: unknown, mode: "attr" | "item"): unknown {
  if (obj instanceof Undefined) throw new TypeError(obj.hint);
  if (obj instanceof LoopContext) return obj.get(String(key));
  if (obj instanceof Markup) obj = obj.s;
  const name = typeof key === "string" ? key : undefined;
  if (mode === "attr" && name !== undefined) {
    const m = method(obj, name);
    if (m !== undefined) return m;
    const it = item(obj, key);
    if (it !== MISSING) return it;
  } else {
    const it = item(obj, key);
    if (it !== MISSING) return it;
    if (name !== undefined) {
      const m = method(obj, name);
      if (m !== undefined) return m;
    }
  }
  if (mode === "item" && name === undefined) {
    return new Undefined(`${typeName(obj)} has no element ${pyStr(key)}`);
  }
  return new Undefined(`${typeName(obj)} has no attribute '${pyStr(key)}'`);
}

const MISSING = Symbol("missing");

function item(obj: unknown, key: unknown): unknown {
  if (obj instanceof Map) {
    if (obj.has(key)) return obj.get(key);
    for (const [k, v] of obj) if (pyEq(k, key)) return v;
    return MISSING;
  }
  if (obj instanceof Namespace) {
    return typeof key === "string" && obj.attrs.has(key) ? obj.attrs.get(key) : MISSING;
  }
  if (
    (typeof obj === "string" || Array.isArray(obj)) &&
    (typeof key === "number" || typeof key === "boolean")
  ) {
    const items = typeof obj === "string" ? [...obj] : obj;
    let i = num(key);
    if (i < 0) i += items.length;
    return i >= 0 && i < items.length ? items[i] : MISSING;
  }
  return MISSING;
}

/**
 * The elements Python iterates `v` by (a string's code points, a dict's
 * keys); undefined iterates as empty; anything else is a TypeError naming
 * `what`.
 *
 * @example
 * ```ts
 * import { pyIter } from "./methods.ts";
 * pyIter("ab", "loop"); // ["a", "b"]
 * ```
 */
export function pyIter(v: unknown, what: string): unknown[] {
  if (v instanceof Markup) v = v.s;
  if (Array.isArray(v)) return v;
  if (typeof v === "string") return [...v];
  if (v instanceof Map) return [...v.keys()];
  if (v instanceof Undefined) return [];
  throw new TypeError(`${what}: '${typeName(v).replace(" object", "")}' object is not iterable`);
}

/**
 * Python's `len(v)` (undefined: 0, as Jinja's Undefined has it).
 *
 * @example
 * ```ts
 * import { pyLen } from "./methods.ts";
 * pyLen("héllo"); // 5
 * ```
 */
export function pyLen(v: unknown): number {
  if (v instanceof Markup) v = v.s;
  if (typeof v === "string") return [...v].length;
  if (Array.isArray(v)) return v.length;
  if (v instanceof Map) return v.size;
  if (v instanceof Undefined) return 0;
  throw new TypeError(`object of type '${typeName(v).replace(" object", "")}' has no len()`);
}

const UNSAFE_LIST = ["append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear"];
const UNSAFE_DICT = ["update", "pop", "popitem", "setdefault", "clear"];

function fn(name: string, f: (args: unknown[], kw: Map<string, unknown>) => unknown): PyFunction {
  return new PyFunction(name, f);
}

function method(obj: unknown, name: string): unknown {
  if (typeof obj === "string") return strMethod(obj, name);
  if (obj instanceof Map) {
    if (UNSAFE_DICT.includes(name)) return unsafe("dict", name);
    switch (name) {
      case "items":
        return fn(name, () => [...obj].map(([k, v]) => tuple([k, v])));
      case "keys":
        return fn(name, () => [...obj.keys()]);
      case "values":
        return fn(name, () => [...obj.values()]);
      case "get":
        return fn(name, (a) => {
          const v = item(obj, a[0]);
          return v === MISSING ? (a.length > 1 ? a[1] : null) : v;
        });
      case "copy":
        return fn(name, () => new Map(obj));
    }
    return undefined;
  }
  if (Array.isArray(obj)) {
    const field = tupleField(obj, name);
    if (field !== undefined) return field;
    const kind = isTuple(obj) ? "tuple" : "list";
    if (kind === "list" && UNSAFE_LIST.includes(name)) return unsafe(kind, name);
    if (name === "index") {
      return fn(name, (a) => {
        const i = obj.findIndex((x) => pyEq(x, a[0]));
        if (i < 0) throw new RangeError(`${pyStr(a[0])} is not in ${kind}`);
        return i;
      });
    }
    if (name === "count") return fn(name, (a) => obj.filter((x) => pyEq(x, a[0])).length);
    if (name === "copy" && kind === "list") return fn(name, () => [...obj]);
  }
  return undefined;
}

function unsafe(type: string, name: string): Undefined {
  return new Undefined(`access to attribute '${name}' of '${type}' object is unsafe.`);
}

/** Python's whitespace, as `str.split()` and `str.strip()` see it. */
const SPACE = "\\s\\x1c-\\x1f\\x85";

/**
 * Python's `s.strip(chars)` (`lstrip` with `right` false, `rstrip` with
 * `left` false); no `chars`: Python's whitespace.
 *
 * @example
 * ```ts
 * import { stripChars } from "./methods.ts";
 * stripChars("xxaxx", "x", true, false); // "axx"
 * ```
 */
export function stripChars(s: string, chars: unknown, left: boolean, right: boolean): string {
  if (chars === undefined || chars === null) {
    return s.replace(
      new RegExp(`${left ? `^[${SPACE}]+` : "(?!)"}|${right ? `[${SPACE}]+$` : "(?!)"}`, "gu"),
      "",
    );
  }
  const set = new Set([...String(chars)]);
  const cs = [...s];
  let a = 0, b = cs.length;
  if (left) { while (a < b && set.has(cs[a])) a++; }
  if (right) { while (b > a && set.has(cs[b - 1])) b--; }
  return cs.slice(a, b).join("");
}

/**
 * Python's `s.splitlines(keepends)`.
 *
 * @example
 * ```ts
 * import { pySplitLines } from "./methods.ts";
 * pySplitLines("a\r\nb\n"); // ["a", "b"]
 * ```
 */
export function pySplitLines(s: string, keep = false): string[] {
  // Python's line boundaries include \x1c-\x1e.
  // deno-lint-ignore no-control-regex
  const parts = s.split(/(\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029])/);
  const out: string[] = [];
  for (let i = 0; i < parts.length; i += 2) {
    const line = parts[i] + (keep && i + 1 < parts.length ? parts[i + 1] : "");
    if (i + 1 < parts.length || parts[i] !== "") out.push(line);
  }
  return out;
}

/**
 * Python's `s.capitalize()`: the first character upper, the rest lower.
 *
 * @example
 * ```ts
 * import { pyCapitalize } from "./methods.ts";
 * pyCapitalize("hELLO"); // "Hello"
 * ```
 */
export function pyCapitalize(s: string): string {
  const [first = "", ...rest] = [...s];
  return first.toUpperCase() + rest.join("").toLowerCase();
}

/**
 * Python's `s.split(sep, maxsplit)`: runs of whitespace without `sep`.
 *
 * @example
 * ```ts
 * import { pySplit } from "./methods.ts";
 * pySplit("  a b  c ", null, -1); // ["a", "b", "c"]
 * ```
 */
export function pySplit(s: string, sep: unknown, maxsplit: number): string[] {
  if (sep === null || sep === undefined) {
    const out: string[] = [];
    let rest = s.replace(new RegExp(`^[${SPACE}]+`, "u"), "");
    while (rest.length) {
      if (maxsplit >= 0 && out.length === maxsplit) {
        out.push(rest);
        break;
      }
      const m = new RegExp(`[${SPACE}]+`, "u").exec(rest);
      if (!m) {
        out.push(rest);
        break;
      }
      out.push(rest.slice(0, m.index));
      rest = rest.slice(m.index + m[0].length);
    }
    return out;
  }
  const d = String(sep);
  if (d === "") throw new RangeError("empty separator");
  const parts = s.split(d);
  if (maxsplit < 0 || parts.length <= maxsplit + 1) return parts;
  return [...parts.slice(0, maxsplit), parts.slice(maxsplit).join(d)];
}

/**
 * Python's `s.title()`: each run of letters capitalised.
 *
 * @example
 * ```ts
 * import { pyTitle } from "./methods.ts";
 * pyTitle("hello wORLD's"); // "Hello World'S"
 * ```
 */
export function pyTitle(s: string): string {
  let out = "", prevCased = false;
  for (const c of s) {
    const cased = c.toLowerCase() !== c.toUpperCase();
    out += cased ? (prevCased ? c.toLowerCase() : c.toUpperCase()) : c;
    prevCased = cased;
  }
  return out;
}

function affix(s: string, a: unknown[], ends: boolean): boolean {
  const str = [...s];
  const start = a.length > 1 && a[1] !== null ? num(a[1]) : 0;
  const end = a.length > 2 && a[2] !== null ? num(a[2]) : str.length;
  const norm = (i: number) => (i < 0 ? Math.max(0, str.length + i) : Math.min(i, str.length));
  const part = str.slice(norm(start), norm(end)).join("");
  const options = Array.isArray(a[0]) ? a[0] : [a[0]];
  return options.some((p) => {
    if (typeof p !== "string") {
      throw new TypeError(
        `${ends ? "endswith" : "startswith"} first arg must be str or a tuple of str`,
      );
    }
    return ends ? part.endsWith(p) : part.startsWith(p);
  });
}

function strMethod(s: string, name: string): PyFunction | undefined {
  switch (name) {
    case "upper":
      return fn(name, () => s.toUpperCase());
    case "lower":
    case "casefold":
      return fn(name, () => s.toLowerCase());
    case "title":
      return fn(name, () => pyTitle(s));
    case "capitalize":
      return fn(name, () => pyCapitalize(s));
    case "swapcase":
      return fn(
        name,
        () =>
          [...s].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join(""),
      );
    case "strip":
      return fn(name, (a) => stripChars(s, a[0], true, true));
    case "lstrip":
      return fn(name, (a) => stripChars(s, a[0], true, false));
    case "rstrip":
      return fn(name, (a) => stripChars(s, a[0], false, true));
    case "split":
      return fn(
        name,
        (a, kw) => pySplit(s, a[0] ?? kw.get("sep"), num(a[1] ?? kw.get("maxsplit") ?? -1)),
      );
    case "rsplit":
      return fn(name, (a, kw) => {
        const max = num(a[1] ?? kw.get("maxsplit") ?? -1);
        const sep = a[0] ?? kw.get("sep");
        if (max < 0) return pySplit(s, sep, -1);
        const rev = pySplit(
          [...s].reverse().join(""),
          sep === null || sep === undefined ? sep : [...String(sep)].reverse().join(""),
          max,
        );
        return rev.reverse().map((p) => [...p].reverse().join(""));
      });
    case "splitlines":
      return fn(name, (a) => {
        return pySplitLines(s, a.length > 0 && Boolean(a[0]));
      });
    case "startswith":
      return fn(name, (a) => affix(s, a, false));
    case "endswith":
      return fn(name, (a) => affix(s, a, true));
    case "replace":
      return fn(name, (a) => {
        const count = a.length > 2 ? num(a[2]) : -1;
        if (String(a[0]) === "") return replaceEmpty(s, String(a[1]), count);
        const parts = s.split(String(a[0]));
        if (count < 0 || parts.length <= count + 1) return parts.join(String(a[1]));
        return parts.slice(0, count + 1).join(String(a[1])) + String(a[0]) +
          parts.slice(count + 1).join(String(a[0]));
      });
    case "find":
    case "index":
      return fn(name, (a) => {
        const i = cpIndex(s, s.indexOf(String(a[0])));
        if (i < 0 && name === "index") throw new RangeError("substring not found");
        return i;
      });
    case "rfind":
    case "rindex":
      return fn(name, (a) => {
        const i = cpIndex(s, s.lastIndexOf(String(a[0])));
        if (i < 0 && name === "rindex") throw new RangeError("substring not found");
        return i;
      });
    case "count":
      return fn(name, (a) => {
        const sub = String(a[0]);
        return sub === "" ? [...s].length + 1 : s.split(sub).length - 1;
      });
    case "join":
      return fn(name, (a) => {
        const items = a[0] instanceof Map
          ? [...a[0].keys()]
          : typeof a[0] === "string"
          ? [...a[0]]
          : a[0];
        if (!Array.isArray(items)) throw new TypeError("can only join an iterable");
        return items.map((x) => {
          if (typeof x !== "string") {
            throw new TypeError(
              `sequence item: expected str instance, ${typeName(x).replace(" object", "")} found`,
            );
          }
          return x;
        }).join(s);
      });
    case "format":
      return fn(name, (a, kw) => strFormat(s, a, kw));
    case "encode":
      return fn(name, () => s);
    case "isdigit":
    case "isnumeric":
    case "isdecimal":
      return fn(name, () => s.length > 0 && /^\p{Nd}+$/u.test(s));
    case "isalpha":
      return fn(name, () => s.length > 0 && /^\p{L}+$/u.test(s));
    case "isalnum":
      return fn(name, () => s.length > 0 && /^[\p{L}\p{N}]+$/u.test(s));
    case "isspace":
      return fn(name, () => s.length > 0 && new RegExp(`^[${SPACE}]+$`, "u").test(s));
    case "islower":
      return fn(name, () => /\p{Ll}/u.test(s) && s === s.toLowerCase());
    case "isupper":
      return fn(name, () => /\p{Lu}/u.test(s) && s === s.toUpperCase());
    case "removeprefix":
      return fn(name, (a) => (s.startsWith(String(a[0])) ? s.slice(String(a[0]).length) : s));
    case "removesuffix":
      return fn(name, (a) => {
        const x = String(a[0]);
        return x && s.endsWith(x) ? s.slice(0, -x.length) : s;
      });
    case "partition":
    case "rpartition":
      return fn(name, (a) => {
        const sep = String(a[0]);
        const i = name === "partition" ? s.indexOf(sep) : s.lastIndexOf(sep);
        if (i < 0) return tuple(name === "partition" ? [s, "", ""] : ["", "", s]);
        return tuple([s.slice(0, i), sep, s.slice(i + sep.length)]);
      });
    case "zfill":
      return fn(name, (a) => {
        const w = num(a[0]), n = [...s].length;
        if (n >= w) return s;
        const sign = s[0] === "-" || s[0] === "+" ? s[0] : "";
        return sign + "0".repeat(w - n) + s.slice(sign.length);
      });
    case "center":
    case "ljust":
    case "rjust":
      return fn(name, (a) => pad(s, num(a[0]), a.length > 1 ? String(a[1]) : " ", name));
  }
  return undefined;
}

/**
 * Python's `str.center` / `ljust` / `rjust`.
 *
 * @example
 * ```ts
 * import { pad } from "./methods.ts";
 * pad("ab", 5, "*", "center"); // "*ab**"
 * ```
 */
export function pad(s: string, width: number, fill: string, how: string): string {
  const n = [...s].length;
  if (n >= width) return s;
  const total = width - n;
  if (how === "ljust") return s + fill.repeat(total);
  if (how === "rjust") return fill.repeat(total) + s;
  // CPython: the extra fill goes left when the string's length is odd… and the width too.
  const left = Math.floor(total / 2) + (total & width & 1);
  return fill.repeat(left) + s + fill.repeat(total - left);
}

/**
 * Python's `s.replace("", rep, count)`: `rep` before each character and at the
 * end, at most `count` times (all when negative).
 *
 * @example
 * ```ts
 * import { replaceEmpty } from "./methods.ts";
 * replaceEmpty("ab", "-", -1); // "-a-b-"
 * ```
 */
export function replaceEmpty(s: string, rep: string, count: number): string {
  const chars = [...s];
  const n = count < 0 ? chars.length + 1 : Math.min(count, chars.length + 1);
  return chars.map((c, i) => (i < n ? rep : "") + c).join("") + (n > chars.length ? rep : "");
}

/** The code-point index of UTF-16 index `i` in `s` (-1 stays -1). */
function cpIndex(s: string, i: number): number {
  return i < 0 ? -1 : [...s.slice(0, i)].length;
}
