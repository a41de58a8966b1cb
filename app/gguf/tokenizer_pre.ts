/**
 * The pre-tokenizers of GGUF `"gpt2"` (byte-level BPE) vocabularies: for each
 * `tokenizer.ggml.pre` name llama.cpp accepts (`src/llama-vocab.cpp`,
 * `llama_vocab::impl::load`), the split regexes its `llm_tokenizer_bpe` applies
 * (`regex_exprs`, in order, each isolating its matches) and the defaults the name
 * sets (`ignore_merges`, `add_bos`). Used by `tokenizer.ts`.
 *
 * @module
 */

import { GPT2_PATTERN } from "../tokenizer/parts.ts";

/**
 * How a `tokenizer.ggml.pre` family pre-tokenizes, and the defaults it sets.
 *
 * @example
 * ```ts
 * import type { PreTokenizerSpec } from "./tokenizer_pre.ts";
 * const digits: PreTokenizerSpec = { patterns: ["\\p{N}"] };
 * ```
 */
export interface PreTokenizerSpec {
  /** Split regexes applied in turn, each isolating its matches (llama.cpp's `regex_exprs`). */
  patterns: readonly string[];
  /** A pre-tokenized word that is itself a token is not merged (Llama 3). */
  ignoreMerges?: boolean;
  /** BOS is added by default. */
  addBos?: boolean;
}

const GPT2: PreTokenizerSpec = { patterns: [GPT2_PATTERN] };
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const LETTERS = "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+";
const REST = "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Llama 3's split regex, as llama.cpp adapts it (no `(?i:…)`). */
const LLAMA3_PATTERN = CONTRACTIONS + LETTERS + "|\\p{N}{1,3}" + REST;
/** Qwen 2's: Llama 3's with single digits. */
const QWEN2: PreTokenizerSpec = { patterns: [CONTRACTIONS + LETTERS + "|\\p{N}" + REST] };
const LLAMA3: PreTokenizerSpec = { patterns: [LLAMA3_PATTERN], ignoreMerges: true, addBos: true };
const LLAMA3_REGEX: PreTokenizerSpec = { patterns: [LLAMA3_PATTERN] };
/** llama.cpp's fallback for a missing or "default" name (it warns that quality degrades). */
const DEFAULT: PreTokenizerSpec = {
  patterns: ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_PATTERN, "\\p{N}+", "[0-9][0-9][0-9]"],
};
const DEEPSEEK3: PreTokenizerSpec = {
  patterns: [
    "\\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+" +
    "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*" +
    "|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
  ],
};

/**
 * GPT-4o's (o200k: GPT-OSS, Llama 4) as llama.cpp adapts it: tokenizer.json's
 * `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` ("not lowercase") becomes a letter that
 * is not a–z and `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` a letter that is not A–Z, and
 * `(?i:…)` spelled out. Marks then split words, and non-ASCII letters count as
 * both cases: a GGUF file means what llama.cpp computes.
 */
const GPT4O_CASED = (head: string, tail: string) =>
  `[^\\r\\n\\p{L}\\p{N}]?${head}${tail}${CONTRACTIONS}?`;
const NOT_LOWER = "(?:(?=\\p{L})[^a-z])", NOT_UPPER = "(?:(?=\\p{L})[^A-Z])";
const GPT4O: PreTokenizerSpec = {
  patterns: [
    GPT4O_CASED(`${NOT_LOWER}*`, `${NOT_UPPER}+`) + "|" +
    GPT4O_CASED(`${NOT_LOWER}+`, `${NOT_UPPER}*`) +
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  ],
};

/** Falcon's: punctuation runs, GPT-2's regex, then runs of three digits. */
const FALCON: PreTokenizerSpec = {
  patterns: ["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_PATTERN, "[0-9][0-9][0-9]"],
};
/** StarCoder's and its kin: single digits, then GPT-2's regex. */
const DIGITS_GPT2: PreTokenizerSpec = { patterns: ["\\p{N}", GPT2_PATTERN] };
/** BLOOM's: a word with its leading space, up to whitespace or punctuation. */
const BLOOM_PATTERN = " ?[^(\\s|.,!?…。，、।۔،)]+";
const BLOOM: PreTokenizerSpec = { patterns: [BLOOM_PATTERN] };
const VIKING: PreTokenizerSpec = { patterns: [BLOOM_PATTERN, "\\p{N}"] };
/**
 * DeepSeek LLM's and DeepSeek-V2's split (`deepseek-llm`): newlines alone,
 * Latin/Greek/Cyrillic/… letter runs and ASCII/full-width punctuation runs
 * each with an optional leading space, trailing spaces, CJK runs and digit
 * runs, as llama.cpp's regexes list them (explicit ranges, not categories).
 * llama.cpp matches the first five with `std::wregex` on text whose non-ASCII
 * whitespace it has turned into `\v`, so such a space (U+3000, U+2000–U+200A…)
 * counts as `\s` and never as the punctuation or CJK its ranges span: the
 * punctuation range starts at U+3001 here, and the CJK run skips whitespace.
 */
const DEEPSEEK_LLM: PreTokenizerSpec = {
  patterns: [
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟、-。]+",
    "\\s+$",
    "(?:(?!\\s)[一-龥ࠀ-一가-퟿])+",
    "\\p{N}+",
  ],
};

