/**
 * A Hugging Face `tokenizer.json` (with its `tokenizer_config.json` and the model's
 * `config.json`) as GGUF `tokenizer.ggml.*` metadata, the way llama.cpp's
 * `convert_hf_to_gguf.py` writes it — the reverse of `tokenizer.ts`, for
 * `kiln quantize`.
 *
 * Two kinds of BPE vocabulary are written, told apart by the file itself:
 *
 * - SentencePiece-style (`byte_fallback`, a `Metaspace` pre-tokenizer or a `▁`
 *   normalizer; Llama 2, Mistral, Mixtral, Jamba): `tokenizer.ggml.model` "llama",
 *   with scores rebuilt as the SentencePiece model had them (a merged piece scores
 *   minus the rank of its first merge, other pieces below every merge, control and
 *   byte pieces 0), as `_set_vocab_sentencepiece` copies them from tokenizer.model.
 * - byte-level (`ByteLevel`; GPT-2, GPT-NeoX as Mamba uses it, Qwen, Llama 3,
 *   DeepSeek V3): "gpt2" with the ranked merges (`get_vocab_base` +
 *   `_set_vocab_gpt2`), and `tokenizer.ggml.pre` named by the pre-tokenizer's split
 *   regexes (llama.cpp hashes a test encoding instead; the regexes are what decides it).
 *
 * Added tokens are control tokens when special (or when they look special, as
 * `does_token_look_special` judges), user-defined otherwise; ids without a token
 * (up to config.json's `vocab_size`) become `[PAD<id>]` of type unused. BOS, EOS,
 * unknown and padding ids and `add_bos_token` / `add_eos_token` come from
 * tokenizer_config.json, else the post-processor's template, else config.json's ids,
 * else the conventional names (`<s>`, `<|endoftext|>`, …), as gguf-py's
 * `SpecialVocab` finds them. Unicode normalizers (NFC) are dropped, as llama.cpp
 * does.
 *
 * @module
 */

import { GPT2_PATTERN } from "../tokenizer/parts.ts";
import { quote } from "../tokenizer/json.ts";
import { BOS_NAMES, EOS_NAMES } from "../tokenizer/special_tokens.ts";
import { GGUF_TOKEN_TYPE } from "./tokenizer.ts";
import type { GgufEntry, GgufValueType } from "./value.ts";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

/**
 * Options of {@linkcode ggufTokenizerMetadata}.
 *
 * @example
 * ```ts
 * import type { GgufTokenizerExportOptions } from "./tokenizer_export.ts";
 * const o: GgufTokenizerExportOptions = {
 *   tokenizerConfig: { bos_token: "<s>", add_bos_token: true },
 *   config: { vocab_size: 32000, eos_token_id: 2 },
 *   file: "Mixtral-8x7B/tokenizer.json",
 * };
 * ```
 */
export interface GgufTokenizerExportOptions {
  /** The parsed tokenizer_config.json: BOS/EOS/unknown/padding tokens, add_bos/add_eos, chat template. */
  tokenizerConfig?: unknown;
  /** The model's parsed config.json: `vocab_size` (the vocabulary is padded to it) and fallback `*_token_id`s. */
  config?: unknown;
  /** Names the tokenizer.json in errors (default `"tokenizer.json"`). */
  file?: string;
}

/** Split regexes as tokenizer.json files spell them, by the `tokenizer.ggml.pre` they are. */
const CONTRACTIONS_HF = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
const LETTERS = "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+";
const REST = "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_HF = CONTRACTIONS_HF + LETTERS + "|\\p{N}" + REST;
const LLAMA3_HF = CONTRACTIONS_HF + LETTERS + "|\\p{N}{1,3}" + REST;
const DEEPSEEK3_HF = [
  "\\p{N}{1,3}",
  "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+" +
  "|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*" +
  "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];

/** The pre-tokenizer families written: the regexes, and the name (Llama 3's depends on ignore_merges). */
const FAMILIES: readonly { patterns: readonly string[]; pre: (ignoreMerges: boolean) => string }[] =
  [
    { patterns: [GPT2_PATTERN], pre: () => "gpt-2" },
    { patterns: [QWEN2_HF], pre: () => "qwen2" },
    // Llama 3 skips merges for whole-token words; the same regex without that is DBRX's.
    { patterns: [LLAMA3_HF], pre: (ignore) => ignore ? "llama-bpe" : "dbrx" },
    { patterns: DEEPSEEK3_HF, pre: () => "deepseek-v3" },
  ];

/** A regex as written, with CR and LF as escapes (files spell them either way). */
const canonical = (p: string): string => p.replaceAll("\r", "\\r").replaceAll("\n", "\\n");

/** convert_hf_to_gguf's `does_token_look_special`. */
function looksSpecial(t: string): boolean {
  return ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) ||
    (t.startsWith("<|") && t.endsWith("|>")) || (t.startsWith("<｜") && t.endsWith("｜>")) ||
    (t.startsWith("<unused") && t.endsWith(">"));
}

