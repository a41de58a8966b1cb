/**
 * Random but valid `tokenizer.json` configurations for the `tokenizers` campaign, as
 * {@linkcode TokSpec}s (rendered to JSON by {@linkcode renderTokenizerJson}): byte-level
 * BPE in the GPT-2 / GPT-NeoX / Qwen2 / Llama-3 styles and SentencePiece-style BPE
 * (Metaspace, or the legacy Prepend + Replace normalizers), with merges learned on random
 * text so that vocabulary and merges agree, random added tokens with every flag, and
 * TemplateProcessing post-processors. Texts come from `tokenizers_texts.ts`. A case is a
 * function of its seed alone.
 *
 * @module
 */

import { mulberry32 } from "../../core/random.ts";
import { learnMerges } from "../../tests/fixtures/tiny_tokenizers.ts";
import { BYTE_TO_CHAR } from "../../app/tokenizer/split.ts";
import { Rand, randomText } from "./tokenizers_texts.ts";
import { FAULTS, vocabOf } from "./tokenizers_render.ts";

export { addedIds, FAULTS, renderTokenizerJson, vocabOf } from "./tokenizers_render.ts";

/**
 * A JSON object.
 *
 * @example
 * ```ts
 * import type { Json } from "./tokenizers_gen.ts";
 * const nfc: Json = { type: "NFC" };
 * ```
 */
export type Json = Record<string, unknown>;

/**
 * One entry of `added_tokens`, without its id (render gives the id Hugging Face gives).
 *
 * @example
 * ```ts
 * import type { AddedSpec } from "./tokenizers_gen.ts";
 * const t: AddedSpec = { content: "<s>", special: true, normalized: false, lstrip: false,
 *   rstrip: false, single_word: false };
 * ```
 */
export interface AddedSpec {
  content: string;
  special: boolean;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
}

/**
 * A post-processor by token contents (ids are resolved when rendering, so shrinking the
 * vocabulary keeps it meaningful): `ByteLevel`, or a template adding `before` and `after`,
 * optionally inside `Sequence[ByteLevel, …]` as Llama 3 has it.
 *
 * @example
 * ```ts
 * import type { PostSpec } from "./tokenizers_gen.ts";
 * const llama: PostSpec = { kind: "template", before: ["<s>"], after: [], byteLevel: false };
 * ```
 */
export type PostSpec =
  | { kind: "byte_level" }
  | { kind: "template"; before: string[]; after: string[]; byteLevel: boolean };

/**
 * A tokenizer configuration: the vocabulary is `base` then each merge's result, in order.
 *
 * @example
 * ```ts
 * import { generateTokenizerCase } from "./tokenizers_gen.ts";
 * const spec = generateTokenizerCase(1).spec;
 * spec.kind; // "byte_level" or "sentencepiece"
 * ```
 */
export interface TokSpec {
  kind: "byte_level" | "sentencepiece";
  base: string[];
  merges: [string, string][];
  /** Merges as `"a b"` strings (when no token has a space) or as pairs. */
  mergeStrings: boolean;
  /** Model fields beyond vocab and merges (unk_token, fuse_unk, byte_fallback, ignore_merges). */
  model: Json;
  added: AddedSpec[];
  normalizer: Json | null;
  pre_tokenizer: Json | null;
  decoder: Json | null;
  post: PostSpec | null;
  /** A deliberate fault (the file must then be refused by both), or none. */
  fault: string | null;
}

/**
 * A generated case: a configuration, texts to encode, and token sequences (as token
 * strings, so they survive shrinking) to decode.
 *
 * @example
 * ```ts
 * import { generateTokenizerCase } from "./tokenizers_gen.ts";
 * const c = generateTokenizerCase(7);
 * c.texts.length > 0; // true
 * ```
 */
export interface TokenizerCase {
  seed: number;
  spec: TokSpec;
  texts: string[];
  decodes: string[][];
}

