/**
 * Fused checkpoint tensors seen as their parts: a view of a
 * {@linkcode WeightSource} in which each fused tensor (Granite's
 * `input_linear`, the gate and up rows of every expert in one `[E, 2I, d]`
 * tensor) is replaced by the tensors Kiln reads, each read as its own byte
 * range. The loader, the expert scheduler and the tools then see one tensor per
 * projection, as for every other family.
 *
 * @module
 */

import type { FusedTensor } from "../../models/architectures/mod.ts";
import { convertTensor } from "../safetensors/convert.ts";
import type { ReadDType, SafeDType } from "../safetensors/dtypes.ts";
import { overlay, type WeightInfo, type WeightSource } from "../weight_source.ts";

const FLOATS: ReadonlySet<string> = new Set(["F32", "F16", "BF16"]);

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
export function withFusedParts<C extends WeightSource & Required<Pick<WeightSource, "readRange">>>(
  src: C,
  fused: readonly FusedTensor[],
): C {
  const partOf = new Map<string, { source: string; start: number; bytes: number }>();
  const replaced = new Map<string, WeightInfo[]>();
  for (const f of fused) {
    if (!src.has(f.name)) {
      if (f.parts.every((p) => src.has(p))) continue;
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
    replaced.set(
      f.name,
      f.parts.map((name, k) => {
        partOf.set(name, { source: f.name, start: k * bytes, bytes });
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
  const readRaw = (name: string, into?: Uint8Array): Promise<Uint8Array> => {
    const part = partOf.get(name);
    return part
      ? src.readRange(part.source, part.start, part.bytes, into)
      : src.readRaw(name, into);
  };
  return overlay(src, {
    tensors,
    has: (name) => tensors.has(name),
    info,
    readRaw,
    readAs: async (name: string, dtype: ReadDType) => {
      if (!partOf.has(name)) return src.readAs(name, dtype);
      const t = info(name);
      return convertTensor(
        await readRaw(name),
        t.dtype as SafeDType,
        dtype,
        `${t.file}: tensor "${name}"`,
      );
    },
  });
}
