/**
 * Parsing and validation of a GGUF header (ggml's `docs/gguf.md`): the magic and
 * version, the metadata key-value pairs and the tensor infos, then the tensor
 * data's layout. Everything is checked before a tensor is read; each error is one
 * line naming the file, the key or tensor, the byte, and what was expected.
 *
 * @module
 */

import { ggmlTypeById, type GgmlTypeInfo } from "../../core/quant/formats.ts";
import { quote } from "../safetensors/header.ts";
import { GgufCursor, metadataLabel, NeedMore } from "./decode.ts";
import { describeEntry } from "./metadata.ts";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  type GgufHeader,
  type GgufTensorInfo,
  isGgufAlignment,
  SUPPORTED_GGML_TYPES,
} from "./types.ts";
import type { GgufEntry } from "./value.ts";

// type and a 1-byte value.
const MIN_TENSOR_INFO_BYTES = 32;
const MIN_KV_BYTES = 13;

interface Pending {
  name: string;
  dims: number[];
  type: GgmlTypeInfo;
  rel: number;
  bytes: number;
}

/**
 * An incremental GGUF header parser: push the file's first bytes, call
 * `advance()`, and push as many more as it asks for until it answers 0; then
 * `finish()` checks the tensors' layout and returns the header.
 *
 * @example
 * ```ts ignore
 * import { GgufHeaderParser } from "./header.ts";
 * const bytes = await Deno.readFile("m.gguf");
 * const p = new GgufHeaderParser("m.gguf", bytes.length);
 * p.push(bytes.subarray(0, 1024));
 * const more = p.advance(); // bytes still needed past the 1024 held, or 0
 * ```
 */
export class GgufHeaderParser {
  readonly #c: GgufCursor;
  #stage: "preamble" | "metadata" | "tensors" | "done" = "preamble";
  #version: 2 | 3 = 3;
  #kvCount = 0;
  #tensorCount = 0;
  #alignment = GGUF_DEFAULT_ALIGNMENT;
  readonly #entries = new Map<string, GgufEntry>();
  readonly #pending: Pending[] = [];
  readonly #index = new Map<string, number>();

  /** A parser for the file `path` of `fileSize` bytes. */
  constructor(path: string, fileSize: number) {
    this.#c = new GgufCursor(path, fileSize);
  }

  /** How many of the file's first bytes have been pushed. */
  get held(): number {
    return this.#c.held;
  }

