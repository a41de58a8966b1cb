import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { assertClose, gpu, randomData, runBoth } from "./_util.ts";
import { cpuDevice, requestDevice } from "../runtime/device.ts";

Deno.test("a 10-op elementwise chain is one kernel", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["N"]);
  const y = x.mul(1.5).add(0.25).silu().sub(0.1).tanh().mul(x).abs().sqrt().add(1).log();
  g.output("y", y);
  const r = await runBoth(g.build(), { x: randomData(1000, "f32", 1) });
  assert.equal(r.kernels, 1);
  assertClose(r.gpu.y.data, r.cpu.y.data, 1e-5, 1e-6, "chain");
});

Deno.test("a diamond DAG of elementwise ops fuses into one kernel with two outputs", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [17, 33]);
  const b = g.input("b", [33]);
  const a = x.mul(2);
  const l = a.exp().add(b);
  const rr = a.sigmoid().mul(b);
  g.output("sum", l.add(rr));
  g.output("mid", a);
  const r = await runBoth(g.build(), {
    x: randomData(17 * 33, "f32", 2),
    b: randomData(33, "f32", 3),
  });
  assert.equal(r.kernels, 1);
  assertClose(r.gpu.sum.data, r.cpu.sum.data, 1e-5, 1e-6, "sum");
  assertClose(r.gpu.mid.data, r.cpu.mid.data, 0, 0, "mid");
});

Deno.test("CSE merges repeated subexpressions and DCE drops unused ones", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [4]);
  const a = x.exp().add(1);
  const b = x.exp().add(1);
  x.log(); // dead
  g.output("y", a.mul(b));
  const exe = compile(g.build(), { kind: "cpu" });
  const ops = exe.graph.nodes.map((n) => n.op);
  assert.equal(ops.filter((o) => o === "exp").length, 1);
  assert.equal(ops.filter((o) => o === "log").length, 0);
});

Deno.test("constant subgraphs fold at compile time", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [3]);
  const c = g.constant([1, 4, 9]).sqrt().mul(2); // → [2, 4, 6]
  g.output("y", x.add(c));
  const exe = compile(g.build(), { kind: "cpu" });
  assert.ok(!exe.graph.nodes.some((n) => n.op === "sqrt"));
  const { y } = await exe.run({ x: [1, 1, 1] });
  assert.deepEqual([...y.data], [3, 5, 7]);
});

Deno.test("a fused cluster over the binding limit is split, not rejected", async () => {
  const dev = await requestDevice({ limits: { maxStorageBuffers: 4 } });
  try {
    const g = new GraphBuilder();
    const xs = Array.from({ length: 7 }, (_, i) => g.input(`x${i}`, [50]));
    let acc = xs[0];
    for (const x of xs.slice(1)) acc = acc.mul(0.5).add(x);
    g.output("y", acc);
    const graph = g.build();
    const inputs = Object.fromEntries(xs.map((_, i) => [`x${i}`, randomData(50, "f32", i)]));
    const exe = compile(graph, dev);
    const { y } = await exe.run(inputs);
    const plan = exe.lastPlan!;
    assert.ok(plan.kernels.length > 1);
    for (const k of plan.kernels) {
      assert.ok(k.bindings.length <= 4, `${k.label} binds ${k.bindings.length}`);
    }
    const ref = await compile(graph, { kind: "cpu" }).run(inputs);
    assertClose(y.data, ref.y.data, 1e-6, 1e-6, "split");
    exe.dispose();
  } finally {
    dev.destroy();
  }
});

Deno.test("tensors larger than the binding size are bound in segments", async () => {
  const dev = await requestDevice({ limits: { maxBindingSize: 1024 } });
  try {
    const g = new GraphBuilder();
    const x = g.input("x", [3000]);
    const b = g.input("b", [3, 1]);
    g.output("y", x.reshape([3, -1]).mul(2).add(b).reshape([-1]).exp());
    const graph = g.build();
    const inputs = { x: randomData(3 * 1000, "f32", 5), b: randomData(3, "f32", 6) };
    const exe = compile(graph, dev);
    const { y } = await exe.run(inputs);
    for (const k of exe.lastPlan!.kernels) for (const bd of k.bindings) assert.ok(bd.size <= 1024);
    const ref = await compile(graph, { kind: "cpu" }).run(inputs);
    assertClose(y.data, ref.y.data, 1e-6, 1e-6, "segments");
    exe.dispose();
  } finally {
    dev.destroy();
  }
});

