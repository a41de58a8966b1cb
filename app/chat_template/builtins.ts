/**
 * Jinja's built-in filters and tests with their Python semantics, and
 * transformers' `tojson` (json.dumps with `ensure_ascii=False`, not Jinja's
 * HTML-safe one).
 *
 * @module
 */

import {
  float,
  htmlEscape,
  isFloat,
  isNumeric,
  isTuple,
  Markup,
  namedTuple,
  num,
  pyCompare,
  pyEq,
  PyFunction,
  pyJson,
  pyRepr,
  pyStr,
  truthy,
  tuple,
  typeName,
  Undefined,
} from "./values.ts";
import {
  attribute,
  pad,
  pyCapitalize,
  pyIter,
  pyLen,
  pySplitLines,
  replaceEmpty,
  stripChars,
} from "./methods.ts";
import { percentFormat, pyRound } from "./pyformat.ts";
import type { Frame } from "./render.ts";

type Builtin = (value: unknown, args: unknown[], kw: Map<string, unknown>, frame: Frame) => unknown;

/** Argument `i` or keyword `name`, else `dflt`. */
function arg(
  args: unknown[],
  kw: Map<string, unknown>,
  i: number,
  name: string,
  dflt: unknown,
): unknown {
  if (args.length > i) return args[i];
  return kw.has(name) ? kw.get(name) : dflt;
}

/** `item.a.b` (a dotted attribute, integer parts as indices), as Jinja's make_attrgetter. */
function getPath(item: unknown, path: unknown, dflt?: unknown): unknown {
  let v = item;
  // Each part is looked up in the last (an undefined one raises), a default replacing
  // an undefined part as it goes, as Jinja's make_attrgetter does.
  for (const part of String(path).split(".")) {
    v = attribute(v, /^\d+$/.test(part) ? Number(part) : part, "item");
    if (v instanceof Undefined && dflt !== undefined && dflt !== null) v = dflt;
  }
  return v;
}

/** Python's order for sort keys: equal ones never compared with `<` (as list keys compare). */
function keyCompare(a: unknown, b: unknown): number {
  return pyEq(a, b) ? 0 : pyCompare(a, b);
}

function sortKey(v: unknown, caseSensitive: boolean): unknown {
  return !caseSensitive && typeof v === "string" ? v.toLowerCase() : v;
}

function sorted(items: unknown[], key: (v: unknown) => unknown, reverse: boolean): unknown[] {
  const withKeys = items.map((v) => [key(v), v] as const);
  withKeys.sort((a, b) => keyCompare(a[0], b[0])); // stable, as Python's sort
  if (reverse) {
    // Python's reverse=True keeps equal items in their original order.
    const out: (readonly [unknown, unknown])[] = [];
    for (let i = withKeys.length - 1; i >= 0;) {
      let j = i;
      while (j > 0 && keyCompare(withKeys[j - 1][0], withKeys[i][0]) === 0) j--;
      out.push(...withKeys.slice(j, i + 1));
      i = j - 1;
    }
    return out.map((p) => p[1]);
  }
  return withKeys.map((p) => p[1]);
}

function selectWith(
  value: unknown,
  args: unknown[],
  kw: Map<string, unknown>,
  frame: Frame,
  byAttr: boolean,
  keep: boolean,
): unknown[] {
  if (!truthy(value)) return []; // Jinja selects only from a truthy sequence
  const items = pyIter(value, "select");
  const [attr, testName, ...rest] = byAttr ? args : [undefined, ...args];
  const pick = (item: unknown) => (byAttr ? getPath(item, attr) : item);
  return items.filter((item) => {
    const v = pick(item);
    const ok = testName === undefined
      ? truthy(v)
      : truthy(callTest(String(testName), v, rest, kw, frame));
    return ok === keep;
  });
}

