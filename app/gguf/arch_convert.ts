/**
 * Writing a GGUF from a Hugging Face checkpoint, as llama.cpp's
 * `convert_hf_to_gguf.py` (then `llama-quantize`) would: the same tensor names,
 * shapes and value transforms (`arch_names.ts`), the same metadata
 * (`arch_metadata.ts`), and the same choice of which tensors stay f32.
 *
 * Tensors are produced one at a time while the file is written (a stacked
 * expert tensor one expert at a time), so memory holds one GGUF tensor in its
 * output type plus one HF tensor in f32.
 *
 * Types: with `f32` everything is f32; with `f16` or a quantized format, every
 * weight matrix llama.cpp would convert takes that type and the tensors it
 * keeps f32 stay f32 (norms, biases, the router `ffn_gate_inp`, `ssm_a`,
 * `ssm_d`, `ssm_conv1d`, Qwen2-MoE's `ffn_gate_inp_shexp`). The type is uniform
 * (as `llama-quantize --pure`): no per-tensor Q4_K_M-style mixes. A row length
 * (the innermost dimension) that is not a whole number of blocks falls back as
 * `llama-quantize` does: q4_k → q5_0, q5_k → q5_1, q6_k → q8_0, q2_k / q3_k /
 * iq4_xs → iq4_nl, and a row that is not a multiple of 32 either → f16. A
 * tensor whose sources are already stored in its type (and a source that can
 * read them raw, `HfTensorSource.readRaw`) is copied, not requantized, as
 * llama-quantize copies a tensor already of the requested type.
 *
 * @module
 */

import {
  choiceFormat,
  fitFormat,
  GGML_TYPES,
  type GgmlTypeName,
  isQuantFormat,
} from "../../core/quant/formats.ts";
import { quantize } from "../../core/quant/codecs.ts";
import { type Importance, quantizeWithImportance } from "../../core/quant/importance.ts";
import { parseConfig, specOf } from "../../models/architectures/mod.ts";
import { ropeDivisors } from "../../models/rope_scaling.ts";
import { quote } from "../safetensors/header.ts";
import type { GgufMetadataInput, GgufTensorSpec } from "./layout.ts";
import type { GgufEntry } from "./value.ts";
import { writeGguf } from "./writer.ts";
import { type Imatrix, type ImatrixEntry, importanceOf } from "./imatrix.ts";
import { type Quantizer, QuantPool } from "../quantize_pool.ts";
import {
  applyTypeOverrides,
  firstLacking,
  isGgufMix,
  mixTensorTypes,
  type TensorTypeOverrides,
} from "./quant_mix.ts";
import {
  GGUF_ARCH_OF,
  type GgufTensorPlan,
  ggufWrittenPlans,
  permuteRows,
  refuseUnwritten,
} from "./arch_names.ts";
import { GGUF_FILE_TYPES, ggufArchMetadata, type GgufOutType } from "./arch_metadata.ts";

/**
 * A Hugging Face checkpoint to convert: its config.json object, its tensors'
 * shapes, and a way to read one tensor as f32 (a `Checkpoint` fits).
 *
 * @example
 * ```ts ignore
 * import { Checkpoint } from "../safetensors/mod.ts";
 * import type { HfTensorSource } from "./arch_convert.ts";
 * const ckpt = await Checkpoint.open("mixtral");
 * const source: HfTensorSource = {
 *   config: JSON.parse(await Deno.readTextFile("mixtral/config.json")),
 *   tensors: ckpt.tensors,
 *   readF32: (name) => ckpt.readF32(name),
 * };
 * ```
 */
export interface HfTensorSource {
  /** The config.json object. */
  readonly config: Record<string, unknown>;
  /** Every tensor's shape, and the format of one stored quantized, by name. */
  readonly tensors: ReadonlyMap<
    string,
    { readonly shape: readonly number[]; readonly format?: string }
  >;
  /** One tensor's values as f32, row-major. */
  readF32(name: string): Promise<Float32Array>;
  /**
   * One tensor's stored bytes (a quantized one's blocks, in ggml's layout).
   * Given, a GGUF tensor whose every source is already stored in the type it is
   * written in is copied block for block, as llama-quantize copies a tensor
   * already of its type (GPT-OSS's MXFP4 experts stay the blocks they were).
   */
  readRaw?(name: string): Promise<Uint8Array>;
}

