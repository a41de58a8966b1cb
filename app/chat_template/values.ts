/**
 * Python's values as a Jinja template sees them: `None`, bools, ints and
 * floats (an integer-valued float is a {@linkcode PyFloat}, so `1.0` prints
 * as Python prints it), strings, lists, tuples, dicts (as `Map`s, keeping
 * insertion order), Jinja's `Undefined` and `namespace` — with Python's
 * truthiness, equality, ordering, `str`, `repr` and `json.dumps`.
 *
 * @module
 */

/**
 * A missing variable, attribute or item: prints as "", iterates as empty, is
 * false; anything more (its attributes, arithmetic) raises with `hint`.
 *
 * @example
 * ```ts
 * import { Undefined } from "./values.ts";
 * new Undefined("'x' is undefined").hint; // "'x' is undefined"
 * ```
 */
export class Undefined {
  /** The error raised when the undefined value is used: "'x' is undefined". */
  readonly hint: string;
  /** An undefined value with its error message. */
  constructor(hint: string) {
    this.hint = hint;
  }
}

/**
 * A Python float whose value is an integer (`2.0`); other floats are plain
 * non-integer numbers, ints are integer numbers.
 *
 * @example
 * ```ts
 * import { PyFloat } from "./values.ts";
 * new PyFloat(2).v; // 2
 * ```
 */
export class PyFloat {
  /** The value. */
  readonly v: number;
  /** Wraps `v`. */
  constructor(v: number) {
    this.v = v;
  }
}

/**
 * Jinja's `namespace()`: attributes that `{% set ns.x = … %}` changes from any scope.
 *
 * @example
 * ```ts
 * import { Namespace } from "./values.ts";
 * const ns = new Namespace();
 * ns.attrs.set("found", true);
 * ```
 */
export class Namespace {
  /** Its attributes. */
  readonly attrs: Map<string, unknown> = new Map();
}

/**
 * A callable value: a global function, a bound method or a macro.
 *
 * @example
 * ```ts
 * import { PyFunction } from "./values.ts";
 * const f = new PyFunction("twice", (args) => (args[0] as number) * 2);
 * f.call([3], new Map()); // 6
 * ```
 */
export class PyFunction {
  /** Its name, for messages. */
  readonly name: string;
  /** Calls it. */
  readonly call: (args: unknown[], kwargs: Map<string, unknown>) => unknown;
  /** A function named `name`. */
  constructor(name: string, call: (args: unknown[], kwargs: Map<string, unknown>) => unknown) {
    this.name = name;
    this.call = call;
  }
}

/**
 * Markupsafe's `Markup`: text marked safe (`|safe`) or escaped (`|e`). Adding
 * plain text to it with `+` escapes that text, as in Python.
 *
 * @example
 * ```ts
 * import { Markup } from "./values.ts";
 * new Markup("<b>").s; // "<b>"
 * ```
 */
export class Markup {
  /** The text. */
  readonly s: string;
  /** Marks `s` safe. */
  constructor(s: string) {
    this.s = s;
  }
}

/**
 * markupsafe's `escape`: `& < > " '` as entities; Markup stays as it is.
 *
 * @example
 * ```ts
 * import { htmlEscape } from "./values.ts";
 * htmlEscape("<a>").s; // "&lt;a&gt;"
 * ```
 */
