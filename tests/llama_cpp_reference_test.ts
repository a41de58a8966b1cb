/**
 * Kiln held to llama.cpp itself (commit c392e50, CPU backend): the GGUF files of
 * `fixtures/llama_cpp/recipes.ts` are rebuilt here exactly as
 * `tools/llama_cpp_reference.ts` built them, and Kiln's answers are compared with the
 * answers llama.cpp gave for those files, stored in `fixtures/llama_cpp/*.json`:
 *
 * - every tensor, dequantized, hashes to what ggml's `to_float` gave (bit for bit; also
 *   proves the recipe still builds the file llama.cpp saw);
 * - `loadModel(file).forward(ids)` gives llama.cpp's logits (f32 files to float noise;
 *   quantized files to the rounding llama.cpp's CPU matmuls apply to the activations);
 * - the vocabulary Kiln reads from the file tokenizes and detokenizes as
 *   `llama_tokenize` / `llama_detokenize` do, under each `tokenizer.ggml.pre` family.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { GgufFile } from "../app/gguf/file.ts";
import { loadModel } from "../app/model/mod.ts";
import { modelTokenizer } from "../app/model/source.ts";
import { dequantize } from "../core/quant/mod.ts";
import { isQuantFormat } from "../core/quant/formats.ts";
import { GGML_TYPES } from "../core/quant/formats.ts";
import {
  DEQUANT_RECIPES,
  fnv1a64,
  LATTICE_FORMATS,
  logitRows,
  LOW_BIT_FORMATS,
  MODEL_RECIPES,
  randomFormatBlocks,
  TOKENIZER_RECIPES,
  TOKENIZER_TEXTS,
} from "./fixtures/llama_cpp/recipes.ts";
import { tokenizeDifferences } from "./fixtures/llama_cpp/tokenize_check.ts";
import { gpu, withTmp } from "./_util.ts";

const FIXTURES = new URL("./fixtures/llama_cpp/", import.meta.url).pathname;
const REGENERATE = "regenerate with tools/llama_cpp_reference.ts";

/** `withTmp` with the folder's name first, for readability of the long bodies below. */
const inTmp = (name: string, fn: (dir: string) => Promise<void>) => withTmp(fn, `kiln_${name}_`);

/** A fixture's space-separated number list (see `writeFixture` of the tool). */
function nums(list: string): number[] {
  return list === "" ? [] : list.split(" ").map(Number);
}

async function fixture<T>(name: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(join(FIXTURES, `${name}.json`))) as T;
}

/** Every tensor of `path` as `type:fnv` of its f32 values, in ggml order (no HF permutes). */
async function kilnHashes(path: string): Promise<Record<string, string>> {
  using f = await GgufFile.open(path);
  const out: Record<string, string> = {};
  for (const [name, info] of f.tensors) {
    const kind = info.type.name;
    const n = info.dims.reduce((a, b) => a * b, 1);
    const values = isQuantFormat(kind)
      ? dequantize(kind, await f.read(name), n)
      : await f.readF32(name);
    out[name] = `${kind}:${fnv1a64(values)}`;
  }
  return out;
}

/** Tensors whose hash differs, by name (an empty list when all agree). */
function differing(got: Record<string, string>, want: Record<string, string>): string[] {
  const names = new Set([...Object.keys(got), ...Object.keys(want)]);
  return [...names].filter((n) => got[n] !== want[n]).map((n) =>
    `${n}: kiln ${got[n]}, llama.cpp ${want[n]}`
  );
}

interface ModelFixture {
  architecture: string;
  ids: number[];
  vocab: number;
  rows: { argmax: number; sum: number; norm: number; sample: string }[];
  tensors: Record<string, string>;
}

