/**
 * Random Jinja expressions for the `chat-templates` campaign, typed loosely so that
 * most of them evaluate: a string expression is built from string literals (with
 * escapes, quotes and unicode), message fields, `~` and `+`, string methods (`strip`,
 * `split`, `startswith`, `replace`, …), filters (`trim`, `lower`, `tojson` with indent,
 * separators, `join`, `default`, `indent`, …), slices, ternaries and macro calls; an int
 * from `|length`, `loop.index0`, arithmetic; a bool from comparisons, `in`, tests
 * (`is defined`, `is none`, `is string`, `is mapping`, …) and `and`/`or`/`not`; lists
 * from slices, `split`, `selectattr`/`map`/`reject` chains ending in `|list`, literals.
 * Now and then a type is wrong on purpose (content that is a list, an undefined field),
 * so errors are compared too. Never printed: generators, `loop`, namespaces, macros
 * (their text holds addresses); never used: `lipsum`, huge ranges or repeats.
 *
 * @module
 */

import {
  type Alt,
  ATTRS,
  ExprBase,
  IS_TESTS,
  type Scope,
  SEPS,
  STR_FILTERS,
  STR_METHODS0,
} from "./chat_templates_expr_base.ts";

export type { Scope, Ty, Var } from "./chat_templates_expr_base.ts";

/**
 * The expression generator: `expr(ty, scope, depth)` gives Jinja source text.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "../../core/random.ts";
 * import { Rand } from "./tokenizers_texts.ts";
 * import { ExprGen } from "./chat_templates_expr.ts";
 * const g = new ExprGen(new Rand(mulberry32(1)));
 * typeof g.expr("str", { vars: [], loop: false, macros: [], ns: new Map() }, 2); // "string"
 * ```
 */
