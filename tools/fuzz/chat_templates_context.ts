/**
 * Random contexts for the `chat-templates` campaign: what `apply_chat_template` hands a
 * template. Conversations with a system prompt or none, user / assistant / tool turns
 * (and now and then a role templates refuse), content as a string, a list of parts or
 * null, tool calls with dict or JSON-string arguments (OpenAI-style and flat),
 * `reasoning_content`; tool schemas; documents; `add_generation_prompt`; special tokens;
 * `enable_thinking` and random extra variables of every JSON type. Texts mix ASCII,
 * whitespace runs, quotes and backslashes, special-token lookalikes and other scripts.
 *
 * Left out on purpose (known, documented differences): integers at or past 2^53 and
 * integer-valued floats (JavaScript cannot tell `1.0` from `1`).
 *
 * @module
 */

import type { Rand } from "./tokenizers_texts.ts";

/** A JSON value, as a context holds them. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Pieces of message text: the shapes templates split, strip and search. */
export const TEXT_PIECES: readonly string[] = [
  "Hello!",
  "hi",
  "What's the weather in Paris?",
  "  padded  ",
  "line one\nline two",
  "<think>\nLet me think.\n</think>\n\nThe answer.",
  "</think>",
  "<tool_response>\nok\n</tool_response>",
  "日本語のテキスト",
  "Ünïcödé ✓ — «quotes»",
  "emoji 😀👍🏽",
  "quote \"double\" and 'single'",
  "back\\slash \\n",
  "tab\there",
  "",
  " ",
  "\n",
  "\n\n",
  "a|b, c",
  '{"json": true}',
  "<|im_end|>",
  "[INST]",
  "Σίσυφος",
  "مرحبا",
  "x",
  "42",
  "3.5",
  "True",
  "none",
  "{{ not a tag }}",
  "ß İ ﬁ",
];

/** Special-token strings templates print. */
export const TOKENS: readonly string[] = [
  "<s>",
  "</s>",
  "<|begin_of_text|>",
  "<|eot_id|>",
  "<|im_start|>",
  "<|im_end|>",
  "<|endoftext|>",
  "[INST]",
  "[/INST]",
  "<bos>",
  "",
];

const FLOATS = [
  0.5,
  -2.25,
  3.14159,
  1e-7,
  0.1,
  2.5e-5,
  123.456,
  -0.001,
  0.30000000000000004,
  1e-300,
];
const INTS = [0, 1, -1, 2, 7, 42, 1000, 65536, -12, 2147483647];
const KEYS = ["location", "unit", "query", "n", "flag", "items", "é", "with space", "a", "b"];
const NAMES = ["get_weather", "search", "calc", "python", "lookup_ü"];

/**
 * A text made of one to three pieces.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "../../core/random.ts";
 * import { Rand } from "./tokenizers_texts.ts";
 * import { randomTextValue } from "./chat_templates_context.ts";
 * typeof randomTextValue(new Rand(mulberry32(1))); // "string"
 * ```
 */
export function randomTextValue(r: Rand): string {
  const n = 1 + r.int(3);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(r.pick(TEXT_PIECES));
  return parts.join(r.pick([" ", "", "\n"]));
}

/**
 * A random JSON value: strings, small ints, non-integer floats, bools, null, and
 * (while `depth` lasts) lists and dicts of them.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "../../core/random.ts";
 * import { Rand } from "./tokenizers_texts.ts";
 * import { randomJson } from "./chat_templates_context.ts";
 * randomJson(new Rand(mulberry32(1)), 0) !== undefined; // true
 * ```
 */
export function randomJson(r: Rand, depth: number): Json {
  const k = r.int(depth > 0 ? 9 : 6);
  switch (k) {
    case 0:
    case 1:
      return randomTextValue(r);
    case 2:
      return r.pick(INTS);
    case 3:
      return r.pick(FLOATS);
    case 4:
      return r.chance(0.5);
    case 5:
      return r.chance(0.5) ? null : r.pick(TEXT_PIECES);
    case 6:
    case 7: {
      const o: Record<string, Json> = {};
      for (let i = r.int(4); i > 0; i--) o[r.pick(KEYS)] = randomJson(r, depth - 1);
      return o;
    }
    default:
      return Array.from({ length: r.int(4) }, () => randomJson(r, depth - 1));
  }
}

function toolCall(r: Rand, i: number): Json {
  const args: Record<string, Json> = {};
  for (let j = r.int(3); j > 0; j--) args[r.pick(KEYS)] = randomJson(r, 1);
  const fn = {
    name: r.pick(NAMES),
    arguments: r.chance(0.3) ? JSON.stringify(args) : args,
  };
  if (r.chance(0.15)) return fn; // flat, as some models' templates expect
  const call: Record<string, Json> = { type: "function", function: fn };
  if (r.chance(0.6)) call.id = `call_${i}`;
  return call;
}

