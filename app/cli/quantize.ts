/**
 * `kiln quantize MODEL --type T -o OUT.gguf`: writes one GGUF file, as llama.cpp's
 * `convert_hf_to_gguf.py` + `llama-quantize` would, from a Hugging Face folder
 * (config.json, safetensors, and tokenizer.json / tokenizer_config.json when there:
 * their `tokenizer.ggml.*` metadata from `ggufTokenizerMetadata`) or from another
 * GGUF file (its config rebuilt from its metadata; its `general.*` and
 * `tokenizer.*` metadata copied with their stored types, except the keys that
 * describe the new file). Every tensor is read as f32 — a quantized GGUF tensor
 * dequantized — and written in the new type (`convertToGguf`: norms and the other
 * tensors llama.cpp keeps f32 stay f32), except one already stored in that type
 * (a GPT-OSS checkpoint's MXFP4 experts written as MXFP4, a q8_0 GGUF tensor as
 * q8_0), whose blocks are copied as llama-quantize copies them. Arguments, the
 * input and the output are checked before any tensor is read; progress is shown
 * per tensor on stderr when it is a terminal.
 *
 * @module
 */

import { folderChatTemplateSource } from "../chat_template/mod.ts";
import { basename, dirname, resolve } from "node:path";
import { convertToGguf, type GgufOutType } from "../gguf/arch.ts";
import { GgufCheckpoint } from "../gguf/checkpoint.ts";
import { GgufFile } from "../gguf/file.ts";
import { ggufTokenizerMetadata } from "../gguf/tokenizer_export.ts";
import { sentencePieceMetadata } from "../tokenizer/sentencepiece.ts";
import type { GgufEntry } from "../gguf/value.ts";
import { isPermissionError, readJsonFile } from "../fs_errors.ts";
import { isGgufPath, openWeights } from "../model/source.ts";
import { parseConfig } from "../../models/architectures/mod.ts";
import { createProgress, formatBytes, type Progress } from "../progress.ts";
import { intOption, type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { modelFolder } from "./paths.ts";
import { usage } from "./usage.ts";
import { QuantPool } from "../quantize_pool.ts";
import { type Imatrix, readImatrix } from "../gguf/imatrix.ts";
import { isQuantFormat, QUANT_FORMATS } from "../../core/quant/formats.ts";
import { IMATRIX_MIXES, type TensorTypeOverrides } from "../gguf/quant_mix.ts";

const SPEC: OptionSpec = {
  type: { type: "string" },
  o: { type: "string" },
  out: { type: "string" },
  name: { type: "string" },
  threads: { type: "string" },
  imatrix: { type: "string" },
  "output-tensor-type": { type: "string" },
  "token-embedding-type": { type: "string" },
  quiet: { type: "boolean" },
};

/** One of `--output-tensor-type` / `--token-embedding-type`: a ggml type Kiln writes. */
function tensorTypeOption(
  v: unknown,
  flag: string,
): TensorTypeOverrides["output"] {
  if (v === undefined) return undefined;
  const t = String(v).toLowerCase();
  if (t === "f32" || t === "f16" || isQuantFormat(t)) return t;
  throw new UsageError(
    `quantize: --${flag} must be f32, f16 or one of ${QUANT_FORMATS.join(", ")}, ` +
      `got ${JSON.stringify(v)}`,
  );
}

/**
 * The `--type` values `kiln quantize` takes, most compact first.
 *
 * @example
 * ```ts
 * import { QUANTIZE_TYPES } from "./quantize.ts";
 * QUANTIZE_TYPES.includes("q8_0"); // true
 * ```
 */
export const QUANTIZE_TYPES: readonly GgufOutType[] = [
  "q4_k_m",
  "q4_k_s",
  "q5_k_m",
  "q5_k_s",
  "q3_k_m",
  "q3_k_s",
  "q3_k_l",
  "iq3_m",
  "iq3_xs",
  "iq2_m",
  "iq2_s",
  "iq2_xs",
  "iq2_xxs",
  "iq1_s",
  "iq1_m",
  "q2_k_s",
  "q4_k",
  "q5_k",
  "q6_k",
  "q8_0",
  "q4_0",
  "q4_1",
  "q5_0",
  "q5_1",
  "q3_k",
  "q2_k",
  "iq4_xs",
  "iq4_nl",
  "iq3_xxs",
  "iq3_s",
  "mxfp4_moe",
  "mxfp4",
  "nvfp4",
  "q2_0",
  "tq2_0",
  "tq1_0",
  "q1_0",
  "f16",
  "f32",
];

/** `general.*` keys of a GGUF input that describe that file, not the one written. */
const RECOMPUTED = new Set([
  "general.architecture",
  "general.file_type",
  "general.quantization_version",
  "general.alignment",
]);

/**
 * Runs `kiln quantize` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { quantize } from "./quantize.ts";
 * await quantize(["./Mixtral-8x7B-v0.1", "--type", "q4_k", "-o", "mixtral-q4_k.gguf"]);
 * ```
 */
export async function quantize(args: string[]): Promise<void> {
  const { values, positionals, help } = parseCommand("quantize", args, SPEC, true);
  if (help) return console.log(usage("quantize"));
  const input = positionals[0];
  if (!input) {
    throw new UsageError(
      "quantize: give a model folder or a .gguf file, e.g. kiln quantize ./model --type q8_0 " +
        "-o model-q8_0.gguf",
    );
  }
  if (positionals.length > 1) {
    throw new UsageError(`quantize: one model expected, got also "${positionals[1]}"`);
  }
  const type = values.type;
  if (typeof type !== "string" || !(QUANTIZE_TYPES as readonly string[]).includes(type)) {
    throw new UsageError(
      `quantize: --type must be one of ${QUANTIZE_TYPES.join(", ")}, ` +
        (typeof type === "string" ? `got ${JSON.stringify(type)}` : "and is required"),
    );
  }
  const out = (values.o ?? values.out) as string | undefined;
  if (!out) throw new UsageError("quantize: give the output file with -o OUT.gguf");
  if (!/\.gguf$/i.test(out)) {
    throw new UsageError(`quantize: -o ${out}: the output must be a .gguf file`);
  }
  const name = values.name as string | undefined;
  if (name !== undefined && name.trim() === "") {
    throw new UsageError('quantize: --name must not be empty, got ""');
  }
  const typeOverrides: TensorTypeOverrides = {
    output: tensorTypeOption(values["output-tensor-type"], "output-tensor-type"),
    embedding: tensorTypeOption(values["token-embedding-type"], "token-embedding-type"),
  };
  const threads = values.threads === undefined
    ? undefined
    : intOption(values.threads, "threads", 1, 1, 1024);
  if ((IMATRIX_MIXES as readonly string[]).includes(type) && values.imatrix === undefined) {
    throw new UsageError(
      `quantize: --type ${type} needs an importance matrix (--imatrix FILE, from kiln imatrix ` +
        `or llama-imatrix), as llama-quantize does`,
    );
  }
  await modelFolder(input, "quantize");
  await checkOutput(input, out);
  const imatrix = values.imatrix === undefined
    ? undefined
    : await readImatrixOption(values.imatrix as string, "quantize");

  const quiet = values.quiet === true;
  // A folder's config first: tensors its family stores fused are read as their parts.
  const folder = isGgufPath(input) ? undefined : await fromFolder(input);
  const weights = await openWeights(
    input,
    folder ? { config: parseConfig(folder.config, `${input}/config.json`) } : {},
  );
  using pool = new QuantPool({ threads });
  let tensors = 0;
  try {
    const { config, metadata, defaultName } = weights instanceof GgufCheckpoint
      ? fromGguf(weights, name !== undefined)
      : folder!;
    let bar: Progress | undefined;
    await convertToGguf(
      {
        config,
        tensors: weights.tensors,
        readF32: async (n) => await weights.readAs(n, "f32") as Float32Array,
        readRaw: (n) => weights.readRaw(n),
      },
      out,
      {
        type: type as GgufOutType,
        metadata,
        name: name ?? defaultName,
        quantizer: (f, x, imp) => pool.quantize(f, x, imp),
        imatrix,
        typeOverrides,
        onProgress: (_done, total) => {
          bar ??= createProgress({ total, label: `quantize ${type}`, unit: "tensors", quiet });
          bar.advance(1);
          tensors = total;
        },
      },
    );
    bar?.done();
    // Slower, not different: say so, since a big model takes hours on one thread.
    if (pool.fallback && !quiet) {
      console.error(`quantize: encoded on one thread (${pool.fallback})`);
    }
  } finally {
    weights.close();
  }
  if (!quiet) console.log(await summary(out, tensors));
  if (!quiet && imatrix) console.log(await coverage(out, imatrix));
}

/** Which quantized weights the importance matrix covered (llama-quantize names each it lacks). */
async function coverage(out: string, imatrix: Imatrix): Promise<string> {
  using f = await GgufFile.open(out);
  const quantized = [...f.tensors.values()].filter((t) => isQuantFormat(t.type.name));
  const without = quantized.filter((t) => !imatrix.entries.has(t.name)).map((t) => t.name);
  const list = without.length > 4 ? [...without.slice(0, 4), "…"] : without;
  return `imatrix: ${quantized.length - without.length} of ${quantized.length} quantized ` +
    `weights fitted with it` + (without.length ? ` (without: ${list.join(", ")})` : "");
}

/**
 * `--imatrix FILE` of `command`: read before any tensor is, its errors as usage errors.
 *
 * @example
 * ```ts ignore
 * import { readImatrixOption } from "./quantize.ts";
 * const m = await readImatrixOption("imatrix.gguf", "quantize");
 * ```
 */
export async function readImatrixOption(path: string, command: string): Promise<Imatrix> {
  if (path.trim() === "") throw new UsageError(`${command}: --imatrix needs a file, got ""`);
  try {
    return await readImatrix(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`${command}: --imatrix ${path}: no such file`);
    }
    if (e instanceof SyntaxError) throw new UsageError(`${command}: --imatrix ${e.message}`);
    throw e;
  }
}

