/**
 * A streaming, validating reader and a writer for GGUF files (llama.cpp's
 * format: metadata, tensor infos, then aligned tensor data).
 *
 * Only the header is read when a file is opened — in chunks, since its size is
 * known only once parsed — and each tensor is later read by offset. The header
 * is checked completely at open time, so a bad file fails before any weight is
 * used:
 *
 * - `SyntaxError`: not a GGUF file (bad magic), a key or tensor name that is
 *   not UTF-8 or appears twice, a value type id outside GGUF's 13, a bool byte
 *   other than 0 or 1, arrays nested over 64 deep;
 * - `RangeError`: version 1, big-endian or unknown versions; counts, lengths
 *   and offsets that run past the file's end (checked before anything is
 *   allocated); a header over 256 MiB; 0 or more than 4 dimensions; a size ≤ 0;
 *   `ne0` not a whole number of blocks; an offset not a multiple of the
 *   alignment; tensors that overlap; a `general.alignment` that is not a power
 *   of two ≥ 8; a missing metadata key;
 * - `TypeError`: an unknown or unsupported tensor type (named, with the types
 *   Kiln reads), a `general.alignment` or other key of the wrong type, use after
 *   `close()`.
 *
 * Every message starts with the file's path and names the key or tensor, the
 * byte, and what was expected.
 *
 * Files: `file.ts` (the open file and its reads), `metadata.ts` (typed
 * getters), `header.ts` (header parsing and validation), `types.ts` (the format's shared
 * definitions), `decode.ts` (byte-level
 * reads), `encode.ts` (metadata value encoding), `layout.ts`
 * (the writer's checks and layout), `writer.ts` (to disk or
 * memory), `value.ts` (metadata values in memory).
 *
 * @example
 * ```ts ignore
 * import { GgufFile, writeGguf } from "./mod.ts";
 * await writeGguf("tiny.gguf", {
 *   metadata: { "general.architecture": { type: "string", value: "llama" } },
 *   tensors: [{ name: "output_norm.weight", shape: [8], type: "f32", data: new Uint8Array(32) }],
 * });
 * using f = await GgufFile.open("tiny.gguf");
 * f.string("general.architecture"); // "llama"
 * await f.readF32("output_norm.weight"); // Float32Array(8)
 * ```
 *
 * @module
 */

export { GgufFile, type GgufOpenOptions } from "./file.ts";
export { describeEntry, GgufMetadata } from "./metadata.ts";
export {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  type GgufHeader,
  type GgufTensorInfo,
  isGgufAlignment,
  SUPPORTED_GGML_TYPES,
} from "./types.ts";
export { GgufHeaderParser, parseGgufHeader } from "./header.ts";
export { MAX_ARRAY_DEPTH, MAX_GGUF_HEADER_BYTES } from "./decode.ts";
export {
  type GgufLayout,
  type GgufMetadataInput,
  type GgufTensorSpec,
  type GgufWriteSpec,
  layoutGguf,
} from "./layout.ts";
export { encodeGguf, writeGguf } from "./writer.ts";
export {
  GGUF_VALUE_TYPES,
  type GgufArray,
  type GgufEntry,
  type GgufValue,
  type GgufValueType,
} from "./value.ts";
