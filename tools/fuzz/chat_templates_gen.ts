/**
 * The generator of the `chat-templates` campaign: a seed gives a random Jinja chat
 * template and a random context (`chat_templates_context.ts`). Templates are weighted
 * toward the shapes real ones have — a `bos_token`, a system prompt split off
 * `messages[0]`, a `namespace` of flags, a tools section printing schemas with
 * `|tojson`, macros rendering content parts, the loop over messages dispatching on
 * `message['role']` / `message.role` with `if`/`elif`/`else` and `raise_exception`,
 * tool calls with dict or string arguments, reasoning split at `</think>`, the
 * generation prompt — each with random statements inside (`set` in loops, `ns.x =`,
 * nested `for` with `loop.*`, `break`/`continue`, set blocks, filter / with / call
 * blocks, comments) and random expressions (`chat_templates_expr.ts`). Each template
 * draws its own whitespace style: compact or one tag per line, indented by spaces or
 * tabs, blank lines, and `{%-` / `-%}` / `{{-` / `-}}` / `{%+` at some rate, so
 * `trim_blocks` and `lstrip_blocks` matter.
 *
 * @module
 */

import { mulberry32 } from "../../core/random.ts";
import { Rand } from "./tokenizers_texts.ts";
import { type Json, randomContext, TEXT_PIECES, TOKENS } from "./chat_templates_context.ts";
import { ExprGen, type Scope, type Ty } from "./chat_templates_expr.ts";

/**
 * One case: a template and the context it is rendered with.
 *
 * @example
 * ```ts
 * import type { ChatTemplateCase } from "./chat_templates_gen.ts";
 * const c: ChatTemplateCase = { name: "fuzz/1", seed: 1, template: "{{ x }}", context: { x: 1 } };
 * ```
 */
export interface ChatTemplateCase {
  name: string;
  seed: number;
  template: string;
  context: Record<string, Json>;
}

interface Style {
  /** Chance of `{%-`, of `-%}`, of `{{-`/`-}}`, of `{%+`/`+%}`. */
  dashL: number;
  dashR: number;
  outDash: number;
  plus: number;
  layout: "compact" | "lines" | "indent" | "messy";
  indent: string;
  /** Chance a tag is written without spaces inside its delimiters. */
  tight: number;
}

const NS_ATTRS: [string, Ty][] = [
  ["found", "bool"],
  ["is_first", "bool"],
  ["multi_step_tool", "bool"],
  ["system_prompt", "str"],
  ["text", "str"],
  ["last_query_index", "int"],
  ["count", "int"],
];
const SET_NAMES = ["content", "text", "role", "tmp", "reasoning_content", "system_message", "idx"];

/** Text between tags: never a brace, so it cannot open a tag by accident. */
function plainText(r: Rand): string {
  const pool = [...TEXT_PIECES, ...TOKENS, "\n", "\n", " ", "<|im_start|>", "Assistant: "];
  return r.pick(pool).replace(/[{}]/g, "");
}

class TemplateGen {
  readonly e: ExprGen;
  readonly st: Style;
  budget: number;

  constructor(readonly r: Rand) {
    this.e = new ExprGen(r);
    const dash = r.pick([0, 0.15, 0.6, 0.9, 1]);
    this.st = {
      dashL: dash,
      dashR: r.pick([0, 0, 0.1, 0.5, dash]),
      outDash: r.pick([0, 0.2, dash, 0.8]),
      plus: r.chance(0.1) ? 0.15 : 0,
      layout: r.pick(["compact", "lines", "indent", "indent", "messy"] as const),
      indent: r.pick(["  ", "    ", "\t", " "]),
      tight: r.pick([0, 0, 0.1, 1]),
    };
    this.budget = 8 + r.int(30);
  }

  /** Expression depth: mostly 1 or 2. */
  d(): number {
    return this.r.pick([0, 1, 1, 2, 2, 3]);
  }

  pre(depth: number): string {
    switch (this.st.layout) {
      case "compact":
      case "lines":
        return "";
      case "indent":
        return this.st.indent.repeat(depth);
      default:
        return this.r.pick(["", "", " ", "  ", "\t", "\n", " \n  ", this.st.indent.repeat(depth)]);
    }
  }

  post(): string {
    switch (this.st.layout) {
      case "compact":
        return "";
      case "messy":
        return this.r.pick(["", "\n", "\n", " \n", "\n\n", "  "]);
      default:
        return this.r.chance(0.05) ? "\n\n" : "\n";
    }
  }

