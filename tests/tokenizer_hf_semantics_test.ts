/**
 * Tokenizer behaviours where Kiln once differed from Hugging Face `tokenizers`. Each
 * test states the reference's rule (file and function in huggingface/tokenizers,
 * `tokenizers/src/…`) and its expected ids or text, then checks the same file against
 * the reference itself (the `tokenizers` npm package, the Rust library's Node binding).
 */

import assert from "node:assert/strict";
import { Tokenizer as HfTokenizer } from "tokenizers";
import { Tokenizer } from "../app/tokenizer/mod.ts";
import { BYTE_TO_CHAR } from "../app/tokenizer/parts.ts";
import { LLAMA_SPM_DECODER } from "./fixtures/tiny_tokenizers.ts";

type Json = Record<string, unknown>;

/** An added token entry with every flag false unless given. */
function added(id: number, content: string, flags: Json = {}): Json {
  return {
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: false,
    ...flags,
  };
}

/** A byte-level tokenizer: the 256 byte characters are ids 0–255 (so "a" is 97), no merges. */
function byteLevel(patch: Json = {}): Json {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((c, b) => vocab[c] = b);
  const bl = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: "1.0",
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: bl,
    post_processor: null,
    decoder: bl,
    model: { type: "BPE", vocab, merges: [] },
    ...patch,
  };
}