  /** Metadata pairs and tensor infos parsed so far, and how many there are in all. */
  get progress(): [done: number, total: number] {
    return [this.#entries.size + this.#pending.length, this.#kvCount + this.#tensorCount];
  }

  /** Appends the file's next bytes. */
  push(chunk: Uint8Array): void {
    this.#c.push(chunk);
  }

  /**
   * Parses what the bytes held allow; returns how many more bytes it needs at
   * least, or 0 when the header is complete.
   */
  advance(): number {
    const c = this.#c;
    while (this.#stage !== "done") {
      const start = c.pos;
      try {
        this.#step();
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        // Entries are parsed whole: start this one again once more bytes are held.
        c.pos = start;
        return e.end - c.held;
      }
    }
    return 0;
  }

  /** Checks the tensor data's layout and returns the header (after `advance()` gave 0). */
  finish(): GgufHeader {
    const c = this.#c;
    if (this.#stage !== "done") throw new TypeError(`${c.path}: GGUF header not fully parsed`);
    const align = this.#alignment;
    const dataOffset = Math.ceil(c.pos / align) * align;
    const tensors = new Map<string, GgufTensorInfo>();
    for (const t of this.#pending) {
      const offset = dataOffset + t.rel;
      const end = offset + t.bytes;
      if (end > c.fileSize) {
        throw new RangeError(
          `${c.path}: tensor ${quote(t.name)} data (bytes ${offset}..${end}, ${t.type.name} ` +
            `${show(t.dims)}) runs past the end of the file (${c.fileSize} bytes); ` +
            `was it truncated?`,
        );
      }
      tensors.set(t.name, {
        name: t.name,
        dims: Object.freeze(t.dims),
        shape: Object.freeze(t.dims.toReversed()),
        type: t.type,
        offset,
        bytes: t.bytes,
      });
    }
    const spans = [...tensors.values()].filter((t) => t.bytes > 0)
      .sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < spans.length; i++) {
      const a = spans[i - 1];
      const b = spans[i];
      if (b.offset < a.offset + a.bytes) {
        throw new RangeError(
          `${c.path}: tensor ${quote(b.name)} data (bytes ${b.offset}..${b.offset + b.bytes}) ` +
            `overlaps tensor ${quote(a.name)} (bytes ${a.offset}..${a.offset + a.bytes})`,
        );
      }
    }
    return {
      version: this.#version,
      entries: this.#entries,
      tensors,
      alignment: align,
      dataOffset,
    };
  }

  /** Parses one unit: the preamble, one metadata pair or one tensor info. */
  #step(): void {
    if (this.#stage === "preamble") this.#preamble();
    else if (this.#stage === "metadata") this.#metadata();
    else this.#tensorInfo();
    if (this.#stage === "metadata" && this.#entries.size === this.#kvCount) {
      this.#alignment = this.#readAlignment();
      this.#stage = "tensors";
    }
    if (this.#stage === "tensors" && this.#pending.length === this.#tensorCount) {
      this.#stage = "done";
    }
  }

  #preamble(): void {
    const c = this.#c;
    const magic = c.bytes(c.take(4, "the magic"), 4);
    if (!magic.every((b, i) => b === GGUF_MAGIC[i])) {
      const hex = [...magic].map((b) => b.toString(16).padStart(2, "0")).join(" ");
      throw new SyntaxError(
        `${c.path}: not a GGUF file: bytes 0..4 are ${hex}, expected the magic "GGUF" ` +
          `(47 47 55 46)`,
      );
    }
    const version = c.u32("the version");
    if (version === 2 || version === 3) {
      this.#version = version;
    } else if (version === 1) {
      throw new RangeError(
        `${c.path}: GGUF version 1 (bytes 4..8; the format's first version, with 32-bit ` +
          `counts) is not supported, expected version 2 or 3; convert the model again ` +
          `with a current llama.cpp`,
      );
    } else if ((version & 0xffff) === 0 && [1, 2, 3].includes(version >>> 24)) {
      throw new RangeError(
        `${c.path}: GGUF version reads as ${version} (bytes 4..8): a big-endian file, which is ` +
          `not supported; expected a little-endian file of version 2 or 3`,
      );
    } else {
      throw new RangeError(
        `${c.path}: GGUF version ${version} (bytes 4..8) is not supported, expected 2 or 3`,
      );
    }
    const tensorCount = c.u64("the tensor count");
    const kvCount = c.u64("the metadata count");
    this.#tensorCount = c.checkCount(tensorCount, MIN_TENSOR_INFO_BYTES, 8, "the tensor count");
    this.#kvCount = c.checkCount(kvCount, MIN_KV_BYTES, 16, "the metadata count");
    // Each count may fit on its own while both together do not.
    const need = this.#tensorCount * MIN_TENSOR_INFO_BYTES + this.#kvCount * MIN_KV_BYTES;
    const left = c.fileSize - c.pos;
    if (need > left) {
      throw new RangeError(
        `${c.path}: ${this.#tensorCount} tensors and ${this.#kvCount} metadata pairs (bytes ` +
          `8..24) need at least ${need} bytes, past the end of the file (${left} bytes left ` +
          `after byte 24); was it truncated?`,
      );
    }
    this.#stage = "metadata";
  }

  #metadata(): void {
    const c = this.#c;
    const i = this.#entries.size;
    const at = c.pos;
    const key = c.string(`the key of metadata pair #${i}`, true);
    const what = metadataLabel(key);
    if (this.#entries.has(key)) {
      throw new SyntaxError(
        `${c.path}: ${what} appears twice (again as pair #${i} at byte ${at}); keys must be unique`,
      );
    }
    const type = c.valueType(`the value type of ${what}`);
    const start = c.pos;
    c.skip(type, what);
    c.pos = start;
    const value = c.value(type, what);
    this.#entries.set(key, { type, value });
  }

