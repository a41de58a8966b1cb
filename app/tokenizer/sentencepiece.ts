/**
 * A SentencePiece `tokenizer.model` (the protobuf `ModelProto` of Google's
 * sentencepiece, which ERNIE 4.5 and older Llama-family repositories ship
 * instead of a tokenizer.json), read as llama.cpp's converter reads it
 * (`_set_vocab_sentencepiece`): its pieces with their scores and types become
 * a `llama` vocabulary, tokenized as llama.cpp's SentencePiece tokenizer does
 * (`tokenizerFromGguf`). BPE models only, with sentencepiece's identity
 * normalizer and no whitespace folding — what Llama-style models use; a
 * unigram model or an NFKC normalizer would tokenize differently, and is
 * refused by name.
 *
 * @module
 */

import { tokenizerFromGguf } from "../gguf/tokenizer.ts";
import type { GgufValue } from "../gguf/value.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** One piece of the vocabulary. */
interface Piece {
  piece: string;
  score: number;
  type: number;
}

/** What Kiln reads of a `ModelProto`. */
interface SentencePieceModel {
  pieces: Piece[];
  /** TrainerSpec.model_type: 1 unigram (the default), 2 BPE, 3 word, 4 char. */
  modelType: number;
  unkId: number;
  bosId: number;
  eosId: number;
  /** NormalizerSpec.name ("" when absent: sentencepiece's default, nmt_nfkc). */
  normalizer: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
}

/** A protobuf reader over `bytes` (`file` names it in errors). */
class Wire {
  at = 0;
  constructor(readonly bytes: Uint8Array, readonly file: string, readonly end = bytes.length) {}

  fail(what: string): never {
    throw new SyntaxError(`${this.file}: not a SentencePiece model (${what} at byte ${this.at})`);
  }

  varint(): bigint {
    let v = 0n, shift = 0n;
    for (;;) {
      if (this.at >= this.end) this.fail("a varint runs past the end");
      const b = this.bytes[this.at++];
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
      if (shift > 63n) this.fail("a varint longer than 10 bytes");
    }
  }

  /** The next field's number and wire type, or undefined at the end. */
  key(): [number, number] | undefined {
    if (this.at >= this.end) return undefined;
    const k = Number(this.varint());
    return [k >>> 3, k & 7];
  }

  /** A length-delimited field's bounds. */
  sub(): Wire {
    const n = Number(this.varint());
    if (this.at + n > this.end) this.fail("a field runs past the end");
    const w = new Wire(this.bytes, this.file, this.at + n);
    w.at = this.at;
    this.at += n;
    return w;
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.at += 8;
    else if (wire === 2) this.sub();
    else if (wire === 5) this.at += 4;
    else this.fail(`wire type ${wire}`);
    if (this.at > this.end) this.fail("a field runs past the end");
  }

  float(): number {
    if (this.at + 4 > this.end) this.fail("a float runs past the end");
    const v = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.at, 4).getFloat32(
      0,
      true,
    );
    this.at += 4;
    return v;
  }

  /** An int32 varint (negative values are 10-byte two's complement). */
  int32(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }

  text(): string {
    const w = this.sub();
    return new TextDecoder("utf-8", { fatal: true }).decode(w.bytes.subarray(w.at, w.end));
  }
}

/**
 * Parses a `tokenizer.model`'s pieces and the trainer and normalizer settings
 * that decide how it tokenizes; a SyntaxError naming `file` for bytes that are
 * not one.
 *
 * @example
 * ```ts ignore
 * const m = parseSentencePiece(await Deno.readFile("tokenizer.model"), "tokenizer.model");
 * m.pieces.length; // the vocabulary size
 * ```
 */