/** A Llama-style SentencePiece BPE: <unk> <s> </s>, byte tokens 3–258 (less `missing`), ▁ and a–z. */
function sentencePiece(model: Json = {}, missing: number[] = []): Json {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  const add = (t: string) => vocab[t] ??= Object.keys(vocab).length;
  for (let b = 0; b < 256; b++) {
    if (!missing.includes(b)) add(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  }
  for (const t of ["▁", ..."abcdefghijklmnopqrstuvwxyz", "▁a"]) add(t);
  return {
    version: "1.0",
    added_tokens: [added(0, "<unk>", { special: true }), added(1, "<s>", { special: true })],
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
    post_processor: null,
    decoder: LLAMA_SPM_DECODER,
    model: {
      type: "BPE",
      vocab,
      merges: ["▁ a"],
      unk_token: "<unk>",
      byte_fallback: true,
      fuse_unk: true,
      ...model,
    },
  };
}

/** Checks Kiln's encode against `want`, and both encode and decode against the reference. */
async function check(json: Json, cases: [string, number[]][]): Promise<Tokenizer> {
  const ours = Tokenizer.fromJSON(json);
  const ref = HfTokenizer.fromString(JSON.stringify(json));
  for (const [text, want] of cases) {
    const refIds = (await ref.encode(text, null, { addSpecialTokens: false })).getIds();
    assert.deepEqual(refIds, want, `reference encode(${JSON.stringify(text)})`);
    assert.deepEqual(ours.encode(text), want, `encode(${JSON.stringify(text)})`);
    for (const skip of [false, true]) {
      assert.equal(ours.decode(want, { skipSpecialTokens: skip }), await ref.decode(want, skip));
    }
  }
  return ours;
}

Deno.test("hf semantics: a single_word match that fails is dropped, not retried shorter or inside", async () => {
  // added_vocabulary.rs `find_matches`: leftmost-longest `find_iter`, and a rejected
  // single_word match is `continue`d past, so "ab" and "b" inside "xab" are never tried.
  const json = byteLevel({
    added_tokens: [added(256, "xab", { single_word: true }), added(257, "ab"), added(258, "b")],
  });
  await check(json, [
    ["zxab", [122, 120, 97, 98]],
    ["xabb", [120, 97, 98, 98]],
    ["xab c", [256, 32, 99]],
  ]);
});

Deno.test("hf semantics: single_word uses Rust's Unicode \\w (connector punctuation, not ²)", async () => {
  // added_vocabulary.rs `starts_with_word`/`ends_with_word`: regex `\w` = Alphabetic, M, Nd,
  // Pc, Join_Control. "‿" (Pc) is a word character; "²" (No) is not.
  const json = byteLevel({ added_tokens: [added(256, "cat", { single_word: true })] });
  await check(json, [
    ["²cat", [194, 178, 256]],
    ["‿cat", [226, 128, 191, 99, 97, 116]],
  ]);
});

Deno.test("hf semantics: after rstrip the scan resumes at the token's end", async () => {
  // added_vocabulary.rs `find_matches`: rstrip widens the split, but `leftmost_find_iter`
  // continues from the match end, so a whitespace token still matches inside the stripped run.
  const json = byteLevel({
    added_tokens: [added(256, "<a>", { rstrip: true, special: true }), added(257, "  ")],
  });
  await check(json, [
    ["<a>   x", [256, 257, 32, 120]],
    ["y<a>    z", [121, 256, 257, 257, 122]],
    ["<a> x", [256, 120]],
  ]);
});

Deno.test("hf semantics: added tokens take Hugging Face's ids, not the file's", async () => {
  // added_vocabulary.rs `add_tokens`: the id is the content's existing id (added, then
  // model vocab), else the next id from the vocabulary's size; the file's id is ignored.
  // A second entry with the same content replaces the first's flags (here: not special).
  const json = byteLevel({
    added_tokens: [
      added(500, "<q>", { special: true }),
      added(7, "ab", { special: true }),
      added(501, "<q>"),
    ],
  });
  const tok = await check(json, [["<q>ab", [256, 257]]]);
  assert.equal(tok.tokenToId("<q>"), 256);
  // "<q>" was special once: decode skips by token string (tokenizer/mod.rs `decode`).
  assert.equal(tok.decode([256, 257, 97], { skipSpecialTokens: true }), "a");
});

Deno.test("hf semantics: normalized added tokens decode as their normalized text", async () => {
  // added_vocabulary.rs `simple_id_to_token` (tokenizers 0.23): a normalized token's string
  // is its normalized content, so Prepend("Ġ") makes "foo" decode as " foo", and a special
  // token whose normalized text differs from its content is no longer skipped.
  const json = byteLevel({
    normalizer: { type: "Prepend", prepend: "Ġ" },
    added_tokens: [
      added(256, "foo", { normalized: true }),
      added(257, "bar", { normalized: true, special: true }),
    ],
  });
  const tok = await check(json, [["foo x", [256, 32, 120]]]);
  assert.equal(tok.decode([256, 257, 97]), " foo bara");
  assert.equal(tok.decode([257], { skipSpecialTokens: true }), " bar");
});

Deno.test("hf semantics: Lowercase maps characters one by one (final Σ is σ)", async () => {
  // normalizer.rs `NormalizedString::lowercase`: `char::to_lowercase` has no Final_Sigma rule.
  await check(byteLevel({ normalizer: { type: "Lowercase" } }), [
    ["ΑΣ Σ", [206, 177, 207, 131, 32, 207, 131]],
  ]);
});

Deno.test("hf semantics: a character with no token and no unk_token is dropped", async () => {
  // models/bpe/model.rs `merge_word`: without unk_token the character adds nothing.
  const json = byteLevel({
    pre_tokenizer: null,
    decoder: null,
    model: { type: "BPE", vocab: { a: 0, b: 1 }, merges: [] },
  });
  await check(json, [["cab", [0, 1]], ["abc", [0, 1]]]);
});

Deno.test("hf semantics: an unk waits for the next known symbol; byte fallback does not flush it", async () => {
  // models/bpe/model.rs `merge_word`: byte-fallback bytes are added at once, while a pending
  // unk is only added at the next vocabulary hit or the end. Byte 0xA9 is missing here, so
  // "©" (C2 A9) is unknown and "ñ" (C3 B1) falls back to bytes 0xC3+3, 0xB1+3.
  // Ids: bytes from 3 (one fewer above 0xA8), "▁" 258, a–z 259–284, "▁a" 285.
  await check(sentencePiece({}, [0xa9]), [["a©ñ©x", [285, 197, 179, 0, 282]]]);
  await check(sentencePiece({ fuse_unk: false }, [0xa9]), [["a©ñ©x", [285, 197, 179, 0, 0, 282]]]);
});

Deno.test("hf semantics: merges skip #version lines and strip continuing_subword_prefix", async () => {
  // models/bpe/model.rs `convert_merges_to_hashmap` drops "#version" lines; `BpeBuilder::build`
  // makes the merged token a + b[prefix_len..], so "a" + "##b" is "ab".
  const vocab = { ...(byteLevel().model as Json).vocab as Json, ab: 256 };
  await check(
    byteLevel({ model: { type: "BPE", vocab, merges: ["#version: 0.2", "a b"] } }),
    [["ab", [256]]],
  );
  const prefix = byteLevel({
    pre_tokenizer: { type: "Whitespace" },
    decoder: null,
    model: {
      type: "BPE",
      vocab: { a: 0, b: 1, "##a": 2, "##b": 3, ab: 4, "##ab": 5, "<unk>": 6 },
      merges: ["a ##b", "##a ##b"],
      continuing_subword_prefix: "##",
      unk_token: "<unk>",
    },
  });
  await check(prefix, [["ab aab", [4, 0, 5]]]);
});

Deno.test("hf semantics: Whitespace uses Unicode \\w and \\s, as Rust's regex does", async () => {
  // pre_tokenizers/whitespace.rs: `\w+|[^\w\s]+` with Unicode classes: "héllo" is one word
  // (JavaScript's \w is ASCII) and U+FEFF is not whitespace (JavaScript's \s includes it).
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((c, b) => vocab[c] = b);
  vocab["hé"] = 256;
  vocab["\uFEFF"] = 257;
  const json = byteLevel({
    pre_tokenizer: { type: "Whitespace" },
    model: { type: "BPE", vocab, merges: ["h é"] },
  });
  await check(json, [["héllo", [256, 108, 108, 111]], ["y\uFEFFz", [121, 257, 122]]]);
});

Deno.test("hf semantics: Split cuts at empty matches, Oniguruma-style", async () => {
  // tokenizer/pattern.rs `find_matches` keeps zero-length matches as cut points; the onig
  // iterator drops an empty match right after a match (JavaScript's matchAll keeps it).
  const split = (pattern: Json, behavior: string) =>
    byteLevel({
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern, behavior, invert: false },
          { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: false },
        ],
      },
    });
  await check(split({ Regex: "(?=[A-Z])" }, "Isolated"), [["xAyB", [
    32,
    120,
    32,
    65,
    121,
    32,
    66,
  ]]]);
  await check(split({ Regex: "a|(?=b)" }, "Isolated"), [["abcb", [32, 97, 32, 98, 99, 32, 98]]]);
});

