/**
 * Chat templates: the Jinja text a model's tokenizer ships
 * (`chat_template.jinja`, `tokenizer_config.json`'s `chat_template`, a GGUF
 * file's `tokenizer.chat_template`) that turns a conversation into the prompt
 * the model was trained on — rendered as transformers'
 * `apply_chat_template` renders it (its sandboxed Jinja environment with
 * `trim_blocks`, `lstrip_blocks`, loop controls, its `tojson`,
 * `raise_exception` and `strftime_now`), by an interpreter written here.
 *
 * @module
 */

import { parseTemplate } from "./parser.ts";
import type { Node } from "./parser.ts";
import { Frame, render, TemplateError } from "./render.ts";
import { isBuiltin } from "./builtins.ts";
import { templateGlobals } from "./globals.ts";
import { strftime } from "./pyformat.ts";
import { fromJs } from "./values.ts";

export { TemplateError } from "./render.ts";

/**
 * One message of a conversation: `role` and `content` (text, or a list of
 * parts such as `{ type: "text", text }`), and whatever else a template reads
 * (`tool_calls`, `reasoning_content`, `name`, …).
 *
 * @example
 * ```ts
 * import type { ChatMessage } from "./template.ts";
 * const m: ChatMessage = { role: "user", content: "Hello!" };
 * ```
 */
export interface ChatMessage {
  /** "system", "user", "assistant", "tool", … */
  readonly role: string;
  /** The text, or a list of content parts. */
  readonly content?: unknown;
  /** Anything else the template reads. */
  readonly [key: string]: unknown;
}

/**
 * What `apply` passes a template beside the messages.
 *
 * @example
 * ```ts
 * import type { ChatOptions } from "./template.ts";
 * const o: ChatOptions = { addGenerationPrompt: true, specialTokens: { bos_token: "<s>" } };
 * ```
 */
export interface ChatOptions {
  /** End with the assistant turn's opening (`add_generation_prompt`). Default false. */
  readonly addGenerationPrompt?: boolean;
  /** Tool (function) definitions, as JSON schemas (`tools`). */
  readonly tools?: readonly unknown[];
  /** Documents for retrieval templates (`documents`). */
  readonly documents?: readonly unknown[];
  /** The tokenizer's special tokens by name (`bos_token`, `eos_token`, …). */
  readonly specialTokens?: Readonly<Record<string, string>>;
  /** Further template variables (`enable_thinking`, `reasoning_effort`, …). */
  readonly variables?: Readonly<Record<string, unknown>>;
  /** The time `strftime_now` reads. Default: now. */
  readonly now?: Date;
  /**
   * Leave the final message open for the model to continue (transformers'
   * `continue_final_message`): the text ends where that message's `content`
   * (or the field named) ends. Not with `addGenerationPrompt`.
   */
  readonly continueFinalMessage?: boolean | string;
}

/** The marker transformers appends to the message to continue, to find where it ends. */
const CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG ";

/**
 * A compiled chat template.
 *
 * @example
 * ```ts
 * import { ChatTemplate } from "./template.ts";
 * const t = ChatTemplate.parse(
 *   "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}" +
 *     "{% if add_generation_prompt %}<|assistant|>{% endif %}",
 * );
 * t.apply([{ role: "user", content: "Hi" }], { addGenerationPrompt: true }); // "<|user|>Hi\n<|assistant|>"
 * ```
 */
export class ChatTemplate {
  /** The Jinja text. */
  readonly source: string;
  readonly #body: Node[];

  private constructor(source: string, body: Node[]) {
    this.source = source;
    this.#body = body;
  }

  /** Compiles `source`; Jinja that does not parse is a SyntaxError naming the line (and `what`). */
  static parse(source: string, what = "chat template"): ChatTemplate {
    if (typeof source !== "string") throw new TypeError(`${what}: expected a string`);
    try {
      const body = parseTemplate(source);
      checkNames(body);
      return new ChatTemplate(source, body);
    } catch (e) {
      if (e instanceof SyntaxError) throw new SyntaxError(`${what}: ${e.message}`);
      throw e;
    }
  }

