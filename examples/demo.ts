/**
 * `deno task demo`: compiles a fused MLP block on embedded defaults (no download),
 * prints its kernel plan, runs it on the WebGPU adapter, checks it against the CPU
 * reference, and reports the time per run.
 */
import { compile, cpuDevice, requestDevice } from "../mod.ts";
import { build } from "./fused_mlp.ts";

const d = 512, ff = 1408, T = 128;
let seed = 42;
const rand = (n: number, s: number) =>
  Float32Array.from({ length: n }, () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return (seed / 2 ** 32 * 2 - 1) * s;
  });
const params = {
  norm: rand(d, 0.1).map((v) => 1 + v),
  w1: rand(ff * d, 1 / Math.sqrt(d)),
  b1: rand(ff, 0.1),
  w2: rand(d * ff, 1 / Math.sqrt(ff)),
};
const graph = build(d, ff).build();
const device = await requestDevice();
console.log(
  `Kiln demo on ${device.adapterName}: y = W2·silu(W1·rmsnorm(x) + b1) + x, T=${T}, d=${d}, ff=${ff}\n`,
);
const exe = compile(graph, device, { params });
console.log(exe.inspect({ T }));
const x = rand(T * d, 1);
const t0 = performance.now();
const { y } = await exe.run({ x });
const first = performance.now() - t0;
const times: number[] = [];
for (let i = 0; i < 5; i++) {
  const t = performance.now();
  await exe.run({ x });
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
const ref = await compile(graph, cpuDevice(), { params }).run({ x });
let err = 0;
for (let i = 0; i < y.data.length; i++) err = Math.max(err, Math.abs(y.data[i] - ref.y.data[i]));
const flops = 2 * T * d * ff * 2;
console.log(
  `\nfirst run (compiles pipelines) ${first.toFixed(0)} ms; median run ${times[2].toFixed(1)} ms ` +
    `(${(flops / times[2] / 1e6).toFixed(2)} GFLOP/s incl. upload and readback)`,
);
console.log(`max |gpu − cpu reference| = ${err.toExponential(2)}`);
exe.dispose();
device.destroy();
