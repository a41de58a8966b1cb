import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { gpu } from "./_util.ts";

const THIS_FILE = /errors_test\.ts:\d+/;

Deno.test("shape mismatch names the op, both shapes and the caller's line", () => {
  const g = new GraphBuilder();
  const a = g.input("a", ["T", 4]);
  const b = g.input("b", [5]);
  assert.throws(() => a.add(b), (e: Error) => {
    assert.ok(e instanceof RangeError);
    assert.match(e.message, /add: shapes \[T, 4\] and \[5\] cannot be broadcast/);
    assert.match(e.message, THIS_FILE);
    return true;
  });
});

Deno.test("matmul inner-dimension mismatch is a RangeError with both shapes", () => {
  const g = new GraphBuilder();
  const a = g.input("a", [3, 4]);
  const w = g.param("w", [5, 6]);
  assert.throws(
    () => a.matmul(w),
    /matmul: inner dimensions differ \(4 vs 5\) in \[3, 4\] @ \[5, 6\]/,
  );
});

Deno.test("dtype mismatch is a TypeError naming both dtypes", () => {
  const g = new GraphBuilder();
  const a = g.input("a", [3]);
  const b = g.input("b", [3], "i32");
  assert.throws(
    () => a.mul(b),
    (e: Error) => e instanceof TypeError && /f32 vs i32/.test(e.message),
  );
  assert.throws(
    () => b.exp(),
    (e: Error) => e instanceof TypeError && /exp: expects a float tensor, got i32/.test(e.message),
  );
});

Deno.test("unknown attributes, dtypes and bad axes are rejected at build time", () => {
  const g = new GraphBuilder();
  const a = g.input("a", [3, 4]);
  assert.throws(
    () => g.apply("softmax", [a], { axis: -1, temperature: 2 } as never),
    (e: Error) => e instanceof TypeError && /unknown attribute "temperature"/.test(e.message),
  );
  assert.throws(
    () => g.input("b", [2], "f64" as never),
    (e: Error) => e instanceof TypeError && /Unknown dtype "f64"/.test(e.message),
  );
  assert.throws(
    () => a.sum(2),
    (e: Error) => e instanceof RangeError && /Axis 2 is out of range/.test(e.message),
  );
  assert.throws(() => g.input("c", [2.5]), RangeError);
  assert.throws(() => g.input("a", [1]), /declared twice/);
});

Deno.test("run-time input errors name the input and dispatch nothing", async () => {
  const dev = await gpu();
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 4]);
  const w = g.param("w", [4, 4]);
  g.output("y", x.add(w.sum(0)));
  const exe = compile(g.build(), dev);
  // Missing param.
  await assert.rejects(exe.run({ x: new Float32Array(8) }), /Param "w" has no value/);
  exe.setParams({ w: new Float32Array(16) });
  // Wrong length: 7 is not a multiple of 4.
  await assert.rejects(
    exe.run({ x: new Float32Array(7) }),
    (e: Error) => e instanceof RangeError && /Input "x" \[T, 4\] expects/.test(e.message),
  );
  // Missing input, unknown input, wrong shape, unbound symbol.
  await assert.rejects(exe.run({}), /Missing input "x"/);
  await assert.rejects(exe.run({ x: new Float32Array(8), z: [1] }), /Unknown input "z"/);
  await assert.rejects(
    exe.run({ x: { data: new Float32Array(8), shape: [4, 2], dtype: "f32" } }),
    /has shape \[4, 2\], expected \[T, 4\]/,
  );
  // Integer data for a float input is fine; float data for an int input is not.
  assert.throws(() => exe.setParams({ w: new Float32Array(3) }), /Param "w" expects 16 values/);
  assert.throws(() => exe.setParams({ nope: [1] }), /Unknown param "nope"/);
  // Nothing was planned for the failed runs.
  assert.equal(exe.lastPlan, undefined);
  const { y } = await exe.run({ x: new Float32Array(8) });
  assert.equal(y.data.length, 8);
  exe.dispose();
});

Deno.test("unbound symbolic dimensions are a RangeError naming the symbol", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["B", "T"]);
  g.output("y", x.exp());
  const exe = compile(g.build(), await gpu());
  await assert.rejects(
    exe.run({ x: new Float32Array(6) }),
    /pass \{ data, shape \} or dims for B, T/,
  );
  const { y } = await exe.run({ x: new Float32Array(6) }, { dims: { B: 2 } });
  assert.deepEqual(y.shape, [2, 3]);
  assert.throws(
    () => exe.plan({ B: 2 }),
    (e: Error) => e instanceof RangeError && /"T"/.test(e.message),
  );
  exe.dispose();
});

Deno.test("no adapter gives an error that says how to get one", async () => {
  const { requestDevice } = await import("../runtime/device.ts");
  const fake = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;
  await assert.rejects(requestDevice({ gpu: fake }), /mesa-vulkan-drivers/);
});

Deno.test("f16 on a device without shader-f16 is a TypeError, not a shader error", async () => {
  const { requestDevice } = await import("../runtime/device.ts");
  const dev = await requestDevice({ disableFeatures: ["shader-f16"] });
  try {
    const g = new GraphBuilder();
    const x = g.input("x", [4], "f16");
    g.output("y", x.exp());
    const exe = compile(g.build(), dev);
    await assert.rejects(
      exe.run({ x: new Float16Array(4) }),
      (e: Error) => e instanceof TypeError && /lacks the shader-f16 feature/.test(e.message),
    );
  } finally {
    dev.destroy();
  }
});

Deno.test("a non-finite attribute is a RangeError when the graph is built, naming op and attribute", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [2, 8]);
  const pos = g.input("pos", [1], "u32");
  const seed = g.input("seed", [1], "u32");
  assert.throws(
    () => x.rmsnorm(g.param("w", [8]), Infinity),
    (e: Error) =>
      e instanceof RangeError &&
      /rmsnorm: attribute "eps" must be finite, got Infinity/.test(e.message),
  );
  assert.throws(
    () => x.reshape([2, 2, 4]).rope(pos, 1e4, { invFreq: [1, NaN] }),
    /rope: attribute "invFreq" must be finite, got \[1, NaN\]/,
  );
  assert.throws(
    () => x.sample(seed, seed, { temperature: Infinity }),
    /sample: attribute "temperature" must be finite, got Infinity/,
  );
});