Deno.test("hf semantics: bare script names in regexes, and the components added", async () => {
  // Oniguruma (utils/onig.rs) accepts \p{Han}; normalizers/unicode.rs Nmt, strip.rs
  // StripAccents, byte_level.rs ByteLevel, bert.rs BertNormalizer; pre_tokenizers/
  // punctuation.rs, delimiter.rs, fixed_length.rs; decoders/bpe.rs and wordpiece.rs.
  const pre = (p: Json) => ({
    type: "Sequence",
    pretokenizers: [p, {
      type: "ByteLevel",
      add_prefix_space: true,
      trim_offsets: true,
      use_regex: false,
    }],
  });
  const texts = ["漢字ab かな", "a,b;;c..d!!e", "e\u0301 ñ Å ΑΣ", "\u0001x\u200By\uFEFFz 1234"];
  const jsons = [
    byteLevel({
      pre_tokenizer: pre({
        type: "Split",
        pattern: { Regex: "\\p{Han}+" },
        behavior: "Isolated",
        invert: false,
      }),
    }),
    byteLevel({ normalizer: { type: "Nmt" } }),
    byteLevel({
      normalizer: { type: "Sequence", normalizers: [{ type: "NFD" }, { type: "StripAccents" }] },
    }),
    byteLevel({
      normalizer: {
        type: "BertNormalizer",
        clean_text: true,
        handle_chinese_chars: true,
        strip_accents: null,
        lowercase: true,
      },
    }),
    byteLevel({ normalizer: { type: "ByteLevel" }, pre_tokenizer: null }),
    byteLevel({ pre_tokenizer: pre({ type: "Punctuation", behavior: "Contiguous" }) }),
    byteLevel({ pre_tokenizer: pre({ type: "CharDelimiterSplit", delimiter: "b" }) }),
    byteLevel({ pre_tokenizer: pre({ type: "FixedLength", length: 3 }) }),
    byteLevel({ decoder: { type: "BPEDecoder", suffix: "b" } }),
    byteLevel({ decoder: { type: "WordPiece", prefix: "Ġ", cleanup: true } }),
  ];
  for (const json of jsons) {
    const ours = Tokenizer.fromJSON(json);
    const ref = HfTokenizer.fromString(JSON.stringify(json));
    for (const text of texts) {
      const want = (await ref.encode(text, null, { addSpecialTokens: false })).getIds();
      assert.deepEqual(ours.encode(text), want, `${JSON.stringify(json.normalizer)} ${text}`);
      assert.equal(ours.decode(want), await ref.decode(want, false));
    }
  }
});