  /** A block tag `{% inner %}` with this template's whitespace habits. */
  tag(inner: string, depth: number): string {
    const side = (p: number) => (this.r.chance(p) ? "-" : this.r.chance(this.st.plus) ? "+" : "");
    const sp = this.r.chance(this.st.tight) ? "" : " ";
    return `${this.pre(depth)}{%${side(this.st.dashL)}${sp}${inner}${sp}${
      side(this.st.dashR)
    }%}${this.post()}`;
  }

  /** An output tag `{{ expr }}`. */
  out(expr: string, depth: number): string {
    const dl = this.r.chance(this.st.outDash) ? "-" : "";
    const dr = this.r.chance(this.st.outDash / 2) ? "-" : "";
    const sp = this.r.chance(this.st.tight) ? "" : " ";
    const inline = this.st.layout === "compact" || this.r.chance(0.3);
    const body = `{{${dl}${sp}${expr}${sp}${dr}}}`;
    return inline ? body : `${this.pre(depth)}${body}${this.post()}`;
  }

  /** A block: opening tag, body, `{% end… %}`. */
  block(open: string, body: string, end: string, depth: number): string {
    return this.tag(open, depth) + body + this.tag(end, depth);
  }

  stmts(s: Scope, depth: number, n: number): string {
    let out = "";
    for (let i = 0; i < n && this.budget > 0; i++) out += this.stmt(s, depth);
    return out;
  }

  stmt(s: Scope, depth: number): string {
    this.budget--;
    const hasMsg = s.vars.some((v) => v.ty === "msg");
    const deep = depth < 4 && this.budget > 2;
    return this.e.choose([
      [10, () => plainText(this.r)],
      [25, () => this.out(this.e.printable(s, this.d()), depth)],
      [deep ? 12 : 0, () => this.ifStmt(s, depth)],
      [deep ? 6 : 0, () => this.forStmt(s, depth)],
      [8, () => this.setStmt(s, depth)],
      [s.ns.size ? 5 : 0, () => this.nsSet(s, depth)],
      [2, () => this.setBlock(s, depth)],
      [2, () => this.comment(depth)],
      [
        s.loop ? (s.fenced ? 0.05 : 2) : 0,
        () => this.tag(this.r.pick(["break", "continue"]), depth),
      ],
      [
        deep ? 1 : 0,
        () =>
          this.block(
            `filter ${
              this.r.pick(["upper", "trim", "replace('a', 'b')", "indent(2)", "lower|trim"])
            }`,
            this.stmts(s, depth + 1, 2),
            "endfilter",
            depth,
          ),
      ],
      [
        deep ? 1 : 0,
        () =>
          this.block(
            `with a = ${this.e.printable(s, 1)}`,
            this.stmts({ ...s, vars: [...s.vars, { name: "a", ty: "any" }] }, depth + 1, 2),
            "endwith",
            depth,
          ),
      ],
      [
        deep ? 1 : 0,
        () =>
          this.block(
            "generation",
            this.stmts({ ...s, fenced: true }, depth + 1, 2),
            "endgeneration",
            depth,
          ),
      ],
      [
        deep && s.macros.length ? 1 : 0,
        () =>
          this.block(
            `call ${this.e.macroCall(s, 1)}`,
            this.stmts({ ...s, fenced: true }, depth + 1, 1),
            "endcall",
            depth,
          ),
      ],
      [1, () => this.out(`raise_exception(${this.e.strLit()})`, depth)],
      [hasMsg && deep ? 3 : 0, () => this.contentRender(s, depth)],
      [hasMsg && deep ? 2 : 0, () => this.toolCalls(s, depth)],
      [hasMsg && deep ? 1 : 0, () => this.reasoning(s, depth)],
      [
        1,
        () =>
          this.tag(`raw`, depth) + this.r.pick(["{{ x }}", "{% if %}", "a"]) +
          this.tag("endraw", depth),
      ],
    ]);
  }

  comment(depth: number): string {
    const d = () => (this.r.chance(this.st.dashL) ? "-" : "");
    return `${this.pre(depth)}{#${d()} ${
      this.r.pick(["note", "multi\nline", "{{ x }}"])
    } ${d()}#}${this.post()}`;
  }

