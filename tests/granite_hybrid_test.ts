/**
 * Granite 4.0 hybrids (`GraniteMoeHybridForCausalLM`) beyond the logits of
 * `hf_fixtures_test.ts`: the config's fields and refusals, the fused
 * `input_linear` tensors read as parts (and written back fused), the expert
 * scheduler and quantize-on-load over those parts.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { openWeights } from "../app/model/source.ts";
import { withFusedParts } from "../app/model/fused_source.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { fromCheckpointTensors, toCheckpointTensors } from "../app/train/checkpoint.ts";
import { readSafetensors, writeSafetensors } from "../app/train/safetensors_write.ts";
import { fusedTensors, parseConfig } from "../models/architectures/mod.ts";
import { buildCausalLM } from "../models/causal_lm.ts";
import { gpu } from "./_util.ts";
import { GRANITE_4_H_TINY_SHAPED_CONFIG } from "./fixtures/published_configs.ts";
import { readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";

const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
const MOE = join(HF, "granite_hybrid");
const DENSE = join(HF, "granite_hybrid_dense_nope");

const TINY = GRANITE_4_H_TINY_SHAPED_CONFIG;

Deno.test("granite: a Granite-4.0-H-Tiny-sized config parses into Kiln's hybrid", () => {
  const cfg = parseConfig(TINY);
  assert.equal(cfg.pattern.filter((l) => l.mixer === "attention").length, 4);
  assert.ok(cfg.pattern.every((l) => l.ffn === "moe"));
  assert.deepEqual(cfg.scaling, { embedding: 12, residual: 0.22, logits: 6 });
  assert.equal(cfg.attention!.scale, 0.0078125);
  assert.equal(cfg.attention!.ropeTheta, 0, "NoPE");
  assert.deepEqual(cfg.mamba!.ssd, {
    heads: 48,
    headDim: 64,
    groups: 1,
    normGroups: 1,
    dtLimit: [0, Infinity],
  });
  assert.equal(cfg.mamba!.inner, 3072);
  assert.deepEqual(
    { ...cfg.moe, auxLossCoef: undefined },
    {
      experts: 64,
      topK: 6,
      normTopk: true,
      auxLossCoef: undefined,
      ff: 512,
      sharedExpert: { ff: 1024, gated: false },
    },
  );
  assert.equal(cfg.intermediate, 1024, "a dense layer runs the shared MLP alone");
  assert.equal(cfg.paddingIdx, 100256);
  // Fused per layer: the shared MLP's input_linear, the experts' input_linear and output_linear.
  const fused = fusedTensors(cfg);
  assert.equal(fused.length, 3 * 40);
  assert.deepEqual(fused[1].shape, [64, 1024, 1536]);
  assert.equal(fused[1].parts.length, 128);
  assert.equal(fused[1].parts[1], "model.layers.0.block_sparse_moe.experts.0.up_proj.weight");
  // Without experts every layer is dense: no MoE settings, no expert tensors.
  const dense = parseConfig({ ...TINY, num_local_experts: 0 });
  assert.ok(dense.pattern.every((l) => l.ffn === "mlp") && dense.moe === undefined);
  assert.equal(fusedTensors(dense).length, 40);
  // Absent layer_types: all Mamba, as GraniteMoeHybridConfig defaults.
  const { layer_types: _, ...noTypes } = TINY;
  void _;
  assert.ok(parseConfig(noTypes).pattern.every((l) => l.mixer === "mamba"));
  const rope = parseConfig({ ...TINY, position_embedding_type: "rope", rope_theta: 5e4 });
  assert.equal(rope.attention!.ropeTheta, 5e4);
});

Deno.test("granite: configs it cannot run as transformers would are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ layer_types: ["mamba", "sliding_attention"] }, /layer_types has 2 entries/],
    [
      { layer_types: (TINY.layer_types as string[]).map((t, i) => (i === 3 ? "conv" : t)) },
      /layer_types\[3\] "conv" is not supported by GraniteMoeHybridForCausalLM/,
    ],
    [{ position_embedding_type: "alibi" }, /"position_embedding_type" must be "rope", "nope"/],
    [{ mamba_n_heads: 40 }, /mamba_n_heads 40 × mamba_d_head 64 must equal .* \(3072\)/],
    [{ mamba_d_head: 32 }, /mamba_n_heads 48 × mamba_d_head 32/],
    [{ mamba_n_groups: 5 }, /mamba_n_heads 48 must be a multiple of mamba_n_groups 5/],
    [{ logits_scaling: 0 }, /"logits_scaling" divides the logits: it must not be 0/],
    [{ hidden_act: "relu6" }, /hidden_act "relu6" is not supported/],
    [{ shared_intermediate_size: 0 }, /shared_intermediate_size/],
    [{ time_step_limit: [0.5, 0.1] }, /time_step_limit.*must satisfy 0 <= min <= max/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(() => parseConfig({ ...TINY, ...edit }), pattern, JSON.stringify(edit));
  }
});

Deno.test("granite: fused input_linear tensors read as their parts, by byte range", async () => {
  const cfg = parseConfig(JSON.parse(await Deno.readTextFile(join(MOE, "config.json"))));
  using ckpt = await Checkpoint.open(MOE);
  const view = withFusedParts(ckpt, fusedTensors(cfg));
  const moe = "model.layers.0.block_sparse_moe";
  assert.ok(!view.has(`${moe}.input_linear.weight`) && ckpt.has(`${moe}.input_linear.weight`));
  const whole = await ckpt.readAs(`${moe}.input_linear.weight`, "f32"); // [4, 32, 32]
  const up2 = await view.readAs(`${moe}.experts.2.up_proj.weight`, "f32"); // rows 16..32 of expert 2
  assert.deepEqual(view.info(`${moe}.experts.2.up_proj.weight`).shape, [16, 32]);
  assert.deepEqual(up2, whole.subarray((2 * 32 + 16) * 32, (3 * 32) * 32));
  const down3 = await view.readAs(`${moe}.experts.3.down_proj.weight`, "f16");
  const wholeDown = await ckpt.readAs(`${moe}.output_linear.weight`, "f16");
  assert.deepEqual(down3, wholeDown.subarray(3 * 32 * 16, 4 * 32 * 16));
  const mlp = "model.layers.1.shared_mlp";
  const gate = await view.readRaw(`${mlp}.gate_proj.weight`);
  const raw = await ckpt.readRaw(`${mlp}.input_linear.weight`);
  assert.deepEqual(gate, raw.subarray(0, raw.length / 2));
  // Every stored byte is in exactly one part: the view holds as many bytes as the file.
  const sum = (m: ReadonlyMap<string, { byteLength: number }>) =>
    [...m.values()].reduce((a, t) => a + t.byteLength, 0);
  assert.equal(sum(view.tensors), sum(ckpt.tensors));
  // A checkpoint of another shape, or without the tensor, fails here, naming it.
  const wrong = fusedTensors(cfg).map((f) => ({ ...f, shape: [...f.shape, 1] }));
  assert.throws(
    () => withFusedParts(ckpt, wrong),
    /tensor "model\.layers\.0\.shared_mlp\.input_linear\.weight" has shape \[48, 32\], expected \[48, 32, 1\]/,
  );
  const missing = [{ ...fusedTensors(cfg)[0], name: "model.layers.0.shared_mlp.fc.weight" }];
  assert.throws(
    () => withFusedParts(ckpt, missing),
    /tensor "model\.layers\.0\.shared_mlp\.fc\.weight" is missing \(expected shape \[48, 32\]\)/,
  );
});

Deno.test("granite: checkpoints Kiln writes store input_linear fused, as transformers reads them", async () => {
  const cfg = parseConfig(JSON.parse(await Deno.readTextFile(join(MOE, "config.json"))));
  const stored = await readSafetensors(join(MOE, "model.safetensors"));
  const weights = fromCheckpointTensors(cfg, stored);
  assert.ok(weights.has("model.layers.0.block_sparse_moe.w3"), "experts stacked by Kiln name");
  // Kiln's parameter shapes: the graph's values of the parameters.
  const graph = buildCausalLM(cfg, { mode: "prefill", maxSeq: 1, maxNew: 1 });
  const shapes = new Map(
    [...graph.params].map(([name, v]) => [name, graph.values[v].shape as number[]]),
  );
  const written = toCheckpointTensors(cfg, weights, shapes);
  assert.deepEqual(new Set(written.map((t) => t.name)), new Set(stored.keys()));
  for (const t of written) {
    assert.deepEqual(t.shape, stored.get(t.name)!.shape, t.name);
    assert.deepEqual(t.data, stored.get(t.name)!.data, t.name);
  }
  // And a folder written that way loads and gives transformers' logits.
  const dir = await Deno.makeTempDir({ prefix: "kiln_granite_written_" });
  try {
    await writeSafetensors(join(dir, "model.safetensors"), written);
    await Deno.copyFile(join(MOE, "config.json"), join(dir, "config.json"));
    const { ref, logits } = await readTransformersRef(
      join(MOE, "ref.json"),
      join(MOE, "logits.f32"),
    );
    const model = await loadModel(dir, { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e < 1e-4, `written checkpoint: error ${e}`);
    } finally {
      model.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("granite: the expert scheduler and quantize-on-load read the fused experts as parts", async () => {
  const device = await gpu();
  const { ref, logits } = await readTransformersRef(join(MOE, "ref.json"), join(MOE, "logits.f32"));
  const full = await loadModel(MOE, { device, quiet: true, maxSeq: 64 });
  const want = await full.forward(ref.ids);
  full.dispose();
  const probe = await loadModel(MOE, { device, quiet: true, maxSeq: 64, memoryBudget: "64GiB" });
  const p0 = probe.expertPlan!;
  probe.dispose();
  // Room for one layer's experts and a few more: the rest stream through slots.
  const budget = p0.fixedBytes + (p0.experts + 2) * p0.expertBytes;
  const m = await loadModel(MOE, { device, quiet: true, maxSeq: 64, memoryBudget: budget });
  try {
    assert.ok(!m.expertPlan!.allResident);
    assert.deepEqual(await m.forward(ref.ids), want);
  } finally {
    m.dispose();
  }
  const q = await loadModel(MOE, { device, quiet: true, maxSeq: 64, quantize: "q8_0" });
  try {
    // Largest logit error over the prompt: a tiny unit-scale model's (as the Jamba
    // fixture's, 5.5%), not a trained one's; above 1e-3 proves the weights were quantized.
    const e = relToRms(await q.forward(ref.ids), logits, ref.logit_rms);
    assert.ok(e > 1e-3 && e < 0.15, `Q8_0 on load: error ${e} of the logit rms`);
  } finally {
    q.dispose();
  }
});

Deno.test("granite: a dense Granite's checkpoint read through openWeights has no fused tensor left", async () => {
  const cfg = parseConfig(JSON.parse(await Deno.readTextFile(join(DENSE, "config.json"))));
  const w = await openWeights(DENSE, { config: cfg });
  try {
    const names = [...w.tensors.keys()];
    assert.ok(!names.some((n) => n.endsWith("input_linear.weight")), names.join());
    assert.ok(w.has("model.layers.2.shared_mlp.up_proj.weight"));
    assert.deepEqual(w.info("model.layers.2.shared_mlp.up_proj.weight").shape, [40, 24]);
  } finally {
    w.close();
  }
});
