/**
 * Mixed precision (`activationDtype: "f16"`): which values `activationStorage`
 * moves to f16 buffers, kernels that convert on load and store against the f32
 * plan and the CPU reference, tiny Mixtral, Mamba, Jamba and GPT-OSS training with f16
 * activations (same first loss within f16 rounding, overfitting, bit-for-bit
 * repeatable), and the errors.
 */

import assert from "node:assert/strict";
import {
  activationStorage,
  compile,
  cpuDevice,
  GraphBuilder,
  type Plan,
  requestDevice,
} from "../mod.ts";
import { Trainer } from "../app/train/trainer.ts";
import { conv1dCausal, selectiveScan } from "../models/mamba.ts";
import { OVERFIT_BATCH, TINY_TRAIN_CONFIGS } from "./fixtures/train_configs.ts";
import { assertClose, gpu, randomData } from "./_util.ts";

function labelled(graph: ReturnType<GraphBuilder["build"]>, storage: Map<number, string>) {
  return [...storage.keys()].map((v) => graph.nodes[graph.values[v].node].op).sort();
}

Deno.test("activationStorage: forward activations only, not weights, statistics or gradients", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [6, 40]);
  const w = g.param("w", [40, 24]);
  const a = g.param("a", [24]);
  const h = x.matmul(w).silu(); // an activation between two kernels
  const scale = a.exp().neg(); // computed from a parameter alone: a weight
  const z = h.mul(scale).matmul(g.param("v", [24, 40]));
  const lse = z.logsumexp(1); // a statistic
  const loss = lse.sub(z.sum(1)).mean(0);
  const [dw] = g.grad(loss, [w]);
  g.output("loss", loss);
  g.output("dw", dw);
  const graph = g.build();
  const { schedule } = compile(graph, cpuDevice());
  const storage = activationStorage(schedule, "f16");
  const sg = schedule.graph;
  const ops = labelled(sg, storage);
  assert.ok(ops.length > 0, "some activation is stored as f16");
  for (const [v, dtype] of storage) {
    const val = sg.values[v];
    const node = sg.nodes[val.node];
    assert.equal(dtype, "f16");
    assert.equal(val.dtype, "f32", "values keep their dtype; only buffers change");
    assert.notEqual(node.backward, true, `%${v} (${node.op}) is a gradient`);
    assert.ok(!["logsumexp", "sum", "mean", "exp", "neg"].includes(node.op), `%${v} ${node.op}`);
    assert.ok(![...sg.outputs.values()].includes(v), "graph outputs stay in their dtype");
  }
  assert.equal(activationStorage(schedule, "f32").size, 0);
});

/** Temporaries' bytes of a plan. */
function tempBytes(plan: Plan): number {
  return plan.slots.filter((s) => s.kind === "temp").reduce((a, s) => a + s.bytes, 0);
}

