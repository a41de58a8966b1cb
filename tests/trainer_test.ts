/**
 * The training API on a tiny Mixtral (attention, RoPE, MoE): checkpoints in
 * the Hugging Face layout that `loadModel` loads with the trained logits,
 * the same seed giving the same curve and resume equal to the uninterrupted
 * run, bit for bit; fine-tuning from a folder; held-out evaluation; Hugging
 * Face's init rules; micro-batches from a token stream.
 */

import { TINY_TRAIN_MIXTRAL } from "./fixtures/train_configs.ts";
import assert from "node:assert/strict";
import { Trainer } from "../app/train/trainer.ts";
import { initParam } from "../app/train/init.ts";
import { microBatch } from "../app/train/data.ts";
import { readCheckpoint, toCheckpointTensors } from "../app/train/checkpoint.ts";
import { tensorShapes } from "../app/random_weights.ts";
import { readSafetensors } from "../app/train/safetensors_write.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { buildCausalLM } from "../models/causal_lm.ts";
import { loadModel } from "../app/model/mod.ts";
import { assertClose, gpu } from "./_util.ts";
import { tinyByteLevelTokenizerJson } from "./fixtures/tiny_tokenizers.ts";

const MIXTRAL = { ...TINY_TRAIN_MIXTRAL, rms_norm_eps: 1e-5 };

Deno.test("trainer: micro-batches are windows of the stream by index", () => {
  const tokens = Uint32Array.from({ length: 11 }, (_, i) => 100 + i);
  const a = microBatch(tokens, 0, 2, 3);
  assert.deepEqual([...a.ids], [100, 101, 102, 103, 104, 105]);
  assert.deepEqual([...a.targets], [101, 102, 103, 104, 105, 106]);
  // Wraps within the n − T offsets that fit.
  const b = microBatch(tokens, 1, 2, 3);
  assert.deepEqual([...b.ids], [106, 107, 108, 101, 102, 103]);
  assert.throws(() => microBatch(tokens, 0, 1, 11), /11 tokens cannot fill/);
});

Deno.test("checkpoints: one expert is still stored without the stacking axis, as transformers stores it", () => {
  // transformers' weight conversion stacks `experts.0.w1.weight` [ff, H] itself: a
  // [1, ff, H] tensor loads there as a size mismatch.
  const config = { ...TINY_TRAIN_MIXTRAL, num_local_experts: 1, num_experts_per_tok: 1 };
  const cfg = parseConfig(config);
  const ff = cfg.intermediate, H = cfg.hidden;
  const w1 = "model.layers.0.block_sparse_moe.experts.0.w1.weight";
  assert.deepEqual(tensorShapes(config).get(w1), [ff, H]);
  const graph = buildCausalLM(cfg, { mode: "prefill", maxSeq: 1, maxNew: 1 });
  const shapes = new Map<string, number[]>(), weights = new Map<string, Float32Array>();
  for (const [name, id] of graph.params) {
    const shape = graph.values[id].shape as number[];
    shapes.set(name, shape);
    weights.set(name, new Float32Array(shape.reduce((a, b) => a * b, 1)));
  }
  assert.deepEqual(shapes.get("model.layers.0.block_sparse_moe.w1"), [1, ff, H]);
  const written = toCheckpointTensors(cfg, weights, shapes).find((t) => t.name === w1);
  assert.deepEqual(written?.shape, [ff, H]);
});

