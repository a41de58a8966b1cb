/**
 * Renders a parsed template as Jinja does inside transformers'
 * `ImmutableSandboxedEnvironment`: Python's operators on Python values,
 * attribute lookup falling back to items (and items to attributes), scopes
 * per loop iteration and macro (hence `namespace()`), `loop` variables,
 * `break`/`continue`, and no way to change a list or dict in place.
 *
 * @module
 */

import type { Args, Expr, Node, Target } from "./parser.ts";
import {
  float,
  htmlEscape,
  isFloat,
  isNumeric,
  isTuple,
  Markup,
  Namespace,
  num,
  pyCompare,
  pyEq,
  PyFunction,
  pyStr,
  truthy,
  tuple,
  typeName,
  Undefined,
} from "./values.ts";
import { attribute, pyIter } from "./methods.ts";
import { percentFormat } from "./pyformat.ts";
import { callFilter, callTest } from "./builtins.ts";
import { LoopContext } from "./loop.ts";
import { Frame } from "./frame.ts";

export { Frame };

/**
 * An error a template raised itself (`raise_exception(msg)`): its message is
 * the template's text.
 *
 * @example
 * ```ts
 * import { TemplateError } from "./render.ts";
 * new TemplateError("Conversation roles must alternate").name; // "TemplateError"
 * ```
 */
export class TemplateError extends Error {
  /** An error with the template's message. */
  constructor(message: string) {
    super(message);
    this.name = "TemplateError";
  }
}

type Signal = undefined | "break" | "continue";

/**
 * Renders `body` with `frame`'s variables (the globals and the caller's
 * context at its root).
 *
 * @example
 * ```ts ignore
 * import { parseTemplate } from "./parser.ts";
 * import { Frame, render } from "./render.ts";
 * render(parseTemplate("{{ 1 + 1 }}"), new Frame()); // "2"
 * ```
 */
export function render(body: readonly Node[], frame: Frame): string {
  const out: string[] = [];
  run(body, frame, out);
  return out.join("");
}

function run(body: readonly Node[], frame: Frame, out: string[]): Signal {
  for (const node of body) {
    switch (node.t) {
      case "data":
        out.push(node.text);
        break;
      case "output":
        out.push(pyStr(evaluate(node.expr, frame)));
        break;
      case "if": {
        const branch = node.branches.find((b) => truthy(evaluate(b.test, frame)));
        const s = run(branch ? branch.body : node.else, frame, out);
        if (s) return s;
        break;
      }
      case "for": {
        // A break or continue in its else block belongs to the loop around it.
        const s = forLoop(node, frame, out);
        if (s) return s;
        break;
      }
      case "set":
        assign(node.target, evaluate(node.value, frame), frame);
        break;
      case "setblock": {
        // Its own scope (a set inside does not leak); break/continue leave it unassigned.
        const inner: string[] = [];
        const s = run(node.body, new Frame(frame, node.body), inner);
        if (s) return s;
        let v: unknown = inner.join("");
        for (const f of node.filters) v = applyFilter(f, v, frame);
        assign(node.target, v, frame);
        break;
      }
      case "macro":
        frame.vars.set(node.name, macro(node, frame));
        break;
      case "callblock":
        out.push(callBlock(node, frame));
        break;
      case "filterblock": {
        const inner: string[] = [];
        const s = run(node.body, new Frame(frame, node.body), inner);
        if (s) return s;
        let v: unknown = inner.join("");
        for (const f of node.filters) v = applyFilter(f, v, frame);
        out.push(pyStr(v));
        break;
      }
      case "with": {
        const inner = new Frame(frame, node.body);
        for (const [t, e] of node.sets) assign(t, evaluate(e, frame), inner);
        const s = run(node.body, inner, out);
        if (s) return s;
        break;
      }
      case "scope": {
        const s = run(node.body, new Frame(frame, node.body), out);
        if (s) return s;
        break;
      }
      case "break":
      case "continue":
        return node.t;
    }
  }
  return undefined;
}