export class ExprGen extends ExprBase {
  /** A string-valued expression (mostly). */
  str(s: Scope, d: number): string {
    const m = () => this.msg(s, d - 1);
    const S = () => this.str(s, d - 1);
    const atom: Alt[] = [
      [6, () => this.strLit()],
      [3, () => this.varOf(s, "str") ?? this.strLit()],
      [4, () => this.r.chance(0.5) ? `${m()}.role` : `${m()}['role']`],
      [3, () => this.r.chance(0.5) ? `${m()}.content` : `${m()}['content']`],
      [2, () => this.r.pick(["bos_token", "eos_token"])],
      [
        this.has(s, "tc", 2),
        () => `${this.varOf(s, "tc") ?? m() + ".tool_calls[0]"}.function.name`,
      ],
      [this.has(s, "tool", 2), () => `${this.varOf(s, "tool") ?? "tools[0]"}.function.name`],
      [this.has(s, "part", 3), () => `${this.varOf(s, "part") ?? "part"}.text`],
      [s.loop ? 1 : 0, () => `loop.cycle(${this.strLit()}, ${this.strLit()})`],
      [1, () => `strftime_now(${this.lit(this.r.pick(["%Y-%m-%d", "%d %b %Y", "%A %H:%M"]))})`],
      [[...s.ns.values()].includes("str") ? 2 : 0, () => `ns.${this.nsAttr(s, "str")}`],
    ];
    if (d <= 0) return this.choose(atom);
    return this.choose([
      [12, () => this.choose(atom)],
      [6, () => `${this.par(this.printable(s, d - 1))} ~ ${this.par(this.printable(s, d - 1))}`],
      [6, () => `${this.par(S())} + ${this.par(S())}`],
      [4, () => `${this.par(S())}.${this.r.pick(STR_METHODS0)}()`],
      [
        2,
        () =>
          `${this.par(S())}.${this.r.pick(["strip", "lstrip", "rstrip"])}(${
            this.lit(this.r.pick(["\n", " ", "<>", "x\n"]))
          })`,
      ],
      [2, () => `${this.par(S())}.replace(${this.strLit()}, ${this.strLit()})`],
      [3, () => `${this.par(S())}.split(${this.r.pick(SEPS)})[${this.r.pick(["0", "-1", "1"])}]`],
      [
        1,
        () =>
          `${this.par(S())}.${this.r.pick(["split", "rsplit"])}(${this.r.pick(SEPS)}, 1)|${
            this.r.pick(["first", "last", "join"])
          }`,
      ],
      [
        1,
        () =>
          `${this.par(S())}.${this.r.pick(["partition", "rpartition"])}(${this.r.pick(SEPS)})[${
            this.r.int(3)
          }]`,
      ],
      [5, () => `${this.par(S())}|${this.r.pick(STR_FILTERS)}`],
      [1, () => `${this.par(S())}|trim(${this.lit(this.r.pick(["\n", " x", "<>"]))})`],
      [
        3,
        () =>
          `${this.par(S())}[${this.r.pick(["1:", ":-1", "::-1", "2:5", "-3:", "0", "-1", ":1"])}]`,
      ],
      [4, () => `${this.par(this.printable(s, d - 1))}|${this.tojson()}`],
      [
        3,
        () =>
          `${this.par(this.list(s, d - 1))}|join${
            this.r.chance(0.8) ? `(${this.r.pick(SEPS)})` : ""
          }`,
      ],
      [
        2,
        () =>
          `${this.par(this.msgs(s, d - 1))}|map(attribute=${this.lit(this.r.pick(ATTRS))})|join(${
            this.r.pick(SEPS)
          })`,
      ],
      [2, () => `${this.par(this.list(s, d - 1))}|${this.r.pick(["first", "last"])}`],
      [
        3,
        () =>
          `${this.par(this.any(s, d - 1))}|${this.r.pick(["default", "d"])}(${S()}${
            this.r.chance(0.3) ? ", true" : ""
          })`,
      ],
      [1, () => `${this.par(S())} * ${1 + this.r.int(3)}`],
      [3, () => `(${S()} if ${this.bool(s, d - 1)} else ${S()})`],
      [1, () => `(${S()} if ${this.bool(s, d - 1)})`],
      [1, () => `${this.par(S())}|indent(${this.r.pick(["2", "4, true", "first=true", "'> '"])})`],
      [
        1,
        () =>
          `${this.par(S())}|${
            this.r.pick([
              "center(12)",
              "truncate(9)",
              "truncate(12, true, '..', 0)",
              "wordwrap(8)",
              "replace('a', 'b', 1)",
            ])
          }`,
      ],
      [
        1,
        () =>
          `${this.lit(this.r.pick(["%s: %s", "%d|%s", "%r"]))} % (${this.printable(s, d - 1)}, ${
            this.printable(s, d - 1)
          })`,
      ],
      [
        1,
        () =>
          `${this.lit(this.r.pick(["{} and {}", "{0}{1}{0}", "{!r}-{}"]))}.format(${
            this.printable(s, d - 1)
          }, ${this.printable(s, d - 1)})`,
      ],
      [
        1,
        () =>
          `${this.par(S())}.${
            this.r.pick([
              "ljust(6)",
              "rjust(6, '*')",
              "zfill(5)",
              "center(7)",
              "removeprefix('<')",
              "removesuffix('\\n')",
              "swapcase()",
              "casefold()",
            ])
          }`,
      ],
      [
        1,
        () =>
          `${this.par(this.printable(s, d - 1))}|${
            this.r.pick(["pprint", "string", "e", "urlencode", "safe"])
          }`,
      ],
      [s.macros.length ? 3 : 0, () => this.macroCall(s, d - 1)],
    ]);
  }

  /** An int-valued expression (mostly). */
  int(s: Scope, d: number): string {
    const I = () => this.int(s, d - 1);
    const atom: Alt[] = [
      [5, () => String(this.r.pick([0, 1, 2, 3, 5, 10, -1, 100]))],
      [3, () => `${this.msgs(s, 0)}|length`],
      [
        s.loop ? 5 : 0,
        () =>
          `loop.${this.r.pick(["index0", "index", "length", "revindex", "revindex0", "depth"])}`,
      ],
      [2, () => this.varOf(s, "int") ?? "1"],
      [[...s.ns.values()].includes("int") ? 3 : 0, () => `ns.${this.nsAttr(s, "int")}`],
    ];
    if (d <= 0) return this.choose(atom);
    return this.choose([
      [10, () => this.choose(atom)],
      [4, () => `${this.par(I())} ${this.r.pick(["+", "-", "*"])} ${this.par(I())}`],
      [2, () => `${this.par(I())} ${this.r.pick(["//", "%"])} ${this.r.pick([2, 3, -2, 7])}`],
      [3, () => `${this.par(this.list(s, d - 1))}|length`],
      [2, () => `${this.par(this.str(s, d - 1))}|length`],
      [
        2,
        () =>
          `${this.par(this.str(s, d - 1))}.${
            this.r.pick(["find", "count", "rfind"])
          }(${this.strLit()})`,
      ],
      [1, () => `${this.par(this.str(s, d - 1))}|int`],
      [1, () => `${this.par(this.float(s, d - 1))}|${this.r.pick(["int", "round|int"])}`],
      [1, () => `[${I()}, ${I()}]|${this.r.pick(["max", "min", "sum"])}`],
      [1, () => `${this.par(I())}|abs`],
      [1, () => `${this.par(I())} ** ${this.r.int(4)}`],
      [1, () => `-${this.par(I())}`],
      [1, () => `(${I()} if ${this.bool(s, d - 1)} else ${I()})`],
      [1, () => `${this.par(this.str(s, d - 1))}|wordcount`],
    ]);
  }

