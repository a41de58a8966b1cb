/**
 * GGUF files in the `loaders` fuzz campaign (`deno task fuzz loaders --format gguf`).
 *
 * Seeds are small valid GGUF files: tiny Mixtral, Mamba, Jamba and Qwen2-MoE
 * checkpoints (`tests/fixtures/tiny_checkpoints.ts`) converted with Kiln's own
 * `convertToGguf` at f32, f16, q8_0 and q4_k, with the `tokenizer.ggml.*`
 * metadata of their tokenizer.json (`ggufTokenizerMetadata`), and hand-made
 * files (`encodeGguf`) holding every metadata value type and every tensor type
 * Kiln reads. Each seed is decoded into its fields, and mutations aim at the
 * format's structure: the magic and version, the counts, string lengths and
 * UTF-8, value type ids, array element types, lengths and nesting, bool bytes,
 * `general.alignment`, tensor dimension counts, dimensions, ggml type ids and
 * offsets, truncation at every section boundary, the model's metadata keys
 * (`<arch>.block_count`, `.expert_count`, …), the `tokenizer.ggml.*` keys,
 * tensor shapes and names against the architecture, non-finite weights — plus
 * flipped, inserted and deleted header bytes. Some mutations keep the file
 * valid on purpose (a tensor re-encoded in another type, experts split into
 * llama.cpp's older per-expert tensors, another alignment) so the accepting
 * side is exercised too.
 *
 * The oracle: each mutant goes through `GgufFile.open` (and a read of every
 * tensor), `openGgufModel` and `GgufCheckpoint.open` (every tensor read in HF
 * layout and as f32), `readModelConfig`, `modelTokenizer` (and encoding texts
 * with the tokenizer) and, for a fraction of the cases, `loadModel` on the CPU
 * device and one `forward`. Every step must succeed or throw a Kiln error (see
 * `../fuzz_loaders/judge.ts`: TypeError, RangeError, SyntaxError or
 * `Deno.errors.*`, with a message that starts with the file's path and carries
 * no engine phrase such as "Invalid typed array length"), within the time
 * bound; logits must be finite; a mutation the format forbids (a bad magic, a
 * bool byte of 2, a misaligned offset, data cut short, NaN weights, …) must be
 * refused somewhere on the way; and an accepted file must read back as it was
 * written (version, every key with its type and value, every tensor's name,
 * dims, type and offset), whenever the fields describe it exactly.
 *
 * Cases run in workers (this very module, loaded as one), so a hang is ended
 * by terminating the worker. A failing case of several mutations is shrunk to
 * the one that fails alone, and failures are grouped by their kind and message.
 * Bugs found outside the GGUF reader are listed in {@linkcode KNOWN_ISSUES} and
 * counted apart from the failures until they are fixed (`--no-known` counts
 * them as failures).
 *
 * Usage (one case: `--case=N`, with the `--seed` of the run):
 *
 * ```sh
 * deno run -A tools/fuzz/gguf_loaders.ts [--cases=2000] [--minutes=M] [--seed=1]
 *   [--timeout-ms=2000] [--run-fraction=0.125] [--case=N] [--no-known] [--verbose]
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { convertToGguf, type GgufOutType, openGgufModel } from "../../app/gguf/arch.ts";
import { GgufCheckpoint } from "../../app/gguf/checkpoint.ts";
import { GgufFile } from "../../app/gguf/file.ts";
import { ggufTokenizerMetadata } from "../../app/gguf/tokenizer_export.ts";
import type { GgufEntry, GgufValueType } from "../../app/gguf/value.ts";
import { GGUF_VALUE_TYPES } from "../../app/gguf/value.ts";
import { encodeGguf } from "../../app/gguf/writer.ts";
import type { GgufTensorSpec } from "../../app/gguf/layout.ts";
import { loadModel } from "../../app/model/mod.ts";
import { modelTokenizer, readModelConfig } from "../../app/model/source.ts";
import { Checkpoint } from "../../app/safetensors/mod.ts";
import type { Tokenizer } from "../../app/tokenizer/mod.ts";
import { dequantize, quantize } from "../../core/quant/codecs.ts";
import {
  GGML_TYPES,
  ggmlTypeById,
  type GgmlTypeName,
  isQuantFormat,
  type QuantFormat,
} from "../../core/quant/formats.ts";
import { mulberry32 } from "../../core/random.ts";
import { cpuDevice } from "../../runtime/device.ts";
import {
  writeTinyJamba,
  writeTinyMamba,
  writeTinyMixtral,
  writeTinyQwen2Moe,
} from "../../tests/fixtures/tiny_checkpoints.ts";
import { type CaseResult, judgeError } from "../fuzz_loaders/judge.ts";
import { caseRng, chance, int, pick, type Rng } from "../fuzz_loaders/mutate.ts";
import type { LoaderCounts } from "../fuzz_loaders.ts";

const enc = new TextEncoder();
// As Kiln reads GGUF text: a leading BOM is kept, not dropped.
const dec = new TextDecoder("utf-8", { ignoreBOM: true });

// ---------------------------------------------------------------------------
// A GGUF file as fields: decoded from a valid seed, mutated, encoded again

/** A GGUF string: its bytes, and a length prefix to write instead of theirs. */
interface RawString {
  bytes: Uint8Array;
  len?: bigint;
}

/** A metadata value as stored (a scalar's bytes, a string, an array of values, or raw bytes). */
type RawValue =
  | { kind: "fixed"; bytes: Uint8Array }
  | { kind: "string"; s: RawString }
  | { kind: "array"; elem: number; len?: bigint; items: RawValue[] }
  | { kind: "raw"; bytes: Uint8Array };

/** A metadata pair: key, value type id as stored, value. */
interface RawKv {
  key: RawString;
  type: number;
  value: RawValue;
}

/** A tensor info: name, dimension count to write (default dims.length), ggml dims, type id, offset. */
interface RawTensor {
  name: RawString;
  nd?: number;
  dims: bigint[];
  type: number;
  offset: bigint;
}

/** A whole file: preamble, metadata, tensor infos, and the data region after the padding. */
interface RawGguf {
  magic: Uint8Array;
  version: number;
  tensorCount?: bigint;
  kvCount?: bigint;
  kvs: RawKv[];
  tensors: RawTensor[];
  /** The data region starts at the header's end rounded up to this. */
  align: number;
  /** The data region (tensor offsets are relative to its start). */
  data: Uint8Array;
}

/** Where an encoded file's sections begin and end. */
interface Layout {
  /** Section boundaries (byte offsets) with what ends there. */
  bounds: { at: number; what: string }[];
  /** End of the tensor infos. */
  headerEnd: number;
  /** Start of the data region. */
  dataStart: number;
  /** Bytes a reader needs: the header, and every tensor whose size is known. */
  needed: number;
  /** File size. */
  size: number;
}

const VT = Object.fromEntries(GGUF_VALUE_TYPES.map((t, i) => [t, i])) as Record<
  GgufValueType,
  number
>;
/** Bytes of each fixed-size value type, by type id (0: strings and arrays). */
const FIXED_SIZE: readonly number[] = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];

