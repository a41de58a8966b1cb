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
 * Reads and parses `dir/config.json`.
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
  return parseConfig(json, file);
}