Deno.test("trainer: fresh weights follow Hugging Face's init rules", () => {
  const mix = parseConfig({ ...MIXTRAL, initializer_range: 0.05 });
  const w = initParam(mix, "model.layers.0.self_attn.q_proj.weight", [64, 64], {
    seed: 1,
    initializerRange: 0.05,
  });
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(mean) < 0.005 && Math.abs(std - 0.05) < 0.005, `normal(0, 0.05): ${std}`);
  assert.ok(initParam(mix, "model.norm.weight", [8], { seed: 1 }).every((x) => x === 1));
  // Seeded per tensor: the same name and seed give the same values, another seed others.
  const again = initParam(mix, "model.layers.0.self_attn.q_proj.weight", [64, 64], {
    seed: 1,
    initializerRange: 0.05,
  });
  assert.deepEqual(again, w);
  assert.notDeepEqual(
    initParam(mix, "model.layers.0.self_attn.q_proj.weight", [64, 64], { seed: 2 }),
    w,
  );

  const mamba = parseConfig({
    architectures: ["MambaForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    state_size: 4,
    num_hidden_layers: 1,
  });
  const p = "backbone.layers.0.mixer";
  const aLog = initParam(mamba, `${p}.A_log`, [64, 4], { seed: 1 });
  assert.deepEqual([...aLog.slice(4, 8)], [0, 1, 2, 3].map((i) => Math.fround(Math.log(i + 1))));
  assert.ok(initParam(mamba, `${p}.D`, [64], { seed: 1 }).every((x) => x === 1));
  const dtBias = initParam(mamba, `${p}.dt_proj.bias`, [64], { seed: 1 });
  for (const b of dtBias) {
    const dt = Math.log1p(Math.exp(b)); // softplus: Δ back
    assert.ok(dt > 0.00099 && dt < 0.1001, `Δ = ${dt} outside [time_step_min, time_step_max]`);
  }
  // PyTorch's default Linear init (kaiming-uniform, a = √5): within ±1/√fan_in.
  const inProj = initParam(mamba, `${p}.in_proj.weight`, [128, 32], { seed: 1 });
  assert.ok(inProj.every((x) => Math.abs(x) <= 1 / Math.sqrt(32)));
  assert.ok(inProj.some((x) => Math.abs(x) > 0.8 / Math.sqrt(32)));

  // Mamba2PreTrainedModel._init_weights: Linear normal(0, initializer_range 0.1) but
  // out_proj and conv1d kaiming-uniform, conv bias 0; A_log = log(1..H); dt_bias as Mamba's.
  const m2 = parseConfig({
    architectures: ["Mamba2ForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    num_heads: 8,
    head_dim: 8,
    n_groups: 2,
    state_size: 4,
    num_hidden_layers: 1,
  });
  const rms = (w: Float32Array) => Math.sqrt(w.reduce((a, b) => a + b * b, 0) / w.length);
  const m2In = initParam(m2, `${p}.in_proj.weight`, [152, 32], { seed: 1 });
  assert.ok(Math.abs(rms(m2In) - 0.1) < 0.01, `in_proj normal(0, 0.1): ${rms(m2In)}`);
  const m2Out = initParam(m2, `${p}.out_proj.weight`, [32, 64], { seed: 1 });
  assert.ok(m2Out.every((x) => Math.abs(x) <= 1 / 8), "out_proj within ±1/√64");
  assert.ok(initParam(m2, `${p}.conv1d.bias`, [80], { seed: 1 }).every((x) => x === 0));
  const m2A = initParam(m2, `${p}.A_log`, [8], { seed: 1 });
  assert.deepEqual([...m2A], [...Array(8).keys()].map((i) => Math.fround(Math.log(i + 1))));
  for (const b of initParam(m2, `${p}.dt_bias`, [8], { seed: 1 })) {
    const dt = Math.log1p(Math.exp(b));
    assert.ok(dt > 0.00099 && dt < 0.1001, `Mamba-2 Δ = ${dt} outside [0.001, 0.1]`);
  }

  // GraniteMoeHybridMambaLayer: Δ's bias 1; nn.Embedding(padding_idx): that row zero.
  const granite = parseConfig({
    architectures: ["GraniteMoeHybridForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    mamba_n_heads: 8,
    mamba_d_state: 4,
    pad_token_id: 5,
  });
  const gm = "model.layers.0.mamba";
  assert.ok(initParam(granite, `${gm}.dt_bias`, [8], { seed: 1 }).every((x) => x === 1));
  const emb = initParam(granite, "model.embed_tokens.weight", [64, 32], { seed: 1 });
  assert.ok(emb.subarray(5 * 32, 6 * 32).every((x) => x === 0), "padding row zeroed");
  assert.ok(
    emb.subarray(4 * 32, 5 * 32).some((x) => x !== 0) && emb.subarray(6 * 32).some((x) => x !== 0),
  );
  // Mixtral's config class has no pad token: no row is zeroed.
  const noPad = initParam(mix, "model.embed_tokens.weight", [64, 32], { seed: 1 });
  assert.ok(noPad.subarray(0, 32).some((x) => x !== 0));
});

Deno.test("trainer: checkpoints load with loadModel, resume equals the uninterrupted run bit for bit, fine-tuning starts from the folder", async () => {
  const device = await gpu();
  const dir = await Deno.makeTempDir({ prefix: "kiln_train_" });
  try {
    const tokens = Uint32Array.from({ length: 97 }, (_, i) => (i * 7 + (i >> 3)) % 48);
    const options = {
      config: MIXTRAL,
      batch: 2,
      seq: 8,
      seed: 3,
      schedule: { peak: 1e-2, warmup: 2, total: 8 },
      clipNorm: 1,
      accumulate: 2,
      logEvery: 2,
      tokenizerJson: JSON.stringify(tinyByteLevelTokenizerJson({ merges: 4 })),
      device,
    };
    const full = await Trainer.create(options);
    const history = await full.train(tokens, {
      steps: 6,
      checkpointEvery: 3,
      checkpointDir: dir,
    });
    assert.equal(history.length, 6);
    assert.ok(history.every((r) => Number.isFinite(r.loss)));
    assert.ok(history[5].loss < history[0].loss, `loss ${history[0].loss} → ${history[5].loss}`);

    await assert.rejects(
      () => full.train(Uint32Array.of(1, 2, 48, 3), { steps: 7 }),
      /token 2 is 48, outside the vocabulary \[0, 48\)/,
    );
    await assert.rejects(
      () => Trainer.create({ ...options, from: dir }),
      /exactly one of config \(fresh\) and from/,
    );

    // Held-out evaluation on the trained weights: a finite loss, below a uniform guess.
    const val = await full.evaluate(tokens.slice(40), 2);
    assert.ok(Number.isFinite(val) && val < Math.log(48), `held-out loss ${val}`);

    // The Hugging Face folder: per-expert tensors under their checkpoint names.
    const names = [...(await readSafetensors(`${dir}/checkpoint-6/model.safetensors`)).keys()];
    assert.ok(names.includes("model.layers.1.block_sparse_moe.experts.3.w2.weight"));
    assert.ok(names.includes("lm_head.weight"));
    assert.equal(
      await Deno.readTextFile(`${dir}/checkpoint-6/tokenizer.json`),
      options.tokenizerJson,
    );

    // loadModel reads it back: the trained weights exactly, the trained logits.
    const ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
    const want = await full.logits(ids);
    const model = await loadModel(`${dir}/checkpoint-6`, { device, maxSeq: 16, quiet: true });
    const got = await model.forward(ids);
    model.dispose();
    // Not bit for bit: the inference graph reads a KV cache, with other kernels.
    assertClose(got, want, 1e-5, 1e-6, "loadModel logits vs the trainer's");
    const { weights } = await readCheckpoint(`${dir}/checkpoint-6`, full.cfg);
    const live = await full.exe.readStates(full.step.params);
    for (const n of full.step.params) assert.deepEqual(weights.get(n), live[n].data, n);

    // The same seed and data: the same curve, bit for bit.
    const twin = await Trainer.create(options);
    assert.deepEqual(await twin.train(tokens, { steps: 3 }), history.slice(0, 3));
    twin.dispose();

    // Resume from update 3: the same losses and weights, bit for bit.
    const resumed = await Trainer.resume(`${dir}/checkpoint-3`, { device });
    assert.equal(resumed.updates, 3);
    const again = await resumed.train(tokens, { steps: 6 });
    assert.deepEqual(again, history);
    const after = await resumed.exe.readStates(resumed.step.params);
    for (const n of full.step.params) assert.deepEqual(after[n].data, live[n].data, n);
    resumed.dispose();

    // A damaged trainer state is refused by name.
    await Deno.writeTextFile(`${dir}/checkpoint-3/trainer_state.json`, '{"updates": "x"}');
    await assert.rejects(
      () => Trainer.resume(`${dir}/checkpoint-3`, { device }),
      /trainer_state\.json needs/,
    );

    // Fine-tuning starts from the folder's weights: the same logits.
    const tuned = await Trainer.create({
      ...options,
      config: undefined,
      from: `${dir}/checkpoint-6`,
    });
    assert.deepEqual(await tuned.logits(ids), want);
    tuned.dispose();
    full.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trainer: layer checkpointing and the fused cross-entropy train the same curve; router losses add to the loss", async () => {
  const tokens = Uint32Array.from({ length: 600 }, (_, i) => (i * 13 + 7) % 48);
  const run = async (extra: Record<string, unknown>) => {
    const t = await Trainer.create({
      config: MIXTRAL,
      batch: 2,
      seq: 64,
      seed: 3,
      schedule: { peak: 3e-3, warmup: 2, decay: "constant" },
      logEvery: 1,
      device: await gpu(),
      ...extra,
    });
    try {
      const history = await t.train(tokens, { steps: 4 });
      return { losses: history.map((h) => h.loss) };
    } finally {
      t.dispose();
    }
  };
  const plain = await run({});
  const lean = await run({ checkpoint: true, fusedCrossEntropy: true });
  assertClose(lean.losses, plain.losses, 1e-4, 1e-5, "losses with checkpointing");
  const routed = await run({ auxLossCoef: 0.1, zLossCoef: 0.01 });
  // E·Σ fᵢPᵢ ≥ 1 per layer (equality only at perfect balance), z-loss ≥ 0.
  assert.ok(routed.losses[0] > plain.losses[0] + 0.1, `${routed.losses[0]} vs ${plain.losses[0]}`);
  await assert.rejects(() => run({ auxLossCoef: -1 }), /auxLossCoef must be a finite number ≥ 0/);
});
