/**
 * A GGUF file seen as a checkpoint: its tensors under their Hugging Face names
 * (through the architecture mapping of `./arch.ts`), readable as stored bytes
 * (quantized blocks stay blocks) or as f32/f16 values.
 *
 * @module
 */

import { dequantize } from "../../core/quant/mod.ts";
import { GGML_TYPES, isQuantFormat, type QuantFormat } from "../../core/quant/formats.ts";
import { iq1mScaleBits } from "../../core/quant/iq_lattice.ts";
import { quote } from "../safetensors/header.ts";
import type { Progress } from "../progress.ts";
import { convertTensor } from "../safetensors/convert.ts";
import type { ReadDType, SafeDType } from "../safetensors/mod.ts";
import { type GgufModel, openGgufModel } from "./arch.ts";
import type { WeightInfo, WeightSource } from "../weight_source.ts";

const PLAIN: Readonly<Record<string, SafeDType>> = { f32: "F32", f16: "F16", bf16: "BF16" };

/**
 * Byte offsets of the f16 scales in each block of a format: `d` (and `m` for
 * q4_1/q5_1, `dmin` for q2_k/q4_k/q5_k), first in the block except in q2_k,
 * q3_k and q6_k. Every value of a block
 * is its scales times small integers, so a NaN or ±Inf scale makes the whole
 * block non-finite — and quantized weights reach the kernels as stored.
 * MXFP4's E8M0 and NVFP4's E4M3 scales have no NaN or infinity as ggml reads
 * them (ggml ignores E8M0's NaN code): nothing to check.
 */
const SCALE_OFFSETS: Readonly<Record<Exclude<QuantFormat, "iq1_m">, readonly number[]>> = {
  q8_0: [0],
  q4_0: [0],
  q4_1: [0, 2],
  q5_0: [0],
  q5_1: [0, 2],
  q2_k: [80, 82],
  q3_k: [108],
  q4_k: [0, 2],
  q5_k: [0, 2],
  q6_k: [208],
  iq4_nl: [0],
  iq4_xs: [0],
  iq2_xxs: [0],
  iq2_xs: [0],
  iq2_s: [0],
  iq3_xxs: [0],
  iq3_s: [0],
  iq1_s: [0],
  tq1_0: [52],
  tq2_0: [64],
  q1_0: [0],
  q2_0: [0],
  mxfp4: [],
  nvfp4: [],
};

/** The f16 bit patterns of a block's scales (IQ1_M spreads its one over four words). */
function scaleBits(format: QuantFormat, bytes: Uint8Array, b: number): number[] {
  if (format === "iq1_m") return [iq1mScaleBits(bytes, b)];
  return SCALE_OFFSETS[format].map((o) => bytes[b + o] | (bytes[b + o + 1] << 8));
}

/**
 * Throws a RangeError naming the file and the tensor when a block scale of
 * `bytes` (blocks of `format`) is NaN or ±Inf, as `assertFinite` does for
 * float weights.
 */
function checkScales(
  path: string,
  name: string,
  source: string,
  format: QuantFormat,
  bytes: Uint8Array,
): void {
  const size = GGML_TYPES[format].blockBytes;
  let bad = 0, first = -1;
  for (let b = 0; b + size <= bytes.length; b += size) {
    for (const bits of scaleBits(format, bytes, b)) {
      // An f16 with all exponent bits set is NaN or ±Inf.
      if ((bits & 0x7c00) === 0x7c00 && bad++ === 0) first = b / size;
    }
  }
  if (bad > 0) {
    throw new RangeError(
      `${path}: tensor "${name}" (GGUF ${quote(source)}, ${format}) has ${bad} block ` +
        `scale${bad === 1 ? "" : "s"} that ${bad === 1 ? "is" : "are"} NaN or ±Inf, first in ` +
        `block ${first}`,
    );
  }
}

/**
 * A GGUF model's weights by Hugging Face tensor name.
 *
 * @example
 * ```ts ignore
 * import { GgufCheckpoint } from "./checkpoint.ts";
 * using w = await GgufCheckpoint.open("mixtral.Q4_K_M.gguf");
 * w.info("model.layers.0.self_attn.q_proj.weight").format; // "q4_k"
 * ```
 */
