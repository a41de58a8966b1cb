/**
 * @file Reductions and softmax: real WGSL on the WebGPU adapter, through the public
 * path (GraphBuilder → compile → run), against the CPU references (run through the
 * CPU device), plus hand-checked references and fusion assertions.
 */
import assert from "node:assert/strict";
import { GraphBuilder, type Tensor } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { allocHost, type DType, type HostArray } from "../core/dtype.ts";
import { cpuDevice, requestDevice } from "../runtime/device.ts";
import type { HostTensor } from "../core/types.ts";
import { mulberry32 as rng } from "../core/random.ts";

const dev = await requestDevice();
const cpu = cpuDevice();

function randomData(dtype: DType, n: number, seed: number, scale = 1, levels = 0): HostArray {
  const r = rng(seed);
  const out = allocHost(dtype, n);
  for (let i = 0; i < n; i++) {
    if (dtype === "i32") out[i] = Math.floor(r() * (levels || 201)) - (levels ? 0 : 100);
    else if (dtype === "u32") out[i] = Math.floor(r() * (levels || 1000));
    else if (levels) out[i] = Math.floor(r() * levels) * scale;
    else out[i] = (r() * 2 - 1) * scale;
  }
  return out;
}

function assertClose(
  got: HostTensor,
  want: HostTensor,
  rtol: number,
  atol: number,
  what: string,
): void {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assert.equal(got.data.length, want.data.length, `${what}: length`);
  for (let i = 0; i < want.data.length; i++) {
    const g = got.data[i];
    const w = want.data[i];
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    if (g === w) continue;
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) {
      assert.fail(`${what}: element ${i} is ${g}, expected ${w} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

/** Compiles `build` for the GPU and the CPU device and compares every output. */
async function check(
  what: string,
  shape: number[],
  dtype: DType,
  data: HostArray,
  build: (x: Tensor) => Record<string, Tensor>,
  tol: (name: string, want: HostTensor) => [number, number],
): Promise<Record<string, HostTensor>> {
  const g = new GraphBuilder();
  const x = g.input("x", shape, dtype);
  for (const [name, t] of Object.entries(build(x))) g.output(name, t);
  const graph = g.build();
  const exe = compile(graph, dev);
  const ref = compile(graph, cpu);
  try {
    const got = await exe.run({ x: data });
    const want = await ref.run({ x: data });
    for (const name of Object.keys(want)) {
      const [rtol, atol] = tol(name, want[name]);
      assertClose(got[name], want[name], rtol, atol, `${what} ${name}`);
    }
    return got;
  } finally {
    exe.dispose();
  }
}

function maxAbs(t: HostTensor): number {
  let m = 0;
  for (const v of t.data) if (Number.isFinite(v)) m = Math.max(m, Math.abs(v));
  return m;
}

const ALL = ["sum", "mean", "max", "min", "argmax", "logsumexp"] as const;
type ReduceName = (typeof ALL)[number];

/** Calls the reduction method `op` of `x`. */
function reduce(x: Tensor, op: ReduceName, axis: number, keepdims = false): Tensor {
  return x[op](axis, keepdims);
}
const INT_OPS = ["sum", "max", "min", "argmax"] as const;

function reductions(ops: readonly ReduceName[], axis: number, keepdims: boolean) {
  return (x: Tensor) => {
    const outs: Record<string, Tensor> = {};
    for (const op of ops) outs[op] = reduce(x, op, axis, keepdims);
    return outs;
  };
}

/** Tolerances: relative to the largest output magnitude (sums cancel). */
function floatTol(rtol: number) {
  return (name: string, want: HostTensor): [number, number] =>
    name === "argmax" ? [0, 0] : [rtol, rtol * Math.max(1, maxAbs(want))];
}

const SHAPES: number[][] = [
  [1],
  [3],
  [17],
  [255],
  [257],
  [1000],
  [4099],
  [3, 257],
  [257, 3],
  [17, 1000],
  [1000, 17],
  [2, 4099],
  [4099, 2],
  [1, 255],
  [3, 1, 17],
  [2, 3, 17, 5],
  [5, 257, 3],
  [1, 1, 1],
];

Deno.test("reductions f32: every axis, keepdims, odd sizes", async () => {
  let seed = 1;
  for (const shape of SHAPES) {
    for (let axis = -shape.length; axis < shape.length; axis++) {
      const keepdims = (seed & 1) === 0;
      const data = randomData("f32", shape.reduce((a, b) => a * b, 1), seed++);
      await check(
        `f32 ${JSON.stringify(shape)} axis ${axis} keepdims ${keepdims}`,
        shape,
        "f32",
        data,
        reductions(ALL, axis, keepdims),
        floatTol(1e-5),
      );
    }
  }
});

Deno.test("reductions f16: accumulate in f32", async () => {
  if (!dev.caps.f16) return;
  let seed = 100;
  for (const shape of [[4099], [3, 257], [257, 3], [17, 1000], [2, 3, 17, 5], [1000, 17]]) {
    for (let axis = 0; axis < shape.length; axis++) {
      const data = randomData("f16", shape.reduce((a, b) => a * b, 1), seed++);
      await check(
        `f16 ${JSON.stringify(shape)} axis ${axis}`,
        shape,
        "f16",
        data,
        reductions(ALL, axis, axis === 0),
        floatTol(1e-2),
      );
    }
  }
});

Deno.test("reductions i32 and u32: integer arithmetic", async () => {
  let seed = 200;
  for (const dtype of ["i32", "u32"] as const) {
    for (const shape of [[4099], [3, 257], [257, 3], [17, 1000], [2, 3, 17, 5], [1]]) {
      for (let axis = 0; axis < shape.length; axis++) {
        const data = randomData(dtype, shape.reduce((a, b) => a * b, 1), seed++);
        const got = await check(
          `${dtype} ${JSON.stringify(shape)} axis ${axis}`,
          shape,
          dtype,
          data,
          reductions(INT_OPS, axis, false),
          () => [0, 0],
        );
        assert.equal(got.sum.dtype, dtype);
        assert.equal(got.argmax.dtype, "u32");
      }
    }
  }
});

Deno.test("integer sum wraps like two's complement", async () => {
  const big = new Int32Array([2 ** 31 - 1, 1, 5]);
  const got = await check("i32 wrap", [3], "i32", big, reductions(["sum"], 0, false), () => [0, 0]);
  assert.equal(got.sum.data[0], -(2 ** 31) + 5);
});

Deno.test("argmax: first index on ties, in both kernel shapes", async () => {
  let seed = 300;
  for (const shape of [[4099], [3, 1000], [1000, 3], [17], [257, 4099 % 7]]) {
    for (let axis = 0; axis < shape.length; axis++) {
      for (const dtype of ["f32", "i32"] as const) {
        // Few distinct values: the maximum repeats many times in every row.
        const data = randomData(dtype, shape.reduce((a, b) => a * b, 1), seed++, 0.5, 4);
        await check(
          `ties ${dtype} ${JSON.stringify(shape)} axis ${axis}`,
          shape,
          dtype,
          data,
          reductions(["argmax"], axis, false),
          () => [0, 0],
        );
      }
    }
  }
  // All equal, and all −∞: index 0.
  const ninf = new Float32Array(300).fill(-Infinity);
  const got = await check(
    "all -inf",
    [2, 150],
    "f32",
    ninf,
    reductions(["argmax", "max"], 1, false),
    () => [0, 0],
  );
  assert.deepEqual([...got.argmax.data], [0, 0]);
  const same = new Float32Array(1000).fill(2);
  const got2 = await check(
    "all equal",
    [1000],
    "f32",
    same,
    reductions(["argmax"], 0, false),
    () => [0, 0],
  );
  assert.deepEqual([...got2.argmax.data], [0]);
});

Deno.test("hand-checked references", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [2, 3]);
  for (const op of ALL) g.output(op, reduce(x, op, 1));
  g.output("sum0", x.sum(0, true));
  g.output("sm", x.softmax(-1));
  const graph = g.build();
  const data = [1, 5, 5, -1, 0, 2];
  for (const device of [cpu, dev]) {
    const exe = compile(graph, device);
    const r = await exe.run({ x: data });
    const close = (t: HostTensor, want: number[]) =>
      want.forEach((w, i) => assert.ok(Math.abs(t.data[i] - w) < 1e-5, `${t.data[i]} vs ${w}`));
    close(r.sum, [11, 1]);
    close(r.mean, [11 / 3, 1 / 3]);
    close(r.max, [5, 2]);
    close(r.min, [1, -1]);
    assert.deepEqual([...r.argmax.data], [1, 2]);
    close(r.logsumexp, [
      Math.log(Math.E + 2 * Math.exp(5)),
      Math.log(Math.exp(-1) + 1 + Math.exp(2)),
    ]);
    assert.deepEqual(r.sum0.shape, [1, 3]);
    close(r.sum0, [0, 5, 7]);
    const e = [Math.exp(1), Math.exp(5), Math.exp(5)];
    const s = e[0] + e[1] + e[2];
    close(r.sm, [e[0] / s, e[1] / s, e[2] / s]);
    if (device.kind === "gpu") exe.dispose();
  }
});

Deno.test("logsumexp and softmax of ±1e4 stay finite", async () => {
  let seed = 400;
  for (const shape of [[4099], [3, 257], [257, 3], [17, 17]]) {
    for (let axis = 0; axis < shape.length; axis++) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = randomData("f32", n, seed++, 1e4);
      const got = await check(
        `large ${JSON.stringify(shape)} axis ${axis}`,
        shape,
        "f32",
        data,
        (x) => ({ lse: x.logsumexp(axis), sm: x.softmax(axis) }),
        (name) => (name === "lse" ? [1e-5, 0] : [1e-5, 1e-6]),
      );
      for (const t of Object.values(got)) {
        assert.ok(t.data.every((v) => Number.isFinite(v)), "no NaN/inf");
      }
    }
  }
});

Deno.test("logsumexp with infinite inputs", async () => {
  const data = new Float32Array([-Infinity, -Infinity, -Infinity, 1, Infinity, 2]);
  for (const shape of [[2, 3]]) {
    const got = await check(
      "inf",
      shape,
      "f32",
      data,
      (x) => ({ lse: x.logsumexp(1) }),
      () => [0, 0],
    );
    assert.deepEqual([...got.lse.data], [-Infinity, Infinity]);
  }
  // Same through the workgroup-per-row kernel.
  const long = new Float32Array(600).fill(-Infinity);
  long[450] = Infinity;
  const got = await check(
    "inf row",
    [2, 300],
    "f32",
    long,
    (x) => ({ lse: x.logsumexp(1) }),
    () => [0, 0],
  );
  assert.deepEqual([...got.lse.data], [-Infinity, Infinity]);
});

Deno.test("softmax f32/f16: every axis, odd sizes, one kernel", async () => {
  let seed = 500;
  for (const dtype of ["f32", "f16"] as const) {
    if (dtype === "f16" && !dev.caps.f16) continue;
    for (const shape of SHAPES) {
      if (dtype === "f16" && shape.length < 2) continue;
      for (let axis = 0; axis < shape.length; axis++) {
        const data = randomData(dtype, shape.reduce((a, b) => a * b, 1), seed++, 4);
        await check(
          `softmax ${dtype} ${JSON.stringify(shape)} axis ${axis}`,
          shape,
          dtype,
          data,
          (x) => ({ sm: x.softmax(axis) }),
          () => (dtype === "f32" ? [1e-5, 1e-7] : [1e-2, 1e-4]),
        );
      }
    }
  }
});

function kernels(build: (x: Tensor) => Tensor, shape: number[]): string[] {
  const g = new GraphBuilder();
  g.output("y", build(g.input("x", shape)));
  const exe = compile(g.build(), dev);
  const codes = exe.plan().kernels.map((k) => k.code);
  exe.dispose();
  return codes;
}

Deno.test("kernel shape follows the tensor shape", () => {
  const rowKernel = (build: (x: Tensor) => Tensor, shape: number[]) => {
    const [code] = kernels(build, shape);
    return code.includes("var<workgroup>");
  };
  // Long contiguous rows, or few outputs over a long axis: workgroup per output.
  assert.ok(rowKernel((x) => x.sum(-1), [3, 4099]));
  assert.ok(rowKernel((x) => x.argmax(0), [4099, 3]));
  assert.ok(rowKernel((x) => x.softmax(-1), [3, 257]));
  // Short rows or many strided outputs: thread per output.
  assert.ok(!rowKernel((x) => x.sum(-1), [1000, 17]));
  assert.ok(!rowKernel((x) => x.max(0), [257, 2000]));
  assert.ok(!rowKernel((x) => x.softmax(0), [257, 3]));
});

Deno.test("fusion: prologues and epilogues join the reduction kernel", async () => {
  for (const shape of [[4, 1000], [1000, 4], [3, 17]]) {
    assert.equal(kernels((x) => x.mul(2).softmax(), shape).length, 1, "mul → softmax");
    assert.equal(kernels((x) => x.softmax(0), shape).length, 1, "softmax axis 0");
    assert.equal(kernels((x) => x.sum(-1).mul(3).add(1), shape).length, 1, "sum → mul → add");
    assert.equal(kernels((x) => x.exp().max(0).sqrt(), shape).length, 1, "exp → max → sqrt");
    assert.equal(kernels((x) => x.abs().argmax(-1, true), shape).length, 1, "abs → argmax");
  }
  // And the fused kernels compute the right thing.
  const data = randomData("f32", 4 * 1000, 7);
  await check("fused", [4, 1000], "f32", data, (x) => ({
    a: x.mul(2).softmax(),
    b: x.sum(-1).mul(3).add(1),
    c: x.mul(x).mean(0, true).sqrt(),
    d: x.neg().logsumexp(-1).mul(0.5),
  }), () => [1e-5, 1e-5]);
});

Deno.test("reductions: shape rule errors and empty axes", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [3, 0]);
  assert.throws(() => x.max(1), RangeError);
  assert.throws(() => x.argmax(-1), RangeError);
  assert.throws(() => x.sum(2), RangeError);
  assert.throws(() => g.input("i", [3], "i32").mean(0), TypeError);
  assert.deepEqual(x.sum(0).shape, [0]);
  // A concrete empty axis (from a slice) for the reductions that have an identity.
  const e = new GraphBuilder();
  const z = e.input("z", [2, 3]).slice(1, 0, 0);
  e.output("sum", z.sum(1));
  e.output("mean", z.mean(1, true));
  e.output("logsumexp", z.logsumexp(-1));
  const eg = e.build();
  for (const device of [cpu, dev]) {
    const exe = compile(eg, device);
    const r = await exe.run({ z: [1, 2, 3, 4, 5, 6] });
    assert.deepEqual([...r.sum.data], [0, 0]);
    assert.deepEqual(r.mean.shape, [2, 1]);
    assert.ok(Number.isNaN(r.mean.data[0]) && Number.isNaN(r.mean.data[1]));
    assert.deepEqual([...r.logsumexp.data], [-Infinity, -Infinity]);
    if (device.kind === "gpu") exe.dispose();
  }
  // A symbolic axis bound to 0 at run time gives the identities. On the GPU the
  // zero-length input upload itself crashes Deno 2.9 (queue.writeBuffer of 0 bytes
  // panics), so there the kernels are only compiled and validated.
  const h = new GraphBuilder();
  const y = h.input("y", [2, "N"]);
  for (const op of ALL) h.output(op, reduce(y, op, 1));
  const graph = h.build();
  const r = await compile(graph, cpu).run({
    y: { data: new Float32Array(0), shape: [2, 0], dtype: "f32" },
  });
  assert.deepEqual([...r.sum.data], [0, 0]);
  assert.ok(Number.isNaN(r.mean.data[0]));
  assert.deepEqual([...r.max.data], [-Infinity, -Infinity]);
  assert.deepEqual([...r.min.data], [Infinity, Infinity]);
  assert.deepEqual([...r.argmax.data], [0, 0]);
  assert.deepEqual([...r.logsumexp.data], [-Infinity, -Infinity]);
  const exe = compile(graph, dev);
  dev.device.pushErrorScope("validation");
  for (const k of exe.plan({ N: 0 }).kernels) {
    dev.device.createComputePipeline({
      layout: "auto",
      compute: { module: dev.device.createShaderModule({ code: k.code }), entryPoint: "main" },
    });
  }
  assert.equal(await dev.device.popErrorScope(), null);
  exe.dispose();
});

Deno.test("release the device", () => {
  dev.destroy();
});
