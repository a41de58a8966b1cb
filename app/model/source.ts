/**
 * Where a model comes from: a Hugging Face folder (config.json, safetensors,
 * tokenizer.json) or one GGUF file (metadata, tensors, tokenizer). Everything
 * past this point — the loader, the expert scheduler, `kiln build` — reads
 * weights through {@linkcode WeightSource} and never asks which it was.
 *
 * @module
 */

import type { QuantFormat } from "../../core/quant/formats.ts";
import type { WeightSource } from "../weight_source.ts";
import type { Quantizer } from "../quantize_pool.ts";
import { quantize } from "../../core/quant/mod.ts";
import { type Importance, quantizeWithImportance } from "../../core/quant/importance.ts";
import type { ModelConfig } from "../../models/config.ts";
import { fusedTensors, parseConfig } from "../../models/architectures/mod.ts";
import { readConfig } from "../config_file.ts";
import { GgufCheckpoint } from "../gguf/checkpoint.ts";
import { tokenizerFromGguf } from "../gguf/tokenizer.ts";
import type { Progress } from "../progress.ts";
import { Checkpoint, type ReadDType } from "../safetensors/mod.ts";

export type { WeightInfo, WeightSource } from "../weight_source.ts";
export { overlay } from "../weight_source.ts";
import { overlay } from "../weight_source.ts";
import { withFusedParts } from "./fused_source.ts";
import { withDequantizedWeights } from "./dequant_source.ts";
import { folderTokenizer } from "../tokenizer/folder.ts";
import {
  type ChatTemplate,
  folderChatTemplate,
  folderSpecialTokens,
  ggufChatTemplate,
} from "../chat_template/mod.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";

/**
 * True when `path` names a GGUF file (by its extension).
 *
 * @example
 * ```ts
 * import { isGgufPath } from "./source.ts";
 * isGgufPath("models/mixtral.Q4_K_M.gguf"); // true
 * ```
 */
export function isGgufPath(path: string): boolean {
  return /\.gguf$/i.test(path);
}

/**
 * The folder beside a model (side files such as `kiln_routing_stats.json`):
 * the folder itself, or a GGUF file's folder.
 *
 * @example
 * ```ts
 * import { sideFolder } from "./source.ts";
 * sideFolder("models/mixtral.gguf"); // "models"
 * ```
 */
export function sideFolder(path: string): string {
  if (!isGgufPath(path)) return path;
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : path.slice(0, i) || "/";
}

/**
 * Opens a model's weights: a `.gguf` file, else a safetensors folder or file.
 * With the model's `config`, tensors its family stores fused (Granite's
 * `input_linear`) are seen as their parts ({@linkcode withFusedParts}), and an
 * quantized checkpoint's weights as floats ({@linkcode withDequantizedWeights}).
 *
 * @example
 * ```ts ignore
 * import { openWeights } from "./source.ts";
 * const w = await openWeights("./Mixtral-8x7B-v0.1");
 * ```
 */
export async function openWeights(
  path: string,
  options: { progress?: (total: number) => Progress; config?: ModelConfig } = {},
): Promise<WeightSource> {
  if (isGgufPath(path)) return await GgufCheckpoint.open(path, options);
  const ckpt = await Checkpoint.open(path, options);
  if (!options.config) return ckpt;
  try {
    const q = options.config.quantization;
    const floats = q ? await withDequantizedWeights(ckpt, q) : ckpt;
    return withFusedParts(floats, fusedTensors(options.config));
  } catch (e) {
    ckpt.close();
    throw e;
  }
}

/**
 * A model's config: from a GGUF file's metadata, else the folder's config.json.
 *
 * @example
 * ```ts ignore
 * import { readModelConfig } from "./source.ts";
 * const cfg = await readModelConfig("./mamba-130m.Q8_0.gguf");
 * ```
 */
export async function readModelConfig(path: string): Promise<ModelConfig> {
  if (!isGgufPath(path)) return await readConfig(path);
  using w = await GgufCheckpoint.open(path);
  return parseConfig(w.model.config, path);
}

/**
 * A model's tokenizer: from a GGUF file's `tokenizer.ggml.*` metadata (none
 * when it has no `tokenizer.ggml.tokens`, or its `tokenizer.ggml.model` is
 * llama.cpp's "none" / "no_vocab"), else the folder's tokenizer.json.
 *
 * @example
 * ```ts ignore
 * import { modelTokenizer } from "./source.ts";
 * const tok = await modelTokenizer("./mixtral.Q4_K_M.gguf");
 * ```
 */
export async function modelTokenizer(path: string): Promise<Tokenizer | undefined> {
  if (!isGgufPath(path)) return await folderTokenizer(path);
  using w = await GgufCheckpoint.open(path);
  const meta = w.model.file.metadata;
  // llama.cpp's vocabulary-less models: ids only, no text (LLAMA_VOCAB_TYPE_NONE).
  const kind = meta.get("tokenizer.ggml.model");
  if ((kind === "none" || kind === "no_vocab") && !meta.has("tokenizer.ggml.tokens")) {
    return undefined;
  }
  if (meta.has("tokenizer.ggml.tokens")) return tokenizerFromGguf(meta, path);
  // A tokenizer named without its tokens is a broken file, not a token-ids-only model.
  if (meta.has("tokenizer.ggml.model")) {
    throw new TypeError(
      `${path}: metadata "tokenizer.ggml.model" is present but "tokenizer.ggml.tokens" is missing`,
    );
  }
  return undefined;
}