Deno.test("f16 activations: kernels convert on load and store (GPU vs f32 plan vs CPU)", async () => {
  // Awkward sizes through a norm, matmuls (prologue, epilogue), softmax, a
  // causal conv and the selective scan: every kind of reader and writer.
  const B = 2, L = 13, D = 12, I = 20, N = 4;
  const g = new GraphBuilder();
  const x = g.input("x", [B, L, D]);
  const h = x.rmsnorm(g.param("nw", [D]), 1e-5);
  const u = h.matmul(g.param("wu", [D, I])).silu();
  const c = conv1dCausal(u, g.param("cw", [I, 4]), { bias: g.param("cb", [I]) }).silu();
  const dt = c.matmul(g.param("wdt", [I, I]));
  const bm = c.matmul(g.param("wb", [I, N]));
  const cm = c.matmul(g.param("wc", [I, N]));
  const [y] = selectiveScan(c, dt, g.param("A", [I, N]), bm, cm, g.param("Dp", [I]), {
    softplus: true,
  });
  const p = y.matmul(g.param("wo", [I, D])).softmax(-1);
  g.output("y", p.mul(h));
  const graph = g.build();
  const params: Record<string, Float32Array> = {};
  const shapes: Record<string, number[]> = {
    nw: [D],
    wu: [D, I],
    cw: [I, 4],
    cb: [I],
    wdt: [I, I],
    wb: [I, N],
    wc: [I, N],
    A: [I, N],
    Dp: [I],
    wo: [I, D],
  };
  for (const [k, s] of Object.entries(shapes)) {
    params[k] = randomData(
      s.reduce((a, b) => a * b),
      "f32",
      k.length * 7,
      -0.5,
      0.5,
    ) as Float32Array;
  }
  params.A = params.A.map((v) => -1 - Math.abs(v));
  const inputs = { x: randomData(B * L * D, "f32", 3) };
  const dev = await gpu();
  const half = compile(graph, dev, { params, activationDtype: "f16" });
  const full = compile(graph, dev, { params });
  try {
    const got = (await half.run(inputs)).y.data as Float32Array;
    const f32 = (await full.run(inputs)).y.data as Float32Array;
    const cpu = (await compile(graph, cpuDevice(), { params }).run(inputs)).y.data;
    assertClose(f32, cpu, 1e-4, 1e-5, "f32 plan vs CPU");
    assertClose(got, cpu, 2e-2, 2e-3, "f16 activations vs CPU");
    assert.ok(got.some((v, i) => v !== f32[i]), "f16 storage rounds something");
    const plan = half.lastPlan!;
    assert.ok(plan.kernels.some((k) => /array<f16>/.test(k.code)), "some buffer holds f16");
    assert.ok(tempBytes(plan) < tempBytes(full.lastPlan!), "f16 temporaries take fewer bytes");
    // inspect says so; the f32 plan has nothing to say.
    const { values, bytes } = plan.halfActivations!;
    assert.ok(values > 0 && bytes > 0 && bytes % 4 === 0, `${values} values, ${bytes} bytes`);
    assert.match(half.inspect(), new RegExp(`activations in f16 buffers: ${values} values`));
    assert.equal(full.lastPlan!.halfActivations, undefined);
  } finally {
    half.dispose();
    full.dispose();
  }
});

async function losses(config: Record<string, unknown>, dtype: "f32" | "f16", steps: number) {
  const { tokens, ...batch } = OVERFIT_BATCH;
  const trainer = await Trainer.create({
    config,
    ...batch,
    logEvery: 1,
    activationDtype: dtype,
    device: await gpu(),
  });
  try {
    const halfBuffers = trainer.exe.plan().kernels.some((k) => /array<f16>/.test(k.code));
    assert.equal(halfBuffers, dtype === "f16", `${dtype} plan's buffers`);
    return (await trainer.train(tokens, { steps })).map((r) => r.loss);
  } finally {
    trainer.dispose();
  }
}

for (const [name, config] of Object.entries(TINY_TRAIN_CONFIGS)) {
  Deno.test(`f16 activations: a tiny ${name} trains like f32 and overfits one batch`, async () => {
    const [f32] = await losses(config, "f32", 1);
    const half = await losses(config, "f16", 60);
    // The same weights and batch: the first loss differs only by f16 rounding.
    assert.ok(Math.abs(half[0] - f32) < 2e-3, `${name}: first loss ${half[0]} vs f32 ${f32}`);
    assert.notEqual(half[0], f32, `${name}: f16 storage changed nothing`);
    assert.ok(half.at(-1)! < 0.05, `${name}: loss after 60 updates ${half.at(-1)} nats`);
    if (name === "mamba") {
      const again = await losses(config, "f16", 60);
      assert.deepEqual(again, half, "the same seed gives the same loss curve, bit for bit");
    }
  });
}

Deno.test("activationDtype: an unknown dtype and a device without shader-f16 are TypeErrors", async () => {
  const g = new GraphBuilder();
  g.output("y", g.input("x", [4, 8]).matmul(g.param("w", [8, 8])).silu());
  const graph = g.build();
  const dev = await gpu();
  assert.throws(
    () => compile(graph, dev, { activationDtype: "bf16" as "f16" }),
    (e: Error) =>
      e instanceof TypeError && /activationDtype must be "f32" or "f16"/.test(e.message),
  );
  const plain = await requestDevice({ disableFeatures: ["shader-f16"] });
  try {
    assert.throws(
      () => compile(graph, plain, { activationDtype: "f16" }),
      (e: Error) => e instanceof TypeError && /shader-f16/.test(e.message),
    );
    compile(graph, plain, { activationDtype: "f32" }).dispose(); // f32 needs nothing
  } finally {
    plain.destroy();
  }
});
