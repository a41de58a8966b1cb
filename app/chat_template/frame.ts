/**
 * Template scopes as Jinja's compiler lays them out. A scope (the template,
 * a loop iteration, a macro call, a set/filter/with/scope block) is a frame
 * of variables falling back to the enclosing one — with one twist Jinja's
 * code generation has: a name a scope assigns at its own level before it
 * reads it there (`{% set x = … %}` outside any `if`) is that scope's own
 * variable from the scope's start. When an enclosing template scope mentions
 * the name too, that variable starts as the enclosing one's value; otherwise
 * it starts undefined, so a nested scope reading it before the assignment
 * sees it undefined, not the caller's `x` (`{% for m in ms %}{{ x }}{% endfor
 * %}{% set x = 1 %}` prints nothing for `x` even when the context has one).
 * The scope itself still reads the outer value before its own assignment.
 *
 * @module
 */

import type { Expr, Node, Target } from "./ast.ts";
import { Undefined } from "./values.ts";

/**
 * Variables of one scope, falling back to the enclosing one.
 *
 * @example
 * ```ts
 * import { Frame } from "./frame.ts";
 * const root = new Frame();
 * root.vars.set("x", 1);
 * new Frame(root).lookup("x"); // 1
 * ```
 */
export class Frame {
  /** The scope's own variables. */
  readonly vars: Map<string, unknown> = new Map();
  /** The enclosing scope. */
  readonly parent?: Frame;
  readonly #names?: ScopeNames;

  /** A scope inside `parent`, running `body` (whose own assignments it analyses). */
  constructor(parent?: Frame, body?: readonly Node[]) {
    this.parent = parent;
    this.#names = body && scopeNames(body);
  }

  /** `name`'s value, or Undefined (`inner`: asked from a nested scope). */
  lookup(name: string, inner = false): unknown {
    if (this.vars.has(name)) return this.vars.get(name);
    // Jinja aliases such a name to an enclosing scope's variable when one of those
    // mentions it; otherwise it starts undefined.
    if (inner && this.#names?.assignedFirst.has(name) && !this.parent?.mentions(name)) {
      return new Undefined(`'${name}' is undefined`);
    }
    return this.parent ? this.parent.lookup(name, true) : new Undefined(`'${name}' is undefined`);
  }

  /** Whether this scope or an enclosing template scope reads or assigns `name` at its own level. */
  mentions(name: string): boolean {
    if (!this.#names) return false;
    return this.#names.refs.has(name) || (this.parent?.mentions(name) ?? false);
  }
}

/** A scope body's names at its own level: all it reads or assigns, and those it assigns first. */
interface ScopeNames {
  readonly refs: ReadonlySet<string>;
  readonly assignedFirst: ReadonlySet<string>;
}

const ANALYSED = new WeakMap<readonly Node[], ScopeNames>();

/**
 * The names `body` reads or assigns at its own level (not in nested scopes),
 * and those it assigns (outside `if` branches) before it reads them there.
 */
function scopeNames(body: readonly Node[]): ScopeNames {
  let got = ANALYSED.get(body);
  if (!got) {
    const first = new Map<string, "load" | "store">();
    walk(body, first, false);
    got = {
      refs: new Set(first.keys()),
      assignedFirst: new Set([...first].filter(([, e]) => e === "store").map(([n]) => n)),
    };
    ANALYSED.set(body, got);
  }
  return got;
}

function walk(body: readonly Node[], first: Map<string, "load" | "store">, branch: boolean): void {
  const load = (e: unknown) => loads(e, first);
  // In an if branch a first assignment may not run: Jinja reads the outer value then.
  const store = (n: string) => {
    if (!first.has(n)) first.set(n, branch ? "load" : "store");
  };
  for (const node of body) {
    switch (node.t) {
      case "output":
        load(node.expr);
        break;
      case "if":
        for (const b of node.branches) load(b.test);
        for (const b of node.branches) walk(b.body, first, true);
        walk(node.else, first, true);
        break;
      case "for":
        load(node.iter);
        break;
      case "set":
        load(node.value);
        targets(node.target, store, load);
        break;
      case "setblock":
        load(node.filters);
        targets(node.target, store, load);
        break;
      case "macro":
        load(node.params);
        store(node.name);
        break;
      case "callblock":
        load(node.call);
        break;
      case "filterblock":
        load(node.filters);
        break;
      case "with":
        load(node.sets.map(([, e]) => e));
        break;
    }
  }
}

function targets(t: Target, store: (n: string) => void, load: (e: unknown) => void): void {
  if (t.t === "name") store(t.name);
  else if (t.t === "ns") load({ t: "name", name: t.name });
  else for (const i of t.items) targets(i, store, load);
}

/** Records the names an expression (or anything holding expressions) reads. */
function loads(tree: unknown, first: Map<string, "load" | "store">): void {
  if (typeof tree !== "object" || tree === null) return;
  const o = tree as Expr & Record<string, unknown>;
  if (o.t === "name" && typeof o.name === "string") {
    if (!first.has(o.name)) first.set(o.name, "load");
    return;
  }
  for (const v of Object.values(o)) loads(v, first);
}