Deno.test("hf semantics: bad component fields are errors naming the field", () => {
  // metaspace.rs: `replacement` is a char, and add_prefix_space false contradicts an
  // explicit prepend_scheme; fixed_length.rs would never advance with length 0.
  const sp = sentencePiece();
  assert.throws(
    () => Tokenizer.fromJSON({ ...sp, pre_tokenizer: { type: "Metaspace", replacement: "ab" } }),
    (e: unknown) =>
      e instanceof TypeError &&
      /pre_tokenizer\.replacement must be exactly one character/.test(e.message),
  );
  assert.throws(
    () =>
      Tokenizer.fromJSON({
        ...sp,
        pre_tokenizer: {
          type: "Metaspace",
          replacement: "▁",
          add_prefix_space: false,
          prepend_scheme: "always",
        },
      }),
    (e: unknown) =>
      e instanceof TypeError &&
      /pre_tokenizer\.add_prefix_space is false but prepend_scheme/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON(byteLevel({ pre_tokenizer: { type: "FixedLength", length: 0 } })),
    (e: unknown) =>
      e instanceof RangeError && /pre_tokenizer\.length must be at least 1/.test(e.message),
  );
  assert.throws(
    () =>
      Tokenizer.fromJSON(
        byteLevel({ normalizer: { type: "Precompiled", precompiled_charsmap: "" } }),
      ),
    (e: unknown) =>
      e instanceof TypeError && /normalizer\.type "Precompiled" is not supported/.test(e.message),
  );
});

Deno.test("hf semantics: an lstrip match inside an earlier rstrip's whitespace is dropped", async () => {
  // added_vocabulary.rs `find_matches`: lstrip's start is max(start of the whitespace,
  // previous split's end); a match wholly inside the whitespace an rstrip took is then
  // empty, and `PreTokenizedString::split` drops empty splits, token and all.
  const json = byteLevel({
    added_tokens: [added(256, "\n", { lstrip: true, rstrip: true, normalized: true })],
  });
  await check(json, [
    ["\n\n", [256]],
    ["a\n \nb", [97, 256, 98]],
    ["a \n\n b\n", [97, 256, 98, 256]],
  ]);
});

Deno.test("hf semantics: a normalized added token keeps its normalized text when listed again unnormalized", async () => {
  // added_vocabulary.rs `add_tokens`: `normalized_cache` is filled for a normalized entry and
  // never cleared, so a later entry with the same content and normalized: false still
  // decodes as the normalized text ("ﬁ" → "fi" under NFKC), while matching follows the
  // later entry's flags (the raw text "ﬁ", before normalization).
  const json = byteLevel({
    normalizer: { type: "NFKC" },
    added_tokens: [added(256, "ﬁ", { normalized: true }), added(256, "ﬁ")],
  });
  const tok = await check(json, [["ﬁx", [256, 120]], ["fix", [102, 105, 120]]]);
  assert.equal(tok.decode([256, 97]), "fia");
});