/**
 * Options of {@linkcode convertToGguf}.
 *
 * @example
 * ```ts
 * import type { ConvertToGgufOptions } from "./arch_convert.ts";
 * const o: ConvertToGgufOptions = { type: "q4_k", onProgress: (done, total) => console.log(done, total) };
 * ```
 */
export interface ConvertToGgufOptions {
  /** The weights' type. */
  type: GgufOutType;
  /** More metadata (the tokenizer's); a key also written here replaces the model's. */
  metadata?: GgufMetadataInput;
  /** `general.name`. */
  name?: string;
  /** Told after each tensor is written. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /** Data alignment (default 32). */
  alignment?: number;
  /**
   * Encodes the quantized tensors (default: a {@linkcode QuantPool} on every
   * core, closed when the file is written); the bytes are the same either way.
   */
  quantizer?: Quantizer;
  /**
   * An importance matrix (`readImatrix`): each quantized weight it has an
   * entry for is fitted with it, as `llama-quantize --imatrix` does; weights
   * it lacks are quantized without. An entry whose size is not the weight's
   * columns × experts is a `RangeError` naming the weight.
   */
  imatrix?: Imatrix;
  /** llama-quantize's `--output-tensor-type` / `--token-embedding-type`. */
  typeOverrides?: TensorTypeOverrides;
}

/**
 * The GGUF tensors llama.cpp writes for an HF checkpoint with `config` and the
 * tensors `tensors` (name → shape), each with the HF tensors it holds and the
 * transform applied; every HF tensor the model needs is checked present with
 * its shape (a `RangeError` naming it and the shape expected otherwise), and a
 * tensor the model does not use is refused (except `lm_head` of a tied model
 * and RoPE `inv_freq` buffers, which llama.cpp skips too). A tied Qwen2-MoE or
 * OLMoE also gets an `output.weight` holding the embeddings, since llama.cpp
 * requires one for those architectures.
 *
 * @example
 * ```ts
 * import { ggufTensorsFromHf } from "./arch_convert.ts";
 * const config = {
 *   architectures: ["MambaForCausalLM"], vocab_size: 8, hidden_size: 4, state_size: 2,
 *   num_hidden_layers: 1, conv_kernel: 2, time_step_rank: 1,
 * };
 * const m = "backbone.layers.0.mixer";
 * const shapes: Record<string, number[]> = {
 *   "backbone.embeddings.weight": [8, 4], "backbone.layers.0.norm.weight": [4],
 *   [`${m}.in_proj.weight`]: [16, 4], [`${m}.conv1d.weight`]: [8, 1, 2], [`${m}.conv1d.bias`]: [8],
 *   [`${m}.x_proj.weight`]: [5, 8], [`${m}.dt_proj.weight`]: [8, 1], [`${m}.dt_proj.bias`]: [8],
 *   [`${m}.A_log`]: [8, 2], [`${m}.D`]: [8], [`${m}.out_proj.weight`]: [4, 8],
 *   "backbone.norm_f.weight": [4],
 * };
 * const tensors = new Map(Object.entries(shapes).map(([k, shape]) => [k, { shape }]));
 * ggufTensorsFromHf(config, tensors).find((p) => p.name === "blk.0.ssm_a")?.transform.kind; // "neg_exp"
 * ```
 */
export function ggufTensorsFromHf(
  config: Record<string, unknown>,
  tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>,
): GgufTensorPlan[] {
  const cfg = parseConfig(config);
  refuseUnwritten(cfg.architecture, cfg.hiddenAct);
  const plans = ggufWrittenPlans(cfg);
  const lay = specOf(cfg).layout;
  const used = new Set<string>();
  for (const p of plans) {
    for (const src of p.sources) {
      const t = tensors.get(src);
      const want = `[${p.sourceShape.join(", ")}]`;
      if (!t) {
        throw new RangeError(
          `checkpoint: tensor ${quote(src)} is missing (expected shape ${want}, for GGUF ` +
            `${quote(p.name)})`,
        );
      }
      if (t.shape.join(",") !== p.sourceShape.join(",")) {
        throw new RangeError(
          `checkpoint: tensor ${quote(src)} has shape [${t.shape.join(", ")}], expected ${want}`,
        );
      }
      used.add(src);
    }
  }
  const lmHead = `${lay.lmHead}.weight`;
  // Layers past the last one the model runs (GLM-4.5's multi-token prediction): not
  // written (arch_metadata_glm4_moe.ts says why).
  const layers = `${lay.layers}.`;
  const extra = (n: string) => {
    const i = n.startsWith(layers) ? Number(n.slice(layers.length).split(".")[0]) : NaN;
    return i >= cfg.layers && i < cfg.layers + (cfg.extraLayers ?? 0);
  };
  const unknown = [...tensors.keys()].filter((n) =>
    !used.has(n) && !n.endsWith(".rotary_emb.inv_freq") &&
    !(cfg.tieEmbeddings && n === lmHead) && !extra(n)
  );
  if (unknown.length > 0) {
    throw new RangeError(
      `checkpoint: ${unknown.length} tensor(s) are not part of ${cfg.architecture} as its ` +
        `config describes it: ${unknown.slice(0, 5).map(quote).join(", ")}` +
        (unknown.length > 5 ? ", …" : ""),
    );
  }
  return plans;
}

