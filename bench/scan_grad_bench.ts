/**
 * The selective scan's backward (`selective_scan_grad`: the checkpoint walk,
 * the reverse walk segment by segment recomputing each block of steps into
 * registers, the sums of the dB/dC partials) next to its forward, side by
 * side in one process: the forward as the compiler picks it (`auto`), the
 * backward at its default chunk and at a few others; then the pair a training
 * step runs (the `scanCheckpoints` pass): the forward saving the chunk states
 * and the backward starting from them, without its checkpoint walk. Gate, Δ
 * bias and softplus on, as in Mamba; f32.
 *
 * Wall time (interleaved medians), the process's CPU time per run (Linux
 * `/proc/self/stat`) and the kernels' GPU time (timestamps), all side by side
 * in one run.
 *
 * Run: `deno run -A bench/scan_grad_bench.ts` (env SCAN_GRAD_L, SCAN_GRAD_I,
 * SCAN_GRAD_CHUNKS="8,16,32" to change the size or the chunks tried,
 * SCAN_GRAD_EVERY for the saved states' spacing).
 *
 * @module
 */
import { compile, type Executable, GraphBuilder, requestDevice } from "../mod.ts";
import { selectiveScan } from "../models/mamba.ts";
import { checkpointShape, scanAttrs } from "../ops/ssm/attrs.ts";
import { gradChunk } from "../ops/ssm/scan_grad.ts";
import { interleavedMedians } from "./_timing.ts";

const device = await requestDevice();
const B = Number(Deno.env.get("SCAN_GRAD_B") ?? 1), N = 16;
const L = Number(Deno.env.get("SCAN_GRAD_L") ?? 1024);
const I = Number(Deno.env.get("SCAN_GRAD_I") ?? 512);
const chunks = (Deno.env.get("SCAN_GRAD_CHUNKS") ?? "0,16,64").split(",").map(Number);

function rand(n: number, lo = -1, hi = 1): Float32Array<ArrayBuffer> {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * Math.random();
  return a;
}

const A = new Float32Array(I * N).map((_, j) => -((j % N) + 1));
const params = { A, D: rand(I), dtb: rand(I, -4, -2) };
const inputs = {
  u: rand(B * L * I),
  dt: rand(B * L * I),
  B: rand(B * L * N),
  C: rand(B * L * N),
  z: rand(B * L * I),
  dy: rand(B * L * I),
};

function operands(g: GraphBuilder) {
  return [
    g.input("u", [B, L, I]),
    g.input("dt", [B, L, I]),
    g.param("A", [I, N]),
    g.input("B", [B, L, N]),
    g.input("C", [B, L, N]),
    g.param("D", [I]),
    g.input("z", [B, L, I]),
    g.param("dtb", [I]),
  ];
}

function forward(): Executable {
  const g = new GraphBuilder();
  const [u, dt, a, b, c, d, z, dtb] = operands(g);
  const [y] = selectiveScan(u, dt, a, b, c, d, { z, deltaBias: dtb, softplus: true });
  g.output("y", y);
  return compile(g.build(), device, { params });
}

const scan = scanAttrs({ gate: true, deltaBias: true, softplus: true });
const every = Number(Deno.env.get("SCAN_GRAD_EVERY") ?? gradChunk(L, 0));

/** The forward as a training step runs it: saving the backward's chunk states. */
function forwardSaving(): Executable {
  const g = new GraphBuilder();
  const [y, saved] = g.apply("selective_scan", operands(g), { ...scan, checkpoints: every });
  g.output("y", y);
  g.output("saved", saved);
  return compile(g.build(), device, { params });
}

/** The backward walking L for its checkpoints, or (`saved`) starting from the forward's. */
function backward(chunk: number, saved = false): Executable {
  const g = new GraphBuilder();
  const ins = [...operands(g), g.input("dy", [B, L, I])];
  if (saved) ins.push(g.input("saved", checkpointShape(B, L, I, N, every)));
  const attrs = {
    ...scanAttrs({ gate: true, deltaBias: true, softplus: true, chunk }),
    finalGrad: false,
    ...(saved ? { checkpoints: every } : {}),
  };
  const names = ["du", "ddt", "dA", "dB", "dC", "dD", "dz", "ddtb"];
  g.apply("selective_scan_grad", ins, attrs).forEach((t, j) => g.output(names[j], t));
  return compile(g.build(), device, { params });
}

type Run = () => Promise<void>;