const isObject = (v: unknown): v is Json =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The components of a normalizer / pre-tokenizer / decoder, `Sequence`s flattened. */
function parts(v: unknown): Json[] {
  if (!isObject(v)) return [];
  const list = v.type === "Sequence"
    ? v.pretokenizers ?? v.normalizers ?? v.decoders ?? v.processors
    : undefined;
  return Array.isArray(list) ? list.flatMap(parts) : [v];
}

/** The file's parts, checked enough for a message that names the field. */
interface Parsed {
  json: Json;
  file: string;
  /** Token text by id: the model's vocabulary, then the added tokens. */
  byId: Map<number, string>;
  /** Added tokens by id. */
  added: Map<number, Json>;
  /** Merges as pairs. */
  merges: [string, string][];
}

function parse(tokenizerJson: unknown, file: string): Parsed {
  let json = tokenizerJson;
  if (typeof json === "string") {
    try {
      json = JSON.parse(json);
    } catch (e) {
      throw new SyntaxError(`${file}: not valid JSON: ${(e as Error).message}`);
    }
  }
  if (!isObject(json)) throw new TypeError(`${file}: not a tokenizer.json object`);
  const model = json.model;
  if (!isObject(model)) throw new TypeError(`${file}: model is missing or not an object`);
  if (model.type !== "BPE") {
    throw new TypeError(
      `${file}: model.type ${quote(String(model.type))} has no GGUF form Kiln writes ` +
        `(BPE: SentencePiece-style or byte-level)`,
    );
  }
  if (!isObject(model.vocab)) throw new TypeError(`${file}: model.vocab is not an object`);
  const byId = new Map<number, string>();
  const checkId = (id: unknown, at: string): number => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= 2 ** 31) {
      throw new TypeError(`${file}: ${at} is not a token id (got ${JSON.stringify(id)})`);
    }
    return id;
  };
  for (const [t, id] of Object.entries(model.vocab)) {
    byId.set(checkId(id, `model.vocab[${quote(t)}]`), t);
  }
  const added = new Map<number, Json>();
  const list = json.added_tokens ?? [];
  if (!Array.isArray(list)) throw new TypeError(`${file}: added_tokens is not an array`);
  list.forEach((t, i) => {
    if (!isObject(t) || typeof t.content !== "string") {
      throw new TypeError(`${file}: added_tokens[${i}] has no content string`);
    }
    const id = checkId(t.id, `added_tokens[${i}].id`);
    added.set(id, t);
    byId.set(id, t.content);
  });
  const rawMerges = model.merges ?? [];
  if (!Array.isArray(rawMerges)) throw new TypeError(`${file}: model.merges is not an array`);
  const merges = rawMerges.map((m, i): [string, string] => {
    const pair = typeof m === "string" ? m.split(" ") : m;
    if (
      !Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" ||
      typeof pair[1] !== "string"
    ) {
      throw new TypeError(`${file}: model.merges[${i}] is not "left right" or [left, right]`);
    }
    return [pair[0], pair[1]];
  });
  return { json, file, byId, added, merges };
}

/** The vocabulary's size: config.json's `vocab_size` when given (never fewer than the ids used). */
function vocabSize(p: Parsed, config: Json): number {
  let used = 0;
  for (const id of p.byId.keys()) used = Math.max(used, id + 1);
  const want = config.vocab_size;
  if (want === undefined || want === null) return used;
  if (typeof want !== "number" || !Number.isInteger(want) || want < 1) {
    throw new TypeError(`config.json: vocab_size is not a positive integer (got ${want})`);
  }
  if (want < used) {
    throw new RangeError(
      `${p.file}: token id ${used - 1} is past config.json's vocab_size ${want}; the model ` +
        `has no embedding for it`,
    );
  }
  return want;
}

