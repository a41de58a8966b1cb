/**
 * @file gather, topk and cumsum on the WebGPU adapter against the CPU reference,
 * through the public path: GraphBuilder → compile → run.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import type { DType, HostArray } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { cpuDevice, type GpuDevice, requestDevice } from "../runtime/device.ts";
import { mulberry32 as rng } from "../core/random.ts";

const dev: GpuDevice = await requestDevice();

/** Random data; `levels` > 0 draws integers in [-levels, levels] (many ties, exact sums). */
function randData(dtype: DType, n: number, r: () => number, levels = 0): HostArray {
  const f = levels > 0 ? () => Math.floor(r() * (2 * levels + 1)) - levels : () => r() * 20 - 10;
  switch (dtype) {
    case "f32":
      return Float32Array.from({ length: n }, f);
    case "f16":
      return Float16Array.from({ length: n }, f);
    case "i32":
      return Int32Array.from({ length: n }, () => Math.floor(f()));
    case "u32":
      return Uint32Array.from({ length: n }, () => Math.abs(Math.floor(f())));
  }
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function same(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

/**
 * Runs `graph` on the GPU and the CPU reference. Exact unless `tol` is given
 * (then |gpu − cpu| <= tol · (1 + |cpu|)).
 */
async function check(
  graph: Graph,
  inputs: Record<string, HostArray>,
  what: string,
  tol = 0,
): Promise<void> {
  const gpu = await compile(graph, dev).run(inputs);
  const cpu = await compile(graph, cpuDevice()).run(inputs);
  for (const name of Object.keys(cpu)) {
    const g = gpu[name], c = cpu[name];
    assert.deepEqual(g.shape, c.shape, `${what}: ${name} shape`);
    assert.equal(g.dtype, c.dtype, `${what}: ${name} dtype`);
    assert.equal(g.data.length, c.data.length, `${what}: ${name} length`);
    for (let i = 0; i < c.data.length; i++) {
      const ok = tol
        ? Math.abs(g.data[i] - c.data[i]) <= tol * (1 + Math.abs(c.data[i]))
        : same(g.data[i], c.data[i]);
      if (!ok) assert.fail(`${what}: ${name}[${i}] gpu ${g.data[i]} != cpu ${c.data[i]}`);
    }
  }
}

// --- gather -----------------------------------------------------------------------

Deno.test("gather: tables of every dtype and rank, i32 and u32 ids", async () => {
  const r = rng(1);
  for (const dtype of ["f32", "f16", "i32", "u32"] as DType[]) {
    for (const tshape of [[7], [11, 1], [13, 5], [9, 3, 7], [300, 257]]) {
      // Both ids dtypes and several ids shapes in one graph.
      const g = new GraphBuilder();
      const t = g.input("t", tshape, dtype);
      const V = tshape[0];
      const inputs: Record<string, HostArray> = { t: randData(dtype, numel(tshape), r) };
      [[1], [6], [3, 4], [2, 1, 5]].forEach((ishape, q) => {
        for (const idt of ["i32", "u32"] as DType[]) {
          const name = `ids${q}${idt}`;
          g.output(`y${q}${idt}`, t.gather(g.input(name, ishape, idt)));
          inputs[name] = idt === "i32"
            ? Int32Array.from({ length: numel(ishape) }, () => Math.floor(r() * V))
            : Uint32Array.from({ length: numel(ishape) }, () => Math.floor(r() * V));
        }
      });
      await check(g.build(), inputs, `${dtype}${tshape}`);
    }
  }
});

Deno.test("gather: out-of-range ids (negative or >= V) read zeros", async () => {
  const g = new GraphBuilder();
  const t = g.input("t", [4, 3]);
  const ids = g.input("ids", [6], "i32");
  const uids = g.input("uids", [3], "u32");
  g.output("y", t.gather(ids));
  g.output("z", t.gather(uids));
  const graph = g.build();
  const inputs = {
    t: Float32Array.from({ length: 12 }, (_, i) => i + 1),
    ids: Int32Array.from([0, -1, 3, 4, -2147483648, 2]),
    uids: Uint32Array.from([4, 0xffffffff, 1]),
  };
  const { y, z } = await compile(graph, dev).run(inputs);
  assert.deepEqual(Array.from(y.data), [1, 2, 3, 0, 0, 0, 10, 11, 12, 0, 0, 0, 0, 0, 0, 7, 8, 9]);
  assert.deepEqual(Array.from(z.data), [0, 0, 0, 0, 0, 0, 4, 5, 6]);
  await check(graph, inputs, "out of range");
});

Deno.test("gather: table prologue and epilogue fuse into one kernel", async () => {
  const g = new GraphBuilder();
  const t = g.param("t", [50, 8]);
  const ids = g.input("ids", ["T"], "i32");
  g.output("y", t.mul(3).gather(ids).add(1));
  const graph = g.build();
  const table = Float32Array.from({ length: 400 }, (_, i) => i / 7);
  const exe = compile(graph, dev, { params: { t: table } });
  const idData = Int32Array.from([3, 49, 0, 17, 50]);
  assert.equal(exe.plan({ T: 5 }).kernels.length, 1, exe.inspect({ T: 5 }));
  const gpu = await exe.run({ ids: idData });
  const cpu = await compile(graph, cpuDevice(), { params: { t: table } }).run({ ids: idData });
  assert.deepEqual(Array.from(gpu.y.data), Array.from(cpu.y.data));
});

Deno.test("gather: bad ids dtype is a TypeError naming the op", () => {
  const g = new GraphBuilder();
  const t = g.input("t", [4, 3]);
  assert.throws(
    () => t.gather(g.input("ids", [2])),
    (e: Error) => e instanceof TypeError && /gather/.test(e.message),
  );
});

// --- topk -------------------------------------------------------------------------

Deno.test("topk: random rows, k from 1 to 64, short (thread) and long (workgroup) rows", async () => {
  const r = rng(2);
  const cases: [number[], number][] = [
    [[1, 1], 1],
    [[5, 7], 1],
    [[5, 7], 2],
    [[33, 8], 8],
    [[3, 4, 10], 5],
    [[17, 100], 9],
    [[2, 64], 64],
    [[300, 40], 3],
    [[2, 600], 1],
    [[3, 1000], 8],
    [[2, 777], 16],
    [[1, 5000], 64],
    [[1, 32000], 2],
  ];
  for (const dtype of ["f32", "f16"] as DType[]) {
    for (const [shape, k] of cases) {
      const g = new GraphBuilder();
      const x = g.input("x", shape, dtype);
      const [v, i] = x.topk(k);
      g.output("v", v);
      g.output("i", i);
      await check(g.build(), { x: randData(dtype, numel(shape), r) }, `${dtype} ${shape} k=${k}`);
    }
  }
});

Deno.test("topk: ties go to the lower index (many equal values), i32 and u32", async () => {
  const r = rng(3);
  for (const dtype of ["f32", "f16", "i32", "u32"] as DType[]) {
    for (
      const [shape, k] of [[[6, 50], 4], [[4, 30], 20], [[2, 2000], 8], [[2, 1500], 40]] as [
        number[],
        number,
      ][]
    ) {
      const g = new GraphBuilder();
      const x = g.input("x", shape, dtype);
      const [v, i] = x.topk(k);
      g.output("v", v);
      g.output("i", i);
      await check(
        g.build(),
        { x: randData(dtype, numel(shape), r, 2) },
        `ties ${dtype} ${shape} k=${k}`,
      );
    }
  }
  // All equal: indices 0..k-1 in order, on both kernels.
  for (const n of [20, 1024]) {
    const g = new GraphBuilder();
    const [, i] = g.input("x", [1, n]).topk(10);
    g.output("i", i);
    const { i: got } = await compile(g.build(), dev).run({ x: new Float32Array(n).fill(0.5) });
    assert.deepEqual(Array.from(got.data), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  }
});

Deno.test("topk: NaN ranks highest, then +Inf; -0 equals +0; extremes of i32", async () => {
  const row = [1, NaN, -Infinity, 0, Infinity, -0, NaN, 2, -3, 0];
  for (const n of [row.length, 600]) {
    const data = new Float32Array(n).fill(-100);
    data.set(row);
    const g = new GraphBuilder();
    const [v, i] = g.input("x", [1, n]).topk(8);
    g.output("v", v);
    g.output("i", i);
    const graph = g.build();
    const { v: gv, i: gi } = await compile(graph, dev).run({ x: data });
    assert.deepEqual(Array.from(gi.data), [1, 6, 4, 7, 0, 3, 5, 9]);
    assert.ok(Number.isNaN(gv.data[0]) && Number.isNaN(gv.data[1]));
    assert.deepEqual(Array.from(gv.data.slice(2)), [Infinity, 2, 1, 0, -0, 0]);
    await check(graph, { x: data }, `nan n=${n}`);
  }
  const g = new GraphBuilder();
  const [v, i] = g.input("x", [1, 5], "i32").topk(5);
  g.output("v", v);
  g.output("i", i);
  await check(
    g.build(),
    { x: Int32Array.from([0, -2147483648, 2147483647, -1, 1]) },
    "i32 extremes",
  );
});

Deno.test("topk: elementwise prologue fuses into the kernel", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [16, 8]);
  const [v, i] = x.mul(-1).add(2).topk(2);
  g.output("v", v);
  g.output("i", i);
  const graph = g.build();
  assert.equal(compile(graph, dev).plan().kernels.length, 1);
  await check(graph, { x: randData("f32", 128, rng(4)) }, "prologue");
});

Deno.test("topk: bad k is a RangeError naming the op and shape at build time", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [4, 10]);
  const big = g.input("big", [4, 1000]);
  const msg = (e: Error) =>
    e instanceof RangeError && /topk/.test(e.message) && /\[4, 10\]/.test(e.message);
  assert.throws(() => x.topk(11), msg);
  assert.throws(() => x.topk(0), msg);
  assert.throws(() => x.topk(2.5), msg);
  assert.throws(
    () => big.topk(65),
    (e: Error) => e instanceof RangeError && /topk/.test(e.message) && /64/.test(e.message),
  );
  assert.throws(
    () => g.input("s", []).topk(1),
    (e: Error) => e instanceof RangeError && /topk/.test(e.message),
  );
});

