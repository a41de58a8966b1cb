/**
 * Reading a model folder's `config.json` from disk (the parsing and checking
 * live in each architecture's spec).
 *
 * @module
 */

import type { ModelConfig } from "../models/config.ts";
import { ARCHITECTURE_SPECS, parseConfig } from "../models/architectures/mod.ts";
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

/**
 * `config` with the `model_type` of its architecture added where it has none:
 * Kiln reads a config by `architectures` alone, but transformers' `AutoConfig`
 * needs `model_type` to load the folder Kiln writes.
 *
 * @example
 * ```ts
 * import { withModelType } from "./config_file.ts";
 * withModelType({ architectures: ["MambaForCausalLM"] }).model_type; // "mamba"
 * ```
 */
export function withModelType(config: Record<string, unknown>): Record<string, unknown> {
  if (config.model_type !== undefined) return config;
  const arch = Array.isArray(config.architectures) ? config.architectures : [];
  const spec = Object.values(ARCHITECTURE_SPECS).find((s) => arch.includes(s.architecture));
  return spec ? { ...config, model_type: spec.modelType } : config;
}

/**
 * Keys that transformers 5's config classes for Kiln's architectures declare
 * as `float`: their strict dataclasses refuse an integer there (`1` for
 * `time_step_scale`), and JavaScript writes a whole float without its `.0`.
 */
const FLOAT_KEYS: ReadonlySet<string> = new Set([
  "clip_qkv",
  "initializer_range",
  "layer_norm_epsilon",
  "mixer_rms_eps",
  "rms_norm_eps",
  "router_aux_loss_coef",
  "router_jitter_noise",
  "time_step_floor",
  "time_step_max",
  "time_step_min",
  "time_step_scale",
]);

/**
 * `config` as config.json text that transformers 5 loads: as
 * `JSON.stringify(config, null, 2)`, but with `model_type` where it is missing
 * ({@linkcode withModelType}), and a whole number under a key its config
 * classes declare as float written with `.0` (`"time_step_scale": 1.0`).
 *
 * @example
 * ```ts
 * import { configJson } from "./config_file.ts";
 * configJson({ time_step_scale: 1, num_hidden_layers: 2 }).includes('"time_step_scale": 1.0'); // true
 * ```
 */
export function configJson(config: Record<string, unknown>): string {
  config = withModelType(config);
  const mark = "\u0000float:";
  const text = JSON.stringify(
    config,
    (key, v) =>
      FLOAT_KEYS.has(key) && typeof v === "number" && Number.isInteger(v) ? `${mark}${v}` : v,
    2,
  );
  return text.replace(/"\\u0000float:(-?\d+)"/g, "$1.0") + "\n";
}
