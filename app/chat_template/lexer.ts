/**
 * Jinja's lexer as Hugging Face chat templates are compiled: `trim_blocks`
 * and `lstrip_blocks` on, one trailing newline of the source dropped, all
 * newlines as `\n`, whitespace control with `-` (strip) and `+` (keep).
 *
 * @module
 */

/** One token of a template. */
export type Token =
  | { readonly kind: "data"; readonly value: string; readonly line: number }
  | {
    readonly kind:
      | "var_begin"
      | "var_end"
      | "block_begin"
      | "block_end"
      | "name"
      | "string"
      | "op"
      | "eof";
    readonly value: string;
    readonly line: number;
  }
  | { readonly kind: "int" | "float"; readonly value: number; readonly line: number };

/**
 * A template syntax error: `SyntaxError` naming the line.
 *
 * @example
 * ```ts
 * import { templateSyntaxError } from "./lexer.ts";
 * templateSyntaxError("unexpected end of template", 3).message; // "chat template line 3: unexpected end of template"
 * ```
 */
export function templateSyntaxError(message: string, line: number): SyntaxError {
  return new SyntaxError(`chat template line ${line}: ${message}`);
}

const OPERATORS = [
  "//",
  "**",
  "==",
  "!=",
  ">=",
  "<=",
  "+",
  "-",
  "/",
  "*",
  "%",
  "~",
  "[",
  "]",
  "(",
  ")",
  "{",
  "}",
  ">",
  "<",
  "=",
  ".",
  ":",
  "|",
  ",",
  ";",
];

