/**
 * `kiln generate --chat`: the prompt as a user turn (after `--system`'s
 * system turn) formatted by the model's chat template, or `--chat-template
 * FILE`'s, with `--chat-vars` JSON as further template variables
 * (`{"enable_thinking": false}`). Options are checked before the model loads.
 *
 * @module
 */

import { type ChatMessage, ChatTemplate, TemplateError } from "../chat_template/mod.ts";
import { chatSpecialTokens, modelChatTemplate } from "../model/source.ts";
import type { Model } from "../model/mod.ts";
import { UsageError } from "./errors.ts";

/**
 * Checked chat options.
 *
 * @example
 * ```ts
 * import type { ChatFlags } from "./chat.ts";
 * const f: ChatFlags = { system: "Be brief.", variables: {} };
 * ```
 */
export interface ChatFlags {
  /** `--system` text. */
  readonly system?: string;
  /** `--chat-template FILE`'s template. */
  readonly template?: ChatTemplate;
  /** `--chat-vars`. */
  readonly variables: Readonly<Record<string, unknown>>;
  /** `--interactive`: more user turns from stdin. */
  readonly interactive?: boolean;
}

/**
 * The chat flags of `values` (undefined without `--chat`); `--system`,
 * `--chat-template` or `--chat-vars` without `--chat`, an unreadable or
 * unparsable template file, or `--chat-vars` that is not a JSON object are
 * usage errors naming the flag.
 *
 * @example
 * ```ts ignore
 * const chat = await checkChatOptions({ chat: true, system: "Be brief." });
 * ```
 */
export async function checkChatOptions(
  values: Readonly<Record<string, string | boolean | undefined>>,
): Promise<ChatFlags | undefined> {
  if (values.chat !== true) {
    for (const f of ["system", "chat-template", "chat-vars", "interactive"]) {
      if (values[f] !== undefined) throw new UsageError(`generate: --${f} needs --chat`);
    }
    return undefined;
  }
  let variables: Record<string, unknown> = {};
  const vars = values["chat-vars"];
  if (vars !== undefined) {
    try {
      variables = JSON.parse(String(vars));
    } catch (e) {
      throw new UsageError(`generate: --chat-vars is not JSON (${(e as Error).message})`);
    }
    if (typeof variables !== "object" || variables === null || Array.isArray(variables)) {
      throw new UsageError(
        'generate: --chat-vars must be a JSON object, e.g. {"enable_thinking": false}',
      );
    }
  }
  const file = values["chat-template"];
  let template: ChatTemplate | undefined;
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(String(file));
    } catch (e) {
      throw new UsageError(`generate: --chat-template ${file}: ${(e as Error).message}`);
    }
    try {
      template = ChatTemplate.parse(text, String(file));
    } catch (e) {
      throw new UsageError(`generate: --chat-template: ${(e as Error).message}`);
    }
  }
  const system = values.system === undefined ? undefined : String(values.system);
  return { system, template, variables, interactive: values.interactive === true };
}

/**
 * A conversation with the model at `path`: `prompt(user)` adds a user turn
 * and gives the prompt text (the conversation through the chat template with
 * the generation prompt, as `apply_chat_template(…, add_generation_prompt=True)`);
 * `reply(text)` adds the model's answer as the assistant turn.
 *
 * @example
 * ```ts ignore
 * const chat = await openChat("./Qwen3-0.6B", model, { variables: {} });
 * const text = chat.prompt("Hello");
 * ```
 */
export async function openChat(
  path: string,
  model: Model,
  flags: ChatFlags,
): Promise<{ prompt(user: string): string; reply(text: string): void }> {
  const template = flags.template ?? await modelChatTemplate(path);
  if (!template) {
    throw new UsageError(
      `generate --chat: ${path} has no chat template (chat_template.jinja, tokenizer_config.json's ` +
        `chat_template or a GGUF tokenizer.chat_template); give one with --chat-template FILE`,
    );
  }
  const messages: ChatMessage[] = flags.system !== undefined
    ? [{ role: "system", content: flags.system }]
    : [];
  const specialTokens = await chatSpecialTokens(path, model.tokenizer);
  return {
    prompt(user: string): string {
      messages.push({ role: "user", content: user });
      try {
        return template.apply(messages, {
          addGenerationPrompt: true,
          specialTokens,
          variables: flags.variables,
        });
      } catch (e) {
        messages.pop();
        if (e instanceof TemplateError) {
          throw new UsageError(
            `generate --chat: the chat template refused the conversation: ${e.message}`,
          );
        }
        throw e;
      }
    },
    reply(text: string): void {
      messages.push({ role: "assistant", content: text });
    },
  };
}

/**
 * The prompt text for one user turn (after `flags.system`'s).
 *
 * @example
 * ```ts ignore
 * const text = await chatPrompt("./Qwen3-0.6B", model, "Hello", { variables: {} });
 * ```
 */
export async function chatPrompt(
  path: string,
  model: Model,
  user: string,
  flags: ChatFlags,
): Promise<string> {
  return (await openChat(path, model, flags)).prompt(user);
}

/**
 * The lines of a byte stream (UTF-8), without their line ends.
 *
 * @example
 * ```ts ignore
 * for await (const line of readLines(Deno.stdin.readable)) console.log(line);
 * ```
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}
