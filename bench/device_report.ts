/**
 * Device report (issue 14, item 5): what the adapter Kiln finds can do, and how
 * close Kiln's kernels come to it. For whatever adapter `requestDevice()` picks
 * it measures
 *
 * - a calibrated FMA peak: a kernel of 8 independent chains of dependent vec4
 *   FMAs per invocation over many invocations;
 * - copy bandwidth: a grid-stride vec4 copy of a large buffer (bytes read +
 *   written);
 * - Kiln's matmul (`x · Wᵀ`, the model's layout) at 1024, 2048, 4096 in f32 and,
 *   where the adapter has `shader-f16`, f16; the decode GEMV at 4096 × 14336, in
 *   f32, f16 and the block formats Q8_0, Q4_K, Q6_K and MXFP4 (bytes of blocks);
 *   fused attention prefill and decode; one MoE layer (Mixtral routing, widths
 *   scaled to fit); the selective scan; and decode tok/s of a ~1B-parameter random
 *   Mixtral-style model loaded with `loadModel` —
 *
 * each as a rate and as a fraction of the calibrated peak it is bound by (FLOP/s
 * of the FMA peak for compute-bound work, bytes/s of the copy bandwidth for
 * memory-bound work). Kernel times come from timestamp queries where the adapter
 * has them (the minimum over a few runs), else from wall time.
 *
 * ```sh
 * deno task device-report                       # full sizes: for a GPU, under 8 minutes
 * deno task device-report --quick               # small sizes and model: a CPU rasteriser
 * deno task device-report --quick --json r.json # also the results as JSON
 * deno task device-report --quick --gpu-kernels  # the gpu target's kernels on any adapter
 * ```
 *
 * @module
 */

import { loadModel } from "../app/model/mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { GraphBuilder } from "../compiler/builder.ts";
import { countParams } from "../compiler/params.ts";
import type { TensorData } from "../core/host.ts";
import { moe } from "../models/moe.ts";
import { selectiveScan } from "../models/mamba.ts";
import { targetOf } from "../ops/targets.ts";
import { type GpuDevice, requestDevice } from "../runtime/device.ts";
import { compile, type Executable } from "../runtime/executable.ts";
import { mulberry32 } from "../core/random.ts";
import { quantWords } from "../ops/quant/mod.ts";
import { testBlocks } from "../tests/fixtures/quant_blocks.ts";

const args = Deno.args;
const quick = args.includes("--quick");
const jsonAt = args.indexOf("--json");
const jsonPath = jsonAt >= 0 ? args[jsonAt + 1] : undefined;
if (jsonAt >= 0 && !jsonPath) throw new Error("--json needs a file name");
const REPS = quick ? 3 : 5;

/** One line of the report. */
interface Row {
  name: string;
  /** Rate in `unit`. */
  value: number;
  unit: "GFLOP/s" | "GB/s" | "tok/s";
  /** Fraction of the peak it is bound by, and which peak. */
  fraction?: number;
  of?: "FMA peak" | "copy bandwidth";
  /** Milliseconds per run (GPU time when timed with timestamp queries). */
  ms: number;
  note?: string;
}

// `--gpu-kernels`: the gpu target's kernels whatever the adapter (on a CPU rasteriser too).
const forceGpu = args.includes("--gpu-kernels");
const dev: GpuDevice = await requestDevice(forceGpu ? { limits: { cpuCores: 0 } } : {});
const gpu = dev.device;
const rows: Row[] = [];
const peaks = { fmaGflops: 0, copyGBs: 0 };
const started = performance.now();

function log(msg: string): void {
  console.error(`[${((performance.now() - started) / 1000).toFixed(0)} s] ${msg}`);
}

