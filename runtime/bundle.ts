/**
 * Weight bundles: a prebuilt module's parameters packed into one compressed
 * file beside it, verified and streamed on load.
 *
 * Layout: the magic `KILNWB\0\1`; the header's byte length and its CRC-32
 * (u32 little-endian each); the header, JSON naming every tensor with its
 * dtype, shape, byte size and CRC-32, and the payload's compressed and raw
 * sizes; then the payload: one DEFLATE stream of the tensors' little-endian
 * bytes in header order, or those bytes as they are (`payload: "stored"`, for
 * weights that barely compress: nothing to inflate on load). The reader
 * inflates as bytes arrive and hands each
 * tensor over as soon as it is complete and verified, so the whole payload is
 * never held at once.
 *
 * @module
 */

// A full specifier, not the import map: an emitted module imports this file from
// anywhere, with or without Kiln's deno.json.
// deno-lint-ignore no-import-prefix
import { Inflate } from "npm:fflate@0.8.3";
import { allocHost, byteSize, type DType, type HostArray } from "../core/dtype.ts";

/**
 * The first bytes of every bundle.
 *
 * @example
 * ```ts
 * import { BUNDLE_MAGIC } from "@kiln/kiln/runtime";
 * new TextDecoder().decode(BUNDLE_MAGIC.subarray(0, 6)); // "KILNWB"
 * ```
 */
export const BUNDLE_MAGIC: Uint8Array = new Uint8Array([75, 73, 76, 78, 87, 66, 0, 1]);

/** Bytes before the header: magic, header length, header CRC-32. */
const PREFIX = BUNDLE_MAGIC.length + 8;

/**
 * One tensor of a bundle, as its header lists it.
 *
 * @example
 * ```ts
 * import type { BundleEntry } from "@kiln/kiln/runtime";
 * const e: BundleEntry = { name: "w", dtype: "f32", shape: [2], bytes: 8, crc32: 0 };
 * ```
 */
export interface BundleEntry {
  /** Parameter name. */
  readonly name: string;
  /** Element type. */
  readonly dtype: DType;
  /** Shape. */
  readonly shape: readonly number[];
  /** Raw byte size. */
  readonly bytes: number;
  /** CRC-32 of the raw bytes. */
  readonly crc32: number;
}

/**
 * A bundle's header.
 *
 * @example
 * ```ts
 * import type { BundleHeader } from "@kiln/kiln/runtime";
 * const names = (h: BundleHeader) => h.tensors.map((t) => t.name);
 * ```
 */
export interface BundleHeader {
  /** Format version (1). */
  readonly format: 1;
  /** Tensors in payload order. */
  readonly tensors: readonly BundleEntry[];
  /** Payload bytes as stored (compressed, or equal to `rawBytes` when stored raw). */
  readonly compressedBytes: number;
  /** Raw payload bytes (the sum of the tensors'). */
  readonly rawBytes: number;
  /**
   * How the payload is stored: one DEFLATE stream (the default when absent), or
   * the raw bytes (`"stored"`: weights that barely compress, read without inflating).
   */
  readonly payload?: "deflate" | "stored";
}

// Slicing-by-8 tables: TABLES[k][n] is the CRC of byte n followed by k zero bytes.
let tables: Uint32Array[] | undefined;

function crcTables(): Uint32Array[] {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[0][n] = c >>> 0;
  }
  for (let k = 1; k < 8; k++) {
    for (let n = 0; n < 256; n++) t[k][n] = (t[k - 1][n] >>> 8) ^ t[0][t[k - 1][n] & 0xff];
  }
  return t;
}

/**
 * Updates a CRC-32 (IEEE, as zip and PNG use) with `bytes`; start from 0.
 * Eight bytes a step (slicing-by-8): a bundle's checksums are on the load path.
 *
 * @example
 * ```ts
 * import { crc32 } from "@kiln/kiln/runtime";
 * crc32(0, new TextEncoder().encode("123456789")).toString(16); // "cbf43926"
 * ```
 */
