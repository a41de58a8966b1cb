/**
 * `kiln imatrix` / `computeImatrix`: the importance matrix of a small Mixtral
 * with a SentencePiece tokenizer over a text, in chunks of 32 tokens, against
 * the one llama.cpp's own `llama-imatrix` computed for the same model, text
 * and chunking (`tests/fixtures/llama_cpp/imatrix_reference.json`, made by
 * `tools/llama_imatrix_reference.ts`): the same weights, per-expert counts and
 * values to float rounding (llama.cpp keeps its KV cache in f16). Then the
 * CLI's GGUF and legacy files, the matrix feeding `kiln quantize --imatrix`,
 * a Mamba model's SSM weights, and the user's mistakes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { computeImatrix } from "../app/imatrix.ts";
import { readImatrix } from "../app/gguf/imatrix.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { assertUserError, kiln } from "./fixtures/kiln_cli.ts";
import { IMATRIX_RUN, IMATRIX_TEXT, writeImatrixModel } from "./fixtures/llama_cpp/imatrix_case.ts";
import { tinySentencePieceTokenizerJson } from "./fixtures/tiny_tokenizers.ts";
import reference from "./fixtures/llama_cpp/imatrix_reference.json" with { type: "json" };

const tmp = await Deno.makeTempDir({ prefix: "kiln_imatrix_" });
const dir = join(tmp, "mixtral");
await writeImatrixModel(dir);
const text = join(tmp, "text.txt");
await Deno.writeTextFile(text, IMATRIX_TEXT);
const computed = await computeImatrix(dir, [IMATRIX_TEXT], IMATRIX_RUN);

/** Mean squares of a computed weight: Σx² / rows, matrix by matrix. */
function means(name: string): Float64Array {
  const w = computed.weights.get(name)!;
  const cols = w.sums.length / w.counts.length;
  return Float64Array.from(w.sums, (v, i) => v / w.counts[Math.floor(i / cols)]);
}

Deno.test("computeImatrix: llama-imatrix's matrix for the same model, text and chunks", () => {
  const want = reference.entries as Record<string, number[]>;
  assert.deepEqual([...computed.weights.keys()].sort(), Object.keys(want).sort());
  assert.equal(computed.chunks, reference.chunks);
  for (const [name, values] of Object.entries(want)) {
    const got = means(name);
    assert.equal(got.length, values.length, name);
    const scale = Math.max(...values);
    for (let i = 0; i < values.length; i++) {
      const err = Math.abs(got[i] - values[i]) / scale;
      assert.ok(err < 2e-3, `${name}[${i}]: ${got[i]} vs llama-imatrix ${values[i]}`);
    }
  }
  // Routing: each token reaches two of the four experts of a layer.
  const T = IMATRIX_RUN.chunks * IMATRIX_RUN.chunkSize;
  for (const l of [0, 1]) {
    const counts = computed.weights.get(`blk.${l}.ffn_gate_exps.weight`)!.counts;
    assert.equal(counts.reduce((a, b) => a + b, 0), 2 * T);
    assert.deepEqual(computed.weights.get(`blk.${l}.ffn_down_exps.weight`)!.counts, counts);
    assert.deepEqual(computed.weights.get(`blk.${l}.attn_q.weight`)!.counts, new Float32Array([T]));
    // q, k and v read the same normed input.
    assert.deepEqual(means(`blk.${l}.attn_k.weight`), means(`blk.${l}.attn_q.weight`));
  }
});

