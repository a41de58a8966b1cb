import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice } from "../runtime/device.ts";
import { assertClose, gpu, randomData } from "./_util.ts";

Deno.test("state persists across runs, on the GPU as on the CPU", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [5]);
  const s = g.state("acc", [5]);
  const next = s.mul(0.5).add(x);
  g.assign(s, next);
  g.output("y", next.exp());
  const graph = g.build();
  const dev = await gpu();
  const a = compile(graph, dev);
  const b = compile(graph, cpuDevice());
  for (let step = 0; step < 3; step++) {
    const x0 = randomData(5, "f32", step);
    const [ra, rb] = [await a.run({ x: x0 }), await b.run({ x: x0 })];
    assertClose(ra.y.data, rb.y.data, 1e-6, 1e-6, `step ${step}`);
  }
  assertClose(
    (await a.readState("acc")).data,
    (await b.readState("acc")).data,
    1e-6,
    1e-6,
    "state",
  );
  a.writeState("acc", [1, 2, 3, 4, 5]);
  const { y } = await a.run({ x: new Float32Array(5) });
  assertClose(y.data, [0.5, 1, 1.5, 2, 2.5].map(Math.exp), 1e-6, 0, "after write");
  a.resetStates();
  assert.deepEqual([...(await a.readState("acc")).data], [0, 0, 0, 0, 0]);
  assert.throws(() => a.writeState("acc", [1]), /State "acc" \[5\] expects 5 values/);
  await assert.rejects(a.readState("nope"), /Unknown state "nope"/);
  a.dispose();
});

Deno.test("a KV-cache append writes in place into the state: no copy of the cache", async () => {
  const g = new GraphBuilder();
  const rows = g.input("rows", ["T", 4]);
  const pos = g.input("pos", [1], "u32");
  const cache = g.state("k", [16, 4]);
  const next = cache.writeRows(rows, pos);
  g.assign(cache, next);
  g.output("sum", next.sum(0));
  const graph = g.build();
  const dev = await gpu();
  const a = compile(graph, dev);
  const b = compile(graph, cpuDevice());
  let p = 0;
  for (const t of [3, 1, 1, 5, 7]) { // the last append runs past row 16: extra rows drop
    const r = randomData(t * 4, "f32", t);
    const [ra, rb] = [
      await a.run({ rows: r, pos: new Uint32Array([p]) }),
      await b.run({ rows: r, pos: new Uint32Array([p]) }),
    ];
    assertClose(ra.sum.data, rb.sum.data, 1e-5, 1e-6, `append at ${p}`);
    p += t;
  }
  assertClose((await a.readState("k")).data, (await b.readState("k")).data, 0, 0, "cache");
  const plan = a.lastPlan!;
  // In place: no copies before or after, and the write kernel binds the state buffer.
  assert.equal(plan.after.length, 0);
  assert.ok(plan.kernels.every((k) => k.before.every((op) => op.kind !== "copy")));
  const stateSlot = plan.states.get("k")!.slot;
  assert.ok(
    plan.kernels[0].bindings.some((bd) => bd.slot === stateSlot && bd.access === "read_write"),
  );
  a.dispose();
});

Deno.test("when the old state is still needed, the in-place op works on a copy", async () => {
  const g = new GraphBuilder();
  const rows = g.input("rows", [1, 2]);
  const pos = g.input("pos", [1], "u32");
  const cache = g.state("c", [4, 2]);
  const next = cache.writeRows(rows, pos);
  g.output("old_plus_new", cache.add(next)); // reads the old cache after the write
  g.assign(cache, next);
  const graph = g.build();
  const a = compile(graph, await gpu());
  const b = compile(graph, cpuDevice());
  for (let p = 0; p < 3; p++) {
    const r = new Float32Array([p + 1, -(p + 1)]);
    const [ra, rb] = [
      await a.run({ rows: r, pos: new Uint32Array([p]) }),
      await b.run({ rows: r, pos: new Uint32Array([p]) }),
    ];
    assertClose(ra.old_plus_new.data, rb.old_plus_new.data, 0, 0, `step ${p}`);
  }
  a.dispose();
});

Deno.test("state errors name the state", () => {
  const g = new GraphBuilder();
  const s = g.state("s", [3]);
  const x = g.input("x", [4]);
  assert.throws(() => g.assign(s, x), /state "s" is f32\[3\] but the value is f32\[4\]/);
  assert.throws(() => g.assign(x, x), /must be a state tensor/);
  g.assign(s, s.add(1));
  assert.throws(() => g.assign(s, s.add(2)), /assigned twice/);
});

Deno.test("submit queues runs without readback; the state carries results between them", async () => {
  const g = new GraphBuilder();
  const step = g.state("step", [1], "u32");
  const log = g.state("log", [8], "u32");
  const next = step.add(g.constant(1, [1], "u32"));
  g.assign(log, log.writeRows(step.mul(g.constant(3, [1], "u32")).reshape([1]), step));
  g.assign(step, next);
  const exe = compile(g.build(), await gpu());
  for (let i = 0; i < 5; i++) await exe.submit({});
  assert.deepEqual([...(await exe.readState("log")).data], [0, 3, 6, 9, 12, 0, 0, 0]);
  assert.deepEqual([...(await exe.readState("step")).data], [5]);
  exe.dispose();
});

Deno.test("executables compiled with shareWith read one copy of params and states", async () => {
  const mk = (mul: number) => {
    const g = new GraphBuilder();
    const x = g.input("x", [3]);
    const w = g.param("w", [3]);
    const s = g.state("s", [3]);
    const next = s.add(x.mul(w).mul(mul));
    g.assign(s, next);
    g.output("y", next);
    return g.build();
  };
  const dev = await gpu();
  const a = compile(mk(1), dev, { params: { w: [1, 2, 3] } });
  const b = compile(mk(10), dev, { shareWith: a });
  await a.run({ x: [1, 1, 1] }); // s = [1, 2, 3]
  const { y } = await b.run({ x: [1, 1, 1] }); // s += 10·w
  assert.deepEqual([...y.data], [11, 22, 33]);
  a.dispose();
  // b still works after a is disposed: the shared store lives while any user does.
  const again = await b.run({ x: [0, 0, 0] });
  assert.deepEqual([...again.y.data], [11, 22, 33]);
  b.dispose();
});

Deno.test("compiled: false until dims have run (or been prepared) on the GPU, always on the CPU", async () => {
  const g = new GraphBuilder();
  // A constant no other test uses: its WGSL is not in the shared device's cache.
  g.output("y", g.input("x", ["N"]).mul(1.2345).add(0.5));
  const graph = g.build();
  const dev = await gpu();
  const exe = compile(graph, dev);
  const x = (n: number) => ({ x: new Float32Array(n) });
  assert.equal(exe.compiled(x(7)), false);
  await exe.run(x(7));
  assert.equal(exe.compiled(x(7)), true);
  assert.equal(exe.compiled(x(9)), false, "another binding of N has no plan yet");
  await exe.prepare(x(9));
  assert.equal(exe.compiled(x(9)), true);
  assert.equal(compile(graph, cpuDevice()).compiled(x(3)), true);
  assert.throws(() => exe.compiled({}), /x/, "inputs are checked as a run checks them");
});
