/**
 * Quantized Hugging Face checkpoints seen as float ones: FP8 (transformers'
 * fine-grained, DeepSeek-V3's and the Qwen3 "-FP8" releases), llm-compressor's
 * compressed-tensors (FP8, INT8, packed INT4), GPTQ and ModelOpt FP8 (see
 * `CheckpointQuantization`). {@linkcode withDequantizedWeights} shows each
 * quantized weight as an F32 tensor under the name the float model uses,
 * dequantized when it is read (`dequant_formats.ts`), and hides the tensors
 * it is made of (scales, zero points, packed words, group indices) and the
 * activation and KV-cache scales a dequantized model does not use — as
 * transformers' `dequantize=True` and llama.cpp's converter load them.
 * Everything past it (fused parts, quantize-on-load, the expert scheduler)
 * sees floats.
 *
 * @module
 */

import type { CheckpointQuantization } from "../../models/config.ts";
import { overlay, type WeightInfo, type WeightSource } from "../weight_source.ts";
import type { ReadDType } from "../safetensors/dtypes.ts";
import {
  broadcasts,
  dequantGptq,
  scaleBlocks,
  scaleBroadcast,
  unpackCompressed,
} from "./dequant_formats.ts";

/** One float weight of the view: its shape, file, the stored tensors it hides, and how to read it. */
interface Recipe {
  readonly shape: readonly number[];
  readonly file: string;
  readonly parts: readonly string[];
  readonly read: () => Promise<Float32Array>;
}

/** Scales of static activations and KV caches, which a dequantized model does not use. */
const UNUSED =
  /\.(?:activation_scale|input_scale|input_zero_point|output_scale|output_zero_point|k_scale|v_scale|kv_scale)$/;

/**
 * `src` with each quantized weight read as f32 values under its float name,
 * and the tensors it is stored as hidden. A scale or packed tensor whose shape
 * disagrees with its weight is a RangeError naming both and the shape expected.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint } from "../safetensors/mod.ts";
 * import { withDequantizedWeights } from "./dequant_source.ts";
 * const w = await withDequantizedWeights(await Checkpoint.open("./Qwen3-30B-A3B-FP8"), {
 *   method: "fp8", block: [128, 128], scaleFmt: "float",
 * });
 * const q = await w.readAs("model.layers.0.self_attn.q_proj.weight", "f16");
 * ```
 */
export async function withDequantizedWeights<C extends WeightSource>(
  src: C,
  q: CheckpointQuantization,
): Promise<C> {
  const recipes = new Map<string, Recipe>();
  const hidden = new Set<string>();
  for (const name of src.tensors.keys()) {
    const r = await recipe(src, name, q);
    if (!r) continue;
    recipes.set(r[0], r[1]);
    for (const p of r[1].parts) hidden.add(p);
  }
  if (q.method !== "fp8") {
    for (const name of src.tensors.keys()) if (UNUSED.test(name)) hidden.add(name);
  } else {
    for (const w of recipes.keys()) {
      const base = w.replace(/\.weight$/, "");
      for (const a of ["activation_scale", "input_scale"]) {
        if (src.has(`${base}.${a}`)) hidden.add(`${base}.${a}`);
      }
    }
  }
  if (recipes.size === 0 && hidden.size === 0) return src;
  const tensors = new Map<string, WeightInfo>();
  let total = 0;
  const add = (info: WeightInfo) => {
    tensors.set(info.name, info);
    total += info.byteLength;
  };
  for (const [name, info] of src.tensors) {
    if (hidden.has(name) && !recipes.has(name)) continue;
    const r = recipes.get(name);
    if (!r) add(info);
  }
  for (const [name, r] of recipes) {
    add({ name, dtype: "F32", shape: r.shape, file: r.file, byteLength: count(r.shape) * 4 });
  }
  // Fused parts read a tensor in ranges: the last one dequantized for ranges is kept.
  let last: { name: string; values: Float32Array } | undefined;
  const cached = async (name: string, r: Recipe): Promise<Float32Array> => {
    if (last?.name !== name) last = { name, values: await r.read() };
    return last.values;
  };
  const known = (name: string): WeightInfo => {
    const info = tensors.get(name);
    if (info !== undefined) return info;
    if (hidden.has(name)) {
      throw new RangeError(
        `${src.path}: tensor "${name}" is part of a quantized weight, read with it`,
      );
    }
    return src.info(name); // the source's own error for a missing tensor
  };
  const asBytes = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const fill = (bytes: Uint8Array, into?: Uint8Array) => {
    if (!into) return bytes;
    into.set(bytes);
    return into;
  };
  return overlay(src, {
    tensors,
    totalBytes: total,
    has: (name: string) => tensors.has(name),
    info: known,
    async readAs(name: string, dtype: ReadDType) {
      known(name);
      const r = recipes.get(name);
      if (!r) return await src.readAs(name, dtype);
      // A fresh array each read (the caller owns it); f16 rounds the f32 value.
      const v = await r.read();
      return dtype === "f32" ? v : new Float16Array(v);
    },
    async readRaw(name: string, into?: Uint8Array) {
      known(name);
      const r = recipes.get(name);
      if (!r) return await src.readRaw(name, into);
      return fill(asBytes(await r.read()), into);
    },
    async readRange(name: string, start: number, length: number, into?: Uint8Array) {
      const info = known(name);
      const r = recipes.get(name);
      if (!r) {
        if (!src.readRange) throw new TypeError(`${src.path}: cannot read tensors in ranges`);
        return await src.readRange(name, start, length, into);
      }
      if (start < 0 || length < 0 || start + length > info.byteLength) {
        throw new RangeError(
          `${info.file}: bytes [${start}, ${
            start + length
          }) of tensor "${name}" are past its ${info.byteLength}`,
        );
      }
      return fill(asBytes(await cached(name, r)).subarray(start, start + length).slice(), into);
    },
  });
}