for (const recipe of MODEL_RECIPES) {
  Deno.test(`llama.cpp reference ${recipe.name}: tensors and logits`, async () => {
    const want = await fixture<ModelFixture>(recipe.name);
    assert.deepEqual(
      want.ids,
      recipe.ids,
      `${recipe.name}: the recipe's ids changed; ${REGENERATE}`,
    );
    await inTmp(`llama_cpp_${recipe.name}`, async (dir) => {
      const path = await recipe.build(dir);
      const bad = differing(await kilnHashes(path), want.tensors);
      assert.deepEqual(
        bad,
        [],
        `${recipe.name}: tensors differ from llama.cpp's (or ${REGENERATE})`,
      );
      const model = await loadModel(path, { device: await gpu(), quiet: true, maxSeq: 32 });
      let logits: Float32Array;
      try {
        assert.equal(model.config.vocabSize, want.vocab);
        logits = await model.forward(want.ids);
      } finally {
        model.dispose();
      }
      const got = logitRows(logits, want.vocab);
      assert.equal(got.length, want.rows.length);
      let err = 0;
      let rms = 0;
      for (const [t, w] of want.rows.entries()) {
        const g = got[t];
        rms = Math.max(rms, w.norm / Math.sqrt(want.vocab));
        for (const [i, x] of nums(w.sample).entries()) {
          err = Math.max(err, Math.abs(g.sample[i] - x));
        }
        // Sums and norms see every logit, not only the sampled ones.
        err = Math.max(err, Math.abs(g.sum - w.sum) / want.vocab, Math.abs(g.norm - w.norm));
      }
      const rel = err / rms;
      assert.ok(
        rel <= recipe.tolerance,
        `${recipe.name}: Kiln's logits differ from llama.cpp's by ${rel.toExponential(2)} ` +
          `of the logit rms (tolerance ${recipe.tolerance})`,
      );
      if (recipe.tolerance < 1e-3) {
        assert.deepEqual(got.map((r) => r.argmax), want.rows.map((r) => r.argmax), recipe.name);
      }
    });
  });
}

Deno.test("llama.cpp reference: every kiln quantize type dequantizes as ggml's to_float does", async () => {
  const want = await fixture<{ types: Record<string, Record<string, string>> }>(
    "dequant_wide_mixtral",
  );
  assert.deepEqual(Object.keys(want.types), DEQUANT_RECIPES.map((r) => r.name), REGENERATE);
  await inTmp("llama_cpp_dequant", async (dir) => {
    for (const recipe of DEQUANT_RECIPES) {
      const path = await recipe.build(await Deno.makeTempDir({ dir }));
      const bad = differing(await kilnHashes(path), want.types[recipe.name]);
      assert.deepEqual(bad, [], `${recipe.name}: Kiln's dequantization differs from ggml's`);
    }
  });
});

// Blocks of the formats Kiln only reads: the lattice ones against llama.cpp c392e50, the
// low-bit ones (which it mostly predates) against ggml d99724f2.
for (
  const [name, formats] of [
    ["dequant_lattice_blocks", LATTICE_FORMATS],
    ["dequant_low_bit_blocks", LOW_BIT_FORMATS],
  ] as const
) {
  Deno.test(`ggml reference ${name}: random blocks dequantize as ggml's to_float does`, async () => {
    const want = await fixture<{ types: Record<string, string> }>(name);
    assert.deepEqual(Object.keys(want.types), formats, REGENERATE);
    for (const format of formats) {
      const bytes = randomFormatBlocks(format);
      const n = (bytes.length / GGML_TYPES[format].blockBytes) * GGML_TYPES[format].blockElems;
      assert.equal(fnv1a64(dequantize(format, bytes, n)), want.types[format], format);
    }
  });
}

interface TokenizerFixture {
  bos: number;
  eos: number;
  n_vocab: number;
  cases: {
    text: string;
    special: string;
    plain: string;
    detok: string;
    detok_special: string;
    pieces: string;
  }[];
}

for (const recipe of TOKENIZER_RECIPES) {
  Deno.test(`llama.cpp reference ${recipe.name}: tokenize and detokenize`, async () => {
    const want = await fixture<TokenizerFixture>(recipe.name);
    assert.deepEqual(
      want.cases.map((c) => c.text),
      [...TOKENIZER_TEXTS, ...(recipe.texts ?? [])],
      REGENERATE,
    );
    await inTmp(`llama_cpp_${recipe.name}`, async (dir) => {
      const path = await recipe.build(dir);
      const tok = await modelTokenizer(path);
      assert.ok(tok, `${recipe.name}: no tokenizer`);
      const problems = want.cases.flatMap((c) =>
        tokenizeDifferences(tok, {
          ...c,
          special: nums(c.special),
          plain: nums(c.plain),
        })
      );
      assert.deepEqual(problems, [], `${recipe.name}: ${problems.length} disagreement(s)`);
    });
  });
}
