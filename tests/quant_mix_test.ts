/**
 * llama-quantize's mixed types (`q4_k_m`, `q3_k_s`, `iq3_m`…): the ggml type
 * Kiln writes each tensor in equals the one llama-quantize itself picked for
 * the same checkpoint (`tests/fixtures/llama_cpp/quant_mixes.json`, recorded by
 * `tools/llama_quantize_mixes.ts` from llama.cpp c392e50) — eight-expert and
 * four-expert Mixtrals, tied and untied, rows of whole and of partial
 * super-blocks, Qwen2-MoE with its shared expert, OLMoE and Mamba — and
 * `kiln quantize --type q4_k_m` writes a file of those types and its file type.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ggufTensorsFromHf, ggufTensorType, ggufTensorTypes } from "../app/gguf/arch.ts";
import { GGUF_MIXES } from "../app/gguf/quant_mix.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { tensorShapes, writeRandomCheckpoint } from "../app/random_weights.ts";
import { MIX_CASES, OVERRIDE_VARIANTS, variantKey } from "./fixtures/llama_cpp/quant_mix_cases.ts";
import { kiln } from "./cli_util.ts";
import { loadModel } from "../app/model/mod.ts";
import { assertBitsEqual, gpu } from "./_util.ts";
import { openWeights, weightFormatsFor } from "../app/model/mod.ts";
import { modelFormats } from "../app/model/expert_budget.ts";
import { parseConfig } from "../models/architectures/mod.ts";

/** The tensors a checkpoint of `config` holds, as `ggufTensorsFromHf` takes them. */
const shapesOf = (config: Record<string, unknown>) =>
  new Map([...tensorShapes(config)].map(([n, shape]) => [n, { shape }]));

const FIXTURE: Record<string, { names: string[]; types: Record<string, string> }> = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/llama_cpp/quant_mixes.json", import.meta.url)),
);

/** The type of each tensor of the GGUF file at `path`, by name. */
async function typesIn(path: string): Promise<Record<string, string>> {
  using f = await GgufFile.open(path);
  return Object.fromEntries(
    [...f.tensors.values()].map((t) => [t.name, t.type.name.toLowerCase()]),
  );
}

/** llama-quantize's type for each tensor of `name` in `mix`, by tensor name. */
function expected(name: string, mix: string): Record<string, string> {
  const { names, types } = FIXTURE[name];
  const t = types[mix].split(" ");
  return Object.fromEntries(names.map((n, i) => [n, t[i]]));
}

Deno.test("mixes: every tensor's type is llama-quantize's, for each case and mix", () => {
  let checked = 0;
  for (const [name, config] of Object.entries(MIX_CASES)) {
    const plans = ggufTensorsFromHf(config, shapesOf(config));
    for (const mix of GGUF_MIXES) {
      const want = expected(name, mix);
      const got = ggufTensorTypes(plans, mix, config);
      assert.deepEqual(plans.map((p) => p.name).sort(), Object.keys(want).sort(), `${name}`);
      plans.forEach((p, i) => assert.equal(got[i], want[p.name], `${name} ${mix}: ${p.name}`));
      checked += plans.length;
    }
  }
  assert.ok(checked > 2000, `${checked} tensors checked`);
  // A mix needs the whole model: asking for one tensor alone is an error, not a guess.
  const config = MIX_CASES.mixtral8;
  const plan = ggufTensorsFromHf(config, shapesOf(config))[0];
  assert.throws(() => ggufTensorType(plan, "q4_k_m"), {
    name: "TypeError",
    message: /ggufTensorTypes/,
  });
});

Deno.test("mixes: --output-tensor-type / --token-embedding-type give llama-quantize's types", () => {
  for (const [name, config] of Object.entries(MIX_CASES)) {
    const plans = ggufTensorsFromHf(config, shapesOf(config));
    for (const v of OVERRIDE_VARIANTS) {
      const key = variantKey(v);
      const want = expected(name, key);
      const got = ggufTensorTypes(plans, v.type as "q4_k", config, {
        output: v.output,
        embedding: v.embedding,
      });
      plans.forEach((p, i) => assert.equal(got[i], want[p.name], `${name} ${key}: ${p.name}`));
    }
  }
  // A plain type: only the two tensors change (llama-quantize's --pure with the flags).
  const m8 = MIX_CASES.mixtral8;
  const p8 = ggufTensorsFromHf(m8, shapesOf(m8));
  const plain = ggufTensorTypes(p8, "q4_k", m8);
  const flagged = ggufTensorTypes(p8, "q4_k", m8, { output: "f16", embedding: "q8_0" });
  p8.forEach((p, i) => {
    const want = p.name === "output.weight"
      ? "f16"
      : p.name === "token_embd.weight"
      ? "q8_0"
      : plain[i];
    assert.equal(flagged[i], want, p.name);
  });
  // No fallback for an asked-for type: rows of 288 are not whole Q6_K blocks (ggml aborts).
  const config = MIX_CASES.mixtral8_partial;
  const plans = ggufTensorsFromHf(config, shapesOf(config));
  assert.throws(() => ggufTensorTypes(plans, "q4_k_m", config, { output: "q6_k" }), {
    name: "RangeError",
    message: "quantize: tensor output.weight has rows of 288 values, not whole 256-value " +
      "blocks of q6_k; choose another --output-tensor-type",
  });
});