/** Whether it is SentencePiece-style BPE (else byte-level); neither is a TypeError. */
function isSentencePiece(p: Parsed): boolean {
  const { json, file } = p;
  const types = (v: unknown) => parts(v).map((x) => x.type);
  const byteLevel = types(json.pre_tokenizer).includes("ByteLevel") ||
    types(json.decoder).includes("ByteLevel");
  if (byteLevel) return false;
  const spaceMark = (x: Json) =>
    (x.type === "Replace" && x.content === "▁") || (x.type === "Prepend" && x.prepend === "▁");
  if (
    json.model.byte_fallback === true || types(json.pre_tokenizer).includes("Metaspace") ||
    types(json.decoder).includes("Metaspace") || parts(json.normalizer).some(spaceMark)
  ) {
    return true;
  }
  throw new TypeError(
    `${file}: a BPE vocabulary that is neither SentencePiece-style (byte_fallback, Metaspace) ` +
      `nor byte-level (ByteLevel) has no GGUF form Kiln writes`,
  );
}

/** Whether SentencePiece text gets a leading ▁ (llama.cpp's `add_space_prefix`). */
function spacePrefix(json: Json): boolean {
  if (parts(json.normalizer).some((x) => x.type === "Prepend" && x.prepend === "▁")) return true;
  const meta = parts(json.pre_tokenizer).find((x) => x.type === "Metaspace");
  if (!meta) return false;
  if (typeof meta.prepend_scheme === "string") return meta.prepend_scheme !== "never";
  return meta.add_prefix_space !== false;
}

/** `tokenizer.ggml.pre` for a byte-level vocabulary, from its split regexes. */
function preTokenizer(p: Parsed): string {
  const { json, file } = p;
  const patterns: string[] = [];
  for (const [i, x] of parts(json.pre_tokenizer).entries()) {
    const at = `${file}: pre_tokenizer (part ${i}, ${quote(String(x.type))})`;
    if (x.type === "Split") {
      if (typeof x.pattern?.Regex !== "string") {
        throw new TypeError(`${at}: only a Regex pattern has a GGUF form`);
      }
      if (x.behavior !== "Isolated" || x.invert === true) {
        throw new TypeError(`${at}: only behavior "Isolated" (not inverted) has a GGUF form`);
      }
      patterns.push(x.pattern.Regex);
    } else if (x.type === "ByteLevel") {
      if (x.add_prefix_space === true) {
        throw new TypeError(`${at}: add_prefix_space has no GGUF form`);
      }
      if (x.use_regex !== false) patterns.push(GPT2_PATTERN);
    } else {
      throw new TypeError(`${at}: this pre-tokenizer has no GGUF form Kiln writes`);
    }
  }
  const key = patterns.map(canonical).join("\0");
  const family = FAMILIES.find((f) => f.patterns.map(canonical).join("\0") === key);
  if (!family) {
    const shown = patterns.length === 0 ? "no split regex" : patterns.map(quote).join(", then ");
    throw new TypeError(
      `${file}: the pre-tokenizer (${shown}) is none Kiln knows a tokenizer.ggml.pre for ` +
        `(GPT-2's, Qwen 2's, Llama 3's, DeepSeek V3's)`,
    );
  }
  return family.pre(json.model.ignore_merges === true);
}

/** A token named in tokenizer_config.json: a string, or an AddedToken object's content. */
function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isObject(v) && typeof v.content === "string") return v.content;
  return undefined;
}

/** BOS/EOS/unknown/padding ids and whether BOS/EOS are added. */
interface Specials {
  bos?: number;
  eos?: number;
  unk?: number;
  pad?: number;
  addBos: boolean;
  addEos: boolean;
}

