/**
 * The GGUF writer's plan: tensor specs checked against their types' block
 * geometry, metadata encoded, and each tensor's offset and padding laid out —
 * shared by the file writer and the in-memory encoder.
 *
 * @module
 */

import { GGML_TYPES, type GgmlTypeInfo, type GgmlTypeName } from "../../core/quant/formats.ts";
import { quote } from "../safetensors/header.ts";
import { metadataLabel } from "./decode.ts";
import { ByteSink, describe, encodeValue } from "./encode.ts";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, isGgufAlignment } from "./types.ts";
import { GGUF_VALUE_TYPES, type GgufEntry } from "./value.ts";

/**
 * One tensor to write: its row-major shape (as PyTorch shows it; GGUF stores
 * it reversed), its ggml type, and its bytes — or a function giving them, so a
 * converter can produce tensors one at a time while the file is written.
 *
 * @example
 * ```ts
 * import type { GgufTensorSpec } from "./layout.ts";
 * const t: GgufTensorSpec = { name: "output_norm.weight", shape: [4], type: "f32", data: new Uint8Array(16) };
 * ```
 */
export interface GgufTensorSpec {
  /** Its name (at most 63 UTF-8 bytes, as llama.cpp requires). */
  readonly name: string;
  /** Row-major shape, 1 to 4 positive sizes; the last must fill whole blocks. */
  readonly shape: readonly number[];
  /** ggml type. */
  readonly type: GgmlTypeName;
  /** Its bytes, exactly as many as `type` needs for `shape`. */
  readonly data: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

/**
 * Metadata to write: pairs in order, a record, or a map (such as a read file's
 * `entries`).
 *
 * @example
 * ```ts
 * import type { GgufMetadataInput } from "./layout.ts";
 * const m: GgufMetadataInput = { "general.architecture": { type: "string", value: "llama" } };
 * ```
 */
export type GgufMetadataInput =
  | ReadonlyArray<readonly [string, GgufEntry]>
  | Readonly<Record<string, GgufEntry>>
  | ReadonlyMap<string, GgufEntry>;

/**
 * What to write: metadata, tensors (in file order), the alignment (written as
 * `general.alignment` when not 32) and the version.
 *
 * @example
 * ```ts
 * import type { GgufWriteSpec } from "./layout.ts";
 * const spec: GgufWriteSpec = { metadata: [["general.name", { type: "string", value: "tiny" }]], tensors: [] };
 * ```
 */
export interface GgufWriteSpec {
  /** Metadata pairs. */
  readonly metadata: GgufMetadataInput;
  /** Tensors, in the order their data is laid out. */
  readonly tensors: ReadonlyArray<GgufTensorSpec>;
  /** Alignment of the tensor data: a power of two, at least 8; default 32. */
  readonly alignment?: number;
  /** GGUF version to write; default 3. */
  readonly version?: 2 | 3;
}

/**
 * A planned file: the header bytes (padded to the data's start) and where each
 * tensor goes.
 *
 * @example
 * ```ts
 * import { layoutGguf, type GgufLayout } from "./layout.ts";
 * const plan: GgufLayout = layoutGguf("m.gguf", { metadata: {}, tensors: [] });
 * plan.header.length % 32; // 0
 * ```
 */
export interface GgufLayout {
  /** Magic to tensor infos, zero-padded to the alignment. */
  readonly header: Uint8Array;
  /** Each tensor with its offset from the data's start and its size in bytes. */
  readonly tensors: ReadonlyArray<{ spec: GgufTensorSpec; offset: number; bytes: number }>;
  /** The alignment used. */
  readonly alignment: number;
  /** The whole file's size, each tensor padded to the alignment. */
  readonly size: number;
}

const UTF8 = new TextEncoder();

/** The metadata input as pairs, in order. */
function pairs(metadata: GgufMetadataInput): ReadonlyArray<readonly [string, GgufEntry]> {
  if (Array.isArray(metadata)) return metadata;
  if (metadata instanceof Map) return [...metadata];
  return Object.entries(metadata as Record<string, GgufEntry>);
}

/**
 * Checks `spec` and plans the file: header bytes, tensor offsets, size. Wrong
 * types are `TypeError`s; out-of-range values, bad shapes, data of the wrong
 * length and repeated keys or names are `RangeError`s; each names `file`, the
 * key or tensor, and what was expected.
 *
 * @example
 * ```ts
 * import { layoutGguf } from "./layout.ts";
 * const plan = layoutGguf("m.gguf", {
 *   metadata: { "general.architecture": { type: "string", value: "llama" } },
 *   tensors: [{ name: "w", shape: [2, 32], type: "q8_0", data: new Uint8Array(68) }],
 * });
 * plan.tensors[0].bytes; // 68
 * ```
 */
export function layoutGguf(file: string, spec: GgufWriteSpec): GgufLayout {
  const version = spec.version ?? 3;
  if (version !== 2 && version !== 3) {
    throw new RangeError(`${file}: GGUF version ${version} cannot be written, expected 2 or 3`);
  }
  const entries = [...pairs(spec.metadata)];
  const given = entries.find(([k]) => k === "general.alignment")?.[1];
  let alignment = spec.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (given) {
    if (given.type !== "u32" || typeof given.value !== "number") {
      throw new TypeError(
        `${file}: metadata "general.alignment" is ${given.type} ${describe(given.value)}, ` +
          `expected a u32`,
      );
    }
    if (spec.alignment !== undefined && spec.alignment !== given.value) {
      throw new RangeError(
        `${file}: metadata "general.alignment" is ${given.value} but the alignment option is ` +
          `${spec.alignment}; expected them to agree`,
      );
    }
    alignment = given.value;
  } else if (alignment !== GGUF_DEFAULT_ALIGNMENT) {
    // Readers assume 32 unless told otherwise.
    entries.push(["general.alignment", { type: "u32", value: alignment }]);
  }
  if (!isGgufAlignment(alignment)) {
    throw new RangeError(
      `${file}: alignment ${alignment} is not a power of two that is a multiple of 8 (e.g. 32)`,
    );
  }
  const sink = new ByteSink();
  sink.bytes(GGUF_MAGIC);
  sink.u32(version);
  sink.u64(BigInt(spec.tensors.length));
  sink.u64(BigInt(entries.length));
  const keys = new Set<string>();
  for (const [key, entry] of entries) {
    if (typeof key !== "string" || key === "") {
      throw new TypeError(
        `${file}: a metadata key is ${describe(key)}, expected a non-empty string`,
      );
    }
    const what = metadataLabel(key);
    if (keys.has(key)) throw new RangeError(`${file}: ${what} appears twice; keys must be unique`);
    keys.add(key);
    const id = GGUF_VALUE_TYPES.indexOf(entry?.type);
    if (id < 0) {
      throw new TypeError(
        `${file}: ${what} has type ${describe(entry?.type)}, expected one of ` +
          GGUF_VALUE_TYPES.join(", "),
      );
    }
    sink.string(key);
    sink.u32(id);
    encodeValue(sink, file, entry.type, entry.value, what, 0);
  }
  const names = new Set<string>();
  const tensors: { spec: GgufTensorSpec; offset: number; bytes: number }[] = [];
  let offset = 0;
  for (const t of spec.tensors) {
    const { type, dims, bytes } = checkTensor(file, t, names);
    sink.string(t.name);
    sink.u32(dims.length);
    for (const d of dims) sink.u64(BigInt(d));
    sink.u32(type.id);
    sink.u64(BigInt(offset));
    tensors.push({ spec: t, offset, bytes });
    offset += Math.ceil(bytes / alignment) * alignment;
  }
  const header = sink.finish(alignment);
  return { header, tensors, alignment, size: header.length + offset };
}

/** Validates one tensor spec; returns its type, ggml dims and size in bytes. */
function checkTensor(
  file: string,
  t: GgufTensorSpec,
  names: Set<string>,
): { type: GgmlTypeInfo; dims: number[]; bytes: number } {
  if (typeof t.name !== "string" || t.name === "") {
    throw new TypeError(
      `${file}: a tensor name is ${describe(t.name)}, expected a non-empty string`,
    );
  }
  const what = `tensor ${quote(t.name)}`;
  if (UTF8.encode(t.name).length > 63) {
    throw new RangeError(
      `${file}: ${what} has a ${UTF8.encode(t.name).length}-byte name, expected at most 63 ` +
        `(llama.cpp's limit)`,
    );
  }
  if (names.has(t.name)) {
    throw new RangeError(`${file}: ${what} appears twice; names must be unique`);
  }
  names.add(t.name);
  if (!Object.hasOwn(GGML_TYPES, t.type)) {
    throw new TypeError(
      `${file}: ${what} has type ${
        describe(t.type)
      }, expected a ggml type name such as f16 or q4_k`,
    );
  }
  const type: GgmlTypeInfo = GGML_TYPES[t.type];
  const shape = t.shape;
  if (!Array.isArray(shape)) {
    throw new TypeError(`${file}: ${what} shape is ${describe(shape)}, expected an array`);
  }
  if (shape.length < 1 || shape.length > 4) {
    throw new RangeError(
      `${file}: ${what} shape [${shape.slice(0, 8).join(", ")}] has ${shape.length} sizes, ` +
        `expected 1 to 4`,
    );
  }
  let numel = 1;
  for (const [i, d] of shape.entries()) {
    if (!Number.isSafeInteger(d) || d <= 0) {
      throw new RangeError(`${file}: ${what} shape[${i}] is ${d}, expected a positive integer`);
    }
    numel *= d;
  }
  if (!Number.isSafeInteger(numel)) {
    throw new RangeError(`${file}: ${what} shape [${shape}] holds more than 2^53 elements`);
  }
  const ne0 = shape[shape.length - 1];
  if (ne0 % type.blockElems !== 0) {
    throw new RangeError(
      `${file}: ${what} is ${type.name} [${shape.join(", ")}], but its last size ${ne0} is not ` +
        `a multiple of its ${type.blockElems}-element block`,
    );
  }
  const bytes = (numel / type.blockElems) * type.blockBytes;
  if (t.data instanceof Uint8Array) checkData(file, t, t.data, bytes);
  else if (typeof t.data !== "function") {
    throw new TypeError(
      `${file}: ${what} data is ${describe(t.data)}, expected a Uint8Array or a function`,
    );
  }
  return { type, dims: shape.toReversed(), bytes };
}

/**
 * Checks that `data` holds exactly the bytes tensor `t` needs (a `RangeError`
 * naming the file, tensor, type, shape and both sizes otherwise).
 *
 * @example
 * ```ts
 * import { checkData } from "./layout.ts";
 * const t = { name: "w", shape: [8], type: "f16", data: new Uint8Array(16) } as const;
 * checkData("m.gguf", t, t.data, 16); // fine
 * ```
 */
export function checkData(file: string, t: GgufTensorSpec, data: unknown, bytes: number): void {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(
      `${file}: tensor ${quote(t.name)} data is ${describe(data)}, expected a Uint8Array`,
    );
  }
  if (data.length !== bytes) {
    throw new RangeError(
      `${file}: tensor ${quote(t.name)} is ${t.type} [${t.shape.join(", ")}], which needs ` +
        `${bytes} bytes, but its data holds ${data.length}`,
    );
  }
}
