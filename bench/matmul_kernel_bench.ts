/**
 * @file Matmul kernel benchmarks: {@linkcode emitMatmul} against
 * {@linkcode naiveMatmul} on square f32 matmuls, plus the decode GEMV case
 * (M = 1, K = N = 4096, PyTorch Linear weight layout).
 *
 * Every iteration is what a user pays: one submit of the kernel plus a full
 * readback of C through `mapAsync`. GFLOP/s (and GB/s of weights for the GEMV)
 * are printed when the run ends.
 *
 * Run: `deno bench -A bench/matmul_kernel_bench.ts`
 * (`MATMUL_BENCH_FULL=1` adds the naive 2048³ kernel, about a minute.)
 */
import {
  emitMatmul,
  type MatmulKernel,
  type MatmulKernelSpec,
  naiveMatmul,
} from "../ops/matmul/mod.ts";
import { wrapMatmul } from "./_matmul_harness.ts";

const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("No WebGPU adapter: matmul benchmarks need one");
const limits = adapter.limits;
const device = await adapter.requestDevice({
  requiredLimits: {
    maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
    maxBufferSize: limits.maxBufferSize,
  },
});
const full = Deno.env.get("MATMUL_BENCH_FULL") === "1";

function spec(
  M: number,
  N: number,
  K: number,
  transB = false,
): MatmulKernelSpec {
  return {
    batch: 1,
    M,
    N,
    K,
    transA: false,
    transB,
    aBatchStride: 0,
    bBatchStride: 0,
    elem: "f32",
    aDirect: true,
    bDirect: true,
    cDirect: true,
    maxInvocations: limits.maxComputeInvocationsPerWorkgroup,
    maxWorkgroupStorage: limits.maxComputeWorkgroupStorageSize,
    maxWorkgroupsPerDim: limits.maxComputeWorkgroupsPerDimension,
  };
}

/** Builds buffers and the pipeline once; returns one submit-and-read-back step. */
async function prepare(s: MatmulKernelSpec, kernel: MatmulKernel) {
  const input = (count: number) => {
    const data = new Float32Array(count).map(() => Math.random() - 0.5);
    const buf = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(buf, 0, data);
    return buf;
  };
  const bytes = s.M * s.N * 4;
  const a = input(s.M * s.K);
  const b = input(s.K * s.N);
  const c = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const module = device.createShaderModule({ code: wrapMatmul(kernel) });
  const pipeline = await device.createComputePipelineAsync({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [a, b, c].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    })),
  });
  return async () => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...kernel.workgroups);
    pass.end();
    encoder.copyBufferToBuffer(c, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    read.getMappedRange();
    read.unmap();
  };
}

const results: string[] = [];

/** Registers one benchmark whose best iteration is reported in GFLOP/s. */
function bench(
  group: string,
  name: string,
  s: MatmulKernelSpec,
  kernel: MatmulKernel,
  opts: { n?: number; warmup?: number; ignore?: boolean; baseline?: boolean },
) {
  let step: (() => Promise<void>) | undefined;
  let best = Infinity;
  Deno.bench({
    name: `${name} ${kernel.label}`,
    group,
    ...opts,
    async fn(b) {
      step ??= await prepare(s, kernel);
      b.start();
      const t0 = performance.now();
      await step();
      best = Math.min(best, performance.now() - t0);
      b.end();
    },
  });
  if (!opts.ignore) {
    results.push(""); // placeholder, filled at unload
    const slot = results.length - 1;
    globalThis.addEventListener("unload", () => {
      if (!Number.isFinite(best)) return;
      const gflops = (2 * s.M * s.N * s.K) / best / 1e6;
      const weights = s.M === 1
        ? `, ${((s.N * s.K * 4) / best / 1e6).toFixed(2)} GB/s weights`
        : "";
      results[slot] = `${group.padEnd(12)} ${name.padEnd(8)} ${kernel.label.padEnd(28)} ${
        best.toFixed(1).padStart(8)
      } ms ${gflops.toFixed(2).padStart(7)} GFLOP/s${weights}`;
    });
  }
}

for (const size of [256, 512, 1024, 2048]) {
  const s = spec(size, size, size);
  const slow = size >= 1024;
  bench(`f32 ${size}³`, "emit", s, emitMatmul(s), {
    baseline: true,
    n: slow ? 8 : 20,
    warmup: 1,
  });
  bench(`f32 ${size}³`, "naive", s, naiveMatmul(s), {
    n: slow ? 1 : 5,
    warmup: 1,
    ignore: size === 2048 && !full,
  });
}

for (const transB of [true, false]) {
  const s = spec(1, 4096, 4096, transB);
  const group = `gemv ${transB ? "NT" : "NN"}`;
  bench(group, "emit", s, emitMatmul(s), { baseline: true, n: 20, warmup: 2 });
  bench(group, "naive", s, naiveMatmul(s), { n: 5, warmup: 1 });
}

globalThis.addEventListener("unload", () => {
  // Runs after the per-bench listeners above (registration order).
  console.log("\nBest iteration (submit + full readback of C):");
  for (const line of results) if (line) console.log(line);
});
