/**
 * Selective-scan benchmarks: chunked (three-pass) vs sequential scan, the
 * elementwise bandwidth ceiling with the scan's traffic, and the decode step
 * at two context lengths.
 *
 * On load it prints a table of GPU times measured with timestamp queries
 * (median of a few runs, one readback per run) when the adapter has
 * `timestamp-query`, else wall time to `onSubmittedWorkDone`. The `Deno.bench`
 * cases then report wall time per submit for the headline shapes.
 *
 * Run: `deno bench -A bench/ssm_scan_bench.ts`
 * (SSM_BENCH_QUICK=1 limits the table to L = 512 and 2048.)
 *
 * @module
 */
import {
  buildShader,
  emitCausalConv1d,
  emitChunkedScan,
  emitConvStateUpdate,
  emitDecodeStep,
  emitScanTrafficKernel,
  emitSequentialScan,
  type Kernel,
  mixerParamsLayout,
  packMixerParams,
  type ScanSpec,
  scanTrafficBytes,
} from "../ops/ssm_kernels.ts";

const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("No WebGPU adapter");
const hasTimestamps = adapter.features.has("timestamp-query");
const device = await adapter.requestDevice({
  requiredFeatures: hasTimestamps ? ["timestamp-query"] : [],
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  },
});

const pipelines = new Map<string, GPUComputePipeline>();
function pipelineFor(k: Kernel): GPUComputePipeline {
  const code = buildShader(k);
  let p = pipelines.get(code);
  if (!p) {
    p = device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code, label: k.label }), entryPoint: "main" },
      label: k.label,
    });
    pipelines.set(code, p);
  }
  return p;
}

/** A ready-to-encode sequence of dispatches. */
type Job = { pipeline: GPUComputePipeline; group: GPUBindGroup; wg: [number, number, number] }[];

function job(kernels: Kernel[], bufs: Record<string, GPUBuffer>): Job {
  return kernels.map((k) => {
    const pipeline = pipelineFor(k);
    const entries = k.bindings.map((b, i) => ({ binding: i, resource: { buffer: bufs[b.name] } }));
    const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    return { pipeline, group, wg: k.workgroups };
  });
}

const querySet = hasTimestamps ? device.createQuerySet({ type: "timestamp", count: 2 }) : undefined;
const queryBuf = device.createBuffer({
  size: 16,
  usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
});
const queryRead = device.createBuffer({
  size: 16,
  usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
});

/** Encodes the job in one compute pass; returns GPU ms (timestamps) or wall ms. */
async function timeJob(j: Job): Promise<number> {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass(
    querySet
      ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
      : {},
  );
  for (const d of j) {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.group);
    pass.dispatchWorkgroups(...d.wg);
  }
  pass.end();
  if (querySet) {
    enc.resolveQuerySet(querySet, 0, 2, queryBuf, 0);
    enc.copyBufferToBuffer(queryBuf, 0, queryRead, 0, 16);
  }
  const t0 = performance.now();
  device.queue.submit([enc.finish()]);
  if (!querySet) {
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  }
  await queryRead.mapAsync(GPUMapMode.READ);
  const ts = new BigUint64Array(queryRead.getMappedRange().slice(0));
  queryRead.unmap();
  return Number(ts[1] - ts[0]) / 1e6;
}

async function median(j: Job, runs: number): Promise<number> {
  await timeJob(j); // warm-up: pipeline compilation and first-touch of pages
  const t: number[] = [];
  for (let r = 0; r < runs; r++) t.push(await timeJob(j));
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

function randomBuffer(n: number, lo: number, hi: number, seed: number): GPUBuffer {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = lo + (hi - lo) * (s / 4294967296);
  }
  const buf = device.createBuffer({
    size: Math.max(4, a.byteLength),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
  });
  device.queue.writeBuffer(buf, 0, a);
  return buf;
}

