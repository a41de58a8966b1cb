/**
 * Reading a model folder's `config.json` from disk (the parsing and checking
 * live in each architecture's spec).
 *
 * @module
 */

import type { ModelConfig } from "../models/config.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { fileError } from "./fs_errors.ts";

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
  const file = `${dir.replace(/\/$/, "")}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new TypeError(`${file}: not found (is ${dir} a model folder?)`);
    }
    // A missing --allow-read must read as one, naming the flag.
    throw fileError(e, file, "the model's config.json");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const cfg = parseConfig(json, file);
  const eos = await generationEos(dir.replace(/\/$/, ""));
  return eos === undefined ? cfg : { ...cfg, eosTokenIds: eos };
}

/** `eos_token_id` of `dir/generation_config.json`: undefined when the file or the key is absent. */
async function generationEos(dir: string): Promise<number[] | undefined> {
  const file = `${dir}/generation_config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw fileError(e, file, "the model's generation_config.json");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`${file}: expected a JSON object`);
  }
  if (!Object.hasOwn(json, "eos_token_id")) return undefined;
  const v = (json as Record<string, unknown>).eos_token_id;
  if (v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
    throw new TypeError(
      `${file}: field "eos_token_id" must be a token id or a list of them, got ${
        JSON.stringify(v).slice(0, 80)
      }`,
    );
  }
  return list as number[];
}
