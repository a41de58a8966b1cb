/**
 * DeepSeek-V3 (`DeepseekV3ForCausalLM`) and V2 (`DeepseekV2ForCausalLM`)
 * beyond the logits of `hf_fixtures_test.ts` and the gradients of
 * `hf_grads_test.ts`: the published configs read field by field, refusals by
 * field, `kiln inspect` at their true size (DeepSeek's 671B parameters, 37B
 * active; V2-Lite's 15.7B), the latent KV cache's size in the plan, and a
 * checkpoint holding its multi-token-prediction layer.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { loadModel } from "../app/model/mod.ts";
import { DEEPSEEK_V2_LITE_CONFIG, DEEPSEEK_V3_CONFIG } from "./fixtures/published_configs.ts";
import { kiln } from "./fixtures/kiln_cli.ts";
import { gpu } from "./_util.ts";
import { readSafetensors, writeSafetensors } from "../app/train/safetensors_write.ts";

const FIXTURE = new URL("./fixtures/hf/deepseek_v3/", import.meta.url).pathname;
const { quantization_config: _, ...FLOAT_V3 } = DEEPSEEK_V3_CONFIG;

Deno.test("deepseek-v3: the published config, field by field", () => {
  const cfg = parseConfig(FLOAT_V3);
  assert.equal(cfg.layers, 61);
  assert.ok(cfg.pattern.slice(0, 3).every((l) => l.ffn === "mlp"));
  assert.ok(cfg.pattern.slice(3).every((l) => l.ffn === "moe"));
  const a = cfg.attention!;
  assert.deepEqual([a.heads, a.kvHeads, a.headDim, a.rotaryDim], [128, 128, 192, 64]);
  assert.deepEqual(a.mla, {
    qLoraRank: 1536,
    kvLoraRank: 512,
    nopeDim: 128,
    ropeDim: 64,
    vDim: 128,
    interleave: true,
  });
  assert.equal(a.rope!.type, "yarn");
  // qk_head_dim^-½ · (0.1 · ln 40 + 1)²: yarn's mscale_all_dim on the softmax.
  const m = 0.1 * Math.log(40) + 1;
  assert.ok(Math.abs(a.scale! - m * m / Math.sqrt(192)) < 1e-12);
  const moe = cfg.moe!;
  assert.deepEqual(
    [moe.experts, moe.topK, moe.ff, moe.router, moe.routedScaling, moe.groups, moe.normTopk],
    [256, 8, 2048, "sigmoid_bias", 2.5, { count: 8, kept: 4 }, true],
  );
  assert.deepEqual(moe.sharedExpert, { ff: 2048, gated: false });
  assert.equal(cfg.extraLayers, 1);
  // Moonlight and DeepSeek-V2-Lite style: no query bottleneck.
  assert.equal(parseConfig({ ...FLOAT_V3, q_lora_rank: null }).attention!.mla!.qLoraRank, 0);
});

Deno.test("deepseek-v3: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { quantization_config: { quant_method: "awq", bits: 4 } },
      /quantization_config .* not supported .*"fp8", "compressed-tensors", "gptq" and "modelopt" \(FP8\), not "awq"/,
    ],
    [
      { num_key_value_heads: 16 },
      /num_key_value_heads 16 must equal/,
    ],
    [
      { topk_group: 9 },
      /"topk_group" \(9\) exceeds "n_group" \(8\)/,
    ],
    [{ hidden_act: "mish" }, /hidden_act "mish" is not supported/],
    [{ qk_nope_head_dim: 0 }, /"qk_nope_head_dim" must be > 0/],
  ];
  for (const [edit, pattern] of cases) {
    const config = { ...DEEPSEEK_V3_CONFIG, ...edit };
    assert.throws(() => parseConfig(config), pattern, JSON.stringify(edit));
  }
});

Deno.test("kiln inspect: DeepSeek-V3's 671B parameters, 37B active, and its latent cache", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_deepseek_v3_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(FLOAT_V3));
    const r = await kiln("inspect", dir, "--dtype", "f16");
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /latent attention \(query rank 1536, key\/value rank 512, value dim 128, interleaved RoPE; cache 576 values a token\)/,
    );
    assert.match(r.stdout, /256 experts, top-8 .* within the best 4 of 8 expert groups/);
    assert.match(r.stdout, /parameters: 671\.03B total, 37\.55B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deepseek-v3: the KV cache holds one latent row a token; an MTP layer is skipped", async () => {
  const device = await gpu();
  const plain = await loadModel(FIXTURE, { device, quiet: true, maxSeq: 32 });
  const ids = [3, 17, 99, 42, 7, 61];
  const want = (await plain.forward(ids)).slice();
  // kv_lora_rank 16 + qk_rope_head_dim 8 values a token, one state per attention layer.
  const caches = [...plain.decode.graph.states.keys()].filter((n) => n.endsWith(".kv_cache"));
  assert.equal(caches.length, 3);
  for (const n of caches) {
    const v = plain.decode.graph.values[plain.decode.graph.states.get(n)!];
    assert.deepEqual(v.shape, [32, 1, 24], n);
  }
  plain.dispose();
  const dir = await Deno.makeTempDir({ prefix: "kiln_deepseek_mtp_" });
  try {
    await Deno.copyFile(join(FIXTURE, "config.json"), join(dir, "config.json"));
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    await Deno.writeTextFile(
      join(dir, "config.json"),
      JSON.stringify({ ...config, num_nextn_predict_layers: 1 }),
    );
    const tensors = await readSafetensors(join(FIXTURE, "model.safetensors"));
    const mtp = [...tensors.values()].filter((t) => t.name.startsWith("model.layers.2."))
      .map((t) => ({ ...t, name: t.name.replace("model.layers.2.", "model.layers.3.") }));
    await writeSafetensors(join(dir, "model.safetensors"), [...tensors.values(), ...mtp]);
    const withMtp = await loadModel(dir, { device, quiet: true, maxSeq: 32 });
    try {
      assert.deepEqual(await withMtp.forward(ids), want);
    } finally {
      withMtp.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deepseek-v2: the published V2-Lite config, field by field; its router's options", async () => {
  const cfg = parseConfig(DEEPSEEK_V2_LITE_CONFIG);
  const a = cfg.attention!, m = cfg.moe!;
  assert.deepEqual([a.heads, a.headDim, a.mla!.qLoraRank, a.mla!.interleave], [16, 192, 0, true]);
  assert.deepEqual(
    [m.experts, m.topK, m.router, m.normTopk, m.routedScaling, m.groups, m.sharedExpert],
    [64, 6, "softmax_topk", false, 1, undefined, { ff: 2816, gated: false }],
  );
  // V2's router never renormalises (transformers ignores norm_topk_prob), and complex
  // RoPE pairs adjacent values whatever rope_interleave says.
  const odd = parseConfig({
    ...DEEPSEEK_V2_LITE_CONFIG,
    norm_topk_prob: true,
    rope_interleave: false,
  });
  assert.deepEqual([odd.moe!.normTopk, odd.attention!.mla!.interleave], [false, true]);
  const limited = parseConfig({
    ...DEEPSEEK_V2_LITE_CONFIG,
    topk_method: "group_limited_greedy",
    n_group: 8,
    topk_group: 3,
  });
  assert.deepEqual(limited.moe!.groups, { count: 8, kept: 3 });
  // Greedy ignores the group fields, as transformers does.
  const greedy = parseConfig({ ...DEEPSEEK_V2_LITE_CONFIG, n_group: 8, topk_group: 3 });
  assert.equal(greedy.moe!.groups, undefined);
  assert.throws(
    () => parseConfig({ ...DEEPSEEK_V2_LITE_CONFIG, topk_method: "noaux_tc" }),
    /topk_method "noaux_tc" is not supported .*"greedy" or "group_limited_greedy"/,
  );
  const { n_group: _g, topk_group: _k, ...noGroups } = DEEPSEEK_V2_LITE_CONFIG;
  assert.throws(
    () => parseConfig({ ...noGroups, topk_method: "group_limited_greedy" }),
    /topk_method "group_limited_greedy" needs n_group and topk_group/,
  );
  const dir = await Deno.makeTempDir({ prefix: "kiln_deepseek_v2_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(DEEPSEEK_V2_LITE_CONFIG));
    const r = await kiln("inspect", dir, "--dtype", "f16");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /64 experts, top-6, expert width 1408, shared expert width 2816/);
    assert.match(r.stdout, /parameters: 15\.71B total, 2\.66B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
