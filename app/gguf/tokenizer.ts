/**
 * Kiln's {@linkcode Tokenizer} built from a GGUF file's `tokenizer.ggml.*` metadata, so a
 * single .gguf file is a complete model. It reads those keys as llama.cpp does
 * (`src/llama-vocab.cpp`) and expresses the result as the equivalent `tokenizer.json`:
 *
 * - `"llama"`: SentencePiece BPE. Spaces become `▁` (with a leading `▁` on each stretch
 *   of text unless `add_space_prefix` is false), the adjacent pair whose concatenation
 *   is a token with the highest score merges first (equal scores: leftmost first),
 *   characters without a token fall back to `<0xNN>` byte tokens. BOS is added by
 *   default, EOS not.
 * - `"gpt2"`: byte-level BPE with the ranked `tokenizer.ggml.merges`, after the split
 *   regexes that `tokenizer.ggml.pre` names (see {@linkcode GGUF_PRE_TOKENIZERS}).
 *
 * Tokens of type control (3) and unknown (2) are special added tokens and user-defined
 * ones (4) plain added tokens: all are found in text before the model runs, and
 * `splitSpecialTokens` keeps only the user-defined ones, as llama.cpp's
 * `parse_special = false` does. Like llama.cpp, no Unicode normalization is applied
 * (Hugging Face's Qwen and GPT-NeoX files NFC-normalize first).
 *
 * @module
 */

import { Tokenizer, type TokenizerOptions } from "../tokenizer/tokenizer.ts";
import { quote } from "../tokenizer/json.ts";
import type { GgufArray, GgufValue } from "./value.ts";
import { GGUF_PRE_TOKENIZERS, PRE_TOKENIZERS, type PreTokenizerSpec } from "./tokenizer_pre.ts";

/**
 * GGUF's token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
 *
 * @example
 * ```ts
 * import { GGUF_TOKEN_TYPE } from "./tokenizer.ts";
 * GGUF_TOKEN_TYPE.control; // 3
 * ```
 */
export const GGUF_TOKEN_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/**
 * The `tokenizer.ggml.model` values Kiln reads.
 *
 * @example
 * ```ts
 * import { GGUF_TOKENIZER_MODELS } from "./tokenizer.ts";
 * GGUF_TOKENIZER_MODELS.includes("gpt2"); // true
 * ```
 */
export const GGUF_TOKENIZER_MODELS: readonly string[] = ["llama", "gpt2"];

export { GGUF_PRE_TOKENIZERS } from "./tokenizer_pre.ts";

const KEY = "tokenizer.ggml.";
const NUMERIC = new Set(["u8", "i8", "u16", "i16", "u32", "i32", "f32", "f64"]);
const INTEGER = new Set(["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"]);

/** Typed reads of `tokenizer.ggml.*` keys: a wrong type is a TypeError naming file and key. */
class Metadata {
  constructor(readonly map: ReadonlyMap<string, GgufValue>, readonly file: string) {}

  error(key: string, what: string): TypeError {
    return new TypeError(`${this.file}: ${KEY}${key} ${what}`);
  }

  #wrong(key: string, expected: string, v: GgufValue): TypeError {
    return this.error(key, `is not ${expected} (got ${describe(v)})`);
  }

  string(key: string): string | undefined {
    const v = this.map.get(KEY + key);
    if (v === undefined || typeof v === "string") return v;
    throw this.#wrong(key, "a string", v);
  }

  bool(key: string): boolean | undefined {
    const v = this.map.get(KEY + key);
    if (v === undefined || typeof v === "boolean") return v;
    throw this.#wrong(key, "a boolean", v);
  }

  /** A token id (u32 in files; any non-negative integer is taken). */
  id(key: string): number | undefined {
    const v = this.map.get(KEY + key);
    if (v === undefined) return undefined;
    const n = typeof v === "bigint" && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    if (typeof n === "number" && Number.isInteger(n) && n >= 0) return n;
    throw this.#wrong(key, "a token id (u32)", v);
  }

  /** An array whose element type is in `types` and whose values pass `ok`. */
  array<T>(
    key: string,
    expected: string,
    types: ReadonlySet<string>,
    ok: (x: GgufValue) => boolean,
  ): T[] | undefined {
    const v = this.map.get(KEY + key);
    if (v === undefined) return undefined;
    if (!isArray(v) || !types.has(v.type) || !v.values.every(ok)) {
      throw this.#wrong(key, expected, v);
    }
    return v.values as T[];
  }
}

function isArray(v: GgufValue): v is GgufArray {
  return typeof v === "object" && v !== null && typeof v.type === "string" &&
    Array.isArray(v.values);
}