// --- cumsum -----------------------------------------------------------------------

const FLAGS = [
  { exclusive: false, reverse: false },
  { exclusive: true, reverse: false },
  { exclusive: false, reverse: true },
  { exclusive: true, reverse: true },
];

Deno.test("cumsum: every axis, inclusive/exclusive, forward/reverse, every dtype", async () => {
  const r = rng(5);
  for (const dtype of ["f32", "f16", "i32", "u32"] as DType[]) {
    for (const shape of [[1], [7], [3, 1], [5, 257], [2, 3, 4], [4, 1, 9, 2]]) {
      for (let axis = 0; axis < shape.length; axis++) {
        const g = new GraphBuilder();
        const x = g.input("x", shape, dtype);
        FLAGS.forEach((f, q) => {
          g.output(`y${q}`, x.cumsum(axis, f));
          g.output(`z${q}`, x.cumsum(axis - shape.length, f));
        });
        // Small integers: every partial sum is exact, so results must match bit for bit.
        await check(
          g.build(),
          { x: randData(dtype, numel(shape), r, 3) },
          `${dtype} ${shape} axis ${axis}`,
        );
      }
    }
  }
});

Deno.test("cumsum: random floats within f32 tolerance", async () => {
  const r = rng(6);
  for (const shape of [[13, 100], [100, 13]]) {
    for (const axis of [0, 1]) {
      const g = new GraphBuilder();
      g.output("y", g.input("x", shape).cumsum(axis));
      await check(
        g.build(),
        { x: randData("f32", numel(shape), r) },
        `f32 ${shape} axis ${axis}`,
        1e-5,
      );
    }
  }
});