function random(n: number, seed: number, scale = 1, half = false): Float32Array | Float16Array {
  const out = half ? new Float16Array(n) : new Float32Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = ((a / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** Milliseconds of one dispatch of a raw WGSL kernel: timestamp queries, else wall time. */
async function timeRaw(
  code: string,
  buffers: GPUBuffer[],
  groups: [number, number, number],
): Promise<number> {
  const module = gpu.createShaderModule({ code });
  const pipeline = await gpu.createComputePipelineAsync({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const bind = gpu.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const query = dev.timestamps ? gpu.createQuerySet({ type: "timestamp", count: 2 }) : undefined;
  const resolve = query &&
    gpu.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = query &&
    gpu.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const times: number[] = [];
  for (let r = 0; r <= REPS; r++) {
    const enc = gpu.createCommandEncoder();
    const pass = enc.beginComputePass(
      query
        ? {
          timestampWrites: {
            querySet: query,
            beginningOfPassWriteIndex: 0,
            endOfPassWriteIndex: 1,
          },
        }
        : {},
    );
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(...groups);
    pass.end();
    if (query) {
      enc.resolveQuerySet(query, 0, 2, resolve!, 0);
      enc.copyBufferToBuffer(resolve!, 0, read!, 0, 16);
    }
    const t0 = performance.now();
    gpu.queue.submit([enc.finish()]);
    await gpu.queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    let ms = wall;
    if (read) {
      await read.mapAsync(GPUMapMode.READ);
      const [a, b] = new BigUint64Array(read.getMappedRange());
      ms = Number(b - a) / 1e6;
      read.unmap();
    }
    if (r > 0) times.push(ms); // the first run warms up
  }
  query?.destroy();
  resolve?.destroy();
  read?.destroy();
  return Math.min(...times);
}

function storage(bytes: number): GPUBuffer {
  return gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
}

async function fmaPeak(): Promise<void> {
  const groups = quick ? 16 : 8192, wg = 256, iters = quick ? 1024 : 4096, chains = 8;
  const threads = groups * wg;
  const init = Array.from(
    { length: chains },
    (_, c) => `  var a${c} = vec4<f32>(f32(i) * 1e-9 + ${c + 1}.0 * 0.01);`,
  ).join("\n");
  const step = Array.from({ length: chains }, (_, c) => `    a${c} = fma(a${c}, m, d);`).join("\n");
  const sum = Array.from({ length: chains }, (_, c) => `a${c}`).join(" + ");
  const code = `
@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let m = vec4<f32>(0.99990, 0.99991, 0.99992, 0.99993);
  let d = vec4<f32>(1e-4);
${init}
  for (var k = 0u; k < ${iters}u; k++) {
${step}
  }
  out[i] = ${sum};
}`;
  const out = storage(threads * 16);
  const ms = await timeRaw(code, [out], [groups, 1, 1]);
  out.destroy();
  const flops = threads * iters * chains * 4 * 2;
  peaks.fmaGflops = flops / ms / 1e6;
  rows.push({
    name: `FMA peak (${threads} invocations × ${iters}×${chains} vec4 FMA)`,
    value: peaks.fmaGflops,
    unit: "GFLOP/s",
    fraction: 1,
    of: "FMA peak",
    ms,
  });
}

async function copyBandwidth(): Promise<void> {
  const most = Math.min(dev.caps.maxBindingSize, gpu.limits.maxBufferSize);
  const bytes = Math.min(quick ? 32 : 512, Math.floor(most / 2 ** 20)) * 2 ** 20;
  const n4 = bytes / 16, groups = 1024, wg = 256, stride = groups * wg;
  const code = `
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(${wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  for (var i = gid.x; i < ${n4}u; i += ${stride}u) { dst[i] = src[i]; }
}`;
  const src = storage(bytes), dst = storage(bytes);
  const ms = await timeRaw(code, [src, dst], [groups, 1, 1]);
  src.destroy();
  dst.destroy();
  peaks.copyGBs = (2 * bytes) / ms / 1e6;
  rows.push({
    name: `copy ${bytes / 2 ** 20} MiB (read + write)`,
    value: peaks.copyGBs,
    unit: "GB/s",
    fraction: 1,
    of: "copy bandwidth",
    ms,
  });
}

/** GPU milliseconds of one run of `exe` (kernels summed), the minimum over a few runs. */
async function kilnMs(exe: Executable, inputs: Record<string, TensorData>): Promise<number> {
  await exe.run(inputs); // compiles the pipelines
  const times: number[] = [];
  for (let r = 0; r < REPS; r++) {
    if (dev.timestamps) {
      const p = await exe.profile(inputs);
      times.push(p.kernels.reduce((a, k) => a + k.ns, 0) / 1e6);
    } else {
      const t0 = performance.now();
      await exe.run(inputs);
      times.push(performance.now() - t0);
    }
  }
  return Math.min(...times);
}

function compute(name: string, flops: number, ms: number, note?: string): void {
  const g = flops / ms / 1e6;
  rows.push({
    name,
    value: g,
    unit: "GFLOP/s",
    fraction: g / peaks.fmaGflops,
    of: "FMA peak",
    ms,
    note,
  });
}

function memory(name: string, bytes: number, ms: number, note?: string): void {
  const g = bytes / ms / 1e6;
  rows.push({
    name,
    value: g,
    unit: "GB/s",
    fraction: g / peaks.copyGBs,
    of: "copy bandwidth",
    ms,
    note,
  });
}

async function matmuls(): Promise<void> {
  const dtypes = dev.caps.f16 ? ["f32", "f16"] as const : ["f32"] as const;
  for (const dtype of dtypes) {
    for (const n of quick ? [256, 512, 1024] : [1024, 2048, 4096]) {
      const g = new GraphBuilder();
      g.output(
        "y",
        g.input("x", [n, n], dtype).matmul(g.param("w", [n, n], dtype), { transB: true }),
      );
      const half = dtype === "f16";
      const exe = compile(g.build(), dev, { params: { w: random(n * n, 2, 0.1, half) } });
      const ms = await kilnMs(exe, { x: random(n * n, 1, 1, half) });
      const label = exe.lastPlan!.kernels.map((k) => k.label).join(", ");
      compute(`matmul ${n}³ ${dtype}`, 2 * n ** 3, ms, label);
      exe.dispose();
    }
  }
  const [N, K] = quick ? [3584, 1024] : [14336, 4096];
  for (const dtype of dtypes) {
    const half = dtype === "f16";
    const g = new GraphBuilder();
    g.output(
      "y",
      g.input("x", [1, K], dtype).matmul(g.param("w", [N, K], dtype), { transB: true }),
    );
    const exe = compile(g.build(), dev, { params: { w: random(N * K, 3, 0.05, half) } });
    const ms = await kilnMs(exe, { x: random(K, 4, 1, half) });
    memory(
      `GEMV 1×${K} · [${N}, ${K}]ᵀ ${dtype}`,
      N * K * (half ? 2 : 4),
      ms,
      exe.lastPlan!.kernels[0].label,
    );
    exe.dispose();
  }
}

/** The decode GEMV against block-quantized weights: bytes of blocks read per call. */
async function quantGemvs(): Promise<void> {
  const [N, K] = quick ? [3584, 1024] : [14336, 4096];
  for (const format of ["q8_0", "q4_k", "q6_k", "mxfp4"] as const) {
    const bytes = testBlocks(format, random(N * K, 5, 0.05) as Float32Array, mulberry32(6));
    const words = new Uint32Array(quantWords(format, N, K));
    new Uint8Array(words.buffer).set(bytes);
    const g = new GraphBuilder();
    const [y] = g.apply("qmatmul", [g.input("x", [1, K]), g.param("w", [words.length], "u32")], {
      format,
      rows: N,
      cols: K,
    });
    g.output("y", y);
    const exe = compile(g.build(), dev, { params: { w: words } });
    const ms = await kilnMs(exe, { x: random(K, 4, 1) });
    memory(
      `GEMV 1×${K} · [${N}, ${K}]ᵀ ${format}`,
      bytes.length,
      ms,
      exe.lastPlan!.kernels[0].label,
    );
    exe.dispose();
  }
}

async function attention(): Promise<void> {
  const [Hq, Hkv, D] = quick ? [8, 2, 64] : [32, 8, 128];
  for (const [T, S] of quick ? [[256, 256], [1, 512]] : [[2048, 2048], [1, 4096]]) {
    const g = new GraphBuilder();
    const q = g.input("q", [T, Hq, D]);
    const k = g.input("k", [S, Hkv, D]);
    const v = g.input("v", [S, Hkv, D]);
    const pos = g.input("pos", [1], "u32");
    g.output("o", g.attention(q, k, v, pos, { causal: true }));
    const exe = compile(g.build(), dev);
    const p = S - T;
    const ms = await kilnMs(exe, {
      q: random(T * Hq * D, 1),
      k: random(S * Hkv * D, 2),
      v: random(S * Hkv * D, 3),
      pos: new Uint32Array([p]),
    });
    const shape = `Hq ${Hq}, Hkv ${Hkv}, D ${D}`;
    if (T > 1) {
      const pairs = (T * (T + 1)) / 2 * Hq;
      compute(`attention prefill T ${T} (${shape}, causal)`, 4 * D * pairs, ms);
    } else {
      memory(`attention decode ctx ${S} (${shape})`, 2 * S * Hkv * D * 4, ms, "K and V read once");
    }
    exe.dispose();
  }
}

async function moeLayer(): Promise<void> {
  const [d, ff, E, k] = quick ? [256, 512, 8, 2] : [2048, 7168, 8, 2];
  const params = {
    "m.router": random(E * d, 5),
    "m.w1": random(E * ff * d, 6, 1 / Math.sqrt(d)),
    "m.w3": random(E * ff * d, 7, 1 / Math.sqrt(d)),
    "m.w2": random(E * d * ff, 8, 1 / Math.sqrt(ff)),
  };
  for (const T of quick ? [64, 1] : [512, 1]) {
    const g = new GraphBuilder();
    const x = g.input("x", [T, d]);
    g.output("y", moe(g, x, { name: "m", experts: E, topK: k, ff }).y);
    const exe = compile(g.build(), dev, { params });
    const ms = await kilnMs(exe, { x: random(T * d, 9) });
    const name = `MoE layer T ${T} (d ${d}, ff ${ff}, E ${E}, k ${k})`;
    if (T > 1) compute(name, T * k * 3 * 2 * d * ff, ms, `${exe.lastPlan!.kernels.length} kernels`);
    else memory(name, k * 3 * d * ff * 4, ms, "the chosen experts' weights");
    exe.dispose();
  }
}

async function scan(): Promise<void> {
  const [L, I, N] = quick ? [256, 256, 16] : [2048, 4096, 16];
  const g = new GraphBuilder();
  const u = g.input("u", [1, L, I]);
  const delta = g.input("delta", [1, L, I]);
  const B = g.input("B", [1, L, N]);
  const C = g.input("C", [1, L, N]);
  g.output("y", selectiveScan(u, delta, g.param("A", [I, N]), B, C, g.param("D", [I]))[0]);
  const A = random(I * N, 10);
  for (let i = 0; i < A.length; i++) A[i] = -0.1 - Math.abs(A[i]);
  const exe = compile(g.build(), dev, { params: { A, D: random(I, 11) } });
  const delta0 = random(L * I, 12, 0.1);
  for (let i = 0; i < delta0.length; i++) delta0[i] = Math.abs(delta0[i]) + 0.001;
  const ms = await kilnMs(exe, {
    u: random(L * I, 13),
    delta: delta0,
    B: random(L * N, 14),
    C: random(L * N, 15),
  });
  const choice = exe.lastPlan!.kernels.find((k) => k.choice)?.choice?.algorithm;
  memory(`selective scan L ${L}, I ${I}, N ${N}`, (3 * L * I + 2 * L * N) * 4, ms, choice);
  exe.dispose();
}

async function modelDecode(): Promise<void> {
  const config = {
    architectures: ["MixtralForCausalLM"],
    model_type: "mixtral",
    vocab_size: quick ? 2048 : 32000,
    hidden_size: quick ? 256 : 1024,
    intermediate_size: quick ? 512 : 4608,
    num_hidden_layers: quick ? 4 : 8,
    num_attention_heads: quick ? 8 : 16,
    num_key_value_heads: quick ? 2 : 4,
    num_local_experts: quick ? 4 : 8,
    num_experts_per_tok: 2,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 1e6,
    tie_word_embeddings: false,
  };
  const dir = await Deno.makeTempDir({ prefix: "kiln_device_report_" });
  try {
    log("writing the random model");
    const ckpt = await writeRandomCheckpoint(dir, config);
    const model = await loadModel(dir, { device: dev, quiet: true, maxSeq: 256 });
    try {
      const active = countParams(model.decode.graph).activePerToken;
      const prompt = Array.from({ length: 16 }, (_, i) => (i * 7919 + 1) % config.vocab_size);
      const run = async (maxTokens: number) => {
        let n = 0;
        for await (const _ of model.generateIds(prompt, { maxTokens, readEvery: 16 })) n++;
        return (n - 1) / (model.lastStats!.decodeMs / 1000);
      };
      await run(4); // compiles the pipelines
      const tokens = quick ? 17 : 65;
      let best = 0;
      for (let r = 0; r < 2; r++) best = Math.max(best, await run(tokens));
      const bw = (best * active * 4) / 1e9;
      rows.push({
        name: `Mixtral-style decode (${(ckpt.parameters / 1e6).toFixed(0)}M params, ${
          (active / 1e6).toFixed(0)
        }M active, f32)`,
        value: best,
        unit: "tok/s",
        fraction: bw / peaks.copyGBs,
        of: "copy bandwidth",
        ms: 1000 / best,
        note: `${bw.toFixed(2)} GB/s of active weights; wall time, ids read every 16`,
      });
    } finally {
      model.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const steps: [string, () => Promise<void>][] = [
  ["FMA peak", fmaPeak],
  ["copy bandwidth", copyBandwidth],
  ["matmul and GEMV", matmuls],
  ["quantized GEMV", quantGemvs],
  ["attention", attention],
  ["MoE layer", moeLayer],
  ["selective scan", scan],
  ["model decode", modelDecode],
];
log(
  `${dev.adapterName} (target ${
    targetOf(dev.caps)
  }, f16 ${dev.caps.f16}, subgroups ${dev.caps.subgroups}, timestamps ${dev.timestamps})${
    quick ? ", quick" : ""
  }`,
);
/** Steps that failed (a limit the adapter lacks, out of memory): the report goes on without them. */
const failures: { step: string; error: string }[] = [];
for (const [name, step] of steps) {
  log(name);
  try {
    await step();
  } catch (e) {
    const error = e instanceof Error ? e.message.split("\n")[0] : String(e);
    failures.push({ step: name, error });
    log(`${name} failed: ${error}`);
  }
}

const fmt = (x: number) => x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
const table = [
  `Device report: ${dev.adapterName} — target ${
    targetOf(dev.caps)
  }; f16 ${dev.caps.f16}; subgroups ${dev.caps.subgroups}; times from ${
    dev.timestamps ? "timestamp queries" : "wall clock"
  }${quick ? "; --quick sizes" : ""}`,
  "",
  "| measurement | rate | ms | of peak | notes |",
  "| --- | ---: | ---: | ---: | --- |",
  ...rows.map((r) =>
    `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${fmt(r.ms)} | ${
      r.fraction === undefined ? "" : `${(100 * r.fraction).toFixed(1)} % ${r.of}`
    } | ${r.note ?? ""} |`
  ),
  ...failures.map((f) => `| ${f.step} | failed | | | ${f.error} |`),
  "",
  `Total ${((performance.now() - started) / 1000).toFixed(0)} s.`,
].join("\n");
console.log(table);
if (jsonPath) {
  const report = {
    adapter: dev.adapterName,
    target: targetOf(dev.caps),
    caps: dev.caps,
    timestamps: dev.timestamps,
    quick,
    peaks,
    rows,
    failures,
    seconds: (performance.now() - started) / 1000,
  };
  await Deno.writeTextFile(jsonPath, JSON.stringify(report, null, 2) + "\n");
  log(`wrote ${jsonPath}`);
}
dev.destroy();