export function htmlEscape(v: unknown): Markup {
  if (v instanceof Markup) return v;
  const s = pyStr(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&#34;").replace(/'/g, "&#39;");
  return new Markup(s);
}

const TUPLE = Symbol("tuple");
const RANGE = Symbol("range");

/**
 * `range(start, stop, step)`'s values, marked to print as Python's range does.
 *
 * @example
 * ```ts
 * import { pyRepr, rangeValue } from "./values.ts";
 * pyRepr(rangeValue(0, 3, 1)); // "range(0, 3)"
 * ```
 */
export function rangeValue(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const items = Array.from({ length: len }, (_, i) => start + i * step);
  Object.defineProperty(items, RANGE, {
    value: step === 1 ? `range(${start}, ${stop})` : `range(${start}, ${stop}, ${step})`,
  });
  return items;
}

/**
 * `items` as a Python tuple (an array marked as one: it prints with
 * parentheses and never equals a list).
 *
 * @example
 * ```ts
 * import { isTuple, tuple } from "./values.ts";
 * isTuple(tuple(["a", 1])); // true
 * ```
 */
export function tuple(items: unknown[]): unknown[] {
  Object.defineProperty(items, TUPLE, { value: true });
  return items;
}

const FIELDS = Symbol("fields");

/**
 * A named tuple (`groupby`'s `(grouper, list)`): a tuple whose items are
 * also attributes.
 *
 * @example
 * ```ts
 * import { namedTuple, tupleField } from "./values.ts";
 * tupleField(namedTuple({ grouper: "user", list: [] }), "grouper"); // "user"
 * ```
 */
export function namedTuple(fields: Record<string, unknown>): unknown[] {
  const t = tuple(Object.values(fields));
  Object.defineProperty(t, FIELDS, { value: fields });
  return t;
}

/**
 * Field `name` of a named tuple, or undefined.
 *
 * @example
 * ```ts
 * import { tupleField } from "./values.ts";
 * tupleField([1], "x"); // undefined
 * ```
 */
export function tupleField(v: unknown, name: string): unknown {
  const f = Array.isArray(v)
    ? (v as unknown as Record<symbol, Record<string, unknown>>)[FIELDS]
    : undefined;
  return f && Object.hasOwn(f, name) ? f[name] : undefined;
}

/**
 * Whether `v` is a tuple.
 *
 * @example
 * ```ts
 * import { isTuple } from "./values.ts";
 * isTuple([1]); // false
 * ```
 */
export function isTuple(v: unknown): boolean {
  return Array.isArray(v) && (v as unknown as Record<symbol, unknown>)[TUPLE] === true;
}

/**
 * Whether `v` is a Python float.
 *
 * @example
 * ```ts
 * import { isFloat, PyFloat } from "./values.ts";
 * [isFloat(1.5), isFloat(new PyFloat(1)), isFloat(1)]; // [true, true, false]
 * ```
 */
export function isFloat(v: unknown): boolean {
  return v instanceof PyFloat || (typeof v === "number" && !Number.isInteger(v));
}

/**
 * Whether `v` is a Python int or float (bools are not, as Jinja's `number` test sees them… they are: see `isNumber`).
 *
 * @example
 * ```ts
 * import { isNumeric } from "./values.ts";
 * isNumeric(2); // true
 * ```
 */
export function isNumeric(v: unknown): v is number | PyFloat {
  return typeof v === "number" || v instanceof PyFloat;
}

/**
 * `n` as a Python float value.
 *
 * @example
 * ```ts
 * import { float } from "./values.ts";
 * float(2); // PyFloat { v: 2 }
 * ```
 */
export function float(n: number): number | PyFloat {
  return Number.isInteger(n) ? new PyFloat(n) : n;
}

/**
 * The number of a numeric or bool value (True is 1, as in Python).
 *
 * @example
 * ```ts
 * import { num } from "./values.ts";
 * num(true); // 1
 * ```
 */
export function num(v: unknown): number {
  if (typeof v === "number") return v;
  if (v instanceof PyFloat) return v.v;
  if (typeof v === "boolean") return v ? 1 : 0;
  throw new TypeError(`expected a number, got ${typeName(v)}`);
}

/**
 * Python's truth value.
 *
 * @example
 * ```ts
 * import { truthy } from "./values.ts";
 * [truthy(""), truthy([0]), truthy(new Map())]; // [false, true, false]
 * ```
 */
export function truthy(v: unknown): boolean {
  if (v === null || v === undefined || v instanceof Undefined) return false;
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  if (v instanceof PyFloat) return v.v !== 0;
  if (typeof v === "string") return v.length > 0;
  if (v instanceof Markup) return v.s.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map) return v.size > 0;
  return true;
}

/**
 * Python's type name of `v` as Jinja's messages write it ("dict object").
 *
 * @example
 * ```ts
 * import { typeName } from "./values.ts";
 * typeName(new Map()); // "dict object"
 * ```
 */
export function typeName(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof Undefined) return "Undefined";
  if (typeof v === "boolean") return "bool object";
  if (isFloat(v)) return "float object";
  if (typeof v === "number") return "int object";
  if (typeof v === "string") return "str object";
  if (v instanceof Markup) return "Markup object";
  if (isTuple(v)) return "tuple object";
  if (Array.isArray(v)) return "list object";
  if (v instanceof Map) return "dict object";
  if (v instanceof Namespace) return "Namespace object";
  if (v instanceof PyFunction) return "function object";
  return "object";
}

/**
 * Python's `str(v)` (an undefined value is "").
 *
 * @example
 * ```ts
 * import { pyStr } from "./values.ts";
 * pyStr(["a", null, true]); // "['a', None, True]"
 * ```
 */
export function pyStr(v: unknown): string {
  if (typeof v === "string") return v;
  if (v instanceof Markup) return v.s;
  if (v instanceof Undefined) return "";
  return pyRepr(v);
}