  ifStmt(s: Scope, depth: number): string {
    let out = this.tag(`if ${this.e.bool(s, this.d() + 1)}`, depth) +
      this.stmts(s, depth + 1, 1 + this.r.int(3));
    for (let i = this.r.int(3); i > 0; i--) {
      out += this.tag(`elif ${this.e.bool(s, this.d() + 1)}`, depth) +
        this.stmts(s, depth + 1, 1 + this.r.int(2));
    }
    if (this.r.chance(0.5)) {
      const body = this.r.chance(0.15)
        ? this.out(`raise_exception(${this.e.strLit()})`, depth + 1)
        : this.stmts(s, depth + 1, 1 + this.r.int(2));
      out += this.tag("else", depth) + body;
    }
    return out + this.tag("endif", depth);
  }

  forStmt(s: Scope, depth: number): string {
    type Loop = [string, Scope["vars"], string];
    const [target, vars, iter] = this.e.choose<Loop>([
      [4, () => ["message", [{ name: "message", ty: "msg" }], this.e.msgs(s, 1)]],
      [2, () => ["tool_call", [{ name: "tool_call", ty: "tc" }], `${this.e.msg(s, 0)}.tool_calls`]],
      [1, () => ["tool", [{ name: "tool", ty: "tool" }], this.r.pick(["tools", "tools or []"])]],
      [1, () => ["part", [{ name: "part", ty: "part" }], `${this.e.msg(s, 0)}.content`]],
      [2, () => ["item", [{ name: "item", ty: "any" }], this.e.list(s, 1)]],
      [1, () => [
        "k, v",
        [{ name: "k", ty: "str" }, { name: "v", ty: "any" }],
        `${this.e.dict(s, 1)}|${this.r.pick(["items", "dictsort"])}`,
      ]],
      [
        1,
        () => [
          "i",
          [{ name: "i", ty: "int" }],
          `range(${this.r.pick(["3", "1, 4", "messages|length"])})`,
        ],
      ],
      [1, () => ["c", [{ name: "c", ty: "str" }], this.e.str(s, 1)]],
    ]);
    const sub: Scope = { ...s, vars: [...s.vars, ...vars], loop: true, fenced: false };
    const cond = this.r.chance(0.15) ? ` if ${this.e.bool(sub, 1)}` : "";
    let out = this.tag(`for ${target} in ${iter}${cond}`, depth) +
      this.stmts(sub, depth + 1, 1 + this.r.int(4));
    if (this.r.chance(0.1)) out += this.tag("else", depth) + this.stmts(s, depth + 1, 1);
    // Jinja drops what a loop body sets; now and then the generator reads it anyway.
    if (this.r.chance(0.3)) s.vars.push(...sub.vars.slice(s.vars.length + vars.length));
    return out + this.tag("endfor", depth);
  }

  /** `{% macro %}` definitions, added to the scope. */
  macros(s: Scope, depth: number): string {
    let out = "";
    for (let n = 1 + this.r.int(2); n > 0; n--) {
      const name = this.r.pick(["render_content", "fmt", "render_tool"]) + (n > 1 ? n : "");
      const params = this.r.pick([["content"], ["content", "sep='\\n'"], ["x", "y=none"], ["m"]]);
      const names = params.map((p) => p.split("=")[0]);
      const sub: Scope = {
        ...s,
        fenced: true,
        vars: [
          ...s.vars,
          ...names.map((p) => ({ name: p, ty: (p === "m" ? "msg" : "any") as Ty })),
        ],
      };
      const body = this.r.chance(0.3) && names[0] === "content"
        ? this.tag("if content is string", depth + 1) + this.out("content", depth + 2) +
          this.tag("else", depth + 1) +
          this.block(
            "for part in content",
            this.out(this.r.pick(["part.text", "part", "part.text ~ sep"]), depth + 3),
            "endfor",
            depth + 2,
          ) + this.tag("endif", depth + 1)
        : this.stmts(sub, depth + 1, 1 + this.r.int(3)) +
          (this.r.chance(0.2) ? this.out("caller()", depth + 1) : "");
      out += this.block(`macro ${name}(${params.join(", ")})`, body, "endmacro", depth);
      s.macros.push({ name, params: names });
    }
    return out;
  }