Deno.test("memory planning reuses intermediate buffers by liveness", async () => {
  const dev = await gpu();
  const g = new GraphBuilder();
  const x = g.input("x", [1024]);
  // Each step forces a separate kernel (a reshape breaks the same-shape cluster), so
  // intermediates are materialised: the planner must recycle them.
  let t = x;
  for (let i = 0; i < 8; i++) t = t.reshape([32, 32]).exp().reshape([1024]).log().mul(1.01);
  g.output("y", t);
  const exe = compile(g.build(), dev);
  const plan = exe.plan();
  const temps = plan.slots.filter((s) => s.kind === "temp");
  assert.ok(plan.kernels.length >= 8, `kernels ${plan.kernels.length}`);
  assert.ok(temps.length <= 2, `temps ${temps.length}`);
  assert.ok(plan.peakBytes < plan.unplannedBytes, `${plan.peakBytes} < ${plan.unplannedBytes}`);
  exe.dispose();
});

Deno.test("pipelines are cached by shader text across plans", async () => {
  const dev = await gpu();
  const g = new GraphBuilder();
  const x = g.input("x", ["N"]);
  g.output("y", x.add(1));
  const exe = compile(g.build(), dev);
  await exe.run({ x: new Float32Array(8) });
  const before = dev.pipelines.size;
  await exe.run({ x: new Float32Array(8) });
  assert.equal(dev.pipelines.size, before);
  await exe.run({ x: new Float32Array(9) });
  assert.equal(dev.pipelines.size, before + 1);
  exe.dispose();
});

Deno.test("an epilogue reads through a reshape of the kernel's result", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [1, "T", 24]);
  const w = g.input("w", [24, 24]);
  const r = g.input("r", ["T", 24]);
  // matmul → reshape → residual add: one kernel, as in a Mamba block's out_proj + residual.
  g.output("y", x.matmul(w, { transB: true }).reshape(["T", 24]).add(r));
  const res = await runBoth(g.build(), {
    x: { data: randomData(5 * 24, "f32", 1), shape: [1, 5, 24], dtype: "f32" },
    w: randomData(24 * 24, "f32", 2),
    r: randomData(5 * 24, "f32", 3),
  });
  assert.equal(res.kernels, 1);
  assertClose(res.gpu.y.data, res.cpu.y.data, 1e-5, 1e-6, "reshape epilogue");
});

Deno.test("identical layers compile to identical WGSL: one pipeline serves them all", async () => {
  // Value ids differ from layer to layer; the names the kernels get from them must not.
  const g = new GraphBuilder();
  let h = g.input("x", ["T", 32]);
  for (let l = 0; l < 3; l++) {
    const w = g.param(`layers.${l}.w`, [32, 32]);
    const n = h.rmsnorm(g.param(`layers.${l}.norm`, [32]), 1e-5);
    h = h.add(n.matmul(w, { transB: true }).silu());
  }
  g.output("y", h);
  const dev = await gpu();
  const exe = compile(g.build(), dev);
  const plan = exe.plan({ T: 5 });
  const codes = plan.kernels.map((k) => k.code);
  const distinct = new Set(codes).size;
  assert.ok(distinct * 3 <= codes.length + 2, `${distinct} distinct of ${codes.length}`);
  // And the layers still compute their own weights: the result matches the CPU.
  const params: Record<string, Float32Array> = {};
  for (let l = 0; l < 3; l++) {
    params[`layers.${l}.w`] = randomData(32 * 32, "f32", 10 + l, -0.2, 0.2) as Float32Array;
    params[`layers.${l}.norm`] = randomData(32, "f32", 20 + l, 0.5, 1.5) as Float32Array;
  }
  exe.dispose();
  const r = await runBoth(g.build(), { x: randomData(5 * 32, "f32", 1) }, params);
  assertClose(r.gpu.y.data, r.cpu.y.data, 1e-4, 1e-5, "y");
});

Deno.test("fusion: a flag computed from a state, gating several assigns and a reduction, schedules without a cycle and matches the CPU", async () => {
  // The shape of gradient accumulation: `apply` gates the accumulator, the norm
  // and the counter, and the norm reduces the same sum the accumulator stores.
  const build = () => {
    const g = new GraphBuilder();
    const micro = g.state("micro", [1], "u32");
    const apply = micro.add(1).notEqual(2);
    g.assign(micro, micro.add(1).where(apply, 0));
    const acc = g.state("acc", [5, 3]);
    const sum = acc.add(g.input("d", [5, 3]));
    g.assign(acc, sum.where(apply, 0));
    const half = sum.div(2);
    const norm = g.state("norm", [1]);
    g.assign(norm, half.mul(half).reshape([15]).sum(0, true).sqrt().where(apply, norm));
    return g.build();
  };
  const d = randomData(15, "f32", 3);
  const exe = compile(build(), await gpu());
  const ref = compile(build(), cpuDevice());
  try {
    for (let step = 0; step < 4; step++) {
      await exe.run({ d });
      await ref.run({ d });
      for (const name of ["micro", "acc", "norm"]) {
        const got = (await exe.readState(name)).data, want = (await ref.readState(name)).data;
        assertClose(got, want, 1e-6, 1e-6, `step ${step}: state ${name}`);
      }
    }
  } finally {
    exe.dispose();
    ref.dispose();
  }
});
