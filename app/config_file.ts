/**
 * Reading a model folder's `config.json` from disk (the parsing and checking
 * live in each architecture's spec).
 *
 * @module
 */

import type { ModelConfig } from "../models/config.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { readJsonFile } from "./fs_errors.ts";
import { tokenIdList } from "../models/architectures/common.ts";

/**
 * Reads and parses `dir/config.json`. Where a `generation_config.json` sits
 * beside it with an `eos_token_id` (one id or a list; null for none), that is
 * the model's end-of-sequence set, as `transformers`' `generate` takes it from
 * the generation config (chat models list their turn-end token there only).
 *
 * @example
 * ```ts ignore
 * import { readConfig } from "@kiln/kiln";
 * const cfg = await readConfig("./Mixtral-8x7B-v0.1");
 * ```
 */
export async function readConfig(dir: string): Promise<ModelConfig> {
  const base = dir.replace(/\/$/, "");
  const file = `${base}/config.json`;
  const json = await readJsonFile(file, "the model's config.json", true);
  if (json === undefined) throw new TypeError(`${file}: not found (is ${dir} a model folder?)`);
  const cfg = parseConfig(json, file);
  const eos = await generationEos(base);
  return eos === undefined ? cfg : { ...cfg, eosTokenIds: eos };
}

/** `eos_token_id` of `dir/generation_config.json`: undefined when the file or the key is absent. */
async function generationEos(dir: string): Promise<number[] | undefined> {
  const file = `${dir}/generation_config.json`;
  const json = await readJsonFile(file, "the model's generation_config.json", true);
  if (json === undefined) return undefined;
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`${file}: expected a JSON object`);
  }
  if (!Object.hasOwn(json, "eos_token_id")) return undefined;
  return tokenIdList((json as Record<string, unknown>).eos_token_id, file, "eos_token_id");
}