export class GgufCheckpoint implements WeightSource {
  /** The file. */
  readonly path: string;
  /** The mapped model (config, tensors, metadata). */
  readonly model: GgufModel;
  /** Every tensor by Hugging Face name. */
  readonly tensors: ReadonlyMap<string, WeightInfo>;
  /** Bytes of all tensors as stored. */
  readonly totalBytes: number;
  #progress: Progress | undefined;

  private constructor(path: string, model: GgufModel, progress?: (total: number) => Progress) {
    this.path = path;
    this.model = model;
    const tensors = new Map<string, WeightInfo>();
    let total = 0;
    for (const [name, t] of model.tensors) {
      const format = isQuantFormat(t.type.name) ? t.type.name : undefined;
      tensors.set(name, {
        name,
        dtype: t.type.name.toUpperCase(),
        shape: t.shape,
        file: path,
        byteLength: t.bytes,
        ...(format ? { format } : {}),
      });
      total += t.bytes;
    }
    this.tensors = tensors;
    this.totalBytes = total;
    this.#progress = progress?.(total);
  }

  /**
   * Opens `path`, validating its header and mapping its architecture.
   *
   * @example
   * ```ts ignore
   * import { GgufCheckpoint } from "./checkpoint.ts";
   * const w = await GgufCheckpoint.open("mamba-130m.Q8_0.gguf");
   * ```
   */
  static async open(
    path: string,
    options: { progress?: (total: number) => Progress } = {},
  ): Promise<GgufCheckpoint> {
    return new GgufCheckpoint(path, await openGgufModel(path), options.progress);
  }

  /**
   * Whether tensor `name` exists.
   *
   * @example
   * ```ts ignore
   * w.has("lm_head.weight"); // false for tied embeddings
   * ```
   */
  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /**
   * Tensor `name`'s info; a RangeError naming it when absent.
   *
   * @example
   * ```ts ignore
   * w.info("model.norm.weight").dtype; // "F32"
   * ```
   */
  info(name: string): WeightInfo {
    const t = this.tensors.get(name);
    if (!t) throw new RangeError(`${this.path}: the GGUF model has no tensor "${name}"`);
    return t;
  }

  /**
   * Tensor `name`'s bytes as stored (blocks for a quantized tensor), in
   * Hugging Face row order. `into` is filled when given. A block whose scale
   * is NaN or ±Inf is a RangeError naming the file and the tensor (the blocks
   * reach the kernels as they are, where it would turn into NaN logits).
   *
   * @example
   * ```ts ignore
   * const blocks = await w.readRaw("model.layers.0.mlp.gate_proj.weight");
   * ```
   */
  async readRaw(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const t = this.info(name);
    const bytes = await this.model.read(name);
    if (t.format) {
      checkScales(this.path, name, this.model.tensors.get(name)!.source, t.format, bytes);
    }
    this.#progress?.advance(t.byteLength);
    if (!into) return bytes;
    into.set(bytes);
    return into.subarray(0, bytes.length);
  }

  /**
   * Tensor `name` as f32 or f16 values (dequantized when quantized).
   *
   * @example
   * ```ts ignore
   * const w32 = await w.readAs("model.layers.0.self_attn.q_proj.weight", "f32");
   * ```
   */
  async readAs(name: string, dtype: ReadDType): Promise<Float32Array | Float16Array> {
    const t = this.info(name);
    const bytes = await this.readRaw(name);
    if (t.format) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const f = dequantize(t.format, bytes, n);
      return dtype === "f32" ? f : Float16Array.from(f);
    }
    const from = PLAIN[t.dtype.toLowerCase()];
    if (!from) {
      throw new TypeError(`${this.path}: tensor "${name}" is ${t.dtype}, not a float type`);
    }
    return convertTensor(bytes, from, dtype, `${this.path}: tensor "${name}"`);
  }

  /**
   * Closes the file and ends the progress display. Idempotent.
   *
   * @example
   * ```ts ignore
   * w.close();
   * ```
   */
  close(): void {
    this.model.close();
    this.#progress?.done();
    this.#progress = undefined;
  }

  /** Lets `using w = await GgufCheckpoint.open(p)` close it. */
  [Symbol.dispose](): void {
    this.close();
  }
}
