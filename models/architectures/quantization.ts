/**
 * config.json's `quantization_config`: how a checkpoint stores its weights
 * when not in float. Kiln reads transformers' fine-grained FP8 checkpoints
 * (`quant_method: "fp8"`, DeepSeek-V3's and the Qwen3 "-FP8" releases) by
 * dequantizing each weight as it loads it, GPT-OSS's `"mxfp4"` experts in its
 * own spec, and refuses every other method by name instead of reading its
 * packed integers as floats.
 *
 * @module
 */

import type { Fp8Storage } from "../config.ts";
import { type ConfigReader, show } from "./reader.ts";

/**
 * The FP8 storage `quantization_config` describes: `weight_block_size`
 * `[rows, cols]` (null or absent: one scale per tensor) and `scale_fmt`.
 * Undefined when the config has no `quantization_config`, or one its
 * architecture reads itself (`handled`: GPT-OSS's `"mxfp4"`). Any other
 * method, an FP8 format other than E4M3, or a malformed block size is a
 * TypeError naming the field.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { fp8Storage } from "./quantization.ts";
 * const c = new ConfigReader({
 *   quantization_config: { quant_method: "fp8", weight_block_size: [128, 128] },
 * }, "config.json", "DeepseekV3ForCausalLM");
 * fp8Storage(c)?.block; // [128, 128]
 * ```
 */
export function fp8Storage(
  c: ConfigReader,
  handled: readonly string[] = [],
): Fp8Storage | undefined {
  const q = c.raw("quantization_config");
  if (q === undefined) return undefined;
  if (typeof q !== "object" || Array.isArray(q)) {
    c.refuse("quantization_config", "expected an object with a quant_method");
  }
  const o = q as Record<string, unknown>;
  const method = o.quant_method;
  if (typeof method === "string" && handled.includes(method)) return undefined;
  if (method !== "fp8") {
    c.refuse(
      "quantization_config",
      `Kiln reads float checkpoints and quant_method "fp8" (block-scaled FP8)${
        handled.length ? `, ${handled.map((m) => `"${m}"`).join(", ")}` : ""
      }, not ${show(method)}; a GGUF file of the model loads too`,
    );
  }
  const field = (name: string) => `${c.file}: field "quantization_config.${name}"`;
  if (o.fmt !== undefined && o.fmt !== null && o.fmt !== "e4m3") {
    throw new TypeError(`${field("fmt")} is ${show(o.fmt)}; Kiln reads FP8 weights in "e4m3"`);
  }
  const scaleFmt = o.scale_fmt ?? "float";
  if (scaleFmt !== "float" && scaleFmt !== "ue8m0") {
    throw new TypeError(`${field("scale_fmt")} must be "float" or "ue8m0", got ${show(scaleFmt)}`);
  }
  const b = o.weight_block_size;
  if (b === undefined || b === null) return { scaleFmt };
  if (
    !Array.isArray(b) || b.length !== 2 ||
    !b.every((v) => typeof v === "number" && Number.isInteger(v) && v > 0 && v <= 1 << 20)
  ) {
    throw new TypeError(
      `${field("weight_block_size")} must be two positive integers [rows, cols], got ${show(b)}`,
    );
  }
  return { block: [b[0], b[1]], scaleFmt };
}
