/**
 * GGUF files as Hugging Face checkpoints, and back, exactly as llama.cpp
 * writes and reads them — for the architectures Kiln runs: `llama` with
 * experts (Mixtral), `mamba`, `mamba2`, `jamba`, `qwen2moe`, `olmoe`, `qwen3moe`,
 * `granitehybrid` (and `granite`, read only), `gpt-oss` and `glm4moe`.
 *
 * {@linkcode openGgufModel} opens a GGUF and presents it the way Kiln's loader
 * reads a safetensors checkpoint: an HF `config.json` object rebuilt from the
 * metadata (`arch_config.ts`), and every HF tensor by its HF name and shape,
 * read in HF layout — llama.cpp's q/k row permutation undone, stacked experts
 * sliced per expert, Mamba's A = −exp(A_log) turned back into A_log (as f32),
 * conv1d given back its `[I, 1, k]` shape. Everything else keeps its stored
 * bytes and type (a q4_k weight reads as the same q4_k blocks; GPT-OSS's MXFP4
 * experts as the MXFP4 blocks a Hugging Face MXFP4 checkpoint presents).
 *
 * {@linkcode convertToGguf} is the reverse, for `kiln quantize`
 * (`arch_convert.ts`); the tensor table both use is `arch_names.ts`, the
 * metadata written `arch_metadata.ts`.
 *
 * @example
 * ```ts ignore
 * import { openGgufModel } from "./arch.ts";
 * using model = await openGgufModel("mixtral-8x7b-q4_k.gguf");
 * model.config.num_local_experts; // 8
 * const t = model.tensors.get("model.layers.0.block_sparse_moe.experts.3.w1.weight")!;
 * console.log(t.type.name, t.shape, t.source); // q4_k [14336, 4096] blk.0.ffn_gate_exps.weight
 * const bytes = await model.read(t.name);
 * ```
 *
 * @module
 */

import { GGML_TYPES, type GgmlTypeInfo, isQuantFormat } from "../../core/quant/formats.ts";
import { dequantize } from "../../core/quant/codecs.ts";
import { parseConfig } from "../../models/architectures/mod.ts";
import type { ModelConfig } from "../../models/config.ts";
import { fileError } from "../fs_errors.ts";
import { bf16ToF32 } from "../safetensors/convert.ts";
import { quote } from "../safetensors/header.ts";
import { GgufFile, type GgufOpenOptions } from "./file.ts";
import type { GgufTensorInfo } from "./types.ts";
import { hfConfigFromGguf } from "./arch_config.ts";
import {
  type GgufTensorPlan,
  ggufTensorPlans,
  type GgufTransform,
  perExpertName,
  permuteRows,
} from "./arch_names.ts";

export { f32Decimal, hfConfigFromGguf } from "./arch_config.ts";
export {
  GGUF_ARCH_OF,
  GGUF_ARCHITECTURES,
  type GgufTensorPlan,
  ggufTensorPlans,
  type GgufTransform,
  keepsF32,
  perExpertName,
  permutedRowSource,
  permuteRows,
} from "./arch_names.ts";
export {
  GGUF_FILE_TYPES,
  ggufArchMetadata,
  type GgufArchMetadataOptions,
  type GgufOutType,
} from "./arch_metadata.ts";
export {
  convertToGguf,
  type ConvertToGgufOptions,
  encodeGgufTensor,
  ggufTensorsFromHf,
  ggufTensorType,
  ggufTensorTypes,
  type HfTensorSource,
} from "./arch_convert.ts";
export {
  GGUF_MIXES,
  type GgufMix,
  isGgufMix,
  MIX_BASE,
  mixTensorTypes,
  type TensorTypeOverrides,
} from "./quant_mix.ts";

/**
 * One Hugging Face tensor of a GGUF model.
 *
 * @example
 * ```ts ignore
 * import { type GgufMappedTensor, openGgufModel } from "./arch.ts";
 * const model = await openGgufModel("mamba.gguf");
 * const a: GgufMappedTensor = model.tensors.get("backbone.layers.0.mixer.A_log")!;
 * a.type.name; // "f32": rebuilt from blk.0.ssm_a
 * ```
 */
