import assert from "node:assert/strict";
import { GraphBuilder, type Tensor } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import { assertClose, randomData, runBoth } from "./_util.ts";

type Unary = (x: Tensor) => Tensor;
const UNARY: [string, Unary, [number, number], DType[]][] = [
  ["neg", (x) => x.neg(), [-3, 3], ["f32", "f16", "i32"]],
  ["abs", (x) => x.abs(), [-3, 3], ["f32", "f16", "i32"]],
  ["relu", (x) => x.relu(), [-3, 3], ["f32", "f16", "i32"]],
  ["exp", (x) => x.exp(), [-5, 5], ["f32", "f16"]],
  ["log", (x) => x.log(), [0.01, 10], ["f32", "f16"]],
  ["sqrt", (x) => x.sqrt(), [0, 10], ["f32", "f16"]],
  ["rsqrt", (x) => x.rsqrt(), [0.01, 10], ["f32", "f16"]],
  ["tanh", (x) => x.tanh(), [-30, 30], ["f32", "f16"]],
  ["sigmoid", (x) => x.sigmoid(), [-100, 100], ["f32", "f16"]],
  ["silu", (x) => x.silu(), [-100, 100], ["f32", "f16"]],
  ["gelu tanh", (x) => x.gelu(), [-6, 6], ["f32", "f16"]],
  ["gelu erf", (x) => x.gelu({ approximate: "none" }), [-6, 6], ["f32", "f16"]],
  ["softplus", (x) => x.softplus(), [-30, 30], ["f32", "f16"]],
  ["cast i32", (x) => x.cast("i32"), [-100, 100], ["f32", "f16", "u32"]],
  ["cast f32", (x) => x.cast("f32"), [-100, 100], ["f16", "i32", "u32"]],
  ["cast u32", (x) => x.cast("u32"), [-100, 100], ["f32", "i32"]],
  ["cast f16", (x) => x.cast("f16"), [-100, 100], ["f32", "i32"]],
];

function tol(dt: DType): [number, number] {
  return dt === "f16" ? [4e-3, 4e-3] : dt === "f32" ? [2e-6, 1e-6] : [0, 0];
}

for (const [name, fn, [lo, hi], dtypes] of UNARY) {
  Deno.test(`unary ${name} matches the CPU reference`, async () => {
    for (const dt of dtypes) {
      for (const n of [1, 7, 255, 257, 1000]) {
        const g = new GraphBuilder();
        const x = g.input("x", ["N"], dt);
        g.output("y", fn(x));
        const data = randomData(n, dt, n * 7 + 1, lo, hi);
        const r = await runBoth(g.build(), { x: data });
        const [rt, at] = tol(r.cpu.y.dtype);
        assertClose(r.gpu.y.data, r.cpu.y.data, rt, at, `${name} ${dt} n=${n}`);
      }
    }
  });
}

const BINARY: [string, (a: Tensor, b: Tensor) => Tensor, DType[]][] = [
  ["add", (a, b) => a.add(b), ["f32", "f16", "i32", "u32"]],
  ["sub", (a, b) => a.sub(b), ["f32", "f16", "i32"]],
  ["mul", (a, b) => a.mul(b), ["f32", "f16", "i32", "u32"]],
  ["div", (a, b) => a.div(b), ["f32", "f16", "i32"]],
  ["pow", (a, b) => a.abs().add(0.5).pow(b), ["f32", "f16"]],
  ["maximum", (a, b) => a.maximum(b), ["f32", "f16", "i32", "u32"]],
  ["minimum", (a, b) => a.minimum(b), ["f32", "f16", "i32", "u32"]],
  ["equal", (a, b) => a.equal(b), ["f32", "i32"]],
  ["not_equal", (a, b) => a.notEqual(b), ["f32", "i32"]],
  ["less", (a, b) => a.less(b), ["f32", "f16", "i32", "u32"]],
  ["less_equal", (a, b) => a.lessEqual(b), ["f32", "i32"]],
  ["greater", (a, b) => a.greater(b), ["f32", "i32"]],
  ["greater_equal", (a, b) => a.greaterEqual(b), ["f32", "i32"]],
];

