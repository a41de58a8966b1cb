/**
 * Selective-scan benchmarks through the compiler (GraphBuilder → compile → plan):
 * the compiler's own choice (`algorithm: "auto"`: one pass or chunked, per device),
 * the chunked three-pass scan and the one-thread-per-channel sequential scan, with
 * the workgroups each dispatches, next to a fused elementwise kernel that reads u,
 * Δ, z and writes y (the scan's bytes, less B/C's 2N/4I share) and a hand-written
 * vec4 kernel moving the same bytes; and the Mamba decode step at context 64 vs
 * 4096 (8 steps per submit).
 *
 * On load it prints a side-by-side table (all figures from this one process; each
 * row's kernels timed in turn, round after round, median; wall time to
 * `onSubmittedWorkDone`), then the `Deno.bench` cases time the headline shapes.
 *
 * Run: `deno bench -A bench/ssm_op_bench.ts` (SSM_BENCH_QUICK=1: L ≤ 2048 only).
 *
 * @module
 */
import { compile, type Executable, GraphBuilder, requestDevice } from "../mod.ts";
import { selectiveScan } from "../models/mamba.ts";
import { mambaMixer } from "../models/mamba.ts";
import { interleavedMedians } from "./_timing.ts";

const device = await requestDevice();
const quick = Deno.env.get("SSM_BENCH_QUICK") === "1";
const N = 16;

function rand(n: number, lo = -1, hi = 1): Float32Array<ArrayBuffer> {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * Math.random();
  return a;
}

function scanExe(
  I: number,
  L: number,
  algorithm: "auto" | "chunked" | "sequential",
  chunk = 0,
): Executable {
  const g = new GraphBuilder();
  const u = g.input("u", [1, L, I]);
  const [y] = selectiveScan(
    u,
    g.input("dt", [1, L, I]),
    g.param("A", [I, N]),
    g.input("B", [1, L, N]),
    g.input("C", [1, L, N]),
    g.param("D", [I]),
    {
      z: g.input("z", [1, L, I]),
      deltaBias: g.param("dtb", [I]),
      softplus: true,
      algorithm,
      chunk,
    },
  );
  g.output("y", y);
  const A = new Float32Array(I * N).map((_, j) => -((j % N) + 1));
  return compile(g.build(), device, { params: { A, D: rand(I), dtb: rand(I, -4, -2) } });
}

function trafficExe(I: number, L: number): Executable {
  const g = new GraphBuilder();
  const u = g.input("u", [1, L, I]);
  g.output("y", u.mul(g.input("dt", [1, L, I])).mul(g.input("z", [1, L, I]).silu()));
  return compile(g.build(), device);
}

type Run = () => Promise<void>;

/**
 * The same bytes through a hand-written vec4 WGSL kernel (y = u·Δ·silu(z), four
 * elements a thread): the compiler's fused elementwise kernel reads a scalar per
 * thread, and on llvmpipe, where each storage access is a per-lane loop, vec4
 * accesses move the same bytes in fewer loop trips. Shows how far the adapter's
 * bandwidth goes beyond the compiler's elementwise kernel.
 */
