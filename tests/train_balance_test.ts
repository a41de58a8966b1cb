/**
 * Auxiliary-loss-free load balancing (DeepSeek-V3's bias update): after each
 * update a `sigmoid_bias` layer's selection bias moves by γ·sign(mean load −
 * load), with the load the experts' routed counts summed over the update's
 * micro-batches — checked against the counts the same runs report; and the
 * Trainer's `biasUpdateRate` on a GLM-4.5 config.
 */
import assert from "node:assert/strict";
import { TrainableBuilder } from "../compiler/train/trainable.ts";
import { buildTrainStep } from "../compiler/train/step.ts";
import { sgd } from "../compiler/train/optimizers.ts";
import { moe } from "../models/moe.ts";
import { compile } from "../runtime/executable.ts";
import { Trainer } from "../app/train/mod.ts";
import { gpu, rng } from "./_util.ts";

const [T, D, E, FF, RATE] = [24, 16, 8, 8, 0.125];

function layer(accumulate: number) {
  const g = new TrainableBuilder();
  const x = g.input("x", [T, D]);
  const m = moe(g, x, { name: "m", experts: E, topK: 2, ff: FF, router: "sigmoid_bias" });
  const loss = m.y.mul(m.y).mean(1).mean(0);
  const bias = g.trainables.get("m.bias")!;
  buildTrainStep(g, loss, {
    optimizer: sgd(),
    schedule: { peak: 0.01, decay: "constant" },
    accumulate,
    params: ["m.router", "m.w1", "m.w3", "m.w2"],
    balance: [{ bias, load: m.counts, rate: RATE }],
  });
  g.output("counts", m.counts);
  return g.build();
}

const sign = (v: number) => (v > 0 ? 1 : v < 0 ? -1 : 0);

Deno.test("train step: the selection bias moves by γ·sign(mean load − load) per update", async () => {
  const r = rng(5);
  const u = (n: number, s: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
  for (const accumulate of [1, 2]) {
    const exe = compile(layer(accumulate), await gpu());
    try {
      const init = {
        "m.router": u(E * D, 1),
        "m.w1": u(E * FF * D, 0.3),
        "m.w3": u(E * FF * D, 0.3),
        "m.w2": u(E * D * FF, 0.3),
        "m.bias": u(E, 0.5),
      };
      for (const [n, v] of Object.entries(init)) exe.writeState(n, v);
      let bias = Float32Array.from(init["m.bias"]);
      const load = new Float64Array(E);
      for (let run = 1; run <= 2 * accumulate; run++) {
        const out = await exe.run({ x: u(T * D, 1) });
        const counts = out.counts.data as Uint32Array;
        counts.forEach((c, e) => (load[e] += c));
        assert.equal(counts.reduce((a, b) => a + b, 0), T * 2, "every token routed twice");
        const now = (await exe.readState("m.bias")).data as Float32Array;
        if (run % accumulate !== 0) {
          assert.deepEqual(Array.from(now), Array.from(bias), "no update mid-accumulation");
          continue;
        }
        const mean = load.reduce((a, b) => a + b, 0) / E;
        const want = bias.map((b, e) => Math.fround(b + RATE * sign(mean - load[e])));
        assert.deepEqual(Array.from(now), Array.from(want), `accumulate ${accumulate}, run ${run}`);
        assert.ok(load.some((c) => c !== mean), "an unbalanced load moves something");
        bias = Float32Array.from(now);
        load.fill(0);
      }
    } finally {
      exe.dispose();
    }
  }
});

Deno.test("train step: balance updates that cannot be are refused by name", () => {
  const g = new TrainableBuilder();
  const x = g.input("x", [T, D]);
  const m = moe(g, x, { name: "m", experts: E, topK: 2, ff: FF, router: "sigmoid_bias" });
  const loss = m.y.mul(m.y).mean(1).mean(0);
  const bias = g.trainables.get("m.bias")!;
  const opts = { optimizer: sgd(), schedule: { peak: 0.01, decay: "constant" as const } };
  assert.throws(
    () => buildTrainStep(g, loss, { ...opts, balance: [{ bias, load: m.counts, rate: 0 }] }),
    /balance with rate 0 \(finite, > 0\)/,
  );
  assert.throws(
    () => buildTrainStep(g, loss, { ...opts, balance: [{ bias, load: m.counts, rate: 0.1 }] }),
    /balance with a bias that is also trained/,
  );
});

const GLM = {
  architectures: ["Glm4MoeForCausalLM"],
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 32,
  moe_intermediate_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  n_routed_experts: 8,
  num_experts_per_tok: 2,
  first_k_dense_replace: 0,
  n_group: 2,
  topk_group: 1,
};

Deno.test("Trainer: biasUpdateRate balances GLM-4.5's selection biases, steps of ±γ", async () => {
  const tokens = Uint32Array.from({ length: 4096 }, (_, i) => (i * 7 + (i >> 3)) % 64);
  const base = {
    config: GLM,
    batch: 2,
    seq: 32,
    schedule: { peak: 1e-3, decay: "constant" as const },
  };
  const t = await Trainer.create({ ...base, biasUpdateRate: 0.01, logEvery: 3 });
  try {
    const names = ["model.layers.0.mlp.bias"];
    const before = await t.exe.readStates(names);
    await t.train(tokens, { steps: 3 });
    const after = await t.exe.readStates(names);
    let moved = 0;
    for (const n of names) {
      const a = before[n].data as Float32Array, b = after[n].data as Float32Array;
      b.forEach((v, e) => {
        const steps = (v - a[e]) / 0.01;
        assert.ok(Math.abs(steps - Math.round(steps)) < 1e-3 && Math.abs(steps) <= 3, `${n}[${e}]`);
        if (Math.round(steps) !== 0) moved++;
      });
    }
    assert.ok(moved > 0, "some expert was over- or under-loaded");
  } finally {
    t.dispose();
  }
  await assert.rejects(
    () => Trainer.create({ ...base, biasUpdateRate: -1 }),
    /biasUpdateRate must be a finite number ≥ 0, got -1/,
  );
  const mixtral = {
    architectures: ["MixtralForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_local_experts: 4,
  };
  await assert.rejects(
    () => Trainer.create({ ...base, config: mixtral, biasUpdateRate: 0.01 }),
    /biasUpdateRate balances a router's selection bias .*MixtralForCausalLM has none/,
  );
});