/** Buffers for a scan of `spec` (f32), incl. chunked scratch and A = −(n+1). */
function scanBuffers(spec: ScanSpec, scratch: { name: string; elements: number }[]) {
  const { batch: B, length: L, channels: I, state: N } = spec;
  const lay = mixerParamsLayout(I, N, 0);
  const a = new Float32Array(I * N).map((_, k) => -((k % N) + 1));
  const params = packMixerParams(lay, { a, d: new Float32Array(I).fill(1) });
  const pbuf = device.createBuffer({
    size: params.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(pbuf, 0, params);
  const bufs: Record<string, GPUBuffer> = {
    u: randomBuffer(B * L * I, -1, 1, 1),
    delta: randomBuffer(B * L * I, 0.001, 0.1, 2),
    b_mat: randomBuffer(B * L * N, -1, 1, 3),
    c_mat: randomBuffer(B * L * N, -1, 1, 4),
    z: randomBuffer(B * L * I, -2, 2, 5),
    y: randomBuffer(B * L * I, 0, 0, 6),
    params: pbuf,
  };
  for (const s of scratch) bufs[s.name] = randomBuffer(s.elements, 0, 0, 7);
  return bufs;
}

const wgCount = (k: Kernel): number => k.workgroups[0] * k.workgroups[1] * k.workgroups[2];

// ------------------------------------------------------------------ table

const quick = Deno.env.get("SSM_BENCH_QUICK") === "1";
const lengths = quick ? [512, 2048] : [512, 2048, 8192];
const rows: string[] = [];
rows.push(
  `timing: ${hasTimestamps ? "GPU timestamp-query" : "wall to onSubmittedWorkDone"}, ` +
    `median of 3 after warm-up; adapter: ${adapter.info.description || adapter.info.vendor}`,
);
rows.push(
  "I     L     | seq wg  chunk wg (p1/p2/p3) | seq ms   chunk ms  ratio | scan GB/s  elemwise GB/s  scan/ceiling",
);
for (const I of [256, 1536]) {
  for (const L of lengths) {
    const spec: ScanSpec = { batch: 1, length: L, channels: I, state: 16, gate: true };
    const seq = emitSequentialScan(spec);
    const plan = emitChunkedScan(spec);
    const traffic = emitScanTrafficKernel(spec);
    const bufs = scanBuffers(spec, plan.scratch);
    const tSeq = await median(job([seq], bufs), 3);
    const tChunk = await median(job(plan.kernels, bufs), 3);
    const tEw = await median(job([traffic], bufs), 3);
    const bytes = scanTrafficBytes(spec);
    const best = Math.min(tSeq, tChunk);
    const [k1, k2, k3] = plan.kernels;
    rows.push(
      `${String(I).padEnd(5)} ${String(L).padEnd(5)} | ${String(wgCount(seq)).padEnd(7)} ` +
        `${`${wgCount(k1)}/${wgCount(k2)}/${wgCount(k3)}`.padEnd(19)} | ` +
        `${tSeq.toFixed(2).padStart(7)}  ${tChunk.toFixed(2).padStart(8)}  ${
          (tChunk / tSeq).toFixed(2).padStart(5)
        } | ` +
        `${(bytes / best / 1e6).toFixed(2).padStart(9)}  ${
          (bytes / tEw / 1e6).toFixed(2).padStart(13)
        }  ` +
        `${((tEw / best) * 100).toFixed(0).padStart(10)}%`,
    );
    for (const b of Object.values(bufs)) b.destroy();
  }
}

// Decode: the step kernel's work does not depend on the context; prefill a
// context of 64 and of 4096 tokens (conv + chunked scan) and time one step.
{
  const I = 1536, N = 16, K = 4;
  const lay = mixerParamsLayout(I, N, K);
  const params = packMixerParams(lay, {
    a: new Float32Array(I * N).map((_, k) => -((k % N) + 1)),
    d: new Float32Array(I).fill(1),
    convW: new Float32Array(I * K).fill(0.25),
  });
  for (const ctx of [64, 4096]) {
    const spec: ScanSpec = {
      batch: 1,
      length: ctx,
      channels: I,
      state: N,
      gate: true,
      finalState: true,
      layout: lay,
    };
    const plan = emitChunkedScan(spec);
    const conv = {
      batch: 1,
      length: ctx,
      channels: I,
      kernel: K,
      silu: true,
      stateLen: K,
      layout: lay,
    };
    const bufs = scanBuffers(spec, plan.scratch);
    const p = device.createBuffer({
      size: params.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(p, 0, params);
    bufs.params.destroy();
    bufs.params = p;
    bufs.x = randomBuffer(ctx * I, -1, 1, 8);
    bufs.conv_state = randomBuffer(I * K, 0, 0, 9);
    bufs.h_final = randomBuffer(I * N, 0, 0, 10);
    const prefill = [emitCausalConv1d(conv), emitConvStateUpdate(conv), ...plan.kernels];
    const tPrefill = await median(job(prefill, { ...bufs, y: bufs.u }), 1);
    const step = emitDecodeStep({
      batch: 1,
      channels: I,
      state: N,
      kernel: K,
      gate: true,
      layout: lay,
      bc: { stride: 2 * N, bOffset: 0, cOffset: N },
    });
    const dec = {
      x: randomBuffer(I, -1, 1, 11),
      delta: randomBuffer(I, 0.01, 0.1, 12),
      bc: randomBuffer(2 * N, -1, 1, 13),
      z: randomBuffer(I, -1, 1, 14),
      params: p,
      conv_state: bufs.conv_state,
      ssm_state: bufs.h_final,
      y: randomBuffer(I, 0, 0, 15),
    };
    const tStep = await median(job([step], dec), 5);
    rows.push(
      `decode I=${I} N=${N} k=${K} after a ${ctx}-token prefill (${tPrefill.toFixed(2)} ms): ` +
        `step ${tStep.toFixed(3)} ms, ${wgCount(step)} workgroups`,
    );
    for (const b of [...Object.values(bufs), ...Object.values(dec)]) b.destroy();
  }
}
console.log(rows.join("\n"));

// ------------------------------------------------------------------ Deno.bench

function benchJob(name: string, group: string, kernels: Kernel[], spec: ScanSpec): void {
  const scratch = kernels.length === 3 ? emitChunkedScan(spec).scratch : [];
  const bufs = scanBuffers(spec, scratch);
  const j = job(kernels, bufs);
  Deno.bench({ name, group, n: 5, warmup: 1, baseline: kernels.length === 1 }, async () => {
    await timeJob(j);
  });
}

for (const [I, L] of [[256, 8192], [1536, 8192]] as const) {
  const spec: ScanSpec = { batch: 1, length: L, channels: I, state: 16, gate: true };
  const group = `scan I=${I} L=${L}`;
  benchJob(`sequential I=${I} L=${L}`, group, [emitSequentialScan(spec)], spec);
  benchJob(`chunked I=${I} L=${L}`, group, emitChunkedScan(spec).kernels, spec);
}
