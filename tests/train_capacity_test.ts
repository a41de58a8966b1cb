/**
 * Training with a Switch capacity factor (`capacityFactor` of
 * `buildTrainingLM` / `Trainer`): on a tiny OLMoE with top-1 unnormalised
 * routing (Switch routing), a factor of 0.5 really drops tokens, the whole
 * training graph's gradient matches central finite differences of its loss
 * (float64 CPU reference) and the GPU's gradient matches that reference; the
 * Trainer trains with it and a resumed run keeps it; bad factors are
 * RangeErrors naming the option.
 */

import assert from "node:assert/strict";
import { TrainableBuilder } from "../compiler/train/trainable.ts";
import { withFloat64Host } from "../core/dtype.ts";
import type { HostArray } from "../core/dtype.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { buildTrainingLM } from "../models/causal_lm_train.ts";
import { moeCapacity } from "../ops/moe/config.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { compile } from "../runtime/executable.ts";
import { Trainer } from "../app/train/trainer.ts";
import { gpu, rng } from "./_util.ts";

const E = 4;
/** Switch routing: softmax, top-1, the expert's output scaled by its probability. */
const SWITCH = {
  architectures: ["OlmoeForCausalLM"],
  vocab_size: 24,
  hidden_size: 16,
  intermediate_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 2,
  num_experts: E,
  num_experts_per_tok: 1,
  norm_topk_prob: false,
  rms_norm_eps: 1e-5,
};
const B = 2, T = 8, N = B * T;

/**
 * The training graph with the loss and the routed counts, and (`withGrads`)
 * the loss's gradient for every parameter.
 */
function gradGraph(capacityFactor?: number, withGrads = true) {
  const cfg = parseConfig(SWITCH);
  const g = new TrainableBuilder();
  const lm = buildTrainingLM(g, cfg, { batch: B, seq: T, capacityFactor });
  const names = [...g.trainables.keys()];
  g.output("loss", lm.loss);
  g.output("counts", lm.moe[0].counts);
  if (withGrads) {
    const grads = g.grad(lm.loss, names.map((n) => g.trainables.get(n)!));
    names.forEach((n, i) => g.output(`d:${n}`, grads[i]));
  }
  return { graph: g.build(), names, shapes: names.map((n) => g.trainables.get(n)!.shape) };
}

function weights(names: string[], shapes: readonly (readonly (number | string)[])[]) {
  const r = rng(5);
  const w = new Map<string, Float64Array>();
  names.forEach((n, i) => {
    const len = (shapes[i] as number[]).reduce((a, b) => a * b, 1);
    // Norm gains near 1, everything else small and random (the router a bit larger,
    // so routing is decided by clear margins and finite differences do not flip it).
    const scale = n.includes("gate.") ? 1 : 0.4;
    w.set(
      n,
      Float64Array.from(
        { length: len },
        () => n.endsWith("norm.weight") ? 1 + 0.2 * (r() * 2 - 1) : scale * (r() * 2 - 1),
      ),
    );
  });
  return w;
}

/** A fresh copy of the weights as runCpu's states (it may write states in place). */
function states(w: Map<string, Float64Array>): Map<string, HostArray> {
  return new Map([...w].map(([k, v]) => [k, v.slice() as unknown as Float32Array]));
}

const ids = Uint32Array.from({ length: N }, (_, i) => (i * 7 + 3) % 24);
const targets = Uint32Array.from({ length: N }, (_, i) => (i * 5 + 1) % 24);