/** Decodes a valid GGUF file (a seed: no checks). */
function decodeRaw(bytes: Uint8Array): RawGguf {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const u32 = () => (pos += 4, view.getUint32(pos - 4, true));
  const u64 = () => (pos += 8, view.getBigUint64(pos - 8, true));
  const str = (): RawString => {
    const n = Number(u64());
    pos += n;
    return { bytes: bytes.slice(pos - n, pos) };
  };
  const value = (type: number): RawValue => {
    const size = FIXED_SIZE[type];
    if (size) {
      pos += size;
      return { kind: "fixed", bytes: bytes.slice(pos - size, pos) };
    }
    if (type === VT.string) return { kind: "string", s: str() };
    const elem = u32();
    const n = Number(u64());
    const items: RawValue[] = [];
    for (let i = 0; i < n; i++) items.push(value(elem));
    return { kind: "array", elem, items };
  };
  const magic = bytes.slice(0, 4);
  pos = 4;
  const version = u32();
  const tensorCount = Number(u64());
  const kvCount = Number(u64());
  const kvs: RawKv[] = [];
  let align = 32;
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    const type = u32();
    const v = value(type);
    if (dec.decode(key.bytes) === "general.alignment" && v.kind === "fixed") {
      align = new DataView(v.bytes.buffer).getUint32(0, true);
    }
    kvs.push({ key, type, value: v });
  }
  const tensors: RawTensor[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const nd = u32();
    const dims: bigint[] = [];
    for (let d = 0; d < nd; d++) dims.push(u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(pos / align) * align;
  return { magic, version, kvs, tensors, align, data: bytes.slice(dataStart) };
}

/** A deep copy (the data region is shared: mutations that change it replace it). */
function cloneRaw(g: RawGguf): RawGguf {
  const data = g.data;
  const copy: RawGguf = structuredClone({ ...g, data: new Uint8Array(0) });
  copy.data = data;
  return copy;
}

/** Growable little-endian byte writer. */
class Out {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;
  #room(n: number): number {
    if (this.length + n > this.#buf.length) {
      const grown = new Uint8Array(Math.max(this.length + n, this.#buf.length * 2));
      grown.set(this.#buf.subarray(0, this.length));
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.length += n;
    return this.length - n;
  }
  // `#room` may replace the buffer: call it before reading the view.
  u32(v: number): void {
    const at = this.#room(4);
    this.#view.setUint32(at, v >>> 0, true);
  }
  u64(v: bigint): void {
    const at = this.#room(8);
    this.#view.setBigUint64(at, BigInt.asUintN(64, v), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.#room(b.length);
    this.#buf.set(b, at);
  }
  string(s: RawString): void {
    this.u64(s.len ?? BigInt(s.bytes.length));
    this.bytes(s.bytes);
  }
  value(v: RawValue): void {
    if (v.kind === "fixed" || v.kind === "raw") this.bytes(v.bytes);
    else if (v.kind === "string") this.string(v.s);
    else {
      this.u32(v.elem);
      this.u64(v.len ?? BigInt(v.items.length));
      for (const x of v.items) this.value(x);
    }
  }
  pad(to: number): void {
    this.#room(to - this.length);
  }
  done(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

/** Bytes of tensor `t` as its dims and type say, or undefined when they do not say. */
function tensorBytes(t: RawTensor): number | undefined {
  const type = ggmlTypeById(t.type);
  if (!type || t.dims.length === 0) return undefined;
  let n = 1n;
  for (const d of t.dims) n *= d;
  if (n <= 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  const elems = Number(n);
  if (Number(t.dims[0]) % type.blockElems !== 0) return undefined;
  return (elems / type.blockElems) * type.blockBytes;
}

/** Encodes `g` as a file, with its layout. */
function encodeRaw(g: RawGguf): { bytes: Uint8Array; layout: Layout } {
  const o = new Out();
  const bounds: { at: number; what: string }[] = [];
  o.bytes(g.magic);
  bounds.push({ at: o.length, what: "the magic" });
  o.u32(g.version);
  bounds.push({ at: o.length, what: "the version" });
  o.u64(g.tensorCount ?? BigInt(g.tensors.length));
  bounds.push({ at: o.length, what: "the tensor count" });
  o.u64(g.kvCount ?? BigInt(g.kvs.length));
  bounds.push({ at: o.length, what: "the metadata count" });
  g.kvs.forEach((kv, i) => {
    o.string(kv.key);
    bounds.push({ at: o.length, what: `key #${i}` });
    o.u32(kv.type);
    o.value(kv.value);
    bounds.push({ at: o.length, what: `metadata pair #${i}` });
  });
  g.tensors.forEach((t, i) => {
    o.string(t.name);
    o.u32(t.nd ?? t.dims.length);
    for (const d of t.dims) o.u64(d);
    o.u32(t.type);
    o.u64(t.offset);
    bounds.push({ at: o.length, what: `tensor info #${i}` });
  });
  const headerEnd = o.length;
  const dataStart = Math.ceil(headerEnd / g.align) * g.align;
  o.pad(dataStart);
  bounds.push({ at: dataStart, what: "the padding (data start)" });
  o.bytes(g.data);
  let needed = headerEnd;
  for (const [i, t] of g.tensors.entries()) {
    const n = tensorBytes(t);
    if (n === undefined || t.offset > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    const start = dataStart + Number(t.offset);
    bounds.push({ at: start, what: `the start of tensor #${i}'s data` });
    bounds.push({ at: start + n, what: `the end of tensor #${i}'s data` });
    needed = Math.max(needed, start + n);
  }
  bounds.push({ at: o.length, what: "the end" });
  return { bytes: o.done(), layout: { bounds, headerEnd, dataStart, needed, size: o.length } };
}

/** The bytes of a scalar of `type` holding `v` (integers wrap, as a writer's cast would). */
function fixedBytes(type: GgufValueType, v: number | bigint | boolean): Uint8Array {
  const b = new Uint8Array(FIXED_SIZE[VT[type]]);
  const d = new DataView(b.buffer);
  const n = typeof v === "boolean" ? Number(v) : v;
  const int = () => (typeof n === "bigint" ? n : BigInt(Math.trunc(Number(n)) || 0));
  switch (type) {
    case "u8":
    case "i8":
    case "bool":
      d.setUint8(0, Number(BigInt.asUintN(8, int())));
      break;
    case "u16":
    case "i16":
      d.setUint16(0, Number(BigInt.asUintN(16, int())), true);
      break;
    case "u32":
    case "i32":
      d.setUint32(0, Number(BigInt.asUintN(32, int())), true);
      break;
    case "f32":
      d.setFloat32(0, Number(n), true);
      break;
    case "u64":
    case "i64":
      d.setBigUint64(0, BigInt.asUintN(64, int()), true);
      break;
    case "f64":
      d.setFloat64(0, Number(n), true);
      break;
  }
  return b;
}

const num = (type: GgufValueType, v: number | bigint | boolean): RawKv["value"] => ({
  kind: "fixed",
  bytes: fixedBytes(type, v),
});
const str = (s: string | Uint8Array): RawValue => ({
  kind: "string",
  s: { bytes: typeof s === "string" ? enc.encode(s) : s },
});
const arr = (elem: GgufValueType, items: RawValue[]): RawValue => ({
  kind: "array",
  elem: VT[elem],
  items,
});

/** A scalar's value, read back from its bytes. */
function readFixed(type: number, bytes: Uint8Array): number | bigint | undefined {
  if (bytes.length !== FIXED_SIZE[type]) return undefined;
  const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (GGUF_VALUE_TYPES[type]) {
    case "u8":
    case "bool":
      return d.getUint8(0);
    case "i8":
      return d.getInt8(0);
    case "u16":
      return d.getUint16(0, true);
    case "i16":
      return d.getInt16(0, true);
    case "u32":
      return d.getUint32(0, true);
    case "i32":
      return d.getInt32(0, true);
    case "f32":
      return d.getFloat32(0, true);
    case "u64":
      return d.getBigUint64(0, true);
    case "i64":
      return d.getBigInt64(0, true);
    case "f64":
      return d.getFloat64(0, true);
  }
  return undefined;
}

const keyOf = (kv: RawKv) => dec.decode(kv.key.bytes);
const nameOf = (t: RawTensor) => dec.decode(t.name.bytes);
const findKv = (g: RawGguf, key: string) => g.kvs.find((kv) => keyOf(kv) === key);
const findTensor = (g: RawGguf, name: string) => g.tensors.find((t) => nameOf(t) === name);

/** Sets `key` to `type`/`value`, in place or appended. */
function setKv(g: RawGguf, key: string, type: number, value: RawValue): void {
  const kv = findKv(g, key);
  if (kv) {
    kv.type = type;
    kv.value = value;
  } else g.kvs.push({ key: { bytes: enc.encode(key) }, type, value });
}

function deleteKv(g: RawGguf, key: string): void {
  g.kvs = g.kvs.filter((kv) => keyOf(kv) !== key);
}

/** Lays the tensors' data out again, each from `data(t, old bytes)`, in order, aligned to `g.align`. */
function relayout(
  g: RawGguf,
  data: (t: RawTensor, old: Uint8Array | undefined) => Uint8Array = (_, old) =>
    old ?? new Uint8Array(0),
): void {
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const t of g.tensors) {
    const n = tensorBytes(t);
    const start = Number(t.offset);
    const old = n === undefined || start + n > g.data.length
      ? undefined
      : g.data.subarray(start, start + n);
    const bytes = data(t, old);
    at = Math.ceil(at / g.align) * g.align;
    t.offset = BigInt(at);
    chunks.push(bytes);
    at += bytes.length;
  }
  const out = new Uint8Array(Math.ceil(at / g.align) * g.align);
  let pos = 0;
  for (const [i, t] of g.tensors.entries()) {
    pos = Number(t.offset);
    out.set(chunks[i], pos);
  }
  g.data = out;
}

/** `bytes` cut or zero-padded to `n`. */
function fit(bytes: Uint8Array | undefined, n: number): Uint8Array {
  const out = new Uint8Array(n);
  if (bytes) out.set(bytes.subarray(0, n));
  return out;
}

/** f32 values of a tensor's bytes in a type Kiln reads, or undefined. */
function valuesOf(type: number, bytes: Uint8Array, elems: number): Float32Array | undefined {
  const t = ggmlTypeById(type);
  if (!t) return undefined;
  const copy = bytes.slice();
  if (t.name === "f32") return new Float32Array(copy.buffer, 0, elems);
  if (t.name === "f16") return new Float32Array(new Float16Array(copy.buffer, 0, elems));
  if (t.name === "bf16") {
    const u = new Uint16Array(copy.buffer, 0, elems);
    const out = new Uint32Array(elems);
    for (let i = 0; i < elems; i++) out[i] = u[i] << 16;
    return new Float32Array(out.buffer);
  }
  if (isQuantFormat(t.name)) return dequantize(t.name, copy, elems);
  return undefined;
}

/** `values` encoded as ggml type `name`. */
function encodeValues(name: GgmlTypeName, values: Float32Array): Uint8Array {
  if (name === "f32") return new Uint8Array(values.slice().buffer);
  if (name === "f16") return new Uint8Array(Float16Array.from(values).buffer);
  if (name === "bf16") {
    const u = new Uint32Array(values.slice().buffer);
    const out = new Uint16Array(values.length);
    for (let i = 0; i < u.length; i++) out[i] = u[i] >>> 16;
    return new Uint8Array(out.buffer);
  }
  return quantize(name as QuantFormat, values);
}

// ---------------------------------------------------------------------------
// Seeds

/** A seed file on disk: `model` when it is a whole model (not a hand-made header test). */
export interface GgufSeed {
  /** Short name, for case descriptions. */
  name: string;
  /** Its path. */
  path: string;
  /** Whether it is a model Kiln runs (its cases go through the whole pipeline). */
  model: boolean;
}

type Writer = typeof writeTinyMixtral;

const MODEL_SEEDS: readonly {
  name: string;
  write: Writer;
  config?: Record<string, unknown>;
  tokenizer?: "byte_level" | "sentencepiece" | "none";
  types: readonly GgufOutType[];
}[] = [
  { name: "mixtral", write: writeTinyMixtral, types: ["f32", "q8_0"] },
  {
    name: "mixtral-256",
    write: writeTinyMixtral,
    config: { hidden_size: 256, intermediate_size: 256, num_hidden_layers: 1 },
    types: ["q4_k"],
  },
  {
    // Expert rows of 64: gate/up are q4_k, down falls back to q4_0 (as llama.cpp's would).
    name: "mixtral-256x64",
    write: writeTinyMixtral,
    config: { hidden_size: 256, intermediate_size: 64, num_hidden_layers: 1 },
    types: ["q4_k"],
  },
  {
    name: "mixtral-bytelevel",
    write: writeTinyMixtral,
    tokenizer: "byte_level",
    config: { num_hidden_layers: 1, tie_word_embeddings: true },
    types: ["f32"],
  },
  {
    name: "mixtral-notok",
    write: writeTinyMixtral,
    tokenizer: "none",
    config: { vocab_size: 64, num_hidden_layers: 1 },
    types: ["f32"],
  },
  { name: "mamba", write: writeTinyMamba, types: ["f32", "f16", "q8_0"] },
  {
    name: "mamba-256",
    write: writeTinyMamba,
    config: { hidden_size: 256, num_hidden_layers: 1 },
    types: ["q4_k"],
  },
  { name: "jamba", write: writeTinyJamba, types: ["f32", "q8_0"] },
  { name: "qwen2moe", write: writeTinyQwen2Moe, types: ["f32", "q8_0"] },
  {
    name: "qwen2moe-256",
    write: writeTinyQwen2Moe,
    config: {
      hidden_size: 256,
      intermediate_size: 256,
      moe_intermediate_size: 256,
      shared_expert_intermediate_size: 256,
      num_hidden_layers: 2,
      mlp_only_layers: [1],
    },
    types: ["q4_k"],
  },
];

/** Hand-made files: every value type, every tensor type Kiln reads, empty sections. */
function handMadeSeeds(): { name: string; bytes: Uint8Array }[] {
  const r = mulberry32(77);
  const e = (type: GgufValueType, value: GgufEntry["value"]): GgufEntry => ({ type, value });
  const values: [string, GgufEntry][] = [
    ["general.architecture", e("string", "fuzz")],
    ["k.u8", e("u8", 255)],
    ["k.i8", e("i8", -128)],
    ["k.u16", e("u16", 65535)],
    ["k.i16", e("i16", -1)],
    ["k.u32", e("u32", 2 ** 32 - 1)],
    ["k.i32", e("i32", -(2 ** 31))],
    ["k.f32", e("f32", 1.5)],
    ["k.bool.t", e("bool", true)],
    ["k.bool.f", e("bool", false)],
    ["k.string", e("string", "héllo 🦩 日本")],
    ["k.empty", e("string", "")],
    ["k.u64", e("u64", 2n ** 64n - 1n)],
    ["k.i64", e("i64", -1n)],
    ["k.f64", e("f64", Math.PI)],
    ["k.arr.u8", e("array", { type: "u8", values: [1, 2, 3] })],
    ["k.arr.str", e("array", { type: "string", values: ["a", "", "é"] })],
    ["k.arr.bool", e("array", { type: "bool", values: [true, false] })],
    ["k.arr.f32", e("array", { type: "f32", values: [0.5, -2] })],
    ["k.arr.i64", e("array", { type: "i64", values: [1n, -1n] })],
    ["k.arr.empty", e("array", { type: "i32", values: [] })],
    [
      "k.arr.nested",
      e("array", {
        type: "array",
        values: [{ type: "u8", values: [1] }, { type: "string", values: ["x", "y"] }, {
          type: "array",
          values: [{ type: "f64", values: [1] }],
        }],
      }),
    ],
  ];
  const floats = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const tensor = (name: string, shape: number[], type: GgmlTypeName): GgufTensorSpec => ({
    name,
    shape,
    type,
    data: encodeValues(type, floats(shape.reduce((a, b) => a * b, 1))),
  });
  const tensors: GgufTensorSpec[] = [
    tensor("t.f32", [3], "f32"),
    tensor("t.f16", [2, 3], "f16"),
    tensor("t.bf16", [5], "bf16"),
    tensor("t.q8_0", [2, 32], "q8_0"),
    tensor("t.q4_0", [32], "q4_0"),
    tensor("t.q4_k", [256], "q4_k"),
    tensor("t.q5_k", [1, 256], "q5_k"),
    tensor("t.q6_k", [256], "q6_k"),
    tensor("t.4d", [1, 2, 1, 3], "f32"),
  ];
  return [
    { name: "values+tensors", bytes: encodeGguf({ metadata: values, tensors }) },
    {
      name: "v2-align64",
      bytes: encodeGguf({
        metadata: values.slice(0, 8),
        tensors: tensors.slice(0, 4),
        alignment: 64,
        version: 2,
      }),
    },
    { name: "metadata-only", bytes: encodeGguf({ metadata: values, tensors: [] }) },
    { name: "tensors-only", bytes: encodeGguf({ metadata: [], tensors: tensors.slice(3) }) },
    { name: "empty", bytes: encodeGguf({ metadata: [], tensors: [] }) },
  ];
}

/** Writes every seed into `dir` (about 2 s: tiny checkpoints converted at several types). */
export async function writeGgufSeeds(dir: string): Promise<GgufSeed[]> {
  const seeds: GgufSeed[] = [];
  for (const s of MODEL_SEEDS) {
    const ckptDir = join(dir, `${s.name}-checkpoint`);
    await s.write(ckptDir, { config: s.config, tokenizer: s.tokenizer, tokenizerMerges: 8 });
    const config = JSON.parse(await Deno.readTextFile(join(ckptDir, "config.json")));
    let tokenizer: unknown;
    try {
      tokenizer = JSON.parse(await Deno.readTextFile(join(ckptDir, "tokenizer.json")));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    using ckpt = await Checkpoint.open(ckptDir);
    for (const type of s.types) {
      const path = join(dir, `${s.name}-${type}.gguf`);
      await convertToGguf(
        { config, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
        path,
        {
          type,
          metadata: tokenizer === undefined ? undefined : ggufTokenizerMetadata(tokenizer, {
            config,
          }),
        },
      );
      seeds.push({ name: `${s.name}-${type}`, path, model: true });
    }
    await Deno.remove(ckptDir, { recursive: true });
  }
  for (const h of handMadeSeeds()) {
    const path = join(dir, `${h.name}.gguf`);
    await Deno.writeFile(path, h.bytes);
    seeds.push({ name: h.name, path, model: false });
  }
  return seeds;
}

// ---------------------------------------------------------------------------
// Mutations

/** One mutation: of the fields (`model`) or of the encoded bytes (`bytes`). */
interface Op {
  /** What it does, for the report. */
  what: string;
  /** Its family (`tensor`, `data/nonfinite`, …), for grouping failures. */
  kind?: string;
  /** A reader must refuse the result. */
  refuse?: boolean;
  /** The result is only judged by loading and running the model. */
  run?: boolean;
  model?: (g: RawGguf) => void;
  bytes?: (b: Uint8Array, l: Layout) => { bytes: Uint8Array; refuse?: boolean; what?: string };
}

/** What a seed offers to mutations. */
interface SeedInfo {
  name: string;
  model: boolean;
  raw: RawGguf;
  /** `general.architecture`, for model seeds. */
  arch?: string;
}

const HUGE_LENGTHS = [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n, 2n ** 32n, 2n ** 40n + 7n];

/** Odd UTF-8: invalid bytes (for keys and names: must be refused) or valid oddities. */
const BAD_UTF8: readonly [string, number[]][] = [
  ["a lone 0xff", [0xff]],
  ["an overlong NUL", [0xc0, 0x80]],
  ["a UTF-16 surrogate", [0xed, 0xa0, 0x80]],
  ["a code point past U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ["a cut 3-byte sequence", [0x61, 0xe2, 0x82]],
  ["a stray continuation byte", [0x80, 0x61]],
];
const ODD_UTF8: readonly [string, number[]][] = [
  ["a BOM", [0xef, 0xbb, 0xbf, 0x61]],
  ["a NUL", [0x61, 0x00, 0x62]],
  ["a combining accent", [0x65, 0xcc, 0x81]],
  ["an emoji", [0xf0, 0x9f, 0xa6, 0xa9]],
  ["nothing", []],
];

/** Every string of the file, by where it is, resolved again at apply time. */
function stringRefs(
  g: RawGguf,
  r: Rng,
): { desc: string; exact: boolean; get: (g: RawGguf) => RawString | undefined }[] {
  const out: { desc: string; exact: boolean; get: (g: RawGguf) => RawString | undefined }[] = [];
  g.kvs.forEach((kv, i) => {
    out.push({
      desc: `key #${i} ${JSON.stringify(keyOf(kv))}`,
      exact: true,
      get: (h) => h.kvs[i]?.key,
    });
    if (kv.value.kind === "string") {
      out.push({
        desc: `the string value of ${JSON.stringify(keyOf(kv))}`,
        exact: false,
        get: (h) => {
          const v = h.kvs[i]?.value;
          return v?.kind === "string" ? v.s : undefined;
        },
      });
    }
    const v = kv.value;
    if (v.kind === "array" && v.elem === VT.string && v.items.length > 0) {
      const k = int(r, v.items.length);
      out.push({
        desc: `${JSON.stringify(keyOf(kv))}[${k}]`,
        exact: false,
        get: (h) => {
          const a = h.kvs[i]?.value;
          const x = a?.kind === "array" ? a.items[k] : undefined;
          return x?.kind === "string" ? x.s : undefined;
        },
      });
    }
  });
  g.tensors.forEach((t, i) => {
    out.push({
      desc: `the name of tensor #${i} ${JSON.stringify(nameOf(t))}`,
      exact: true,
      get: (h) => h.tensors[i]?.name,
    });
  });
  return out;
}

/** Arrays of the file (metadata values), by key. */
function arrayKeys(g: RawGguf): string[] {
  // The first pair of each key (a repeated key's later copies are not found by name).
  return g.kvs.filter((kv) => kv.value.kind === "array" && findKv(g, keyOf(kv)) === kv)
    .map(keyOf);
}

const hex = (b: Uint8Array | number[]) =>
  [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** Preamble: magic, version, counts. */
function preambleOp(r: Rng, g: RawGguf): Op {
  switch (int(r, 4)) {
    case 0: {
      const magic = pick(r, [
        [0x67, 0x67, 0x75, 0x66],
        [0x47, 0x47, 0x4d, 0x4c],
        [0x47, 0x47, 0x4a, 0x54],
        [0x46, 0x55, 0x47, 0x47],
        [0, 0, 0, 0],
        [0x47, 0x47, 0x55, 0x00],
        Array.from({ length: 4 }, () => int(r, 256)),
      ]);
      const same = magic.every((b, i) => b === [0x47, 0x47, 0x55, 0x46][i]);
      return {
        what: `magic ${hex(magic)}`,
        refuse: !same,
        model: (h) => h.magic = new Uint8Array(magic),
      };
    }
    case 1: {
      const v = pick(r, [0, 1, 4, 5, 2 ** 32 - 1, 0x03000000, 0x02000000, 2 ** 31, 2, 3]);
      return { what: `version ${v}`, refuse: v !== 2 && v !== 3, model: (h) => h.version = v };
    }
    default: {
      const tensors = chance(r, 0.5);
      const n = BigInt(tensors ? g.tensors.length : g.kvs.length);
      const v = pick(r, [
        0n,
        n - 1n,
        n + 1n,
        n + 2n,
        2n ** 32n,
        2n ** 32n + n,
        2n ** 53n,
        2n ** 63n,
        2n ** 64n - 1n,
        n * 1000n + 1000000n,
      ]);
      if (v < 0n || v === n) return preambleOp(r, g);
      return {
        what: `${tensors ? "tensor" : "metadata"} count ${v} (was ${n})`,
        refuse: v >= 2n ** 32n,
        model: (h) => tensors ? h.tensorCount = v : h.kvCount = v,
      };
    }
  }
}

/** Strings: length prefixes, UTF-8, duplicates, huge strings. */
function stringOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  const refs = stringRefs(g, r);
  if (refs.length === 0) return undefined;
  const ref = pick(r, refs);
  const cur = ref.get(g)!;
  const len = BigInt(cur.bytes.length);
  switch (int(r, 5)) {
    case 0:
    case 1: {
      const v = pick(r, [...HUGE_LENGTHS, len + 1n, len + 8n, len - 1n, 0n, len + 1000n]);
      if (v < 0n || v === len) return undefined;
      return {
        what: `${ref.desc}: length ${v} (was ${len})`,
        refuse: v >= 2n ** 32n,
        model: (h) => {
          const x = ref.get(h);
          if (x) x.len = v;
        },
      };
    }
    case 2: {
      const bad = chance(r, 0.6);
      const [desc, bytes] = pick(r, bad ? BAD_UTF8 : ODD_UTF8);
      const where = pick(r, ["replaced by", "prefixed with", "suffixed with"] as const);
      const make = (old: Uint8Array) => {
        const b = new Uint8Array(bytes);
        if (where === "replaced by") return b;
        const out = new Uint8Array(old.length + b.length);
        out.set(where === "prefixed with" ? b : old);
        out.set(
          where === "prefixed with" ? old : b,
          where === "prefixed with" ? b.length : old.length,
        );
        return out;
      };
      return {
        what: `${ref.desc} ${where} ${desc} (${hex(bytes)})`,
        // Keys and tensor names must be exact UTF-8; values are read leniently.
        refuse: bad && ref.exact,
        model: (h) => {
          const x = ref.get(h);
          if (x) x.bytes = make(x.bytes);
        },
      };
    }
    case 3: {
      // The same key or tensor name twice.
      const tensor = chance(r, 0.5) && g.tensors.length > 1;
      const list = tensor ? g.tensors.map(nameOf) : g.kvs.map(keyOf);
      if (list.length < 2) return undefined;
      const i = int(r, list.length);
      let j = int(r, list.length - 1);
      if (j >= i) j++;
      return {
        what: `${tensor ? "tensor" : "key"} #${i} renamed ${JSON.stringify(list[j])}, as #${j}`,
        refuse: true,
        model: (h) => {
          const items = tensor ? h.tensors.map((t) => t.name) : h.kvs.map((kv) => kv.key);
          if (items[i] && items[j]) items[i].bytes = items[j].bytes.slice();
        },
      };
    }
    default: {
      // Huge strings: a vocabulary token of a million characters must not make the
      // tokenizer quadratic; a huge key or name must not be echoed whole in a message.
      const n = pick(r, [10_000, 200_000, 1_000_000]);
      const unit = pick(r, ["x", "▁", "é", "ab"]);
      const target = s.model && chance(r, 0.5)
        ? refs.find((x) => x.desc.startsWith('"tokenizer.ggml.tokens"')) ?? ref
        : ref;
      return {
        what: `${target.desc} = ${JSON.stringify(unit)} × ${n}`,
        model: (h) => {
          const x = target.get(h);
          if (x) x.bytes = enc.encode(unit.repeat(n));
        },
      };
    }
  }
}

/** Value type ids, array element types, lengths and nesting, bool bytes. */
function valueOp(r: Rng, g: RawGguf): Op | undefined {
  if (g.kvs.length === 0) return undefined;
  const i = int(r, g.kvs.length);
  const kv = g.kvs[i];
  const key = keyOf(kv);
  const at = (h: RawGguf) => h.kvs.find((x) => keyOf(x) === key);
  switch (int(r, 6)) {
    case 0: {
      const bad = chance(r, 0.5);
      const t = bad ? pick(r, [13, 14, 255, 2 ** 31, 2 ** 32 - 1]) : int(r, 13);
      if (t === kv.type) return undefined;
      return {
        what: `${JSON.stringify(key)}: value type ${t} (was ${kv.type})`,
        refuse: bad,
        model: (h) => {
          const x = at(h);
          if (x) x.type = t;
        },
      };
    }
    case 1: {
      const keys = arrayKeys(g);
      if (keys.length === 0) return undefined;
      const k = pick(r, keys);
      const v = findKv(g, k)!.value as Extract<RawValue, { kind: "array" }>;
      const bad = chance(r, 0.5);
      const t = bad ? pick(r, [13, 100, 255, 2 ** 32 - 1]) : int(r, 13);
      if (t === v.elem) return undefined;
      return {
        what: `${JSON.stringify(k)}: element type ${t} (was ${v.elem})`,
        refuse: bad,
        model: (h) => {
          const x = findKv(h, k)?.value;
          if (x?.kind === "array") x.elem = t;
        },
      };
    }
    case 2: {
      const keys = arrayKeys(g);
      if (keys.length === 0) return undefined;
      const k = pick(r, keys);
      const v = findKv(g, k)!.value as Extract<RawValue, { kind: "array" }>;
      const n = BigInt(v.items.length);
      const len = pick(r, [...HUGE_LENGTHS, 2n ** 62n, 0n, n - 1n, n + 1n, n * 2n, n + 100n]);
      if (len < 0n || len === n) return undefined;
      return {
        what: `${JSON.stringify(k)}: length ${len} (was ${n})`,
        refuse: len >= 2n ** 32n,
        model: (h) => {
          const x = findKv(h, k)?.value;
          if (x?.kind === "array") x.len = len;
        },
      };
    }
    case 3: {
      // Arrays of arrays: 64 levels are allowed, 65 are not.
      const depth = pick(r, [2, 8, 63, 64, 65, 66, 100, 1000, 100_000]);
      const o = new Out();
      for (let d = 1; d < depth; d++) {
        o.u32(VT.array);
        o.u64(1n);
      }
      o.u32(VT.u8);
      o.u64(0n);
      const bytes = o.done();
      const target = chance(r, 0.5) ? key : "fuzz.nested";
      return {
        what: `${JSON.stringify(target)} = arrays nested ${depth} deep`,
        refuse: depth > 64,
        model: (h) => setKv(h, target, VT.array, { kind: "raw", bytes }),
      };
    }
    case 4: {
      // Many small elements: each is parsed, nothing is quadratic.
      const n = pick(r, [1000, 100_000]);
      const elem = pick(r, ["array", "string", "bool", "u64"] as const);
      const item: RawValue = elem === "array"
        ? arr("u8", [])
        : elem === "string"
        ? str("")
        : num(elem, 1);
      return {
        what: `${JSON.stringify(key)} = an array of ${n} ${elem}`,
        model: (h) =>
          setKv(h, key, VT.array, { kind: "array", elem: VT[elem], items: Array(n).fill(item) }),
      };
    }
    default: {
      // A bool byte other than 0 or 1, in a scalar or an array.
      const b = pick(r, [2, 3, 0x80, 0xff]);
      const bools = g.kvs.filter((x) => x.type === VT.bool).map(keyOf);
      const k = bools.length && chance(r, 0.7) ? pick(r, bools) : "fuzz.bool";
      const inArray = chance(r, 0.3);
      const value: RawValue = inArray
        ? {
          kind: "array",
          elem: VT.bool,
          items: [num("bool", 1), { kind: "fixed", bytes: new Uint8Array([b]) }],
        }
        : { kind: "fixed", bytes: new Uint8Array([b]) };
      return {
        what: `${JSON.stringify(k)} = ${inArray ? "[true, bool byte" : "bool byte"} ${b}${
          inArray ? "]" : ""
        }`,
        refuse: true,
        model: (h) => setKv(h, k, inArray ? VT.array : VT.bool, value),
      };
    }
  }
}

/** `general.alignment`: invalid values, wrong types, valid ones with and without a relayout. */
function alignmentOp(r: Rng): Op {
  const K = "general.alignment";
  switch (int(r, 4)) {
    case 0: {
      const v = pick(r, [
        0,
        1,
        3,
        4,
        7,
        12,
        24,
        48,
        100,
        2 ** 32 - 1,
        2 ** 31 + 8,
        2 ** 30 + 2 ** 29,
      ]);
      return {
        what: `${K} = u32 ${v}`,
        refuse: true,
        model: (h) => setKv(h, K, VT.u32, num("u32", v)),
      };
    }
    case 1: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ["u64 32", VT.u64, num("u64", 32)],
        ["i32 32", VT.i32, num("i32", 32)],
        ["u16 32", VT.u16, num("u16", 32)],
        ["u8 32", VT.u8, num("u8", 32)],
        ["f32 32", VT.f32, num("f32", 32)],
        ['string "32"', VT.string, str("32")],
        ["bool true", VT.bool, num("bool", true)],
        ["[u32 32]", VT.array, arr("u32", [num("u32", 32)])],
      ]);
      return { what: `${K} = ${desc}`, refuse: true, model: (h) => setKv(h, K, type, value) };
    }
    case 2: {
      // Declared without moving the data: the tensors may now start elsewhere.
      const v = pick(r, [8, 16, 64, 128, 2 ** 31]);
      return {
        what: `${K} = u32 ${v}, data left where it was`,
        model: (h) => setKv(h, K, VT.u32, num("u32", v)),
      };
    }
    default: {
      // A valid alignment, the data laid out for it: the file stays valid.
      const v = pick(r, [8, 16, 64, 256, 4096]);
      return {
        what: `${K} = u32 ${v}, data laid out again`,
        model: (h) => {
          setKv(h, K, VT.u32, num("u32", v));
          h.align = v;
          relayout(h);
        },
      };
    }
  }
}

/** Whether changing tensor `name` to a different (squeezed) shape must be refused in a model. */
function shapeMatters(s: SeedInfo, g: RawGguf, name: string): boolean {
  if (!s.model) return false;
  // Without <arch>.vocab_size the embedding's rows are the vocabulary.
  return !(name === "token_embd.weight" && !findKv(g, `${s.arch}.vocab_size`));
}

const squeeze = (dims: readonly bigint[]) => dims.filter((d) => d !== 1n).join(",");

/** Tensor infos: dimension counts, dims, ggml types, offsets. */
function tensorOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  if (g.tensors.length === 0) return undefined;
  const i = int(r, g.tensors.length);
  const t = g.tensors[i];
  const name = nameOf(t);
  const at = (h: RawGguf) => findTensor(h, name);
  const desc = `tensor ${JSON.stringify(name)}`;
  switch (int(r, 8)) {
    case 0: {
      const nd = pick(r, [0, 5, 8, 2 ** 32 - 1]);
      return {
        what: `${desc}: dimension count ${nd}`,
        refuse: true,
        model: (h) => {
          const x = at(h);
          if (x) x.nd = nd;
        },
      };
    }
    case 1: {
      // A dimension of 1 added or dropped: the same elements.
      const add = chance(r, 0.5) || t.dims.length === 1;
      if (add && t.dims.length >= 4) return undefined;
      return {
        what: `${desc}: ${add ? "a dimension of 1 added" : "its outer dimension dropped"}`,
        refuse: !add && t.dims.at(-1) !== 1n && shapeMatters(s, g, name),
        model: (h) => {
          const x = at(h);
          if (!x) return;
          if (add) x.dims.push(1n);
          else x.dims.pop();
        },
      };
    }
    case 2:
    case 3: {
      const d = int(r, t.dims.length);
      const old = t.dims[d];
      const v = pick(r, [
        0n,
        2n ** 64n - 1n,
        2n ** 63n,
        2n ** 53n,
        2n ** 32n,
        old + 1n,
        old * 2n,
        old - 1n,
        1n,
        old / 2n,
      ]);
      if (v === old) return undefined;
      const dims = t.dims.slice();
      dims[d] = v;
      const signed = BigInt.asIntN(64, v);
      // 0, negative and ≥ 2^53 are invalid; more data than the file holds too.
      const invalid = signed <= 0n || v >= 2n ** 32n;
      return {
        what: `${desc}: dims[${d}] ${v} (was ${old})`,
        refuse: invalid || (squeeze(dims) !== squeeze(t.dims) && shapeMatters(s, g, name)),
        model: (h) => {
          const x = at(h);
          if (x && x.dims.length > d) x.dims[d] = v;
        },
      };
    }
    case 4: {
      // Dims whose product overflows 2^53 (each one fine on its own).
      const dims = pick(r, [[2n ** 20n, 2n ** 20n, 2n ** 20n, 2n ** 20n], [2n ** 27n, 2n ** 27n], [
        2n ** 52n,
        4n,
      ]]);
      return {
        what: `${desc}: dims [${dims.join(", ")}]`,
        refuse: true,
        model: (h) => {
          const x = at(h);
          if (x) x.dims = dims.slice();
        },
      };
    }
    case 5: {
      const kind = int(r, 3);
      // Unknown ids (4 and 5 are retired q4_2/q4_3), types Kiln does not read, types it does.
      const id = kind === 0
        ? pick(r, [4, 5, 31, 32, 33, 36, 37, 38, 43, 100, 255, 2 ** 31, 2 ** 32 - 1])
        : kind === 1
        ? pick(r, [3, 6, 7, 9, 10, 11, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26, 28, 29, 34, 39])
        : pick(r, [0, 1, 2, 8, 12, 13, 14, 30]);
      if (id === t.type) return undefined;
      return {
        what: `${desc}: ggml type id ${id} (${ggmlTypeById(id)?.name ?? "unknown"}; was ${
          ggmlTypeById(t.type)?.name
        }), data left as it was`,
        refuse: kind < 2,
        model: (h) => {
          const x = at(h);
          if (x) x.type = id;
        },
      };
    }
    default: {
      const others = g.tensors.filter((x) => x !== t);
      const kind = int(r, 4);
      const end = BigInt(g.data.length);
      const align = BigInt(g.align);
      if (kind === 0) {
        const delta = pick(r, [1n, 2n, 4n, 8n, 16n, align / 2n]);
        if (delta % align === 0n) return undefined;
        return {
          what: `${desc}: offset + ${delta} (misaligned)`,
          refuse: true,
          model: (h) => {
            const x = at(h);
            if (x) x.offset += delta;
          },
        };
      }
      if (kind === 1) {
        const v = pick(r, [end, end + align, 2n ** 40n, 2n ** 64n - align, 2n ** 63n]);
        return {
          what: `${desc}: offset ${v} (past the end of the data)`,
          refuse: true,
          model: (h) => {
            const x = at(h);
            if (x) x.offset = v;
          },
        };
      }
      if (others.length === 0) return undefined;
      const o = pick(r, others);
      const oname = nameOf(o);
      if (kind === 2) {
        return {
          what: `${desc}: offset of ${JSON.stringify(oname)} (overlapping)`,
          refuse: true,
          model: (h) => {
            const x = at(h), y = findTensor(h, oname);
            if (x && y) x.offset = y.offset;
          },
        };
      }
      return {
        what: `${desc}: offsets swapped with ${JSON.stringify(oname)}`,
        model: (h) => {
          const x = at(h), y = findTensor(h, oname);
          if (x && y) [x.offset, y.offset] = [y.offset, x.offset];
        },
      };
    }
  }
}

/** Consistent changes of the tensors: the header agrees with the data, the model may not. */
function relayoutOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  if (g.tensors.length === 0) return undefined;
  const t = pick(r, g.tensors);
  const name = nameOf(t);
  const desc = `tensor ${JSON.stringify(name)}`;
  switch (int(r, 5)) {
    case 0: {
      // Re-encoded in another type Kiln reads: still a valid file and model.
      const type = pick(r, ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"] as const);
      const info = GGML_TYPES[type];
      if (Number(t.dims[0]) % info.blockElems !== 0 || info.id === t.type) return undefined;
      return {
        what: `${desc} re-encoded as ${type}`,
        model: (h) => {
          const x = findTensor(h, name);
          if (!x) return;
          relayout(h, (y, old) => {
            if (y !== x || !old) return old ?? new Uint8Array(0);
            const elems = Number(y.dims.reduce((a, b) => a * b, 1n));
            const v = valuesOf(y.type, old, elems);
            // Non-finite values (an earlier mutation's) do not quantize: keep them as they are.
            if (!v || (isQuantFormat(type) && !v.every(Number.isFinite))) return old;
            y.type = info.id;
            return encodeValues(type, v);
          });
        },
      };
    }
    case 1:
    case 2: {
      // Another shape, with data to match (zeros added, or cut).
      const d = int(r, t.dims.length);
      const type = ggmlTypeById(t.type);
      if (!type || d < 0) return undefined;
      const old = t.dims[d];
      const step = d === 0 ? BigInt(type.blockElems) : 1n;
      const v = pick(r, [old + step, old * 2n, old > step ? old - step : old + step, step]);
      if (v === old) return undefined;
      const dims = t.dims.slice();
      dims[d] = v;
      const swap = t.dims.length >= 2 && chance(r, 0.3) &&
        Number(t.dims[1]) % type.blockElems === 0;
      const next = swap ? [t.dims[1], t.dims[0], ...t.dims.slice(2)] : dims;
      if (squeeze(next) === squeeze(t.dims)) return undefined;
      // (An earlier mutation may have made the dims huge: this one writes real data.)
      const size = tensorBytes({ ...t, dims: next });
      if (size === undefined || size > 1 << 26) return undefined;
      return {
        what: `${desc}: dims [${next.join(", ")}] (was [${t.dims.join(", ")}]), data to match`,
        refuse: shapeMatters(s, g, name),
        model: (h) => {
          const x = findTensor(h, name);
          if (!x) return;
          x.dims = next.slice();
          relayout(h, (y, o) => y === x ? fit(o, tensorBytes(y) ?? 0) : o ?? new Uint8Array(0));
        },
      };
    }
    case 3: {
      // A tensor dropped, renamed, or added.
      const how = int(r, 3);
      if (how === 0) {
        // Without output.weight the embeddings are tied; biases are read from presence.
        return {
          what: `${desc} removed (its data left)`,
          refuse: s.model && name !== "output.weight" && !name.endsWith(".bias"),
          model: (h) => {
            h.tensors = h.tensors.filter((z) => nameOf(z) !== name);
          },
        };
      }
      const to = pick(r, [
        "blk.0.extra.weight",
        "blk.99.attn_q.weight",
        `${name}.x`,
        name.replace("blk.0.", "blk.1."),
        "output.weight",
        "blk.0.ffn_gate.0.weight",
      ]);
      if (to === name || g.tensors.some((z) => nameOf(z) === to)) return undefined;
      if (how === 1) {
        return {
          what: `${desc} renamed ${JSON.stringify(to)}`,
          refuse: s.model,
          model: (h) => {
            const x = findTensor(h, name);
            if (x) x.name = { bytes: enc.encode(to) };
          },
        };
      }
      return {
        what: `a copy of ${desc} added as ${JSON.stringify(to)}, with its own data`,
        // A copy named output.weight unties a tied model: maybe still valid.
        refuse: s.model && to !== "output.weight",
        model: (h) => {
          const x = findTensor(h, name);
          if (!x) return;
          const copy = structuredClone(x);
          copy.name = { bytes: enc.encode(to) };
          h.tensors.push(copy);
          relayout(h);
        },
      };
    }
    default: {
      // Stacked experts split into llama.cpp's older per-expert tensors: valid.
      const stacked = g.tensors.filter((z) =>
        /^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$/.test(nameOf(z))
      );
      if (stacked.length === 0) return undefined;
      const x0 = pick(r, stacked);
      const sname = nameOf(x0);
      const drop = chance(r, 0.2);
      return {
        what: `${JSON.stringify(sname)} split into per-expert tensors${
          drop ? ", the last one missing" : ""
        }`,
        refuse: drop,
        model: (h) => {
          const x = findTensor(h, sname);
          const n = x && tensorBytes(x);
          if (!x || n === undefined) return;
          const E = Number(x.dims.at(-1));
          const data = h.data.subarray(Number(x.offset), Number(x.offset) + n);
          const slice = n / E;
          const base = sname.replace(/_exps\.weight$/, "");
          const parts: RawTensor[] = [];
          const bytes = new Map<RawTensor, Uint8Array>();
          for (let e = 0; e < (drop ? E - 1 : E); e++) {
            const p: RawTensor = {
              name: { bytes: enc.encode(`${base}.${e}.weight`) },
              dims: x.dims.slice(0, -1),
              type: x.type,
              offset: 0n,
            };
            parts.push(p);
            bytes.set(p, data.slice(e * slice, (e + 1) * slice));
          }
          const i = h.tensors.indexOf(x);
          h.tensors.splice(i, 1, ...parts);
          relayout(h, (y, o) => bytes.get(y) ?? o ?? new Uint8Array(0));
        },
      };
    }
  }
}

/** Truncation at a section boundary (or a byte either side), and raw byte edits of the header. */
function byteOp(r: Rng): Op {
  switch (int(r, 3)) {
    case 0:
    case 1: {
      const k = r();
      const delta = pick(r, [0, 0, -1, 1]);
      return {
        what: `truncated at a section boundary (${delta >= 0 ? "+" : ""}${delta})`,
        bytes: (b, l) => {
          const bound = l.bounds[Math.floor(k * l.bounds.length)];
          const cut = Math.max(0, Math.min(b.length, bound.at + delta));
          return {
            bytes: b.slice(0, cut),
            refuse: cut < l.needed,
            what: `truncated at byte ${cut} of ${b.length} (${bound.what}${
              delta ? ` ${delta > 0 ? "+" : ""}${delta}` : ""
            })`,
          };
        },
      };
    }
    default: {
      const how = int(r, 3);
      const k1 = r(), k2 = r(), count = 1 + int(r, 4);
      const bits = Array.from({ length: count }, () => [r(), int(r, 8)] as const);
      return {
        what: ["header bytes flipped", "bytes inserted in the header", "header bytes deleted"][how],
        bytes: (b, l) => {
          const end = Math.max(1, l.headerEnd);
          if (how === 0) {
            const out = b.slice();
            const where = bits.map(([p, bit]) => {
              const i = Math.floor(p * end);
              out[i] ^= 1 << bit;
              return `${i}^${1 << bit}`;
            });
            return { bytes: out, what: `header bytes flipped: ${where.join(", ")}` };
          }
          const at = Math.min(b.length, Math.floor(k1 * end));
          const n = 1 + Math.floor(k2 * 8);
          if (how === 1) {
            const out = new Uint8Array(b.length + n);
            out.set(b.subarray(0, at));
            out.fill(Math.floor(k2 * 256), at, at + n);
            out.set(b.subarray(at), at + n);
            return { bytes: out, what: `${n} bytes inserted at ${at}` };
          }
          const cut = Math.min(n, b.length - at);
          const out = new Uint8Array(b.length - cut);
          out.set(b.subarray(0, at));
          out.set(b.subarray(at + cut), at);
          return { bytes: out, what: `${cut} header bytes deleted at ${at}` };
        },
      };
    }
  }
}

/** Non-finite and extreme weights, and flipped data bytes (judged by loading and running). */
function dataOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  if (g.tensors.length === 0) return undefined;
  const t = pick(r, g.tensors);
  const name = nameOf(t);
  const type = ggmlTypeById(t.type);
  const n = tensorBytes(t);
  if (!type || n === undefined || Number(t.offset) + n > g.data.length) return undefined;
  const elems = (n / type.blockBytes) * type.blockElems;
  const how = int(r, 3);
  const k = r();
  const desc = `tensor ${JSON.stringify(name)} (${type.name})`;
  const edit = (fn: (d: DataView, at: number) => void) => (h: RawGguf) => {
    const x = findTensor(h, name);
    if (!x) return;
    const data = h.data.slice();
    fn(new DataView(data.buffer), Number(x.offset));
    h.data = data;
  };
  if (how === 2) {
    const flips = Array.from({ length: 1 + int(r, 4) }, () => [r(), int(r, 8)] as const);
    return {
      what: `${desc}: ${flips.length} data bits flipped`,
      kind: "data/flip",
      run: true,
      model: edit((d, at) => {
        for (const [p, bit] of flips) {
          const i = at + Math.floor(p * n);
          d.setUint8(i, d.getUint8(i) ^ (1 << bit));
        }
      }),
    };
  }
  const nonFinite = how === 0;
  const v = nonFinite ? pick(r, [NaN, Infinity, -Infinity]) : pick(r, [3e38, -3e38, 65504, 1e30]);
  if (type.blockElems === 1) {
    const i = Math.floor(k * elems);
    return {
      what: `${desc}[${i}] = ${v}`,
      kind: nonFinite ? "data/nonfinite" : "data/extreme",
      refuse: nonFinite && s.model,
      run: true,
      model: edit((d, at) => {
        if (type.name === "f32") d.setFloat32(at + 4 * i, v, true);
        else if (type.name === "f16") d.setFloat16(at + 2 * i, v, true);
        else d.setUint16(at + 2 * i, new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16, true);
      }),
    };
  }
  // A block's f16 scale: d at the start of q8_0/q4_0/q4_k/q5_k blocks, at the end of q6_k's.
  const block = Math.floor(k * (n / type.blockBytes));
  const field = type.name === "q6_k"
    ? type.blockBytes - 2
    : type.name.endsWith("_k") && chance(r, 0.3)
    ? 2
    : 0;
  const fv = nonFinite ? v : 65504;
  return {
    what: `${desc}: block ${block} scale (byte ${field}) = f16 ${fv}`,
    kind: nonFinite ? "data/nonfinite-scale" : "data/extreme-scale",
    refuse: nonFinite && s.model,
    run: true,
    model: edit((d, at) => d.setFloat16(at + block * type.blockBytes + field, fv, true)),
  };
}

const U32_EDGES = [0, 1, 2, 3, 7, 16, 33, 255, 1000, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];

/** A value for a model key: edge numbers, other types, off by one. */
function keyValue(
  r: Rng,
  kv: RawKv | undefined,
): { type: number; value: RawValue; desc: string; wrongType: boolean } {
  const cur = kv && kv.value.kind === "fixed" ? readFixed(kv.type, kv.value.bytes) : undefined;
  switch (int(r, 6)) {
    case 0:
    case 1: {
      const v = pick(r, U32_EDGES);
      return { type: VT.u32, value: num("u32", v), desc: `u32 ${v}`, wrongType: false };
    }
    case 2: {
      if (typeof cur === "number" && kv) {
        const v = pick(r, [cur + 1, cur - 1, cur * 2, Math.floor(cur / 2), cur * 1000]);
        const t = GGUF_VALUE_TYPES[kv.type];
        return {
          type: kv.type,
          value: num(t, v),
          desc: `${t} ${v} (was ${cur})`,
          wrongType: false,
        };
      }
      return keyValue(r, undefined);
    }
    case 3: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ["i32 -1", VT.i32, num("i32", -1)],
        ["i32 -2147483648", VT.i32, num("i32", -(2 ** 31))],
        ["u64 2^53", VT.u64, num("u64", 2n ** 53n)],
        ["u64 2^64-1", VT.u64, num("u64", 2n ** 64n - 1n)],
        ["i64 -1", VT.i64, num("i64", -1n)],
        ["f32 1.5", VT.f32, num("f32", 1.5)],
        ["f32 NaN", VT.f32, num("f32", NaN)],
        ["f32 Infinity", VT.f32, num("f32", Infinity)],
        ["f32 -0.5", VT.f32, num("f32", -0.5)],
        ["f32 1e-30", VT.f32, num("f32", 1e-30)],
        ["f64 1e300", VT.f64, num("f64", 1e300)],
        ["u8 4", VT.u8, num("u8", 4)],
      ]);
      return { type, value, desc, wrongType: false };
    }
    default: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ['string "4"', VT.string, str("4")],
        ["bool true", VT.bool, num("bool", true)],
        ["[u32 4, u32 4]", VT.array, arr("u32", [num("u32", 4), num("u32", 4)])],
        ["[] of string", VT.array, arr("string", [])],
        ['["a"]', VT.array, arr("string", [str("a")])],
      ]);
      return { type, value, desc, wrongType: true };
    }
  }
}

