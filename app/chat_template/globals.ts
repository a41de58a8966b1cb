/**
 * The global functions transformers gives chat templates: Jinja's `range`,
 * `dict`, `namespace`, `cycler`, `joiner`, and transformers' own
 * `raise_exception` and `strftime_now`.
 *
 * @module
 */

import { Namespace, num, PyFunction, pyStr, rangeValue, typeName } from "./values.ts";

/**
 * The globals transformers gives chat templates: `range`, `dict`,
 * `namespace`, `raise_exception` (its message becomes the error's) and
 * `strftime_now` (`now`'s local time), with `raise` making the error.
 *
 * @example
 * ```ts ignore
 * const g = templateGlobals(() => new Date(), (m) => new Error(m));
 * ```
 */
export function templateGlobals(
  strftime: (fmt: string) => string,
  raise: (message: string) => Error,
): Map<string, unknown> {
  return new Map<string, unknown>([
    ["range", new PyFunction("range", (a) => pyRange(a))],
    [
      "dict",
      new PyFunction("dict", (a, kw) => new Map([...(a[0] instanceof Map ? a[0] : []), ...kw])),
    ],
    [
      "namespace",
      new PyFunction("namespace", (a, kw) => {
        const ns = new Namespace();
        if (a[0] instanceof Map) { for (const [k, v] of a[0]) ns.attrs.set(String(k), v); }
        for (const [k, v] of kw) ns.attrs.set(k, v);
        return ns;
      }),
    ],
    [
      "raise_exception",
      new PyFunction("raise_exception", (a) => {
        throw raise(pyStr(a[0]));
      }),
    ],
    ["strftime_now", new PyFunction("strftime_now", (a) => strftime(pyStr(a[0])))],
    ["cycler", new PyFunction("cycler", (a) => cycler(a))],
    ["joiner", new PyFunction("joiner", (a) => joiner(pyStr(a[0] ?? ", ")))],
    [
      "lipsum",
      new PyFunction("lipsum", () => {
        throw new TypeError("lipsum() writes random text, which Kiln's templates do not provide");
      }),
    ],
  ]);
}

function pyRange(a: unknown[]): number[] {
  const n = a.map((x) => {
    if (!(typeof x === "number" && Number.isInteger(x)) && typeof x !== "boolean") {
      throw new TypeError(
        `'${typeName(x).replace(" object", "")}' object cannot be interpreted as an integer`,
      );
    }
    return num(x);
  });
  const [start, stop, step] = n.length === 1 ? [0, n[0], 1] : [n[0], n[1], n[2] ?? 1];
  if (step === 0) throw new RangeError("range() arg 3 must not be zero");
  const len = Math.max(0, Math.ceil((stop - start) / step));
  // The sandbox's MAX_RANGE.
  if (len > 100000) {
    throw new RangeError(
      "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).",
    );
  }
  return rangeValue(start, stop, step);
}

/** Jinja's `cycler(…)`: `next()`, `current`, `reset()`. */
function cycler(items: unknown[]): Namespace {
  const ns = new Namespace();
  let pos = 0;
  ns.attrs.set("current", items[0]);
  ns.attrs.set(
    "next",
    new PyFunction("next", () => {
      const v = items[pos];
      pos = (pos + 1) % items.length;
      ns.attrs.set("current", items[pos]);
      return v;
    }),
  );
  ns.attrs.set(
    "reset",
    new PyFunction("reset", () => {
      pos = 0;
      ns.attrs.set("current", items[0]);
      return null;
    }),
  );
  return ns;
}

/** Jinja's `joiner(sep)`: "" on the first call, `sep` after. */
function joiner(sep: string): PyFunction {
  let used = false;
  return new PyFunction("joiner", () => {
    if (!used) {
      used = true;
      return "";
    }
    return sep;
  });
}