export interface GgufMappedTensor {
  /** Its Hugging Face name. */
  readonly name: string;
  /** Its Hugging Face shape, row-major. */
  readonly shape: readonly number[];
  /** Element type of what `read` returns: the stored type, or f32 where values were rebuilt. */
  readonly type: GgmlTypeInfo;
  /** Bytes `read` returns. */
  readonly bytes: number;
  /** The GGUF tensor it comes from (for an expert, the stacked tensor it is a slice of). */
  readonly source: string;
}

/**
 * A GGUF file read as a Hugging Face checkpoint.
 *
 * @example
 * ```ts ignore
 * import { type GgufModel, openGgufModel } from "./arch.ts";
 * const model: GgufModel = await openGgufModel("qwen1.5-moe-a2.7b-q8_0.gguf");
 * model.architecture; // "qwen2moe"
 * model.close();
 * ```
 */
export interface GgufModel {
  /** The open file (metadata, tensor infos). */
  readonly file: GgufFile;
  /** `general.architecture`. */
  readonly architecture: string;
  /** An HF config.json object `parseConfig` accepts, describing the same model. */
  readonly config: Record<string, unknown>;
  /** Its tensors by Hugging Face name. */
  readonly tensors: ReadonlyMap<string, GgufMappedTensor>;
  /** The bytes of an HF tensor in HF layout, of its `type`. */
  read(hfName: string): Promise<Uint8Array>;
  /** Closes the file. */
  close(): void;
  /** Lets `using model = await openGgufModel(p)` close it. */
  [Symbol.dispose](): void;
}

/** Where one HF tensor's bytes are and what to do with them. */
interface Slot {
  readonly tensor: GgufMappedTensor;
  readonly offset: number;
  readonly bytes: number;
  readonly stored: GgmlTypeInfo;
  readonly transform: GgufTransform;
  /** `mla_kv_b`: the `attn_v_b` half (this slot's range is `attn_k_b`). */
  v?: { readonly offset: number; readonly bytes: number; readonly stored: GgmlTypeInfo };
}

/**
 * Opens a GGUF file as a Hugging Face checkpoint of one of Kiln's
 * architectures. Checked at open time: the architecture (an unsupported one, or
 * a `llama` without experts, is a `TypeError` naming it), the metadata keys the
 * architecture needs (a missing one is a `RangeError` naming it), and every
 * tensor's presence and shape against the config (a missing or misshapen
 * tensor, or one the model does not use, is a `RangeError` naming the file,
 * the tensor and the shape expected).
 *
 * @example
 * ```ts ignore
 * import { openGgufModel } from "./arch.ts";
 * using model = await openGgufModel("jamba-tiny.gguf");
 * for (const [name, t] of model.tensors) console.log(name, t.shape, t.type.name);
 * ```
 */
export async function openGgufModel(
  path: string,
  options: GgufOpenOptions = {},
): Promise<GgufModel> {
  const file = await GgufFile.open(path, options);
  let handle: Deno.FsFile | undefined;
  try {
    const ropeFreqs = await readRopeFreqs(file);
    const { architecture, config } = hfConfigFromGguf(file, file.tensors, ropeFreqs);
    const cfg = parseConfig(config, `${path} (config.json rebuilt from its metadata)`);
    const slots = mapTensors(file, cfg, ropeFreqs !== undefined);
    try {
      handle = await Deno.open(path, { read: true });
    } catch (e) {
      throw fileError(e, path, "a GGUF file");
    }
    return new MappedModel(file, handle, architecture, config, slots);
  } catch (e) {
    file.close();
    throw e;
  }
}

const squeeze = (s: readonly number[]) => s.filter((d) => d !== 1).join(",");
const show = (s: readonly number[]) => `[${s.join(", ")}]`;

/**
 * The block and expert counts checked against the tensors before the table is
 * built: its size follows them, and a u32 in the metadata can ask for billions
 * of entries (a hang, then an out-of-memory crash).
 */
