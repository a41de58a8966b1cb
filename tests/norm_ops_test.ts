/**
 * @file RMSNorm and LayerNorm: real WGSL on the WebGPU adapter through the public
 * path (GraphBuilder → compile → run), against the CPU references (run through the
 * CPU device), plus hand-checked values and fusion assertions.
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

function randomData(dtype: DType, n: number, seed: number, scale = 1, offset = 0): HostArray {
  const r = rng(seed);
  const out = allocHost(dtype, n);
  for (let i = 0; i < n; i++) out[i] = offset + (r() * 2 - 1) * scale;
  return out;
}

function assertClose(got: HostTensor, want: HostTensor, rtol: number, atol: number, what: string) {
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  for (let i = 0; i < want.data.length; i++) {
    const g = got.data[i];
    const w = want.data[i];
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) {
      assert.fail(`${what}: element ${i} is ${g}, expected ${w}`);
    }
  }
}

type Build = (x: Tensor, w: Tensor, b: Tensor) => Tensor;

/** Runs `build` on the GPU and on the CPU device and compares. */
async function check(
  what: string,
  shape: number[],
  dtype: DType,
  build: Build,
  seed: number,
  tol: [number, number],
  scale = 1,
  offset = 0,
): Promise<HostTensor> {
  const d = shape[shape.length - 1];
  const g = new GraphBuilder();
  const x = g.input("x", shape, dtype);
  const w = g.param("w", [d], dtype);
  const b = g.param("b", [d], dtype);
  g.output("y", build(x, w, b));
  const graph = g.build();
  const n = shape.reduce((a, c) => a * c, 1);
  const params = {
    w: randomData(dtype, d, seed + 1, 0.5, 1),
    b: randomData(dtype, d, seed + 2, 0.5),
  };
  const data = randomData(dtype, n, seed, scale, offset);
  const exe = compile(graph, dev, { params });
  try {
    const got = (await exe.run({ x: data })).y;
    const want = (await compile(graph, cpu, { params }).run({ x: data })).y;
    assertClose(got, want, tol[0], tol[1], what);
    return got;
  } finally {
    exe.dispose();
  }
}

const SHAPES: number[][] = [
  [1],
  [3],
  [17],
  [255],
  [257],
  [1000],
  [4099],
  [3, 1],
  [5, 3],
  [7, 17],
  [2, 255],
  [3, 257],
  [2, 3, 1000],
  [2, 4099],
  [1000, 17],
  [2, 9000], // longer than the register cache: re-read path
];

const rms: Build = (x, w) => x.rmsnorm(w, 1e-6);
const ln: Build = (x, w, b) => x.layernorm(w, b, 1e-5);

Deno.test("rmsnorm and layernorm f32: odd sizes, one workgroup per row", async () => {
  let seed = 1;
  for (const shape of SHAPES) {
    await check(`rmsnorm ${JSON.stringify(shape)}`, shape, "f32", rms, seed++, [1e-5, 1e-6]);
    // An offset mean stresses the two-pass variance.
    await check(`layernorm ${JSON.stringify(shape)}`, shape, "f32", ln, seed++, [1e-5, 1e-5], 1, 3);
  }
});

Deno.test("rmsnorm and layernorm f16: statistics in f32", async () => {
  if (!dev.caps.f16) return;
  let seed = 100;
  for (const shape of SHAPES) {
    await check(`rmsnorm f16 ${JSON.stringify(shape)}`, shape, "f16", rms, seed++, [1e-2, 1e-3]);
    await check(
      `layernorm f16 ${JSON.stringify(shape)}`,
      shape,
      "f16",
      ln,
      seed++,
      [1e-2, 1e-2],
      1,
      3,
    );
  }
});