const FILTERS: Record<string, Builtin> = {
  abs: (v) => (isFloat(v) ? float(Math.abs(num(v))) : Math.abs(num(v))),
  // Attributes only (methods), never items: Jinja's attr filter is Python's getattr.
  attr: (v, a) => {
    const m = v instanceof Map || typeof v === "string" || Array.isArray(v)
      ? attribute(v, a[0], "attr")
      : undefined;
    return m instanceof PyFunction
      ? m
      : new Undefined(`${typeName(v)} has no attribute '${pyStr(a[0])}'`);
  },
  batch: (v, a) => {
    const items = pyIter(v, "batch"), n = num(a[0]), out: unknown[][] = [];
    for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
    if (a.length > 1 && out.length && out[out.length - 1].length < n) {
      const last = out[out.length - 1];
      while (last.length < n) last.push(a[1]);
    }
    return out;
  },
  capitalize: (v) => pyCapitalize(pyStr(v)),
  center: (v, a, kw) => pad(pyStr(v), num(arg(a, kw, 0, "width", 80)), " ", "center"),
  count: (v) => pyLen(v),
  default: (v, a, kw) => {
    const dflt = arg(a, kw, 0, "default_value", "");
    const boolean = truthy(arg(a, kw, 1, "boolean", false));
    return v instanceof Undefined || (boolean && !truthy(v)) ? dflt : v;
  },
  dictsort: (v, a, kw) => {
    if (!(v instanceof Map)) throw new TypeError("dictsort: expected a dict");
    const cs = truthy(arg(a, kw, 0, "case_sensitive", false));
    const by = arg(a, kw, 1, "by", "key");
    const i = by === "value" ? 1 : 0;
    const items = [...v].map(([k, x]) => tuple([k, x]));
    return sorted(
      items,
      (p) => sortKey((p as unknown[])[i], cs),
      truthy(arg(a, kw, 2, "reverse", false)),
    );
  },
  escape: (v) => htmlEscape(v),
  first: (v) => {
    const items = pyIter(v, "first");
    return items.length ? items[0] : new Undefined("No first item, sequence was empty.");
  },
  float: (v, a, kw) => {
    if (v instanceof Undefined) throw new TypeError(v.hint);
    const dflt = arg(a, kw, 0, "default", float(0));
    if (isNumeric(v) || typeof v === "boolean") return float(num(v));
    if (typeof v === "string" && /^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(v)) {
      return float(Number(v));
    }
    return dflt;
  },
  format: (v, a, kw) => percentFormat(pyStr(v), kw.size ? new Map(kw) : tuple(a)),
  indent: (v, a, kw) => {
    if (v instanceof Undefined) throw new TypeError(v.hint);
    if (typeof v !== "string" && !(v instanceof Markup)) {
      throw new TypeError(
        `indent: can only indent a string, not ${typeName(v).replace(" object", "")}`,
      );
    }
    const width = arg(a, kw, 0, "width", 4);
    const ind = typeof width === "string" ? width : " ".repeat(num(width));
    const first = truthy(arg(a, kw, 1, "first", false));
    const blank = truthy(arg(a, kw, 2, "blank", false));
    const lines = pySplitLines(pyStr(v) + "\n");
    let rv: string;
    if (blank) rv = lines.join("\n" + ind);
    else {
      rv = lines.shift() ?? "";
      if (lines.length) rv += "\n" + lines.map((l) => (l ? ind + l : l)).join("\n");
    }
    return first ? ind + rv : rv;
  },
  int: (v, a, kw) => {
    if (v instanceof Undefined) throw new TypeError(v.hint);
    const dflt = arg(a, kw, 0, "default", 0);
    const base = num(arg(a, kw, 1, "base", 10));
    if (typeof v === "boolean" || isNumeric(v)) return Math.trunc(num(v));
    if (typeof v === "string") {
      const t = v.trim().replaceAll("_", "");
      const n = base === 10 && /^[-+]?\d+$/.test(t) ? Number(t) : parseInt(t, base);
      if (Number.isFinite(n) && (base !== 10 || /^[-+]?\d+$/.test(t))) return n;
      const f = Number(t);
      if (t !== "" && Number.isFinite(f)) return Math.trunc(f);
    }
    return dflt;
  },
  items: (v) => {
    if (v instanceof Undefined) return [];
    if (!(v instanceof Map)) throw new TypeError("Can only get item pairs from a mapping.");
    return [...v].map(([k, x]) => tuple([k, x]));
  },
  join: (v, a, kw) => {
    const sep = pyStr(arg(a, kw, 0, "d", ""));
    const at = arg(a, kw, 1, "attribute", undefined);
    let items = pyIter(v, "join");
    if (at !== undefined && at !== null) items = items.map((x) => getPath(x, at));
    return items.map(pyStr).join(sep);
  },
  last: (v) => {
    const items = pyIter(v, "last");
    return items.length
      ? items[items.length - 1]
      : new Undefined("No last item, sequence was empty.");
  },
  length: (v) => pyLen(v),
  list: (v) => [...pyIter(v, "list")],
  lower: (v) => pyStr(v).toLowerCase(),
  map: (v, a, kw, frame) => {
    if (!truthy(v)) return []; // Jinja maps only a truthy sequence
    const items = pyIter(v, "map");
    if (a.length === 0 && kw.has("attribute")) {
      const dflt = kw.has("default") ? kw.get("default") : undefined;
      return items.map((x) => getPath(x, kw.get("attribute"), dflt));
    }
    const [name, ...rest] = a;
    return items.map((x) => callFilter(String(name), x, rest, kw, frame));
  },
  max: (v, a, kw) => extreme(v, a, kw, 1),
  min: (v, a, kw) => extreme(v, a, kw, -1),
  reject: (v, a, kw, f) => selectWith(v, a, kw, f, false, false),
  rejectattr: (v, a, kw, f) => selectWith(v, a, kw, f, true, false),
  replace: (v, a, kw) => {
    const s = pyStr(v), old = pyStr(a[0]), rep = pyStr(a[1]);
    const count = num(arg(a, kw, 2, "count", -1));
    if (old === "") return replaceEmpty(s, rep, count);
    if (count < 0) return s.split(old).join(rep);
    const parts = s.split(old);
    return parts.slice(0, count + 1).join(rep) +
      (parts.length > count + 1 ? old + parts.slice(count + 1).join(old) : "");
  },
  reverse: (
    v,
  ) => (typeof v === "string" ? [...v].reverse().join("") : [...pyIter(v, "reverse")].reverse()),
  round: (v, a, kw) => {
    const prec = num(arg(a, kw, 0, "precision", 0));
    const method = arg(a, kw, 1, "method", "common");
    const x = num(v);
    // Python's round(int, n) stays an int.
    if (method === "common") {
      return isFloat(v) ? float(pyRound(x, prec)) : pyRound(x, Math.min(prec, 0));
    }
    if (method !== "ceil" && method !== "floor") {
      throw new TypeError("method must be common, ceil or floor");
    }
    const f = 10 ** prec;
    // math.ceil / math.floor give ints (no -0), divided as floats.
    return float(((method === "ceil" ? Math.ceil : Math.floor)(x * f) + 0) / f);
  },
  safe: (v) => (v instanceof Markup ? v : new Markup(pyStr(v))),
  select: (v, a, kw, f) => selectWith(v, a, kw, f, false, true),
  selectattr: (v, a, kw, f) => selectWith(v, a, kw, f, true, true),
  sort: (v, a, kw) => {
    const reverse = truthy(arg(a, kw, 0, "reverse", false));
    const cs = truthy(arg(a, kw, 1, "case_sensitive", false));
    const at = arg(a, kw, 2, "attribute", undefined);
    const key = (x: unknown) => sortKey(at === undefined || at === null ? x : getPath(x, at), cs);
    return sorted([...pyIter(v, "sort")], key, reverse);
  },
  string: (v) => pyStr(v),
  sum: (v, a, kw) => {
    const at = arg(a, kw, 0, "attribute", undefined);
    let total: unknown = arg(a, kw, 1, "start", 0);
    for (const x of pyIter(v, "sum")) {
      const y = at === undefined || at === null ? x : getPath(x, at);
      const r = num(total) + num(y);
      total = isFloat(total) || isFloat(y) ? float(r) : r;
    }
    return total;
  },
  title: (v) =>
    pyStr(v).split(/([-\s({\[<]+)/).filter((p) => p).map((p) => {
      const [c = "", ...rest] = [...p];
      return c.toUpperCase() + rest.join("").toLowerCase();
    }).join(""),
  tojson: (v, a, kw) => {
    const indent = arg(a, kw, 1, "indent", null);
    const seps = arg(a, kw, 2, "separators", null);
    return pyJson(v, {
      ensureAscii: truthy(arg(a, kw, 0, "ensure_ascii", false)),
      indent: indent === null ? undefined : (indent as number | string),
      separators: seps === null ? undefined : (seps as [string, string]),
      sortKeys: truthy(arg(a, kw, 3, "sort_keys", false)),
    });
  },
  trim: (v, a, kw) => {
    const chars = arg(a, kw, 0, "chars", null);
    return stripChars(pyStr(v), chars === null ? null : pyStr(chars), true, true);
  },
  truncate: (v, a, kw) => {
    // Jinja measures what it is given (a list's length too) and slices only what is longer.
    const n = pyLen(v), length = num(arg(a, kw, 0, "length", 255));
    if (n <= length + num(arg(a, kw, 3, "leeway", 5))) return v;
    if (typeof v !== "string" && !(v instanceof Markup)) {
      throw new TypeError(`truncate: '${typeName(v).replace(" object", "")}' object has no rsplit`);
    }
    const killwords = truthy(arg(a, kw, 1, "killwords", false));
    const end = pyStr(arg(a, kw, 2, "end", "..."));
    const cs = [...pyStr(v)];
    if (killwords) return cs.slice(0, length - end.length).join("") + end;
    const cut = cs.slice(0, length - end.length).join("");
    const i = cut.lastIndexOf(" ");
    return (i < 0 ? cut : cut.slice(0, i)) + end;
  },
  unique: (v, a, kw) => {
    const cs = truthy(arg(a, kw, 0, "case_sensitive", false));
    const at = arg(a, kw, 1, "attribute", undefined);
    const seen: unknown[] = [];
    return pyIter(v, "unique").filter((x) => {
      const k = sortKey(at === undefined || at === null ? x : getPath(x, at), cs);
      if (k instanceof Map || (Array.isArray(k) && !isTuple(k))) {
        throw new TypeError(`unhashable type: '${k instanceof Map ? "dict" : "list"}'`);
      }
      if (seen.some((s) => pyEq(s, k))) return false;
      seen.push(k);
      return true;
    });
  },
  upper: (v) => pyStr(v).toUpperCase(),
  slice: (v, a) => {
    const items = pyIter(v, "slice"), n = num(a[0]);
    const per = Math.floor(items.length / n), extra = items.length % n, out: unknown[][] = [];
    let off = 0;
    for (let i = 0; i < n; i++) {
      const len = per + (i < extra ? 1 : 0);
      const part = items.slice(off, off + len);
      off += len;
      if (a.length > 1 && i >= extra && extra > 0) part.push(a[1]);
      out.push(part);
    }
    return out;
  },
  groupby: (v, a, kw) => {
    const at = arg(a, kw, 0, "attribute", undefined);
    const dflt = arg(a, kw, 1, "default", undefined);
    const cs = truthy(arg(a, kw, 2, "case_sensitive", false));
    const key = (x: unknown) => sortKey(getPath(x, at, dflt), cs);
    const groups: [unknown, unknown[]][] = [];
    for (const x of sorted([...pyIter(v, "groupby")], key, false)) {
      const last = groups[groups.length - 1];
      if (last && pyEq(last[0], key(x))) last[1].push(x);
      else groups.push([key(x), [x]]);
    }
    // Each group's key as its first item has it (not lower-cased), as Jinja 3.1 gives it.
    return groups.map(([, items]) =>
      namedTuple({ grouper: getPath(items[0], at, dflt), list: items })
    );
  },
  striptags: (v) =>
    pyStr(v).replace(/<!--.*?-->|<[^>]*>/gs, "").replace(/\s+/g, " ").trim()
      .replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&#34;|&quot;/g, '"')
      .replace(/&#39;/g, "'").replace(/&amp;/g, "&"),
  urlencode: (v) => {
    const enc = (x: unknown, safe: string) =>
      [...new TextEncoder().encode(pyStr(x))].map((b) => {
        const c = String.fromCharCode(b);
        return /[A-Za-z0-9_.~-]/.test(c) || safe.includes(c)
          ? c
          : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
      }).join("");
    // Query pairs as urllib's quote with nothing safe, spaces as "+".
    const qs = (x: unknown) => enc(x, "").replaceAll("%20", "+");
    if (v instanceof Map) return [...v].map(([k, x]) => `${qs(k)}=${qs(x)}`).join("&");
    if (typeof v === "string" || v instanceof Markup || !Array.isArray(v)) return enc(v, "/");
    // Any other iterable: its items unpacked as (key, value) pairs.
    return v.map((item) => {
      const kv = pyIter(item, "urlencode");
      if (kv.length !== 2) {
        throw new TypeError(
          kv.length > 2
            ? "urlencode: too many values to unpack (expected 2)"
            : `urlencode: not enough values to unpack (expected 2, got ${kv.length})`,
        );
      }
      return `${qs(kv[0])}=${qs(kv[1])}`;
    }).join("&");
  },
  wordwrap: (v, a, kw) => {
    const width = num(arg(a, kw, 0, "width", 79));
    const brk = truthy(arg(a, kw, 1, "break_long_words", true));
    const wrapstring = pyStr(arg(a, kw, 2, "wrapstring", "\n"));
    // Jinja splits with str.splitlines (no empty last line) and calls it on the value itself.
    if (v instanceof Undefined) throw new TypeError(v.hint);
    if (typeof v !== "string" && !(v instanceof Markup)) {
      throw new TypeError(
        `'${typeName(v).replace(" object", "")}' object has no attribute 'splitlines'`,
      );
    }
    return pySplitLines(pyStr(v)).map((p) => wrap(p, width, brk).join(wrapstring)).join(wrapstring);
  },
  filesizeformat: (v, a, kw) => {
    const bytes = num(v), binary = truthy(arg(a, kw, 0, "binary", false));
    const base = binary ? 1024 : 1000;
    const units = binary
      ? ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
      : ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    if (bytes === 1) return "1 Byte";
    if (bytes < base) return `${bytes} Bytes`;
    let unit = 0;
    while (unit < units.length - 1 && bytes >= base ** (unit + 2)) unit++;
    return `${(bytes / base ** (unit + 1)).toFixed(1)} ${units[unit]}`;
  },
  pprint: (v) => pyRepr(sortedDicts(v)),
  wordcount: (v) => (pyStr(v).match(/[\p{L}\p{N}_]+/gu) ?? []).length,
};
FILTERS.d = FILTERS.default;
FILTERS.e = FILTERS.escape;
FILTERS.forceescape = (v) => htmlEscape(pyStr(v));

/** Greedy wrapping of one paragraph at `width`, as textwrap.wrap does for plain words. */
function wrap(text: string, width: number, breakLong: boolean): string[] {
  const lines: string[] = [];
  let cur = "";
  for (let w of text.split(/\s+/).filter((x) => x)) {
    while (breakLong && [...w].length > width) {
      const room = cur ? width - [...cur].length - 1 : width;
      if (room <= 0) {
        lines.push(cur);
        cur = "";
        continue;
      }
      const head = [...w].slice(0, room).join("");
      lines.push(cur ? `${cur} ${head}` : head);
      cur = "";
      w = [...w].slice(room).join("");
    }
    if (!cur) cur = w;
    else if ([...cur].length + 1 + [...w].length <= width) cur += " " + w;
    else {
      lines.push(cur);
      cur = w;
    }
  }
  if (cur) lines.push(cur);
  return lines;
}

/** `v` with every dict's keys sorted, as pprint prints dicts. */
function sortedDicts(v: unknown): unknown {
  if (v instanceof Map) {
    const keys = [...v.keys()].sort((x, y) => pyCompare(x, y));
    return new Map(keys.map((k) => [k, sortedDicts(v.get(k))]));
  }
  if (Array.isArray(v)) {
    const items = v.map(sortedDicts);
    return isTuple(v) ? tuple(items) : items;
  }
  return v;
}

function extreme(v: unknown, a: unknown[], kw: Map<string, unknown>, sign: number): unknown {
  const cs = truthy(arg(a, kw, 0, "case_sensitive", false));
  const at = arg(a, kw, 1, "attribute", undefined);
  const items = pyIter(v, sign > 0 ? "max" : "min");
  if (items.length === 0) return new Undefined(`No aggregated item, sequence was empty.`);
  const key = (x: unknown) => sortKey(at === undefined || at === null ? x : getPath(x, at), cs);
  return items.reduce((best, x) => (sign * pyCompare(key(x), key(best)) > 0 ? x : best));
}

/**
 * Whether Jinja has a filter (`"filter"`) or test (`"test"`) named `name`.
 *
 * @example
 * ```ts
 * import { isBuiltin } from "./builtins.ts";
 * isBuiltin("filter", "tojson"); // true
 * ```
 */
export function isBuiltin(kind: "filter" | "test", name: string): boolean {
  return Object.hasOwn(kind === "filter" ? FILTERS : TESTS, name);
}

/**
 * Applies filter `name`; an unknown filter is a TypeError naming it.
 *
 * @example
 * ```ts ignore
 * callFilter("upper", "abc", [], new Map(), frame); // "ABC"
 * ```
 */
export function callFilter(
  name: string,
  value: unknown,
  args: unknown[],
  kw: Map<string, unknown>,
  frame: Frame,
): unknown {
  const f = Object.hasOwn(FILTERS, name) ? FILTERS[name] : undefined;
  if (!f) throw new TypeError(`no filter named '${name}'`);
  return f(value, args, kw, frame);
}

const TESTS: Record<string, (v: unknown, a: unknown[], frame: Frame) => boolean> = {
  boolean: (v) => typeof v === "boolean",
  // Jinja's Undefined is callable (calling it raises).
  callable: (v) => v instanceof PyFunction || v instanceof Undefined,
  defined: (v) => !(v instanceof Undefined),
  divisibleby: (v, a) => num(v) % num(a[0]) === 0,
  eq: (v, a) => pyEq(v, a[0]),
  escaped: () => false,
  even: (v) => num(v) % 2 === 0,
  false: (v) => v === false,
  filter: (v) => typeof v === "string" && Object.hasOwn(FILTERS, v),
  float: (v) => isFloat(v),
  ge: (v, a) => pyCompare(v, a[0], ">=") >= 0,
  gt: (v, a) => pyCompare(v, a[0], ">") > 0,
  in: (v, a) => {
    const c = a[0];
    if (typeof c === "string") return typeof v === "string" && c.includes(v);
    if (c instanceof Map) return [...c.keys()].some((k) => pyEq(k, v));
    return pyIter(c, "in").some((x) => pyEq(x, v));
  },
  integer: (v) => typeof v === "number" && Number.isInteger(v),
  iterable: (v) =>
    typeof v === "string" || Array.isArray(v) || v instanceof Map || v instanceof Undefined,
  le: (v, a) => pyCompare(v, a[0], "<=") <= 0,
  lower: (v) => {
    const s = pyStr(v);
    return /\p{Ll}/u.test(s) && s === s.toLowerCase();
  },
  lt: (v, a) => pyCompare(v, a[0], "<") < 0,
  mapping: (v) => v instanceof Map,
  ne: (v, a) => !pyEq(v, a[0]),
  none: (v) => v === null,
  number: (v) => isNumeric(v) || typeof v === "boolean",
  odd: (v) => Math.abs(num(v) % 2) === 1,
  sameas: (v, a) => v === a[0] || (v === null && a[0] === null),
  sequence: (v) =>
    typeof v === "string" || v instanceof Markup || Array.isArray(v) || v instanceof Map ||
    v instanceof Undefined,
  string: (v) => typeof v === "string" || v instanceof Markup,
  test: (v) => typeof v === "string" && Object.hasOwn(TESTS, v),
  true: (v) => v === true,
  undefined: (v) => v instanceof Undefined,
  upper: (v) => {
    const s = pyStr(v);
    return /\p{Lu}/u.test(s) && s === s.toUpperCase();
  },
};
Object.assign(TESTS, {
  "==": TESTS.eq,
  equalto: TESTS.eq,
  "!=": TESTS.ne,
  ">": TESTS.gt,
  greaterthan: TESTS.gt,
  ">=": TESTS.ge,
  "<": TESTS.lt,
  lessthan: TESTS.lt,
  "<=": TESTS.le,
});

/**
 * Applies test `name` (`x is name(args)`); an unknown test is a TypeError naming it.
 *
 * @example
 * ```ts ignore
 * callTest("defined", 1, [], new Map(), frame); // true
 * ```
 */
export function callTest(
  name: string,
  value: unknown,
  args: unknown[],
  _kw: Map<string, unknown>,
  frame: Frame,
): boolean {
  const t = Object.hasOwn(TESTS, name) ? TESTS[name] : undefined;
  if (!t) throw new TypeError(`no test named '${name}'`);
  return t(value, args, frame);
}