/** A short description of a metadata value for messages. */
function describe(v: GgufValue): string {
  if (isArray(v)) return `an array of ${v.values.length} ${v.type}`;
  if (typeof v === "string") return `string ${quote(v)}`;
  if (typeof v === "bigint") return `integer ${v}`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}

/** The Hugging Face `tokenizer.json` equivalent of a GGUF vocabulary, and the options it needs. */
export interface GgufTokenizerJson {
  /** The `tokenizer.json` document. */
  json: Record<string, unknown>;
  /** Options for {@linkcode Tokenizer.fromJSON}: the file, BOS/EOS and merge priorities. */
  options: TokenizerOptions;
}

/**
 * Builds a {@linkcode Tokenizer} from GGUF metadata (`tokenizer.ggml.*`). `file` only
 * names the file in errors. Throws a TypeError naming the file and key for a missing
 * or mistyped key or an unsupported `tokenizer.ggml.model` / `tokenizer.ggml.pre`, and
 * a RangeError for inconsistent contents (array lengths, repeated tokens, merges of
 * unknown tokens, NaN scores).
 *
 * @example
 * ```ts
 * import { tokenizerFromGguf } from "./tokenizer.ts";
 * import type { GgufValue } from "./value.ts";
 * const metadata = new Map<string, GgufValue>([
 *   ["tokenizer.ggml.model", "llama"],
 *   ["tokenizer.ggml.tokens", {
 *     type: "string",
 *     values: ["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi"],
 *   }],
 *   ["tokenizer.ggml.scores", { type: "f32", values: [0, 0, 0, -3, -4, -5, -1, -2] }],
 *   ["tokenizer.ggml.token_type", { type: "i32", values: [2, 3, 3, 1, 1, 1, 1, 1] }],
 * ]);
 * const tok = tokenizerFromGguf(metadata, "tiny.gguf");
 * tok.encode("hi", { addSpecialTokens: true }); // [1, 7]: <s>, "▁hi"
 * ```
 */
export function tokenizerFromGguf(
  metadata: ReadonlyMap<string, GgufValue>,
  file: string,
): Tokenizer {
  const { json, options } = ggufTokenizerJson(metadata, file);
  return Tokenizer.fromJSON(json, options);
}

/**
 * The `tokenizer.json` that {@linkcode tokenizerFromGguf} loads, with its options: for
 * inspecting what a GGUF vocabulary becomes, or writing it out beside the model (it
 * loads in Hugging Face's `tokenizers`; there, without `options.mergePriorities`,
 * SentencePiece merges of equal score rank by id, as Hugging Face's own converter
 * ranks them, instead of leftmost first). Throws as {@linkcode tokenizerFromGguf} does.
 *
 * @example
 * ```ts
 * import { ggufTokenizerJson } from "./tokenizer.ts";
 * import type { GgufValue } from "./value.ts";
 * const { json } = ggufTokenizerJson(new Map<string, GgufValue>([
 *   ["tokenizer.ggml.model", "gpt2"],
 *   ["tokenizer.ggml.pre", "gpt-2"],
 *   ["tokenizer.ggml.tokens", { type: "string", values: ["a", "b", "ab"] }],
 *   ["tokenizer.ggml.merges", { type: "string", values: ["a b"] }],
 * ]), "tiny.gguf");
 * (json.model as { merges: string[][] }).merges; // [["a", "b"]]
 * ```
 */
