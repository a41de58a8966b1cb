/**
 * GLM-4.5 (`Glm4MoeForCausalLM`) beyond the logits of `hf_fixtures_test.ts`:
 * the published GLM-4.5-Air config read field by field, refusals by field,
 * `kiln inspect` at its true size, and a checkpoint that also holds its
 * multi-token-prediction layer (as published ones do), which loads and gives
 * the same logits, as transformers skips that layer too.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { loadModel } from "../app/model/mod.ts";
import { GLM_45_AIR_CONFIG } from "./fixtures/published_configs.ts";
import { kiln } from "./fixtures/kiln_cli.ts";
import { gpu } from "./_util.ts";
import { Trainer } from "../app/train/mod.ts";
import { readSafetensors, writeSafetensors } from "../app/train/safetensors_write.ts";

const FIXTURE = new URL("./fixtures/hf/glm4_moe/", import.meta.url).pathname;

Deno.test("glm-4.5: the published GLM-4.5-Air config, field by field", () => {
  const cfg = parseConfig(GLM_45_AIR_CONFIG);
  assert.equal(cfg.layers, 46);
  assert.deepEqual(cfg.pattern[0], { mixer: "attention", ffn: "mlp" });
  assert.ok(cfg.pattern.slice(1).every((l) => l.ffn === "moe"));
  assert.equal(cfg.intermediate, 10944);
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.qkvBias, a.outBias, a.qkNorm, a.rotaryDim],
    [96, 8, 128, 1e6, true, false, false, 64],
  );
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.ff, m.router, m.routedScaling, m.normTopk, m.sharedExpert],
    [128, 8, 1408, "sigmoid_bias", 1, true, { ff: 1408, gated: false }],
  );
  assert.equal(cfg.extraLayers, 1);
  assert.deepEqual(cfg.eosTokenIds, [151329, 151336, 151338]);
  // Without a factor anywhere, Glm4MoeConfig rotates half of each head.
  const { partial_rotary_factor: _, ...noFactor } = GLM_45_AIR_CONFIG;
  assert.equal(parseConfig(noFactor).attention!.rotaryDim, 64);
  // An odd int(head_dim · factor): frequencies over 39, the 40 values cos and sin cover rotate.
  const odd = parseConfig({ ...GLM_45_AIR_CONFIG, partial_rotary_factor: 0.31 }).attention!;
  assert.deepEqual([odd.rotaryDim, odd.ropeFreqDim], [40, 39]);
  // DeepSeek-V3's group-limited routing and unnormalised weights, as the config asks.
  const grouped = parseConfig({
    ...GLM_45_AIR_CONFIG,
    n_group: 8,
    topk_group: 4,
    norm_topk_prob: false,
  }).moe!;
  assert.deepEqual([grouped.groups, grouped.normTopk], [{ count: 8, kept: 4 }, false]);
  assert.equal(
    parseConfig({ ...GLM_45_AIR_CONFIG, n_group: 8, topk_group: 8 }).moe!.groups,
    undefined,
  );
  // QK-norm per head when asked for.
  assert.equal(
    parseConfig({ ...GLM_45_AIR_CONFIG, use_qk_norm: true }).attention!.qkNormPerHead,
    true,
  );
});

Deno.test("glm-4.5: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ n_group: 5, topk_group: 2 }, /"n_group" \(5\) must split the 128 experts into equal/],
    [{ n_group: 8, topk_group: 9 }, /"topk_group" \(9\) exceeds "n_group" \(8\)/],
    [{ n_group: 64, topk_group: 2 }, /"num_experts_per_tok" \(8\) exceeds the 4 experts of the 2/],
    [{ hidden_act: "mish" }, /hidden_act "mish" is not supported/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
    [{ partial_rotary_factor: 0.005 }, /partial_rotary_factor 0.005 of head_dim 128 rotates no/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => parseConfig({ ...GLM_45_AIR_CONFIG, ...edit }),
      pattern,
      JSON.stringify(edit),
    );
  }
});

Deno.test("kiln inspect: GLM-4.5-Air's parameters and its experts under 24 GiB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_glm45_air_" });
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(GLM_45_AIR_CONFIG));
    const r = await kiln("inspect", dir, "--dtype", "f16", "--gpu-memory", "24GiB");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /q\/k\/v biases, RoPE over 64 of 128 values a head/);
    assert.match(
      r.stdout,
      /128 experts, top-8 \(renormalised\), expert width 1408, shared expert width 1408, sigmoid routing with a selection bias/,
    );
    // 46 attention blocks of 104,878,080 (q/k/v biases, no o bias) and 92 norms of 4096; one
    // dense MLP of 3 · 4096 · 10944; 45 × (128 experts of 3 · 4096 · 1408 + router 524,288 +
    // selection bias 128 + a shared expert of 3 · 4096 · 1408); two 151552 × 4096 tables.
    assert.match(r.stdout, /parameters: 106\.85B total, 13\.42B active per token/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("glm-4.5: a checkpoint holding its multi-token-prediction layer loads and gives the same logits", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_glm_mtp_" });
  try {
    await Deno.copyFile(join(FIXTURE, "config.json"), join(dir, "config.json"));
    const tensors = await readSafetensors(join(FIXTURE, "model.safetensors"));
    // Layer 3 of a 3-layer model: what published checkpoints add (eh_proj, enorm, …).
    const mtp = [...tensors.values()].filter((t) => t.name.startsWith("model.layers.2."))
      .map((t) => ({ ...t, name: t.name.replace("model.layers.2.", "model.layers.3.") }));
    const eh = {
      name: "model.layers.3.eh_proj.weight",
      shape: [48, 96],
      data: new Float32Array(48 * 96),
    };
    await writeSafetensors(join(dir, "model.safetensors"), [...tensors.values(), ...mtp, eh]);
    const device = await gpu();
    const ids = [3, 17, 99, 42, 7, 61];
    const plain = await loadModel(FIXTURE, { device, quiet: true, maxSeq: 32 });
    const want = (await plain.forward(ids)).slice();
    plain.dispose();
    const withMtp = await loadModel(dir, { device, quiet: true, maxSeq: 32 });
    try {
      assert.deepEqual(await withMtp.forward(ids), want);
    } finally {
      withMtp.dispose();
    }
    // Without num_nextn_predict_layers the same tensors describe another model: refused.
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    await Deno.writeTextFile(
      join(dir, "config.json"),
      JSON.stringify({ ...config, num_nextn_predict_layers: 0 }),
    );
    await assert.rejects(
      loadModel(dir, { device, quiet: true, maxSeq: 32 }),
      /tensor\(s\) that Glm4MoeForCausalLM as configured does not use \("model\.layers\.3\./,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("glm-4.5: training leaves the selection bias alone (a buffer in PyTorch) and saves it", async () => {
  const device = await gpu();
  const dir = await Deno.makeTempDir({ prefix: "kiln_glm_train_" });
  try {
    const trainer = await Trainer.create({
      from: FIXTURE,
      batch: 1,
      seq: 4,
      seed: 1,
      optimizer: { kind: "adamw", weightDecay: 0.5 },
      schedule: { peak: 1e-2, warmup: 0, total: 2 },
      device,
    });
    assert.ok(!trainer.step.params.includes("model.layers.1.mlp.bias"), "not updated");
    const before = (await trainer.exe.readState("model.layers.1.mlp.bias")).data.slice();
    const router = (await trainer.exe.readState("model.layers.1.mlp.router")).data.slice();
    const tokens = Uint32Array.from({ length: 64 }, (_, i) => (i * 13 + 5) % 103);
    await trainer.train(tokens, { steps: 2 });
    assert.deepEqual((await trainer.exe.readState("model.layers.1.mlp.bias")).data, before);
    assert.notDeepEqual((await trainer.exe.readState("model.layers.1.mlp.router")).data, router);
    await trainer.save(dir);
    // The saved checkpoint holds it (as transformers saves the buffer) and loads.
    const saved = await readSafetensors(join(dir, "model.safetensors"));
    assert.deepEqual(
      saved.get("model.layers.1.mlp.gate.e_score_correction_bias")?.data,
      Float32Array.from(before),
    );
    const m = await loadModel(dir, { device, quiet: true, maxSeq: 16 });
    m.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