function specials(p: Parsed, tokenizerConfig: Json, config: Json, size: number): Specials {
  const { json, file, byId, added } = p;
  // Added tokens first (as gguf-py), then the model's vocabulary.
  const idOf = (name: string): number | undefined => {
    for (const [id, t] of added) if (t.content === name) return id;
    for (const [id, t] of byId) if (t === name) return id;
    return undefined;
  };
  const named = (key: string): number | undefined => {
    const name = tokenName(tokenizerConfig[key]);
    if (name === undefined) return undefined;
    const id = idOf(name);
    if (id === undefined) {
      throw new RangeError(`${file}: tokenizer_config.json's ${key} ${quote(name)} is not a token`);
    }
    return id;
  };
  const configId = (key: string): number | undefined => {
    const v = Array.isArray(config[key]) ? config[key][0] : config[key];
    return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < size ? v : undefined;
  };
  const conventional = (names: readonly string[]): number | undefined => {
    for (const n of names) {
      for (const [id, t] of added) if (t.content === n) return id;
    }
    return undefined;
  };

  // The post-processor: what it puts before and after one sequence.
  let first: number | undefined, last: number | undefined, template = false;
  for (const x of parts(json.post_processor)) {
    if (x.type === "TemplateProcessing" && Array.isArray(x.single)) {
      template = true;
      const idIn = (item: unknown): number | undefined => {
        const name = isObject(item) ? item.SpecialToken?.id : undefined;
        if (typeof name !== "string") return undefined;
        const ids = x.special_tokens?.[name]?.ids;
        return Array.isArray(ids) && typeof ids[0] === "number" ? ids[0] : idOf(name);
      };
      first = idIn(x.single[0]);
      last = x.single.length > 1 ? idIn(x.single[x.single.length - 1]) : undefined;
    } else if (x.type === "RobertaProcessing" || x.type === "BertProcessing") {
      template = true;
      const pair = (v: unknown) =>
        Array.isArray(v) ? (typeof v[1] === "number" ? v[1] : idOf(String(v[0]))) : undefined;
      first = pair(x.cls);
      last = pair(x.sep);
    }
  }

  const bool = (key: string): boolean | undefined =>
    typeof tokenizerConfig[key] === "boolean" ? tokenizerConfig[key] : undefined;
  const bos = named("bos_token") ?? first ?? configId("bos_token_id") ?? conventional(BOS_NAMES);
  const eos = named("eos_token") ?? last ?? configId("eos_token_id") ?? conventional(EOS_NAMES);
  const unkName = typeof json.model.unk_token === "string" ? json.model.unk_token : undefined;
  const unk = named("unk_token") ?? (unkName === undefined ? undefined : idOf(unkName));
  const pad = named("pad_token") ?? configId("pad_token_id");
  const addBos = bool("add_bos_token") ?? (template && first !== undefined);
  const addEos = bool("add_eos_token") ?? (template && last !== undefined);
  if (addBos && bos === undefined) {
    throw new TypeError(`${file}: BOS is to be added, but no BOS token is named`);
  }
  if (addEos && eos === undefined) {
    throw new TypeError(`${file}: EOS is to be added, but no EOS token is named`);
  }
  return { bos, eos, unk, pad, addBos, addEos };
}

/**
 * The GGUF `tokenizer.ggml.*` metadata llama.cpp's converter writes for a Hugging
 * Face tokenizer (see the module notes): `model`, `pre`, `tokens`, `token_type`,
 * `scores` (SentencePiece) or `merges` (byte-level), BOS/EOS/unknown/padding ids,
 * `add_bos_token`, `add_eos_token`, `add_space_prefix` when false, and
 * `tokenizer.chat_template` from tokenizer_config.json — each with the type
 * llama.cpp's `GGUFWriter` gives it (ids u32, scores f32, types i32). `tokenizerJson`
 * is the parsed tokenizer.json (or its text). Throws a TypeError naming the file for
 * a vocabulary, pre-tokenizer or regex with no GGUF form (an unknown split regex is
 * quoted), and a RangeError for ids past config.json's `vocab_size` or a
 * tokenizer_config.json token that is not in the vocabulary.
 *
 * @example
 * ```ts
 * import { ggufTokenizerMetadata } from "./tokenizer_export.ts";
 * const meta = ggufTokenizerMetadata({
 *   added_tokens: [{ id: 0, content: "<|endoftext|>", special: true }],
 *   pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, use_regex: true },
 *   decoder: { type: "ByteLevel" },
 *   model: { type: "BPE", vocab: { "<|endoftext|>": 0, a: 1, b: 2, ab: 3 }, merges: ["a b"] },
 * });
 * meta.get("tokenizer.ggml.pre")?.value; // "gpt-2"
 * meta.get("tokenizer.ggml.eos_token_id")?.value; // 0
 * ```
 */
