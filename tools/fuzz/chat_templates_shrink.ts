/**
 * Shrinking a failing `chat-templates` case, on the text: the template is cut into
 * data, `{{ … }}`, `{% … %}` and `{# … #}` pieces, and the candidates are the case less
 * a whole block (`{% if %}` … `{% endif %}`), a block unwrapped to one of its branches,
 * one piece, an `elif`/`else` branch, characters of the text, a dash, a filter, a
 * parenthesised group or a few tokens of an expression, characters of a string literal;
 * and the context less a key, an item, characters of a string. Each round sends the
 * candidates, smallest first, in batches to both sides and keeps the smallest that
 * still fails with the same signature; it stops when none does. Private to the campaign.
 *
 * @module
 */

import type { Json } from "./chat_templates_context.ts";
import type { ChatTemplateCase } from "./chat_templates_gen.ts";

/** Candidates sent per round trip. */
const BATCH = 300;

const PIECE = /\{%[\s\S]*?%\}|\{\{[\s\S]*?\}\}|\{#[\s\S]*?#\}/g;
const TOKEN =
  /'(?:[^'\\]|\\[\s\S])*'|"(?:[^"\\]|\\[\s\S])*"|\d[\d_.eE+-]*|\w+|\/\/|\*\*|[=!<>]=|\s+|[\s\S]/g;
const OPENERS = new Set(["if", "for", "macro", "call", "filter", "with", "raw", "generation"]);

/** Size, to prefer: characters of the template and of the context's JSON. */
function size(c: ChatTemplateCase): number {
  return c.template.length + JSON.stringify(c.context).length;
}

function pieces(t: string): string[] {
  const out: string[] = [];
  let at = 0;
  for (const m of t.matchAll(PIECE)) {
    if (m.index! > at) out.push(t.slice(at, m.index));
    out.push(m[0]);
    at = m.index! + m[0].length;
  }
  if (at < t.length) out.push(t.slice(at));
  return out;
}