function vec4Elementwise(n: number): Run {
  const gpu = device.device;
  const bufs = [0, 1, 2, 3].map((i) => {
    const b = gpu.createBuffer({
      size: n * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    if (i < 3) gpu.queue.writeBuffer(b, 0, rand(n));
    return b;
  });
  const code = `
@group(0) @binding(0) var<storage, read> u: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> dt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> z: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * ${256 * 4096}u;
  if (i >= ${n / 4}u) { return; }
  let zz = z[i];
  let e = exp(-abs(zz));
  let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), zz >= vec4<f32>(0.0));
  y[i] = u[i] * dt[i] * (zz * sig);
}`;
  const pipeline = gpu.createComputePipeline({
    layout: "auto",
    compute: { module: gpu.createShaderModule({ code }), entryPoint: "main" },
  });
  const group = gpu.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const groups = Math.ceil(n / 4 / 256);
  return async () => {
    const enc = gpu.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(Math.min(groups, 4096), Math.ceil(groups / 4096));
    pass.end();
    gpu.queue.submit([enc.finish()]);
    await gpu.queue.onSubmittedWorkDone();
  };
}

/**
 * A prepared run that encodes `times` repetitions into one submit: a decode step
 * is a few ms of work, and one `onSubmittedWorkDone` costs ~10 ms on its own.
 */
async function prepared(
  exe: Executable,
  inputs: Record<string, Float32Array>,
  times = 1,
): Promise<Run> {
  const run = await exe.prepare(inputs);
  return async () => {
    const enc = device.device.createCommandEncoder();
    for (let i = 0; i < times; i++) run.encode(enc);
    device.device.queue.submit([enc.finish()]);
    await device.device.queue.onSubmittedWorkDone();
  };
}

function workgroups(exe: Executable, match: string): number {
  const k = exe.plan().kernels.find((k) => k.label.includes(match))!;
  return k.workgroups.reduce((a, b) => a * b, 1);
}

const uptime = new TextDecoder().decode((await new Deno.Command("uptime").output()).stdout).trim();
console.log(`# selective scan, B = 1, N = ${N}, f32 (uptime: ${uptime})`);
console.log(
  "| I | L | auto: compiler's choice | auto ms | chunked ms | sequential ms | chunked/seq | wgs chunked (pass 3) | wgs seq | elementwise ms | vec4 elementwise ms | auto GB/s | elementwise GB/s | auto / elementwise | auto / vec4 elementwise | chunked / elementwise |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
const headline: { name: string; run: Run }[] = [];
for (const I of [256, 1536]) {
  for (const L of quick ? [512, 2048] : [512, 2048, 8192]) {
    const inputs = {
      u: rand(L * I),
      dt: rand(L * I),
      B: rand(L * N),
      C: rand(L * N),
      z: rand(L * I),
    };
    const auto = scanExe(I, L, "auto");
    const ch = scanExe(I, L, "chunked");
    const sq = scanExe(I, L, "sequential");
    const tr = trafficExe(I, L);
    const runs = {
      auto: await prepared(auto, inputs),
      ch: await prepared(ch, inputs),
      sq: await prepared(sq, inputs),
      tr: await prepared(tr, { u: inputs.u, dt: inputs.dt, z: inputs.z }),
      tr4: vec4Elementwise(L * I),
    };
    const reps = L >= 8192 ? 3 : 5;
    const [tAuto, tCh, tSq, tTr, tTr4] = await interleavedMedians(
      [runs.auto, runs.ch, runs.sq, runs.tr, runs.tr4],
      reps,
    );
    const bytes = 4 * L * (4 * I + 2 * N);
    const gbs = (ms: number) => (bytes / ms / 1e6).toFixed(2);
    const pct = (a: number, b: number) => `${(100 * a / b).toFixed(0)}%`;
    const choice = auto.plan().kernels[0].label.match(/\[([^\]]+)\]/)?.[1] ?? "?";
    console.log(
      `| ${I} | ${L} | ${choice} | ${tAuto.toFixed(1)} | ${tCh.toFixed(1)} | ${tSq.toFixed(1)} | ${
        (tCh / tSq).toFixed(2)
      } | ${workgroups(ch, "chunk_output")} | ${workgroups(sq, "ssm_scan_sequential")} | ${
        tTr.toFixed(1)
      } | ${tTr4.toFixed(1)} | ${gbs(tAuto)} | ${gbs(tTr)} | ${pct(tTr, tAuto)} | ${
        pct(tTr4, tAuto)
      } | ${pct(tTr, tCh)} |`,
    );
    if ((I === 1536 || I === 256) && L === (quick ? 2048 : 8192)) {
      headline.push({ name: `scan I=${I} L=${L} auto (${choice})`, run: runs.auto });
      headline.push({ name: `scan I=${I} L=${L} chunked`, run: runs.ch });
      headline.push({ name: `scan I=${I} L=${L} sequential`, run: runs.sq });
      headline.push({ name: `elementwise I=${I} L=${L} (same bytes)`, run: runs.tr });
    } else {
      for (const exe of [auto, ch, sq, tr]) exe.dispose();
    }
  }
}

// Decode: one Mamba-130m-sized mixer token (H = 768, I = 1536, N = 16) after a
// prompt of 64 vs 4096 tokens. The states are fixed-size, so the step must not care.
const H = 768;
function mixerExe(mode: "prefill" | "decode"): Executable {
  const g = new GraphBuilder();
  const x = g.input("x", [1, mode === "decode" ? 1 : "L", H]);
  g.output("y", mambaMixer(g, x, { name: "m", d: H, mode }));
  const exe = compile(g.build(), device);
  const params: Record<string, Float32Array> = {};
  for (const [name, id] of exe.graph.params) {
    const n = (exe.graph.values[id].shape as number[]).reduce((a, b) => a * b, 1);
    params[name] = name.endsWith("A_log")
      ? new Float32Array(n).map((_, j) => Math.log(1 + (j % N)))
      : rand(n, -0.05, 0.05);
  }
  exe.setParams(params);
  return exe;
}
const pre = mixerExe("prefill");
const dec = mixerExe("decode");
const decodeTimes: Record<number, number> = {};
for (const ctx of [64, 4096]) {
  pre.resetStates();
  await pre.run({ x: rand(ctx * H) });
  for (const s of ["m.conv_state", "m.ssm_state"]) dec.writeState(s, (await pre.readState(s)).data);
  // 8 steps per submit (the state advances in place, O(1) whatever the context).
  const [t8] = await interleavedMedians([await prepared(dec, { x: rand(H) }, 8)], 10);
  decodeTimes[ctx] = t8 / 8;
}
console.log(
  `\n# decode step, mixer H = ${H}: context 64 ${decodeTimes[64].toFixed(2)} ms, context 4096 ${
    decodeTimes[4096].toFixed(2)
  } ms (ratio ${(decodeTimes[4096] / decodeTimes[64]).toFixed(3)})`,
);

for (const h of headline) {
  Deno.bench({
    name: h.name,
    group: h.name.split(" ").slice(1, 3).join(" "),
    n: 3,
    warmup: 1,
    fn: h.run,
  });
}
const decodeRun = await prepared(dec, { x: rand(H) }, 8);
Deno.bench({
  name: "8 mamba mixer decode steps (H = 768), one submit",
  n: 20,
  warmup: 2,
  fn: decodeRun,
});
