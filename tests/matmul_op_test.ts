import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import { assertClose, gpu, randomData, runBoth } from "./_util.ts";

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

async function check(
  sa: number[],
  sb: number[],
  transA: boolean,
  transB: boolean,
  dt: DType = "f32",
) {
  const g = new GraphBuilder();
  const a = g.input("a", sa, dt);
  const b = g.input("b", sb, dt);
  g.output("y", a.matmul(b, { transA, transB }));
  const r = await runBoth(g.build(), {
    a: randomData(numel(sa), dt, numel(sa)),
    b: randomData(numel(sb), dt, numel(sb) + 1),
  });
  const K = transA ? sa[sa.length - 2] : sa[sa.length - 1];
  const tol = dt === "f16" ? 1e-2 * Math.sqrt(K) : 2e-5 * Math.sqrt(K + 1);
  assertClose(
    r.gpu.y.data,
    r.cpu.y.data,
    tol,
    tol,
    `${dt} ${JSON.stringify(sa)}${transA ? "ᵀ" : ""} @ ${JSON.stringify(sb)}${transB ? "ᵀ" : ""}`,
  );
  assert.deepEqual(r.gpu.y.shape, r.cpu.y.shape);
  return r;
}

Deno.test("matmul matches the reference on awkward sizes and every transpose", async () => {
  for (
    const [M, K, N] of [[1, 1, 1], [3, 17, 5], [63, 65, 17], [100, 3, 129], [1, 256, 300], [
      5,
      1,
      7,
    ]]
  ) {
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        await check(tA ? [K, M] : [M, K], tB ? [N, K] : [K, N], tA, tB);
      }
    }
  }
});

Deno.test("batched matmul broadcasts batch dimensions", async () => {
  await check([3, 7, 9], [3, 9, 4], false, false); // full batch
  await check([3, 7, 9], [9, 4], false, false); // weight shared
  await check([7, 9], [2, 3, 9, 4], false, false); // A broadcast
  await check([2, 1, 5, 6], [1, 3, 4, 6], false, true); // partial broadcast: general kernel
});

Deno.test("f16 matmul accumulates in f32", async () => {
  await check([33, 70], [70, 19], false, false, "f16");
  await check([4, 64], [40, 64], false, true, "f16");
});

Deno.test("matmul with an empty inner dimension gives zeros", async () => {
  const r = await check([3, 0], [0, 4], false, false);
  assert.deepEqual([...r.gpu.y.data], new Array(12).fill(0));
});

Deno.test("matmul + bias + silu is one kernel; an elementwise prologue fuses into the load", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 40]);
  const w = g.input("w", [24, 40]);
  const b = g.input("b", [24]);
  g.output("y", x.matmul(w, { transB: true }).add(b).silu());
  const inputs = {
    x: randomData(13 * 40, "f32", 1),
    w: randomData(24 * 40, "f32", 2),
    b: randomData(24, "f32", 3),
  };
  const r = await runBoth(g.build(), inputs);
  assert.equal(r.kernels, 1);
  assertClose(r.gpu.y.data, r.cpu.y.data, 1e-4, 1e-5, "epilogue");

  const g2 = new GraphBuilder();
  const x2 = g2.input("x", ["T", 40]);
  const w2 = g2.input("w", [24, 40]);
  g2.output("y", x2.mul(0.5).tanh().matmul(w2, { transB: true }));
  const r2 = await runBoth(g2.build(), { x: inputs.x, w: inputs.w });
  assert.equal(r2.kernels, 1);
  assertClose(r2.gpu.y.data, r2.cpu.y.data, 1e-4, 1e-5, "prologue");
});

Deno.test("SwiGLU's silu·mul fuses into a gate matmul's epilogue: 3 kernels in all", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 32]);
  const w1 = g.input("w1", [48, 32]);
  const w3 = g.input("w3", [48, 32]);
  const w2 = g.input("w2", [32, 48]);
  const h = x.matmul(w1, { transB: true }).silu().mul(x.matmul(w3, { transB: true }));
  g.output("y", h.matmul(w2, { transB: true }));
  const r = await runBoth(g.build(), {
    x: randomData(9 * 32, "f32", 4),
    w1: randomData(48 * 32, "f32", 5),
    w3: randomData(48 * 32, "f32", 6),
    w2: randomData(32 * 48, "f32", 7),
  });
  assert.equal(r.kernels, 3);
  assertClose(r.gpu.y.data, r.cpu.y.data, 1e-4, 1e-4, "swiglu");
});

Deno.test("decode GEMV path (few rows × [N, K] weight) matches the reference, with fused prologue and epilogue", async () => {
  for (const dt of ["f32", "f16"] as const) {
    for (
      const [R, K, N] of [[1, 4, 1], [1, 64, 5], [2, 260, 301], [3, 128, 64], [4, 32, 7], [
        1,
        1024,
        64,
      ], [1, 16, 190]]
    ) {
      const g = new GraphBuilder();
      const x = g.input("x", [R, K], dt);
      const w = g.input("w", [N, K], dt);
      const b = g.input("b", [N], dt);
      g.output("y", x.matmul(w, { transB: true }).add(b));
      g.output("z", x.mul(2).matmul(w, { transB: true })); // A through a prologue (no vec4 A)
      const r = await runBoth(g.build(), {
        x: randomData(R * K, dt, R + K),
        w: randomData(N * K, dt, N),
        b: randomData(N, dt, 5),
      });
      const tol = dt === "f16" ? 1e-2 * Math.sqrt(K) : 2e-5 * Math.sqrt(K);
      assertClose(r.gpu.y.data, r.cpu.y.data, tol, tol, `gemv ${dt} ${R}x${K}x${N}`);
      assertClose(r.gpu.z.data, r.cpu.z.data, tol, tol, `gemv prologue ${dt} ${R}x${K}x${N}`);
      assert.ok(
        r.labels.filter((l) => l.startsWith("gemv") || l.startsWith("prologue+gemv")).length === 2,
        r.labels.join(),
      );
      // On a CPU adapter f16 rows of whole 8-value words are read packed.
      const packed = r.labels.filter((l) => /gemv_r\dx4_packed/.test(l)).length;
      assert.equal(packed, dt === "f16" && K % 8 === 0 && (await gpu()).caps.cpuCores > 0 ? 2 : 0);
    }
  }
});

Deno.test("a GEMV weight larger than one binding is read in vec4 segments", async () => {
  const { requestDevice } = await import("../runtime/device.ts");
  const { compile } = await import("../runtime/executable.ts");
  const dev = await requestDevice({ limits: { maxBindingSize: 4096 } });
  try {
    for (const [R, K, N] of [[1, 64, 50], [2, 260, 33]]) {
      const g = new GraphBuilder();
      const x = g.input("x", [R, K]);
      const w = g.param("w", [N, K]); // N·K·4 bytes > 4096: several segments
      g.output("y", x.matmul(w, { transB: true }).add(1));
      const graph = g.build();
      const params = { w: randomData(N * K, "f32", N) };
      const inputs = { x: randomData(R * K, "f32", K) };
      const exe = compile(graph, dev, { params });
      const { y } = await exe.run(inputs);
      const ref = await compile(graph, { kind: "cpu" }, { params }).run(inputs);
      assertClose(y.data, ref.y.data, 1e-4, 1e-4, `segmented gemv ${R}x${K}x${N}`);
      const k = exe.lastPlan!.kernels[0];
      assert.match(k.label, /gemv/);
      assert.ok(k.bindings.length > 3, `${k.bindings.length} bindings`);
      exe.dispose();
    }
  } finally {
    dev.destroy();
  }
});