/** Content as templates meet it: a string mostly, else a list of parts, else null. */
function content(r: Rand): Json {
  const x = r.next();
  if (x < 0.8) return randomTextValue(r);
  if (x < 0.95) {
    return Array.from(
      { length: 1 + r.int(3) },
      (): Json =>
        r.chance(0.75)
          ? { type: "text", text: randomTextValue(r) }
          : { type: r.pick(["image", "image_url"]) },
    );
  }
  return null;
}

/**
 * A conversation: an optional system turn, user / assistant turns, tool calls with
 * the tool turns answering them, reasoning, now and then an odd role or field.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "../../core/random.ts";
 * import { Rand } from "./tokenizers_texts.ts";
 * import { randomMessages } from "./chat_templates_context.ts";
 * Array.isArray(randomMessages(new Rand(mulberry32(1)))); // true
 * ```
 */
export function randomMessages(r: Rand): Json[] {
  const out: Json[] = [];
  if (r.chance(0.5)) out.push({ role: "system", content: content(r) });
  const n = r.int(6);
  for (let i = 0; i < n; i++) {
    if (r.chance(0.04)) {
      out.push({
        role: r.pick(["developer", "ipython", "function", "critic"]),
        content: content(r),
      });
      continue;
    }
    if (i % 2 === 0) {
      out.push({ role: "user", content: content(r) });
      continue;
    }
    const m: Record<string, Json> = { role: "assistant", content: content(r) };
    if (r.chance(0.25)) m.reasoning_content = randomTextValue(r);
    if (r.chance(0.3)) {
      const calls = Array.from({ length: 1 + r.int(2) }, (_, j) => toolCall(r, j));
      m.tool_calls = calls;
      if (r.chance(0.4)) m.content = r.chance(0.5) ? null : "";
      out.push(m);
      for (const c of calls) {
        const t: Record<string, Json> = { role: "tool", content: r.pick(TEXT_PIECES) };
        const id = (c as Record<string, Json>).id;
        if (id !== undefined && r.chance(0.7)) t.tool_call_id = id;
        if (r.chance(0.3)) t.name = r.pick(NAMES);
        out.push(t);
      }
      continue;
    }
    if (r.chance(0.1)) m.name = r.pick(NAMES);
    out.push(m);
  }
  return out;
}

/** Tool schemas as `apply_chat_template(tools=…)` passes them (always dicts). */
function randomTools(r: Rand): Json[] {
  return Array.from({ length: 1 + r.int(3) }, () => {
    const props: Record<string, Json> = {};
    const req: Json[] = [];
    for (let i = r.int(3); i > 0; i--) {
      const k = r.pick(KEYS);
      props[k] = { type: r.pick(["string", "integer", "number", "boolean"]) };
      if (r.chance(0.5)) (props[k] as Record<string, Json>).description = randomTextValue(r);
      if (r.chance(0.2)) (props[k] as Record<string, Json>).enum = ["a", "b"];
      if (r.chance(0.5)) req.push(k);
    }
    const fn: Record<string, Json> = {
      name: r.pick(NAMES),
      description: randomTextValue(r),
      parameters: { type: "object", properties: props, required: req },
    };
    if (r.chance(0.15)) delete fn.description;
    return r.chance(0.1) ? fn : { type: "function", function: fn };
  });
}

/**
 * A whole context, plus the names and types of its extra variables (so the template
 * generator can read them). With a non-empty `messages` the four variables
 * `render_jinja_template` always passes (`messages`, `tools`, `documents`,
 * `add_generation_prompt`) are all there, as the oracle requires.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "../../core/random.ts";
 * import { Rand } from "./tokenizers_texts.ts";
 * import { randomContext } from "./chat_templates_context.ts";
 * "add_generation_prompt" in randomContext(new Rand(mulberry32(1))).context; // true
 * ```
 */
export function randomContext(r: Rand): { context: Record<string, Json>; extras: string[] } {
  const ctx: Record<string, Json> = {};
  if (r.chance(0.97)) {
    ctx.messages = randomMessages(r);
    ctx.tools = r.chance(0.35) ? randomTools(r) : null;
    ctx.documents = r.chance(0.1)
      ? [{ title: "Doc", text: randomTextValue(r) }, { title: "ü", text: "" }]
      : null;
    ctx.add_generation_prompt = r.chance(0.5);
  }
  if (r.chance(0.8)) ctx.bos_token = r.pick(TOKENS);
  if (r.chance(0.8)) ctx.eos_token = r.pick(TOKENS);
  if (r.chance(0.3)) ctx.enable_thinking = r.chance(0.5);
  if (r.chance(0.15)) ctx.reasoning_effort = r.pick(["low", "medium", "high"]);
  const extras: string[] = [];
  for (const name of ["x", "y", "data", "items"]) {
    if (r.chance(0.3)) {
      ctx[name] = randomJson(r, 2);
      extras.push(name);
    }
  }
  return { context: ctx, extras };
}