function forLoop(
  node: Extract<Node, { t: "for" }>,
  frame: Frame,
  out: string[],
  iterable: unknown = evaluate(node.iter, frame),
  depth0 = 0,
): Signal {
  let items = pyIter(iterable, "for loop");
  const keep = (item: unknown) => {
    const f = new Frame(frame);
    assign(node.target, item, f);
    return truthy(evaluate(node.filter!, f));
  };
  // Jinja filters lazily, item by item as the loop reaches it (a body may change what the
  // filter reads, or break before it runs on a bad item), unless the body asks `loop` for
  // what needs the whole list.
  const lazy = node.filter !== undefined && !mentions(node.body, "loop") && !node.recursive;
  if (node.filter && !lazy) items = items.filter(keep);
  // The else block runs unless an iteration ran to its end (break and continue skip that).
  let completed = false;
  const recurse = node.recursive
    ? (sub: unknown) => {
      const inner: string[] = [];
      forLoop(node, frame, inner, sub, depth0 + 1);
      return inner.join("");
    }
    : undefined;
  const loop = new LoopContext(items, depth0, recurse);
  for (let i = 0; i < items.length; i++) {
    if (lazy && !keep(items[i])) continue;
    loop.index0 = i;
    const f = new Frame(frame, node.body);
    f.vars.set("loop", loop);
    assign(node.target, items[i], f);
    const s = run(node.body, f, out);
    if (s === "break") break;
    if (s === undefined) completed = true;
  }
  // The else block has its own scope too: a set inside it does not leak past the loop.
  return completed ? undefined : run(node.else, new Frame(frame, node.else), out);
}

function assign(target: Target, value: unknown, frame: Frame): void {
  if (target.t === "name") {
    frame.vars.set(target.name, value);
  } else if (target.t === "tuple") {
    const items = pyIter(value, "unpacking");
    if (items.length !== target.items.length) {
      throw new TypeError(
        `cannot unpack ${items.length} values into ${target.items.length} names`,
      );
    }
    target.items.forEach((t, i) => assign(t, items[i], frame));
  } else {
    const ns = frame.lookup(target.name);
    if (!(ns instanceof Namespace)) {
      throw new TypeError(`cannot assign attribute on non-namespace object '${target.name}'`);
    }
    ns.attrs.set(target.attr, value);
  }
}

function macro(node: Extract<Node, { t: "macro" }>, defined: Frame): PyFunction {
  const takes = (n: string) => mentions(node.body, n);
  const [varargs, kwargs, caller] = [takes("varargs"), takes("kwargs"), takes("caller")];
  return new PyFunction(node.name, (args, kw) => {
    const f = new Frame(defined, node.body);
    const rest = [...args], extra = new Map(kw);
    if (extra.has("caller")) {
      if (!caller) {
        throw new TypeError(`macro '${node.name}' was invoked with a caller it does not use`);
      }
      f.vars.set("caller", extra.get("caller"));
      extra.delete("caller");
    }
    if (!varargs && rest.length > node.params.length) {
      throw new TypeError(
        `macro '${node.name}' takes not more than ${node.params.length} argument(s)`,
      );
    }
    bindParams(node.params, rest, extra, f);
    if (!kwargs && extra.size) {
      throw new TypeError(
        `macro '${node.name}' takes no keyword argument '${[...extra.keys()][0]}'`,
      );
    }
    f.vars.set("varargs", tuple(rest));
    f.vars.set("kwargs", extra);
    return render(node.body, f);
  });
}

/** Binds `params` from `rest` (consumed) and `kw` (bound names removed) into `f`. */
function bindParams(
  params: readonly { readonly name: string; readonly default?: Expr }[],
  rest: unknown[],
  kw: Map<string, unknown>,
  f: Frame,
): void {
  for (const p of params) {
    if (rest.length) f.vars.set(p.name, rest.shift());
    else if (kw.has(p.name)) {
      f.vars.set(p.name, kw.get(p.name));
      kw.delete(p.name);
    } else if (p.default) f.vars.set(p.name, evaluate(p.default, f));
    else f.vars.set(p.name, new Undefined(`parameter '${p.name}' was not provided`));
  }
}

