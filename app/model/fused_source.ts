/**
 * Fused checkpoint tensors seen as their parts: a view of a
 * {@linkcode WeightSource} in which each fused tensor (Granite's
 * `input_linear`, the gate and up rows of every expert in one `[E, 2I, d]`
 * tensor; GPT-OSS's experts stacked, transposed and interleaved) is replaced
 * by the tensors Kiln reads. Parts one after another are each read as their
 * own byte range; packed parts ({@linkcode FusedPacking}) are gathered from
 * their block's bytes. The loader, the expert scheduler and the tools then
 * see one tensor per projection, as for every other family.
 *
 * A packed, transposed tensor may instead be stored as MXFP4 blocks, as the
 * published GPT-OSS checkpoints are (`<name>_blocks` `[groups, C·every, R/32,
 * 16]` u8 and `<name>_scales` `[groups, C·every, R/32]` u8, in the parts' own
 * `[C, R]` orientation): its parts are then MXFP4 tensors in ggml's block
 * layout, which the kernels read without a dequantized copy.
 *
 * @module
 */

import { type FusedPacking, type FusedTensor, readPart } from "../../models/architectures/mod.ts";
import { dequantize } from "../../core/quant/mod.ts";
import { convertTensor } from "../safetensors/convert.ts";
import type { ReadDType, SafeDType } from "../safetensors/dtypes.ts";
import { overlay, type WeightInfo, type WeightSource } from "../weight_source.ts";

const FLOATS: ReadonlySet<string> = new Set(["F32", "F16", "BF16"]);
const ELEM_BYTES: Readonly<Record<string, number>> = { F32: 4, F16: 2, BF16: 2 };

/** How one part's bytes come from its stored tensor. */
type PartRead =
  | { kind: "range"; source: string; start: number; bytes: number }
  | { kind: "packed"; fused: FusedTensor; k: number; group: number; el: number }
  | {
    kind: "mxfp4";
    blocks: string;
    scales: string;
    rows: number;
    cols: number;
    first: number;
    every: number;
  };

type RangeSource = WeightSource & Required<Pick<WeightSource, "readRange">>;

/**
 * `src` (a reader of byte ranges: safetensors) with every tensor of `fused` it
 * holds replaced by that tensor's parts.
 * A fused tensor that is missing while its parts are stored separately is
 * fine; missing both ways, of another shape, or stored quantized is an error
 * naming it, thrown here (before anything is read).
 *
 * @example
 * ```ts ignore
 * import { fusedTensors } from "../../models/architectures/mod.ts";
 * const w = withFusedParts(await Checkpoint.open(dir), fusedTensors(cfg));
 * await w.readAs("model.layers.0.shared_mlp.gate_proj.weight", "f32");
 * ```
 */
export function withFusedParts<C extends RangeSource>(src: C, fused: readonly FusedTensor[]): C {
  const partOf = new Map<string, PartRead>();
  const replaced = new Map<string, WeightInfo[]>();
  for (const f of fused) {
    if (!src.has(f.name)) {
      if (f.parts.every((p) => src.has(p))) continue;
      if (f.packing?.transposed && src.has(`${f.name}_blocks`)) {
        mxfp4Parts(src, f, f.packing, partOf, replaced);
        continue;
      }
      throw new RangeError(
        `${src.path}: tensor "${f.name}" is missing (expected shape [${f.shape.join(", ")}])`,
      );
    }
    const info = src.info(f.name);
    if (info.shape.join() !== f.shape.join()) {
      throw new RangeError(
        `${info.file}: tensor "${f.name}" has shape [${info.shape.join(", ")}], ` +
          `expected [${f.shape.join(", ")}]`,
      );
    }
    if (info.format !== undefined || !FLOATS.has(info.dtype)) {
      throw new TypeError(
        `${info.file}: tensor "${f.name}" is stored as ${info.dtype}; Kiln reads fused ` +
          `tensors stored as F32, F16 or BF16 only`,
      );
    }
    const bytes = info.byteLength / f.parts.length;
    const pk = f.packing;
    replaced.set(
      f.name,
      f.parts.map((name, k) => {
        if (pk) {
          const group = Math.floor(k / pk.every), el = ELEM_BYTES[info.dtype];
          partOf.set(name, { kind: "packed", fused: f, k, group, el });
        } else partOf.set(name, { kind: "range", source: f.name, start: k * bytes, bytes });
        return { name, dtype: info.dtype, shape: f.partShape, file: info.file, byteLength: bytes };
      }),
    );
  }
  if (replaced.size === 0) return src;
  const tensors = new Map<string, WeightInfo>();
  for (const [name, info] of src.tensors) {
    for (const t of replaced.get(name) ?? [info]) tensors.set(t.name, t);
  }
  const info = (name: string): WeightInfo => {
    const t = tensors.get(name);
    if (!t) throw new RangeError(`${src.path}: checkpoint has no tensor named "${name}"`);
    return t;
  };
  const readRaw = async (name: string, into?: Uint8Array): Promise<Uint8Array> => {
    const part = partOf.get(name);
    if (!part) return src.readRaw(name, into);
    if (part.kind === "range") return src.readRange(part.source, part.start, part.bytes, into);
    const out = part.kind === "packed"
      ? await readPacked(src, part)
      : await readMxfp4Part(src, part);
    if (!into) return out;
    into.set(out);
    return into.subarray(0, out.length);
  };
  return overlay(src, {
    tensors,
    has: (name) => tensors.has(name),
    info,
    readRaw,
    readAs: async (name: string, dtype: ReadDType) => {
      const part = partOf.get(name);
      if (!part) return src.readAs(name, dtype);
      const t = info(name);
      if (part.kind === "mxfp4") {
        const values = dequantize("mxfp4", await readRaw(name), part.rows * part.cols);
        return dtype === "f32" ? values : Float16Array.from(values);
      }
      return convertTensor(
        await readRaw(name),
        t.dtype as SafeDType,
        dtype,
        `${t.file}: tensor "${name}"`,
      );
    },
  });
}

