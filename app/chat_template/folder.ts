/**
 * Where a model folder keeps its chat template and special tokens, as
 * transformers reads them — and as llama.cpp's converter reads them into a
 * GGUF file.
 *
 * @module
 */

import { ChatTemplate } from "./template.ts";

/**
 * A model folder's chat template, as transformers finds it: `chat_template.jinja`,
 * else `tokenizer_config.json`'s `chat_template` (a string, or a list of named
 * templates of which `name` is taken, default "default"); undefined when it
 * has none.
 *
 * @example
 * ```ts ignore
 * import { folderChatTemplate } from "./folder.ts";
 * const t = await folderChatTemplate("./Qwen3-30B-A3B");
 * ```
 */
export async function folderChatTemplate(
  dir: string,
  name = "default",
): Promise<ChatTemplate | undefined> {
  const base = dir.replace(/\/+$/, "");
  const named = name === "default"
    ? `${base}/chat_template.jinja`
    : `${base}/additional_chat_templates/${name}.jinja`;
  const text = await readIfExists(named);
  if (text !== undefined) return ChatTemplate.parse(text, named);
  const cfgFile = `${base}/tokenizer_config.json`;
  const cfgText = await readIfExists(cfgFile);
  if (cfgText === undefined) return undefined;
  let cfg: unknown;
  try {
    cfg = JSON.parse(cfgText);
  } catch (e) {
    throw new SyntaxError(`${cfgFile}: not JSON (${(e as Error).message})`);
  }
  const t = (cfg as Record<string, unknown>)?.chat_template;
  if (t === undefined || t === null) return undefined;
  if (typeof t === "string") {
    return name === "default" ? ChatTemplate.parse(t, `${cfgFile} chat_template`) : undefined;
  }
  if (!Array.isArray(t)) {
    throw new TypeError(
      `${cfgFile}: "chat_template" must be a string or a list of {name, template}`,
    );
  }
  const entry = t.find((e) => typeof e === "object" && e !== null && e.name === name);
  if (entry === undefined) return undefined;
  if (typeof entry.template !== "string") {
    throw new TypeError(`${cfgFile}: chat template "${name}" has no "template" string`);
  }
  return ChatTemplate.parse(entry.template, `${cfgFile} chat_template "${name}"`);
}

/**
 * The raw chat template(s) llama.cpp's converter (gguf-py's `SpecialVocab`)
 * writes for a folder: tokenizer_config.json's `chat_template` when it has
 * one, else `chat_template.jinja` (with `additional_chat_templates/*.jinja` as
 * a list of named templates), else `chat_template.json`'s; undefined when
 * none.
 *
 * @example
 * ```ts ignore
 * import { folderChatTemplateSource } from "./folder.ts";
 * const t = await folderChatTemplateSource("./Qwen3-0.6B"); // the Jinja text
 * ```
 */
export async function folderChatTemplateSource(
  dir: string,
): Promise<string | { name: string; template: string }[] | undefined> {
  const base = dir.replace(/\/+$/, "");
  const cfgText = await readIfExists(`${base}/tokenizer_config.json`);
  const cfg = cfgText === undefined
    ? undefined
    : parseJson(cfgText, `${base}/tokenizer_config.json`);
  const own = (cfg as Record<string, unknown> | undefined)?.chat_template;
  if (typeof own === "string" || Array.isArray(own)) {
    return own as string | { name: string; template: string }[];
  }
  const jinja = await readIfExists(`${base}/chat_template.jinja`);
  if (jinja !== undefined) {
    const extra: { name: string; template: string }[] = [];
    try {
      for await (const e of Deno.readDir(`${base}/additional_chat_templates`)) {
        if (e.isFile && e.name.endsWith(".jinja")) {
          const template = await Deno.readTextFile(`${base}/additional_chat_templates/${e.name}`);
          extra.push({ name: e.name.slice(0, -".jinja".length), template });
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (extra.length === 0) return jinja;
    extra.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return [{ name: "default", template: jinja }, ...extra];
  }
  const json = await readIfExists(`${base}/chat_template.json`);
  if (json === undefined) return undefined;
  const t = (parseJson(json, `${base}/chat_template.json`) as Record<string, unknown>)
    ?.chat_template;
  return typeof t === "string" || Array.isArray(t)
    ? t as string | { name: string; template: string }[]
    : undefined;
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${file}: not JSON (${(e as Error).message})`);
  }
}

/** The special-token names transformers' `special_tokens_map` holds. */
const SPECIAL_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
];

/**
 * The special tokens a chat template sees (`bos_token`, `eos_token`, …: the
 * tokenizer's `special_tokens_map`), from a folder's `tokenizer_config.json`
 * (a name or an AddedToken's `content`); `fallback` fills the names it lacks
 * (a GGUF vocabulary's BOS and EOS).
 *
 * @example
 * ```ts ignore
 * import { folderSpecialTokens } from "./folder.ts";
 * const tokens = await folderSpecialTokens("./Mixtral-8x7B-Instruct-v0.1"); // { bos_token: "<s>", … }
 * ```
 */
export async function folderSpecialTokens(
  dir: string | undefined,
  fallback: Readonly<Record<string, string>> = {},
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const file = dir === undefined ? undefined : `${dir.replace(/\/+$/, "")}/tokenizer_config.json`;
  const text = file === undefined ? undefined : await readIfExists(file);
  if (text !== undefined) {
    let cfg: Record<string, unknown>;
    try {
      cfg = JSON.parse(text);
    } catch (e) {
      throw new SyntaxError(`${file}: not JSON (${(e as Error).message})`);
    }
    for (const k of SPECIAL_KEYS) {
      const v = cfg?.[k];
      const name = typeof v === "string" ? v : typeof v === "object" && v !== null &&
          typeof (v as Record<string, unknown>).content === "string"
        ? (v as Record<string, string>).content
        : undefined;
      if (name !== undefined) out[k] = name;
    }
  }
  for (const [k, v] of Object.entries(fallback)) if (!(k in out)) out[k] = v;
  return out;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}