/** Keys whose value fixes tensor shapes: another value must be refused. */
const SHAPE_KEYS = [
  "block_count",
  "embedding_length",
  "vocab_size",
  "ssm.inner_size",
  "ssm.state_size",
  "ssm.conv_kernel",
  "ssm.time_step_rank",
];
/** Keys every architecture reads (a wrong type must be refused). */
const READ_KEYS = [
  ...SHAPE_KEYS,
  "context_length",
  "attention.layer_norm_rms_epsilon",
];

/** The model's own metadata keys. */
function modelKeyOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  const arch = s.arch!;
  const keys = g.kvs.map(keyOf).filter((k) => k.startsWith(`${arch}.`));
  const targeted = [
    "block_count",
    "expert_count",
    "expert_used_count",
    "embedding_length",
    "attention.head_count",
    "attention.head_count_kv",
    "feed_forward_length",
  ].map((k) => `${arch}.${k}`);
  if (chance(r, 0.15)) {
    // Optional keys the seeds do not have: RoPE scaling, head size, windows, flags.
    const [k, desc, type, value] = pick<[string, string, number, RawValue]>(r, [
      ["rope.scaling.type", '"yarn"', VT.string, str("yarn")],
      ["rope.scaling.type", '"linear"', VT.string, str("linear")],
      ["rope.scaling.type", '"longrope"', VT.string, str("longrope")],
      ["rope.scaling.type", '"none"', VT.string, str("none")],
      ["rope.scaling.type", "u32 1", VT.u32, num("u32", 1)],
      ["rope.scaling.factor", "f32 4", VT.f32, num("f32", 4)],
      ["rope.scaling.factor", "f32 0", VT.f32, num("f32", 0)],
      ["rope.scaling.factor", "f32 -1", VT.f32, num("f32", -1)],
      ["rope.scale_linear", "f32 2", VT.f32, num("f32", 2)],
      ["rope.scaling.original_context_length", "u32 0", VT.u32, num("u32", 0)],
      ["rope.dimension_count", "u32 4", VT.u32, num("u32", 4)],
      ["rope.freq_base", "f32 0", VT.f32, num("f32", 0)],
      ["rope.freq_base", "f32 NaN", VT.f32, num("f32", NaN)],
      ["attention.key_length", "u32 16", VT.u32, num("u32", 16)],
      ["attention.key_length", "u32 0", VT.u32, num("u32", 0)],
      ["attention.key_length", "u32 7", VT.u32, num("u32", 7)],
      ["attention.sliding_window", "u32 4", VT.u32, num("u32", 4)],
      ["attention.sliding_window", "i32 -1", VT.i32, num("i32", -1)],
      ["expert_weights_norm", "bool true", VT.bool, num("bool", true)],
      ["expert_weights_norm", "u8 1", VT.u8, num("u8", 1)],
      ["ssm.dt_b_c_rms", "bool true", VT.bool, num("bool", true)],
      ["expert_feed_forward_length", "u32 8", VT.u32, num("u32", 8)],
      ["expert_shared_feed_forward_length", "u32 0", VT.u32, num("u32", 0)],
    ]);
    return {
      what: `${JSON.stringify(`${arch}.${k}`)} = ${desc}`,
      model: (h) => setKv(h, `${arch}.${k}`, type, value),
    };
  }
  if (chance(r, 0.15)) {
    const v = pick(r, ["llama", "mamba", "jamba", "qwen2moe", "gpt2", "", "LLAMA", "mixtral"]);
    return {
      what: `general.architecture = ${JSON.stringify(v)} (was ${JSON.stringify(arch)})`,
      refuse: v !== arch,
      model: (h) => setKv(h, "general.architecture", VT.string, str(v)),
    };
  }
  const key = chance(r, 0.4) ? pick(r, targeted) : pick(r, keys.length ? keys : targeted);
  const short = key.slice(arch.length + 1);
  const kv = findKv(g, key);
  if (kv && chance(r, 0.15)) {
    return {
      what: `${JSON.stringify(key)} deleted`,
      refuse: [
        ...READ_KEYS.filter((k) => k !== "vocab_size"),
        "attention.head_count",
      ].includes(short) &&
        !(arch === "mamba" && short === "attention.head_count"),
      model: (h) => deleteKv(h, key),
    };
  }
  if (short === "attention.head_count_kv" && chance(r, 0.5)) {
    // One value per layer (Jamba), of the wrong length or with zeros.
    const blocks = findKv(g, `${arch}.block_count`);
    const L = blocks?.value.kind === "fixed"
      ? Number(readFixed(blocks.type, blocks.value.bytes) ?? 1)
      : 1;
    // (An earlier mutation may have made the block count huge.)
    if (!(L >= 0 && L <= 4096)) return undefined;
    const n = pick(r, [0, L - 1, L + 1, L]);
    const v = pick(r, [0, 1, 2, 3]);
    const items = Array.from({ length: Math.max(0, n) }, (_, i) => num("i32", i === 0 ? v : 2));
    return {
      what: `${JSON.stringify(key)} = ${Math.max(0, n)} i32 values per layer (${v}, 2, 2, …)`,
      model: (h) => setKv(h, key, VT.array, arr("i32", items)),
    };
  }
  const { type, value, desc, wrongType } = keyValue(r, kv);
  const cur = kv && kv.value.kind === "fixed" ? readFixed(kv.type, kv.value.bytes) : undefined;
  const nv = value.kind === "fixed" ? readFixed(type, value.bytes) : undefined;
  const changed = nv === undefined || cur === undefined || Number(nv) !== Number(cur);
  const readByAll = READ_KEYS.includes(short);
  return {
    what: `${JSON.stringify(key)} = ${desc}`,
    refuse: (wrongType && readByAll) ||
      (SHAPE_KEYS.includes(short) && kv !== undefined && changed),
    model: (h) => setKv(h, key, type, value),
  };
}

