/**
 * config.json's `quantization_config`: how a checkpoint stores its weights
 * when not in float. Kiln reads transformers' fine-grained FP8 (`"fp8"`),
 * llm-compressor's `"compressed-tensors"`, `"gptq"` and NVIDIA's `"modelopt"`
 * FP8 checkpoints by dequantizing each weight as it loads it (as llama.cpp's
 * converter does), GPT-OSS's `"mxfp4"` experts in its own spec, and refuses
 * every other method by name instead of reading packed integers as floats.
 *
 * @module
 */

import type { CheckpointQuantization } from "../config.ts";
import { type ConfigReader, show } from "./reader.ts";

const READ = `"fp8", "compressed-tensors", "gptq" and "modelopt" (FP8)`;

/**
 * The storage `quantization_config` describes; undefined without one, or
 * for one its architecture reads itself (`handled`: GPT-OSS's `"mxfp4"`).
 * Any other method, or fields it cannot read, is a TypeError naming the field.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { checkpointQuantization } from "./quantization.ts";
 * const c = new ConfigReader({
 *   quantization_config: { quant_method: "fp8", weight_block_size: [128, 128] },
 * }, "config.json", "DeepseekV3ForCausalLM");
 * checkpointQuantization(c); // { method: "fp8", block: [128, 128], scaleFmt: "float" }
 * ```
 */
export function checkpointQuantization(
  c: ConfigReader,
  handled: readonly string[] = [],
): CheckpointQuantization | undefined {
  const q = c.raw("quantization_config");
  if (q === undefined) return undefined;
  if (typeof q !== "object" || Array.isArray(q)) {
    c.refuse("quantization_config", "expected an object with a quant_method");
  }
  const o = q as Record<string, unknown>;
  const method = o.quant_method;
  if (typeof method === "string" && handled.includes(method)) return undefined;
  const field = (name: string) => `${c.file}: field "quantization_config.${name}"`;
  const bad = (name: string, v: unknown, want: string): never => {
    throw new TypeError(`${field(name)} is ${show(v)}; Kiln reads ${want}`);
  };
  switch (method) {
    case "fp8":
      return fp8(o, field, bad);
    case "compressed-tensors":
      return compressed(o, bad);
    case "gptq": {
      const bits = o.bits;
      if (bits !== 2 && bits !== 4 && bits !== 8) bad("bits", bits, "2, 4 or 8 (as llama.cpp)");
      const group = o.group_size ?? -1;
      if (typeof group !== "number" || !Number.isInteger(group) || (group < 1 && group !== -1)) {
        bad("group_size", group, "a positive integer, or -1 for one group");
      }
      const fmt = o.checkpoint_format ?? "gptq";
      if (fmt !== "gptq" && fmt !== "gptq_v2") bad("checkpoint_format", fmt, '"gptq" or "gptq_v2"');
      return {
        method: "gptq",
        bits: bits as 2 | 4 | 8,
        groupSize: group as number,
        v2: fmt === "gptq_v2",
      };
    }
    case "modelopt": {
      const algo = o.quant_algo;
      if (algo !== undefined && algo !== "FP8") bad("quant_algo", algo, '"FP8"');
      return { method: "modelopt" };
    }
  }
  return c.refuse(
    "quantization_config",
    `Kiln reads float checkpoints and quant_method ${READ}${
      handled.length ? `, ${handled.map((m) => `"${m}"`).join(", ")}` : ""
    }, not ${show(method)}; a GGUF file of the model loads too`,
  );
}

type Bad = (name: string, v: unknown, want: string) => never;

function block(v: unknown, name: string, bad: Bad): [number, number] | undefined {
  if (v === undefined || v === null) return undefined;
  if (
    !Array.isArray(v) || v.length !== 2 ||
    !v.every((x) => typeof x === "number" && Number.isInteger(x) && x > 0 && x <= 1 << 20)
  ) {
    return bad(name, v, "two positive integers [rows, cols]");
  }
  return [v[0], v[1]];
}

function fp8(
  o: Record<string, unknown>,
  field: (name: string) => string,
  bad: Bad,
): CheckpointQuantization {
  // DeepSeek-V3 writes "e4m3", MiniMax-M2 torch's name for the same E4M3FN
  // ("float8_e4m3fn"); transformers reads neither, the tensors' dtype says it.
  if (o.fmt !== undefined && o.fmt !== null && o.fmt !== "e4m3" && o.fmt !== "float8_e4m3fn") {
    bad("fmt", o.fmt, 'FP8 weights in "e4m3" ("float8_e4m3fn")');
  }
  const scaleFmt = o.scale_fmt ?? "float";
  if (scaleFmt !== "float" && scaleFmt !== "ue8m0") {
    throw new TypeError(`${field("scale_fmt")} must be "float" or "ue8m0", got ${show(scaleFmt)}`);
  }
  const b = block(o.weight_block_size, "weight_block_size", bad);
  return b ? { method: "fp8", block: b, scaleFmt } : { method: "fp8", scaleFmt };
}

const FORMATS = ["float-quantized", "int-quantized", "naive-quantized", "pack-quantized"] as const;

function compressed(o: Record<string, unknown>, bad: Bad): CheckpointQuantization {
  const format = o.format;
  if (!FORMATS.includes(format as typeof FORMATS[number])) {
    bad("format", format, FORMATS.map((f) => `"${f}"`).join(", "));
  }
  const groups = o.config_groups;
  const list = typeof groups === "object" && groups !== null ? Object.values(groups) : [];
  if (list.length !== 1) {
    bad("config_groups", groups, "one config group (as llama.cpp's converter)");
  }
  const w = (list[0] as Record<string, unknown>)?.weights as Record<string, unknown> | undefined;
  if (typeof w !== "object" || w === null) bad("config_groups.*.weights", w, "an object");
  const bits = w!.num_bits;
  if (typeof bits !== "number" || !Number.isInteger(bits) || bits < 2 || bits > 8) {
    bad("config_groups.*.weights.num_bits", bits, "2 to 8");
  }
  const strategy = w!.strategy;
  const packed = format === "pack-quantized";
  const allowed = packed ? ["group", "channel"] : ["channel", "tensor", "block"];
  if (!allowed.includes(strategy as string)) {
    bad("config_groups.*.weights.strategy", strategy, allowed.map((s) => `"${s}"`).join(" or "));
  }
  if (format === "float-quantized" && (bits !== 8 || (w!.type ?? "float") !== "float")) {
    bad("config_groups.*.weights", w, "8-bit float weights (E4M3) when float-quantized");
  }
  const b = strategy === "block"
    ? block(w!.block_structure, "config_groups.*.weights.block_structure", bad)
    : undefined;
  if (strategy === "block" && !b) {
    bad("config_groups.*.weights.block_structure", undefined, "[rows, cols]");
  }
  let groupSize: number | undefined;
  if (packed && strategy === "group") {
    const g = w!.group_size;
    if (typeof g !== "number" || !Number.isInteger(g) || g < 1) {
      bad("config_groups.*.weights.group_size", g, "a positive integer");
    }
    groupSize = g as number;
  }
  return {
    method: "compressed-tensors",
    format: format as typeof FORMATS[number],
    bits: bits as number,
    ...(b ? { block: b } : {}),
    ...(groupSize !== undefined ? { groupSize } : {}),
  };
}