/** What a source gives besides its tensors: config.json, extra metadata, a default name. */
interface SourceParts {
  config: Record<string, unknown>;
  metadata: Array<[string, GgufEntry]>;
  defaultName?: string;
}

/** A GGUF input: its rebuilt config, and its `general.*` / `tokenizer.*` entries as stored. */
function fromGguf(w: GgufCheckpoint, named: boolean): SourceParts {
  const metadata = [...w.model.file.entries].filter(([k]) =>
    k.startsWith("tokenizer.") ||
    (k.startsWith("general.") && !RECOMPUTED.has(k) && !(named && k === "general.name"))
  );
  return { config: w.model.config, metadata };
}

/** A Hugging Face folder: config.json, and the tokenizer's metadata when it has a tokenizer.json. */
async function fromFolder(dir: string): Promise<SourceParts> {
  const at = (f: string) => `${dir.replace(/\/+$/, "")}/${f}`;
  const config = await readJsonFile(at("config.json"), "the model's config.json");
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new TypeError(`${at("config.json")}: not a JSON object`);
  }
  const cfg = config as Record<string, unknown>;
  const tokenizer = await readJsonFile(at("tokenizer.json"), "a tokenizer.json", true);
  // Without a tokenizer, llama.cpp still needs `tokenizer.ggml.model`: "none" loads
  // there as a vocabulary of `<arch>.vocab_size` ids and no text.
  const metadata: [string, GgufEntry][] = tokenizer === undefined
    ? await sentencePieceEntries(dir) ??
      [["tokenizer.ggml.model", { type: "string", value: "none" }]]
    : [
      ...ggufTokenizerMetadata(tokenizer, {
        tokenizerConfig: await withChatTemplate(
          dir,
          await readJsonFile(at("tokenizer_config.json"), "a tokenizer_config.json", true),
        ),
        config: cfg,
        file: at("tokenizer.json"),
      }),
    ];
  // llama.cpp names the model after its folder when config.json does not.
  const defaultName = typeof cfg._name_or_path === "string" && cfg._name_or_path !== ""
    ? undefined
    : basename(resolve(dir));
  return { config: cfg, metadata, defaultName };
}