const FLOAT = /(?:\d+_)*\d+(?:(?:\.(?:\d+_)*\d+)?e[+-]?(?:\d+_)*\d+|\.(?:\d+_)*\d+)/y;
const INT = /0b(?:_?[01])+|0o(?:_?[0-7])+|0x(?:_?[\da-f])+|[1-9](?:_?\d)*|0(?:_?0)*/iy;
const NAME = /[\p{L}_][\p{L}\p{N}_]*/uy;
const STRING = /'([^'\\]*(?:\\.[^'\\]*)*)'|"([^"\\]*(?:\\.[^"\\]*)*)"/sy;
const RAW_BEGIN = /\{%([-+]?)\s*raw\s*(-?)%\}/y;
const RAW_END = /\{%([-+]?)\s*endraw\s*(?:\+%\}|-%\}\s*|%\}\n?)/g;

/**
 * The tokens of `source`.
 *
 * @example
 * ```ts
 * import { tokenize } from "./lexer.ts";
 * tokenize("a{{ b }}").map((t) => t.kind); // ["data", "var_begin", "name", "var_end", "eof"]
 * ```
 */
export function tokenize(source: string): Token[] {
  let src = source.replace(/\r\n|\r/g, "\n");
  if (src.endsWith("\n")) src = src.slice(0, -1); // keep_trailing_newline=False
  const out: Token[] = [];
  let pos = 0;
  let lineStarting = true;
  const lineAt = (p: number) => {
    let n = 1;
    for (let i = src.indexOf("\n"); i >= 0 && i < p; i = src.indexOf("\n", i + 1)) n++;
    return n;
  };
  while (pos < src.length) {
    const idx = nextTag(src, pos);
    if (idx < 0) {
      out.push({ kind: "data", value: src.slice(pos), line: lineAt(pos) });
      break;
    }
    const kind = src[idx + 1]; // "{", "%" or "#"
    const sign = src[idx + 2] === "-" || src[idx + 2] === "+" ? src[idx + 2] : "";
    let text = src.slice(pos, idx);
    if (sign === "-") text = text.replace(/\s+$/, "");
    else if (sign !== "+" && kind !== "{") {
      // lstrip_blocks: only blanks between the line's start and a block or comment tag.
      const l = text.lastIndexOf("\n") + 1;
      if ((l > 0 || lineStarting) && /^[ \t]*$/.test(text.slice(l))) text = text.slice(0, l);
    }
    if (text) out.push({ kind: "data", value: text, line: lineAt(pos) });
    const line = lineAt(idx);
    if (kind === "#") {
      const end = /-#\}\s*|#\}\n?/g;
      end.lastIndex = idx + 2;
      const m = end.exec(src);
      if (!m) throw templateSyntaxError("missing end of comment tag", line);
      pos = m.index + m[0].length;
      lineStarting = m[0].endsWith("\n");
      continue;
    }
    if (kind === "%") {
      RAW_BEGIN.lastIndex = idx;
      const raw = RAW_BEGIN.exec(src);
      if (raw) {
        let p = idx + raw[0].length;
        if (raw[2] === "-") p = skipSpace(src, p);
        RAW_END.lastIndex = p;
        const e = RAW_END.exec(src);
        if (!e) throw templateSyntaxError("missing endraw", line);
        let body = src.slice(p, e.index);
        if (e[1] === "-") body = body.replace(/\s+$/, "");
        else if (e[1] === "") {
          // lstrip_blocks before endraw too: blanks alone on its line go.
          const l = body.lastIndexOf("\n") + 1;
          if (l > 0 && /^[ \t]*$/.test(body.slice(l))) body = body.slice(0, l);
        }
        if (body) out.push({ kind: "data", value: body, line });
        pos = e.index + e[0].length;
        lineStarting = e[0].endsWith("\n");
        continue;
      }
    }
    out.push({ kind: kind === "{" ? "var_begin" : "block_begin", value: "", line });
    const r = lexTag(src, idx + 2 + sign.length, kind === "{" ? "}}" : "%}", out, lineAt);
    pos = r.pos;
    lineStarting = r.lineStarting;
  }
  out.push({ kind: "eof", value: "", line: lineAt(src.length) });
  return out;
}

/** The index of the next `{{`, `{%` or `{#` at or after `from`, or -1. */
function nextTag(src: string, from: number): number {
  for (let i = src.indexOf("{", from); i >= 0; i = src.indexOf("{", i + 1)) {
    const c = src[i + 1];
    if (c === "{" || c === "%" || c === "#") return i;
  }
  return -1;
}

function skipSpace(src: string, p: number): number {
  while (p < src.length && /\s/.test(src[p])) p++;
  return p;
}

/** Lexes a tag's expression tokens up to its end delimiter. */
function lexTag(
  src: string,
  start: number,
  end: "}}" | "%}",
  out: Token[],
  lineAt: (p: number) => number,
): { pos: number; lineStarting: boolean } {
  let p = start;
  const stack: string[] = [];
  const open = lineAt(start);
  while (true) {
    p = skipSpace(src, p);
    if (p >= src.length) {
      throw templateSyntaxError(`unexpected end of template, expected '${end}'`, open);
    }
    if (stack.length === 0) {
      const closing = matchEnd(src, p, end);
      if (closing) {
        out.push({ kind: end === "}}" ? "var_end" : "block_end", value: "", line: lineAt(p) });
        return { pos: closing, lineStarting: src[closing - 1] === "\n" };
      }
    }
    const line = lineAt(p);
    let m: RegExpExecArray | null;
    if ((m = sticky(FLOAT, src, p))) {
      out.push({ kind: "float", value: Number(m[0].replaceAll("_", "")), line });
    } else if ((m = sticky(INT, src, p))) {
      out.push({ kind: "int", value: Number(m[0].replaceAll("_", "")), line });
    } else if ((m = sticky(NAME, src, p))) {
      out.push({ kind: "name", value: m[0], line });
    } else if ((m = sticky(STRING, src, p))) {
      out.push({ kind: "string", value: unescape(m[1] ?? m[2], line), line });
    } else {
      const op = OPERATORS.find((o) => src.startsWith(o, p));
      if (!op) throw templateSyntaxError(`unexpected char ${JSON.stringify(src[p])}`, line);
      if (op === "(" || op === "[" || op === "{") stack.push(op);
      else if (op === ")" || op === "]" || op === "}") {
        const want = { ")": "(", "]": "[", "}": "{" }[op];
        if (stack.pop() !== want) throw templateSyntaxError(`unexpected '${op}'`, line);
      }
      out.push({ kind: "op", value: op, line });
      p += op.length;
      continue;
    }
    p += m[0].length;
  }
}

/** The position after the tag's end delimiter at `p` (with its whitespace control), or 0. */
function matchEnd(src: string, p: number, end: string): number {
  if (src[p] === "-" && src.startsWith(end, p + 1)) return skipSpace(src, p + 3);
  if (end === "%}" && src[p] === "+" && src.startsWith(end, p + 1)) return p + 3;
  if (!src.startsWith(end, p)) return 0;
  // trim_blocks: the first newline after a block tag goes.
  return end === "%}" && src[p + 2] === "\n" ? p + 3 : p + 2;
}

function sticky(re: RegExp, src: string, p: number): RegExpExecArray | null {
  re.lastIndex = p;
  return re.exec(src);
}

/** A string literal's escapes, as Python's `unicode-escape` codec decodes them. */
function unescape(s: string, line: number): string {
  if (!s.includes("\\")) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const n = s[++i];
    const simple: Record<string, string> = {
      "\\": "\\",
      "'": "'",
      '"': '"',
      n: "\n",
      t: "\t",
      r: "\r",
      b: "\b",
      f: "\f",
      v: "\v",
      a: "\x07",
      "0": "\0",
      "\n": "",
    };
    if (n in simple && !(n === "0" && /[0-7]/.test(s[i + 1] ?? ""))) {
      out += simple[n];
      continue;
    }
    const hex = n === "x" ? 2 : n === "u" ? 4 : n === "U" ? 8 : 0;
    if (hex) {
      const h = s.slice(i + 1, i + 1 + hex);
      if (!new RegExp(`^[0-9a-fA-F]{${hex}}$`).test(h)) {
        throw templateSyntaxError(`bad \\${n} escape in a string`, line);
      }
      out += String.fromCodePoint(parseInt(h, 16));
      i += hex;
      continue;
    }
    const oct = /^[0-7]{1,3}/.exec(s.slice(i));
    if (oct) {
      out += String.fromCodePoint(parseInt(oct[0], 8));
      i += oct[0].length - 1;
      continue;
    }
    out += "\\" + n; // unknown escapes stay as written
  }
  return out;
}
