/**
 * K-EXAONE (`ExaoneMoeForCausalLM`) beyond the logits and gradients of
 * `hf_fixtures_test.ts` / `hf_grads_test.ts`: ExaoneMoeConfig's defaults read
 * field by field — the hybrid attention (sliding layers with RoPE, every
 * `sliding_window_pattern`-th global without), the dense and sparse layers —
 * the lists that override the derivations, the refusals by field, and the
 * released checkpoints' `mtp.*` tensors skipped as transformers skips them.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { loadModel } from "../app/model/mod.ts";
import { readSafetensors, writeSafetensors } from "../app/train/safetensors_write.ts";
import { gpu } from "./_util.ts";

/** ExaoneMoeConfig's defaults, written out. */
const EXAONE_MOE_CONFIG: Readonly<Record<string, unknown>> = {
  architectures: ["ExaoneMoeForCausalLM"],
  model_type: "exaone_moe",
  vocab_size: 102400,
  hidden_size: 4096,
  intermediate_size: 16384,
  num_hidden_layers: 8,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  moe_intermediate_size: 1024,
  num_experts: 64,
  num_experts_per_tok: 8,
  num_shared_experts: 1,
  routed_scaling_factor: 2.5,
  first_k_dense_replace: 1,
  sliding_window: 4096,
  sliding_window_pattern: 4,
  rms_norm_eps: 1e-5,
};

Deno.test("exaone_moe: ExaoneMoeConfig's defaults, field by field", () => {
  const cfg = parseConfig(EXAONE_MOE_CONFIG);
  // Every 4th layer global without RoPE, the others sliding with it; layer 0 dense.
  assert.deepEqual(
    cfg.pattern.map((p) => [p.ffn, p.window, p.nope ?? false]),
    [
      ["mlp", 4096, false],
      ["moe", 4096, false],
      ["moe", 4096, false],
      ["moe", 0, true],
      ["moe", 4096, false],
      ["moe", 4096, false],
      ["moe", 4096, false],
      ["moe", 0, true],
    ],
  );
  const a = cfg.attention!;
  assert.deepEqual(
    [a.heads, a.kvHeads, a.headDim, a.ropeTheta, a.qkNormPerHead, a.qkvBias, a.outBias],
    [32, 32, 128, 1e4, true, false, false],
  );
  const m = cfg.moe!;
  assert.deepEqual(
    [m.experts, m.topK, m.ff, m.router, m.routedScaling, m.normTopk, m.sharedExpert, m.groups],
    [64, 8, 1024, "sigmoid_bias", 2.5, true, { ff: 1024, gated: false }, undefined],
  );
  assert.equal(m.auxLossCoef, 0, "balanced by its selection bias");
  assert.deepEqual([cfg.paddingIdx, cfg.bosTokenId, cfg.eosTokenIds], [0, 1, [53]]);
});

Deno.test("exaone_moe: layer_types and mlp_layer_types override the derivations", () => {
  const cfg = parseConfig({
    ...EXAONE_MOE_CONFIG,
    num_hidden_layers: 3,
    layer_types: ["full_attention", "sliding_attention", "full_attention"],
    mlp_layer_types: ["sparse", "dense", "sparse"],
  });
  assert.deepEqual(
    cfg.pattern.map((p) => [p.ffn, p.window, p.nope ?? false]),
    [["moe", 0, true], ["mlp", 4096, false], ["moe", 0, true]],
  );
  // Without a window (older configs: sliding_window null) every layer is full with RoPE.
  const full = parseConfig({ ...EXAONE_MOE_CONFIG, num_hidden_layers: 2, sliding_window: null });
  assert.deepEqual(full.pattern.map((p) => [p.window, p.nope ?? false]), [[0, false], [0, false]]);
});

Deno.test("exaone_moe: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ sliding_window_pattern: "LLLG" }, /sliding_window_pattern "LLLG" is not a positive integer/],
    [{ mlp_layer_types: ["dense"] }, /mlp_layer_types has 1 entries, num_hidden_layers is 8/],
    [{ mlp_layer_types: Array(8).fill("moe") }, /mlp_layer_types\[0\] "moe" is not "dense" or/],
    [{ attention_bias: true }, /attention_bias true is not supported/],
    [{ n_group: 5, topk_group: 2 }, /"n_group" \(5\) must split the 64 experts into equal/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(
      () => parseConfig({ ...EXAONE_MOE_CONFIG, ...edit }),
      pattern,
      JSON.stringify(edit),
    );
  }
});

Deno.test("exaone_moe: a checkpoint holding the released mtp.* tensors loads and gives the same logits", async () => {
  const fixture = new URL("./fixtures/hf/exaone_moe/", import.meta.url).pathname;
  const dir = await Deno.makeTempDir({ prefix: "kiln_exaone_mtp_" });
  try {
    await Deno.copyFile(join(fixture, "config.json"), join(dir, "config.json"));
    const tensors = await readSafetensors(join(fixture, "model.safetensors"));
    // What the released checkpoints add after the model (transformers skips mtp.*).
    const mtp = [
      { name: "mtp.fc.weight", shape: [48, 96], data: new Float32Array(48 * 96) },
      { name: "mtp.layers.0.input_layernorm.weight", shape: [48], data: new Float32Array(48) },
    ];
    await writeSafetensors(join(dir, "model.safetensors"), [...tensors.values(), ...mtp]);
    const device = await gpu();
    const ids = [3, 17, 99, 42, 7, 61];
    const plain = await loadModel(fixture, { device, quiet: true, maxSeq: 32 });
    const want = (await plain.forward(ids)).slice();
    plain.dispose();
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
