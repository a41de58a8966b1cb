/**
 * Jinja's grammar, as its own parser reads it (operator precedence, filters
 * and tests binding tighter than arithmetic, `a if b else c`, slices, tuples
 * without parentheses in `for` and `set` targets), into a small tree.
 *
 * @module
 */

import { templateSyntaxError, type Token, tokenize } from "./lexer.ts";
import { float } from "./values.ts";
import type { Args, Expr, Node, Target } from "./ast.ts";

export type { Args, Expr, Node, Target } from "./ast.ts";

const COMPARE = new Set(["==", "!=", "<", "<=", ">", ">="]);

/**
 * The parsed body of a template (a SyntaxError naming the line when it is
 * not valid Jinja).
 *
 * @example
 * ```ts
 * import { parseTemplate } from "./parser.ts";
 * parseTemplate("{% if x %}a{% endif %}")[0].t; // "if"
 * ```
 */
export function parseTemplate(source: string): Node[] {
  const p = new Parser(tokenize(source));
  const body = p.subparse([]);
  p.expect("eof");
  return body;
}

class Parser {
  #tokens: Token[];
  #i = 0;
  #loops = 0;
  constructor(tokens: Token[]) {
    this.#tokens = tokens;
  }

  get cur(): Token {
    return this.#tokens[this.#i];
  }
  look(n = 1): Token {
    return this.#tokens[Math.min(this.#i + n, this.#tokens.length - 1)];
  }
  next(): Token {
    return this.#tokens[this.#i++];
  }
  is(kind: Token["kind"], value?: string): boolean {
    return this.cur.kind === kind && (value === undefined || this.cur.value === value);
  }
  skip(kind: Token["kind"], value?: string): boolean {
    if (!this.is(kind, value)) return false;
    this.#i++;
    return true;
  }
  fail(message: string, line = this.cur.line): never {
    throw templateSyntaxError(message, line);
  }
  expect(kind: Token["kind"], value?: string): Token {
    if (this.is(kind, value)) return this.next();
    const want = value ?? kind.replace("_", " ");
    const got = this.cur.kind === "eof"
      ? "end of template"
      : `'${this.cur.value || this.cur.kind}'`;
    return this.fail(`expected '${want}', got ${got}`);
  }
  name(): string {
    return this.expect("name").value as string;
  }

  /** Statements up to a block tag named in `ends` (left unconsumed) or the end. */
  subparse(ends: readonly string[]): Node[] {
    const body: Node[] = [];
    while (true) {
      const tok = this.cur;
      if (tok.kind === "eof") {
        if (ends.length) this.fail(`unexpected end of template, expected ${ends.join(" or ")}`);
        return body;
      }
      if (tok.kind === "data") {
        body.push({ t: "data", text: this.next().value as string });
      } else if (tok.kind === "var_begin") {
        this.next();
        body.push({ t: "output", expr: this.tuple({ condexpr: true }), line: tok.line });
        this.expect("var_end");
      } else if (tok.kind === "block_begin") {
        const tag = this.look();
        if (tag.kind === "name" && ends.includes(tag.value as string)) {
          this.next();
          return body;
        }
        this.next();
        body.push(this.statement());
      } else this.fail(`unexpected '${tok.value}'`);
    }
  }

  /** `parse()` with no loop around it (a body compiled as a function of its own). */
  outsideLoops<T>(parse: () => T): T {
    const loops = this.#loops;
    this.#loops = 0;
    try {
      return parse();
    } finally {
      this.#loops = loops;
    }
  }

  /** The end tag named `name`: `{% name %}` after its body. */
  end(name: string): void {
    this.expect("name", name);
    this.expect("block_end");
  }