function checkCounts(file: GgufFile, cfg: ModelConfig): void {
  const key = (k: string) => quote(`${file.string("general.architecture")}.${k}`);
  // Every block has at least 5 tensors (a norm and 4 attention or more SSM
  // ones), besides token_embd and output_norm.
  const need = 5 * cfg.layers + 2;
  if (file.tensors.size < need) {
    throw new RangeError(
      `${file.path}: ${cfg.layers} blocks (metadata ${key("block_count")}) need at least ` +
        `${need} tensors, but the file has ${file.tensors.size}`,
    );
  }
  // The router of a MoE block has one row per expert, in either expert layout.
  const moe = cfg.pattern.findIndex((p) => p.ffn === "moe");
  if (moe < 0) return;
  const experts = cfg.moe!.experts;
  const name = `blk.${moe}.ffn_gate_inp.weight`;
  const router = file.tensors.get(name);
  if (router?.shape[0] !== experts) {
    throw new RangeError(
      `${file.path}: ${experts} experts (metadata ${key("expert_count")}), but tensor ` +
        `${quote(name)} ${
          router ? `has shape ${show(router.shape)}, not ${experts} rows` : "is missing"
        }`,
    );
  }
}

/**
 * The per-frequency RoPE divisors of a `llama` file (`rope_freqs.weight`, which
 * llama.cpp's converter writes for llama3 RoPE scaling and llama.cpp's llama graph
 * divides each frequency by), f32 of one value per rotary pair; undefined without one.
 */
async function readRopeFreqs(file: GgufFile): Promise<Float32Array | undefined> {
  const info = file.tensors.get(ROPE_FREQS);
  if (!info || file.string("general.architecture") !== "llama") return undefined;
  if (info.shape.length !== 1 || info.type.name !== "f32") {
    throw new RangeError(
      `${file.path}: tensor ${quote(ROPE_FREQS)} is ${info.type.name} ${show(info.shape)}, ` +
        "expected one f32 factor per rotary pair",
    );
  }
  const v = await file.readF32(ROPE_FREQS);
  if (!v.every((x) => x > 0 && Number.isFinite(x))) {
    throw new RangeError(
      `${file.path}: tensor ${quote(ROPE_FREQS)} holds a factor that is not > 0`,
    );
  }
  return v;
}

const ROPE_FREQS = "rope_freqs.weight";