  /**
   * Renders with `variables` (JSON values: objects become dicts) and the
   * globals transformers provides. A template's `raise_exception(msg)` is a
   * {@linkcode TemplateError} with `msg`; misuse of values a TypeError.
   */
  render(variables: Readonly<Record<string, unknown>>, now: Date = new Date()): string {
    const root = new Frame();
    for (const [k, v] of templateGlobals((f) => strftime(now, f), (m) => new TemplateError(m))) {
      root.vars.set(k, v);
    }
    for (const [k, v] of Object.entries(variables)) root.vars.set(k, fromJs(v));
    return render(this.#body, new Frame(root, this.#body));
  }

  /**
   * The prompt for `messages`, as `tokenizer.apply_chat_template(messages,
   * tokenize=False, …)` gives it: the template sees `messages`, `tools`,
   * `documents`, `add_generation_prompt`, the special tokens and `variables`.
   */
  apply(messages: readonly ChatMessage[], options: ChatOptions = {}): string {
    if (!Array.isArray(messages)) throw new TypeError("apply: messages must be an array");
    messages.forEach((m, i) => {
      if (typeof m !== "object" || m === null || typeof m.role !== "string") {
        throw new TypeError(`apply: message ${i} needs a string "role"`);
      }
    });
    const cont = options.continueFinalMessage;
    const field = typeof cont === "string" ? cont : "content";
    let chat = messages, final: string | undefined;
    if (cont) {
      if (options.addGenerationPrompt) {
        throw new TypeError(
          "apply: continueFinalMessage and addGenerationPrompt cannot both be set",
        );
      }
      if (messages.length === 0) {
        throw new RangeError("apply: continueFinalMessage needs a message");
      }
      [chat, final] = tagFinal(messages, field);
      if (!this.source.includes(field)) {
        throw new RangeError(
          `apply: continueFinalMessage is "${field}", which the chat template never reads`,
        );
      }
    }
    const out = this.render({
      ...options.specialTokens,
      ...options.variables,
      messages: chat,
      tools: options.tools ?? null,
      documents: options.documents ?? null,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    }, options.now);
    if (final === undefined) return out;
    if (!out.includes(final.trim()) || !out.includes(CONTINUE_TAG.trim())) {
      throw new RangeError(
        "apply: continueFinalMessage is set but the chat template drops part of the final message",
      );
    }
    const at = out.lastIndexOf(CONTINUE_TAG.trim());
    return out.startsWith(CONTINUE_TAG, at) ? out.slice(0, at) : out.slice(0, at).trimEnd();
  }
}

/**
 * Jinja refuses unknown filters and tests when it compiles, even in branches
 * never taken — except in the "soft" scope of an `if` block or an inline
 * `a if b else c`, where they fail only when evaluated (so `{% if 'x' is
 * filter %}` guards can exist); the body of a loop, macro, call, filter,
 * set or with block inside one is strict again (a frame of its own).
 */
function checkNames(tree: unknown, soft = false): void {
  if (Array.isArray(tree)) return tree.forEach((x) => checkNames(x, soft));
  if (typeof tree !== "object" || tree === null) return;
  const o = tree as Record<string, unknown>;
  if (o.t === "if" || o.t === "cond") soft = true;
  if ((o.t === "filter" || o.t === "test") && !soft && !isBuiltin(o.t, String(o.name))) {
    throw new SyntaxError(`chat template line ${o.line}: no ${o.t} named '${o.name}'`);
  }
  const inner = INNER_FRAMES[o.t as string];
  for (const [k, v] of Object.entries(o)) {
    checkNames(v, inner && (inner === "all" || inner.includes(k)) ? false : soft);
  }
}

/** The parts of each block Jinja compiles in a frame of its own (strict again); the rest, such
 * as a loop's iterable or a call block's call, in the enclosing one. */
const INNER_FRAMES: Record<string, "all" | readonly string[]> = {
  for: ["filter", "body", "else"],
  with: ["body"],
  callblock: ["params", "body"],
  macro: "all",
  filterblock: "all",
  setblock: ["filters", "body"],
  scope: "all",
};

/** `messages` with the final one's `field` (its last text part) marked; and that text. */
function tagFinal(messages: readonly ChatMessage[], field: string): [ChatMessage[], string] {
  const last = { ...messages[messages.length - 1] } as Record<string, unknown>;
  const value = last[field];
  let final: string;
  if (value === undefined || value === null) {
    throw new RangeError(
      `apply: continueFinalMessage is set but the final message has no "${field}"`,
    );
  }
  if (Array.isArray(value)) {
    const parts = value.map((p) => (typeof p === "object" && p !== null ? { ...p } : p));
    const i = parts.findLastIndex((p) => typeof p === "object" && p !== null && "text" in p);
    if (i < 0) {
      throw new RangeError(
        "apply: continueFinalMessage found no text to continue in the final message",
      );
    }
    final = String(parts[i].text);
    parts[i].text = final + CONTINUE_TAG;
    last[field] = parts;
  } else {
    final = String(value);
    last[field] = final + CONTINUE_TAG;
  }
  return [[...messages.slice(0, -1), last as unknown as ChatMessage], final];
}

/**
 * A GGUF file's chat template (`tokenizer.chat_template`, or
 * `tokenizer.chat_template.NAME`) from its metadata; undefined when absent.
 *
 * @example
 * ```ts
 * import { ggufChatTemplate } from "./template.ts";
 * const meta = new Map([["tokenizer.chat_template", "{{ messages[0].content }}"]]);
 * ggufChatTemplate(meta, "m.gguf")?.apply([{ role: "user", content: "hi" }]); // "hi"
 * ```
 */
export function ggufChatTemplate(
  metadata: ReadonlyMap<string, unknown>,
  file: string,
  name = "default",
): ChatTemplate | undefined {
  const key = name === "default" ? "tokenizer.chat_template" : `tokenizer.chat_template.${name}`;
  const t = metadata.get(key);
  if (t === undefined) return undefined;
  if (typeof t !== "string") throw new TypeError(`${file}: metadata "${key}" must be a string`);
  return ChatTemplate.parse(t, `${file} ${key}`);
}