/**
 * Pre-tokenizer regexes of real files (tokenizers' own spelling): GPT-2's (ByteLevel's
 * implicit one), Llama 3's, Qwen2's and o200k's (GPT-4o, GPT-OSS).
 *
 * @example
 * ```ts
 * import { SPLIT_REGEXES } from "./tokenizers_gen.ts";
 * const split = { type: "Split", pattern: { Regex: SPLIT_REGEXES.llama3 }, behavior: "Isolated" };
 * ```
 */
export const SPLIT_REGEXES: Readonly<Record<string, string>> = {
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  llama3:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  // o200k (GPT-4o, GPT-OSS): words split at case changes, contractions attached.
  o200k:
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

const GPT2_JS = new RegExp(SPLIT_REGEXES.gpt2, "gu");
const BEHAVIORS = [
  "Isolated",
  "Isolated",
  "Isolated",
  "Removed",
  "MergedWithPrevious",
  "MergedWithNext",
  "Contiguous",
];

// ---------------------------------------------------------------------------------------
// Generation

/**
 * The case of `seed`: a configuration, 4–7 texts and 3 token sequences to decode.
 *
 * @example
 * ```ts
 * import { generateTokenizerCase } from "./tokenizers_gen.ts";
 * generateTokenizerCase(5).seed; // 5
 * ```
 */
export function generateTokenizerCase(seed: number): TokenizerCase {
  const r = new Rand(mulberry32(seed * 2654435761));
  const spec = r.chance(0.5) ? byteLevelSpec(r) : sentencePieceSpec(r);
  addRandomAddedTokens(r, spec);
  if (r.chance(0.04)) spec.fault = r.pick(FAULTS);
  const vocab = vocabOf(spec);
  const extras = [
    ...spec.added.map((a) => a.content),
    ...vocab.slice(-20).map((t) => spec.kind === "sentencepiece" ? t.replaceAll("▁", " ") : t),
  ];
  const texts = Array.from({ length: 4 + r.int(4) }, () => randomText(r, extras));
  const pool = [...vocab, ...spec.added.map((a) => a.content)];
  const byteTokens = vocab.filter((t) =>
    /^<0x[0-9A-F]{2}>$/.test(t) || (spec.kind === "byte_level" && t.length === 1)
  );
  const decodes = Array.from(
    { length: 3 },
    () =>
      Array.from(
        { length: 1 + r.int(10) },
        () => r.chance(0.4) && byteTokens.length ? r.pick(byteTokens) : r.pick(pool),
      ),
  );
  return { seed, spec, texts, decodes };
}

/** Training text: random text without added-token contents. */
function corpus(r: Rand): string {
  return Array.from({ length: 12 + r.int(20) }, () => randomText(r, [])).join(" ");
}

function byteLevelSpec(r: Rand): TokSpec {
  const enc = new TextEncoder();
  const text = corpus(r);
  const words = Array.from(
    text.matchAll(GPT2_JS),
    (m) => Array.from(enc.encode(m[0]), (b) => BYTE_TO_CHAR[b]),
  );
  const merges = learnMerges(words, r.int(120));
  // Now and then an alphabet short of some bytes, so characters go missing.
  const needed = new Set(merges.flat());
  const sparse = r.chance(0.1);
  const base = BYTE_TO_CHAR.filter((c) => needed.has(c) || !sparse || !r.chance(0.2));
  const specials = r.pick([["<|endoftext|>"], ["<|begin_of_text|>", "<|end_of_text|>"], []]);
  const style = r.pick(["gpt2", "neox", "qwen2", "llama3", "split_gpt2", "o200k"]);
  const bl = (prefix: boolean, regex: boolean): Json => ({
    type: "ByteLevel",
    add_prefix_space: prefix,
    trim_offsets: true,
    use_regex: regex,
  });
  let pre: Json;
  if (style === "gpt2" || style === "neox") pre = bl(r.chance(0.3), r.chance(0.85));
  else {
    const regex = style === "split_gpt2" ? SPLIT_REGEXES.gpt2 : SPLIT_REGEXES[style];
    const list: Json[] = [];
    if (r.chance(0.2)) list.push({ type: "Digits", individual_digits: r.chance(0.5) });
    list.push({
      type: "Split",
      pattern: { Regex: regex },
      behavior: r.pick(BEHAVIORS),
      invert: r.chance(0.05),
    });
    if (r.chance(0.15)) list.push(r.pick(OTHER_PRE));
    list.push(bl(r.chance(0.2), r.chance(0.15)));
    pre = { type: "Sequence", pretokenizers: list };
  }
  const normalizer = r.pick<Json | null>([
    null,
    null,
    { type: "NFC" },
    { type: "NFKC" },
    { type: "Sequence", normalizers: [{ type: "NFC" }] },
    { type: "NFD" },
    { type: "Lowercase" },
    ...(r.chance(0.3) ? [r.pick(OTHER_NORMALIZERS)] : []),
  ]);
  const decoder = r.pick<Json | null>([
    bl(true, true),
    bl(false, true),
    { type: "Sequence", decoders: [bl(true, true)] },
    ...(r.chance(0.1) ? [null] : []),
  ]);
  let post: PostSpec | null = r.pick([null, { kind: "byte_level" } as PostSpec]);
  if (specials.length && r.chance(0.5)) {
    post = {
      kind: "template",
      before: [specials[0]],
      after: r.chance(0.3) ? [specials.at(-1)!] : [],
      byteLevel: r.chance(0.5),
    };
  }
  return {
    kind: "byte_level",
    base,
    merges,
    mergeStrings: r.chance(0.5),
    model: { ignore_merges: r.chance(0.3) },
    added: specials.map((content) => flags(content, true, false)),
    normalizer,
    pre_tokenizer: pre,
    decoder,
    post,
    fault: null,
  };
}

/** Components real BPE files use less often, mixed in now and then. */
const OTHER_PRE: readonly Json[] = [
  { type: "Punctuation", behavior: "Isolated" },
  { type: "Punctuation", behavior: "Contiguous" },
  { type: "WhitespaceSplit" },
  { type: "Whitespace" },
  { type: "CharDelimiterSplit", delimiter: "e" },
  { type: "FixedLength", length: 3 },
  { type: "Digits", individual_digits: true },
];
const OTHER_NORMALIZERS: readonly Json[] = [
  { type: "Strip", strip_left: true, strip_right: false },
  { type: "Sequence", normalizers: [{ type: "NFD" }, { type: "StripAccents" }] },
  { type: "Nmt" },
  { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
  { type: "Prepend", prepend: "Ġ" },
  { type: "NFKD" },
];

function sentencePieceSpec(r: Rand): TokSpec {
  const text = "▁" + corpus(r).replaceAll(" ", "▁");
  const words = Array.from(text.matchAll(/▁[^▁]*/gu), (m) => Array.from(m[0]));
  const merges = learnMerges(words, r.int(80));
  const base = ["<unk>", "<s>", "</s>"];
  const byteFallback = r.chance(0.7);
  if (byteFallback || r.chance(0.1)) {
    const missing = r.chance(0.3)
      ? new Set(Array.from({ length: 3 }, () => 0x80 + r.int(0x80)))
      : new Set();
    for (let b = 0; b < 256; b++) {
      if (!missing.has(b)) base.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    }
  }
  // Drop a few characters now and then, so unknowns reach byte fallback or unk.
  const chars = [...new Set(Array.from(text))].sort().filter((c) => c === "▁" || !r.chance(0.05));
  base.push(...chars);
  const needed = new Set(merges.flat());
  for (const t of needed) {
    if (!base.includes(t) && !merges.some(([a, b]) => a + b === t)) base.push(t);
  }
  const scheme = r.pick(["first", "always", "never"]);
  const legacy = r.chance(0.35);
  const split = r.chance(0.5);
  const metaspace = (type: string): Json => ({
    type,
    replacement: "▁",
    prepend_scheme: scheme,
    split,
  });
  const normalizer: Json | null = legacy
    ? {
      type: "Sequence",
      normalizers: [
        ...(r.chance(0.2) ? [{ type: "NFKC" }] : []),
        ...(r.chance(0.9) ? [{ type: "Prepend", prepend: "▁" }] : []),
        { type: "Replace", pattern: { String: " " }, content: "▁" },
      ],
    }
    : r.pick([null, null, { type: "NFKC" }, { type: "NFC" }]);
  const pre = legacy ? null : metaspace("Metaspace");
  const llamaDecoder: Json = {
    type: "Sequence",
    decoders: [
      { type: "Replace", pattern: { String: "▁" }, content: " " },
      { type: "ByteFallback" },
      { type: "Fuse" },
      // stop stays 0: strip.rs panics (aborting the process) on a token shorter than
      // start + stop it could strip, such as the empty one Fuse makes of no tokens.
      { type: "Strip", content: " ", start: r.pick([1, 1, 0, 2]), stop: 0 },
    ],
  };
  const decoder = r.pick<Json | null>([
    llamaDecoder,
    llamaDecoder,
    metaspace("Metaspace"),
    { type: "Sequence", decoders: [{ type: "ByteFallback" }, metaspace("Metaspace")] },
    {
      type: "Sequence",
      decoders: [{ type: "ByteFallback" }, { type: "Fuse" }, metaspace("Metaspace")],
    },
  ]);
  const unk = r.chance(0.8);
  return {
    kind: "sentencepiece",
    base,
    merges,
    mergeStrings: r.chance(0.5),
    model: {
      unk_token: unk ? "<unk>" : null,
      fuse_unk: r.chance(0.6),
      byte_fallback: byteFallback,
      ignore_merges: r.chance(0.15),
    },
    added: ["<unk>", "<s>", "</s>"].map((c) => flags(c, true, false)),
    normalizer,
    pre_tokenizer: pre,
    decoder,
    post: r.chance(0.6)
      ? {
        kind: "template",
        before: ["<s>"],
        after: r.chance(0.3) ? ["</s>"] : [],
        byteLevel: false,
      }
      : null,
    fault: null,
  };
}

function flags(content: string, special: boolean, normalized: boolean): AddedSpec {
  return { content, special, normalized, lstrip: false, rstrip: false, single_word: false };
}

/** Contents of added tokens: control-token shapes, whitespace, overlaps, words, emoji. */
const ADDED_MENU = [
  "<|im_start|>",
  "<|im_end|>",
  "[INST]",
  "[/INST]",
  "<a>",
  "<a>b",
  "a>",
  "<|",
  "|>",
  " ",
  "  ",
  "    ",
  "\n",
  "\n\n",
  " \t",
  "\t",
  "hello",
  "ell",
  "lo",
  "the",
  "ab",
  "é",
  "e\u0301",
  "🎉",
  "▁",
  "▁the",
  "<mask>",
  "<pad>",
  "Σ",
  "σ",
  "ǅ",
  "ﬁ",
  "<0x41>",
  "Ġ",
  "12",
  "don't",
  " x",
  "x ",
];

function addRandomAddedTokens(r: Rand, spec: TokSpec): void {
  const vocab = vocabOf(spec);
  const n = r.pick([0, 0, 1, 2, 3, 4, 6]);
  for (let i = 0; i < n; i++) {
    const content = r.chance(0.25) && vocab.length ? r.pick(vocab.slice(-40)) : r.pick(ADDED_MENU);
    const special = r.chance(0.4);
    spec.added.push({
      content,
      special,
      normalized: r.chance(0.2) ? !special : r.chance(0.5),
      lstrip: r.chance(0.25),
      rstrip: r.chance(0.25),
      single_word: r.chance(0.2),
    });
  }
  // Llama-3/Qwen2 list their specials with every flag false; shuffle so order varies too.
  if (r.chance(0.3)) spec.added = r.shuffle(spec.added);
}
