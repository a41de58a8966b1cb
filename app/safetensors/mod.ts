/**
 * A streaming, validating reader for safetensors files and Hugging Face model
 * folders (one `model.safetensors`, or `model.safetensors.index.json` + shards).
 *
 * Only the header is read when a file is opened; each tensor is later read by
 * offset, so a 90 GB checkpoint never has to fit in memory. Headers are checked
 * completely at open time, so a bad file fails before any weight is used:
 *
 * - `RangeError`: sizes and offsets (file too short, header length too big or
 *   past the end, spans out of the data or overlapping, byte count ≠ shape × dtype,
 *   an element count over 2^53, negative or non-integer numbers), a tensor in two
 *   shards;
 * - `SyntaxError`: a header or index that is not UTF-8 JSON of the right shape,
 *   or that names a tensor (or any key of one object) twice;
 * - `TypeError`: a field of the wrong type, an unknown dtype, a conversion that
 *   makes no sense (BOOL as float), use after `close()`;
 * - `Deno.errors.NotFound` / `IsADirectory` / `NotCapable`: a file or shard that
 *   is missing, a folder, or not readable with the permissions given.
 *
 * Every message starts with the file's path and names the tensor and the field
 * or byte range involved.
 *
 * Files: `checkpoint.ts` (a model folder, single or sharded), `file.ts` (one
 * file's offset reads), `header.ts` (header and index validation), `dtypes.ts`
 * (the dtypes a header may name), `convert.ts` (stored bytes to f32 / f16).
 *
 * @example
 * ```ts
 * import { Checkpoint } from "./mod.ts";
 * const ckpt = await Checkpoint.open("models/mamba-130m");
 * const norm = await ckpt.readF32("backbone.norm_f.weight");
 * ckpt.close();
 * ```
 *
 * @module
 */

export { Checkpoint, type CheckpointOptions, INDEX_FILE, SINGLE_FILE } from "./checkpoint.ts";
export { SafetensorsFile } from "./file.ts";
export { MAX_HEADER_BYTES, type TensorInfo } from "./header.ts";
export { dtypeSize, isSafeDType, type ReadDType, type SafeDType } from "./dtypes.ts";
export { bf16ToF32, convertTensor, f16ToF32, f32ToBf16, f32ToF16 } from "./convert.ts";
