/**
 * GPT-OSS (`GptOssForCausalLM`) beyond the logits of `hf_fixtures_test.ts`:
 * the published gpt-oss-20b config (transformers 4's layout, MXFP4 experts)
 * read field by field, refusals by field, `kiln inspect` at its true size, and
 * an MXFP4 checkpoint whose experts stay MXFP4 blocks on the GPU — also when
 * the expert scheduler holds only some of them, where the biases (indexed by
 * expert, not by slot) must follow each expert.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { loadModel } from "../app/model/mod.ts";
import { openWeights } from "../app/model/source.ts";
import { weightFormatsFor } from "../app/model/weights.ts";
import { readConfig } from "../app/config_file.ts";
import { GPT_OSS_20B_CONFIG } from "./fixtures/published_configs.ts";
import { kiln } from "./fixtures/kiln_cli.ts";
import type { Model } from "../app/model/mod.ts";
import { assertBitsEqual, gpu } from "./_util.ts";

const MXFP4_DIR = new URL("./fixtures/hf/gpt_oss_mxfp4/", import.meta.url).pathname;
const PROMPT = [3, 17, 99, 42, 7, 61, 0, 88, 25, 14, 70];

async function greedy(model: Model, n: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of model.generateIds(PROMPT, { maxTokens: n, readEvery: 4 })) ids.push(id);
  return ids;
}

Deno.test("gpt-oss: the published gpt-oss-20b config, field by field", () => {
  const cfg = parseConfig(GPT_OSS_20B_CONFIG);
  assert.equal(cfg.architecture, "GptOssForCausalLM");
  assert.equal(cfg.layers, 24);
  assert.deepEqual(
    cfg.pattern.slice(0, 4),
    [
      { mixer: "attention", ffn: "moe", window: 128 },
      { mixer: "attention", ffn: "moe", window: 0 },
      { mixer: "attention", ffn: "moe", window: 128 },
      { mixer: "attention", ffn: "moe", window: 0 },
    ],
  );
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.qkvBias, a.outBias, a.sinks],
    [64, 8, 64, 150000, true, true, true],
  );
  assert.equal(a.rope?.type, "yarn");
  assert.equal(a.rope?.factor, 32);
  assert.equal(a.rope?.truncate, false);
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.normTopk, m.ff, m.routerBias, m.expertBias],
    [32, 4, true, 2880, true, true],
  );
  assert.deepEqual(m.activation, { kind: "swiglu_oai", alpha: 1.702, limit: 7 });
  assert.equal(cfg.tieEmbeddings, false);
  // Without layer_types GptOssConfig slides the even layers.
  const { layer_types: _, head_dim: __, ...noTypes } = GPT_OSS_20B_CONFIG;
  assert.deepEqual(parseConfig(noTypes).pattern, cfg.pattern);
  // GptOssConfig's head_dim is 64 when absent, hidden / heads when null.
  const narrow = { ...noTypes, hidden_size: 512, num_attention_heads: 4, num_key_value_heads: 2 };
  assert.equal(parseConfig(narrow).attention!.headDim, 64);
  assert.equal(parseConfig({ ...narrow, head_dim: null }).attention!.headDim, 128);
});

Deno.test("gpt-oss: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { quantization_config: { quant_method: "awq", bits: 4 } },
      /quantization_config .* is not supported .*"modelopt" \(FP8\), "mxfp4", not "awq"/,
    ],
    [
      { layer_types: undefined, sliding_window: null },
      /default layer_types slide every second layer, but sliding_window is not set/,
    ],
    [{ layer_types: ["linear_attention"] }, /layer_types has 1 entries, num_hidden_layers is 24/],
    [
      { num_experts_per_tok: 33 },
      /num_experts_per_tok 33 must be between 1 and num_local_experts 32/,
    ],
    [{ swiglu_limit: 0 }, /swiglu_limit/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => parseConfig({ ...GPT_OSS_20B_CONFIG, ...edit }),
      pattern,
      JSON.stringify(edit),
    );
  }
});

Deno.test("kiln inspect: gpt-oss-20b's parameters and its MXFP4 experts under 8 GiB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_gpt_oss_20b_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(GPT_OSS_20B_CONFIG));
    const r = await kiln("inspect", dir, "--quantize", "mxfp4_moe", "--gpu-memory", "8GiB");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /q\/k\/v biases, o bias, sinks/);
    assert.match(
      r.stdout,
      /32 experts, top-4 \(renormalised\), expert width 2880, router bias, expert biases, clamped SwiGLU \(α 1\.702, limit 7\)/,
    );
    // 24 × (attention 26,550,144 + router 92,192 + experts 796,538,880 + norms 5,760) + two
    // 201088 × 2880 tables + the final norm = 20,914,757,184; a token's 4 of 32 experts: 4.19B.
    assert.match(r.stdout, /parameters: 20\.91B total, 4\.19B active per token/);
    assert.match(r.stdout, /layer 23: GPU \[[^\]]*\] \(\d+\/32\), streamed \d+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gpt-oss MXFP4 checkpoint: experts stay MXFP4, and the expert scheduler gives the same logits", async () => {
  const cfg = await readConfig(MXFP4_DIR);
  const w = await openWeights(MXFP4_DIR, { config: cfg });
  try {
    const t = w.info("model.layers.1.mlp.experts.4.up_proj.weight");
    assert.deepEqual([t.format, t.shape, t.byteLength], ["mxfp4", [32, 64], 32 * 2 * 17]);
    const formats = weightFormatsFor(cfg, w);
    for (const p of ["w1", "w3", "w2"]) assert.equal(formats[`model.layers.0.mlp.${p}`], "mxfp4");
  } finally {
    w.close();
  }
  const device = await gpu();
  const ref = await loadModel(MXFP4_DIR, { device, quiet: true, maxSeq: 64 });
  const logits = (await ref.forward(PROMPT)).slice();
  const ids = await greedy(ref, 10);
  ref.dispose();
  const probe = await loadModel(MXFP4_DIR, {
    device,
    quiet: true,
    maxSeq: 64,
    memoryBudget: "64GiB",
  });
  const { fixedBytes: F, expertBytes: eb, layers: L, experts: E } = probe.expertPlan!;
  probe.dispose();
  // Three MXFP4 projections of 32 × 64 values: 3 · 64 blocks of 17 bytes.
  assert.equal(eb, 3 * 64 * 17);
  for (const policy of ["lru", "stream"] as const) {
    const m = await loadModel(MXFP4_DIR, {
      device,
      quiet: true,
      maxSeq: 64,
      memoryBudget: F + E * eb, // 5 slots for 10 experts
      expertPolicy: policy,
    });
    try {
      assert.ok(m.experts, "the scheduler runs");
      assert.ok(m.expertPlan!.pinned.flat().length < L * E);
      assertBitsEqual(await m.forward(PROMPT), logits, `prefill logits, ${policy}`);
      assert.deepEqual(await greedy(m, 10), ids, `generated ids, ${policy}`);
    } finally {
      m.dispose();
    }
  }
});

Deno.test("gpt-oss: expert parallelism is refused by name, before any device is used", async () => {
  await assert.rejects(
    loadModel(MXFP4_DIR, { devices: 2, quiet: true }),
    /GptOssForCausalLM's experts \(biases, clamped SwiGLU\) do not run split across several devices/,
  );
});