export function crc32(crc: number, bytes: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = tables ??= crcTables();
  let c = ~crc >>> 0;
  const n = bytes.length, end8 = n - (n & 7);
  let i = 0;
  for (; i < end8; i += 8) {
    c ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    c = t7[c & 0xff] ^ t6[(c >>> 8) & 0xff] ^ t5[(c >>> 16) & 0xff] ^ t4[c >>> 24] ^
      t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < n; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The bytes of a bundle's header section (magic, lengths, header JSON), to be
 * followed by the compressed payload.
 *
 * @example
 * ```ts
 * import { bundlePrefix } from "@kiln/kiln/runtime";
 * const head = bundlePrefix({ format: 1, tensors: [], compressedBytes: 2, rawBytes: 0 });
 * head.length > 16; // true
 * ```
 */
export function bundlePrefix(header: BundleHeader): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(PREFIX + json.length);
  out.set(BUNDLE_MAGIC);
  const view = new DataView(out.buffer);
  view.setUint32(BUNDLE_MAGIC.length, json.length, true);
  view.setUint32(BUNDLE_MAGIC.length + 4, crc32(0, json), true);
  out.set(json, PREFIX);
  return out;
}

/**
 * Where a bundle comes from: its bytes, or a stream of them (a `fetch`
 * response's body, a file's readable).
 *
 * @example
 * ```ts
 * import type { BundleSource } from "@kiln/kiln/runtime";
 * const src: BundleSource = new Uint8Array(0);
 * ```
 */
export type BundleSource = Uint8Array | ReadableStream<Uint8Array>;

/**
 * Options of {@linkcode readBundle}.
 *
 * @example
 * ```ts
 * import type { ReadBundleOptions } from "@kiln/kiln/runtime";
 * const options: ReadBundleOptions = { name: "mlp.kwb", onTensor: (e, data) => {} };
 * ```
 */
export interface ReadBundleOptions {
  /** The bundle's file name or URL, for error messages. */
  readonly name: string;
  /** Its total size in bytes, when known: checked against the header before inflating. */
  readonly size?: number;
  /** Receives each tensor once it is complete and its checksum verified. */
  readonly onTensor: (entry: BundleEntry, data: HostArray) => void | Promise<void>;
}

/** Reads exactly the bytes asked for from a chunk stream, keeping the rest. */
class Chunks {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array = new Uint8Array(0);
  /** Bytes handed out so far. */
  consumed = 0;
  constructor(source: BundleSource) {
    const stream = source instanceof Uint8Array
      ? new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(source);
          c.close();
        },
      })
      : source;
    this.#reader = stream.getReader();
  }
  /** The next `n` bytes, or fewer when the stream ends first. */
  async take(n: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let have = 0;
    while (have < n) {
      if (!this.#pending.length) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        this.#pending = value;
        continue;
      }
      const part = this.#pending.subarray(0, n - have);
      this.#pending = this.#pending.subarray(part.length);
      parts.push(part);
      have += part.length;
    }
    this.consumed += have;
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(have);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  /** The next chunk as it arrived (up to `max` bytes, not copied), or undefined at the end. */
  async next(max: number): Promise<Uint8Array | undefined> {
    while (!this.#pending.length) {
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#pending = value;
    }
    const c = this.#pending.subarray(0, max);
    this.#pending = this.#pending.subarray(c.length);
    this.consumed += c.length;
    return c;
  }
  cancel(): Promise<void> {
    return this.#reader.cancel();
  }
}

const DTYPES: readonly string[] = ["f32", "f16", "i32", "u32"];

function checkHeader(h: BundleHeader, fail: (what: string) => Error): void {
  if (h?.format !== 1) throw fail(`header: format ${h?.format}, expected 1`);
  if (!Array.isArray(h.tensors)) throw fail("header: no tensor list");
  let raw = 0;
  for (const t of h.tensors) {
    if (typeof t?.name !== "string" || !DTYPES.includes(t.dtype) || !Array.isArray(t.shape)) {
      throw fail(`header: malformed tensor entry ${JSON.stringify(t)}`);
    }
    const n = t.shape.reduce((a: number, b: number) => a * b, 1);
    if (t.bytes !== n * byteSize(t.dtype)) {
      throw fail(`header: tensor "${t.name}" says ${t.bytes} bytes for ${t.dtype} [${t.shape}]`);
    }
    raw += t.bytes;
  }
  if (raw !== h.rawBytes) {
    throw fail(`header: tensors total ${raw} bytes, header says ${h.rawBytes}`);
  }
  if (h.payload !== undefined && h.payload !== "deflate" && h.payload !== "stored") {
    throw fail(`header: payload ${JSON.stringify(h.payload)}, expected "deflate" or "stored"`);
  }
  if (h.payload === "stored" && h.compressedBytes !== h.rawBytes) {
    throw fail(
      `header: a stored payload of ${h.rawBytes} bytes, header says ${h.compressedBytes} stored`,
    );
  }
}

/**
 * Reads a weight bundle, verifying as it goes: the magic, the header's
 * checksum and consistency, the file's size (when `size` is given, before
 * inflating), each tensor's size and CRC-32, and that the payload ends where
 * the header says. Any failure is an Error naming the bundle and what failed.
 *
 * @example
 * ```ts ignore
 * import { readBundle } from "@kiln/kiln/runtime";
 * const res = await fetch(new URL("./mlp.kwb", import.meta.url));
 * await readBundle(res.body!, {
 *   name: "mlp.kwb",
 *   onTensor: (entry, data) => exe.setParams({ [entry.name]: data }),
 * });
 * ```
 */
