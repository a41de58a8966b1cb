/**
 * @file Layout ops (transpose, slice, concat) on the WebGPU adapter against the CPU
 * reference, through the public path: GraphBuilder → compile → run. The device is
 * limited to 8 storage buffers (WebGPU's default) so concat must split.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import type { DType, HostArray } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { cpuDevice, type GpuDevice, requestDevice } from "../runtime/device.ts";
import { mulberry32 as rng } from "../core/random.ts";

const dev: GpuDevice = await requestDevice({ limits: { maxStorageBuffers: 8 } });
const DTYPES: DType[] = ["f32", "f16", "i32", "u32"];

function randData(dtype: DType, n: number, r: () => number): HostArray {
  switch (dtype) {
    case "f32":
      return Float32Array.from({ length: n }, () => r() * 200 - 100);
    case "f16":
      return Float16Array.from({ length: n }, () => r() * 200 - 100);
    case "i32":
      return Int32Array.from({ length: n }, () => Math.floor(r() * 2 ** 32) - 2 ** 31);
    case "u32":
      return Uint32Array.from({ length: n }, () => Math.floor(r() * 2 ** 32));
  }
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function same(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

/** Runs `graph` on the GPU and the CPU reference; outputs must match exactly. */
async function check(graph: Graph, inputs: Record<string, HostArray>, what: string): Promise<void> {
  const gpu = await compile(graph, dev).run(inputs);
  const cpu = await compile(graph, cpuDevice()).run(inputs);
  for (const name of Object.keys(cpu)) {
    const g = gpu[name], c = cpu[name];
    assert.deepEqual(g.shape, c.shape, `${what}: ${name} shape`);
    assert.equal(g.dtype, c.dtype, `${what}: ${name} dtype`);
    assert.equal(g.data.length, c.data.length, `${what}: ${name} length`);
    for (let i = 0; i < c.data.length; i++) {
      if (!same(g.data[i], c.data[i])) {
        assert.fail(`${what}: ${name}[${i}] gpu ${g.data[i]} != cpu ${c.data[i]}`);
      }
    }
  }
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

function randShape(rank: number, r: () => number): number[] {
  const sizes = [1, 2, 3, 5, 7, 13, 17, 33];
  return Array.from({ length: rank }, () => sizes[Math.floor(r() * sizes.length)]);
}

Deno.test("transpose: random shapes and perms, every dtype", async () => {
  const r = rng(1);
  for (const dtype of DTYPES) {
    for (let rank = 1; rank <= 4; rank++) {
      for (let t = 0; t < 3; t++) {
        const shape = randShape(rank, r);
        const perm = shuffle(shape.map((_, k) => k), r);
        const g = new GraphBuilder();
        const x = g.input("x", shape, dtype);
        g.output("y", x.transpose(perm));
        await check(
          g.build(),
          { x: randData(dtype, numel(shape), r) },
          `${dtype} ${shape} perm ${perm}`,
        );
      }
    }
  }
});

Deno.test("transpose: 2-D not a multiple of the workgroup, default perm, size-1 dims", async () => {
  const r = rng(2);
  for (const shape of [[257, 3], [1, 300], [300, 1], [1, 1], [19, 1, 23], [2, 1, 3, 1, 5]]) {
    const g = new GraphBuilder();
    const x = g.input("x", shape);
    g.output("y", x.transpose());
    await check(g.build(), { x: randData("f32", numel(shape), r) }, `reverse ${shape}`);
  }
});

Deno.test("transpose: elementwise prologue and epilogue fuse into one kernel", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [37, 19]);
  g.output("y", x.mul(2).transpose([1, 0]));
  const graph = g.build();
  const exe = compile(graph, dev);
  assert.equal(exe.plan().kernels.length, 1, exe.inspect());
  await check(graph, { x: randData("f32", 37 * 19, rng(3)) }, "mul→transpose");

  const g2 = new GraphBuilder();
  const x2 = g2.input("x", [5, 6, 7], "f16");
  g2.output("y", x2.add(1).transpose([2, 0, 1]).mul(3));
  const graph2 = g2.build();
  assert.equal(compile(graph2, dev).plan().kernels.length, 1);
  await check(graph2, { x: randData("f16", 210, rng(4)) }, "add→transpose→mul");
});

