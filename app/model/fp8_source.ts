/**
 * Fine-grained FP8 checkpoints (DeepSeek-V3's, the Qwen3 "-FP8" releases):
 * each quantized weight `W` is stored as E4M3 values with a scale tensor
 * beside it — `X.weight_scale_inv` for `X.weight` (`X.scale` in DeepSeek-V4's
 * naming), `W_scale_inv` for a stacked experts tensor — holding one factor per
 * block of the weight's last two dimensions. Despite its name the factor
 * multiplies: `W[i, j] = e4m3[i, j] · s[⌊i/R⌋, ⌊j/C⌋]`, the grid rounded up at
 * the edges as DeepSeek's own `weight_dequant` kernel reads it.
 *
 * {@linkcode withFp8Weights} shows such a checkpoint as float tensors: each
 * quantized weight is an F32 tensor dequantized when it is read, and its scale
 * (and the activation scales a static scheme stores, which a dequantized model
 * does not use) are not tensors of the view — as transformers'
 * `FineGrainedFP8Config(dequantize=True)` loads it. Everything past it (fused
 * parts, quantize-on-load, the expert scheduler) sees floats.
 *
 * @module
 */

import type { Fp8Storage } from "../../models/config.ts";
import { overlay, type WeightInfo, type WeightSource } from "../weight_source.ts";
import type { ReadDType } from "../safetensors/dtypes.ts";

/** One quantized weight of the view: its scale tensor and the block its scales cover. */
interface Fp8Weight {
  readonly scale: string;
  /** Rows × columns a scale covers; undefined: one scale for the tensor. */
  readonly block?: readonly [number, number];
  readonly stored: WeightInfo;
}

/** Tensors a static-activation FP8 checkpoint stores beside `X.weight` that dequantizing drops. */
const ACTIVATION_SCALES = ["activation_scale", "input_scale"];

/**
 * `src` with every weight that has an FP8 scale beside it read as f32 values
 * (dequantized as {@linkcode Fp8Storage} says) and the scale tensors hidden.
 * A scale whose shape is not the weight's block grid is a RangeError naming
 * both tensors and the shape expected.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint } from "../safetensors/mod.ts";
 * import { withFp8Weights } from "./fp8_source.ts";
 * const w = withFp8Weights(await Checkpoint.open("./Qwen3-30B-A3B-FP8"), { block: [128, 128], scaleFmt: "float" });
 * const q = await w.readAs("model.layers.0.self_attn.q_proj.weight", "f16");
 * ```
 */
