/**
 * Writes a safetensors file (F32 and U32 tensors, in the order given, data
 * 8-byte aligned as the reference writer lays it out) — what a training
 * checkpoint's `model.safetensors` and `optimizer.safetensors` are — and reads
 * one back whole.
 *
 * @module
 */

import { SafetensorsFile } from "../safetensors/file.ts";

/**
 * One tensor to write.
 *
 * @example
 * ```ts
 * import type { NamedTensor } from "./safetensors_write.ts";
 * const t: NamedTensor = { name: "w", shape: [2, 2], data: new Float32Array(4) };
 * ```
 */
export interface NamedTensor {
  /** Tensor name in the file. */
  readonly name: string;
  /** Shape (row-major). */
  readonly shape: readonly number[];
  /** Values: Float32Array is stored F32, Uint32Array U32. */
  readonly data: Float32Array | Uint32Array;
}

/**
 * Writes `tensors` to `path` with `metadata` (string values), replacing the
 * file. A name given twice or data of the wrong size is a TypeError/RangeError
 * naming it.
 *
 * @example
 * ```ts ignore
 * await writeSafetensors("/tmp/x.safetensors", [{ name: "w", shape: [2], data: Float32Array.of(1, 2) }]);
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly NamedTensor[],
  metadata: Record<string, string> = { format: "pt" },
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    if (t.name in header) throw new TypeError(`writeSafetensors: tensor "${t.name}" given twice`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) {
      throw new RangeError(
        `writeSafetensors: tensor "${t.name}" has ${t.data.length} values for shape [${t.shape}]`,
      );
    }
    const dtype = t.data instanceof Uint32Array ? "U32" : "F32";
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + 4 * n] };
    offset += 4 * n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + head.length + offset);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(head.length), true);
  bytes.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors) {
    bytes.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  // Write beside, then rename: an interrupted save never leaves a torn checkpoint file.
  const tmp = `${path}.tmp`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}

/**
 * Reads every F32/U32 tensor of a safetensors file, by name.
 *
 * @example
 * ```ts ignore
 * const tensors = await readSafetensors("optimizer.safetensors");
 * tensors.get("train.step")?.data; // Uint32Array
 * ```
 */
export async function readSafetensors(path: string): Promise<Map<string, NamedTensor>> {
  const f = await SafetensorsFile.open(path);
  try {
    const out = new Map<string, NamedTensor>();
    for (const [name, info] of f.tensors) {
      if (info.dtype !== "F32" && info.dtype !== "U32") {
        throw new TypeError(`${path}: tensor "${name}" is ${info.dtype}; expected F32 or U32`);
      }
      const raw = await f.read(name);
      const copy = raw.slice().buffer;
      const data = info.dtype === "U32" ? new Uint32Array(copy) : new Float32Array(copy);
      out.set(name, { name, shape: info.shape, data });
    }
    return out;
  } finally {
    f.close();
  }
}