/** Whether `tree` reads variable `name` anywhere (Jinja gives macros `varargs` only then). */
function mentions(tree: unknown, name: string): boolean {
  if (Array.isArray(tree)) return tree.some((x) => mentions(x, name));
  if (typeof tree !== "object" || tree === null) return false;
  const o = tree as Record<string, unknown>;
  if (o.t === "name" && o.name === name) return true;
  return Object.values(o).some((v) => mentions(v, name));
}

function callBlock(node: Extract<Node, { t: "callblock" }>, frame: Frame): string {
  const call = node.call as Extract<Expr, { t: "call" }>;
  const caller = new PyFunction("caller", (args, kw) => {
    const f = new Frame(frame, node.body);
    bindParams(node.params, [...args], new Map(kw), f);
    return render(node.body, f);
  });
  const [args, kwargs] = callArgs(call.args, frame);
  kwargs.set("caller", caller);
  return pyStr(callValue(evaluate(call.fn, frame), args, kwargs));
}

/**
 * The value of `e` in `frame`.
 *
 * @example
 * ```ts ignore
 * evaluate({ t: "const", value: 1 }, new Frame()); // 1
 * ```
 */
export function evaluate(e: Expr, frame: Frame): unknown {
  switch (e.t) {
    case "const":
      return e.value;
    case "name":
      return frame.lookup(e.name);
    case "list":
      return e.items.map((x) => evaluate(x, frame));
    case "tuple":
      return tuple(e.items.map((x) => evaluate(x, frame)));
    case "dict":
      return new Map(e.pairs.map(([k, v]) => [evaluate(k, frame), evaluate(v, frame)]));
    case "getattr":
      return attribute(evaluate(e.obj, frame), e.name, "attr");
    case "getitem": {
      const obj = evaluate(e.obj, frame);
      if (e.index.t === "slice") return slice(obj, e.index, frame);
      return attribute(obj, evaluate(e.index, frame), "item");
    }
    case "slice":
      throw new TypeError("a slice outside of a subscript");
    case "call": {
      const fn = evaluate(e.fn, frame);
      const [args, kwargs] = callArgs(e.args, frame);
      return callValue(fn, args, kwargs);
    }
    case "filter":
      return applyFilter(e, e.value ? evaluate(e.value, frame) : undefined, frame);
    case "test": {
      const [args, kwargs] = callArgs(e.args, frame);
      return callTest(e.name, evaluate(e.value!, frame), args, kwargs, frame);
    }
    case "unary": {
      const v = evaluate(e.value, frame);
      if (e.op === "not") return !truthy(v);
      if (v instanceof Undefined) throw new TypeError(v.hint);
      if (!isNumeric(v) && typeof v !== "boolean") {
        throw new TypeError(`bad operand type for unary ${e.op}: '${typeName(v)}'`);
      }
      const n = e.op === "-" ? -num(v) : num(v);
      return isFloat(v) ? float(n) : n + 0; // + 0: an int has no -0
    }
    case "binary": {
      if (e.op === "and") {
        const l = evaluate(e.left, frame);
        return truthy(l) ? evaluate(e.right, frame) : l;
      }
      if (e.op === "or") {
        const l = evaluate(e.left, frame);
        return truthy(l) ? l : evaluate(e.right, frame);
      }
      return binary(e.op, evaluate(e.left, frame), evaluate(e.right, frame));
    }
    case "concat":
      return e.items.map((x) => pyStr(evaluate(x, frame))).join("");
    case "compare": {
      let left = evaluate(e.first, frame);
      for (const [op, expr] of e.ops) {
        const right = evaluate(expr, frame);
        if (!compare(op, left, right)) return false;
        left = right;
      }
      return true;
    }
    case "cond":
      if (truthy(evaluate(e.test, frame))) return evaluate(e.then, frame);
      return e.else ? evaluate(e.else, frame) : new Undefined(
        "the inline if-expression evaluated to false and no else section was defined",
      );
  }
}

function applyFilter(f: Expr, value: unknown, frame: Frame): unknown {
  const e = f as { readonly name: string; readonly args: Args };
  const [args, kwargs] = callArgs(e.args, frame);
  return callFilter(e.name, value, args, kwargs, frame);
}