/** The float weight `name` starts, if it is a quantized weight's first tensor. */
async function recipe(
  src: WeightSource,
  name: string,
  q: CheckpointQuantization,
): Promise<[string, Recipe] | undefined> {
  if (q.method === "gptq") return name.endsWith(".qweight") ? gptq(src, name, q) : undefined;
  if (q.method === "compressed-tensors" && q.format === "pack-quantized") {
    return name.endsWith(".weight_packed") ? await packed(src, name, q) : undefined;
  }
  const scale = scaleOf(src, name, q);
  if (scale === undefined) return undefined;
  const w = src.info(name), s = src.info(scale);
  const zp = q.method === "compressed-tensors" && src.has(`${name}_zero_point`)
    ? `${name}_zero_point`
    : undefined;
  const block = q.method === "fp8"
    ? fp8Block(w, s, q.block)
    : q.method === "compressed-tensors"
    ? q.block
    : undefined;
  if (block) checkGrid(w, s, block);
  else if (!broadcasts(s.shape, w.shape)) mismatch(w, s, "does not broadcast against it");
  const read = async () => {
    const values = await src.readAs(name, "f32") as Float32Array;
    const scales = await readScales(src, scale);
    if (block && count(s.shape) > 1) scaleBlocks(values, w.shape, scales, block);
    else {
      const z = zp ? await src.readAs(zp, "f32") as Float32Array : undefined;
      scaleBroadcast(values, w.shape, scales, s.shape, z);
    }
    return values;
  };
  return [name, { shape: w.shape, file: w.file, parts: zp ? [scale, zp] : [scale], read }];
}

/** The scale tensor stored for weight `name` in this method's naming, if any. */
function scaleOf(src: WeightSource, name: string, q: CheckpointQuantization): string | undefined {
  if (/(?:_scale_inv|\.scale|_scale|_zero_point)$/.test(name)) return undefined;
  const base = name.endsWith(".weight") ? name.slice(0, -".weight".length) : undefined;
  const candidates = q.method === "fp8"
    ? base !== undefined ? [`${base}.weight_scale_inv`, `${base}.scale`] : [`${name}_scale_inv`]
    : base !== undefined
    ? [`${base}.weight_scale`]
    : [`${name}_scale`];
  return candidates.find((c) => src.has(c));
}

function mismatch(w: WeightInfo, s: WeightInfo, why: string): never {
  throw new RangeError(
    `${s.file}: scale tensor "${s.name}" has shape [${s.shape.join(", ")}], but weight ` +
      `"${w.name}" of shape [${w.shape.join(", ")}] ${why}`,
  );
}

/** FP8's block: the config's, else one that divides the grid (transformers' rule); none per tensor. */
function fp8Block(
  w: WeightInfo,
  s: WeightInfo,
  block: readonly [number, number] | undefined,
): readonly [number, number] | undefined {
  if (count(s.shape) === 1) return undefined;
  if (w.shape.length < 2) mismatch(w, s, "is not a matrix");
  if (block) return block;
  const [rows, cols] = w.shape.slice(-2);
  const [gr, gc] = s.shape.length >= 2 ? s.shape.slice(-2) : [0, 0];
  if (!(gr > 0 && gc > 0 && rows % gr === 0 && cols % gc === 0)) {
    mismatch(w, s, "does not divide into that grid (and config.json gives no weight_block_size)");
  }
  return [rows / gr, cols / gc];
}

function checkGrid(w: WeightInfo, s: WeightInfo, block: readonly [number, number]): void {
  if (count(s.shape) === 1) return;
  const [rows, cols] = w.shape.slice(-2);
  const want = [...w.shape.slice(0, -2), Math.ceil(rows / block[0]), Math.ceil(cols / block[1])];
  if (s.shape.length !== want.length || s.shape.some((d, i) => d !== want[i])) {
    mismatch(w, s, `in blocks of [${block.join(", ")}] needs [${want.join(", ")}]`);
  }
}