export function ggufTokenizerMetadata(
  tokenizerJson: unknown,
  options: GgufTokenizerExportOptions = {},
): Map<string, GgufEntry> {
  const file = options.file ?? "tokenizer.json";
  const tokenizerConfig = isObject(options.tokenizerConfig) ? options.tokenizerConfig : {};
  const config = isObject(options.config) ? options.config : {};
  const p = parse(tokenizerJson, file);
  const spm = isSentencePiece(p);
  const pre = spm ? "default" : preTokenizer(p);
  const size = vocabSize(p, config);
  const unkName = p.json.model.unk_token;

  const tokens: string[] = [], types: number[] = [];
  for (let id = 0; id < size; id++) {
    const t = p.byId.get(id);
    const a = p.added.get(id);
    if (t === undefined) {
      tokens.push(`[PAD${id}]`);
      types.push(GGUF_TOKEN_TYPE.unused);
    } else if (spm && t === unkName) {
      tokens.push(t);
      types.push(GGUF_TOKEN_TYPE.unknown);
    } else if (a && (a.special === true || (!spm && looksSpecial(t)))) {
      tokens.push(t);
      types.push(GGUF_TOKEN_TYPE.control);
    } else if (a) {
      // llama.cpp matches user-defined tokens in the raw text: spaces as spaces.
      tokens.push(spm ? t : t.replaceAll("▁", " "));
      types.push(GGUF_TOKEN_TYPE.userDefined);
    } else {
      tokens.push(t);
      types.push(
        spm && /^<0x[0-9A-Fa-f]{2}>$/.test(t) ? GGUF_TOKEN_TYPE.byte : GGUF_TOKEN_TYPE.normal,
      );
    }
  }

  const out = new Map<string, GgufEntry>();
  const K = "tokenizer.ggml.";
  const put = (key: string, type: GgufValueType, value: GgufEntry["value"]) =>
    out.set(key, { type, value });
  const array = (key: string, type: GgufValueType, values: readonly (string | number)[]) =>
    put(K + key, "array", { type, values });
  put(K + "model", "string", spm ? "llama" : "gpt2");
  put(K + "pre", "string", pre);
  array("tokens", "string", tokens);
  if (spm) array("scores", "f32", sentencePieceScores(tokens, types, p.merges));
  array("token_type", "i32", types);
  if (!spm) array("merges", "string", p.merges.map(([a, b]) => `${a} ${b}`));
  const s = specials(p, tokenizerConfig, config, size);
  if (s.bos !== undefined) put(K + "bos_token_id", "u32", s.bos);
  if (s.eos !== undefined) put(K + "eos_token_id", "u32", s.eos);
  if (s.unk !== undefined) put(K + "unknown_token_id", "u32", s.unk);
  if (s.pad !== undefined) put(K + "padding_token_id", "u32", s.pad);
  put(K + "add_bos_token", "bool", s.addBos);
  put(K + "add_eos_token", "bool", s.addEos);
  if (spm && !spacePrefix(p.json)) put(K + "add_space_prefix", "bool", false);
  chatTemplates(tokenizerConfig, put);
  return out;
}

/**
 * SentencePiece BPE scores: a piece made by a merge scores minus the rank of its
 * first merge, other normal pieces rank below every merge (by id), unused pieces
 * -1000 (as llama.cpp pads), control, unknown and byte pieces 0.
 */
function sentencePieceScores(
  tokens: readonly string[],
  types: readonly number[],
  merges: readonly [string, string][],
): number[] {
  const first = new Map<string, number>();
  merges.forEach(([a, b], rank) => first.has(a + b) || first.set(a + b, rank));
  return tokens.map((t, id) =>
    types[id] === GGUF_TOKEN_TYPE.unused
      ? -1000
      : types[id] !== GGUF_TOKEN_TYPE.normal
      ? 0
      : first.has(t)
      ? -first.get(t)!
      : -merges.length - id
  );
}

/** `tokenizer.chat_template` (and named ones) from tokenizer_config.json, as gguf-py writes them. */
function chatTemplates(
  cfg: Json,
  put: (key: string, type: GgufValueType, value: string) => void,
): void {
  const t = cfg.chat_template;
  if (typeof t === "string") return put("tokenizer.chat_template", "string", t);
  if (!Array.isArray(t)) return;
  for (const x of t) {
    if (!isObject(x) || typeof x.name !== "string" || typeof x.template !== "string") continue;
    put(
      x.name === "default" ? "tokenizer.chat_template" : `tokenizer.chat_template.${x.name}`,
      "string",
      x.template,
    );
  }
}