function callArgs(a: Args, frame: Frame): [unknown[], Map<string, unknown>] {
  const args = a.pos.map((x) => evaluate(x, frame));
  if (a.star) args.push(...pyIter(evaluate(a.star, frame), "*args"));
  const kwargs = new Map<string, unknown>(a.kw.map(([k, v]) => [k, evaluate(v, frame)]));
  if (a.dstar) {
    const d = evaluate(a.dstar, frame);
    if (!(d instanceof Map)) throw new TypeError("argument after ** must be a mapping");
    for (const [k, v] of d) kwargs.set(String(k), v);
  }
  return [args, kwargs];
}

/**
 * Calls `fn` with Python arguments.
 *
 * @example
 * ```ts ignore
 * callValue(new PyFunction("f", () => 1), [], new Map()); // 1
 * ```
 */
export function callValue(fn: unknown, args: unknown[], kwargs: Map<string, unknown>): unknown {
  if (fn instanceof PyFunction) return fn.call(args, kwargs);
  if (fn instanceof Undefined) throw new TypeError(fn.hint);
  if (fn instanceof LoopContext) {
    if (!fn.recurse) {
      throw new TypeError("'LoopContext' object is not callable (the loop is not recursive)");
    }
    return fn.recurse(args[0]);
  }
  throw new TypeError(`'${typeName(fn).replace(" object", "")}' object is not callable`);
}

function slice(obj: unknown, s: Extract<Expr, { t: "slice" }>, frame: Frame): unknown {
  const bound = (x: Expr | undefined) => {
    if (!x) return undefined;
    const v = evaluate(x, frame);
    if (v === null) return undefined;
    if (typeof v !== "number" && typeof v !== "boolean") {
      throw new TypeError("slice indices must be integers or None");
    }
    return num(v);
  };
  if (obj instanceof Markup) obj = obj.s;
  const items = typeof obj === "string" ? [...obj] : Array.isArray(obj) ? obj : undefined;
  if (!items) {
    if (obj instanceof Undefined) throw new TypeError(obj.hint);
    // Jinja compiles a slice to Python's own subscript, not its forgiving getitem.
    throw new TypeError(`'${typeName(obj).replace(" object", "")}' object is not subscriptable`);
  }
  const n = items.length;
  const step = bound(s.step) ?? 1;
  if (step === 0) throw new RangeError("slice step cannot be zero");
  const clamp = (v: number | undefined, dflt: number, lo: number, hi: number) => {
    if (v === undefined) return dflt;
    if (v < 0) v += n;
    return Math.min(Math.max(v, lo), hi);
  };
  const picked: unknown[] = [];
  if (step > 0) {
    const a = clamp(bound(s.start), 0, 0, n), b = clamp(bound(s.stop), n, 0, n);
    for (let i = a; i < b; i += step) picked.push(items[i]);
  } else {
    const a = clamp(bound(s.start), n - 1, -1, n - 1), b = clamp(bound(s.stop), -1, -1, n - 1);
    for (let i = a; i > b; i += step) picked.push(items[i]);
  }
  if (typeof obj === "string") return picked.join("");
  return isTuple(obj) ? tuple(picked) : picked;
}

function compare(op: string, a: unknown, b: unknown): boolean {
  switch (op) {
    case "==":
      return pyEq(a, b);
    case "!=":
      return !pyEq(a, b);
    case "in":
      return contains(b, a);
    case "not in":
      return !contains(b, a);
    case "<":
      return pyCompare(a, b, op) < 0;
    case "<=":
      return pyCompare(a, b, op) <= 0;
    case ">":
      return pyCompare(a, b, op) > 0;
    default:
      return pyCompare(a, b, op) >= 0;
  }
}

/**
 * Python's `item in container`.
 *
 * @example
 * ```ts ignore
 * contains("abc", "b"); // true
 * ```
 */