/**
 * A model's chat template: a GGUF file's `tokenizer.chat_template`, else the
 * folder's (`chat_template.jinja` or tokenizer_config.json's); undefined when
 * it has none.
 *
 * @example
 * ```ts ignore
 * import { modelChatTemplate } from "./source.ts";
 * const t = await modelChatTemplate("./Qwen3-30B-A3B-Q4_K_M.gguf");
 * ```
 */
export async function modelChatTemplate(path: string): Promise<ChatTemplate | undefined> {
  if (!isGgufPath(path)) return await folderChatTemplate(path);
  using w = await GgufCheckpoint.open(path);
  return ggufChatTemplate(w.model.file.metadata, path);
}

/**
 * The special tokens (`bos_token`, `eos_token`, …) a chat template of the
 * model at `path` sees: a folder's tokenizer_config.json names, else those
 * of `tokenizer`'s BOS and EOS ids.
 *
 * @example
 * ```ts ignore
 * import { chatSpecialTokens } from "./source.ts";
 * const tokens = await chatSpecialTokens("./Mixtral-8x7B-Instruct-v0.1", tokenizer);
 * ```
 */
export async function chatSpecialTokens(
  path: string,
  tokenizer?: Tokenizer,
): Promise<Record<string, string>> {
  const fallback: Record<string, string> = {};
  const name = (
    id: number | undefined,
  ) => (id === undefined ? undefined : tokenizer?.idToToken(id));
  const bos = name(tokenizer?.bosId), eos = name(tokenizer?.eosId);
  if (bos !== undefined) fallback.bos_token = bos;
  if (eos !== undefined) fallback.eos_token = eos;
  return await folderSpecialTokens(isGgufPath(path) ? undefined : path, fallback);
}

/**
 * Tensor `name` of `src` as the bytes a parameter stored as `target` holds:
 * f32/f16 values, or blocks of a format — the stored blocks when the tensor is
 * already in that format, else its values quantized on the way (a non-finite
 * value is a RangeError naming the tensor).
 *
 * @example
 * ```ts ignore
 * import { openWeights, readWeightBytes } from "./source.ts";
 * const w = await openWeights("./Mixtral-8x7B-v0.1");
 * const blocks = await readWeightBytes(w, "model.layers.0.self_attn.q_proj.weight", "q8_0");
 * ```
 */
export async function readWeightBytes(
  src: WeightSource,
  name: string,
  target: ReadDType | QuantFormat,
): Promise<Uint8Array<ArrayBuffer>> {
  if (target === "f32" || target === "f16") {
    const v = await src.readAs(name, target);
    return new Uint8Array(v.buffer as ArrayBuffer, v.byteOffset, v.byteLength);
  }
  const info = src.info(name);
  if (info.format === target) return new Uint8Array(await src.readRaw(name));
  const values = await src.readAs(name, "f32") as Float32Array;
  const imp = src.importance?.(name);
  try {
    if (src.quantizer) return await src.quantizer(target, values, imp);
    return imp
      ? quantizeWithImportance(target, values, imp.rowLength, imp.values)
      : quantize(target, values);
  } catch (e) {
    throw new RangeError(
      `${info.file}: tensor "${name}" cannot be quantized to ${target}: ${(e as Error).message}`,
    );
  }
}

/**
 * A view of `src` whose tensors quantized on the way (`readWeightBytes`) are
 * encoded by `quantizer` (a `QuantPool`'s, so on every core); the
 * rest is `src`'s own.
 *
 * @example
 * ```ts ignore
 * import { QuantPool } from "../quantize_pool.ts";
 * import { openWeights, readWeightBytes, withQuantizer } from "./source.ts";
 * using pool = new QuantPool();
 * const w = withQuantizer(await openWeights("./mixtral"), (f, x) => pool.quantize(f, x));
 * const blocks = await readWeightBytes(w, "model.layers.0.self_attn.q_proj.weight", "q4_k");
 * ```
 */
export function withQuantizer<C extends WeightSource>(src: C, quantizer: Quantizer): C {
  return overlay(src, { quantizer });
}

/**
 * A view of `src` whose tensors quantized on the way are fitted with the
 * importance vectors `lookup` gives them (an importance matrix's, through
 * `importanceByTensor`), as `llama-quantize --imatrix` fits them.
 *
 * @example
 * ```ts ignore
 * import { importanceByTensor, readImatrix } from "../gguf/imatrix.ts";
 * import { openWeights, withImportance } from "./source.ts";
 * const w = withImportance(await openWeights("./mixtral"), importanceByTensor(imatrix, cfg));
 * ```
 */
export function withImportance<C extends WeightSource>(
  src: C,
  lookup: (name: string) => Importance | undefined,
): C {
  return overlay(src, { importance: lookup });
}