Deno.test("transpose: symbolic dims bound at run time", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 6]);
  g.output("y", x.transpose([1, 0]));
  const graph = g.build();
  const exe = compile(graph, dev);
  for (const T of [1, 5, 300]) {
    const data = randData("f32", T * 6, rng(T));
    const gpu = await exe.run({ x: data });
    const cpu = await compile(graph, cpuDevice()).run({ x: data });
    assert.deepEqual(gpu.y.shape, [6, T]);
    assert.deepEqual(Array.from(gpu.y.data), Array.from(cpu.y.data));
  }
});

Deno.test("slice: every axis, random ranges, every dtype", async () => {
  const r = rng(5);
  for (const dtype of DTYPES) {
    for (let rank = 1; rank <= 4; rank++) {
      const shape = randShape(rank, r);
      for (let axis = 0; axis < rank; axis++) {
        const d = shape[axis];
        const start = Math.floor(r() * d);
        const end = start + 1 + Math.floor(r() * (d - start));
        const g = new GraphBuilder();
        const x = g.input("x", shape, dtype);
        g.output("y", x.slice(axis, start, end));
        g.output("z", x.slice(axis - rank, 0, d)); // full range, negative axis
        await check(
          g.build(),
          { x: randData(dtype, numel(shape), r) },
          `${dtype} ${shape} axis ${axis} [${start}, ${end})`,
        );
      }
    }
  }
});

Deno.test("slice: fused prologue/epilogue, odd sizes", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [3, 1000]);
  g.output("y", x.mul(0.5).slice(1, 123, 900).add(1));
  const graph = g.build();
  assert.equal(compile(graph, dev).plan().kernels.length, 1);
  await check(
    graph,
    { x: Float32Array.from({ length: 3000 }, (_, i) => Math.sin(i)) },
    "mul→slice→add",
  );
});

Deno.test("slice: a dispatch over maxWorkgroupsPerDim splits over x/y", async () => {
  // 2^24 + 1000 f16 elements need more than 65535 workgroups of 256 threads.
  const n = 65536 * 256 + 1000;
  const g = new GraphBuilder();
  g.output("y", g.input("x", [n], "f16").slice(0, 1, n));
  const exe = compile(g.build(), dev);
  const k = exe.plan().kernels[0];
  assert.ok(k.workgroups[1] > 1, `grid ${k.workgroups}`);
  const x = new Float16Array(n);
  for (let i = 0; i < n; i++) x[i] = i % 2039;
  const { y } = await exe.run({ x });
  assert.equal(y.data.length, n - 1);
  for (let i = 0; i < n - 1; i++) {
    if (y.data[i] !== x[i + 1]) assert.fail(`y[${i}] = ${y.data[i]}, want ${x[i + 1]}`);
  }
  exe.dispose();
});

Deno.test("concat: 2 and 10 operands (more than 8 bindings), every axis, every dtype", async () => {
  const r = rng(6);
  for (const dtype of DTYPES) {
    for (const count of [2, 3, 10]) {
      for (let axis = 0; axis < 3; axis++) {
        const base = [3, 4, 5];
        const g = new GraphBuilder();
        const inputs: Record<string, HostArray> = {};
        const parts = Array.from({ length: count }, (_, j) => {
          const shape = [...base];
          shape[axis] = 1 + ((j * 7) % 4);
          inputs[`p${j}`] = randData(dtype, numel(shape), r);
          return g.input(`p${j}`, shape, dtype);
        });
        g.output("y", g.apply("concat", parts, { axis })[0]);
        const graph = g.build();
        const kernels = compile(graph, dev).plan().kernels;
        // Each kernel respects the 8-binding limit; 10 operands need more than one.
        for (const k of kernels) {
          assert.ok(k.bindings.length <= 8, `${k.label} binds ${k.bindings.length}`);
        }
        if (count === 10) assert.ok(kernels.length >= 2);
        else assert.equal(kernels.length, 1);
        await check(graph, inputs, `${dtype} concat x${count} axis ${axis}`);
      }
    }
  }
});