/**
 * Python's `repr(v)`.
 *
 * @example
 * ```ts
 * import { pyRepr } from "./values.ts";
 * pyRepr("it's"); // "\"it's\""
 * ```
 */
export function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (v instanceof Undefined) return "Undefined";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (v instanceof PyFloat) return floatRepr(v.v);
  if (typeof v === "number") return Number.isInteger(v) ? intStr(v) : floatRepr(v);
  if (typeof v === "string") return strRepr(v);
  if (v instanceof Markup) return `Markup(${strRepr(v.s)})`;
  if (Array.isArray(v)) {
    const range = (v as unknown as Record<symbol, string | undefined>)[RANGE];
    if (range !== undefined) return range;
    const inner = v.map(pyRepr).join(", ");
    if (!isTuple(v)) return `[${inner}]`;
    return v.length === 1 ? `(${inner},)` : `(${inner})`;
  }
  if (v instanceof Map) {
    return `{${[...v].map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(", ")}}`;
  }
  if (v instanceof Namespace) {
    return `<Namespace ${pyRepr(new Map(v.attrs))}>`;
  }
  if (v instanceof PyFunction) return `<function ${v.name}>`;
  return String(v);
}

function intStr(n: number): string {
  return Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString();
}

/**
 * Python's `repr` of a float: the shortest digits that round-trip, in fixed
 * notation for decimal exponents −4 … 15, else `1e-05` / `1.5e+16`.
 *
 * @example
 * ```ts
 * import { floatRepr } from "./values.ts";
 * [floatRepr(2), floatRepr(0.00001), floatRepr(1e16)]; // ["2.0", "1e-05", "1e+16"]
 * ```
 */