  /** `general.alignment`, which must be a u32 the spec allows. */
  #readAlignment(): number {
    const c = this.#c;
    const e = this.#entries.get("general.alignment");
    if (!e) return GGUF_DEFAULT_ALIGNMENT;
    if (e.type !== "u32") {
      throw new TypeError(
        `${c.path}: metadata "general.alignment" is ${describeEntry(e)}, expected a u32`,
      );
    }
    const v = e.value as number;
    if (!isGgufAlignment(v)) {
      throw new RangeError(
        `${c.path}: metadata "general.alignment" is ${v}, expected a power of two that is a ` +
          `multiple of 8 (e.g. 32)`,
      );
    }
    return v;
  }

  #tensorInfo(): void {
    const c = this.#c;
    const i = this.#pending.length;
    const at = c.pos;
    const name = c.string(`the name of tensor info #${i}`, true);
    const what = `tensor ${quote(name)}`;
    const first = this.#index.get(name);
    if (first !== undefined) {
      throw new SyntaxError(
        `${c.path}: ${what} appears twice in the tensor infos (#${first} and #${i} at byte ` +
          `${at}); names must be unique`,
      );
    }
    const ndAt = c.pos;
    const nd = c.u32(`the dimension count of ${what}`);
    if (nd < 1 || nd > 4) {
      throw new RangeError(
        `${c.path}: ${what} has ${nd} dimensions (byte ${ndAt}), expected 1 to 4`,
      );
    }
    const dims: number[] = [];
    let numel = 1;
    for (let d = 0; d < nd; d++) {
      const dAt = c.pos;
      // Read signed, as ggml does, so a negative size reads as one.
      const v = c.i64(() => `dims[${d}] of ${what}`);
      if (v <= 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new RangeError(
          `${c.path}: ${what} dims[${d}] is ${v} (byte ${dAt}), expected a positive size` +
            (v > 0n ? " below 2^53" : ""),
        );
      }
      dims.push(Number(v));
      numel *= Number(v);
      if (numel > Number.MAX_SAFE_INTEGER) {
        throw new RangeError(
          `${c.path}: ${what} dims ${show(dims)} hold more than 2^53 elements (byte ${dAt})`,
        );
      }
    }
    const typeAt = c.pos;
    const id = c.u32(`the type of ${what}`);
    const type = ggmlTypeById(id);
    if (!type) {
      throw new TypeError(
        `${c.path}: ${what} has type id ${id} (byte ${typeAt}), which is not a ggml type; ` +
          `Kiln reads ${SUPPORTED_GGML_TYPES}`,
      );
    }
    if (!type.supported) {
      throw new TypeError(
        `${c.path}: ${what}: ${type.name} (type id ${id}, byte ${typeAt}) is not supported; ` +
          `Kiln reads ${SUPPORTED_GGML_TYPES}`,
      );
    }
    if (dims[0] % type.blockElems !== 0) {
      throw new RangeError(
        `${c.path}: ${what} is ${type.name} ${show(dims)}, but ne0 (dims[0]) = ${dims[0]} ` +
          `is not a multiple of its ${type.blockElems}-element block`,
      );
    }
    const offAt = c.pos;
    const rel = c.u64(`the data offset of ${what}`);
    if (rel % BigInt(this.#alignment) !== 0n) {
      throw new RangeError(
        `${c.path}: ${what} data offset ${rel} (byte ${offAt}) is not a multiple of the ` +
          `alignment ${this.#alignment}`,
      );
    }
    // Checked against the data's true start in finish(); this early check keeps
    // the offset an exact number.
    if (rel > BigInt(c.fileSize)) {
      throw new RangeError(
        `${c.path}: ${what} data offset ${rel} (byte ${offAt}) runs past the end of the file ` +
          `(${c.fileSize} bytes); was it truncated?`,
      );
    }
    const bytes = (numel / type.blockElems) * type.blockBytes;
    this.#pending.push({ name, dims, type, rel: Number(rel), bytes });
    this.#index.set(name, i);
  }
}

/**
 * Parses and validates a GGUF header held in memory: `bytes` are the file's
 * first bytes (the whole file, or at least its header), `fileSize` the file's
 * size. Errors are those of {@linkcode GgufHeaderParser}.
 *
 * @example
 * ```ts ignore
 * import { parseGgufHeader } from "./header.ts";
 * const bytes = await Deno.readFile("m.gguf");
 * parseGgufHeader("m.gguf", bytes).tensors.size;
 * ```
 */
export function parseGgufHeader(
  path: string,
  bytes: Uint8Array,
  fileSize: number = bytes.length,
): GgufHeader {
  const p = new GgufHeaderParser(path, fileSize);
  p.push(bytes);
  const more = p.advance();
  if (more > 0) {
    throw new RangeError(
      `${path}: the ${bytes.length} bytes given end inside the header (${more} more needed)`,
    );
  }
  return p.finish();
}

/** Dimensions for messages. */
function show(dims: readonly number[]): string {
  return `[${dims.join(", ")}]`;
}
