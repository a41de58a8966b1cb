/**
 * What every checkpoint reader offers the loader, the expert scheduler and the
 * tools: tensors by Hugging Face name, readable as stored bytes or as f32/f16
 * values. `Checkpoint` (safetensors) and `GgufCheckpoint` (GGUF) implement it.
 *
 * @module
 */

import type { QuantFormat } from "../core/quant/formats.ts";
import type { ReadDType } from "./safetensors/dtypes.ts";
import type { Quantizer } from "./quantize_pool.ts";
import type { Importance } from "../core/quant/importance.ts";

/**
 * One stored tensor of a {@linkcode WeightSource}.
 *
 * @example
 * ```ts
 * import type { WeightInfo } from "./weight_source.ts";
 * const w: WeightInfo = { name: "lm_head.weight", dtype: "Q6_K", shape: [32000, 4096], file: "m.gguf", byteLength: 107520000, format: "q6_k" };
 * ```
 */
export interface WeightInfo {
  /** Its name, as Hugging Face names it. */
  readonly name: string;
  /** Stored type: a safetensors dtype (`"BF16"`) or a ggml type in capitals (`"Q4_K"`). */
  readonly dtype: string;
  /** Dimensions, row-major. */
  readonly shape: readonly number[];
  /** The file holding it. */
  readonly file: string;
  /** Bytes as stored. */
  readonly byteLength: number;
  /** The block format when stored quantized. */
  readonly format?: QuantFormat;
}

/**
 * A model's weights by Hugging Face tensor name: safetensors (`Checkpoint`) or
 * GGUF (`GgufCheckpoint`).
 *
 * @example
 * ```ts ignore
 * import { openWeights } from "./model/source.ts";
 * const w = await openWeights("./mixtral-q4_k.gguf");
 * const norm = await w.readAs("model.norm.weight", "f32");
 * w.close();
 * ```
 */
export interface WeightSource {
  /** The folder or file it was opened from. */
  readonly path: string;
  /** Every tensor by name. */
  readonly tensors: ReadonlyMap<string, WeightInfo>;
  /** Bytes of all tensors as stored. */
  readonly totalBytes: number;
  /** Whether tensor `name` exists. */
  has(name: string): boolean;
  /** Tensor `name`'s info (RangeError naming it when absent). */
  info(name: string): WeightInfo;
  /** Tensor `name`'s stored bytes (quantized blocks for a quantized tensor). */
  readRaw(name: string, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * Bytes `[start, start + length)` of tensor `name` as stored, when the
   * reader can read a range (safetensors): parts of a fused tensor are read so.
   */
  readRange?(name: string, start: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Tensor `name` as f32 or f16 values (dequantized when quantized). */
  readAs(name: string, dtype: ReadDType): Promise<Float32Array | Float16Array>;
  /** Closes its files. */
  close(): void;
  /**
   * How tensors read as another block format are encoded (`readWeightBytes`):
   * a worker pool's `quantize` while a model loads (see `withQuantizer`);
   * absent, on the calling thread.
   */
  readonly quantizer?: Quantizer;
  /**
   * The importance vector to fit tensor `name` with when it is quantized on
   * the way (an importance matrix's, see `withImportance`); absent or
   * undefined, it is quantized without one.
   */
  readonly importance?: (name: string) => Importance | undefined;
}

/**
 * A view of `src` with the members of `own` in place of its own; everything
 * else is `src`'s (methods bound to it: checkpoints keep private state).
 *
 * @example
 * ```ts ignore
 * import { overlay } from "./weight_source.ts";
 * const quiet = overlay(ckpt, { readAs: (n, d) => ckpt.readAs(n, d) });
 * ```
 */
export function overlay<C extends WeightSource>(src: C, own: Partial<WeightSource>): C {
  return new Proxy(src, {
    get(target, key) {
      if (Object.hasOwn(own, key)) return own[key as keyof WeightSource];
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
