import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice } from "../runtime/device.ts";
import { sampleRow, sampleUniform } from "../ops/sample.ts";
import { gpu, randomData } from "./_util.ts";

function graph(V: number, options: { temperature?: number; topK?: number; topP?: number }) {
  const g = new GraphBuilder();
  const logits = g.input("logits", ["R", V]);
  const seed = g.input("seed", [1], "u32");
  const step = g.input("step", [1], "u32");
  g.output("ids", logits.sample(seed, step, options));
  return g.build();
}

Deno.test("greedy sampling is argmax with ties to the lower id", async () => {
  const V = 1000;
  const logits = randomData(3 * V, "f32", 1);
  logits[V + 17] = 50;
  logits[V + 400] = 50; // tie: 17 wins
  const exe = compile(graph(V, {}), await gpu());
  const { ids } = await exe.run({ logits, seed: new Uint32Array([1]), step: new Uint32Array([0]) });
  const ref = await compile(graph(V, {}), cpuDevice()).run({
    logits,
    seed: new Uint32Array([1]),
    step: new Uint32Array([0]),
  });
  assert.deepEqual([...ids.data], [...ref.ids.data]);
  assert.equal(ids.data[1], 17);
  exe.dispose();
});

Deno.test("sampled ids follow the reference for many seeds and settings", async () => {
  const V = 333; // not a multiple of the workgroup
  const dev = await gpu();
  for (
    const opts of [{ temperature: 1 }, { temperature: 0.7, topK: 5 }, {
      temperature: 1.3,
      topP: 0.9,
    }, { temperature: 1, topK: 40, topP: 0.5 }]
  ) {
    const g = graph(V, opts);
    const exe = compile(g, dev);
    const cpu = compile(g, cpuDevice());
    let agree = 0, total = 0;
    for (let step = 0; step < 8; step++) {
      // Well-separated logits so exp() rounding cannot move a sample across a boundary often.
      const logits = randomData(16 * V, "f32", 100 + step, -6, 6);
      const inputs = { logits, seed: new Uint32Array([42]), step: new Uint32Array([step]) };
      const [a, b] = [await exe.run(inputs), await cpu.run(inputs)];
      for (let r = 0; r < 16; r++) if (a.ids.data[r] === b.ids.data[r]) agree++;
      total += 16;
    }
    assert.ok(agree >= total - 2, `${JSON.stringify(opts)}: ${agree}/${total} agree`);
    exe.dispose();
  }
});

Deno.test("top-k and top-p restrict the support exactly", () => {
  const logits = [0, 3, 1, 3, 2, -1];
  // topK 1 with a tie keeps both tied maxima (HF keeps ties at the k-th value).
  const seen = new Set<number>();
  for (let s = 0; s < 200; s++) {
    seen.add(sampleRow(logits, { temperature: 1, topK: 1, topP: 1 }, sampleUniform(7, s, 0)));
  }
  assert.deepEqual([...seen].sort(), [1, 3]);
  // topK 3 keeps {1, 3, 4}.
  seen.clear();
  for (let s = 0; s < 400; s++) {
    seen.add(sampleRow(logits, { temperature: 1, topK: 3, topP: 1 }, sampleUniform(7, s, 0)));
  }
  assert.deepEqual([...seen].sort(), [1, 3, 4]);
  // A tiny top-p keeps only the most likely tokens (here the tied pair).
  seen.clear();
  for (let s = 0; s < 200; s++) {
    seen.add(sampleRow(logits, { temperature: 1, topK: 0, topP: 0.01 }, sampleUniform(7, s, 0)));
  }
  assert.deepEqual([...seen].sort(), [1, 3]);
});

Deno.test("sampling frequencies match the softmax distribution", async () => {
  const V = 5;
  const logits = [0.5, 1.5, -1, 0, 1];
  const R = 2000;
  const data = new Float32Array(R * V);
  for (let r = 0; r < R; r++) data.set(logits, r * V);
  const exe = compile(graph(V, { temperature: 1 }), await gpu());
  const { ids } = await exe.run({
    logits: data,
    seed: new Uint32Array([9]),
    step: new Uint32Array([3]),
  });
  const z = logits.map(Math.exp), s = z.reduce((a, b) => a + b);
  const counts = new Array(V).fill(0);
  for (const id of ids.data) counts[id]++;
  for (let i = 0; i < V; i++) {
    const p = z[i] / s, sd = Math.sqrt(p * (1 - p) / R);
    assert.ok(Math.abs(counts[i] / R - p) < 4 * sd + 1e-3, `token ${i}: ${counts[i] / R} vs ${p}`);
  }
  exe.dispose();
});

Deno.test("bad sampling settings are rejected at build time", () => {
  assert.throws(() => graph(10, { temperature: -1 }), /temperature must be >= 0/);
  assert.throws(() => graph(10, { topP: 0 }), /topP must be in \(0, 1\]/);
  assert.throws(() => graph(10, { topK: 1.5 }), /topK must be an integer/);
});
