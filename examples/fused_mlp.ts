/**
 * A fused MLP block: y = W2 · silu(W1 · rmsnorm(x)) + x. Run with
 * `deno run -A examples/fused_mlp.ts`. Shows how few kernels it becomes and checks
 * the GPU result against the CPU reference.
 */
import { compile, cpuDevice, GraphBuilder, requestDevice } from "../mod.ts";

/** Builds the block; exported so `deno task inspect examples/fused_mlp.ts` can show its plan. */
export function build(d = 256, ff = 1024): GraphBuilder {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", d]);
  const norm = g.param("norm", [d]);
  const w1 = g.param("w1", [ff, d]);
  const b1 = g.param("b1", [ff]);
  const w2 = g.param("w2", [d, ff]);
  const h = x.rmsnorm(norm, 1e-6).matmul(w1, { transB: true }).add(b1).silu(); // matmul + bias + silu: 1 kernel
  g.output("y", h.matmul(w2, { transB: true }).add(x)); // matmul + residual: 1 kernel
  return g;
}

/** Dims `inspect` uses when none are given. */
export const dims = { T: 64 };

if (import.meta.main) {
  const d = 256, ff = 1024, T = 64;
  const rand = (n: number, s: number) =>
    Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * s);
  const params = {
    norm: rand(d, 1).map((v) => 1 + 0.1 * v),
    w1: rand(ff * d, 1 / Math.sqrt(d)),
    b1: rand(ff, 0.1),
    w2: rand(d * ff, 1 / Math.sqrt(ff)),
  };
  const graph = build(d, ff).build();
  const device = await requestDevice();
  console.log(`adapter: ${device.adapterName}`);
  const exe = compile(graph, device, { params });
  const x = rand(T * d, 1);
  const t0 = performance.now();
  const { y } = await exe.run({ x });
  console.log(`first run (compiles pipelines): ${(performance.now() - t0).toFixed(1)} ms`);
  const t1 = performance.now();
  await exe.run({ x });
  console.log(`second run: ${(performance.now() - t1).toFixed(1)} ms`);
  console.log(exe.inspect({ T }));
  const ref = await compile(graph, cpuDevice(), { params }).run({ x });
  let err = 0;
  for (let i = 0; i < y.data.length; i++) err = Math.max(err, Math.abs(y.data[i] - ref.y.data[i]));
  console.log(`max |gpu − cpu| = ${err.toExponential(2)}`);
  exe.dispose();
  device.destroy();
}
