/**
 * Core benchmarks (deno bench): end-to-end f32 matmul through the compiler, the
 * 10-op elementwise chain fused vs op by op, per-dispatch overhead and readback
 * latency. GPU-side figures (timestamp queries) come from `bench/core_report.ts`.
 *
 * Run: `deno bench -A bench/core_bench.ts`
 */
import { compile, type Executable, GraphBuilder, requestDevice } from "../mod.ts";
import { chain } from "./_chain.ts";

const device = await requestDevice();
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);

function matmulGraph(n: number): Executable {
  const g = new GraphBuilder();
  const a = g.input("a", [n, n]);
  const b = g.param("b", [n, n]);
  g.output("c", a.matmul(b));
  return compile(g.build(), device, { params: { b: rand(n * n) } });
}

for (const n of [256, 512, 1024, 2048]) {
  const exe = matmulGraph(n);
  const a = rand(n * n);
  await exe.run({ a }); // compile pipelines outside the timing
  Deno.bench({
    name: `matmul ${n}³ f32, upload A + run + read back C`,
    group: `matmul ${n}`,
    n: n >= 2048 ? 3 : n >= 1024 ? 10 : 30,
    warmup: 1,
    async fn() {
      await exe.run({ a });
    },
  });
}

const N = 4 * 1024 * 1024;
for (const fusion of [true, false]) {
  const g = new GraphBuilder();
  const x = g.input("x", [N]);
  g.output("y", chain(x));
  const exe = compile(g.build(), device, { fusion });
  const run = await exe.prepare({ x: rand(N) });
  const enc = device.device.createCommandEncoder();
  run.encode(enc);
  device.device.queue.submit([enc.finish()]);
  await device.device.queue.onSubmittedWorkDone();
  Deno.bench({
    name: `10-op chain on 4M f32, ${fusion ? "fused (1 kernel)" : "op by op (10 kernels)"}`,
    group: "chain",
    baseline: !fusion,
    n: 10,
    async fn() {
      const e = device.device.createCommandEncoder();
      run.encode(e);
      device.device.queue.submit([e.finish()]);
      await device.device.queue.onSubmittedWorkDone();
    },
  });
}

// Per-dispatch overhead: 64 tiny kernels vs 1, same submit + wait.
for (const kernels of [1, 64]) {
  const g = new GraphBuilder();
  let t = g.input("x", [64]);
  for (let i = 0; i < kernels; i++) t = t.reshape([8, 8]).add(1).reshape([64]);
  g.output("y", t);
  const exe = compile(g.build(), device);
  const run = await exe.prepare({ x: rand(64) });
  Deno.bench({
    name: `${kernels} tiny dispatch${kernels > 1 ? "es" : ""}, one encoder, submit + wait`,
    group: "dispatch",
    baseline: kernels === 1,
    n: 50,
    async fn() {
      const e = device.device.createCommandEncoder();
      run.encode(e);
      device.device.queue.submit([e.finish()]);
      await device.device.queue.onSubmittedWorkDone();
    },
  });
}

{
  const g = new GraphBuilder();
  const x = g.input("x", [1]);
  g.output("y", x.add(1));
  const exe = compile(g.build(), device);
  const x1 = new Float32Array(1);
  await exe.run({ x: x1 });
  Deno.bench({
    name: "one readback (1 kernel, 4 bytes, mapAsync)",
    group: "readback",
    n: 50,
    async fn() {
      await exe.run({ x: x1 });
    },
  });
}
