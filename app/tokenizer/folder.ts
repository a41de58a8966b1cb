/**
 * The tokenizer of a Hugging Face model folder, when it has one.
 *
 * @module
 */

import { fileError } from "../fs_errors.ts";
import { Tokenizer } from "./tokenizer.ts";
import { sentencePieceTokenizer } from "./sentencepiece.ts";

/**
 * Loads `DIR/tokenizer.json`, else a SentencePiece `DIR/tokenizer.model` (see
 * `sentencepiece.ts`); undefined when the folder has neither (token ids only).
 * An unreadable file is an error naming it (and the flag to add).
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
    if (e instanceof Deno.errors.NotFound) return await sentencePieceFolder(dir);
    throw fileError(e, file, "tokenizer.json");
  }
  return await Tokenizer.fromFile(file);
}

/**
 * `DIR/tokenizer.model` (SentencePiece) with tokenizer_config.json's
 * `add_bos_token` / `add_eos_token`, when the folder has one.
 */
async function sentencePieceFolder(dir: string): Promise<Tokenizer | undefined> {
  const base = dir.replace(/\/$/, "");
  const file = `${base}/tokenizer.model`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw fileError(e, file, "tokenizer.model");
  }
  let config: Record<string, unknown> = {};
  try {
    config = JSON.parse(await Deno.readTextFile(`${base}/tokenizer_config.json`));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new SyntaxError(`${base}/tokenizer_config.json: ${(e as Error).message}`);
    }
  }
  const flag = (k: string) => (typeof config[k] === "boolean" ? config[k] as boolean : undefined);
  return sentencePieceTokenizer(bytes, file, {
    addBos: flag("add_bos_token"),
    addEos: flag("add_eos_token"),
  });
}