export function ggufTokenizerJson(
  metadata: ReadonlyMap<string, GgufValue>,
  file: string,
): GgufTokenizerJson {
  const meta = new Metadata(metadata, file);
  const supported = `(supported: ${GGUF_TOKENIZER_MODELS.join(", ")})`;
  const model = meta.string("model");
  if (model === undefined) throw meta.error("model", `is missing ${supported}`);
  if (model === "none" || model === "no_vocab") {
    throw meta.error("model", `is ${quote(model)}: the file has no vocabulary ${supported}`);
  }
  if (!GGUF_TOKENIZER_MODELS.includes(model)) {
    throw meta.error("model", `${quote(model)} is not supported ${supported}`);
  }
  const spm = model === "llama";

  const tokens = readTokens(meta);
  const n = tokens.length;
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => {
    const seen = ids.get(t);
    if (seen !== undefined) {
      throw new RangeError(
        `${file}: ${KEY}tokens[${i}] ${quote(t)} repeats ${KEY}tokens[${seen}]`,
      );
    }
    ids.set(t, i);
  });
  const types = parallel(
    meta,
    "token_type",
    n,
    "an array of integers (i32)",
    INTEGER,
    (x) => typeof x === "bigint" || Number.isInteger(x),
  );
  const scores = parallel(
    meta,
    "scores",
    n,
    "an array of numbers (f32)",
    NUMERIC,
    (x) => typeof x === "number",
  );
  if (scores) {
    const bad = scores.findIndex((s) => Number.isNaN(s));
    if (bad >= 0) throw new RangeError(`${file}: ${KEY}scores[${bad}] is NaN`);
  }
  const typeOf = (id: number): number => Number(types?.[id] ?? GGUF_TOKEN_TYPE.normal);

  // Special ids: llama.cpp's defaults, replaced by the keys; out-of-range ids are ignored.
  const pick = (key: string, fallback: number | undefined): number | undefined => {
    const id = meta.id(key);
    if (id !== undefined && id < n) return id;
    return fallback !== undefined && fallback < n ? fallback : undefined;
  };
  // llama.cpp's defaults (`llama_vocab::impl::load`): SentencePiece <s> 1 and </s> 2;
  // for "gpt2" both 11 (GPT-2's historical default, kept by llama.cpp).
  const bos = pick("bos_token_id", spm ? 1 : 11);
  const eos = pick("eos_token_id", spm ? 2 : 11);
  const unk = pick("unknown_token_id", spm ? 0 : undefined);
  meta.id("padding_token_id"); // only checked: Kiln does not pad

  let pre: PreTokenizerSpec | undefined;
  if (!spm) {
    const name = meta.string("pre") ?? "default";
    pre = Object.hasOwn(PRE_TOKENIZERS, name) ? PRE_TOKENIZERS[name] : undefined;
    if (pre === undefined) {
      throw meta.error(
        "pre",
        `${quote(name)} is not supported (supported: ${GGUF_PRE_TOKENIZERS.join(", ")})`,
      );
    }
  }
  const addBos = meta.bool("add_bos_token") ?? (spm || pre?.addBos === true);
  const addEos = meta.bool("add_eos_token") ?? false;
  const spacePrefix = spm && (meta.bool("add_space_prefix") ?? true);
  if (addBos && bos === undefined) {
    throw meta.error("add_bos_token", `is true, but ${KEY}bos_token_id is not set`);
  }
  if (addEos && eos === undefined) {
    throw meta.error("add_eos_token", `is true, but ${KEY}eos_token_id is not set`);
  }

  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((t, i) => vocab[t] = i);
  const added: Record<string, unknown>[] = [];
  for (let id = 0; id < n; id++) {
    const type = typeOf(id);
    if (
      type === GGUF_TOKEN_TYPE.control || type === GGUF_TOKEN_TYPE.unknown ||
      type === GGUF_TOKEN_TYPE.userDefined
    ) {
      added.push({
        id,
        content: tokens[id],
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: type !== GGUF_TOKEN_TYPE.userDefined,
      });
    }
  }

  let merges: [string, string][];
  let priorities: number[] | undefined;
  if (spm) ({ merges, priorities } = scoreMerges(tokens, ids, scores));
  else merges = readMerges(meta, ids);

  // BOS? A EOS?, and for a pair BOS? A EOS? BOS? B EOS? (Hugging Face's Llama template).
  const specials: Record<string, unknown> = {};
  if (addBos) specials.BOS = { id: "BOS", ids: [bos], tokens: [tokens[bos!]] };
  if (addEos) specials.EOS = { id: "EOS", ids: [eos], tokens: [tokens[eos!]] };
  const template = (seq: "A" | "B", typeId: number): Record<string, unknown>[] => [
    ...(addBos ? [{ SpecialToken: { id: "BOS", type_id: typeId } }] : []),
    { Sequence: { id: seq, type_id: typeId } },
    ...(addEos ? [{ SpecialToken: { id: "EOS", type_id: typeId } }] : []),
  ];

  const json: Record<string, unknown> = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: spm
      ? {
        type: "Sequence",
        normalizers: [
          ...(spacePrefix ? [{ type: "Prepend", prepend: "▁" }] : []),
          { type: "Replace", pattern: { String: " " }, content: "▁" },
        ],
      }
      : null,
    pre_tokenizer: spm ? null : {
      type: "Sequence",
      pretokenizers: [
        ...pre!.patterns.map((p) => ({
          type: "Split",
          pattern: { Regex: p },
          behavior: "Isolated",
          invert: false,
        })),
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: addBos || addEos
      ? {
        type: "TemplateProcessing",
        single: template("A", 0),
        pair: [...template("A", 0), ...template("B", 1)],
        special_tokens: specials,
      }
      : null,
    decoder: spm
      ? {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "▁" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          ...(spacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
        ],
      }
      : { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: spm && unk !== undefined ? tokens[unk] : null,
      fuse_unk: spm,
      byte_fallback: spm,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      ignore_merges: pre?.ignoreMerges === true,
      vocab,
      merges,
    },
  };
  return {
    json,
    options: {
      source: file,
      bosToken: bos === undefined ? undefined : tokens[bos],
      eosToken: eos === undefined ? undefined : tokens[eos],
      mergePriorities: priorities,
    },
  };
}