  /** A float-valued expression (mostly). */
  float(s: Scope, d: number): string {
    const atom: Alt[] = [
      [
        5,
        () =>
          this.r.pick(["1.5", "0.25", "2.0", "1e3", "3.0e-2", "-0.5", "1e-7", "0.1", "1_000.5"]),
      ],
      [2, () => this.varOf(s, "float") ?? "2.5"],
    ];
    if (d <= 0) return this.choose(atom);
    const F = () => this.float(s, d - 1);
    return this.choose([
      [6, () => this.choose(atom)],
      [3, () => `${this.par(this.int(s, d - 1))} / ${this.r.pick([2, 3, 4, -8, 0.5])}`],
      [
        2,
        () =>
          `${this.par(F())} ${this.r.pick(["*", "+", "-"])} ${
            this.par(this.r.chance(0.5) ? F() : this.int(s, d - 1))
          }`,
      ],
      [
        2,
        () =>
          `${this.par(F())}|round(${this.r.pick(["", "1", "2", "0", "1, 'floor'", "2, 'ceil'"])})`,
      ],
      [1, () => `${this.par(this.str(s, d - 1))}|float`],
      [1, () => `${this.par(this.int(s, d - 1))}|float`],
      [1, () => `${this.par(F())} ${this.r.pick(["//", "%"])} ${this.r.pick(["1", "0.3", "-2"])}`],
      [1, () => `${this.par(F())} ** 2`],
    ]);
  }