const DEEPSEEK_CODER: PreTokenizerSpec = {
  patterns: [
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    // llama.cpp's std::wregex sees non-ASCII whitespace as \v: never CJK (see DEEPSEEK_LLM).
    "(?:(?!\\s)[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff])+",
    "\\p{N}",
  ],
};

/**
 * Each `tokenizer.ggml.pre` llama.cpp accepts (`llama_vocab::impl::load`) with the
 * split regexes its `llm_tokenizer_bpe` uses for it (`regex_exprs`) and the
 * defaults it sets (`ignore_merges`, `add_bos`).
 *
 * @example
 * ```ts
 * import { PRE_TOKENIZERS } from "./tokenizer_pre.ts";
 * PRE_TOKENIZERS["llama-bpe"].ignoreMerges; // true
 * ```
 */
export const PRE_TOKENIZERS: Readonly<Record<string, PreTokenizerSpec>> = {
  "default": DEFAULT,
  "gpt-2": GPT2,
  "phi-2": GPT2,
  "jina-es": GPT2,
  "jina-de": GPT2,
  "gigachat": GPT2,
  "jina-v1-en": GPT2,
  "jina-v2-es": GPT2,
  "jina-v2-de": GPT2,
  "jina-v2-code": GPT2,
  "roberta-bpe": GPT2,
  "mpt": GPT2,
  "olmo": GPT2,
  "jais": GPT2,
  "qwen2": QWEN2,
  "deepseek-r1-qwen": QWEN2,
  "megrez": QWEN2,
  "stablelm2": QWEN2,
  "llama3": LLAMA3,
  "llama-v3": LLAMA3,
  "llama-bpe": LLAMA3,
  "falcon3": LLAMA3,
  "dbrx": LLAMA3_REGEX,
  "smaug-bpe": LLAMA3_REGEX,
  "chatglm-bpe": LLAMA3_REGEX,
  "deepseek-v3": DEEPSEEK3,
  "gpt-4o": GPT4O,
  "llama4": GPT4O,
  "kanana2": GPT4O,
  "deepseek-coder": DEEPSEEK_CODER,
  "deepseek-llm": DEEPSEEK_LLM,
  "falcon": FALCON,
  "starcoder": DIGITS_GPT2,
  "refact": DIGITS_GPT2,
  "command-r": DIGITS_GPT2,
  "smollm": DIGITS_GPT2,
  "codeshell": DIGITS_GPT2,
  "exaone": DIGITS_GPT2,
  "minerva-7b": DIGITS_GPT2,
  "poro-chat": BLOOM,
  "bloom": BLOOM,
  "gpt3-finnish": BLOOM,
  "viking": VIKING,
};

/**
 * The `tokenizer.ggml.pre` names Kiln reads for `"gpt2"` vocabularies: GPT-2's regex
 * (`gpt-2`, and `mpt`/`olmo` for GPT-NeoX's tokenizer as Mamba and OLMoE use it), Qwen
 * 2's (`qwen2` and its aliases), Llama 3's (`llama-bpe` and aliases, which also skip
 * merges for whole-token words and add BOS), DeepSeek V3's, the other families
 * llama.cpp names (Falcon, StarCoder's kin, BLOOM's, DeepSeek Coder's), and
 * llama.cpp's `default`, used too when the key is missing.
 *
 * @example
 * ```ts
 * import { GGUF_PRE_TOKENIZERS } from "./tokenizer_pre.ts";
 * GGUF_PRE_TOKENIZERS.includes("qwen2"); // true
 * ```
 */
export const GGUF_PRE_TOKENIZERS: readonly string[] = Object.keys(PRE_TOKENIZERS);