  /** `ns = namespace(…)` with some of the flags real templates keep. */
  namespace(s: Scope, depth: number): string {
    const attrs = this.r.shuffle(NS_ATTRS).slice(0, 1 + this.r.int(3));
    const init = attrs.map(([n, ty]) => `${n}=${this.e.expr(ty, s, this.r.int(2))}`);
    for (const [n, ty] of attrs) s.ns.set(n, ty);
    return this.tag(`set ns = namespace(${init.join(", ")})`, depth);
  }

  /** The system prompt split off the front: `system_message` and `loop_messages`. */
  systemSplit(s: Scope, depth: number): string {
    const cond = this.r.pick([
      "messages[0]['role'] == 'system'",
      'messages[0].role == "system"',
      "messages and messages[0]['role'] == 'system'",
      "messages|length > 0 and messages[0].role == 'system'",
    ]);
    s.vars.push({ name: "system_message", ty: "str" }, { name: "loop_messages", ty: "msgs" });
    return this.tag(`if ${cond}`, depth) +
      this.tag(
        `set system_message = messages[0]['content']${this.r.chance(0.3) ? "|trim" : ""}`,
        depth + 1,
      ) +
      this.tag("set loop_messages = messages[1:]", depth + 1) + this.tag("else", depth) +
      (this.r.chance(0.5) ? this.tag(`set system_message = ${this.e.strLit()}`, depth + 1) : "") +
      this.tag("set loop_messages = messages", depth + 1) + this.tag("endif", depth);
  }

  /** The tools section: each schema through `|tojson`. */
  toolsSection(s: Scope, depth: number): string {
    const sub: Scope = {
      ...s,
      vars: [...s.vars, { name: "tool", ty: "tool" }],
      loop: true,
      fenced: false,
    };
    const body = this.out(this.e.lit("\n"), depth + 2) +
      this.out(
        `${
          this.r.pick(["tool", "tool.function", "tool|tojson|safe|string", "tool"])
        }|${this.e.tojson()}`,
        depth + 2,
      ) +
      this.stmts(sub, depth + 2, this.r.int(2));
    return this.tag(`if tools${this.r.chance(0.3) ? " is not none" : ""}`, depth) +
      this.out(this.e.lit("<|im_start|>system\n# Tools\n\n<tools>"), depth + 1) +
      this.block("for tool in tools", body, "endfor", depth + 1) +
      this.out(this.e.lit("\n</tools><|im_end|>\n"), depth + 1) + this.tag("endif", depth);
  }

  /** Qwen3's backwards scan for the last user query. */
  lastQuery(s: Scope, depth: number): string {
    s.ns.set("multi_step_tool", "bool").set("last_query_index", "int");
    const body = this.tag("set index = (messages|length - 1) - loop.index0", depth + 1) +
      this.tag(
        'if ns.multi_step_tool and message.role == "user" and message.content is string and ' +
          "not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>'))",
        depth + 1,
      ) +
      this.tag("set ns.multi_step_tool = false", depth + 2) +
      this.tag("set ns.last_query_index = index", depth + 2) + this.tag("endif", depth + 1);
    return this.tag(
      "set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1)",
      depth,
    ) + this.block("for message in messages[::-1]", body, "endfor", depth);
  }

  /** The loop over the conversation, dispatching on the role. */
  messageLoop(s: Scope, depth: number): string {
    const msgs = s.vars.some((v) => v.name === "loop_messages") && this.r.chance(0.7)
      ? "loop_messages"
      : this.e.msgs(s, 1);
    const sub: Scope = {
      ...s,
      vars: [...s.vars, { name: "message", ty: "msg" }],
      loop: true,
      fenced: false,
    };
    const role = () =>
      this.r.pick(["message['role']", "message.role", "message.role", "message['role']|lower"]);
    let body = this.stmts(sub, depth + 1, this.r.int(2));
    if (this.r.chance(0.08)) {
      body += this.tag(`if (${role()} == 'user') != (loop.index0 % 2 == 0)`, depth + 1) +
        this.out(
          "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...')",
          depth + 2,
        ) +
        this.tag("endif", depth + 1);
    }
    const roles = this.r.shuffle(["user", "assistant", "system", "tool"])
      .slice(0, this.r.chance(0.7) ? 4 : 1 + this.r.int(4));
    roles.forEach((r, i) => {
      const test = this.r.chance(0.15) ? `${role()} in ['${r}']` : `${role()} == '${r}'`;
      body += this.tag(`${i ? "elif" : "if"} ${test}`, depth + 1) +
        this.out(
          this.r.pick([
            `'<|im_start|>${r}\n'`,
            `'[${r.toUpperCase()}] '`,
            `'<|' + message.role + '|>'`,
          ]),
          depth + 2,
        ) +
        (r === "assistant" && this.r.chance(0.5) ? this.toolCalls(sub, depth + 2) : "") +
        this.stmts(sub, depth + 2, 1 + this.r.int(3)) +
        this.out(this.r.pick(["'<|im_end|>\n'", "eos_token", "'\n'", "' '"]), depth + 2);
    });
    if (this.r.chance(0.6)) {
      body += this.tag("else", depth + 1) +
        (this.r.chance(0.7)
          ? this.out(`raise_exception('Unexpected message role: ' + message.role)`, depth + 2)
          : this.stmts(sub, depth + 2, 1));
    }
    body += this.tag("endif", depth + 1) + this.stmts(sub, depth + 1, this.r.int(2));
    const cond = this.r.chance(0.1) ? " if message.role != 'system'" : "";
    return this.block(`for message in ${msgs}${cond}`, body, "endfor", depth);
  }