  /** A bool-valued expression (mostly). */
  bool(s: Scope, d: number): string {
    const m = () => this.msg(s, d - 1);
    const atom: Alt[] = [
      [2, () => this.r.pick(["true", "false", "True", "False"])],
      [3, () => "add_generation_prompt"],
      [s.loop ? 4 : 0, () => this.r.pick(["loop.first", "loop.last"])],
      [2, () => this.varOf(s, "bool") ?? "enable_thinking"],
      [[...s.ns.values()].includes("bool") ? 4 : 0, () => `ns.${this.nsAttr(s, "bool")}`],
      [2, () => this.r.pick(["tools", "documents", "enable_thinking", "messages"])],
    ];
    if (d <= 0) return this.choose(atom);
    const B = () => this.bool(s, d - 1);
    const X = () => this.printable(s, d - 1);
    const role = () => this.lit(this.r.pick(["user", "assistant", "system", "tool"]));
    return this.choose([
      [6, () => this.choose(atom)],
      [
        6,
        () =>
          `${m()}${this.r.chance(0.5) ? ".role" : "['role']"} ${
            this.r.pick(["==", "!="])
          } ${role()}`,
      ],
      [2, () => `${m()}.role ${this.r.pick(["in", "not in"])} [${role()}, ${role()}]`],
      [3, () => `${this.par(X())} ${this.r.pick(["==", "!="])} ${this.par(X())}`],
      [
        3,
        () =>
          `${this.par(this.int(s, d - 1))} ${this.r.pick(["<", "<=", ">", ">="])} ${
            this.par(this.int(s, d - 1))
          }`,
      ],
      [
        3,
        () =>
          `${this.par(this.str(s, d - 1))} ${this.r.pick(["in", "not in"])} ${
            this.par(this.r.chance(0.6) ? this.str(s, d - 1) : this.list(s, d - 1))
          }`,
      ],
      [1, () => `${this.strLit()} in ${this.par(this.dict(s, d - 1))}`],
      [
        6,
        () =>
          `${this.par(this.any(s, d - 1))} is ${this.r.chance(0.3) ? "not " : ""}${
            this.r.pick(IS_TESTS)
          }`,
      ],
      [
        1,
        () =>
          `${this.par(this.int(s, d - 1))} is ${
            this.r.pick(["even", "odd", "divisibleby 3", "eq 2", "gt 0", "lt(1)"])
          }`,
      ],
      [
        1,
        () =>
          `${this.par(this.str(s, d - 1))} is ${
            this.r.pick(["lower", "upper", "string", "in ['a', 'user']", "sameas none"])
          }`,
      ],
      [
        3,
        () =>
          `${this.par(this.str(s, d - 1))}.${this.r.pick(["startswith", "endswith"])}(${
            this.r.chance(0.85) ? this.strLit() : `(${this.strLit()}, ${this.strLit()})`
          })`,
      ],
      [
        1,
        () =>
          `${this.par(this.str(s, d - 1))}.${
            this.r.pick(["isdigit", "isspace", "isalpha", "isupper", "islower", "isalnum"])
          }()`,
      ],
      [4, () => `${this.par(B())} ${this.r.pick(["and", "or"])} ${this.par(B())}`],
      [3, () => `not ${this.par(B())}`],
      [2, () => `${this.par(this.list(s, d - 1))}|length ${this.r.pick(["> 0", "== 0", ">= 1"])}`],
      [2, () => this.par(this.any(s, d - 1))],
      [
        1,
        () =>
          `${
            this.par(this.msgs(s, d - 1))
          }|selectattr('role', 'equalto', ${role()})|list|length > 0`,
      ],
      [
        1,
        () =>
          `${this.par(X())}|${
            this.r.pick(["default(false)", "d(true)", "string|length > 2", "list|length > 1"])
          }`,
      ],
    ]);
  }

  /** A list-valued expression (mostly). */
  list(s: Scope, d: number): string {
    const atom: Alt[] = [
      [4, () => this.msgs(s, 0)],
      [2, () => this.varOf(s, "list") ?? "[]"],
      [2, () => "tools"],
      [2, () => `${this.msg(s, 0)}.tool_calls`],
      [1, () => `${this.msg(s, 0)}.content`],
      [2, () => `[${this.strLit()}, ${this.r.pick(["1", "none", "true", "1.5", "'x'"])}]`],
      [1, () => "[]"],
      [1, () => this.r.pick(["x", "y", "items", "data", "documents"])],
    ];
    if (d <= 0) return this.choose(atom);
    const L = () => this.list(s, d - 1);
    const S = () => this.str(s, d - 1);
    return this.choose([
      [8, () => this.choose(atom)],
      [3, () => `${this.par(L())}[${this.r.pick(["1:", ":-1", "::-1", "-2:", "1:3", ":0"])}]`],
      [3, () => `${this.par(S())}.split(${this.r.chance(0.7) ? this.r.pick(SEPS) : ""})`],
      [1, () => `${this.par(S())}.splitlines()`],
      [1, () => `${this.par(L())} + ${this.par(L())}`],
      [2, () => `[${this.printable(s, d - 1)}, ${this.printable(s, d - 1)}]`],
      [1, () => `(${this.printable(s, d - 1)}, ${this.printable(s, d - 1)})`],
      [
        3,
        () =>
          `${this.par(this.msgs(s, d - 1))}|${this.r.pick(["selectattr", "rejectattr"])}(${
            this.r.pick([
              "'role', 'equalto', 'user'",
              "'role', '==', 'assistant'",
              "'tool_calls', 'defined'",
              "'content', 'string'",
              "'content'",
              "'role', 'in', ['user', 'tool']",
            ])
          })|list`,
      ],
      [
        3,
        () =>
          `${this.par(L())}|map(${
            this.r.pick([
              "attribute='role'",
              "attribute='content'",
              "'string'",
              "'upper'",
              "'length'",
              "attribute='function.name'",
              "attribute='x', default='d'",
            ])
          })|list`,
      ],
      [
        2,
        () =>
          `${this.par(L())}|${this.r.pick(["select", "reject"])}(${
            this.r.pick(["'string'", "'defined'", "'none'", "", "'equalto', 'x'"])
          })|list`,
      ],
      [
        2,
        () =>
          `${this.par(L())}|${
            this.r.pick([
              "reverse|list",
              "unique|list",
              "list",
              "sort",
              "batch(2)|list",
              "slice(2)|list",
              "sort(reverse=true)",
            ])
          }`,
      ],
      [
        1,
        () =>
          `${this.par(this.dict(s, d - 1))}${
            this.r.pick([
              ".keys()|list",
              ".values()|list",
              ".items()|list",
              "|list",
              "|dictsort",
              "|items|list",
            ])
          }`,
      ],
      [1, () => `${this.par(S())}|list`],
      [1, () => `${this.par(this.any(s, d - 1))}|default([])`],
      [1, () => `range(${this.r.int(4)})|list`],
      [1, () => `${this.msg(s, d - 1)}.get('tool_calls', [])`],
      [1, () => `${this.par(this.msgs(s, d - 1))}|groupby('role')|map('list')|list`],
    ]);
  }

