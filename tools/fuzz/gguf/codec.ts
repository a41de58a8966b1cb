/**
 * A GGUF file as fields, for the GGUF fuzzer (`../gguf_loaders.ts`): a valid
 * seed decoded into its preamble, metadata pairs, tensor infos and data
 * region ({@linkcode decodeRaw}), mutated as fields, and encoded again with the
 * byte offsets of every section ({@linkcode encodeRaw}) — including counts,
 * lengths and value bytes that disagree with what they describe, which a
 * GGUF writer never produces. Also the helpers mutations build values and
 * tensor data with.
 *
 * @module
 */

import type { GgufValueType } from "../../../app/gguf/value.ts";
import { GGUF_VALUE_TYPES } from "../../../app/gguf/value.ts";
import { dequantize, quantize } from "../../../core/quant/codecs.ts";
import {
  ggmlTypeById,
  type GgmlTypeName,
  isQuantFormat,
  type QuantFormat,
} from "../../../core/quant/formats.ts";

/** Encodes keys, names and string values as UTF-8. */
export const enc: TextEncoder = new TextEncoder();
/** Decodes GGUF text as Kiln reads it: a leading BOM is kept, not dropped. */
export const dec: TextDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** A GGUF string: its bytes, and a length prefix to write instead of theirs. */
export interface RawString {
  bytes: Uint8Array;
  len?: bigint;
}

/** A metadata value as stored (a scalar's bytes, a string, an array of values, or raw bytes). */
export type RawValue =
  | { kind: "fixed"; bytes: Uint8Array }
  | { kind: "string"; s: RawString }
  | { kind: "array"; elem: number; len?: bigint; items: RawValue[] }
  | { kind: "raw"; bytes: Uint8Array };

/** An array value. */
export type RawArray = Extract<RawValue, { kind: "array" }>;

/** A metadata pair: key, value type id as stored, value. */
export interface RawKv {
  key: RawString;
  type: number;
  value: RawValue;
}

/** A tensor info: name, dimension count to write (default dims.length), ggml dims, type id, offset. */
export interface RawTensor {
  name: RawString;
  nd?: number;
  dims: bigint[];
  type: number;
  offset: bigint;
}