Deno.test("kiln imatrix: GGUF and legacy files of that matrix, which kiln quantize takes", async () => {
  const gguf = join(tmp, "imatrix.gguf"), dat = join(tmp, "imatrix.dat");
  for (const out of [gguf, dat]) {
    const r = await kiln(
      "imatrix",
      dir,
      "--text",
      text,
      "-o",
      out,
      "--chunk-size",
      "32",
      "--chunks",
      "6",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^wrote .*: 16 weights from 6 chunks of 32 tokens\n$/);
  }
  const g = await readImatrix(gguf), d = await readImatrix(dat);
  assert.deepEqual([g.datasets, g.chunkCount, g.chunkSize], [["text.txt"], 6, 32]);
  assert.deepEqual([d.datasets, d.chunkCount], [["text.txt"], 6]);
  for (const [name, w] of computed.weights) {
    const m = means(name);
    const fromGguf = g.entries.get(name)!.values, fromDat = d.entries.get(name)!.values;
    for (let i = 0; i < m.length; i++) {
      assert.ok(Math.abs(fromGguf[i] - m[i]) <= 1e-6 * m[i], `${name}[${i}] (gguf)`);
      assert.ok(Math.abs(fromDat[i] - m[i]) <= 1e-6 * m[i], `${name}[${i}] (dat)`);
    }
    assert.equal(g.entries.get(name)!.matrices, w.counts.length);
  }
  const q = join(tmp, "q4_k_m.gguf");
  const r = await kiln("quantize", dir, "--type", "q4_k_m", "--imatrix", gguf, "-o", q);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /imatrix: 14 of 16 quantized weights fitted with it/);
  using file = await GgufFile.open(q);
  assert.equal(file.number("quantize.imatrix.entries_count"), 16);
});

Deno.test("computeImatrix: a Mamba model's in, x, dt and out projections", async () => {
  const mamba = join(tmp, "mamba");
  const tok = tinySentencePieceTokenizerJson();
  const vocab = Object.keys((tok.model as { vocab: object }).vocab).length;
  await writeRandomCheckpoint(mamba, {
    architectures: ["MambaForCausalLM"],
    vocab_size: vocab,
    hidden_size: 32,
    state_size: 4,
    num_hidden_layers: 2,
    intermediate_size: 64,
    conv_kernel: 4,
    time_step_rank: 4,
    bos_token_id: 1,
  }, { seed: 2 });
  await Deno.writeTextFile(join(mamba, "tokenizer.json"), JSON.stringify(tok));
  const r = await computeImatrix(mamba, [IMATRIX_TEXT], { chunkSize: 16, chunks: 2 });
  assert.deepEqual(
    [...r.weights.keys()].sort(),
    [0, 1].flatMap((l) =>
      ["ssm_dt", "ssm_in", "ssm_out", "ssm_x"].map((w) => `blk.${l}.${w}.weight`)
    ),
  );
  for (const [name, w] of r.weights) {
    assert.deepEqual(w.counts, new Float32Array([32]), name);
    assert.ok(w.sums.every((v) => Number.isFinite(v) && v >= 0), name);
    assert.ok(w.sums.some((v) => v > 0), name);
  }
  assert.equal(r.weights.get("blk.0.ssm_in.weight")!.sums.length, 32);
  assert.equal(r.weights.get("blk.0.ssm_dt.weight")!.sums.length, 4);
});

Deno.test("kiln imatrix: missing text, too little of it, a bad chunk size, no tokenizer", async () => {
  const out = join(tmp, "bad.gguf");
  assertUserError(
    await kiln("imatrix", dir, "--text", join(tmp, "none.txt"), "-o", out),
    /imatrix: --text .*none\.txt: no such file/,
  );
  assertUserError(await kiln("imatrix", dir, "-o", out), /give the calibration text with --text/);
  assertUserError(
    await kiln("imatrix", dir, "--text", text, "-o", join(tmp, "x.bin")),
    /the output must be a \.gguf \(or legacy \.dat\) file/,
  );
  const short = join(tmp, "short.txt");
  await Deno.writeTextFile(short, "The quick brown fox.");
  const r = await kiln("imatrix", dir, "--text", short, "-o", out, "--chunk-size", "32");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the text is \d+ tokens, less than one chunk of 32/);
  await assert.rejects(
    () => computeImatrix(dir, [IMATRIX_TEXT], { chunkSize: 8 }),
    /chunkSize must be an integer from 16 to the model's 128 positions, got 8/,
  );
  const bare = join(tmp, "bare");
  await writeRandomCheckpoint(bare, { ...(await readConfig(dir)) }, { seed: 1 });
  await assert.rejects(
    () => computeImatrix(bare, [IMATRIX_TEXT]),
    /bare: no tokenizer; an importance matrix is computed from text/,
  );
  await assert.rejects(Deno.stat(out), Deno.errors.NotFound);
});

async function readConfig(d: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(d, "config.json")));
}