  /** `add_generation_prompt`, with the thinking switch now and then. */
  generationPrompt(s: Scope, depth: number): string {
    const think = this.r.chance(0.4)
      ? this.tag("if enable_thinking is defined and enable_thinking is false", depth + 1) +
        this.out("'<think>\n\n</think>\n\n'", depth + 2) + this.tag("endif", depth + 1)
      : "";
    return this.tag("if add_generation_prompt", depth) +
      this.out(
        this.e.lit(
          this.r.pick(["<|im_start|>assistant\n", "[/INST]", "Assistant:", "<|assistant|>"]),
        ),
        depth + 1,
      ) +
      think + this.stmts(s, depth + 1, this.r.int(2)) + this.tag("endif", depth);
  }

  /** A whole template: preamble pieces, the loop (mostly), the generation prompt. */
  template(extras: readonly string[]): string {
    const s: Scope = {
      vars: extras.map((name) => ({ name, ty: "any" as Ty })),
      loop: false,
      macros: [],
      ns: new Map(),
    };
    const parts: string[] = [];
    const r = this.r;
    if (r.chance(0.3)) parts.push(this.out("bos_token", 0));
    if (r.chance(0.2)) parts.push(this.macros(s, 0));
    if (r.chance(0.15)) parts.push(this.lastQuery(s, 0));
    else if (r.chance(0.35)) parts.push(this.namespace(s, 0));
    if (r.chance(0.45)) parts.push(this.systemSplit(s, 0));
    if (r.chance(0.3)) parts.push(this.toolsSection(s, 0));
    if (r.chance(0.5)) parts.push(this.stmts(s, 0, 1 + r.int(3)));
    if (r.chance(0.75)) parts.push(this.messageLoop(s, 0));
    else parts.push(this.stmts(s, 0, 2 + r.int(6)));
    if (r.chance(0.3)) parts.push(this.stmts(s, 0, 1 + r.int(2)));
    if (r.chance(0.65)) parts.push(this.generationPrompt(s, 0));
    return parts.join(r.chance(0.1) ? "\n" : "");
  }

  setStmt(s: Scope, depth: number): string {
    const ty = this.r.pick(["str", "str", "any", "int", "bool", "list", "msgs"] as Ty[]);
    const name = this.r.chance(0.1) && s.vars.length
      ? this.r.pick(s.vars).name
      : this.r.pick(SET_NAMES);
    const value = this.e.expr(ty, s, this.d());
    s.vars.push({ name, ty });
    return this.tag(`set ${name} = ${value}`, depth);
  }

  nsSet(s: Scope, depth: number): string {
    const [name, ty] = this.r.pick([...s.ns]);
    const value = ty === "str" && this.r.chance(0.5)
      ? `ns.${name} ~ ${this.e.printable(s, 1)}`
      : this.e.expr(ty, s, this.d());
    return this.tag(`set ns.${name} = ${value}`, depth);
  }

  setBlock(s: Scope, depth: number): string {
    const name = this.r.pick(SET_NAMES);
    const filt = this.r.chance(0.3) ? `|${this.r.pick(["trim", "upper", "length"])}` : "";
    const body = this.stmts(s, depth + 1, 1 + this.r.int(2));
    s.vars.push({ name, ty: filt === "|length" ? "int" : "str" });
    return this.block(`set ${name}${filt}`, body, "endset", depth);
  }

