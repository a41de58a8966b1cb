/**
 * `kiln quantize --imatrix`: a small Mixtral quantized with an importance
 * matrix gives, tensor for tensor, the bytes llama-quantize c392e50 wrote with
 * the same matrix (`tests/fixtures/llama_cpp/quant_imatrix.json`, made by
 * `tools/llama_quantize_imatrix.ts`: K-quants, legacy and IQ formats, the
 * Q4_K_M mix, stacked experts one vector each); the GGUF layout of the same
 * matrix gives the same bytes as the legacy one; the file records the
 * matrix as llama-quantize does; quantize-on-load with the matrix gives that
 * file's logits; and every bad matrix is one clear error.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { quantize } from "../app/cli/quantize.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { parseLegacyImatrix, readImatrix, writeImatrix } from "../app/gguf/imatrix.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { assertUserError, kiln } from "./fixtures/kiln_cli.ts";
import { assertBitsEqual, MOE_PROMPT, openTiny } from "./_util.ts";
import type { LoadOptions } from "../app/model/load.ts";
import {
  IMATRIX_CONFIG,
  IMATRIX_TYPES,
  writeImatrixCase,
} from "./fixtures/llama_cpp/imatrix_case.ts";
import fixture from "./fixtures/llama_cpp/quant_imatrix.json" with { type: "json" };

const tmp = await Deno.makeTempDir({ prefix: "kiln_quant_imatrix_" });
// In this process, encode on the calling thread: the pool's workers (and their
// bytes, the same for any count) are quantize_pool_test's and the CLI runs' concern.
const ONE = ["--quiet", "--threads", "1"];
const hf = join(tmp, "hf"), f32 = join(tmp, "f32.gguf"), dat = join(tmp, "imatrix.dat");
await writeRandomCheckpoint(hf, IMATRIX_CONFIG, { seed: 1 });
await quantize([hf, "--type", "f32", "-o", f32, "--quiet"]);
const sums = await writeImatrixCase(f32, dat);

async function tensorHashes(path: string): Promise<Record<string, string>> {
  using file = await GgufFile.open(path);
  const out: Record<string, string> = {};
  for (const t of file.tensors.values()) {
    const data = new Uint8Array(await file.read(t.name));
    const sha = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
    out[t.name] = `${t.type.name.toLowerCase()} ` +
      Array.from(sha, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, 32);
  }
  return out;
}

Deno.test("kiln quantize --imatrix: llama-quantize's bytes for every type, tensor for tensor", async () => {
  const want = fixture as Record<string, Record<string, string>>;
  assert.deepEqual(Object.keys(want), IMATRIX_TYPES);
  for (const type of IMATRIX_TYPES) {
    const out = join(tmp, `${type}.gguf`);
    await quantize([f32, "--type", type.toLowerCase(), "--imatrix", dat, "-o", out, ...ONE]);
    assert.deepEqual(await tensorHashes(out), want[type], type);
  }
  // Without the matrix the weighted tensors differ (the test could not pass by ignoring it).
  const plain = join(tmp, "plain.gguf");
  await quantize([f32, "--type", "q4_k_m", "-o", plain, ...ONE]);
  const p = await tensorHashes(plain);
  assert.notEqual(p["blk.0.attn_q.weight"], want.Q4_K_M["blk.0.attn_q.weight"]);
  assert.notEqual(p["blk.1.ffn_down_exps.weight"], want.Q4_K_M["blk.1.ffn_down_exps.weight"]);
});

Deno.test("kiln quantize --imatrix: the GGUF layout reads as the legacy one; the file records the matrix", async () => {
  const gguf = join(tmp, "imatrix.gguf");
  const weights = new Map(
    [...sums].map(([name, e]) => [name, {
      sums: e.sums,
      counts: new Float32Array(e.matrices).fill(e.ncall),
    }]),
  );
  const written = await writeImatrix(gguf, weights, {
    datasets: ["random.txt"],
    chunkCount: 7,
    chunkSize: 128,
  });
  assert.equal(written.written.length, sums.size);
  const a = await readImatrix(dat), b = await readImatrix(gguf);
  assert.deepEqual([...a.entries.keys()].sort(), [...b.entries.keys()].sort());
  for (const [name, e] of a.entries) {
    assert.deepEqual(b.entries.get(name)!.values, e.values, name);
  }
  assert.equal(a.entries.get("blk.0.ffn_gate_exps.weight")!.matrices, 1); // legacy: one block
  assert.equal(b.entries.get("blk.0.ffn_gate_exps.weight")!.matrices, 4);
  assert.deepEqual([b.datasets, b.chunkCount, b.chunkSize], [["random.txt"], 7, 128]);
  const out = join(tmp, "via_gguf.gguf");
  const cli = await kiln("quantize", f32, "--type", "q4_k_m", "--imatrix", gguf, "-o", out);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(
    cli.stdout,
    /imatrix: 14 of 16 quantized weights fitted with it \(without: token_embd\.weight, output\.weight\)/,
  );
  assert.deepEqual(
    await tensorHashes(out),
    (fixture as Record<string, Record<string, string>>).Q4_K_M,
  );
  using file = await GgufFile.open(out);
  assert.equal(file.string("quantize.imatrix.file"), gguf);
  assert.equal(file.string("quantize.imatrix.dataset"), "random.txt");
  assert.equal(file.number("quantize.imatrix.entries_count"), sums.size);
  assert.equal(file.number("quantize.imatrix.chunks_count"), 7);
});

Deno.test("kiln quantize --imatrix: a missing, malformed or foreign matrix is one clear error", async () => {
  const out = join(tmp, "bad.gguf");
  assertUserError(
    await kiln("quantize", f32, "--type", "q4_k", "--imatrix", join(tmp, "none.dat"), "-o", out),
    /--imatrix .*none\.dat: no such file/,
  );
  const junk = join(tmp, "junk.dat");
  await Deno.writeFile(junk, new Uint8Array([2, 0, 0, 0, 200, 0, 0, 0, 65]));
  assertUserError(
    await kiln("quantize", f32, "--type", "q4_k", "--imatrix", junk, "-o", out),
    /junk\.dat: entry 0's name of 200 bytes does not fit .*not a GGUF or legacy llama\.cpp imatrix/,
  );
  // A model file is GGUF but no importance matrix.
  assertUserError(
    await kiln("quantize", f32, "--type", "q4_k", "--imatrix", f32, "-o", out),
    /f32\.gguf: general\.type is "model", not "imatrix": this is not an importance matrix/,
  );
  // Another model's matrix: the sizes disagree, named by weight.
  const other = join(tmp, "other.gguf");
  await writeImatrix(
    other,
    new Map([["blk.0.attn_q.weight", {
      sums: new Float32Array(128),
      counts: new Float32Array([1]),
    }]]),
    { datasets: [], chunkCount: 1, chunkSize: 1 },
  );
  const r = await kiln("quantize", f32, "--type", "q4_k", "--imatrix", other, "-o", out);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /blk\.0\.attn_q\.weight has 128 importance values, but the weight has 256 columns/,
  );
  await assert.rejects(Deno.stat(out), Deno.errors.NotFound);
  // IQ2 needs a matrix, and one holding every tensor written in it.
  assertUserError(
    await kiln("quantize", f32, "--type", "iq2_xxs", "-o", out),
    /quantize: --type iq2_xxs needs an importance matrix \(--imatrix FILE/,
  );
  const r2 = await kiln("quantize", f32, "--type", "iq2_xs", "--imatrix", other, "-o", out);
  assert.equal(r2.code, 1);
  assert.match(
    r2.stderr,
    /tensor blk\.0\.attn_k\.weight is iq2_xs, which is written only with an importance matrix holding it/,
  );
  // IQ1_M and Q2_K_S's Q2_K too, but for the embeddings (and IQ1_M's output).
  const r3 = await kiln("quantize", f32, "--type", "q2_k_s", "--imatrix", other, "-o", out);
  assert.equal(r3.code, 1);
  assert.match(
    r3.stderr,
    /tensor blk\.0\.attn_k\.weight is q2_k, which is written only with an importance matrix holding it/,
  );
  await assert.rejects(() => openTiny(hf, { quantize: "iq1_m", imatrix: other }), {
    name: "TypeError",
    message: "loadModel: quantize iq1_m stores blk.0.attn_k.weight in a format llama-quantize " +
      "writes only with an importance matrix holding it, and this matrix has no entry for it",
  });
  await assert.rejects(() => openTiny(hf, { quantize: "iq2_xxs" }), {
    name: "TypeError",
    message: "loadModel: quantize iq2_xxs needs an importance matrix (imatrix), as llama-quantize",
  });
  // Truncated values: the entry and the byte where the file ends.
  const bytes = await Deno.readFile(dat);
  assert.throws(
    () => parseLegacyImatrix(bytes.subarray(0, 100), "cut.dat"),
    /cut\.dat: entry blk\.0\.attn_q\.weight: 256 values do not fit \(byte \d+\)/,
  );
});

/** `MOE_PROMPT`'s logits from the model at `path` loaded with `extra`. */
async function logitsOf(path: string, extra: LoadOptions = {}): Promise<Float32Array> {
  const m = await openTiny(path, extra);
  try {
    return (await m.forward(MOE_PROMPT)).slice();
  } finally {
    m.dispose();
  }
}