/** A packed part: its group's bytes read once, its elements gathered (and transposed). */
async function readPacked(
  src: RangeSource,
  part: Extract<PartRead, { kind: "packed" }>,
): Promise<Uint8Array> {
  const { fused: f, group, el } = part;
  const pk = f.packing!;
  const n = f.partShape.reduce((a, b) => a * b, 1);
  const groupBytes = n * pk.every * el;
  const block = await src.readRange(f.name, group * groupBytes, groupBytes);
  // Aligned copies: readRange may hand back a view at any byte offset.
  const bytes = block.byteOffset % el === 0 ? block : block.slice();
  const words = (b: Uint8Array) =>
    el === 4
      ? new Uint32Array(b.buffer, b.byteOffset, b.length / 4)
      : new Uint16Array(b.buffer, b.byteOffset, b.length / 2);
  const out = new Uint8Array(n * el);
  // The group's block alone: the part index within it.
  readPart(f, words(bytes), part.k % pk.every, words(out));
  return out;
}

function mxfp4Parts(
  src: RangeSource,
  f: FusedTensor,
  pk: FusedPacking,
  partOf: Map<string, PartRead>,
  replaced: Map<string, WeightInfo[]>,
): void {
  const blocks = `${f.name}_blocks`, scales = `${f.name}_scales`;
  const [rows, cols] = f.partShape; // the part [C, R]: rows C, each R values
  if (!src.has(scales)) {
    throw new RangeError(`${src.path}: tensor "${blocks}" is stored without "${scales}"`);
  }
  if (cols % 32 !== 0) {
    throw new RangeError(
      `${src.path}: tensor "${blocks}": MXFP4 rows of ${cols} values are not whole 32-value blocks`,
    );
  }
  const nb = cols / 32;
  const want = {
    [blocks]: [pk.groups, rows * pk.every, nb, 16],
    [scales]: [pk.groups, rows * pk.every, nb],
  };
  for (const [name, shape] of Object.entries(want)) {
    const t = src.info(name);
    if (t.dtype !== "U8" || t.shape.join() !== shape.join()) {
      throw new RangeError(
        `${t.file}: tensor "${name}" is ${t.dtype} [${t.shape.join(", ")}], expected U8 ` +
          `[${shape.join(", ")}] (MXFP4 blocks of "${f.name}")`,
      );
    }
  }
  const file = src.info(blocks).file;
  const byteLength = rows * nb * 17;
  const infos = f.parts.map((name, k) => {
    const group = Math.floor(k / pk.every), p = k % pk.every;
    partOf.set(name, {
      kind: "mxfp4",
      blocks,
      scales,
      rows,
      cols,
      first: group * rows * pk.every + p,
      every: pk.every,
    });
    return { name, dtype: "MXFP4", format: "mxfp4" as const, shape: f.partShape, file, byteLength };
  });
  replaced.set(blocks, infos);
  replaced.set(scales, []);
}

/**
 * A part of MXFP4 blocks in ggml's layout: per 32 values one E8M0 scale byte,
 * then 16 bytes whose low nibbles are values 0–15 and high nibbles 16–31.
 * Hugging Face's blocks pack values 2i and 2i + 1 into byte i instead; the
 * scale byte is the same (ggml halves its value table and its scale).
 */
async function readMxfp4Part(
  src: RangeSource,
  part: Extract<PartRead, { kind: "mxfp4" }>,
): Promise<Uint8Array> {
  const nb = part.cols / 32, every = part.every;
  // The part's rows are every `every`-th of its group's: one read for the group.
  const first = part.first - (part.first % every);
  const span = part.rows * every;
  const q = await src.readRange(part.blocks, first * nb * 16, span * nb * 16);
  const s = await src.readRange(part.scales, first * nb, span * nb);
  const out = new Uint8Array(part.rows * nb * 17);
  const v = new Uint8Array(32);
  for (let row = 0; row < part.rows; row++) {
    const stored = (part.first % every) + row * every; // the row's index in the group
    for (let b = 0; b < nb; b++) {
      const qo = (stored * nb + b) * 16;
      for (let i = 0; i < 16; i++) {
        v[2 * i] = q[qo + i] & 15;
        v[2 * i + 1] = q[qo + i] >> 4;
      }
      const o = (row * nb + b) * 17;
      out[o] = s[stored * nb + b];
      for (let j = 0; j < 16; j++) out[o + 1 + j] = v[j] | (v[j + 16] << 4);
    }
  }
  return out;
}