/**
 * The ggml type one GGUF tensor is written in when the file's type is `type`
 * (see the module notes: tensors llama.cpp keeps f32, and the row-length
 * fallbacks; `mxfp4_moe` as llama-quantize's MXFP4_MOE).
 *
 * @example
 * ```ts
 * import { ggufTensorType } from "./arch_convert.ts";
 * const plan = { name: "blk.0.ffn_down_exps.weight", shape: [8, 4096, 1408], sources: [],
 *   sourceShape: [4096, 1408], transform: { kind: "copy" }, keepF32: false } as const;
 * ggufTensorType(plan, "q4_k"); // "q4_0": 1408 is not a multiple of 256
 * ```
 */
export function ggufTensorType(plan: GgufTensorPlan, type: GgufOutType): GgmlTypeName {
  if (isGgufMix(type)) {
    throw new TypeError(
      `ggufTensorType: ${type} is a mix whose types depend on the whole model; use ggufTensorTypes`,
    );
  }
  if (type === "f32" || plan.keepF32) return "f32";
  if (type === "f16") return "f16";
  // MXFP4_MOE: the stacked experts (3-D) in MXFP4, every other matrix in Q8_0.
  const format = choiceFormat(type, plan.shape.length === 3);
  return fitFormat(format, plan.shape[plan.shape.length - 1]) ?? "f16";
}

/**
 * The ggml type of each GGUF tensor of `plans` (file order) when the file's
 * type is `type`: {@linkcode ggufTensorType} for one type throughout, and
 * llama-quantize's per-tensor choices for a mix (`mixTensorTypes`); then the
 * `overrides` of `output.weight` and `token_embd.weight` (llama-quantize's
 * `--output-tensor-type`, `--token-embedding-type`).
 *
 * @example
 * ```ts ignore
 * import { ggufTensorsFromHf, ggufTensorTypes } from "./arch_convert.ts";
 * const plans = ggufTensorsFromHf(config, ckpt.tensors);
 * ggufTensorTypes(plans, "q4_k_m", config); // per tensor: "q4_k", "q6_k", "f32"…
 * ```
 */
export function ggufTensorTypes(
  plans: readonly GgufTensorPlan[],
  type: GgufOutType,
  config: Record<string, unknown>,
  overrides: TensorTypeOverrides = {},
): GgmlTypeName[] {
  if (isGgufMix(type)) return mixTensorTypes(plans, type, parseConfig(config), overrides);
  return applyTypeOverrides(plans, plans.map((p) => ggufTensorType(p, type)), overrides);
}

/** Bytes of `elems` elements of `type`. */
function bytesOf(type: GgmlTypeName, elems: number): number {
  const t = GGML_TYPES[type];
  return (elems / t.blockElems) * t.blockBytes;
}

/**
 * The bytes of one GGUF tensor in `type`: each source read as f32, transformed
 * (q/k rows permuted, A_log → −exp(A_log)) and encoded into its slice; with
 * `importance` (the weight's imatrix entry: one vector a source, e.g. an
 * expert), each source is fitted with its vector.
 *
 * @example
 * ```ts
 * import { encodeGgufTensor } from "./arch_convert.ts";
 * const plan = { name: "blk.0.ssm_d", shape: [2], sources: ["D"], sourceShape: [2],
 *   transform: { kind: "copy" }, keepF32: true } as const;
 * const bytes = await encodeGgufTensor(plan, "f32", () => Promise.resolve(new Float32Array([1, 2])));
 * bytes.length; // 8
 * ```
 */