/** The `tokenizer.ggml.*` keys. */
function tokenizerOp(r: Rng, g: RawGguf): Op | undefined {
  const P = "tokenizer.ggml.";
  const tokens = findKv(g, `${P}tokens`);
  const n = tokens?.value.kind === "array" ? tokens.value.items.length : 0;
  const modelKv = findKv(g, `${P}model`);
  const model = modelKv?.value.kind === "string" ? dec.decode(modelKv.value.s.bytes) : undefined;
  const edit =
    (key: string, fn: (v: Extract<RawValue, { kind: "array" }>) => void) => (h: RawGguf) => {
      const x = findKv(h, P + key)?.value;
      if (x?.kind === "array") fn(x);
    };
  switch (int(r, 10)) {
    case 0:
      return {
        what: `${P}tokens deleted (${P}model kept)`,
        refuse: findKv(g, `${P}model`) !== undefined,
        model: (h) => deleteKv(h, `${P}tokens`),
      };
    case 1: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ["[] of string", VT.array, arr("string", [])],
        ["an array of u32", VT.array, arr("u32", [num("u32", 1), num("u32", 2)])],
        ['string "a"', VT.string, str("a")],
        ['[["a"]]', VT.array, arr("array", [arr("string", [str("a")])])],
      ]);
      return {
        what: `${P}tokens = ${desc}`,
        refuse: true,
        model: (h) => setKv(h, `${P}tokens`, type, value),
      };
    }
    case 2: {
      if (n < 2) return undefined;
      const i = int(r, n), j = (i + 1 + int(r, n - 1)) % n;
      const how = int(r, 3);
      return {
        what: how === 0
          ? `${P}tokens[${i}] = tokens[${j}] (repeated)`
          : how === 1
          ? `${P}tokens[${i}] = ""`
          : `${P}tokens[${i}] = "\\u0000"`,
        refuse: how === 0,
        model: edit("tokens", (v) => {
          const b = how === 0
            ? (v.items[j] as { s: RawString }).s.bytes.slice()
            : how === 1
            ? new Uint8Array(0)
            : new Uint8Array([0]);
          v.items[i] = str(b);
        }),
      };
    }
    case 3:
    case 4: {
      // token_type / scores: one entry short or long, a wrong element type, odd values.
      const key = pick(r, ["token_type", "scores"]);
      const present = findKv(g, P + key) !== undefined;
      if (!present || n === 0) return undefined;
      const how = int(r, 4);
      if (how <= 1) {
        return {
          what: `${P}${key}: one entry ${how === 0 ? "dropped" : "added"} (tokens has ${n})`,
          refuse: true,
          model: edit(key, (v) => how === 0 ? v.items.pop() : v.items.push(v.items[0])),
        };
      }
      if (how === 2) {
        const elem = pick(r, ["string", "f64", "u64", "bool", "u8"] as const);
        const item = elem === "string" ? str("1") : num(elem, 1);
        return {
          what: `${P}${key}: elements of type ${elem}`,
          refuse: elem === "string" || elem === "bool" ||
            (key === "scores" ? elem === "u64" : elem === "f64"),
          model: edit(key, (v) => {
            v.elem = VT[elem];
            v.items = v.items.map(() => item);
          }),
        };
      }
      const i = int(r, n);
      const val = key === "scores"
        ? pick(r, [NaN, Infinity, -Infinity, 1e30])
        : pick(r, [0, 7, -1, 2 ** 31 - 1, 3, 4, 6]);
      return {
        what: `${P}${key}[${i}] = ${val}`,
        refuse: Number.isNaN(val),
        model: edit(key, (v) => {
          v.items[i] = num(GGUF_VALUE_TYPES[v.elem], val);
        }),
      };
    }
    case 5: {
      const merges = findKv(g, `${P}merges`);
      if (!merges || merges.value.kind !== "array") return undefined;
      const m = merges.value.items.length;
      const bad = pick(r, ["ab", " ab", "a  b", "", " ", "zz qq", "\u0000 \u0000", "Ġ Ġ Ġ"]);
      const i = int(r, Math.max(1, m));
      return {
        what: `${P}merges[${i}] = ${JSON.stringify(bad)}`,
        refuse: true,
        model: edit("merges", (v) => {
          v.items[i] = str(bad);
        }),
      };
    }
    case 6: {
      const v = pick(r, ["bert", "none", "no_vocab", "", "LLAMA", "gpt2", "llama", "t5"]);
      if (v === model) return undefined;
      return {
        what: `${P}model = ${JSON.stringify(v)} (was ${JSON.stringify(model)})`,
        // A "llama" vocabulary may do without scores; "gpt2" needs merges.
        refuse: n > 0 &&
          (v === "gpt2" ? findKv(g, `${P}merges`) === undefined : v !== "llama"),
        model: (h) => setKv(h, `${P}model`, VT.string, str(v)),
      };
    }
    case 7: {
      const v = pick(r, ["qwen2", "llama-bpe", "deepseek-v3", "default", "unknown-pre", ""]);
      return {
        what: `${P}pre = ${JSON.stringify(v)}`,
        refuse: n > 0 && model === "gpt2" && (v === "" || v === "unknown-pre"),
        model: (h) => setKv(h, `${P}pre`, VT.string, str(v)),
      };
    }
    case 8: {
      const key = pick(r, ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"]);
      const [desc, type, value, bad] = pick<[string, number, RawValue, boolean]>(r, [
        [`u32 ${n}`, VT.u32, num("u32", n), false],
        [`u32 ${n - 1}`, VT.u32, num("u32", n - 1), false],
        ["u32 4294967295", VT.u32, num("u32", 2 ** 32 - 1), false],
        ["i32 -1", VT.i32, num("i32", -1), true],
        ["u64 2^63", VT.u64, num("u64", 2n ** 63n), true],
        ["f32 1.5", VT.f32, num("f32", 1.5), true],
        ['string "1"', VT.string, str("1"), true],
      ]);
      return {
        what: `${P}${key} = ${desc}`,
        // The tokenizer reads every id; the config only BOS and EOS.
        refuse: bad && (n > 0 || key === "bos_token_id" || key === "eos_token_id"),
        model: (h) => setKv(h, P + key, type, value),
      };
    }
    default: {
      const how = int(r, 3);
      if (how === 0) {
        return {
          what: `${P}add_bos_token = true, ${P}bos_token_id deleted`,
          model: (h) => {
            setKv(h, `${P}add_bos_token`, VT.bool, num("bool", true));
            deleteKv(h, `${P}bos_token_id`);
          },
        };
      }
      if (how === 1) {
        return {
          what: `${P}add_eos_token = u8 1`,
          refuse: n > 0,
          model: (h) => setKv(h, `${P}add_eos_token`, VT.u8, num("u8", 1)),
        };
      }
      return {
        what: "tokenizer.chat_template = a 1 MB string",
        model: (h) => setKv(h, "tokenizer.chat_template", VT.string, str("{{x}}".repeat(200_000))),
      };
    }
  }
}