/** Each HF tensor's slot, every GGUF tensor checked against the config's table. */
function mapTensors(file: GgufFile, cfg: ModelConfig, ropeFreqsRead: boolean): Map<string, Slot> {
  checkCounts(file, cfg);
  const slots = new Map<string, Slot>();
  const used = new Set<string>(ropeFreqsRead ? [ROPE_FREQS] : []);
  const find = (name: string, shape: readonly number[], hf: string): GgufTensorInfo => {
    const info = file.tensors.get(name);
    if (!info) {
      throw new RangeError(
        `${file.path}: tensor ${quote(name)} is missing (it holds ${quote(hf)}; expected ` +
          `shape ${show(shape)})`,
      );
    }
    // Axes of size 1 do not move any element: conv1d [I, k] or [I, 1, k], [1, H] or [H].
    if (squeeze(info.shape) !== squeeze(shape)) {
      throw new RangeError(
        `${file.path}: tensor ${quote(name)} has shape ${show(info.shape)}, expected ` +
          `${show(shape)} (for ${quote(hf)} of this config)`,
      );
    }
    used.add(name);
    return info;
  };
  const add = (p: GgufTensorPlan, hf: string, info: GgufTensorInfo, offset: number, n: number) => {
    const rebuilt = p.transform.kind === "neg_exp";
    const elems = p.sourceShape.reduce((a, b) => a * b, 1);
    slots.set(hf, {
      tensor: {
        name: hf,
        shape: p.sourceShape,
        type: rebuilt ? GGML_TYPES.f32 : info.type,
        bytes: rebuilt ? elems * 4 : n,
        source: info.name,
      },
      offset,
      bytes: n,
      stored: info.type,
      transform: p.transform,
    });
  };
  for (const p of ggufTensorPlans(cfg)) {
    if (p.transform.kind === "mla_kv_b") {
      mapKvB(file, p, slots, find);
      continue;
    }
    if (p.sources.length === 1) {
      const info = find(p.name, p.shape, p.sources[0]);
      add(p, p.sources[0], info, info.offset, info.bytes);
      continue;
    }
    if (file.tensors.has(p.name) || !file.tensors.has(perExpertName(p.name, 0)!)) {
      const info = find(p.name, p.shape, `${p.sources[0]} … ${p.sources.at(-1)}`);
      const slice = info.bytes / p.sources.length;
      p.sources.forEach((hf, e) => add(p, hf, info, info.offset + e * slice, slice));
    } else {
      // llama.cpp's older layout: one tensor per expert.
      p.sources.forEach((hf, e) => {
        const info = find(perExpertName(p.name, e)!, p.sourceShape, hf);
        add(p, hf, info, info.offset, info.bytes);
      });
    }
  }
  // Blocks past the last one the model runs (GLM-4.5's multi-token prediction,
  // `nextn_predict_layers`): llama.cpp loads and never runs them; Kiln skips them.
  const extra = (n: string) => {
    const i = /^blk\.(\d+)\./.exec(n)?.[1];
    return i !== undefined && +i >= cfg.layers && +i < cfg.layers + (cfg.extraLayers ?? 0);
  };
  const unknown = [...file.tensors.keys()].filter((n) => !used.has(n) && !extra(n));
  if (unknown.length > 0) {
    throw new RangeError(
      `${file.path}: ${unknown.length} tensor(s) are not part of this ${cfg.architecture} ` +
        `model as its metadata describes it: ${unknown.slice(0, 5).map(quote).join(", ")}` +
        (unknown.length > 5 ? ", …" : ""),
    );
  }
  return slots;
}

/**
 * Latent attention's `kv_b_proj`, rebuilt in f32 from the file's `attn_k_b`
 * and `attn_v_b` halves (the `k` plan makes the slot, the `v` plan completes
 * it), or read as it is from an older file's one `attn_kv_b`.
 */
function mapKvB(
  file: GgufFile,
  p: GgufTensorPlan,
  slots: Map<string, Slot>,
  find: (name: string, shape: readonly number[], hf: string) => GgufTensorInfo,
): void {
  const hf = p.sources[0];
  const legacy = p.name.replace(/attn_[kv]_b\.weight$/, "attn_kv_b.weight");
  if (!file.tensors.has(p.name) && file.tensors.has(legacy)) {
    if (p.transform.kind === "mla_kv_b" && p.transform.part === "v") return;
    const info = find(legacy, p.sourceShape, hf);
    slots.set(hf, {
      tensor: {
        name: hf,
        shape: p.sourceShape,
        type: info.type,
        bytes: info.bytes,
        source: legacy,
      },
      offset: info.offset,
      bytes: info.bytes,
      stored: info.type,
      transform: COPY_TRANSFORM,
    });
    return;
  }
  const info = find(p.name, p.shape, hf);
  if (p.transform.kind === "mla_kv_b" && p.transform.part === "v") {
    slots.get(hf)!.v = { offset: info.offset, bytes: info.bytes, stored: info.type };
    return;
  }
  const elems = p.sourceShape.reduce((a, b) => a * b, 1);
  slots.set(hf, {
    tensor: {
      name: hf,
      shape: p.sourceShape,
      type: GGML_TYPES.f32,
      bytes: elems * 4,
      source: p.name,
    },
    offset: info.offset,
    bytes: info.bytes,
    stored: info.type,
    transform: p.transform,
  });
}

const COPY_TRANSFORM: GgufTransform = { kind: "copy" };

/**
 * `kv_b_proj` `[heads·(nope + v), rank]` from `k_b` `[heads, rank, nope]`
 * (each head's first rows, transposed) and `v_b` `[heads, v, rank]`.
 */