Deno.test("loadModel quantize-on-load with imatrix: the logits of kiln quantize --imatrix's file", async () => {
  // The Q4_K_M file the first test checked against llama-quantize, and the
  // folder quantized on load with the same matrix: the same blocks, so the
  // same logits bit for bit; without the matrix they differ.
  const file = join(tmp, "onload.gguf");
  await quantize([f32, "--type", "q4_k_m", "--imatrix", dat, "-o", file, ...ONE]);
  const logits = [
    await logitsOf(file),
    await logitsOf(hf, { quantize: "q4_k_m", imatrix: dat }),
    await logitsOf(hf, { quantize: "q4_k_m", imatrix: await readImatrix(dat) }),
    await logitsOf(hf, { quantize: "q4_k_m" }),
  ];
  assertBitsEqual(logits[1], logits[0], "on load vs file");
  assertBitsEqual(logits[2], logits[0], "on load (an Imatrix) vs file");
  assert.ok(logits[3].some((v, i) => v !== logits[0][i]), "the matrix changed nothing");
  // IQ2_XXS (a mix that needs the matrix): the first test's file, and on load.
  assertBitsEqual(
    await logitsOf(hf, { quantize: "iq2_xxs", imatrix: dat }),
    await logitsOf(join(tmp, "IQ2_XXS.gguf")),
    "iq2_xxs on load vs file",
  );
  await assert.rejects(() => openTiny(hf, { imatrix: dat }), {
    name: "TypeError",
    message: "loadModel: imatrix fits the weights quantize-on-load writes; give quantize too",
  });
  assertUserError(
    await kiln("generate", "--model", hf, "--prompt", "hi", "--imatrix", dat),
    /generate: --imatrix fits the weights --quantize stores; give --quantize too/,
  );
});