  statement(): Node {
    const tok = this.cur;
    if (tok.kind !== "name") this.fail("tag name expected");
    const line = tok.line;
    switch (this.next().value) {
      case "if": {
        const branches: { test: Expr; body: Node[] }[] = [];
        let test = this.tuple({ condexpr: false });
        while (true) {
          this.expect("block_end");
          const body = this.subparse(["elif", "else", "endif"]);
          branches.push({ test, body });
          const which = this.next().value;
          if (which === "elif") {
            test = this.tuple({ condexpr: false });
            continue;
          }
          if (which === "else") {
            this.expect("block_end");
            const other = this.subparse(["endif"]);
            this.end("endif");
            return { t: "if", branches, else: other };
          }
          this.expect("block_end");
          return { t: "if", branches, else: [] };
        }
      }
      case "for": {
        const target = this.target(false);
        this.expect("name", "in");
        const iter = this.tuple({ condexpr: false, ends: ["recursive", "if"] });
        const filter = this.skip("name", "if") ? this.expression() : undefined;
        const recursive = this.skip("name", "recursive");
        this.expect("block_end");
        this.#loops++;
        const body = this.subparse(["endfor", "else"]);
        this.#loops--;
        let other: Node[] = [];
        if (this.next().value === "else") {
          this.expect("block_end");
          other = this.subparse(["endfor"]);
          this.end("endfor");
        } else this.expect("block_end");
        return { t: "for", target, iter, filter, body, else: other, recursive, line };
      }
      case "set": {
        const target = this.target(true);
        if (this.skip("op", "=")) {
          const value = this.tuple({ condexpr: true });
          this.expect("block_end");
          return { t: "set", target, value, line };
        }
        const filters = this.filterChain(false);
        this.expect("block_end");
        const body = this.subparse(["endset"]);
        this.end("endset");
        return { t: "setblock", target, filters, body };
      }
      case "macro": {
        const name = this.name();
        const params = this.signature();
        this.expect("block_end");
        const body = this.outsideLoops(() => this.subparse(["endmacro"]));
        this.end("endmacro");
        return { t: "macro", name, params, body };
      }
      case "call": {
        const params = this.is("op", "(") ? this.signature() : [];
        const call = this.expression();
        if (call.t !== "call") this.fail("expected a call after 'call'", line);
        this.expect("block_end");
        // A call block's body is a function of its own: no loop around it.
        const body = this.outsideLoops(() => this.subparse(["endcall"]));
        this.end("endcall");
        return { t: "callblock", params, call, body };
      }
      case "filter": {
        const filters = this.filterChain(true);
        if (filters.length === 0) this.fail("a filter block needs a filter");
        this.expect("block_end");
        const body = this.subparse(["endfilter"]);
        this.end("endfilter");
        return { t: "filterblock", filters, body };
      }
      case "with": {
        const sets: [Target, Expr][] = [];
        while (!this.is("block_end")) {
          if (sets.length) this.expect("op", ",");
          const target = this.target(false);
          this.expect("op", "=");
          sets.push([target, this.expression()]);
        }
        this.expect("block_end");
        const body = this.subparse(["endwith"]);
        this.end("endwith");
        return { t: "with", sets, body };
      }
      case "generation": {
        // transformers' AssistantTracker: marks assistant text, renders its body as is.
        this.expect("block_end");
        // Its extension parses the body on its own: break/continue there are outside a loop.
        const body = this.outsideLoops(() => this.subparse(["endgeneration"]));
        this.end("endgeneration");
        return { t: "scope", body };
      }
      case "break":
      case "continue": {
        if (this.#loops === 0) this.fail(`'${tok.value}' outside of a loop`, line);
        this.expect("block_end");
        return { t: tok.value as "break" | "continue", line };
      }
      default:
        return this.fail(
          `unknown tag '${tok.value}'` +
            (["include", "import", "from", "extends", "block", "do"].includes(
                tok.value as string,
              )
              ? " (not available to chat templates)"
              : ""),
          line,
        );
    }
  }

  /** `{% set ns.attr %}`, a name, or names separated by commas. */
  target(withNamespace: boolean): Target {
    if (withNamespace && this.look().kind === "op" && this.look().value === ".") {
      const name = this.name();
      this.next();
      return { t: "ns", name, attr: this.name() };
    }
    const items: Target[] = [];
    do {
      if (this.skip("op", "(")) {
        items.push(this.target(false));
        this.expect("op", ")");
      } else items.push({ t: "name", name: this.name() });
    } while (this.skip("op", ",") && this.is("name"));
    return items.length === 1 ? items[0] : { t: "tuple", items };
  }

  /** `f(args)|g` after a `filter` tag (`inline`), `|f|g` after a block `set`'s target. */
  filterChain(inline: boolean): Expr[] {
    const out: Expr[] = [];
    while (inline || this.skip("op", "|")) {
      inline = false;
      out.push(this.filter(undefined));
    }
    return out;
  }

  /** A macro's or call block's parameters: `(a, b=1)`. */
  signature(): { name: string; default?: Expr }[] {
    const params: { name: string; default?: Expr }[] = [];
    this.expect("op", "(");
    while (!this.is("op", ")")) {
      if (params.length) this.expect("op", ",");
      if (this.is("op", ")")) break;
      const p = this.name();
      params.push(this.skip("op", "=") ? { name: p, default: this.expression() } : { name: p });
    }
    this.expect("op", ")");
    return params;
  }

  /** Expressions separated by commas (a tuple when there is a comma). */
  tuple(o: { condexpr: boolean; ends?: string[]; explicit?: boolean }): Expr {
    const items: Expr[] = [];
    let isTuple = false;
    while (true) {
      if (items.length) this.expect("op", ",");
      const c = this.cur;
      if (
        c.kind === "var_end" || c.kind === "block_end" || (c.kind === "op" && c.value === ")") ||
        (c.kind === "name" && o.ends?.includes(c.value as string))
      ) break;
      items.push(o.condexpr ? this.expression() : this.or());
      if (this.is("op", ",")) isTuple = true;
      else break;
    }
    if (!isTuple) {
      if (items.length) return items[0];
      if (!o.explicit) {
        this.fail(`expected an expression, got '${this.cur.value || this.cur.kind}'`);
      }
    }
    return { t: "tuple", items };
  }

  expression(): Expr {
    let e = this.or();
    while (this.skip("name", "if")) {
      const test = this.or();
      const other = this.skip("name", "else") ? this.expression() : undefined;
      e = { t: "cond", test, then: e, else: other };
    }
    return e;
  }

  or(): Expr {
    let left = this.and();
    while (this.skip("name", "or")) left = { t: "binary", op: "or", left, right: this.and() };
    return left;
  }

  and(): Expr {
    let left = this.not();
    while (this.skip("name", "and")) left = { t: "binary", op: "and", left, right: this.not() };
    return left;
  }

  not(): Expr {
    if (this.skip("name", "not")) return { t: "unary", op: "not", value: this.not() };
    return this.compare();
  }

  compare(): Expr {
    const first = this.math1();
    const ops: [string, Expr][] = [];
    while (true) {
      if (this.cur.kind === "op" && COMPARE.has(this.cur.value as string)) {
        ops.push([this.next().value as string, this.math1()]);
      } else if (this.skip("name", "in")) ops.push(["in", this.math1()]);
      else if (
        this.is("name", "not") && this.look().kind === "name" && this.look().value === "in"
      ) {
        this.next();
        this.next();
        ops.push(["not in", this.math1()]);
      } else break;
    }
    return ops.length ? { t: "compare", first, ops } : first;
  }

  math1(): Expr {
    let left = this.concat();
    while (this.is("op", "+") || this.is("op", "-")) {
      const op = this.next().value as string;
      left = { t: "binary", op, left, right: this.concat() };
    }
    return left;
  }

  concat(): Expr {
    const items = [this.math2()];
    while (this.skip("op", "~")) items.push(this.math2());
    return items.length === 1 ? items[0] : { t: "concat", items };
  }

  math2(): Expr {
    let left = this.pow();
    while (["*", "/", "//", "%"].some((o) => this.is("op", o))) {
      const op = this.next().value as string;
      left = { t: "binary", op, left, right: this.pow() };
    }
    return left;
  }

  pow(): Expr {
    let left = this.unary(true);
    while (this.skip("op", "**")) left = { t: "binary", op: "**", left, right: this.unary(true) };
    return left;
  }

  unary(withFilter: boolean): Expr {
    let node: Expr;
    if (this.skip("op", "-")) node = { t: "unary", op: "-", value: this.unary(false) };
    else if (this.skip("op", "+")) node = { t: "unary", op: "+", value: this.unary(false) };
    else node = this.primary();
    node = this.postfix(node);
    return withFilter ? this.filterExpr(node) : node;
  }

  primary(): Expr {
    const tok = this.cur;
    switch (tok.kind) {
      case "name": {
        this.next();
        const v = tok.value;
        if (v === "true" || v === "True") return { t: "const", value: true };
        if (v === "false" || v === "False") return { t: "const", value: false };
        if (v === "none" || v === "None") return { t: "const", value: null };
        return { t: "name", name: v };
      }
      case "string": {
        let s = this.next().value as string;
        while (this.is("string")) s += this.next().value;
        return { t: "const", value: s };
      }
      case "int":
        this.next();
        return { t: "const", value: tok.value };
      case "float":
        this.next();
        // An integer-valued float literal stays a float (`1.0`).
        return { t: "const", value: float(tok.value as number) };
      case "op":
        if (tok.value === "(") {
          this.next();
          const e = this.tuple({ condexpr: true, explicit: true });
          this.expect("op", ")");
          return e;
        }
        if (tok.value === "[") return this.listLiteral();
        if (tok.value === "{") return this.dictLiteral();
    }
    const got = tok.kind === "eof" ? "end of template" : `'${tok.value || tok.kind}'`;
    return this.fail(`unexpected ${got}`);
  }

  listLiteral(): Expr {
    this.expect("op", "[");
    const items: Expr[] = [];
    while (!this.is("op", "]")) {
      if (items.length) this.expect("op", ",");
      if (this.is("op", "]")) break;
      items.push(this.expression());
    }
    this.expect("op", "]");
    return { t: "list", items };
  }

  dictLiteral(): Expr {
    this.expect("op", "{");
    const pairs: [Expr, Expr][] = [];
    while (!this.is("op", "}")) {
      if (pairs.length) this.expect("op", ",");
      if (this.is("op", "}")) break;
      const k = this.expression();
      this.expect("op", ":");
      pairs.push([k, this.expression()]);
    }
    this.expect("op", "}");
    return { t: "dict", pairs };
  }

  postfix(node: Expr): Expr {
    while (true) {
      if (this.is("op", ".") || this.is("op", "[")) node = this.subscript(node);
      else if (this.is("op", "(")) node = this.call(node);
      else return node;
    }
  }

  filterExpr(node: Expr): Expr {
    while (true) {
      if (this.skip("op", "|")) node = this.filter(node);
      else if (this.is("name", "is")) node = this.test(node);
      else if (this.is("op", "(")) node = this.call(node);
      else return node;
    }
  }

  subscript(node: Expr): Expr {
    if (this.skip("op", ".")) {
      const tok = this.next();
      if (tok.kind === "name") return { t: "getattr", obj: node, name: tok.value as string };
      if (tok.kind === "int") {
        return { t: "getitem", obj: node, index: { t: "const", value: tok.value } };
      }
      return this.fail("expected a name or number after '.'", tok.line);
    }
    this.expect("op", "[");
    const args: Expr[] = [];
    while (!this.is("op", "]")) {
      if (args.length) this.expect("op", ",");
      args.push(this.subscribed());
    }
    this.expect("op", "]");
    const index: Expr = args.length === 1 ? args[0] : { t: "tuple", items: args };
    return { t: "getitem", obj: node, index };
  }

  subscribed(): Expr {
    const parts: (Expr | undefined)[] = [];
    if (this.skip("op", ":")) parts.push(undefined);
    else {
      const e = this.expression();
      if (!this.skip("op", ":")) return e;
      parts.push(e);
    }
    const more = () => !this.is("op", "]") && !this.is("op", ",") && !this.is("op", ":");
    parts.push(more() ? this.expression() : undefined);
    if (this.skip("op", ":")) parts.push(more() ? this.expression() : undefined);
    return { t: "slice", start: parts[0], stop: parts[1], step: parts[2] };
  }

  call(fn: Expr): Expr {
    const line = this.cur.line;
    return { t: "call", fn, args: this.args(), line };
  }

  args(): Args {
    this.expect("op", "(");
    const pos: Expr[] = [], kw: [string, Expr][] = [];
    let star: Expr | undefined, dstar: Expr | undefined;
    while (!this.is("op", ")")) {
      if (pos.length || kw.length || star || dstar) {
        this.expect("op", ",");
        if (this.is("op", ")")) break;
      }
      if (this.skip("op", "*")) star = this.expression();
      else if (this.skip("op", "**")) dstar = this.expression();
      else if (this.is("name") && this.look().kind === "op" && this.look().value === "=") {
        const k = this.name();
        this.next();
        kw.push([k, this.expression()]);
      } else {
        if (kw.length) this.fail("positional argument after a keyword argument");
        pos.push(this.expression());
      }
    }
    this.expect("op", ")");
    return { pos, kw, star, dstar };
  }

  dotted(): string {
    let name = this.name();
    while (this.is("op", ".") && this.look().kind === "name") {
      this.next();
      name += "." + this.name();
    }
    return name;
  }

  filter(value: Expr | undefined): Expr {
    const line = this.cur.line;
    const name = this.dotted();
    const args = this.is("op", "(") ? this.args() : { pos: [], kw: [] };
    return { t: "filter", value, name, args, line };
  }

  test(value: Expr): Expr {
    const line = this.cur.line;
    this.expect("name", "is");
    const negate = this.skip("name", "not");
    const name = this.dotted();
    let args: Args = { pos: [], kw: [] };
    const c = this.cur;
    if (this.is("op", "(")) args = this.args();
    else if (
      (["name", "string", "int", "float"].includes(c.kind) ||
        (c.kind === "op" && ["(", "[", "{"].includes(c.value as string))) &&
      !(c.kind === "name" && ["else", "or", "and"].includes(c.value as string))
    ) {
      if (this.is("name", "is")) this.fail("you cannot chain multiple tests with is");
      args = { pos: [this.postfix(this.primary())], kw: [] };
    }
    const node: Expr = { t: "test", value, name, args, line };
    return negate ? { t: "unary", op: "not", value: node } : node;
  }
}