// Broadcast pairs: same shape, trailing vector, column, scalar-like, 3-D middle axis.
const SHAPES: [number[], number[]][] = [
  [[5, 7], [5, 7]],
  [[33, 17], [17]],
  [[9, 1], [1, 13]],
  [[4, 1, 6], [3, 1]],
  [[257], [1]],
  [[2, 3, 4, 5], [3, 1, 5]],
];

for (const [name, fn, dtypes] of BINARY) {
  Deno.test(`binary ${name} broadcasts like numpy and matches the reference`, async () => {
    for (const dt of dtypes) {
      for (const [sa, sb] of SHAPES) {
        const g = new GraphBuilder();
        const a = g.input("a", sa, dt);
        const b = g.input("b", sb, dt);
        g.output("y", fn(a, b));
        const lo = dt === "u32" ? 1 : -4;
        const da = randomData(sa.reduce((x, y) => x * y, 1), dt, 3, lo, 4);
        // Integer division by zero and pow of 0 are covered separately; keep b non-zero-ish.
        const db = randomData(sb.reduce((x, y) => x * y, 1), dt, 4, lo, 4).map((
          v,
        ) => (v === 0 ? 1 : v));
        const r = await runBoth(g.build(), { a: da, b: db as typeof da });
        const [rt, at] = tol(dt);
        assertClose(
          r.gpu.y.data,
          r.cpu.y.data,
          rt * 2,
          at * 2,
          `${name} ${dt} ${JSON.stringify([sa, sb])}`,
        );
        assert.deepEqual(r.gpu.y.shape, r.cpu.y.shape);
      }
    }
  });
}

Deno.test("where selects with a broadcast condition", async () => {
  const g = new GraphBuilder();
  const c = g.input("c", [1, 6], "u32");
  const a = g.input("a", [4, 6]);
  const b = g.input("b", [4, 1]);
  g.output("y", a.where(c, b));
  const r = await runBoth(g.build(), {
    c: new Uint32Array([1, 0, 0, 1, 1, 0]),
    a: randomData(24, "f32", 1),
    b: randomData(4, "f32", 2),
  });
  assertClose(r.gpu.y.data, r.cpu.y.data, 0, 0, "where");
});

Deno.test("integer division by zero returns the dividend, as WGSL defines", async () => {
  const g = new GraphBuilder();
  const a = g.input("a", [4], "i32");
  const b = g.input("b", [4], "i32");
  g.output("y", a.div(b));
  const r = await runBoth(g.build(), {
    a: new Int32Array([7, -7, 5, 9]),
    b: new Int32Array([2, 2, 0, -4]),
  });
  assert.deepEqual([...r.gpu.y.data], [3, -3, 5, -2]);
  assert.deepEqual([...r.cpu.y.data], [3, -3, 5, -2]);
});

Deno.test("pow handles negative bases with integer exponents", async () => {
  const g = new GraphBuilder();
  const a = g.input("a", [5]);
  const b = g.input("b", [5]);
  g.output("y", a.pow(b));
  const r = await runBoth(g.build(), {
    a: new Float32Array([-2, -2, -3, 2, 0]),
    b: new Float32Array([2, 3, 0.5, 0.5, 2]),
  });
  assertClose(r.gpu.y.data, r.cpu.y.data, 1e-6, 1e-6, "pow");
  assert.ok(Number.isNaN(r.gpu.y.data[2]));
});

Deno.test("size-0 and large inputs run", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["N"]);
  g.output("y", x.mul(3).sub(1));
  const empty = await runBoth(g.build(), { x: new Float32Array(0) });
  assert.equal(empty.gpu.y.data.length, 0);
  // 5M elements: more workgroups than one grid dimension allows at 256 threads.
  const n = 65535 * 256 + 1000;
  const r = await runBoth(g.build(), { x: randomData(n, "f32", 9) });
  assertClose(r.gpu.y.data, r.cpu.y.data, 1e-6, 1e-6, "large");
});
