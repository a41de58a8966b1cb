/**
 * The shared part of the `chat-templates` campaign's expression generator
 * (`chat_templates_expr.ts`): the types the generator tracks, the weighted choice,
 * string literals, parenthesising, the dispatch on a type, messages and lists of them,
 * `|tojson` options, macro calls. Private to the campaign.
 *
 * @module
 */

import type { Rand } from "./tokenizers_texts.ts";
import { TEXT_PIECES, TOKENS } from "./chat_templates_context.ts";

/**
 * What a variable or expression holds, as far as the generator knows: `msg` a message,
 * `msgs` a list of them, `tc` a tool call, `tool` a tool schema, `part` a content part,
 * `any` whatever the context holds (or undefined).
 *
 * @example
 * ```ts
 * import type { Ty } from "./chat_templates_expr_base.ts";
 * const t: Ty = "msg";
 * ```
 */
export type Ty =
  | "str"
  | "int"
  | "float"
  | "bool"
  | "list"
  | "dict"
  | "any"
  | "msg"
  | "msgs"
  | "tc"
  | "tool"
  | "part";

/**
 * A variable in scope and what it holds.
 *
 * @example
 * ```ts
 * import type { Var } from "./chat_templates_expr_base.ts";
 * const v: Var = { name: "message", ty: "msg" };
 * ```
 */
export interface Var {
  name: string;
  ty: Ty;
}

/**
 * What an expression may read: variables, whether `loop` is there, the macros and
 * the namespace's attributes.
 *
 * @example
 * ```ts
 * import type { Scope } from "./chat_templates_expr_base.ts";
 * const s: Scope = { vars: [], loop: false, macros: [], ns: new Map() };
 * ```
 */
export interface Scope {
  vars: Var[];
  loop: boolean;
  macros: { name: string; params: string[] }[];
  /** Attributes of `ns` (empty when no namespace is set). */
  ns: Map<string, Ty>;
  /**
   * Inside a macro, call or generation block (bodies compiled as functions): `break`
   * and `continue` there do not compile in Python, one finding, kept rare.
   */
  fenced?: boolean;
}

/** A weighted alternative of {@linkcode ExprBase.choose}. */
export type Alt = [number, () => string];

/** Separators for `split` and `join`. */
export const SEPS = [
  "' '",
  "','",
  "'\\n'",
  "'</think>'",
  "'<think>'",
  "'|'",
  "', '",
  "'a'",
  "'\\n\\n'",
];
/** String methods without arguments. */
export const STR_METHODS0 = ["strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize"];
/** String filters without arguments. */
export const STR_FILTERS = ["trim", "lower", "upper", "title", "capitalize", "string", "striptags"];
/** Tests after `is` without arguments. */
export const IS_TESTS = [
  "defined",
  "undefined",
  "none",
  "string",
  "mapping",
  "sequence",
  "iterable",
  "number",
  "integer",
  "float",
  "boolean",
  "true",
  "false",
  "callable",
];
/** Fields of messages, parts and calls. */
export const ATTRS = ["role", "content", "tool_calls", "name", "type", "text", "reasoning_content"];

/**
 * The expression generator less the typed producers its subclass
 * ({@linkcode ExprGen} in `chat_templates_expr.ts`) writes.
 *
 * @example
 * ```ts ignore
 * class G extends ExprBase { … }
 * ```
 */
export abstract class ExprBase {
  /** @param r the random source */
  constructor(readonly r: Rand) {}

  /** One alternative by weight; those of weight 0 never. */
  choose<T = string>(alts: [number, () => T][]): T {
    const total = alts.reduce((s, [w]) => s + w, 0);
    let x = this.r.next() * total;
    for (const [w, f] of alts) {
      if ((x -= w) < 0) return f();
    }
    return alts[alts.length - 1][1]();
  }

  /**
   * `w` when a variable of type `ty` is in scope, else a small weight: reading a field of
   * something undefined raises, and a template that raises early tests little.
   */
  has(s: Scope, ty: Ty, w: number): number {
    return s.vars.some((v) => v.ty === ty) ? w : w / 20;
  }

  /** A variable of type `ty`, or undefined when none is in scope. */
  varOf(s: Scope, ty: Ty): string | undefined {
    const vs = s.vars.filter((v) => v.ty === ty);
    return vs.length ? this.r.pick(vs).name : undefined;
  }

  /** A string literal of `text`, in single or double quotes, sometimes with escapes. */
  lit(text: string): string {
    const q = this.r.chance(0.7) ? "'" : '"';
    const raw = this.r.chance(0.1);
    let body = "";
    for (const ch of text) {
      if (ch === "\\") body += "\\\\";
      else if (ch === q) body += "\\" + q;
      else if (ch === "\n" && !raw) body += "\\n";
      else if (ch === "\t" && !raw) body += "\\t";
      else if (
        !raw && ch.codePointAt(0)! > 127 && ch.codePointAt(0)! < 0x10000 && this.r.chance(0.1)
      ) {
        body += "\\u" + ch.codePointAt(0)!.toString(16).padStart(4, "0");
      } else body += ch;
    }
    return q + body + q;
  }