export async function encodeGgufTensor(
  plan: GgufTensorPlan,
  type: GgmlTypeName,
  readF32: (name: string) => Promise<Float32Array>,
  quantizer?: Quantizer,
  importance?: ImatrixEntry,
): Promise<Uint8Array> {
  const elems = plan.sourceShape.reduce((a, b) => a * b, 1);
  const cols = plan.sourceShape[plan.sourceShape.length - 1];
  const slice = bytesOf(type, elems);
  const out = new Uint8Array(slice * plan.sources.length);
  for (const [e, src] of plan.sources.entries()) {
    const x = await readF32(src);
    if (x.length !== elems) {
      throw new RangeError(
        `checkpoint: tensor ${quote(src)} read ${x.length} values, expected ${elems}`,
      );
    }
    let y: Float32Array = x;
    const t = plan.transform;
    if (t.kind === "permute") {
      const bytes = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
      y = new Float32Array(permuteRows(bytes, plan.sourceShape[0], t.heads, true).buffer);
    } else if (t.kind === "neg_exp") {
      y = new Float32Array(elems);
      for (let i = 0; i < elems; i++) y[i] = -Math.exp(x[i]);
    }
    const imp = importance && importanceOf(importance, plan.name, cols, plan.sources.length, e);
    out.set(await encode(type, y, src, quantizer, imp), e * slice);
  }
  return out;
}

async function encode(
  type: GgmlTypeName,
  x: Float32Array,
  src: string,
  quantizer: Quantizer | undefined,
  importance: Importance | undefined,
): Promise<Uint8Array> {
  if (type === "f32") {
    return new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
  }
  if (type === "f16") return new Uint8Array(new Float16Array(x).buffer);
  if (!isQuantFormat(type)) throw new TypeError(`cannot write ${type} tensors`);
  try {
    if (quantizer) return await quantizer(type, x, importance);
    return importance
      ? quantizeWithImportance(type, x, importance.rowLength, importance.values)
      : quantize(type, x);
  } catch (e) {
    throw new RangeError(`checkpoint: tensor ${quote(src)}: ${(e as Error).message}`);
  }
}

/** The `quantize.imatrix.*` keys llama-quantize records about the importance matrix it used. */
function imatrixMetadata(m: Imatrix): Array<[string, GgufEntry]> {
  const out: Array<[string, GgufEntry]> = [];
  if (m.path) out.push(["quantize.imatrix.file", { type: "string", value: m.path.slice(0, 127) }]);
  if (m.datasets.length > 0) {
    out.push(["quantize.imatrix.dataset", { type: "string", value: m.datasets[0].slice(0, 127) }]);
  }
  out.push(["quantize.imatrix.entries_count", { type: "i32", value: m.entries.size }]);
  if (m.chunkCount > 0) {
    out.push(["quantize.imatrix.chunks_count", { type: "i32", value: m.chunkCount }]);
  }
  return out;
}

/** `base` with `extra`'s pairs: a key in both takes `extra`'s value, in `base`'s place. */
function mergeMetadata(
  base: Array<[string, GgufEntry]>,
  extra: GgufMetadataInput | undefined,
): Array<[string, GgufEntry]> {
  if (!extra) return base;
  const pairs: Array<readonly [string, GgufEntry]> = Array.isArray(extra)
    ? extra
    : extra instanceof Map
    ? [...extra]
    : Object.entries(extra as Record<string, GgufEntry>);
  const out = new Map(base);
  for (const [k, v] of pairs) out.set(k, v);
  return [...out];
}

/**
 * Writes the GGUF llama.cpp would make of `source` at `out`: metadata
 * (`ggufArchMetadata` plus `options.metadata`), then every tensor, produced
 * one at a time in its type (see the module notes). The file appears only once
 * complete.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint } from "../safetensors/mod.ts";
 * import { convertToGguf } from "./arch_convert.ts";
 * const ckpt = await Checkpoint.open("mixtral");
 * const config = JSON.parse(await Deno.readTextFile("mixtral/config.json"));
 * await convertToGguf({ config, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
 *   "mixtral-q4_k.gguf", { type: "q4_k", onProgress: (d, t, name) => console.log(d, t, name) });
 * ```
 */
