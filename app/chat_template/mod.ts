/**
 * Chat templates: the Jinja text a model's tokenizer ships that turns a
 * conversation into the prompt the model was trained on, rendered as
 * transformers' `apply_chat_template` renders it, and where a model keeps it.
 *
 * @example
 * ```ts
 * import { ChatTemplate } from "./mod.ts";
 * const t = ChatTemplate.parse("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}");
 * t.apply([{ role: "user", content: "Hi" }]); // "user: Hi\n"
 * ```
 *
 * @module
 */

export {
  type ChatMessage,
  type ChatOptions,
  ChatTemplate,
  ggufChatTemplate,
  TemplateError,
} from "./template.ts";
export { folderChatTemplate, folderChatTemplateSource, folderSpecialTokens } from "./folder.ts";