Deno.test("q4_k_m: kiln quantize writes llama-quantize's types; on load the same blocks; close to f32", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_mix_" });
  try {
    // Three layers, rows of partial super-blocks: Q5_0/Q5_1/IQ4_NL/Q8_0 fallbacks too.
    const config = MIX_CASES.mixtral8_partial;
    const hf = join(dir, "m");
    await writeRandomCheckpoint(hf, config, { seed: 2 });
    const out = join(dir, "m.q4_k_m.gguf");
    const r = await kiln("quantize", hf, "--type", "q4_k_m", "-o", out, "--quiet");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await typesIn(out), expected("mixtral8_partial", "q4_k_m"));
    {
      using f = await GgufFile.open(out);
      assert.equal(f.metadata.get("general.file_type"), 15);
    }
    // The "_L" variant: Q8_0 embeddings and output, as llama-quantize's flags give them.
    const outL = join(dir, "m.q4_k_l.gguf");
    const rL = await kiln(
      "quantize",
      hf,
      "--type",
      "q4_k_m",
      "--output-tensor-type",
      "Q8_0",
      "--token-embedding-type",
      "q8_0",
      "-o",
      outL,
      "--quiet",
    );
    assert.equal(rL.code, 0, rL.stderr);
    assert.deepEqual(
      await typesIn(outL),
      expected("mixtral8_partial", variantKey(OVERRIDE_VARIANTS[0])),
    );
    const prompt = [1, 7, 99, 300, 42, 5];
    const logits: Float32Array[] = [];
    // f32; the q4_k_m file; the f32 folder quantized on load to q4_k_m.
    for (const [path, quantize] of [[hf], [out], [hf, "q4_k_m"]] as const) {
      const m = await loadModel(path, { device: await gpu(), quiet: true, maxSeq: 16, quantize });
      try {
        logits.push((await m.forward(prompt)).slice());
      } finally {
        m.dispose();
      }
    }
    let se = 0, ss = 0;
    for (let i = 0; i < logits[0].length; i++) {
      se += (logits[1][i] - logits[0][i]) ** 2;
      ss += logits[0][i] ** 2;
    }
    const rel = Math.sqrt(se / ss);
    assert.ok(rel < 0.1, `q4_k_m logits off f32 by ${rel} of their RMS`);
    // Quantize-on-load picks the file's types and writes the file's blocks.
    assertBitsEqual(logits[2], logits[1], "q4_k_m on load vs the q4_k_m file");
    const cfg = parseConfig(config);
    const gguf = await openWeights(out);
    try {
      const onLoad = weightFormatsFor(cfg, undefined, "q4_k_m");
      assert.deepEqual(onLoad, weightFormatsFor(cfg, gguf));
      // The partial super-blocks' fallbacks and the eight-expert head types among them.
      assert.deepEqual(new Set(Object.values(onLoad)), new Set(["q5_0", "q5_1", "q8_0"]));
      // What inspect plans with: as loaded, and one format a pool across layers under a budget.
      assert.deepEqual(await modelFormats(hf, cfg, { quantize: "q4_k_m" }), onLoad);
      const pooled = await modelFormats(hf, cfg, { quantize: "q4_k_m", memoryBudget: "1GiB" });
      const w2 = Object.entries(pooled).filter(([n]) => n.endsWith(".w2")).map(([, f]) => f);
      assert.equal(new Set(w2).size, 1, `w2 formats under a budget: ${w2}`);
      const w2Loaded = Object.entries(onLoad).filter(([n]) => n.endsWith(".w2")).map(([, f]) => f);
      assert.ok(new Set(w2Loaded).size > 1, `w2 formats as loaded: ${w2Loaded}`);
    } finally {
      gguf.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
