/**
 * The GGUF format's shared definitions: the shapes a parsed header takes, the
 * magic, the default alignment and the alignments allowed, and the ggml types
 * Kiln reads. Shared by the reader and the writer.
 *
 * @module
 */

import { GGML_TYPES, type GgmlTypeInfo, QUANT_FORMATS } from "../../core/quant/formats.ts";
import type { GgufEntry } from "./value.ts";

/**
 * Where one tensor of a GGUF file lives and what it holds.
 *
 * @example
 * ```ts ignore
 * import { GgufFile, type GgufTensorInfo } from "./mod.ts";
 * const f = await GgufFile.open("./model.gguf");
 * const t: GgufTensorInfo = f.info("token_embd.weight");
 * console.log(t.type.name, t.shape, t.offset, t.bytes);
 * ```
 */
export interface GgufTensorInfo {
  /** Its name, e.g. `blk.0.attn_q.weight`. */
  readonly name: string;
  /** ggml's dimensions, `ne0` (the contiguous one) first. */
  readonly dims: readonly number[];
  /** Row-major shape (dims reversed), as PyTorch would show it. */
  readonly shape: readonly number[];
  /** Element type (always one Kiln reads: `type.supported`). */
  readonly type: GgmlTypeInfo;
  /** Absolute byte offset of its first byte in the file. */
  readonly offset: number;
  /** Its size in bytes. */
  readonly bytes: number;
}

/**
 * A validated GGUF header.
 *
 * @example
 * ```ts ignore
 * import type { GgufHeader } from "./types.ts";
 * import { parseGgufHeader } from "./header.ts";
 * const h: GgufHeader = parseGgufHeader("m.gguf", await Deno.readFile("m.gguf"));
 * console.log(h.version, h.alignment, h.dataOffset, [...h.tensors.keys()]);
 * ```
 */
export interface GgufHeader {
  /** Format version. */
  readonly version: 2 | 3;
  /** Metadata in file order, with each value's stored type. */
  readonly entries: ReadonlyMap<string, GgufEntry>;
  /** Tensors in file order. */
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  /** `general.alignment`, or 32. */
  readonly alignment: number;
  /** Absolute offset of the tensor data (the end of the header, aligned). */
  readonly dataOffset: number;
}

/**
 * GGUF's default alignment, used when `general.alignment` is absent.
 *
 * @example
 * ```ts
 * import { GGUF_DEFAULT_ALIGNMENT } from "./types.ts";
 * GGUF_DEFAULT_ALIGNMENT; // 32
 * ```
 */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/**
 * The four bytes every GGUF file starts with: `GGUF`.
 *
 * @example
 * ```ts
 * import { GGUF_MAGIC } from "./types.ts";
 * new TextDecoder().decode(GGUF_MAGIC); // "GGUF"
 * ```
 */
export const GGUF_MAGIC: Uint8Array = new Uint8Array([0x47, 0x47, 0x55, 0x46]);

/**
 * The ggml types Kiln reads, as a list for messages.
 *
 * @example
 * ```ts
 * import { SUPPORTED_GGML_TYPES } from "./types.ts";
 * SUPPORTED_GGML_TYPES.includes("q4_k"); // true
 * ```
 */
export const SUPPORTED_GGML_TYPES: string = [
  ...Object.values(GGML_TYPES).filter((t) => t.supported && t.blockElems === 1).map((t) => t.name),
  ...QUANT_FORMATS,
].join(", ");

/**
 * True when `n` is an alignment GGUF allows: the spec asks for a multiple of 8,
 * and llama.cpp for a power of two (it rounds offsets with a mask).
 *
 * @example
 * ```ts
 * import { isGgufAlignment } from "./types.ts";
 * isGgufAlignment(64); // true
 * isGgufAlignment(24); // false
 * ```
 */
export function isGgufAlignment(n: number): boolean {
  return Number.isInteger(n) && n >= 8 && n <= 2 ** 31 && (n & (n - 1)) === 0;
}

// A tensor info takes at least a u64 name length, u32 dimension count, one u64
// dimension, u32 type and u64 offset; a metadata pair a u64 key length, a u32