/** Scale values as factors: E8M0 exponents stored as bytes mean 2^(b − 127). */
async function readScales(src: WeightSource, name: string): Promise<Float32Array> {
  if (src.info(name).dtype === "U8") {
    return Float32Array.from(await src.readRaw(name), (b) => 2 ** (b - 127));
  }
  return await src.readAs(name, "f32") as Float32Array;
}

/** A tensor's stored 32-bit integers. */
async function int32s(src: WeightSource, name: string): Promise<Int32Array> {
  const info = src.info(name);
  if (info.dtype !== "I32" && info.dtype !== "U32") {
    throw new TypeError(
      `${info.file}: tensor "${name}" must be I32 (packed words), not ${info.dtype}`,
    );
  }
  const raw = await src.readRaw(name);
  return new Int32Array(raw.slice().buffer);
}

function need(src: WeightSource, name: string, of: string): WeightInfo {
  if (!src.has(name)) {
    throw new RangeError(`${src.path}: tensor "${of}" is stored without "${name}"`);
  }
  return src.info(name);
}

async function packed(
  src: WeightSource,
  name: string,
  q: Extract<CheckpointQuantization, { method: "compressed-tensors" }>,
): Promise<[string, Recipe]> {
  const base = name.slice(0, -"_packed".length);
  const scale = need(src, `${base}_scale`, name), shapeT = need(src, `${base}_shape`, name);
  const zp = src.has(`${base}_zero_point`) ? `${base}_zero_point` : undefined;
  const dims = [...await src.readAs(shapeT.name, "f32")].map(Math.round);
  if (dims.length !== 2) {
    throw new RangeError(`${shapeT.file}: tensor "${shapeT.name}" must hold [rows, cols]`);
  }
  const [rows, cols] = dims;
  const group = q.groupSize ?? cols;
  const w = src.info(name);
  const words = Math.ceil(cols / Math.floor(32 / q.bits));
  if (w.shape[0] !== rows || w.shape[1] !== words) {
    throw new RangeError(
      `${w.file}: tensor "${name}" has shape [${w.shape.join(", ")}], but ${rows}×${cols} ` +
        `${q.bits}-bit values need [${rows}, ${words}]`,
    );
  }
  const want = [rows, Math.ceil(cols / group)];
  if (scale.shape.length !== 2 || scale.shape[0] !== want[0] || scale.shape[1] !== want[1]) {
    mismatch(
      { ...w, name: base, shape: dims },
      scale,
      `in groups of ${group} needs [${want.join(", ")}]`,
    );
  }
  const read = async () =>
    unpackCompressed(
      await int32s(src, name),
      [rows, cols],
      await src.readAs(scale.name, "f32") as Float32Array,
      group,
      q.bits,
      zp ? await int32s(src, zp) : undefined,
    );
  const parts = [name, scale.name, shapeT.name, ...(zp ? [zp] : [])];
  return [base, { shape: [rows, cols], file: w.file, parts, read }];
}

function gptq(
  src: WeightSource,
  name: string,
  q: Extract<CheckpointQuantization, { method: "gptq" }>,
): [string, Recipe] {
  const base = name.slice(0, -".qweight".length);
  const qw = src.info(name);
  const qz = need(src, `${base}.qzeros`, name), sc = need(src, `${base}.scales`, name);
  const gi = src.has(`${base}.g_idx`) ? src.info(`${base}.g_idx`) : undefined;
  const pack = 32 / q.bits;
  const [rowsPacked, outputs] = qw.shape;
  const inputs = rowsPacked * pack;
  const groups = sc.shape[0];
  if (
    sc.shape[1] !== outputs || qz.shape[0] !== groups || qz.shape[1] !== Math.ceil(outputs / pack)
  ) {
    throw new RangeError(
      `${qw.file}: GPTQ tensors of "${base}" disagree: qweight [${qw.shape.join(", ")}], qzeros ` +
        `[${qz.shape.join(", ")}], scales [${sc.shape.join(", ")}] (${q.bits}-bit, ${pack} a word)`,
    );
  }
  const read = async () => {
    const gIdx = gi
      ? Int32Array.from(await src.readAs(gi.name, "f32"))
      : Int32Array.from({ length: inputs }, (_, i) =>
        Math.floor(i / (q.groupSize > 0 ? q.groupSize : inputs)));
    if (gIdx.length !== inputs || gIdx.some((g) => g < 0 || g >= groups)) {
      throw new RangeError(
        `${qw.file}: tensor "${base}.g_idx" must give each of ${inputs} inputs a group < ${groups}`,
      );
    }
    return dequantGptq(
      await int32s(src, name),
      await int32s(src, qz.name),
      await src.readAs(sc.name, "f32") as Float32Array,
      gIdx,
      inputs,
      outputs,
      q.bits,
      q.v2,
    );
  };
  const parts = [name, qz.name, sc.name, ...(gi ? [gi.name] : [])];
  return [`${base}.weight`, { shape: [outputs, inputs], file: qw.file, parts, read }];
}

function count(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