function joinKvB(
  t: Extract<GgufTransform, { kind: "mla_kv_b" }>,
  k: Float32Array,
  v: Float32Array,
  rank: number,
): Float32Array {
  const { heads, nope: N, v: Vd } = t;
  const out = new Float32Array(heads * (N + Vd) * rank);
  for (let h = 0; h < heads; h++) {
    const base = h * (N + Vd) * rank;
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < rank; c++) out[base + n * rank + c] = k[(h * rank + c) * N + n];
    }
    out.set(v.subarray(h * Vd * rank, (h + 1) * Vd * rank), base + N * rank);
  }
  return out;
}

/** f32 values of `raw`, stored as `type`. */
function toF32(type: GgmlTypeInfo, raw: Uint8Array, elems: number): Float32Array {
  const buf = raw.slice().buffer;
  if (type.name === "f32") return new Float32Array(buf, 0, elems);
  if (type.name === "f16") return new Float32Array(new Float16Array(buf, 0, elems));
  if (type.name === "bf16") return bf16ToF32(new Uint16Array(buf, 0, elems));
  if (isQuantFormat(type.name)) return dequantize(type.name, raw, elems);
  throw new TypeError(`cannot read a ${type.name} tensor as f32`);
}

class MappedModel implements GgufModel {
  readonly file: GgufFile;
  readonly architecture: string;
  readonly config: Record<string, unknown>;
  readonly tensors: ReadonlyMap<string, GgufMappedTensor>;
  #slots: Map<string, Slot>;
  #handle: Deno.FsFile | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    file: GgufFile,
    handle: Deno.FsFile,
    architecture: string,
    config: Record<string, unknown>,
    slots: Map<string, Slot>,
  ) {
    this.file = file;
    this.#handle = handle;
    this.architecture = architecture;
    this.config = config;
    this.#slots = slots;
    this.tensors = new Map([...slots].map(([k, s]) => [k, s.tensor]));
  }

  async read(hfName: string): Promise<Uint8Array> {
    const slot = this.#slots.get(hfName);
    if (!slot) {
      throw new RangeError(
        `${this.file.path}: no tensor ${quote(hfName)} in this ${this.architecture} model`,
      );
    }
    const raw = await this.#readRange(slot.offset, slot.bytes, hfName);
    const t = slot.transform;
    if (t.kind === "copy") return raw;
    if (t.kind === "mla_kv_b") {
      const v = slot.v;
      if (!v) throw new RangeError(`${this.file.path}: no attn_v_b half for ${quote(hfName)}`);
      const rank = slot.tensor.shape[1];
      const k = toF32(slot.stored, raw, t.heads * rank * t.nope);
      const vals = toF32(
        v.stored,
        await this.#readRange(v.offset, v.bytes, hfName),
        t.heads * t.v * rank,
      );
      return new Uint8Array(joinKvB(t, k, vals, rank).buffer);
    }
    if (t.kind === "permute") return permuteRows(raw, slot.tensor.shape[0], t.heads, false);
    const elems = slot.tensor.bytes / 4;
    const a = toF32(slot.stored, raw, elems);
    const out = new Float32Array(elems);
    for (let i = 0; i < elems; i++) out[i] = Math.log(-a[i]);
    return new Uint8Array(out.buffer);
  }

  close(): void {
    const h = this.#handle;
    this.#handle = undefined;
    h?.close();
    this.file.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #readRange(offset: number, bytes: number, what: string): Promise<Uint8Array> {
    const run = this.#queue.then(async () => {
      const h = this.#handle;
      if (!h) throw new TypeError(`${this.file.path}: read(${quote(what)}) after close()`);
      const dst = new Uint8Array(bytes);
      await h.seek(offset, Deno.SeekMode.Start);
      for (let done = 0; done < bytes;) {
        const n = await h.read(dst.subarray(done));
        if (n === null || n === 0) {
          throw new RangeError(
            `${this.file.path}: file ends at byte ${offset + done} while reading ${quote(what)}`,
          );
        }
        done += n;
      }
      return dst;
    });
    this.#queue = run.catch(() => {});
    return run;
  }
}
