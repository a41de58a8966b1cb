/**
 * Which tokens are BOS and EOS when `tokenizer.json` alone does not say: the
 * names in a `tokenizer_config.json` beside it, else the conventional names of
 * the model families Kiln runs. Private to the tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import { fileError } from "../fs_errors.ts";

/**
 * Conventional BOS token names, most common first (only added tokens count).
 *
 * @example
 * ```ts
 * import { BOS_NAMES } from "./special_tokens.ts";
 * BOS_NAMES.includes("<|begin_of_text|>"); // true (Llama 3)
 * ```
 */
export const BOS_NAMES: readonly string[] = [
  "<s>",
  "<|begin_of_text|>",
  "<｜begin▁of▁sentence｜>",
  "<bos>",
  "<|startoftext|>",
];

/**
 * Conventional EOS token names, most common first (only added tokens count).
 *
 * @example
 * ```ts
 * import { EOS_NAMES } from "./special_tokens.ts";
 * EOS_NAMES.includes("<|endoftext|>"); // true (GPT-NeoX, Qwen)
 * ```
 */
export const EOS_NAMES: readonly string[] = [
  "</s>",
  "<|end_of_text|>",
  "<|endoftext|>",
  "<｜end▁of▁sentence｜>",
  "<eos>",
];

/**
 * BOS/EOS names from a tokenizer_config.json, if the file exists (`{}` when it
 * does not); text that is not JSON is a SyntaxError naming the file.
 *
 * @example
 * ```ts ignore
 * import { readTokenizerConfig } from "./special_tokens.ts";
 * const { bos, eos } = await readTokenizerConfig("./Mixtral-8x7B-v0.1/tokenizer_config.json");
 * // bos "<s>", eos "</s>"
 * ```
 */
export async function readTokenizerConfig(path: string): Promise<{ bos?: string; eos?: string }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw fileError(e, path, "a tokenizer_config.json");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null) return {};
  const name = (v: unknown): string | undefined =>
    typeof v === "string" ? v : typeof v === "object" && v !== null &&
        typeof (v as Record<string, unknown>).content === "string"
      ? (v as Record<string, string>).content
      : undefined;
  const cfg = json as Record<string, unknown>;
  return { bos: name(cfg.bos_token), eos: name(cfg.eos_token) };
}