export async function readBundle(
  source: BundleSource,
  options: ReadBundleOptions,
): Promise<BundleHeader> {
  const fail = (what: string) => new Error(`Weight bundle ${options.name}: ${what}`);
  const input = new Chunks(source);
  try {
    const prefix = await input.take(PREFIX);
    const magic = prefix.subarray(0, BUNDLE_MAGIC.length);
    if (prefix.length < PREFIX || magic.some((b, i) => b !== BUNDLE_MAGIC[i])) {
      throw fail(
        prefix.length < PREFIX && magic.every((b, i) => b === BUNDLE_MAGIC[i])
          ? `truncated: ${prefix.length} bytes, shorter than its ${PREFIX}-byte prefix`
          : "not a Kiln weight bundle (bad magic bytes)",
      );
    }
    const view = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
    const headerBytes = view.getUint32(BUNDLE_MAGIC.length, true);
    const json = await input.take(headerBytes);
    if (json.length < headerBytes) {
      throw fail(`truncated: the header needs ${headerBytes} bytes, only ${json.length} remain`);
    }
    if (crc32(0, json) !== view.getUint32(BUNDLE_MAGIC.length + 4, true)) {
      throw fail("header checksum mismatch (the header is corrupted)");
    }
    let header: BundleHeader;
    try {
      header = JSON.parse(new TextDecoder().decode(json));
    } catch (e) {
      throw fail(`header is not valid JSON (${(e as Error).message})`);
    }
    checkHeader(header, fail);
    const total = PREFIX + headerBytes + header.compressedBytes;
    if (options.size !== undefined && options.size !== total) {
      throw fail(
        `${options.size < total ? "truncated" : "too long"}: ${options.size} bytes, ` +
          `its header says ${total}`,
      );
    }
    await inflateTensors(input, header, total, options, fail);
    return header;
  } catch (e) {
    await input.cancel().catch(() => {});
    throw e;
  }
}

async function inflateTensors(
  input: Chunks,
  header: BundleHeader,
  total: number,
  options: ReadBundleOptions,
  fail: (what: string) => Error,
): Promise<void> {
  let index = 0;
  let current: { data: HostArray; bytes: Uint8Array; at: number } | undefined;
  const ready: [BundleEntry, HostArray][] = [];
  const start = () => {
    const e = header.tensors[index];
    if (!e) return (current = undefined);
    const data = allocHost(e.dtype, e.shape.reduce((a, b) => a * b, 1));
    current = { data, bytes: new Uint8Array(data.buffer), at: 0 };
  };
  start();
  const accept = (chunk: Uint8Array) => {
    let off = 0;
    while (off < chunk.length) {
      if (!current) {
        throw fail(`payload inflates past the ${header.rawBytes} bytes its header says`);
      }
      const n = Math.min(chunk.length - off, current.bytes.length - current.at);
      current.bytes.set(chunk.subarray(off, off + n), current.at);
      current.at += n;
      off += n;
      if (current.at === current.bytes.length) {
        const e = header.tensors[index];
        if (crc32(0, current.bytes) !== e.crc32) {
          throw fail(`tensor "${e.name}" checksum mismatch (the payload is corrupted)`);
        }
        ready.push([e, current.data]);
        index++;
        start();
      }
    }
  };
  const stored = header.payload === "stored";
  const inflate = stored ? undefined : new Inflate(accept);
  // Tensors of zero bytes are complete before any payload arrives.
  const flushEmpty = () => {
    while (current && current.bytes.length === 0) {
      ready.push([header.tensors[index], current.data]);
      index++;
      start();
    }
  };
  flushEmpty();
  let left = header.compressedBytes;
  while (left > 0) {
    const chunk = await input.next(left);
    if (!chunk) {
      throw fail(
        `truncated: ${input.consumed} bytes, its header says ${total} ` +
          `(${header.compressedBytes - left} of ${header.compressedBytes} payload bytes)`,
      );
    }
    left -= chunk.length;
    try {
      if (inflate) inflate.push(chunk, left === 0);
      else accept(chunk);
    } catch (e) {
      if ((e as Error).message.startsWith("Weight bundle")) throw e;
      throw fail(`payload is corrupted (inflate: ${(e as Error).message})`);
    }
    flushEmpty();
    for (const [e, data] of ready.splice(0)) await options.onTensor(e, data);
  }
  if (current) {
    throw fail(
      `payload ends inside tensor "${header.tensors[index].name}" ` +
        `(${current.at} of ${current.bytes.length} bytes)`,
    );
  }
  if (await input.next(1)) throw fail(`too long: bytes follow the ${total} its header says`);
}