export function withFp8Weights<C extends WeightSource>(src: C, fp8: Fp8Storage): C {
  const quantized = new Map<string, Fp8Weight>();
  const hidden = new Set<string>();
  for (const [name, info] of src.tensors) {
    const scale = scaleOf(src, name);
    if (scale === undefined) continue;
    quantized.set(name, { scale, block: blockOf(info, src.info(scale), fp8), stored: info });
    hidden.add(scale);
    const base = name.replace(/\.weight$/, "");
    for (const a of ACTIVATION_SCALES) if (src.has(`${base}.${a}`)) hidden.add(`${base}.${a}`);
  }
  if (quantized.size === 0) return src;
  const tensors = new Map<string, WeightInfo>();
  let total = 0;
  for (const [name, info] of src.tensors) {
    if (hidden.has(name)) continue;
    const q = quantized.get(name);
    const shown = q ? { ...info, dtype: "F32", byteLength: count(info.shape) * 4 } : info;
    tensors.set(name, shown);
    total += shown.byteLength;
  }
  const dequantized = async (name: string, q: Fp8Weight): Promise<Float32Array> => {
    const w = await src.readAs(name, "f32") as Float32Array;
    applyScales(w, q.stored.shape, await readScales(src, q.scale), q.block);
    return w;
  };
  // Fused parts read a tensor in ranges: the last one dequantized for ranges is kept.
  let last: { name: string; values: Float32Array } | undefined;
  const cached = async (name: string, q: Fp8Weight): Promise<Float32Array> => {
    if (last?.name !== name) last = { name, values: await dequantized(name, q) };
    return last.values;
  };
  const known = (name: string): WeightInfo => {
    const info = tensors.get(name);
    if (info === undefined) src.info(name); // the source's own error for a missing tensor
    if (info === undefined) {
      throw new RangeError(`${src.path}: tensor "${name}" is an FP8 scale, read with its weight`);
    }
    return info;
  };
  const asBytes = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return overlay(src, {
    tensors,
    totalBytes: total,
    has: (name: string) => tensors.has(name),
    info: known,
    async readAs(name: string, dtype: ReadDType) {
      known(name);
      const q = quantized.get(name);
      if (!q) return await src.readAs(name, dtype);
      // A fresh array each read (the caller owns it); f16 rounds the f32 product.
      const v = await dequantized(name, q);
      return dtype === "f32" ? v : new Float16Array(v);
    },
    async readRaw(name: string, into?: Uint8Array) {
      known(name);
      const q = quantized.get(name);
      if (!q) return await src.readRaw(name, into);
      const bytes = asBytes(await dequantized(name, q));
      if (!into) return bytes;
      into.set(bytes);
      return into;
    },
    async readRange(name: string, start: number, length: number, into?: Uint8Array) {
      const info = known(name);
      const q = quantized.get(name);
      if (!q) {
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
      const bytes = asBytes(await cached(name, q)).subarray(start, start + length);
      if (!into) return bytes.slice();
      into.set(bytes);
      return into;
    },
  });
}

/** The scale tensor stored for `name`, if any. */
function scaleOf(src: WeightSource, name: string): string | undefined {
  if (name.endsWith("_scale_inv") || name.endsWith(".scale")) return undefined;
  const base = name.endsWith(".weight") ? name.slice(0, -".weight".length) : undefined;
  const candidates = base !== undefined
    ? [`${base}.weight_scale_inv`, `${base}.scale`]
    : [`${name}_scale_inv`];
  return candidates.find((c) => src.has(c));
}

/** The block a weight's scales cover, checked against the scale tensor's shape. */
function blockOf(
  w: WeightInfo,
  s: WeightInfo,
  fp8: Fp8Storage,
): readonly [number, number] | undefined {
  if (count(s.shape) === 1) return undefined;
  const wrong = (why: string): never => {
    throw new RangeError(
      `${s.file}: FP8 scale tensor "${s.name}" has shape [${s.shape.join(", ")}], but weight ` +
        `"${w.name}" of shape [${w.shape.join(", ")}] ${why}`,
    );
  };
  if (w.shape.length < 2) wrong("is not a matrix");
  const lead = w.shape.slice(0, -2);
  const [rows, cols] = w.shape.slice(-2);
  let block = fp8.block;
  if (block === undefined) {
    // No weight_block_size: the block follows from the grid (transformers' rule).
    const [gr, gc] = s.shape.length >= 2 ? s.shape.slice(-2) : [0, 0];
    if (!(gr > 0 && gc > 0 && rows % gr === 0 && cols % gc === 0)) {
      wrong("does not divide into that grid (and config.json gives no weight_block_size)");
    }
    block = [rows / gr, cols / gc];
  }
  const want = [...lead, Math.ceil(rows / block[0]), Math.ceil(cols / block[1])];
  if (s.shape.length !== want.length || s.shape.some((d, i) => d !== want[i])) {
    wrong(`in blocks of [${block.join(", ")}] needs [${want.join(", ")}]`);
  }
  return block;
}

/** Scale values as factors: E8M0 exponents stored as bytes mean 2^(b − 127). */
async function readScales(src: WeightSource, name: string): Promise<Float32Array> {
  const info = src.info(name);
  if (info.dtype === "U8") {
    const raw = await src.readRaw(name);
    return Float32Array.from(raw, (b) => 2 ** (b - 127));
  }
  return await src.readAs(name, "f32") as Float32Array;
}

/** Multiplies `w` (`[...lead, rows, cols]`) in place by its block scales. */
function applyScales(
  w: Float32Array,
  shape: readonly number[],
  s: Float32Array,
  block: readonly [number, number] | undefined,
): void {
  if (block === undefined) {
    const f = s[0];
    for (let i = 0; i < w.length; i++) w[i] *= f;
    return;
  }
  const [rows, cols] = shape.slice(-2);
  const [br, bc] = block;
  const gr = Math.ceil(rows / br), gc = Math.ceil(cols / bc);
  const mats = rows * cols === 0 ? 0 : w.length / (rows * cols);
  for (let m = 0; m < mats; m++) {
    for (let i = 0; i < rows; i++) {
      const row = (m * rows + i) * cols;
      const srow = (m * gr + Math.floor(i / br)) * gc;
      for (let j = 0; j < cols; j++) w[row + j] *= s[srow + Math.floor(j / bc)];
    }
  }
}

function count(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