export function contains(container: unknown, item: unknown): boolean {
  if (container instanceof Markup) container = container.s;
  if (item instanceof Markup) item = item.s;
  if (typeof container === "string") {
    if (typeof item !== "string") {
      throw new TypeError(
        `'in <string>' requires string as left operand, not ${
          typeName(item).replace(" object", "")
        }`,
      );
    }
    return container.includes(item);
  }
  if (Array.isArray(container)) return container.some((x) => pyEq(x, item));
  if (container instanceof Map) {
    if (container.has(item)) return true;
    for (const k of container.keys()) if (pyEq(k, item)) return true;
    return false;
  }
  if (container instanceof Undefined) return false;
  throw new TypeError(
    `argument of type '${typeName(container).replace(" object", "")}' is not iterable`,
  );
}

function binary(op: string, a: unknown, b: unknown): unknown {
  if (a instanceof Undefined) throw new TypeError(a.hint);
  if (b instanceof Undefined) throw new TypeError(b.hint);
  const numeric = (v: unknown) => isNumeric(v) || typeof v === "boolean";
  const anyFloat = isFloat(a) || isFloat(b);
  const unsupported = () =>
    new TypeError(
      `unsupported operand type(s) for ${op}: '${typeName(a).replace(" object", "")}' and '${
        typeName(b).replace(" object", "")
      }'`,
    );
  if (op === "%" && typeof a === "string") return percentFormat(a, b);
  if (op === "+" && (a instanceof Markup || b instanceof Markup)) {
    const text = (
      v: unknown,
    ) => (typeof v === "string" || v instanceof Markup ? htmlEscape(v).s : undefined);
    const x = text(a), y = text(b);
    if (x !== undefined && y !== undefined) return new Markup(x + y);
  }
  if (numeric(a) && numeric(b)) {
    const x = num(a), y = num(b);
    const ret = (n: number) => (anyFloat ? float(n) : n);
    switch (op) {
      case "+":
        return ret(x + y);
      case "-":
        return ret(x - y);
      case "*":
        return ret(x * y);
      case "/":
        if (y === 0) throw new RangeError("division by zero");
        return float(x / y);
      case "//":
        if (y === 0) throw new RangeError("integer division or modulo by zero");
        return ret(anyFloat ? floatFloorDiv(x, y) : Math.floor(x / y));
      case "%": {
        if (y === 0) throw new RangeError("integer division or modulo by zero");
        // Python's: fmod, moved to the divisor's sign; a zero takes the divisor's sign.
        let m = x % y;
        if (m !== 0 && (y < 0) !== (m < 0)) m += y;
        else if (m === 0) m = anyFloat && y < 0 ? -0 : 0;
        return ret(m);
      }
      case "**":
        if (!anyFloat && y < 0) return float(x ** y);
        return ret(x ** y);
    }
  }
  if (op === "+") {
    if (typeof a === "string" && typeof b === "string") return a + b;
    if (Array.isArray(a) && Array.isArray(b) && isTuple(a) === isTuple(b)) {
      return isTuple(a) ? tuple([...a, ...b]) : [...a, ...b];
    }
  }
  if (op === "*") {
    if (a instanceof Markup) a = a.s;
    if (b instanceof Markup) b = b.s;
    const int = (v: unknown) => (typeof v === "boolean" ? Number(v) : v);
    const [seq, n] = typeof int(b) === "number" ? [a, int(b)] : [b, int(a)];
    if (typeof n === "number" && Number.isInteger(n)) {
      if (typeof seq === "string") return seq.repeat(Math.max(0, n));
      if (Array.isArray(seq)) {
        const r = Array.from({ length: Math.max(0, n) }, () => seq).flat();
        return isTuple(seq) ? tuple(r) : r;
      }
    }
  }
  throw unsupported();
}

/**
 * Python's float `x // y` (`float_floor_div`): from fmod, not from the rounded
 * quotient, so 5.1 // 0.3 is 16.0 where floor(5.1 / 0.3) is 17.
 */
function floatFloorDiv(x: number, y: number): number {
  let mod = x % y;
  let div = (x - mod) / y;
  if (mod && (y < 0) !== (mod < 0)) {
    mod += y;
    div -= 1;
  }
  if (!div) return Math.sign(x / y) < 0 || Object.is(x / y, -0) ? -0 : 0;
  let q = Math.floor(div);
  if (div - q > 0.5) q += 1;
  return q;
}