/** One mutation for a case (never undefined: falls back to a truncation). */
function genOp(r: Rng, g: RawGguf, s: SeedInfo): Op {
  const hasTokenizer = g.kvs.some((kv) => keyOf(kv).startsWith("tokenizer.ggml."));
  const table: [number, string, () => Op | undefined][] = [
    [2, "preamble", () => preambleOp(r, g)],
    [5, "string", () => stringOp(r, g, s)],
    [5, "value", () => valueOp(r, g)],
    [2, "alignment", () => alignmentOp(r)],
    [7, "tensor", () => tensorOp(r, g, s)],
    [4, "relayout", () => relayoutOp(r, g, s)],
    [4, "bytes", () => byteOp(r)],
    [s.model ? 3 : 1, "data", () => dataOp(r, g, s)],
    [s.model ? 6 : 0, "model-key", () => modelKeyOp(r, g, s)],
    [hasTokenizer ? 5 : 0, "tokenizer", () => tokenizerOp(r, g)],
  ];
  const total = table.reduce((a, [w]) => a + w, 0);
  for (let tries = 0; tries < 20; tries++) {
    let x = r() * total;
    for (const [w, kind, gen] of table) {
      if ((x -= w) >= 0) continue;
      const op = gen();
      if (op) return { ...op, kind: op.kind ?? kind };
      break;
    }
  }
  return { ...byteOp(r), kind: "bytes" };
}