  /** A literal of message-ish text or a special-token-ish one. */
  strLit(): string {
    return this.lit(this.choose([
      [4, () => this.r.pick(TEXT_PIECES)],
      [3, () => this.r.pick(TOKENS.filter((t) => t))],
      [3, () => this.r.pick(["\n", "<|im_start|>assistant\n", "<|im_end|>\n", " ", ": ", "user"])],
      [1, () => this.r.pick(["system", "assistant", "tool", "<tool_call>\n", "</tool_call>"])],
    ]));
  }

  /** Wraps compound text in parentheses (mostly). */
  par(e: string): string {
    if (/^[\w.'"[\]()]*$/.test(e) && !/\s/.test(e)) return e;
    // `a|first.role` names a filter "first.role": kept rare, it is one finding.
    return this.r.chance(e.includes("|") ? 0.005 : 0.25) ? e : `(${e})`;
  }

  /** Any expression of `ty`. */
  expr(ty: Ty, s: Scope, d: number): string {
    switch (ty) {
      case "str":
        return this.str(s, d);
      case "int":
        return this.int(s, d);
      case "float":
        return this.float(s, d);
      case "bool":
        return this.bool(s, d);
      case "list":
        return this.list(s, d);
      case "dict":
        return this.dict(s, d);
      case "msg":
        return this.msg(s, d);
      case "msgs":
        return this.msgs(s, d);
      default: {
        const v = this.varOf(s, ty);
        return v ?? this.any(s, d);
      }
    }
  }

  /** A value one may print: every type but the opaque ones. */
  printable(s: Scope, d: number): string {
    return this.expr(
      this.r.pick(["str", "str", "str", "int", "float", "bool", "list", "dict", "any", "msg"]),
      s,
      d,
    );
  }

  /** `|tojson` with its options as real templates use them. */
  tojson(): string {
    return this.r.pick([
      "tojson",
      "tojson",
      "tojson(indent=2)",
      "tojson(indent=4)",
      "tojson(separators=(',', ':'))",
      "tojson(separators=(', ', ': '), indent=1)",
      "tojson(ensure_ascii=true)",
      "tojson(sort_keys=true)",
    ]);
  }

  /** A call of one of the macros. */
  macroCall(s: Scope, d: number): string {
    const m = this.r.pick(s.macros);
    const args = m.params.slice(0, 1 + this.r.int(m.params.length)).map((p, i) =>
      i > 0 && this.r.chance(0.4) ? `${p}=${this.printable(s, d)}` : this.printable(s, d)
    );
    return `${m.name}(${args.join(", ")})`;
  }

  /** An attribute of `ns` of type `ty` (any when there is none). */
  nsAttr(s: Scope, ty: Ty): string {
    const names = [...s.ns].filter(([, t]) => t === ty).map(([n]) => n);
    return names.length ? this.r.pick(names) : this.r.pick([...s.ns.keys()]);
  }

  /** A message. */
  msg(s: Scope, d: number): string {
    const v = this.varOf(s, "msg");
    if (v && this.r.chance(0.85)) return v;
    return this.choose([
      [3, () => `messages[${this.r.pick(["0", "-1", "0", "-1", "1"])}]`],
      [1, () => {
        // Unparenthesized, `messages|first.role` names a filter "first.role": rarely.
        const f = `messages|${this.r.pick(["first", "last"])}`;
        return this.r.chance(0.99) ? `(${f})` : f;
      }],
      [d > 0 ? 1 : 0, () => `${this.par(this.msgs(s, d - 1))}[0]`],
    ]);
  }

  /** A list of messages. */
  msgs(s: Scope, d: number): string {
    const v = this.varOf(s, "msgs");
    if (v && this.r.chance(0.5)) return v;
    return this.choose([
      [6, () => "messages"],
      [2, () => `messages[${this.r.pick(["1:", ":-1", "::-1", "-1:"])}]`],
      [
        d > 0 ? 1 : 0,
        () =>
          `messages|${
            this.r.pick([
              "rejectattr('role', 'equalto', 'system')|list",
              "selectattr('content', 'string')|list",
              "reverse|list",
            ])
          }`,
      ],
    ]);
  }

  /** A string-valued expression (mostly). */
  abstract str(s: Scope, d: number): string;
  /** An int-valued expression (mostly). */
  abstract int(s: Scope, d: number): string;
  /** A float-valued expression (mostly). */
  abstract float(s: Scope, d: number): string;
  /** A bool-valued expression (mostly). */
  abstract bool(s: Scope, d: number): string;
  /** A list-valued expression (mostly). */
  abstract list(s: Scope, d: number): string;
  /** A dict-valued expression (mostly). */
  abstract dict(s: Scope, d: number): string;
  /** Anything: a value of any type, a message field, something undefined. */
  abstract any(s: Scope, d: number): string;
}
