/**
 * Writes a weight bundle (the format `runtime/bundle.ts` reads): parameters
 * compressed into one file beside an ahead-of-time module.
 *
 * @module
 */

import { Deflate } from "fflate";
import type { DType, HostArray } from "../../core/dtype.ts";
import { type BundleEntry, bundlePrefix, crc32 } from "../../runtime/bundle.ts";

/**
 * One tensor to pack.
 *
 * @example
 * ```ts
 * import type { BundleTensor } from "./bundle_writer.ts";
 * const t: BundleTensor = { name: "w", dtype: "f32", shape: [2], data: new Float32Array(2) };
 * ```
 */
export interface BundleTensor {
  /** Parameter name. */
  readonly name: string;
  /** Element type (the data's). */
  readonly dtype: DType;
  /** Shape. */
  readonly shape: readonly number[];
  /** Elements. */
  readonly data: HostArray;
}

/**
 * Smallest saving for which a bundle keeps its payload compressed: below it the
 * payload is stored raw, since inflating costs load time (~10 ms a MiB in JS)
 * for little disk (random or well-trained weights compress by a few percent).
 */
export const MIN_DEFLATE_SAVING = 0.1;

/**
 * The bytes of a bundle holding `tensors`, in order: compressed tensor by
 * tensor, so only the compressed output is held besides the inputs. When
 * DEFLATE saves less than {@linkcode MIN_DEFLATE_SAVING} of the raw bytes (or
 * `level` is 0) the payload is stored raw instead.
 *
 * @example
 * ```ts
 * import { encodeBundle } from "./bundle_writer.ts";
 * const bytes = encodeBundle([{ name: "w", dtype: "f32", shape: [2], data: new Float32Array(2) }]);
 * bytes.length > 16; // true
 * ```
 */
export function encodeBundle(tensors: readonly BundleTensor[], level = 6): Uint8Array {
  const parts: Uint8Array[] = [];
  const views = tensors.map((t) =>
    new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)
  );
  const deflate = new Deflate(
    { level: level as 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 },
    (chunk) => {
      parts.push(chunk);
    },
  );
  const entries: BundleEntry[] = [];
  let raw = 0;
  for (const [i, t] of tensors.entries()) {
    const bytes = views[i];
    entries.push({
      name: t.name,
      dtype: t.dtype,
      shape: [...t.shape],
      bytes: bytes.length,
      crc32: crc32(0, bytes),
    });
    raw += bytes.length;
    // fflate may keep a reference to the chunk until the next push: give it a copy.
    if (level > 0) deflate.push(bytes.slice(), false);
  }
  deflate.push(new Uint8Array(0), true);
  let compressedBytes = parts.reduce((a, p) => a + p.length, 0);
  const stored = level === 0 || compressedBytes > (1 - MIN_DEFLATE_SAVING) * raw;
  if (stored) {
    parts.splice(0, parts.length, ...views);
    compressedBytes = raw;
  }
  const head = bundlePrefix({
    format: 1,
    tensors: entries,
    compressedBytes,
    rawBytes: raw,
    ...(stored ? { payload: "stored" as const } : {}),
  });
  const out = new Uint8Array(head.length + compressedBytes);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