export function floatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expStr] = x.toExponential().split("e");
  const exp = Number(expStr);
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  let body: string;
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    body = `${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  } else if (exp < 0) {
    body = `0.${"0".repeat(-exp - 1)}${digits}`;
  } else if (digits.length > exp + 1) {
    body = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  } else {
    body = `${digits}${"0".repeat(exp + 1 - digits.length)}.0`;
  }
  return neg ? `-${body}` : body;
}

const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

function strRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const c of s) {
    if (c === q || c === "\\") out += "\\" + c;
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (c !== " " && NON_PRINTABLE.test(c)) {
      const cp = c.codePointAt(0)!;
      out += cp < 0x100
        ? `\\x${cp.toString(16).padStart(2, "0")}`
        : cp < 0x10000
        ? `\\u${cp.toString(16).padStart(4, "0")}`
        : `\\U${cp.toString(16).padStart(8, "0")}`;
    } else out += c;
  }
  return out + q;
}

/**
 * Python's `a == b` (1 == 1.0 == True; lists and tuples never equal).
 *
 * @example
 * ```ts
 * import { pyEq } from "./values.ts";
 * pyEq([1, "a"], [true, "a"]); // true
 * ```
 */
export function pyEq(a: unknown, b: unknown): boolean {
  if (a instanceof Markup) a = a.s;
  if (b instanceof Markup) b = b.s;
  const na = isNumeric(a) || typeof a === "boolean", nb = isNumeric(b) || typeof b === "boolean";
  if (na || nb) return na && nb && num(a) === num(b);
  if (a instanceof Undefined || b instanceof Undefined) {
    return a instanceof Undefined && b instanceof Undefined;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return isTuple(a) === isTuple(b) && a.length === b.length && a.every((x, i) => pyEq(x, b[i]));
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !pyEq(v, b.get(k))) return false;
    return true;
  }
  return a === b || (a === undefined && b === null) || (a === null && b === undefined);
}

/**
 * Python's ordering of `a` and `b`: negative, zero or positive; a TypeError
 * for types Python does not order ("'<' not supported between …").
 *
 * @example
 * ```ts
 * import { pyCompare } from "./values.ts";
 * pyCompare("b", "a") > 0; // true
 * ```
 */
export function pyCompare(a: unknown, b: unknown, op = "<"): number {
  const na = isNumeric(a) || typeof a === "boolean", nb = isNumeric(b) || typeof b === "boolean";
  if (na && nb) return num(a) - num(b);
  if (typeof a === "string" && typeof b === "string") return codePointCompare(a, b);
  if (Array.isArray(a) && Array.isArray(b) && isTuple(a) === isTuple(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      if (!pyEq(a[i], b[i])) return pyCompare(a[i], b[i], op);
    }
    return a.length - b.length;
  }
  const t = (v: unknown) => typeName(v).replace(" object", "").replace("None", "NoneType");
  throw new TypeError(`'${op}' not supported between instances of '${t(a)}' and '${t(b)}'`);
}

function codePointCompare(a: string, b: string): number {
  if (a === b) return 0;
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i].codePointAt(0)! - y[i].codePointAt(0)!;
  }
  return x.length - y.length;
}

/**
 * A JSON value (from a caller: messages, tools) as a template value: objects
 * become dicts, `undefined` members are dropped.
 *
 * @example
 * ```ts
 * import { fromJs } from "./values.ts";
 * fromJs({ role: "user" }) instanceof Map; // true
 * ```
 */
export function fromJs(v: unknown): unknown {
  if (v === undefined || v === null) return null;
  if (Array.isArray(v)) return v.map(fromJs);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, fromJs(x)]));
  if (typeof v === "object" && !(v instanceof PyFloat) && !(v instanceof Namespace)) {
    const m = new Map<unknown, unknown>();
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (x !== undefined) m.set(k, fromJs(x));
    }
    return m;
  }
  return v;
}

/** json.dumps's options, as transformers' `tojson` filter passes them. */
export interface JsonOptions {
  /** Escape every non-ASCII character as `\uXXXX` (json.dumps's default; transformers' is false). */
  readonly ensureAscii?: boolean;
  /** Spaces (or the string) to indent by; undefined: one line. */
  readonly indent?: number | string;
  /** [item, key] separators; default `[", ", ": "]`, or `[",", ": "]` when indenting. */
  readonly separators?: readonly [string, string];
  /** Sort dict keys. */
  readonly sortKeys?: boolean;
}

/**
 * Python's `json.dumps(v, ensure_ascii=False, …)`.
 *
 * @example
 * ```ts
 * import { fromJs, pyJson } from "./values.ts";
 * pyJson(fromJs({ a: [1, "é"] })); // '{"a": [1, "é"]}'
 * ```
 */
export function pyJson(v: unknown, o: JsonOptions = {}): string {
  const indent = typeof o.indent === "number" ? " ".repeat(o.indent) : o.indent;
  const [item, key] = o.separators ?? (indent === undefined ? [", ", ": "] : [",", ": "]);
  const enc = (x: unknown, depth: number): string => {
    if (x === null) return "null";
    if (typeof x === "boolean") return x ? "true" : "false";
    if (isNumeric(x)) {
      const n = num(x);
      if (Number.isNaN(n)) return "NaN";
      if (!Number.isFinite(n)) return n > 0 ? "Infinity" : "-Infinity";
      return pyRepr(x);
    }
    if (typeof x === "string") return jsonStr(x, o.ensureAscii);
    if (x instanceof Markup) return jsonStr(x.s, o.ensureAscii);
    const nl = indent === undefined ? "" : "\n" + indent.repeat(depth + 1);
    const end = indent === undefined ? "" : "\n" + indent.repeat(depth);
    if (Array.isArray(x)) {
      if (x.length === 0) return "[]";
      return `[${nl}${x.map((e) => enc(e, depth + 1)).join(item + nl)}${end}]`;
    }
    if (x instanceof Map) {
      if (x.size === 0) return "{}";
      let entries = [...x].map(([k, e]) => [jsonKey(k), e] as const);
      if (o.sortKeys) entries = entries.sort((a, b) => codePointCompare(a[0], b[0]));
      const parts = entries.map(([k, e]) =>
        `${jsonStr(k, o.ensureAscii)}${key}${enc(e, depth + 1)}`
      );
      return `{${nl}${parts.join(item + nl)}${end}}`;
    }
    const t = x instanceof Undefined ? "Undefined" : typeName(x).replace(" object", "");
    throw new TypeError(`Object of type ${t} is not JSON serializable`);
  };
  return enc(v, 0);
}

function jsonKey(k: unknown): string {
  if (typeof k === "string") return k;
  if (k === null) return "null";
  if (typeof k === "boolean") return k ? "true" : "false";
  if (isNumeric(k)) return pyRepr(k);
  throw new TypeError(`keys must be str, int, float, bool or None, not ${typeName(k)}`);
}

function jsonStr(s: string, ascii = false): string {
  let out = '"';
  for (const c of s) {
    const cp = c.codePointAt(0)!;
    if (ascii && cp > 0x7e) {
      // UTF-16 units, as json.dumps writes astral characters: a surrogate pair.
      for (let i = 0; i < c.length; i++) {
        out += `\\u${c.charCodeAt(i).toString(16).padStart(4, "0")}`;
      }
      continue;
    }
    if (c === '"') out += '\\"';
    else if (c === "\\") out += "\\\\";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (c === "\b") out += "\\b";
    else if (c === "\f") out += "\\f";
    else if (cp < 0x20) out += `\\u${cp.toString(16).padStart(4, "0")}`;
    else out += c;
  }
  return out + '"';
}
