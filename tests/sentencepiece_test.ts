/**
 * SentencePiece `tokenizer.model` files (app/tokenizer/sentencepiece.ts): a
 * BPE model with byte fallback trained by Google's sentencepiece encodes 70
 * texts (fixed and random, with bytes outside its pieces) to the ids
 * sentencepiece itself gives (fixtures/sentencepiece/, `make_cases.py`),
 * decodes them back, loads from a model folder with tokenizer_config.json's
 * BOS/EOS flags, and what it cannot read is refused by name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseSentencePiece, sentencePieceTokenizer } from "../app/tokenizer/sentencepiece.ts";
import { folderTokenizer } from "../app/tokenizer/folder.ts";
import { withTmp } from "./_util.ts";
import { kiln } from "./cli_util.ts";
import { modelTokenizer } from "../app/model/source.ts";
import { GgufFile } from "../app/gguf/file.ts";

const DIR = new URL("./fixtures/sentencepiece/", import.meta.url).pathname;
const MODEL = join(DIR, "tokenizer.model");

Deno.test("sentencepiece: a BPE tokenizer.model encodes as sentencepiece does, and decodes back", async () => {
  const tok = sentencePieceTokenizer(await Deno.readFile(MODEL), MODEL);
  const cases = JSON.parse(await Deno.readTextFile(join(DIR, "cases.json"))) as {
    text: string;
    ids: number[];
  }[];
  assert.equal(cases.length, 70);
  for (const c of cases) {
    const ids = tok.encode(c.text, { addSpecialTokens: false });
    assert.deepEqual(ids, c.ids, JSON.stringify(c.text));
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), c.text);
  }
  // BOS by default (Llama's add_bos_token), as sentencepiece's id 1.
  assert.equal(tok.encode("Hello", { addSpecialTokens: true })[0], 1);
});

Deno.test("sentencepiece: a model folder without tokenizer.json reads tokenizer.model", async () => {
  await withTmp(async (dir) => {
    assert.equal(await folderTokenizer(dir), undefined);
    await Deno.copyFile(MODEL, join(dir, "tokenizer.model"));
    const cfg = { add_bos_token: false, add_eos_token: true };
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
    const tok = (await folderTokenizer(dir))!;
    const ids = tok.encode("Hello world", { addSpecialTokens: true });
    assert.notEqual(ids[0], 1);
    assert.equal(ids[ids.length - 1], 2);
  });
});

/** A ModelProto of one piece with these trainer and normalizer fields (raw protobuf). */
function proto(trainer: number[], normalizer: number[]): Uint8Array {
  const piece = [0x0a, 0x01, 0x61]; // piece "a"
  const field = (n: number, body: number[]) => [(n << 3) | 2, body.length, ...body];
  return Uint8Array.from([
    ...field(1, piece),
    ...field(2, trainer),
    ...field(3, normalizer),
  ]);
}

Deno.test("sentencepiece: unigram models, NFKC normalizers and bad bytes are refused by name", () => {
  const identity = [0x0a, 8, ...new TextEncoder().encode("identity"), 0x20, 0x00];
  // model_type (field 3) 1: unigram.
  assert.throws(
    () => sentencePieceTokenizer(proto([0x18, 0x01], identity), "u.model"),
    /u\.model: a unigram model is not supported .*save_pretrained/,
  );
  // BPE, but sentencepiece's default normalizer (name absent: nmt_nfkc).
  assert.throws(
    () => sentencePieceTokenizer(proto([0x18, 0x02], [0x20, 0x00]), "n.model"),
    /n\.model: the normalizer "nmt_nfkc" is not supported/,
  );
  // BPE, identity, but folding whitespace (remove_extra_whitespaces defaults true).
  assert.throws(
    () => sentencePieceTokenizer(proto([0x18, 0x02], identity.slice(0, 10)), "w.model"),
    /w\.model: remove_extra_whitespaces is not supported/,
  );
  assert.equal(parseSentencePiece(proto([0x18, 0x02], identity), "ok.model").modelType, 2);
  assert.throws(
    () => parseSentencePiece(Uint8Array.of(0x0a, 0x7f, 0x01), "bad.model"),
    (e: Error) =>
      e instanceof SyntaxError && /bad\.model: not a SentencePiece model/.test(e.message),
  );
  assert.throws(() => parseSentencePiece(new Uint8Array(0), "empty.model"), /no pieces/);
});

Deno.test("sentencepiece: kiln quantize writes a tokenizer.model folder's vocabulary as llama.cpp's converter does", async () => {
  const src =
    new URL("./fixtures/llama_cpp/ernie4_5/ernie4_5_dense_conv/", import.meta.url).pathname;
  await withTmp(async (dir) => {
    for (const f of ["config.json", "model.safetensors"]) {
      await Deno.copyFile(join(src, f), join(dir, f));
    }
    await Deno.copyFile(MODEL, join(dir, "tokenizer.model"));
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({ add_bos_token: true, chat_template: "{{ messages[0].content }}" }),
    );
    const out = join(dir, "m.gguf");
    const r = await kiln("quantize", dir, "--type", "f32", "-o", out, "--quiet");
    assert.equal(r.code, 0, r.stderr);
    using f = await GgufFile.open(out);
    assert.equal(f.metadata.get("tokenizer.ggml.model"), "llama");
    assert.equal(f.metadata.get("tokenizer.chat_template"), "{{ messages[0].content }}");
    const parsed = parseSentencePiece(await Deno.readFile(MODEL), MODEL);
    const scores = f.metadata.get("tokenizer.ggml.scores") as { values: readonly number[] };
    assert.deepEqual([...scores.values], parsed.pieces.map((p) => p.score));
    // The file's tokenizer and the folder's encode alike.
    const fromGguf = (await modelTokenizer(out))!, fromFolder = (await folderTokenizer(dir))!;
    for (const text of ["Call me Ishmael.", "ünïcödé 🙂 1234", "  two  spaces  "]) {
      assert.deepEqual(
        fromGguf.encode(text, { addSpecialTokens: true }),
        fromFolder.encode(text, { addSpecialTokens: true }),
      );
    }
  });
});