Deno.test("cumsum: long lines take the chunked multi-pass scan", async () => {
  const r = rng(7);
  const cases: [number[], number, DType][] = [
    [[1, 100000], 1, "f32"],
    [[1, 100000], 1, "i32"],
    [[3, 5000], 1, "f16"],
    [[5000, 3], 0, "f32"],
    [[2, 3000, 2], 1, "u32"],
    [[1, 1024], -1, "f32"],
  ];
  for (const [shape, axis, dtype] of cases) {
    for (const f of FLAGS) {
      const g = new GraphBuilder();
      g.output("y", g.input("x", shape, dtype).cumsum(axis, f));
      const graph = g.build();
      const kernels = compile(graph, dev).plan().kernels;
      assert.equal(kernels.length, 3, `${shape}: ${kernels.map((k) => k.label)}`);
      await check(
        graph,
        { x: randData(dtype, numel(shape), r, 3) },
        `chunked ${dtype} ${shape} axis ${axis} ${JSON.stringify(f)}`,
      );
    }
  }
  // f16 input accumulates in f32: 4096 ones sum to 4096 (exact in f16; f16 accumulation would stick at 2048).
  const g = new GraphBuilder();
  g.output("y", g.input("x", [1, 4096], "f16").cumsum(-1));
  const { y } = await compile(g.build(), dev).run({ x: new Float16Array(4096).fill(1) });
  assert.equal(y.data[4095], 4096);
});

Deno.test("cumsum: fused prologue and epilogue", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [6, 50]);
  g.output("y", x.mul(2).cumsum(1, { exclusive: true }).add(1));
  const graph = g.build();
  assert.equal(compile(graph, dev).plan().kernels.length, 1);
  await check(graph, { x: randData("f32", 300, rng(8), 4) }, "prologue+cumsum+epilogue");
});

Deno.test("cumsum: bad axis is a RangeError naming the op", () => {
  const g = new GraphBuilder();
  assert.throws(
    () => g.input("x", [2, 3]).cumsum(2),
    (e: Error) => e instanceof RangeError && /cumsum/.test(e.message),
  );
});