export function parseSentencePiece(bytes: Uint8Array, file: string): SentencePieceModel {
  const w = new Wire(bytes, file);
  const m: SentencePieceModel = {
    pieces: [],
    modelType: 1,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    normalizer: "",
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
  };
  for (let k = w.key(); k; k = w.key()) {
    const [field, wire] = k;
    if (field === 1 && wire === 2) {
      const p = w.sub();
      const piece: Piece = { piece: "", score: 0, type: 1 };
      for (let q = p.key(); q; q = p.key()) {
        if (q[0] === 1 && q[1] === 2) piece.piece = p.text();
        else if (q[0] === 2 && q[1] === 5) piece.score = p.float();
        else if (q[0] === 3 && q[1] === 0) piece.type = Number(p.varint());
        else p.skip(q[1]);
      }
      m.pieces.push(piece);
    } else if (field === 2 && wire === 2) {
      const t = w.sub();
      for (let q = t.key(); q; q = t.key()) {
        if (q[0] === 3 && q[1] === 0) m.modelType = Number(t.varint());
        else if (q[0] === 40 && q[1] === 0) m.unkId = t.int32();
        else if (q[0] === 41 && q[1] === 0) m.bosId = t.int32();
        else if (q[0] === 42 && q[1] === 0) m.eosId = t.int32();
        else t.skip(q[1]);
      }
    } else if (field === 3 && wire === 2) {
      const s = w.sub();
      for (let q = s.key(); q; q = s.key()) {
        if (q[0] === 1 && q[1] === 2) m.normalizer = s.text();
        else if (q[0] === 3 && q[1] === 0) m.addDummyPrefix = s.varint() !== 0n;
        else if (q[0] === 4 && q[1] === 0) m.removeExtraWhitespaces = s.varint() !== 0n;
        else s.skip(q[1]);
      }
    } else w.skip(wire);
  }
  if (m.pieces.length === 0) w.fail("no pieces");
  return m;
}

/**
 * A `tokenizer.model`'s GGUF vocabulary, as llama.cpp's converter writes it
 * (`_set_vocab_sentencepiece`): `tokenizer.ggml.model` "llama", the pieces,
 * their scores and types, the special ids, `add_bos_token` / `add_eos_token`
 * where tokenizer_config.json states them (absent, llama.cpp adds BOS and no
 * EOS) and `add_space_prefix` when the model adds no dummy prefix. Refuses what {@linkcode
 * sentencePieceTokenizer} refuses.
 *
 * @example
 * ```ts ignore
 * const meta = sentencePieceMetadata(await Deno.readFile(path), path, { addBos: true });
 * meta.get("tokenizer.ggml.model"); // "llama"
 * ```
 */
export function sentencePieceMetadata(
  bytes: Uint8Array,
  file: string,
  options: { addBos?: boolean; addEos?: boolean } = {},
): Map<string, GgufValue> {
  const m = parseSentencePiece(bytes, file);
  const refuse = (what: string): never => {
    throw new TypeError(
      `${file}: ${what} is not supported (Kiln reads BPE SentencePiece models with the identity ` +
        `normalizer, as Llama's); write a tokenizer.json with transformers, ` +
        `AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)`,
    );
  };
  if (m.modelType !== 2) {
    refuse(`a ${["", "unigram", "", "word", "char"][m.modelType] ?? "unknown"} model`);
  }
  if (m.normalizer !== "identity") refuse(`the normalizer "${m.normalizer || "nmt_nfkc"}"`);
  if (m.removeExtraWhitespaces) refuse("remove_extra_whitespaces");
  const meta = new Map<string, GgufValue>([
    ["tokenizer.ggml.model", "llama"],
    ["tokenizer.ggml.pre", "default"],
    ["tokenizer.ggml.tokens", { type: "string", values: m.pieces.map((p) => p.piece) }],
    ["tokenizer.ggml.scores", { type: "f32", values: m.pieces.map((p) => p.score) }],
    ["tokenizer.ggml.token_type", { type: "i32", values: m.pieces.map((p) => p.type) }],
  ]);
  // A trainer's id of -1 means none; unknown is 0 unless said (llama.cpp's default too).
  const ids = [["bos", m.bosId], ["eos", m.eosId], ["unknown", m.unkId || -1]] as const;
  for (const [key, v] of ids) {
    if (v >= 0 && v < m.pieces.length) meta.set(`tokenizer.ggml.${key}_token_id`, v);
  }
  // As the converter: the flags tokenizer_config.json states (absent: BOS yes, EOS no).
  if (options.addBos !== undefined) meta.set("tokenizer.ggml.add_bos_token", options.addBos);
  if (options.addEos !== undefined) meta.set("tokenizer.ggml.add_eos_token", options.addEos);
  if (!m.addDummyPrefix) meta.set("tokenizer.ggml.add_space_prefix", false);
  return meta;
}

/**
 * The tokenizer of a `tokenizer.model` (see the module notes): `addBos` and
 * `addEos` as tokenizer_config.json's `add_bos_token` / `add_eos_token`
 * (defaults true and false, Llama's).
 *
 * @example
 * ```ts ignore
 * const tok = sentencePieceTokenizer(await Deno.readFile(path), path, { addBos: true });
 * tok.encode("Hello", { addSpecialTokens: true });
 * ```
 */
export function sentencePieceTokenizer(
  bytes: Uint8Array,
  file: string,
  options: { addBos?: boolean; addEos?: boolean } = {},
): Tokenizer {
  return tokenizerFromGguf(sentencePieceMetadata(bytes, file, options), file);
}
