/**
 * The tokenizer of a Hugging Face model folder, when it has one.
 *
 * @module
 */

import { fileError } from "../fs_errors.ts";
import { Tokenizer } from "./tokenizer.ts";

/**
 * Loads `DIR/tokenizer.json`; undefined when the folder has none (token ids
 * only). An unreadable file is an error naming it (and the flag to add).
 *
 * @example
 * ```ts ignore
 * import { folderTokenizer } from "./folder.ts";
 * const tokenizer = await folderTokenizer("./mamba-130m-hf");
 * ```
 */
export async function folderTokenizer(dir: string): Promise<Tokenizer | undefined> {
  const file = `${dir.replace(/\/$/, "")}/tokenizer.json`;
  try {
    await Deno.stat(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw fileError(e, file, "tokenizer.json");
  }
  return await Tokenizer.fromFile(file);
}

/**
 * What to tell a user whose folder has no tokenizer.json: that its
 * SentencePiece `tokenizer.model` (ERNIE 4.5's, older Llama-family repos')
 * is not read, and how transformers converts it; "" when there is none.
 *
 * @example
 * ```ts ignore
 * import { missingTokenizerHint } from "./folder.ts";
 * console.log(`no tokenizer.json${missingTokenizerHint("./ERNIE-4.5-0.3B-PT")}`);
 * ```
 */
export function missingTokenizerHint(dir: string): string {
  try {
    Deno.statSync(`${dir.replace(/\/$/, "")}/tokenizer.model`);
  } catch {
    return "";
  }
  return ` (its SentencePiece tokenizer.model is not read: write a tokenizer.json beside it with ` +
    `transformers, AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR))`;
}