Deno.test("norms of large magnitudes and constant rows", async () => {
  await check("rmsnorm 1e4", [4, 1000], "f32", rms, 7, [1e-5, 1e-6], 1e4);
  await check("layernorm 1e4", [4, 1000], "f32", ln, 8, [1e-4, 1e-4], 1e4);
  // f16 inputs near the top of the range: x² overflows f16, not the f32 statistics.
  if (dev.caps.f16) {
    const y = await check("rmsnorm f16 big", [2, 300], "f16", rms, 9, [1e-2, 1e-3], 6e4);
    assert.ok(y.data.every(Number.isFinite));
  }
  // A constant row has zero variance: output is the bias.
  const g = new GraphBuilder();
  const x = g.input("x", [2, 300]);
  g.output("y", x.layernorm(g.param("w", [300]), g.param("b", [300]), 1e-5));
  const params = { w: new Float32Array(300).fill(2), b: new Float32Array(300).fill(0.25) };
  for (const device of [cpu, dev]) {
    const exe = compile(g.build(), device, { params });
    const { y } = await exe.run({ x: new Float32Array(600).fill(7) });
    assert.ok(y.data.every((v) => v === 0.25), `${device.kind}: ${y.data[0]}`);
    if (device.kind === "gpu") exe.dispose();
  }
});

Deno.test("hand-checked references", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", [2, 2]);
  const w = g.param("w", [2]);
  const b = g.param("b", [2]);
  g.output("rms", x.rmsnorm(w, 0));
  g.output("ln", x.layernorm(w, b, 0));
  const params = { w: [2, 0.5], b: [1, -1] };
  for (const device of [cpu, dev]) {
    const exe = compile(g.build(), device, { params });
    const r = await exe.run({ x: [3, 4, -1, 1] });
    const close = (t: HostTensor, want: number[]) =>
      want.forEach((v, i) => assert.ok(Math.abs(t.data[i] - v) < 1e-6, `${t.data[i]} vs ${v}`));
    const r0 = 1 / Math.sqrt(12.5);
    close(r.rms, [2 * 3 * r0, 0.5 * 4 * r0, -2, 0.5]);
    // Row [3, 4]: mean 3.5, var 0.25 → [-1, 1]; row [-1, 1]: mean 0, var 1 → [-1, 1].
    close(r.ln, [-1, -0.5, -1, -0.5]);
    if (device.kind === "gpu") exe.dispose();
  }
});

function kernelCount(build: Build, shape: number[]): number {
  const g = new GraphBuilder();
  const x = g.input("x", shape);
  const d = shape[shape.length - 1];
  g.output("y", build(x, g.param("w", [d]), g.param("b", [d])));
  const exe = compile(g.build(), dev);
  const n = exe.plan().kernels.length;
  exe.dispose();
  return n;
}

Deno.test("fusion: residual prologue and activation epilogue join the norm", async () => {
  for (const shape of [[4, 1000], [7, 17]]) {
    assert.equal(kernelCount(rms, shape), 1);
    assert.equal(kernelCount(ln, shape), 1);
    assert.equal(kernelCount((x, w) => x.mul(2).add(1).rmsnorm(w).silu(), shape), 1);
    assert.equal(kernelCount((x, w, b) => x.exp().layernorm(w, b).mul(3), shape), 1);
  }
  await check(
    "fused rmsnorm",
    [5, 257],
    "f32",
    (x, w) => x.mul(2).add(1).rmsnorm(w).silu(),
    11,
    [1e-5, 1e-6],
  );
  await check("fused layernorm", [5, 257], "f32", (x, w, b) => x.exp().layernorm(w, b).mul(3), 12, [
    1e-5,
    1e-5,
  ]);
});

Deno.test("norm shape rules", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [4, 8]);
  assert.throws(() => x.rmsnorm(g.param("w7", [7])), RangeError);
  assert.throws(() => x.rmsnorm(g.param("w16", [8], "f16")), TypeError);
  assert.throws(() => x.rmsnorm(g.param("w", [8]), -1), RangeError);
  assert.throws(() => g.input("i", [4, 8], "i32").rmsnorm(g.param("wi", [8], "i32")), TypeError);
  assert.deepEqual(x.layernorm(g.param("lw", [8]), g.param("lb", [8])).shape, [4, 8]);
});

Deno.test("release the device", () => {
  dev.destroy();
});