/** A file from a seed and mutations: model mutations in order, then byte mutations. */
function build(
  seed: RawGguf,
  ops: readonly Op[],
): { bytes: Uint8Array; refuse: boolean; what: string[]; exact?: RawGguf } {
  const g = cloneRaw(seed);
  for (const op of ops) op.model?.(g);
  const encoded = encodeRaw(g);
  let { bytes, layout } = encoded;
  let refuse = ops.some((o) => o.refuse);
  const what = ops.map((o) => o.what);
  const byteOps = ops.filter((o) => o.bytes).length;
  ops.forEach((op, i) => {
    if (!op.bytes) return;
    const out = op.bytes(bytes, layout);
    bytes = out.bytes;
    // After another byte edit the layout is off: only a lone one's verdict holds.
    if (byteOps === 1) refuse ||= out.refuse === true;
    if (out.what) what[i] = out.what;
    layout = { ...layout, size: bytes.length };
  });
  return { bytes, refuse, what, exact: byteOps === 0 && !overridden(g) ? g : undefined };
}

/**
 * Whether `g` writes a count or length other than its own, or a value of
 * another type than the one it declares (then it does not describe its file).
 */
function overridden(g: RawGguf): boolean {
  const value = (type: number, v: RawValue): boolean =>
    v.kind === "raw" ||
    (v.kind === "fixed" && v.bytes.length !== FIXED_SIZE[type]) ||
    (v.kind === "string" && (type !== VT.string || v.s.len !== undefined)) ||
    (v.kind === "array" &&
      (type !== VT.array || v.len !== undefined || v.items.some((x) => value(v.elem, x))));
  return g.tensorCount !== undefined || g.kvCount !== undefined ||
    g.kvs.some((kv) => kv.key.len !== undefined || value(kv.type, kv.value)) ||
    g.tensors.some((t) => t.name.len !== undefined || t.nd !== undefined);
}