export async function convertToGguf(
  source: HfTensorSource,
  out: string,
  options: ConvertToGgufOptions,
): Promise<void> {
  if (!(options.type in GGUF_FILE_TYPES)) {
    throw new TypeError(
      `convertToGguf: type ${quote(String(options.type))} is not one Kiln writes (` +
        `${Object.keys(GGUF_FILE_TYPES).join(", ")})`,
    );
  }
  const plans = ggufTensorsFromHf(source.config, source.tensors);
  const metadata = mergeMetadata(
    ggufArchMetadata(source.config, { type: options.type, name: options.name }),
    options.metadata,
  );
  if (options.imatrix) metadata.push(...imatrixMetadata(options.imatrix));
  let done = 0;
  const types = ggufTensorTypes(plans, options.type, source.config, options.typeOverrides);
  // llama-quantize refuses these "very low-bit" types for a tensor the matrix lacks.
  const lacking = firstLacking(
    plans,
    types,
    options.type,
    (n) => !!options.imatrix?.entries.has(n),
  );
  if (lacking >= 0) {
    throw new RangeError(
      `quantize: tensor ${plans[lacking].name} is ${types[lacking]}, which is written only with ` +
        `an importance matrix holding it (llama-quantize refuses it too): ${
          options.imatrix ? "this matrix has no entry for it" : "give one (--imatrix FILE)"
        }`,
    );
  }
  // Our own pool unless given an encoder; its workers start at the first quantized tensor.
  const pool = options.quantizer ? undefined : new QuantPool();
  const quantizer = options.quantizer ?? ((f, x, imp) => pool!.quantize(f, x, imp));
  const tensors: GgufTensorSpec[] = plans.map((p, i) => {
    const type = types[i];
    return {
      name: p.name,
      shape: p.shape,
      type,
      data: async () => {
        const imp = isQuantFormat(type) ? options.imatrix?.entries.get(p.name) : undefined;
        const read = (n: string) => source.readF32(n);
        const bytes = storedAs(source, p, type)
          ? await copyStored(source, p, type)
          : await encodeGgufTensor(p, type, read, quantizer, imp);
        options.onProgress?.(++done, plans.length, p.name);
        return bytes;
      },
    };
  });
  const divisors = ropeFreqsOf(source.config);
  if (divisors) {
    // After the blocks, where llama.cpp's converter puts its generated tensor.
    tensors.push({
      name: "rope_freqs.weight",
      shape: [divisors.length],
      type: "f32",
      data: () => Promise.resolve(new Uint8Array(divisors.buffer)),
    });
  }
  try {
    await writeGguf(out, { metadata, tensors, alignment: options.alignment });
  } finally {
    pool?.close();
  }
}

/** Whether every source of `plan` is stored as `type` and can be copied as it is. */
function storedAs(source: HfTensorSource, plan: GgufTensorPlan, type: GgmlTypeName): boolean {
  return isQuantFormat(type) && source.readRaw !== undefined && plan.transform.kind === "copy" &&
    plan.sources.every((s) => source.tensors.get(s)?.format === type);
}

/** The stored blocks of `plan`'s sources, one after another (each checked for its size). */
async function copyStored(
  source: HfTensorSource,
  plan: GgufTensorPlan,
  type: GgmlTypeName,
): Promise<Uint8Array> {
  const slice = bytesOf(type, plan.sourceShape.reduce((a, b) => a * b, 1));
  const out = new Uint8Array(slice * plan.sources.length);
  for (const [e, src] of plan.sources.entries()) {
    const raw = await source.readRaw!(src);
    if (raw.length !== slice) {
      throw new RangeError(
        `checkpoint: tensor ${quote(src)} holds ${raw.length} bytes of ${type}, expected ${slice}`,
      );
    }
    out.set(raw, e * slice);
  }
  return out;
}

/** A Mixtral's RoPE divisors (llama3 scaling) for `rope_freqs.weight`, else undefined. */
function ropeFreqsOf(config: Record<string, unknown>): Float32Array | undefined {
  const cfg = parseConfig(config);
  const a = cfg.attention;
  if (GGUF_ARCH_OF[cfg.architecture] !== "llama" || !a?.rope) return undefined;
  return ropeDivisors(a.headDim, a.rope);
}