async function prepared(exe: Executable, feed: Record<string, Float32Array>): Promise<Run> {
  const run = await exe.prepare(feed);
  return async () => {
    const enc = device.device.createCommandEncoder();
    run.encode(enc);
    device.device.queue.submit([enc.finish()]);
    await device.device.queue.onSubmittedWorkDone();
  };
}

const fwd = forward();
const { dy: _, ...fwdInputs } = inputs;
const runs: Run[] = [await prepared(fwd, fwdInputs)];
const bwds = chunks.map((c) => backward(c));
for (const b of bwds) runs.push(await prepared(b, inputs));
// The training pair: the forward saving its chunk states, the backward from them.
const fwdSaving = forwardSaving();
const saved = (await fwdSaving.run(fwdInputs)).saved.data as Float32Array;
const bwdSaved = backward(0, true);
runs.push(await prepared(fwdSaving, fwdInputs), await prepared(bwdSaved, { ...inputs, saved }));
const ms = await interleavedMedians(runs, 9);
// Process CPU time per run (both lavapipe threads): steadier than wall time on a
// shared host, where other processes take the cores for tens of ms at a time.
const cpuMs = (): number => {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // clock ticks of 10 ms
};
const cpu = runs.map(() => 0);
const cpuReps = 12;
for (let r = 0; r < cpuReps; r++) {
  for (const [i, run] of runs.entries()) {
    const c0 = cpuMs();
    await run();
    cpu[i] += (cpuMs() - c0) / cpuReps;
  }
}
// GPU time of each run's kernels (timestamps around every kernel, median of 7
// runs): the passes' own time, without the ~10 ms host round trip that the
// wall time of each lone submission carries on both sides.
const feeds = [fwdInputs, ...bwds.map(() => inputs), fwdInputs, { ...inputs, saved }];
const exes = [fwd, ...bwds, fwdSaving, bwdSaved];
const gpuMs: number[] = [];
for (const [i, exe] of exes.entries()) {
  const sums: number[] = [];
  for (let r = 0; r < 7; r++) {
    const p = await exe.profile(feeds[i]);
    sums.push(p.kernels.reduce((a, k) => a + k.ns / 1e6, 0));
  }
  gpuMs.push(sums.sort((a, b) => a - b)[3]);
}
const tokens = B * L;
const kps = (t: number) => (tokens / t).toFixed(1);
const chunkOf = (exe: Executable) =>
  exe.plan().kernels.find((k) => k.label.includes("ssm_scan_grad_reverse"))!.label.match(
    /_c(\d+)$/,
  )![1];
console.log(`# selective scan forward vs backward on ${device.adapterName}`);
console.log(`# B = ${B}, L = ${L}, I = ${I}, N = ${N}, f32, gate + Δ bias + softplus`);
console.log(
  "| pass | wall ms (median) | k tokens/s | backward / forward throughput | CPU ms | backward / forward by CPU time | kernels' GPU ms | backward / forward by GPU time |",
);
console.log("|---|---|---|---|---|---|---|---|");
const g = (j: number) => `${gpuMs[j].toFixed(1)}`;
console.log(
  `| forward (auto) | ${ms[0].toFixed(1)} | ${kps(ms[0])} | | ${cpu[0].toFixed(0)} | | ${g(0)} | |`,
);
bwds.forEach((b, j) => {
  const t = ms[j + 1];
  console.log(
    `| backward, chunk ${chunkOf(b)}${chunks[j] === 0 ? " (default)" : ""} | ${t.toFixed(1)} | ${
      kps(t)
    } | ${(ms[0] / t).toFixed(2)}× | ${cpu[j + 1].toFixed(0)} | ${
      (cpu[0] / cpu[j + 1]).toFixed(2)
    }× | ${g(j + 1)} | ${(gpuMs[0] / gpuMs[j + 1]).toFixed(2)}× |`,
  );
});
const [f, b] = [runs.length - 2, runs.length - 1];
console.log(
  `| forward saving states every ${every} | ${ms[f].toFixed(1)} | ${kps(ms[f])} | | ${
    cpu[f].toFixed(0)
  } | | ${g(f)} | |`,
);
console.log(
  `| backward from the saved states | ${ms[b].toFixed(1)} | ${kps(ms[b])} | ${
    (ms[f] / ms[b]).toFixed(2)
  }× | ${cpu[b].toFixed(0)} | ${(cpu[f] / cpu[b]).toFixed(2)}× | ${g(b)} | ${
    (gpuMs[f] / gpuMs[b]).toFixed(2)
  }× |`,
);
for (const e of [fwd, ...bwds, fwdSaving, bwdSaved]) e.dispose();
device.destroy();
