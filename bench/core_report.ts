/**
 * GPU-side figures for BENCHMARKS.md, from timestamp queries (median of several
 * runs): matmul GFLOP/s at 256–2048, the 10-op chain fused vs op by op, and the
 * GPU time of a tiny dispatch. Wall-clock figures come from `bench/core_bench.ts`.
 *
 * Run: `deno run -A bench/core_report.ts`
 */
import { compile, GraphBuilder, requestDevice } from "../mod.ts";
import { chain } from "./_chain.ts";
import { naiveMatmul } from "../ops/matmul/mod.ts";
import { wrapMatmul } from "./_matmul_harness.ts";

const device = await requestDevice();
if (!device.timestamps) throw new Error("This report needs the timestamp-query feature");
const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

console.log(`adapter: ${device.adapterName}`);
console.log(
  "\n| matmul f32 | GPU ms (median) | GPU GFLOP/s | wall ms with readback | wall GFLOP/s |",
);
console.log("|---|---|---|---|---|");
for (const n of [256, 512, 1024, 2048]) {
  const g = new GraphBuilder();
  const a = g.input("a", [n, n]);
  const b = g.param("b", [n, n]);
  g.output("c", a.matmul(b));
  const exe = compile(g.build(), device, { params: { b: rand(n * n) } });
  const x = rand(n * n);
  await exe.run({ a: x });
  const reps = n >= 2048 ? 3 : 7;
  const gpu: number[] = [], wall: number[] = [];
  for (let i = 0; i < reps; i++) {
    const p = await exe.profile({ a: x });
    gpu.push(p.kernels.reduce((s, k) => s + k.ns, 0) / 1e6);
    const t0 = performance.now();
    await exe.run({ a: x });
    wall.push(performance.now() - t0);
  }
  const flop = 2 * n ** 3;
  const [gm, wm] = [median(gpu), median(wall)];
  console.log(
    `| ${n}³ (${exe.lastPlan!.kernels[0].label}) | ${gm.toFixed(1)} | ${
      (flop / gm / 1e6).toFixed(2)
    } | ${wm.toFixed(1)} | ${(flop / wm / 1e6).toFixed(2)} |`,
  );
  exe.dispose();
}

{
  // The floor: one thread per output element, same submit + readback as above.
  const n = 1024;
  const k = naiveMatmul({
    batch: 1,
    M: n,
    N: n,
    K: n,
    transA: false,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
    elem: "f32",
    aDirect: true,
    bDirect: true,
    cDirect: true,
    maxInvocations: device.caps.maxInvocations,
    maxWorkgroupStorage: device.caps.maxWorkgroupStorage,
    maxWorkgroupsPerDim: device.caps.maxWorkgroupsPerDim,
  });
  const d = device.device;
  const code = wrapMatmul(k);
  const pipe = d.createComputePipeline({
    layout: "auto",
    compute: { module: d.createShaderModule({ code }), entryPoint: "main" },
  });
  const mk = (usage: number) => d.createBuffer({ size: n * n * 4, usage });
  const [a, b, c] = [
    mk(GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST),
    mk(GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST),
    mk(GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC),
  ];
  const read = d.createBuffer({
    size: n * n * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  d.queue.writeBuffer(a, 0, rand(n * n));
  d.queue.writeBuffer(b, 0, rand(n * n));
  const bg = d.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [a, b, c].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const wall: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const e = d.createCommandEncoder();
    const p = e.beginComputePass();
    p.setPipeline(pipe);
    p.setBindGroup(0, bg);
    p.dispatchWorkgroups(...k.workgroups);
    p.end();
    e.copyBufferToBuffer(c, 0, read, 0, n * n * 4);
    d.queue.submit([e.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    read.unmap();
    wall.push(performance.now() - t0);
  }
  const wm = median(wall);
  console.log(
    `| 1024³ naive floor (${k.label}) | – | – | ${wm.toFixed(1)} | ${
      (2 * n ** 3 / wm / 1e6).toFixed(2)
    } |`,
  );
  for (const buf of [a, b, c, read]) buf.destroy();
}

console.log("\n| 10-op chain, 4M f32 | kernels | GPU ms (median of 5) |");
console.log("|---|---|---|");
const times: number[] = [];
for (const fusion of [true, false]) {
  const g = new GraphBuilder();
  const x = g.input("x", [4 * 1024 * 1024]);
  g.output("y", chain(x));
  const exe = compile(g.build(), device, { fusion });
  const data = rand(4 * 1024 * 1024);
  await exe.run({ x: data });
  const gpu: number[] = [];
  for (let i = 0; i < 5; i++) {
    gpu.push((await exe.profile({ x: data })).kernels.reduce((s, k) => s + k.ns, 0) / 1e6);
  }
  times.push(median(gpu));
  console.log(
    `| ${fusion ? "fused" : "op by op"} | ${exe.lastPlan!.kernels.length} | ${
      median(gpu).toFixed(2)
    } |`,
  );
  exe.dispose();
}
console.log(`\nfused speed-up (GPU-side): ${(times[1] / times[0]).toFixed(2)}×`);

{
  const g = new GraphBuilder();
  let t = g.input("x", [64]);
  for (let i = 0; i < 64; i++) t = t.reshape([8, 8]).add(1).reshape([64]);
  g.output("y", t);
  const exe = compile(g.build(), device);
  await exe.run({ x: rand(64) });
  const p = await exe.profile({ x: rand(64) });
  const per = p.kernels.map((k) => k.ns / 1e3);
  console.log(
    `\ntiny dispatch GPU time: median ${
      median(per).toFixed(1)
    } µs over ${per.length} kernels (each in its own timestamped pass)`,
  );
  exe.dispose();
}
device.destroy();
