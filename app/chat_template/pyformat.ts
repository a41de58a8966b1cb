/**
 * Python's string formatting as templates reach it: `"%s" % x` (and the
 * `format` filter), `"{}".format(x)`, and `strftime` for `strftime_now`.
 *
 * @module
 */

import { isFloat, isNumeric, isTuple, num, pyRepr, pyStr, typeName } from "./values.ts";

const PERCENT = /%(?:\(([^)]*)\))?([-+ 0#]*)(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([diouxXeEfFgGcrsa%])/g;

/**
 * Python's `fmt % args` (a tuple spreads over the conversions, a dict feeds
 * `%(name)s`).
 *
 * @example
 * ```ts
 * import { percentFormat } from "./pyformat.ts";
 * import { tuple } from "./values.ts";
 * percentFormat("%s has %d items (%.1f%%)", tuple(["cart", 3, 42.25])); // "cart has 3 items (42.2%)"
 * ```
 */
export function percentFormat(fmt: string, args: unknown): string {
  const list = isTuple(args) ? [...(args as unknown[])] : [args];
  const mapping = args instanceof Map ? args : undefined;
  let used = 0;
  const next = () => {
    if (used >= list.length) throw new TypeError("not enough arguments for format string");
    return list[used++];
  };
  const out = fmt.replace(PERCENT, (_m, key, flags: string, w, p, type: string) => {
    if (type === "%") return "%";
    const width = w === "*" ? num(next()) : w ? Number(w) : 0;
    const prec = p === "*" ? num(next()) : p !== undefined ? Number(p) : undefined;
    const v = key !== undefined ? mapping?.get(key) : next();
    if (key !== undefined && mapping === undefined) {
      throw new TypeError("format requires a mapping");
    }
    return padded(convert(v, type, flags, prec), width, flags);
  });
  if (mapping === undefined && used < list.length) {
    throw new TypeError("not all arguments converted during string formatting");
  }
  return out;
}

function convert(v: unknown, type: string, flags: string, prec: number | undefined): string {
  const sign = (n: number, s: string) =>
    n < 0 || Object.is(n, -0)
      ? s
      : flags.includes("+")
      ? "+" + s
      : flags.includes(" ")
      ? " " + s
      : s;
  switch (type) {
    case "s":
    case "r":
    case "a": {
      const s = type === "s" ? pyStr(v) : pyRepr(v);
      return prec === undefined ? s : [...s].slice(0, prec).join("");
    }
    case "c":
      return typeof v === "number" ? String.fromCodePoint(v) : pyStr(v);
  }
  if (!isNumeric(v) && typeof v !== "boolean") {
    throw new TypeError(
      `%${type} format: a real number is required, not ${typeName(v).replace(" object", "")}`,
    );
  }
  const n = num(v);
  switch (type) {
    case "d":
    case "i":
    case "u":
      return sign(n, String(Math.abs(Math.trunc(n))).padStart(prec ?? 0, "0")).replace(
        /^(?=\d)/,
        n < 0 ? "-" : "",
      );
    case "x":
    case "X":
    case "o": {
      const base = type === "o" ? 8 : 16;
      let s = Math.abs(Math.trunc(n)).toString(base);
      if (flags.includes("#")) s = (type === "o" ? "0o" : "0x") + s;
      if (type === "X") s = s.toUpperCase();
      return n < 0 ? "-" + s : sign(n, s);
    }
    default:
      return sign(n, floatFormat(Math.abs(n), type, prec ?? 6, flags.includes("#"))).replace(
        /^(?=[\dni])/,
        n < 0 ? "-" : "",
      );
  }
}

/** A non-negative float in `f`, `e` or `g` notation as Python writes it. */
function floatFormat(x: number, type: string, prec: number, alt: boolean): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : "inf";
  const upper = type === type.toUpperCase();
  const t = type.toLowerCase();
  let s: string;
  if (t === "f") s = fixed(x, prec);
  else if (t === "e") s = expFormat(x, prec);
  else {
    const p = prec === 0 ? 1 : prec;
    const exp = x === 0 ? 0 : Number(expFormat(x, p - 1).split("e")[1]);
    s = exp < -4 || exp >= p ? expFormat(x, p - 1) : fixed(x, Math.max(0, p - 1 - exp));
    if (!alt) s = s.replace(/(\.\d*?)0+(?=e|$)/, "$1").replace(/\.(?=e|$)/, "");
  }
  return upper ? s.toUpperCase() : s;
}

function expFormat(x: number, prec: number): string {
  let e = x === 0 ? 0 : Math.floor(Math.log10(x));
  let q = roundScaled(x, prec - e);
  const lo = 10n ** BigInt(prec), hi = lo * 10n;
  if (x !== 0 && q >= hi) q = roundScaled(x, prec - ++e);
  else if (x !== 0 && q < lo) q = roundScaled(x, prec - --e);
  const d = q.toString();
  const m = prec > 0 ? `${d[0]}.${d.slice(1)}` : d;
  return `${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
}

/** `x ≥ 0` with `p` decimals, rounded half to even on its exact binary value (as CPython). */
function fixed(x: number, p: number): string {
  const d = roundScaled(x, p).toString().padStart(p + 1, "0");
  return p > 0 ? `${d.slice(0, -p)}.${d.slice(-p)}` : d;
}

/** round(x · 10^k) for finite `x` ≥ 0, half to even, computed exactly. */
function roundScaled(x: number, k: number): bigint {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  if (exp !== 0) mant |= 1n << 52n;
  const e = (exp === 0 ? 1 : exp) - 1075;
  // x · 10^k = mant · 2^e · 10^k = num / den exactly.
  let num = mant, den = 1n;
  if (e >= 0) num <<= BigInt(e);
  else den <<= BigInt(-e);
  if (k >= 0) num *= 10n ** BigInt(k);
  else den *= 10n ** BigInt(-k);
  const q = num / den, r2 = (num % den) * 2n;
  return r2 > den || (r2 === den && q % 2n === 1n) ? q + 1n : q;
}

/**
 * Python's `round(x, ndigits)` for a float: half to even on the exact value.
 *
 * @example
 * ```ts
 * import { pyRound } from "./pyformat.ts";
 * [pyRound(2.5, 0), pyRound(2.675, 2)]; // [2, 2.67]
 * ```
 */
export function pyRound(x: number, ndigits: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const q = roundScaled(Math.abs(x), ndigits);
  const v = ndigits >= 0 ? Number(`${q}e-${ndigits}`) : Number(`${q}e${-ndigits}`);
  return x < 0 ? -v : v;
}

function padded(s: string, width: number, flags: string): string {
  const n = [...s].length;
  if (n >= width) return s;
  if (flags.includes("-")) return s + " ".repeat(width - n);
  if (flags.includes("0") && /^[-+ ]?(?:0[xo])?[\d.]/.test(s)) {
    const m = /^([-+ ]?(?:0[xo])?)(.*)$/.exec(s)!;
    return m[1] + "0".repeat(width - n) + m[2];
  }
  return " ".repeat(width - n) + s;
}

/**
 * Python's `fmt.format(*args, **kwargs)`: `{}`, `{0}`, `{name}`, `{0.attr}`,
 * `{0[key]}`, `!r`/`!s`, and format specs (fill, align, sign, width, `,`,
 * precision, type).
 *
 * @example
 * ```ts
 * import { strFormat } from "./pyformat.ts";
 * strFormat("{} is {:>5}!", ["x", "ok"], new Map()); // "x is    ok!"
 * ```
 */
export function strFormat(fmt: string, args: unknown[], kwargs: Map<string, unknown>): string {
  let auto = 0;
  return fmt.replace(
    /\{\{|\}\}|\{([^{}!:]*)(?:!([rsa]))?(?::([^{}]*))?\}/g,
    (m, field, conv, spec) => {
      if (m === "{{") return "{";
      if (m === "}}") return "}";
      const [head, ...path] = (field as string).split(/(?=[.[])/);
      let v: unknown = head === ""
        ? args[auto++]
        : /^\d+$/.test(head)
        ? args[Number(head)]
        : kwargs.get(head);
      if (v === undefined) {
        throw new RangeError(
          `format: no value for field ${JSON.stringify(head === "" ? auto - 1 : head)}`,
        );
      }
      for (const p of path) {
        const key = p.startsWith(".") ? p.slice(1) : p.slice(1, -1);
        v = v instanceof Map ? v.get(key) : Array.isArray(v) ? v[Number(key)] : undefined;
      }
      if (conv === "r" || conv === "a") v = pyRepr(v);
      else if (conv === "s") v = pyStr(v);
      return formatSpec(v, spec ?? "");
    },
  );
}

/**
 * `format(v, spec)` for the spec mini-language's common parts.
 *
 * @example
 * ```ts
 * import { formatSpec } from "./pyformat.ts";
 * formatSpec(3.14159, ".2f"); // "3.14"
 * ```
 */
export function formatSpec(v: unknown, spec: string): string {
  if (spec === "") return pyStr(v);
  const m = /^(?:(.)?([<>^=]))?([-+ ])?(#)?(0)?(\d+)?([,_])?(?:\.(\d+))?([bcdeEfFgGnosxX%])?$/su
    .exec(spec);
  if (!m) throw new RangeError(`format: invalid format specifier '${spec}'`);
  const [, fill0, align0, signFlag, alt, zero, w, group, p, type] = m;
  const width = w ? Number(w) : 0;
  let s: string;
  if (typeof v === "string" || (!isNumeric(v) && typeof v !== "boolean")) {
    s = pyStr(v);
    if (p !== undefined) s = [...s].slice(0, Number(p)).join("");
  } else {
    const n = num(v);
    const t = type ?? (isFloat(v) && p !== undefined ? "g" : isFloat(v) ? "" : "d");
    let body: string;
    if (t === "") body = pyStr(Math.abs(n) === n ? v : -n);
    else if ("dn".includes(t)) body = String(Math.abs(Math.trunc(n)));
    else if ("xXob".includes(t)) {
      body = Math.abs(Math.trunc(n)).toString(t === "o" ? 8 : t === "b" ? 2 : 16);
      if (alt) body = `0${t.toLowerCase()}` + body;
      if (t === "X") body = body.toUpperCase();
    } else if (t === "%") {
      body = floatFormat(Math.abs(n) * 100, "f", p ? Number(p) : 6, false) + "%";
    } else {body = floatFormat(
        Math.abs(n),
        t,
        p ? Number(p) : t === "g" || t === "G" ? 6 : 6,
        Boolean(alt),
      );}
    if (group) body = body.replace(/^(\d+)/, (d) => d.replace(/\B(?=(\d{3})+$)/g, group));
    const sign = n < 0 || Object.is(n, -0)
      ? "-"
      : signFlag === "+"
      ? "+"
      : signFlag === " "
      ? " "
      : "";
    if (zero && !align0 && width > 0) {
      return sign + body.padStart(width - sign.length, "0");
    }
    s = sign + body;
  }
  const n = [...s].length;
  if (n >= width) return s;
  const fill = fill0 ?? (zero ? "0" : " ");
  const align = align0 ??
    (typeof v === "string" || (!isNumeric(v) && typeof v !== "boolean") ? "<" : ">");
  const total = width - n;
  if (align === "<") return s + fill.repeat(total);
  if (align === ">" || align === "=") return fill.repeat(total) + s;
  const left = Math.floor(total / 2);
  return fill.repeat(left) + s + fill.repeat(total - left);
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/**
 * C's `strftime` as Python on glibc runs it (`%-d` unpadded too), for the
 * local time of `d`.
 *
 * @example
 * ```ts
 * import { strftime } from "./pyformat.ts";
 * strftime(new Date(2026, 6, 26, 12), "%d %b %Y"); // "26 Jul 2026"
 * ```
 */
export function strftime(d: Date, fmt: string): string {
  const two = (n: number, flag: string) => (flag === "-" ? String(n) : String(n).padStart(2, "0"));
  const start = new Date(d.getFullYear(), 0, 1);
  const yday = Math.round(
    (new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() - start.getTime()) / 864e5,
  ) + 1;
  return fmt.replace(/%(-?)([a-zA-Z%])/g, (m, flag: string, c: string) => {
    const h = d.getHours();
    switch (c) {
      case "a":
        return DAYS[d.getDay()].slice(0, 3);
      case "A":
        return DAYS[d.getDay()];
      case "b":
      case "h":
        return MONTHS[d.getMonth()].slice(0, 3);
      case "B":
        return MONTHS[d.getMonth()];
      case "d":
        return two(d.getDate(), flag);
      case "e":
        return String(d.getDate()).padStart(2, " ");
      case "m":
        return two(d.getMonth() + 1, flag);
      case "y":
        return two(d.getFullYear() % 100, flag);
      case "Y":
        return String(d.getFullYear());
      case "H":
        return two(h, flag);
      case "I":
        return two(h % 12 === 0 ? 12 : h % 12, flag);
      case "p":
        return h < 12 ? "AM" : "PM";
      case "M":
        return two(d.getMinutes(), flag);
      case "S":
        return two(d.getSeconds(), flag);
      case "j":
        return flag === "-" ? String(yday) : String(yday).padStart(3, "0");
      case "w":
        return String(d.getDay());
      case "u":
        return String(d.getDay() === 0 ? 7 : d.getDay());
      case "%":
        return "%";
      default:
        return m;
    }
  });
}