Deno.test("concat: 64 operands, negative axis, with a fused epilogue", async () => {
  const r = rng(7);
  const g = new GraphBuilder();
  const inputs: Record<string, HostArray> = {};
  const parts = Array.from({ length: 64 }, (_, j) => {
    inputs[`p${j}`] = randData("f32", 2 * (1 + (j % 3)), r);
    return g.input(`p${j}`, [2, 1 + (j % 3)]);
  });
  const y = g.input("y", [2, 127]);
  inputs.y = randData("f32", 254, r);
  g.output("z", g.apply("concat", parts, { axis: -1 })[0].mul(y).add(1));
  const graph = g.build();
  for (const k of compile(graph, dev).plan().kernels) assert.ok(k.bindings.length <= 8);
  await check(graph, inputs, "concat x64 + epilogue");
});

Deno.test("concat: single operand and large rows not a multiple of the workgroup", async () => {
  const r = rng(8);
  const g = new GraphBuilder();
  const a = g.input("a", [2, 1000], "f16");
  const b = g.input("b", [2, 333], "f16");
  g.output("one", g.apply("concat", [a], { axis: 0 })[0]);
  g.output("two", g.apply("concat", [a, b], { axis: 1 })[0]);
  await check(g.build(), { a: randData("f16", 2000, r), b: randData("f16", 666, r) }, "concat f16");
});

Deno.test("empty slices flow through transpose and concat", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [3, 4], "i32");
  const e = x.slice(1, 2, 2);
  g.output("e", e);
  g.output("t", e.transpose([1, 0]));
  g.output("c", g.apply("concat", [e, x, e], { axis: 1 })[0]);
  await check(g.build(), { x: Int32Array.from({ length: 12 }, (_, i) => i - 5) }, "empty");
});

Deno.test("bad input: RangeError naming the op and shape at build time", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [2, 3, 4]);
  assert.throws(
    () => x.transpose([0, 1]),
    (e: Error) =>
      e instanceof RangeError && /transpose/.test(e.message) && /\[2, 3, 4\]/.test(e.message),
  );
  assert.throws(
    () => x.transpose([0, 1, 1]),
    (e: Error) =>
      e instanceof RangeError && /transpose/.test(e.message) && /\[2, 3, 4\]/.test(e.message),
  );
  assert.throws(() => x.transpose([0, 1, 3]), RangeError);
  assert.throws(
    () => x.slice(1, 2, 4),
    (e: Error) =>
      e instanceof RangeError && /slice/.test(e.message) && /\[2, 3, 4\]/.test(e.message),
  );
  assert.throws(
    () => x.slice(1, 2, 1),
    (e: Error) => e instanceof RangeError && /slice/.test(e.message),
  );
  assert.throws(
    () => x.slice(1, -1, 2),
    (e: Error) => e instanceof RangeError && /slice/.test(e.message),
  );
  assert.throws(
    () => x.slice(3, 0, 1),
    (e: Error) =>
      e instanceof RangeError && /slice/.test(e.message) && /\[2, 3, 4\]/.test(e.message),
  );
  const y = g.input("y", [2, 5, 5]);
  assert.throws(
    () => g.apply("concat", [x, y], { axis: 1 }),
    (e: Error) =>
      e instanceof RangeError && /concat/.test(e.message) && /\[2, 5, 5\]/.test(e.message),
  );
  assert.throws(
    () => g.apply("concat", [x, x], { axis: 3 }),
    (e: Error) => e instanceof RangeError && /concat/.test(e.message),
  );
  const z = g.input("z", [2, 3, 4], "f16");
  assert.throws(() => g.apply("concat", [x, z], { axis: 0 }), TypeError);
});