function tagName(p: string): string | undefined {
  const m = /^\{%[-+]?\s*(\w+)/.exec(p);
  if (!m) return undefined;
  if (m[1] === "set" && !/=/.test(p.replace(/\|[^%]*/, ""))) return "setblock";
  return m[1];
}

/** Blocks: opening piece, the `elif`/`else` pieces at its level, the end piece. */
function blocks(ps: string[]): { open: number; mids: number[]; end: number }[] {
  const out: { open: number; mids: number[]; end: number }[] = [];
  const stack: { open: number; name: string; mids: number[] }[] = [];
  ps.forEach((p, i) => {
    const name = tagName(p);
    if (!name) return;
    if (OPENERS.has(name) || name === "setblock") stack.push({ open: i, name, mids: [] });
    else if ((name === "elif" || name === "else") && stack.length) {
      stack[stack.length - 1].mids.push(i);
    } else if (name.startsWith("end") && stack.length) {
      const b = stack.pop()!;
      out.push({ open: b.open, mids: b.mids, end: i });
    }
  });
  return out;
}

/** Variants of an expression tag's inside: fewer tokens, groups, filters, shorter literals. */
function innerVariants(p: string): string[] {
  const out: string[] = [];
  const m = /^(\{[{%#][-+]?)([\s\S]*?)([-+]?[}%#]\})$/.exec(p);
  if (!m) return out;
  const [, open, inner, close] = m;
  if (/[-+]$/.test(open)) out.push(open.slice(0, -1) + inner + close);
  if (/^[-+]/.test(close)) out.push(open + inner + close.slice(1));
  const toks = inner.match(TOKEN) ?? [];
  const join = (ts: string[]) => open + ts.join("") + close;
  for (let n = 1; n <= 4; n++) {
    for (let i = 0; i + n <= toks.length; i++) {
      if (/^\s+$/.test(toks[i])) continue;
      out.push(join([...toks.slice(0, i), ...toks.slice(i + n)]));
    }
  }
  toks.forEach((t, i) => {
    // A group: drop it, or keep only what is inside.
    const close = t === "(" ? ")" : t === "[" ? "]" : undefined;
    if (close) {
      let depth = 0;
      for (let j = i; j < toks.length; j++) {
        if (toks[j] === t) depth++;
        else if (toks[j] === close && --depth === 0) {
          out.push(join([...toks.slice(0, i), ...toks.slice(j + 1)]));
          out.push(join([...toks.slice(0, i), ...toks.slice(i + 1, j), ...toks.slice(j + 1)]));
          break;
        }
      }
    }
    // A filter with its arguments.
    if (t === "|" && /^\w/.test(toks[i + 1] ?? "")) {
      let j = i + 2;
      if (toks[j] === "(") {
        let depth = 0;
        for (; j < toks.length; j++) {
          if (toks[j] === "(") depth++;
          else if (toks[j] === ")" && --depth === 0) break;
        }
        j++;
      }
      out.push(join([...toks.slice(0, i), ...toks.slice(j)]));
    }
    if (/^['"]/.test(t) && t.length > 2) {
      const q = t[0], body = t.slice(1, -1);
      const edit = (b: string) => join([...toks.slice(0, i), q + b + q, ...toks.slice(i + 1)]);
      out.push(edit(""), edit(body.slice(0, body.length >> 1)), edit(body.slice(body.length >> 1)));
      if (body.length <= 16) {
        for (let k = 0; k < body.length; k++) {
          out.push(edit(body.slice(0, k) + body.slice(k + 1)));
        }
      }
    }
    if (/^\d/.test(t) && t !== "0" && t !== "1") {
      out.push(join([...toks.slice(0, i), "1", ...toks.slice(i + 1)]));
    }
  });
  return out;
}

/** Shorter texts: empty, halves, one character less (short texts). */
function textVariants(t: string): string[] {
  const out = ["", t.slice(0, t.length >> 1), t.slice(t.length >> 1)];
  if (t.length <= 24) {
    for (let k = 0; k < t.length; k++) {
      out.push(t.slice(0, k) + t.slice(k + 1));
    }
  }
  if (/\s{2,}/.test(t)) out.push(t.replace(/\s+/g, (w) => w[0]));
  return out;
}

function templateCandidates(t: string): string[] {
  const ps = pieces(t);
  const out: string[] = [];
  const without = (from: number, to: number, keep: string[] = []) =>
    [...ps.slice(0, from), ...keep, ...ps.slice(to)].join("");
  for (const b of blocks(ps)) {
    out.push(without(b.open, b.end + 1));
    const cuts = [b.open, ...b.mids, b.end];
    for (let k = 0; k + 1 < cuts.length; k++) {
      out.push(without(b.open, b.end + 1, ps.slice(cuts[k] + 1, cuts[k + 1])));
      if (k > 0) out.push(without(cuts[k], cuts[k + 1]));
    }
  }
  const structural = new Set<number>();
  for (const b of blocks(ps)) [b.open, ...b.mids, b.end].forEach((i) => structural.add(i));
  ps.forEach((p, i) => {
    if (!structural.has(i)) out.push(without(i, i + 1));
    const variants = /^\{[{%#]/.test(p) ? innerVariants(p) : textVariants(p);
    for (const v of variants) out.push(without(i, i + 1, [v]));
  });
  return out;
}

function jsonCandidates(
  v: Json,
  replace: (x: Json | undefined) => void,
  out: (() => void)[],
): void {
  if (typeof v === "string") {
    for (const t of textVariants(v)) if (t !== v) out.push(() => replace(t));
  } else if (Array.isArray(v)) {
    v.forEach((x, i) => {
      out.push(() => replace(v.filter((_, j) => j !== i)));
      jsonCandidates(x, (y) => replace(v.map((z, j) => (j === i ? y! : z))), out);
    });
  } else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      out.push(() => {
        const o = { ...v };
        delete o[k];
        replace(o);
      });
      jsonCandidates(x, (y) => replace({ ...v, [k]: y! }), out);
    }
  }
}

function candidates(c: ChatTemplateCase): ChatTemplateCase[] {
  const out = templateCandidates(c.template).map((template) => ({ ...c, template }));
  const edits: (() => void)[] = [];
  let made: Json | undefined;
  jsonCandidates(c.context, (x) => (made = x), edits);
  for (const edit of edits) {
    edit();
    out.push({ ...c, context: made as Record<string, Json> });
  }
  return out;
}

/**
 * Shrinks `c` while `fails` says candidates still fail the same way: `fails` gets a
 * batch and answers, for each, whether it does. Stops at `deadline` (epoch ms).
 *
 * @example
 * ```ts ignore
 * const small = await shrinkChatTemplateCase(c, async (batch) => batch.map(stillFails), Date.now() + 60_000);
 * ```
 */
export async function shrinkChatTemplateCase(
  c: ChatTemplateCase,
  fails: (batch: ChatTemplateCase[]) => Promise<boolean[]>,
  deadline: number,
): Promise<ChatTemplateCase> {
  const seen = new Set<string>();
  const key = (x: ChatTemplateCase) => x.template + "\u0000" + JSON.stringify(x.context);
  seen.add(key(c));
  let best = c;
  for (let improved = true; improved && Date.now() < deadline;) {
    improved = false;
    const now = size(best);
    const list = candidates(best).filter((x) => {
      const k = key(x);
      if (seen.has(k) || size(x) >= now) return false;
      seen.add(k);
      return true;
    }).sort((a, b) => size(a) - size(b));
    for (let i = 0; i < list.length && Date.now() < deadline; i += BATCH) {
      const batch = list.slice(i, i + BATCH).map((x, j) => ({
        ...x,
        name: `${c.name}/shrink${i + j}`,
      }));
      const verdict = await fails(batch);
      const at = verdict.indexOf(true);
      if (at >= 0) {
        best = { ...batch[at], name: c.name };
        improved = true;
        break;
      }
    }
  }
  return best;
}