  /** A dict-valued expression (mostly). */
  dict(s: Scope, d: number): string {
    return this.choose([
      [4, () => this.msg(s, d - 1)],
      [2, () => this.varOf(s, "dict") ?? "{}"],
      [
        this.has(s, "tc", 4),
        () => `${this.varOf(s, "tc") ?? `${this.msg(s, 0)}.tool_calls[0]`}.function`,
      ],
      [this.has(s, "tc", 2), () => `${this.varOf(s, "tc") ?? "tool_call"}.function.arguments`],
      [
        this.has(s, "tool", 2),
        () =>
          `${this.varOf(s, "tool") ?? "tools[0]"}${
            this.r.pick([".function.parameters", ".function", ""])
          }`,
      ],
      [
        2,
        () =>
          `{${this.strLit()}: ${d > 0 ? this.printable(s, d - 1) : "1"}, 'k': ${
            this.r.pick(["none", "[1, 2.5]", "'v'", "false"])
          }}`,
      ],
      [1, () => `dict(a=${this.r.pick(["1", "'x'", "none"])}, b=[])`],
      [1, () => "{}"],
      [1, () => this.r.pick(["x", "data", "y"])],
    ]);
  }

  /** Anything: a value of any type, a message field, something undefined. */
  any(s: Scope, d: number): string {
    const m = () => this.msg(s, d - 1);
    return this.choose([
      [3, () => `${m()}.${this.r.pick(ATTRS)}`],
      [2, () => `${m()}[${this.lit(this.r.pick(ATTRS))}]`],
      [
        1,
        () =>
          `${m()}.get(${this.lit(this.r.pick(ATTRS))}${
            this.r.chance(0.5) ? ", " + this.strLit() : ""
          })`,
      ],
      [
        2,
        () =>
          this.r.pick([
            "x",
            "y",
            "data",
            "items",
            "tools",
            "documents",
            "bos_token",
            "enable_thinking",
            "reasoning_effort",
          ]),
      ],
      [1, () => this.r.pick(["undefined_var", "none", "None", "nothing.here"])],
      [s.vars.length ? 3 : 0, () => this.r.pick(s.vars).name],
      [s.ns.size ? 1 : 0, () => `ns.${this.r.pick([...s.ns.keys()])}`],
      [
        this.has(s, "tc", 2),
        () =>
          `${this.varOf(s, "tc") ?? "tool_call"}.${
            this.r.pick(["function.arguments", "arguments", "id", "name"])
          }`,
      ],
      [d > 0 ? 2 : 0, () => `${this.par(this.list(s, d - 1))}[${this.r.pick(["0", "-1", "5"])}]`],
      [
        d > 0 ? 2 : 0,
        () => `${this.par(this.list(s, d - 1))}|${this.r.pick(["first", "last", "max", "min"])}`,
      ],
      [
        d > 0 ? 2 : 0,
        () =>
          `${this.par(this.dict(s, d - 1))}[${
            this.lit(this.r.pick(["a", "k", "role", "location", "é"]))
          }]`,
      ],
      [
        d > 0 ? 4 : 0,
        () => this.expr(this.r.pick(["str", "int", "float", "bool", "list", "dict"]), s, d - 1),
      ],
    ]);
  }
}