/** `tokenizer.ggml.tokens`, required; an empty token reads as `[EMPTY_i]`, as in llama.cpp. */
function readTokens(meta: Metadata): string[] {
  const tokens = meta.array<string>(
    "tokens",
    "an array of strings",
    new Set(["string"]),
    (x) => typeof x === "string",
  );
  if (tokens === undefined) {
    throw meta.error("tokens", "is missing (the vocabulary: one string per token id)");
  }
  if (tokens.length === 0) throw new RangeError(`${meta.file}: ${KEY}tokens is empty`);
  return tokens.map((t, i) => t === "" ? `[EMPTY_${i}]` : t);
}

/** An optional per-token array, which must have one entry per token. */
function parallel(
  meta: Metadata,
  key: string,
  n: number,
  expected: string,
  types: ReadonlySet<string>,
  ok: (x: GgufValue) => boolean,
): number[] | undefined {
  const values = meta.array<number | bigint>(key, expected, types, ok);
  if (values === undefined) return undefined;
  if (values.length !== n) {
    throw new RangeError(
      `${meta.file}: ${KEY}${key} has ${values.length} entries but ${KEY}tokens has ${n}`,
    );
  }
  return values.map(Number);
}

/** `tokenizer.ggml.merges` ("left right", split at the first space after the first byte). */
function readMerges(meta: Metadata, ids: ReadonlyMap<string, number>): [string, string][] {
  const list = meta.array<string>(
    "merges",
    "an array of strings",
    new Set(["string"]),
    (x) => typeof x === "string",
  );
  if (list === undefined) {
    throw meta.error("merges", 'is missing (a "gpt2" vocabulary needs its ranked merges)');
  }
  return list.map((m, i) => {
    const at = `${meta.file}: ${KEY}merges[${i}]`;
    const space = m.indexOf(" ", 1);
    if (space < 0) throw new TypeError(`${at} ${quote(m)} is not "left right"`);
    const left = m.slice(0, space), right = m.slice(space + 1);
    for (const t of [left, right, left + right]) {
      if (!ids.has(t)) throw new RangeError(`${at} ${quote(m)}: ${quote(t)} is not a token`);
    }
    return [left, right];
  });
}

/**
 * SentencePiece BPE as merges: every split of a token into two tokens is a merge whose
 * priority is the token's score (higher first; equal scores share a priority, so the
 * leftmost pair wins, as in llama.cpp's `llm_tokenizer_spm`). Listed like Hugging
 * Face's SentencePiece converter does: by score, then by the ids of the two halves.
 */
function scoreMerges(
  tokens: readonly string[],
  ids: ReadonlyMap<string, number>,
  scores: readonly number[] | undefined,
): { merges: [string, string][]; priorities: number[] } {
  const found: { left: number; right: number; score: number }[] = [];
  // Only splits into two lengths some token has are looked up: hashing every
  // prefix of a token is quadratic in its length (a hostile file's token of a
  // million characters took minutes).
  const lengths = new Set(tokens.map((t) => t.length));
  tokens.forEach((t, id) => {
    for (let i = 0; i < t.length;) {
      i += t.codePointAt(i)! > 0xffff ? 2 : 1;
      if (i >= t.length) break;
      if (!lengths.has(i) || !lengths.has(t.length - i)) continue;
      const left = ids.get(t.slice(0, i));
      const right = left === undefined ? undefined : ids.get(t.slice(i));
      if (right !== undefined) found.push({ left: left!, right, score: scores?.[id] ?? 0 });
    }
  });
  const distinct = [...new Set(found.map((m) => m.score))].sort((a, b) => b - a);
  const rank = new Map(distinct.map((s, i) => [s, i]));
  const merges = found.map((m) => ({ ...m, rank: rank.get(m.score)! }))
    .sort((a, b) => a.rank - b.rank || a.left - b.left || a.right - b.right);
  return {
    merges: merges.map((m) => [tokens[m.left], tokens[m.right]]),
    priorities: merges.map((m) => m.rank),
  };
}
