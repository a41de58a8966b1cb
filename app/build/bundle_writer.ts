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
 * The bytes of a bundle holding `tensors`, in order: compressed tensor by
 * tensor, so only the compressed output is held besides the inputs.
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
  const deflate = new Deflate(
    { level: level as 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 },
    (chunk) => {
      parts.push(chunk);
    },
  );
  const entries: BundleEntry[] = [];
  let raw = 0;
  for (const t of tensors) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    entries.push({
      name: t.name,
      dtype: t.dtype,
      shape: [...t.shape],
      bytes: bytes.length,
      crc32: crc32(0, bytes),
    });
    raw += bytes.length;
    // fflate may keep a reference to the chunk until the next push: give it a copy.
    deflate.push(bytes.slice(), false);
  }
  deflate.push(new Uint8Array(0), true);
  const compressedBytes = parts.reduce((a, p) => a + p.length, 0);
  const head = bundlePrefix({ format: 1, tensors: entries, compressedBytes, rawBytes: raw });
  const out = new Uint8Array(head.length + compressedBytes);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