Deno.test("train capacity: a factor of 0.5 drops tokens; the gradient matches finite differences and the GPU matches float64", async () => {
  const cf = 0.5;
  const { graph, names, shapes } = gradGraph(cf);
  const w = weights(names, shapes);
  const inputs = new Map<string, HostArray>([["ids", ids], ["targets", targets]]);
  const ref = withFloat64Host(() => runCpu(graph, {}, inputs, new Map(), states(w)));
  const lossOnly = gradGraph(cf, false).graph;
  const run = () => withFloat64Host(() => runCpu(lossOnly, {}, inputs, new Map(), states(w)));

  // Routed pairs per expert against the capacity ⌊0.5·16·1/4⌋ = 2: some expert is over it.
  const cap = moeCapacity(N, 1, E, cf)!;
  assert.equal(cap, 2);
  const counts = [...ref.counts.data];
  assert.equal(counts.reduce((a, b) => a + b, 0), N);
  const dropped = counts.reduce((a, c) => a + Math.max(0, c - cap), 0);
  assert.ok(dropped > 0, `routed ${counts} under capacity ${cap}: nothing dropped`);

  // The dropless graph on the same weights scores another loss (drops change the output).
  const dropless = gradGraph(undefined, false);
  const free = withFloat64Host(() => runCpu(dropless.graph, {}, inputs, new Map(), states(w)));
  assert.ok(
    Math.abs(free.loss.data[0] - ref.loss.data[0]) > 1e-6,
    `loss with drops ${ref.loss.data[0]} = dropless ${free.loss.data[0]}`,
  );

  // Central differences of the loss, a few elements of every parameter.
  const r = rng(9);
  const h = 1e-5;
  for (const n of names) {
    const got = ref[`d:${n}`].data;
    let s = 1e-3;
    for (let i = 0; i < got.length; i++) s = Math.max(s, Math.abs(got[i]));
    const arr = w.get(n)!;
    for (let k = 0; k < 4; k++) {
      const i = Math.floor(r() * arr.length);
      const keep = arr[i];
      arr[i] = keep + h;
      const up = run().loss.data[0];
      arr[i] = keep - h;
      const down = run().loss.data[0];
      arr[i] = keep;
      const fd = (up - down) / (2 * h);
      assert.ok(
        Math.abs(fd - got[i]) <= 1e-6 * s,
        `d loss/d ${n}[${i}] = ${got[i]}, finite differences ${fd} (scale ${s})`,
      );
    }
  }
  // The routing (and so the drops) stayed put under the perturbations.
  assert.deepEqual([...run().counts.data], counts);

  const exe = compile(graph, await gpu());
  try {
    for (const [k, v] of w) exe.writeState(k, Float32Array.from(v));
    const out = await exe.run({ ids, targets });
    assert.deepEqual([...out.counts.data], counts, "GPU routes as the reference does");
    for (const n of names) {
      const want = ref[`d:${n}`].data, got = out[`d:${n}`].data;
      let s = 1e-3, worst = 0;
      for (let i = 0; i < want.length; i++) s = Math.max(s, Math.abs(want[i]));
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / s);
      assert.ok(worst < 5e-4, `d ${n}: GPU vs float64 error ${worst} of the scale ${s}`);
    }
  } finally {
    exe.dispose();
  }
});

Deno.test("train capacity: the Trainer trains with a capacity factor, resume keeps it; bad factors name capacityFactor", async () => {
  const device = await gpu();
  const tokens = Uint32Array.from({ length: 200 }, (_, i) => (i * 7 + (i >> 2)) % 24);
  const options = {
    config: SWITCH,
    batch: B,
    seq: T,
    seed: 2,
    schedule: { peak: 1e-2, warmup: 1, total: 6 },
    logEvery: 3,
    device,
  };
  const losses: number[][] = [];
  for (const capacityFactor of [0.5, undefined]) {
    const t = await Trainer.create({ ...options, capacityFactor });
    try {
      const h = await t.train(tokens, { steps: 6 });
      assert.ok(h.every((x) => Number.isFinite(x.loss)), `losses ${h.map((x) => x.loss)}`);
      assert.ok(h[5].loss < h[0].loss, `cf ${capacityFactor}: ${h[0].loss} → ${h[5].loss}`);
      const evalLoss = await t.evaluate(tokens, 1);
      assert.ok(Number.isFinite(evalLoss));
      losses.push(h.map((x) => x.loss));
      if (capacityFactor !== undefined) {
        // The factor is saved with the run: a resumed trainer drops the same tokens.
        const dir = await Deno.makeTempDir({ prefix: "kiln_cap_" });
        try {
          await t.save(dir);
          const again = await Trainer.resume(dir, { device });
          try {
            assert.equal(await again.evaluate(tokens, 1), evalLoss);
          } finally {
            again.dispose();
          }
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }
    } finally {
      t.dispose();
    }
  }
  // Same seed, same data: only the drops tell the two runs apart, from the first step.
  assert.notEqual(losses[0][0], losses[1][0]);
  for (const bad of [0, -1, Number.NaN, Infinity]) {
    await assert.rejects(
      () => Trainer.create({ ...options, capacityFactor: bad }),
      (e: Error) =>
        e instanceof RangeError && /capacityFactor must be a finite number > 0/.test(e.message),
    );
  }
});