/** A whole file: preamble, metadata, tensor infos, and the data region after the padding. */
export interface RawGguf {
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
export interface Layout {
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

/** Value type ids by name. */
export const VT = Object.fromEntries(GGUF_VALUE_TYPES.map((t, i) => [t, i])) as Record<
  GgufValueType,
  number
>;
/** Bytes of each fixed-size value type, by type id (0: strings and arrays). */
export const FIXED_SIZE: readonly number[] = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];

/** Decodes a valid GGUF file (a seed: no checks). */
export function decodeRaw(bytes: Uint8Array): RawGguf {
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
export function cloneRaw(g: RawGguf): RawGguf {
  const data = g.data;
  const copy: RawGguf = structuredClone({ ...g, data: new Uint8Array(0) });
  copy.data = data;
  return copy;
}

/** Growable little-endian byte writer. */
export class Out {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  /** Bytes written so far. */
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
  /** Writes a u32. */
  u32(v: number): void {
    const at = this.#room(4);
    this.#view.setUint32(at, v >>> 0, true);
  }
  /** Writes a u64 (wrapped to 64 bits). */
  u64(v: bigint): void {
    const at = this.#room(8);
    this.#view.setBigUint64(at, BigInt.asUintN(64, v), true);
  }
  /** Writes bytes as they are. */
  bytes(b: Uint8Array): void {
    const at = this.#room(b.length);
    this.#buf.set(b, at);
  }
  /** Writes a string: its length prefix (or the one to write instead), then its bytes. */
  string(s: RawString): void {
    this.u64(s.len ?? BigInt(s.bytes.length));
    this.bytes(s.bytes);
  }
  /** Writes a metadata value (without its type id). */
  value(v: RawValue): void {
    if (v.kind === "fixed" || v.kind === "raw") this.bytes(v.bytes);
    else if (v.kind === "string") this.string(v.s);
    else {
      this.u32(v.elem);
      this.u64(v.len ?? BigInt(v.items.length));
      for (const x of v.items) this.value(x);
    }
  }
  /** Writes zeros up to byte `to`. */
  pad(to: number): void {
    this.#room(to - this.length);
  }
  /** The bytes written. */
  done(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

/** Bytes of tensor `t` as its dims and type say, or undefined when they do not say. */
export function tensorBytes(t: RawTensor): number | undefined {
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
export function encodeRaw(g: RawGguf): { bytes: Uint8Array; layout: Layout } {
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

/** A scalar value of `type` holding `v`. */
export const num = (type: GgufValueType, v: number | bigint | boolean): RawKv["value"] => ({
  kind: "fixed",
  bytes: fixedBytes(type, v),
});
/** A string value. */
export const str = (s: string | Uint8Array): RawValue => ({
  kind: "string",
  s: { bytes: typeof s === "string" ? enc.encode(s) : s },
});
/** An array value of `elem` elements. */
export const arr = (elem: GgufValueType, items: RawValue[]): RawValue => ({
  kind: "array",
  elem: VT[elem],
  items,
});

/** A scalar's value, read back from its bytes. */
export function readFixed(type: number, bytes: Uint8Array): number | bigint | undefined {
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

/** A metadata pair's key as text. */
export const keyOf = (kv: RawKv): string => dec.decode(kv.key.bytes);
/** A tensor's name as text. */
export const nameOf = (t: RawTensor): string => dec.decode(t.name.bytes);
/** The first metadata pair of `key`. */
export const findKv = (g: RawGguf, key: string): RawKv | undefined =>
  g.kvs.find((kv) => keyOf(kv) === key);
/** The first tensor named `name`. */
export const findTensor = (g: RawGguf, name: string): RawTensor | undefined =>
  g.tensors.find((t) => nameOf(t) === name);
/** The value of a scalar pair, or undefined (no pair, or not a scalar). */
export const fixedOf = (kv: RawKv | undefined): number | bigint | undefined =>
  kv?.value.kind === "fixed" ? readFixed(kv.type, kv.value.bytes) : undefined;
/** The text of a string pair, or undefined (no pair, or not a string). */
export const stringOf = (kv: RawKv | undefined): string | undefined =>
  kv?.value.kind === "string" ? dec.decode(kv.value.s.bytes) : undefined;

/** A field mutation that applies `fn` to the array value of `key`, when it is one. */
export const editArray = (key: string, fn: (v: RawArray) => void) => (g: RawGguf): void => {
  const x = findKv(g, key)?.value;
  if (x?.kind === "array") fn(x);
};

/** Sets `key` to `type`/`value`, in place or appended. */
export function setKv(g: RawGguf, key: string, type: number, value: RawValue): void {
  const kv = findKv(g, key);
  if (kv) {
    kv.type = type;
    kv.value = value;
  } else g.kvs.push({ key: { bytes: enc.encode(key) }, type, value });
}

/** Removes every pair of `key`. */
export function deleteKv(g: RawGguf, key: string): void {
  g.kvs = g.kvs.filter((kv) => keyOf(kv) !== key);
}

/** Lays the tensors' data out again, each from `data(t, old bytes)`, in order, aligned to `g.align`. */
export function relayout(
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
export function fit(bytes: Uint8Array | undefined, n: number): Uint8Array {
  const out = new Uint8Array(n);
  if (bytes) out.set(bytes.subarray(0, n));
  return out;
}

/** f32 values of a tensor's bytes in a type Kiln reads, or undefined. */
export function valuesOf(type: number, bytes: Uint8Array, elems: number): Float32Array | undefined {
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
export function encodeValues(name: GgmlTypeName, values: Float32Array): Uint8Array {
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