/** How a metadata value Kiln read differs from the one written, or undefined. */
function valueDiff(type: number, written: RawValue, read: unknown, depth = 0): string | undefined {
  if (written.kind === "fixed") {
    const v = readFixed(type, written.bytes);
    const want = type === VT.bool ? v === 1 : v;
    const same = typeof want === "number" && typeof read === "number"
      ? Object.is(want, read) || (Number.isNaN(want) && Number.isNaN(read)) || want === read
      : want === read;
    return same ? undefined : `${String(read)}, written ${String(want)}`;
  }
  if (written.kind === "string") {
    const want = dec.decode(written.s.bytes);
    return read === want ? undefined : `a string of ${String(read).length}, written ${want.length}`;
  }
  if (written.kind !== "array" || depth > 8) return undefined;
  const a = read as { type: string; values: unknown[] };
  if (a.type !== GGUF_VALUE_TYPES[written.elem]) return `an array of ${a.type}`;
  if (a.values.length !== written.items.length) return `an array of ${a.values.length}`;
  for (const [i, x] of written.items.entries()) {
    const d = valueDiff(written.elem, x, a.values[i], depth + 1);
    if (d) return `[${i}] ${d}`;
  }
  return undefined;
}

/** How the file Kiln opened differs from `g`, which wrote it, or undefined. */
function headerDiff(f: GgufFile, g: RawGguf): string | undefined {
  if (f.version !== g.version) return `version ${f.version}, written ${g.version}`;
  const keys = [...f.entries.keys()];
  if (keys.length !== g.kvs.length) return `${keys.length} metadata pairs, written ${g.kvs.length}`;
  for (const [i, kv] of g.kvs.entries()) {
    const key = keyOf(kv);
    if (keys[i] !== key) return `metadata pair #${i} is ${JSON.stringify(keys[i])}, written ${key}`;
    const e = f.entries.get(key)!;
    if (VT[e.type] !== kv.type) {
      return `${JSON.stringify(key)} is ${e.type}, written type ${kv.type}`;
    }
    const d = valueDiff(kv.type, kv.value, e.value);
    if (d) return `${JSON.stringify(key)} reads as ${d}`;
  }
  const names = [...f.tensors.keys()];
  if (names.length !== g.tensors.length) {
    return `${names.length} tensors, written ${g.tensors.length}`;
  }
  for (const [i, t] of g.tensors.entries()) {
    const info = f.tensors.get(nameOf(t));
    if (names[i] !== nameOf(t) || !info) return `tensor #${i} is ${JSON.stringify(names[i])}`;
    if (info.dims.join() !== t.dims.join() || info.type.id !== t.type) {
      return `tensor ${
        names[i]
      } reads as ${info.type.name} [${info.dims}], written type ${t.type} ` +
        `[${t.dims}]`;
    }
    if (info.offset - f.dataOffset !== Number(t.offset)) {
      return `tensor ${names[i]} at offset ${info.offset - f.dataOffset}, written ${t.offset}`;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// The oracle

/** Texts the tokenizer encodes and decodes. */
const TEXTS = [
  "Hello world",
  "  The quick brown fox -- jumps over 1234 lazy dogs!\n\tTabs.",
  "héllo wörld 🦩 日本語 \u0000 \ud83d",
  "<s>user</s> <|endoftext|>",
  "",
];

/** Why a tokenizer's output is wrong, or undefined. */
function useTokenizer(tok: Tokenizer): string | undefined {
  for (const text of TEXTS) {
    for (const addSpecialTokens of [true, false]) {
      const ids = tok.encode(text, { addSpecialTokens });
      const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= tok.vocabSize);
      if (bad !== undefined) return `encode gave id ${bad} (vocabSize ${tok.vocabSize})`;
      if (typeof tok.decode(ids) !== "string") return "decode did not return a string";
    }
  }
  // Every token decodes (a mutated one too), alone and all together.
  const all = Array.from({ length: Math.min(tok.vocabSize, 1024) }, (_, i) => i);
  if (typeof tok.decode(all) !== "string") return "decode did not return a string";
  return undefined;
}

/** The result of a case, with the step that ended it. */
export interface GgufCaseResult extends CaseResult {
  /** The step that refused the file (`open`, `model`, `config`, `tokenizer`, `run`). */
  step?: string;
  /** The mutations' families, `+`-joined. */
  kinds?: string;
}

/** Runs the pipeline on `path`: every step succeeds or refuses properly. */
async function pipeline(
  path: string,
  model: boolean,
  run: boolean,
  what: string,
  written?: RawGguf,
): Promise<GgufCaseResult> {
  const steps: [string, () => Promise<string | undefined>][] = [
    ["open", async () => {
      using f = await GgufFile.open(path);
      // What was written is what is read (when the fields describe the file exactly).
      const diff = written && headerDiff(f, written);
      if (diff) return `the header read differs from the one written: ${diff}`;
      for (const [name, t] of f.tensors) {
        const raw = await f.read(name);
        if (raw.length !== t.bytes) return `read(${name}) gave ${raw.length} bytes, not ${t.bytes}`;
        if (t.offset + t.bytes > f.size || t.offset < f.dataOffset) {
          return `accepted tensor ${name} at bytes ${t.offset}..${t.offset + t.bytes} of ${f.size}`;
        }
        if (["f32", "f16", "bf16"].includes(t.type.name)) await f.readF32(name);
      }
      return undefined;
    }],
  ];
  if (model) {
    steps.push(
      ["model", async () => {
        {
          using m = await openGgufModel(path);
          for (const [name, t] of m.tensors) {
            const b = await m.read(name);
            if (b.length !== t.bytes) {
              return `model.read(${name}) gave ${b.length} bytes, not ${t.bytes}`;
            }
          }
        }
        using w = await GgufCheckpoint.open(path);
        for (const name of w.tensors.keys()) await w.readAs(name, "f32");
        return undefined;
      }],
      ["config", async () => {
        await readModelConfig(path);
        return undefined;
      }],
      ["tokenizer", async () => {
        const tok = await modelTokenizer(path);
        return tok ? useTokenizer(tok) : undefined;
      }],
    );
    if (run) {
      steps.push(["run", async () => {
        const m = await loadModel(path, { device: cpuDevice(), quiet: true, maxSeq: 8 });
        try {
          const V = m.config.vocabSize;
          const logits = await m.forward([1 % V, 2 % V]);
          const bad = logits.findIndex((x) => !Number.isFinite(x));
          if (bad >= 0) {
            return `forward gave non-finite logits (${logits[bad]} at ${bad} of ${logits.length})`;
          }
        } finally {
          m.dispose();
        }
        return undefined;
      }]);
    }
  }
  for (const [step, fn] of steps) {
    let wrong: string | undefined;
    try {
      wrong = await fn();
    } catch (e) {
      return { ...judgeError(e, [path], what), step };
    }
    if (wrong) return { outcome: "failure", failure: `wrong success: ${wrong}`, what, step };
  }
  return { outcome: "ok", what };
}

// ---------------------------------------------------------------------------
// The worker

/** What the parent asks a worker to run. */
interface GgufWorkerRequest {
  seeds: GgufSeed[];
  seed: number;
  start: number;
  end: number;
  dir: string;
  runFraction: number;
}

/** What a worker reports. */
type GgufWorkerMessage =
  | { type: "start"; index: number; budget: number }
  | { type: "what"; what: string }
  | { type: "done"; index: number; result: GgufCaseResult }
  | { type: "finished" };

/** External memory a case may leave behind before it counts as a runaway allocation. */
const MAX_EXTERNAL = 512 * 1024 * 1024;

/** The generator of case `index` of a run. */
const rngOf = (seed: number, index: number) => caseRng(seed, "gguf", index);

/** Picks the seed and the mutations of one case. */
function plan(
  r: Rng,
  seeds: readonly SeedInfo[],
  runFraction: number,
): { s: SeedInfo; ops: Op[]; run: boolean } {
  const models = seeds.filter((s) => s.model);
  const s = models.length && chance(r, 0.8) ? pick(r, models) : pick(r, seeds);
  const g = cloneRaw(s.raw);
  const ops: Op[] = [];
  const n = chance(r, 0.7) ? 1 : 2 + int(r, 2);
  for (let k = 0; k < n; k++) {
    const op = genOp(r, g, s);
    ops.push(op);
    op.model?.(g);
  }
  return { s, ops, run: chance(r, runFraction) || ops.some((o) => o.run) };
}

async function runCase(
  s: SeedInfo,
  ops: readonly Op[],
  run: boolean,
  path: string,
  note?: (what: string) => void,
): Promise<GgufCaseResult> {
  const b = build(s.raw, ops);
  const what = `${s.name}: ${b.what.join("; ")}${run ? " (run)" : ""}`;
  note?.(what);
  await Deno.writeFile(path, b.bytes);
  const kinds = ops.map((o) => o.kind ?? "?").join("+");
  try {
    const result = await pipeline(path, s.model, run, what, b.exact);
    if (result.outcome === "ok" && b.refuse) {
      return { ...result, kinds, outcome: "failure", failure: ACCEPTED };
    }
    return { ...result, kinds };
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** The failure of a file accepted although a mutation made it invalid. */
const ACCEPTED = "accepted a file it must refuse";

/** The kind of a failure, for shrinking and grouping: the reason and the error class. */
function kindOf(r: GgufCaseResult): string {
  return `${(r.failure ?? "").replace(/\d+/g, "N").slice(0, 40)}|${r.errorClass ?? ""}`;
}

/** A failing case of several mutations, shrunk to one that fails the same way alone. */
async function shrink(
  s: SeedInfo,
  ops: readonly Op[],
  run: boolean,
  path: string,
  result: GgufCaseResult,
): Promise<GgufCaseResult> {
  if (ops.length < 2) return result;
  for (const op of ops) {
    const alone = await runCase(s, [op], run || op.run === true, path);
    if (alone.outcome === "failure" && kindOf(alone) === kindOf(result)) {
      return { ...alone, what: `${alone.what} [shrunk from: ${result.what}]` };
    }
  }
  // Each mutation that must be refused is refused alone: together they undid
  // each other (the data laid out again repairs an offset, a removed tensor
  // takes its bad offset along).
  if (result.failure === ACCEPTED) {
    return {
      ...result,
      outcome: "ok",
      failure: undefined,
      what: `${result.what} (accepted: the mutations undo each other's refusals)`,
    };
  }
  return result;
}

function workerMain(): void {
  const scope = globalThis as unknown as {
    onmessage: (e: MessageEvent<GgufWorkerRequest>) => void;
    postMessage: (m: GgufWorkerMessage) => void;
  };
  const post = (m: GgufWorkerMessage) => scope.postMessage(m);
  scope.onmessage = async (e) => {
    const req = e.data;
    const seeds: SeedInfo[] = [];
    for (const s of req.seeds) {
      const raw = decodeRaw(await Deno.readFile(s.path));
      const arch = findKv(raw, "general.architecture");
      seeds.push({
        name: s.name,
        model: s.model,
        raw,
        arch: arch?.value.kind === "string" ? dec.decode(arch.value.s.bytes) : undefined,
      });
    }
    for (let i = req.start; i < req.end; i++) {
      const r = rngOf(req.seed, i);
      let planned: ReturnType<typeof plan>;
      try {
        planned = plan(r, seeds, req.runFraction);
      } catch (err) {
        post({ type: "start", index: i, budget: 1 });
        const failure = `fuzzer error: ${err instanceof Error ? err.stack : String(err)}`;
        post({ type: "done", index: i, result: { outcome: "failure", failure, what: "(plan)" } });
        continue;
      }
      const { s, ops, run } = planned;
      post({ type: "start", index: i, budget: run ? 5 : 1 });
      const path = join(req.dir, `case${i}.gguf`);
      let result: GgufCaseResult;
      try {
        result = await runCase(s, ops, run, path, (what) => post({ type: "what", what }));
        if (result.outcome === "failure") result = await shrink(s, ops, run, path, result);
      } catch (err) {
        // The fuzzer's own code failed (a mutation that cannot apply): report it as such.
        result = {
          outcome: "failure",
          failure: `fuzzer error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`,
          what: `${s.name}: ${ops.map((o) => o.what).join("; ")}`,
        };
      }
      const external = Deno.memoryUsage().external;
      if (external > MAX_EXTERNAL && result.outcome !== "failure") {
        result = {
          ...result,
          outcome: "failure",
          failure: `${(external / 2 ** 20).toFixed(0)} MiB of array buffers allocated`,
        };
      }
      post({ type: "done", index: i, result });
    }
    post({ type: "finished" });
  };
}

/** Whether this module runs as the fuzzer's worker (it is loaded as one, nowhere else). */
const IN_WORKER = "WorkerGlobalScope" in globalThis;

if (IN_WORKER) workerMain();

// ---------------------------------------------------------------------------
// The parent

/** Options of {@linkcode runGgufFuzz}. */
export interface GgufFuzzOptions {
  /** Cases (default 10,000, or no limit when `minutes` is given). */
  cases?: number;
  /** Stop starting new cases after this many minutes. */
  minutes?: number;
  /** First case index (default 0); with `cases: 1`, replays one case. */
  first?: number;
  /** Seed of the run (default 1). */
  seed?: number;
  /** Time limit of one case in milliseconds (default 2000; cases that load the model get 5×). */
  timeoutMs?: number;
  /** Fraction of cases that also load and run the model (default 1/8; data mutations always do). */
  runFraction?: number;
  /** Report known issues apart from the failures (default true). */
  known?: boolean;
  /** Told about each case as it ends. */
  onCase?: (index: number, result: GgufCaseResult) => void;
}

/** A case that found a bug. */
export interface GgufFailure {
  /** The case index (replay with `--case=<index>` and the run's `--seed`). */
  index: number;
  /** What went wrong. */
  failure: string;
  /** The mutation (shrunk when the case had several). */
  what: string;
  /** The error's class and message, when there was one. */
  error?: string;
  /** The step where it happened. */
  step?: string;
  /** The mutations' families. */
  kinds?: string;
  /** The id of the known issue it is an instance of. */
  known?: string;
}

/**
 * Bugs the fuzzer found outside the GGUF reader (app/model, app/tokenizer),
 * reported apart from the failures — counted, with an example — until fixed:
 * delete an entry with its fix, and the cases count as failures again.
 */
export const KNOWN_ISSUES: readonly {
  id: string;
  about: string;
  match: (f: GgufFailure) => boolean;
}[] = [
  {
    id: "nan-logits-from-finite-weights",
    about: "app/model: finite but extreme weights (±3e38, 1e30, f16 65504 block scales) " +
      "overflow in the forward pass, which returns NaN logits without an error",
    match: (f) =>
      f.failure.startsWith("wrong success: forward gave non-finite logits") &&
      /data\/(extreme|flip)/.test(f.kinds ?? ""),
  },
];

/** Failures of one kind: the same reason, error class and message (numbers and paths aside). */
export interface GgufFailureGroup {
  /** The normalized reason and message. */
  signature: string;
  /** How many cases. */
  count: number;
  /** The case with the shortest description. */
  example: GgufFailure;
}

/** What {@linkcode runGgufFuzz} found. */
export interface GgufFuzzReport {
  /** Cases, accepted, refused by error class, failures. */
  counts: LoaderCounts;
  /** Refusals by the step that refused. */
  steps: Record<string, number>;
  /** Every failing case. */
  failures: GgufFailure[];
  /** Failures grouped by kind. */
  groups: GgufFailureGroup[];
  /** Failures that are known issues (not counted as failures), by issue id. */
  known: GgufFailureGroup[];
  /** Wall time of the run (seeds included). */
  seconds: number;
}

const WORKER = new URL("./gguf_loaders.ts", import.meta.url);

/** The signature of a failure, for grouping. */
function signature(f: GgufFailure): string {
  const msg = (f.error ?? "")
    .replace(/^[^:]*\.gguf(?: \([^)]*\))?: /, "")
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\d+/g, "N")
    .slice(0, 140);
  return `${f.failure.replace(/\d+/g, "N").slice(0, 80)} @${f.step ?? "?"} ${msg} [${
    f.kinds ?? "?"
  }]`;
}

/**
 * Runs the GGUF fuzzer: writes the seeds, runs cases in workers, and reports
 * counts, failures and their groups (it throws only when the fuzzer itself
 * cannot run).
 *
 * @example
 * ```ts ignore
 * import { runGgufFuzz } from "./gguf_loaders.ts";
 * const report = await runGgufFuzz({ cases: 300, seed: 7 });
 * report.failures.length; // 0
 * ```
 */
export async function runGgufFuzz(options: GgufFuzzOptions = {}): Promise<GgufFuzzReport> {
  const t0 = performance.now();
  const first = options.first ?? 0;
  const end = first +
    (options.cases ?? (options.minutes === undefined ? 10_000 : Number.MAX_SAFE_INTEGER));
  const deadline = options.minutes === undefined ? Infinity : t0 + options.minutes * 60_000;
  const counts: LoaderCounts = { cases: 0, ok: 0, errors: {}, failures: 0 };
  const steps: Record<string, number> = {};
  const failures: GgufFailure[] = [];
  const knownFailures: GgufFailure[] = [];
  const root = await Deno.makeTempDir({ prefix: "kiln_fuzz_gguf_" });
  try {
    const seedDir = join(root, "seeds");
    await Deno.mkdir(seedDir);
    const seeds = await writeGgufSeeds(seedDir);
    const record = (index: number, result: GgufCaseResult) => {
      counts.cases++;
      if (result.outcome === "ok") counts.ok++;
      else if (result.outcome === "error") {
        const cls = result.errorClass ?? "?";
        counts.errors[cls] = (counts.errors[cls] ?? 0) + 1;
        steps[result.step ?? "?"] = (steps[result.step ?? "?"] ?? 0) + 1;
      } else {
        const f: GgufFailure = {
          index,
          failure: result.failure ?? "?",
          what: result.what,
          error: result.errorClass ? `${result.errorClass}: ${result.message}` : undefined,
          step: result.step,
          kinds: result.kinds,
        };
        f.known = options.known === false ? undefined : KNOWN_ISSUES.find((k) => k.match(f))?.id;
        if (f.known) knownFailures.push(f);
        else {
          counts.failures++;
          failures.push(f);
        }
      }
      options.onCase?.(index, result);
    };
    let next = first;
    for (let run = 0; next < end && performance.now() < deadline; run++) {
      const dir = join(root, `run-${run}`);
      await Deno.mkdir(dir);
      next = await runWorker(
        {
          seeds,
          seed: options.seed ?? 1,
          start: next,
          end,
          dir,
          runFraction: options.runFraction ?? 1 / 8,
        },
        options.timeoutMs ?? 2000,
        deadline,
        record,
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  return {
    counts,
    steps,
    failures,
    groups: group(failures, signature),
    known: group(knownFailures, (f) => f.known!),
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Failures grouped by `key`, biggest group first, each with its shortest case. */
function group(
  failures: readonly GgufFailure[],
  key: (f: GgufFailure) => string,
): GgufFailureGroup[] {
  const groups = new Map<string, GgufFailureGroup>();
  for (const f of failures) {
    const sig = key(f);
    const g = groups.get(sig);
    if (!g) groups.set(sig, { signature: sig, count: 1, example: f });
    else {
      g.count++;
      if (f.what.length < g.example.what.length) g.example = f;
    }
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

/** Runs cases in one worker until they are done, the deadline passes, one hangs or the worker dies. */
function runWorker(
  req: GgufWorkerRequest,
  timeoutMs: number,
  deadline: number,
  record: (index: number, result: GgufCaseResult) => void,
): Promise<number> {
  const worker = new Worker(WORKER, { type: "module" });
  return new Promise((resolve) => {
    let current = req.start;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let what = "(worker starting)";
    const finish = (next: number) => {
      clearTimeout(timer);
      worker.terminate();
      resolve(next);
    };
    const arm = (ms: number, onTimeout: () => void) => {
      clearTimeout(timer);
      timer = setTimeout(onTimeout, ms);
    };
    arm(120_000, () => {
      record(current, { outcome: "failure", failure: "worker did not start", what });
      finish(req.end);
    });
    worker.onmessage = (e: MessageEvent<GgufWorkerMessage>) => {
      const m = e.data;
      if (m.type === "start") {
        current = m.index;
        what = `case ${m.index}`;
        arm(timeoutMs * m.budget, () => {
          record(current, {
            outcome: "failure",
            failure: `hang (over ${timeoutMs * m.budget} ms)`,
            what,
          });
          finish(current + 1);
        });
      } else if (m.type === "what") {
        what = m.what;
      } else if (m.type === "done") {
        clearTimeout(timer);
        record(m.index, m.result);
        if (m.result.failure?.includes("array buffers")) finish(m.index + 1);
        else if (performance.now() > deadline) finish(req.end);
      } else finish(req.end);
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      record(current, { outcome: "failure", failure: `crash: ${e.message}`, what });
      finish(current + 1);
    };
    worker.postMessage(req);
  });
}

/** The report's lines: counts, refusals by step, and each group of failures. */
export function formatGgufReport(report: GgufFuzzReport, seed = 1): string[] {
  const c = report.counts;
  const errors = Object.entries(c.errors).sort().map(([k, v]) => `${k} ${v}`).join(", ");
  const steps = Object.entries(report.steps).map(([k, v]) => `${k} ${v}`).join(", ");
  const known = report.known.reduce((a, g) => a + g.count, 0);
  const lines = [
    `gguf: ${c.cases} cases — ${c.ok} loaded, ${c.cases - c.ok - c.failures - known} refused (${
      errors || "none"
    }), ${c.failures} failures${known ? `, ${known} known issues` : ""}`,
    `gguf: refused at step: ${steps || "none"}`,
  ];
  for (const g of report.known) {
    const about = KNOWN_ISSUES.find((k) => k.id === g.signature)?.about;
    lines.push(
      `KNOWN gguf ×${g.count} ${g.signature}: ${about}`,
      `  e.g. ${g.example.what}`,
      `  replay: deno run -A tools/fuzz/gguf_loaders.ts --case=${g.example.index} --seed=${seed}`,
    );
  }
  for (const g of report.groups) {
    const f = g.example;
    lines.push(
      `FAIL gguf ×${g.count}: ${f.failure}${f.step ? ` (at ${f.step})` : ""}`,
      `  ${f.what}`,
      ...(f.error ? [`  ${f.error}`] : []),
      `  replay: deno run -A tools/fuzz/gguf_loaders.ts --case=${f.index} --seed=${seed}`,
    );
  }
  return lines;
}

if (import.meta.main && !IN_WORKER) {
  const args = new Map(
    Deno.args.map((a) => {
      const [k, v] = a.replace(/^--/, "").split("=");
      return [k, v ?? "true"] as const;
    }),
  );
  const one = args.get("case");
  const verbose = args.has("verbose");
  const seed = Number(args.get("seed") ?? 1);
  const report = await runGgufFuzz({
    minutes: args.has("minutes") ? Number(args.get("minutes")) : undefined,
    cases: one !== undefined ? 1 : args.has("cases") ? Number(args.get("cases")) : undefined,
    first: one === undefined ? 0 : Number(one),
    seed,
    timeoutMs: Number(args.get("timeout-ms") ?? 2000),
    runFraction: args.has("run-fraction") ? Number(args.get("run-fraction")) : undefined,
    known: !args.has("no-known"),
    onCase: (index, r) => {
      if (verbose || one !== undefined) {
        console.log(`gguf #${index} ${r.outcome}${r.step ? ` at ${r.step}` : ""}: ${r.what}`);
        if (r.errorClass) console.log(`  ${r.errorClass}: ${r.message}`);
        if (r.failure) console.log(`  failure: ${r.failure}`);
      }
    },
  });
  for (const line of formatGgufReport(report, seed)) console.log(line);
  console.log(`gguf: ${report.failures.length} failures in ${report.seconds.toFixed(1)} s`);
  if (report.failures.length) Deno.exit(1);
}