  /** Content as a string, or its text parts. */
  contentRender(s: Scope, depth: number): string {
    const m = this.e.msg(s, 0);
    const inner = this.tag(`if part.type == 'text'`, depth + 2) +
      this.out(this.r.pick(["part.text", "part['text']", "part.text|trim"]), depth + 3) +
      (this.r.chance(0.4) ? this.tag("elif part.type == 'image'", depth + 2) + "<image>" : "") +
      this.tag("endif", depth + 2);
    return this.tag(`if ${m}.content is string`, depth) +
      this.out(
        this.r.pick([`${m}.content`, `${m}['content']|trim`, `${m}.content.strip()`]),
        depth + 1,
      ) +
      this.tag(this.r.chance(0.7) ? "else" : `elif ${m}.content is iterable`, depth) +
      this.block(`for part in ${m}.content`, inner, "endfor", depth + 1) + this.tag("endif", depth);
  }

  /** Tool calls as JSON, arguments as they come or through `|tojson`. */
  toolCalls(s: Scope, depth: number): string {
    const m = this.e.msg(s, 0);
    const inner = s.vars.some((v) => v.name === "tool_call")
      ? ""
      : this.tag("if tool_call.function is defined", depth + 2) +
        this.tag("set tool_call = tool_call.function", depth + 3) + this.tag("endif", depth + 2);
    const sub: Scope = {
      ...s,
      vars: [...s.vars, { name: "tool_call", ty: "tc" }],
      loop: true,
      fenced: false,
    };
    const body = inner +
      this.out(
        this.e.lit(this.r.pick(['<tool_call>\n{"name": "', '{"name": "', "[TOOL_CALLS] "])),
        depth + 2,
      ) +
      this.out(this.r.pick(["tool_call.name", "tool_call['name']"]), depth + 2) +
      this.out(`'", "arguments": '`, depth + 2) +
      this.tag("if tool_call.arguments is string", depth + 2) +
      this.out("tool_call.arguments", depth + 3) +
      this.tag("else", depth + 2) + this.out(`tool_call.arguments|${this.e.tojson()}`, depth + 3) +
      this.tag("endif", depth + 2) + this.stmts(sub, depth + 2, this.r.int(2)) +
      this.out(
        this.r.pick([`'}\\n</tool_call>'`, "'}'", `'}' + (', ' if not loop.last else '')`]),
        depth + 2,
      );
    return this.tag(`if ${m}.tool_calls${this.r.chance(0.3) ? " is defined" : ""}`, depth) +
      this.block(`for tool_call in ${m}.tool_calls`, body, "endfor", depth + 1) +
      this.tag("endif", depth);
  }

  /** Reasoning: the field, or the text before `</think>`. */
  reasoning(s: Scope, depth: number): string {
    const m = this.e.msg(s, 0);
    s.vars.push({ name: "content", ty: "str" }, { name: "reasoning_content", ty: "str" });
    return this.tag(
      `set content = ${m}.content${this.r.chance(0.5) ? "|default('', true)" : ""}`,
      depth,
    ) +
      this.tag(`set reasoning_content = ''`, depth) +
      this.tag(`if ${m}.reasoning_content is string`, depth) +
      this.tag(`set reasoning_content = ${m}.reasoning_content`, depth + 1) +
      this.tag(`elif '</think>' in content`, depth) +
      this.tag(
        `set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n')`,
        depth + 1,
      ) +
      this.tag(`set content = content.split('</think>')[-1].lstrip('\\n')`, depth + 1) +
      this.tag("endif", depth) +
      this.out(
        `'<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n')`,
        depth,
      );
  }
}

/**
 * The case of `seed`: the same seed always gives the same template and context.
 *
 * @example
 * ```ts
 * import { generateChatTemplateCase } from "./chat_templates_gen.ts";
 * const c = generateChatTemplateCase(7);
 * c.template === generateChatTemplateCase(7).template; // true
 * ```
 */
export function generateChatTemplateCase(seed: number): ChatTemplateCase {
  const r = new Rand(mulberry32(seed * 2654435761));
  const { context, extras } = randomContext(r);
  const template = new TemplateGen(r).template(extras);
  return { name: `fuzz/${seed}`, seed, template, context };
}