/**
 * A folder's SentencePiece `tokenizer.model` as GGUF entries (with
 * tokenizer_config.json's BOS/EOS flags and chat template), or undefined
 * without one.
 */
async function sentencePieceEntries(dir: string): Promise<[string, GgufEntry][] | undefined> {
  const at = (f: string) => `${dir.replace(/\/+$/, "")}/${f}`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(at("tokenizer.model"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const raw = await readJsonFile(at("tokenizer_config.json"), "a tokenizer_config.json", true);
  const cfg = (await withChatTemplate(dir, raw) ?? {}) as Record<string, unknown>;
  const flag = (k: string) => (typeof cfg[k] === "boolean" ? cfg[k] as boolean : undefined);
  const meta = sentencePieceMetadata(bytes, at("tokenizer.model"), {
    addBos: flag("add_bos_token"),
    addEos: flag("add_eos_token"),
  });
  const out: [string, GgufEntry][] = [...meta].map(([k, value]) => [
    k,
    {
      type: typeof value === "string"
        ? "string"
        : typeof value === "boolean"
        ? "bool"
        : typeof value === "number"
        ? "u32"
        : "array",
      value,
    },
  ]);
  if (typeof cfg.chat_template === "string") {
    out.push(["tokenizer.chat_template", { type: "string", value: cfg.chat_template }]);
  }
  return out;
}

/**
 * tokenizer_config.json with the chat template llama.cpp's converter finds
 * beside it when the file has none (transformers 5 saves `chat_template.jinja`).
 */
async function withChatTemplate(dir: string, cfg: unknown): Promise<unknown> {
  if (typeof cfg === "object" && cfg !== null && "chat_template" in cfg) return cfg;
  const template = await folderChatTemplateSource(dir);
  if (template === undefined) return cfg;
  return { ...(typeof cfg === "object" && cfg !== null ? cfg : {}), chat_template: template };
}

/**
 * The output before any work: in a folder that exists and may be written (Deno's
 * permission and the operating system's), not a folder, not the input itself.
 */
async function checkOutput(input: string, out: string): Promise<void> {
  const dir = dirname(out);
  // The file is written beside its name and renamed into place (a rename needs read
  // and write), then read back for the summary: the folder must allow both.
  for (const name of ["write", "read"] as const) {
    const { state } = await Deno.permissions.request({ name, path: dir });
    if (state !== "granted") {
      throw new Deno.errors.NotCapable(
        `quantize: -o ${out}: no permission to ${name} in ${dir}; run with ` +
          `--allow-read=${dir} --allow-write=${dir} (or a folder above it)`,
      );
    }
  }
  const missing = (e: unknown) =>
    e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory;
  // Without --allow-read on the input, paths are compared as given.
  const real = async (p: string): Promise<string | undefined> => {
    try {
      return await Deno.realPath(p);
    } catch (e) {
      if (missing(e)) return undefined;
      if (isPermissionError(e)) return resolve(p);
      throw e;
    }
  };
  const stat = (p: string) => Deno.stat(p).catch((e) => missing(e) ? null : undefined);
  const dirInfo = await stat(dir);
  if (dirInfo === null) {
    throw new UsageError(`quantize: -o ${out}: the folder ${dir} does not exist`);
  }
  if (dirInfo && !dirInfo.isDirectory) {
    throw new UsageError(`quantize: -o ${out}: ${dir} is not a folder`);
  }
  const target = (await real(out)) ?? resolve((await real(dir)) ?? dir, basename(out));
  if (target === await real(input)) {
    throw new UsageError(`quantize: -o ${out} is the input itself; write the output elsewhere`);
  }
  if ((await stat(target))?.isDirectory) {
    throw new UsageError(`quantize: -o ${out} is a folder, expected a .gguf file`);
  }
  const probe = `${out}.partial`;
  try {
    (await Deno.open(probe, { write: true, create: true, truncate: true })).close();
    await Deno.remove(probe);
  } catch (e) {
    const why = isPermissionError(e)
      ? "the operating system refused (check its permissions)"
      : (e as Error).message.replace(/:? *open '.*'$/, "");
    throw new UsageError(`quantize: -o ${out}: cannot write in ${dir}: ${why}`);
  }
}

/** One line about the file written: tensors by type, size. */
async function summary(out: string, tensors: number): Promise<string> {
  using f = await GgufFile.open(out);
  const byType = new Map<string, number>();
  for (const t of f.tensors.values()) byType.set(t.type.name, (byType.get(t.type.name) ?? 0) + 1);
  const types = [...byType].sort((a, b) => b[1] - a[1]).map(([t, n]) => `${n} ${t}`).join(", ");
  return `wrote ${out}: ${tensors || f.tensors.size} tensors (${types}), ${formatBytes(f.size)}`;
}
