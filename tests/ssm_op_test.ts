/**
 * Mamba ops through the public path (GraphBuilder → compile → run) against the
 * CPU reference device, the mixer against an independent float64 transcription
 * of HF's `MambaMixer.slow_forward`, and the plan-level guarantees (the scan
 * writes only y and the final state; decode updates states in place).
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile, type Executable } from "../runtime/executable.ts";
import type { DType, HostArray } from "../core/dtype.ts";
import { cpuDevice, type GpuDevice, requestDevice } from "../runtime/device.ts";
import {
  conv1dCausal,
  conv1dStep,
  convStateUpdate,
  mambaBlock,
  mambaMixer,
  type ScanOptions,
  selectiveScan,
  ssmStep,
} from "../models/mamba.ts";
import { assertClose, gpu, randomData, rng } from "./_util.ts";

interface ScanCase {
  B: number;
  L: number;
  I: number;
  N: number;
  act?: DType;
  gate?: boolean;
  bias?: boolean;
  softplus?: boolean;
  h0?: boolean;
  final?: boolean;
  algorithm?: "auto" | "chunked" | "sequential";
  chunk?: number;
  /** Range of raw delta values. */
  dt?: [number, number];
  /** u = silu(input) and y = silu(scan): fused into the scan kernel's loads and stores. */
  fused?: boolean;
}

function scanGraph(c: ScanCase) {
  const g = new GraphBuilder();
  const act = c.act ?? "f32";
  const uIn = g.input("u", [c.B, "L", c.I], act);
  const u = c.fused ? uIn.silu() : uIn;
  const dt = g.input("dt", [c.B, "L", c.I], act);
  const A = g.param("A", [c.I, c.N]);
  const Bm = g.input("Bm", [c.B, "L", c.N], act);
  const Cm = g.input("Cm", [c.B, "L", c.N], act);
  const D = g.param("D", [c.I]);
  const opts: ScanOptions = {
    softplus: c.softplus ?? true,
    finalState: c.final,
    algorithm: c.algorithm,
    chunk: c.chunk,
  };
  if (c.gate) opts.z = g.input("z", [c.B, "L", c.I], act);
  if (c.bias) opts.deltaBias = g.param("dtb", [c.I]);
  if (c.h0) opts.initialState = g.input("h0", [c.B, c.I, c.N]);
  const outs = selectiveScan(u, dt, A, Bm, Cm, D, opts);
  g.output("y", c.fused ? outs[0].silu() : outs[0]);
  if (c.final) g.output("h", outs[1]);
  return g.build();
}

function scanData(c: ScanCase, seed: number) {
  const act = c.act ?? "f32";
  const n = c.B * c.L * c.I, nb = c.B * c.L * c.N;
  const [lo, hi] = c.dt ?? [-3, 1];
  const inputs: Record<string, HostArray> = {
    u: randomData(n, act, seed),
    dt: randomData(n, act, seed + 1, lo, hi),
    Bm: randomData(nb, act, seed + 2, -1, 1),
    Cm: randomData(nb, act, seed + 3, -1, 1),
  };
  if (c.gate) inputs.z = randomData(n, act, seed + 4);
  if (c.h0) inputs.h0 = randomData(c.B * c.I * c.N, "f32", seed + 5, -1, 1);
  // A = −exp(A_log) with HF's S4D-real init spread: −1 … −N, jittered.
  const r = rng(seed + 6);
  const A = new Float32Array(c.I * c.N).map((_, j) => -((j % c.N) + 1) * (0.5 + r()));
  const params: Record<string, HostArray> = { A, D: randomData(c.I, "f32", seed + 7, -1, 1) };
  if (c.bias) params.dtb = randomData(c.I, "f32", seed + 8, -1, 0.5);
  return { inputs, params };
}

async function checkScan(
  c: ScanCase,
  rtol: number,
  atol: number,
  seed = 1,
  device?: GpuDevice,
) {
  const graph = scanGraph(c);
  const { inputs, params } = scanData(c, seed);
  const exe = compile(graph, device ?? await gpu(), { params });
  const ref = compile(graph, cpuDevice(), { params });
  try {
    const got = await exe.run(inputs);
    const want = await ref.run(inputs);
    const what = JSON.stringify(c);
    for (const k of Object.keys(want)) {
      for (const v of got[k].data) assert.ok(Number.isFinite(v), `${what}: ${k} has ${v}`);
      assertClose(got[k].data, want[k].data, rtol, atol, `${what} ${k}`);
    }
    return exe.plan({ L: c.L });
  } finally {
    exe.dispose();
  }
}

Deno.test("selective_scan matches the sequential reference at chunk edges", async () => {
  for (const L of [1, 63, 64, 65]) {
    await checkScan(
      { B: 1, L, I: 40, N: 16, chunk: 64, gate: true, bias: true, final: true },
      1e-4,
      1e-4,
    );
  }
  // Eight channels per thread (a short walk) with a ragged last block; B > 1; initial state.
  await checkScan(
    { B: 2, L: 130, I: 300, N: 16, chunk: 64, gate: true, bias: true, h0: true, final: true },
    1e-4,
    1e-4,
  );
  // One long chunk: the row loads are pipelined a step ahead (8 channels per thread),
  // and a walk past 512 steps (16 channels per thread).
  for (const L of [300, 600]) {
    await checkScan(
      { B: 2, L, I: 300, N: 16, chunk: L, gate: true, h0: true, final: true },
      1e-4,
      1e-4,
    );
  }
  // A larger state takes fewer channels per thread (6 at N = 40), ragged again.
  await checkScan({ B: 1, L: 70, I: 150, N: 40, chunk: 32, gate: true, final: true }, 1e-4, 1e-4);
  // N not a multiple of 4 takes scalar B/C loads; no gate, no softplus, no final state.
  await checkScan(
    { B: 2, L: 97, I: 24, N: 6, chunk: 32, softplus: false, dt: [0, 0.5] },
    1e-4,
    1e-4,
  );
});

Deno.test("selective_scan reads vec4 channel groups, through fused loads and stores and in f16", async () => {
  const scanCode = (plan: { kernels: readonly { label: string; code: string }[] }) =>
    plan.kernels.filter((k) => k.label.includes("ssm_scan")).map((k) => k.code).join("\n");
  // f16 activations, ragged last block (132 = 128 + one group), both chunked passes.
  let plan = await checkScan(
    {
      B: 2,
      L: 70,
      I: 132,
      N: 16,
      act: "f16",
      chunk: 32,
      gate: true,
      bias: true,
      h0: true,
      final: true,
    },
    2e-2,
    2e-2,
  );
  assert.match(scanCode(plan), /vec4<f32>\(in0\[/);
  // silu(u) read through in0_load and silu(y) written through out0_store, chunked and one pass.
  for (const chunk of [64, 300]) {
    plan = await checkScan(
      { B: 1, L: 300, I: 260, N: 16, chunk, gate: true, bias: true, final: true, fused: true },
      1e-4,
      1e-4,
    );
    const code = scanCode(plan);
    assert.match(code, /in0_load\(/);
    assert.match(code, /out0_store\(/);
  }
});

Deno.test("the one-pass scan reads L at run time: one kernel serves every length of a walk class", async () => {
  const c: ScanCase = { B: 2, L: 0, I: 260, N: 16, gate: true, bias: true, h0: true, final: true };
  const graph = scanGraph({ ...c, algorithm: "chunked", chunk: 1 << 20 });
  const exe = compile(graph, await gpu(), { params: scanData({ ...c, L: 1 }, 3).params });
  const ref = compile(graph, cpuDevice(), { params: scanData({ ...c, L: 1 }, 3).params });
  try {
    const scanOf = (L: number) =>
      exe.plan({ L }).kernels.find((k) => k.label.includes("ssm_scan_sequential"))!.code;
    // Three classes on CPU adapters (walks of ≤ 256 and ≤ 512 steps keep fewer
    // channels a thread, which LLVM compiles faster), one on GPUs.
    assert.equal(scanOf(300), scanOf(301));
    assert.equal(scanOf(300), scanOf(512));
    assert.equal(scanOf(9), scanOf(256));
    assert.equal(scanOf(513), scanOf(4099));
    assert.ok(new Set([9, 256, 300, 512, 513, 1000, 4099].map(scanOf)).size <= 3);
    // The same pipeline runs every length of a class, each against the reference.
    for (const L of [301, 300, 9, 256, 600, 513]) {
      const { inputs } = scanData({ ...c, L }, 3);
      const [got, want] = [await exe.run(inputs), await ref.run(inputs)];
      for (const k of ["y", "h"]) assertClose(got[k].data, want[k].data, 1e-4, 1e-4, `L ${L} ${k}`);
    }
  } finally {
    exe.dispose();
  }
});

Deno.test("the compiler picks one pass or the chunked scan for the device and says why", async () => {
  const label = (dev: GpuDevice, c: ScanCase) =>
    compile(scanGraph(c), dev).plan({ L: c.L }).kernels.map((k) => k.label).join("\n");
  const base = { L: 8192, N: 16, gate: true, bias: true, final: true };
  const cpu = await gpu();
  const cores = cpu.caps.cpuCores;
  assert.ok(cores > 0, `lavapipe should count as a CPU adapter: ${cpu.adapterName}`);
  // A channel block (128 channels) per core: chunking would only double the work.
  assert.match(
    label(cpu, { ...base, B: cores, I: 128 }),
    new RegExp(`\\[one pass\\] auto: ${cores} channel blocks keep .* ${cores} cores busy`),
  );
  if (cores > 1) {
    assert.match(
      label(cpu, { ...base, B: 1, I: 128 }),
      new RegExp(`\\[chunked\\] auto: 128 chunks of 64 × 1 channel blocks .* ${cores} CPU cores`),
    );
  }
  // On a GPU the chunked scan always runs (one channel per thread, 64 per block).
  const gpuShaped = await requestDevice({ limits: { cpuCores: 0 } });
  assert.match(
    label(gpuShaped, { ...base, B: 4, I: 1536 }),
    /\[chunked\] auto: 128 chunks of 64 × 96 channel blocks = 12288 workgroups for a GPU/,
  );
  // GPU-shaped kernels agree with the reference, chunked and in one pass.
  for (const chunk of [0, 130]) {
    await checkScan(
      { B: 2, L: 130, I: 300, N: 16, chunk, gate: true, bias: true, h0: true, final: true },
      1e-4,
      1e-4,
      1,
      gpuShaped,
    );
  }
});

Deno.test("selective_scan at L = 4099 and batch 2, chunked and sequential", async () => {
  const base = { B: 2, L: 4099, I: 64, N: 16, gate: true, bias: true, h0: true, final: true };
  await checkScan({ ...base, algorithm: "chunked" }, 2e-4, 2e-4);
  await checkScan({ ...base, algorithm: "sequential" }, 2e-4, 2e-4);
  // Initial state without a final state (the sequential pass reads it directly).
  await checkScan({ B: 1, L: 50, I: 32, N: 8, h0: true, algorithm: "sequential" }, 1e-4, 1e-4);
});

Deno.test("selective_scan with f16 activations keeps an f32 state", async () => {
  const plan = await checkScan(
    { B: 1, L: 200, I: 64, N: 16, act: "f16", gate: true, bias: true, final: true, chunk: 64 },
    2e-2,
    2e-2,
  );
  assert.equal(plan.outputs.get("y")!.dtype, "f16");
  assert.equal(plan.outputs.get("h")!.dtype, "f32");
});

Deno.test("selective_scan survives extreme Δ without NaN or Inf", async () => {
  // softplus(−30) ≈ 1e-13: the state barely moves; softplus(60) = 60: exp(Δ·A) underflows to 0.
  for (const dt of [[-30, -25], [40, 60]] as [number, number][]) {
    await checkScan(
      { B: 1, L: 150, I: 32, N: 16, gate: true, final: true, chunk: 64, dt },
      1e-4,
      1e-4,
    );
  }
});

Deno.test("the chunked scan writes only y and the final state", async () => {
  const c: ScanCase = {
    B: 1,
    L: 8192,
    I: 256,
    N: 16,
    gate: true,
    bias: true,
    final: true,
    algorithm: "chunked",
  };
  const graph = scanGraph(c);
  const exe = compile(graph, await gpu());
  const plan = exe.plan({ L: c.L });
  const scan = plan.kernels.filter((k) => k.label.includes("ssm_scan"));
  assert.equal(scan.length, 3, plan.kernels.map((k) => k.label).join(", "));
  const LIN = c.L * c.I * c.N * 4;
  const written = new Set<number>();
  for (const k of plan.kernels) {
    for (const b of k.bindings) if (b.access === "read_write") written.add(b.slot);
  }
  const named = new Set([plan.outputs.get("y")!.slot, plan.outputs.get("h")!.slot]);
  let scratch = 0;
  for (const s of written) {
    if (named.has(s)) continue;
    assert.equal(plan.slots[s].kind, "temp");
    scratch += plan.slots[s].bytes;
  }
  // Graph-visible writes are exactly y and h; scratch (packed params, per-chunk
  // states) stays far below the [L, I, N] state tensor.
  assert.equal(plan.slots[plan.outputs.get("y")!.slot].bytes, c.L * c.I * 4);
  assert.equal(plan.slots[plan.outputs.get("h")!.slot].bytes, c.I * c.N * 4);
  assert.ok(scratch <= LIN / 32, `scratch ${scratch} B vs [L, I, N] ${LIN} B`);
  // Parallelism: ≥ 32× the workgroups of the one-thread-per-channel scan.
  const seq = compile(scanGraph({ ...c, algorithm: "sequential" }), await gpu()).plan({ L: c.L });
  const wgs = (k: { workgroups: readonly number[] }) => k.workgroups.reduce((a, b) => a * b, 1);
  const seqWgs = wgs(seq.kernels.find((k) => k.label.includes("ssm_scan_sequential"))!);
  const chunkWgs = wgs(scan.find((k) => k.label.includes("output"))!);
  assert.ok(chunkWgs >= 32 * seqWgs, `${chunkWgs} vs ${seqWgs}`);
  exe.dispose();
});

Deno.test("conv1d_causal, its state update and the conv step agree with the reference", async () => {
  const B = 2, I = 70, k = 4, S = 4;
  for (const L of [1, 5, 130]) {
    const g = new GraphBuilder();
    const x = g.input("x", [B, L, I]);
    const w = g.param("w", [I, 1, k]);
    const b = g.param("b", [I]);
    const s = g.state("s", [B, I, S]);
    g.output("y", conv1dCausal(x, w, { bias: b, state: s, silu: true }));
    g.assign(s, convStateUpdate(s, x));
    const graph = g.build();
    const params = { w: randomData(I * k, "f32", 3), b: randomData(I, "f32", 4) };
    const exe = compile(graph, await gpu(), { params });
    const ref = compile(graph, cpuDevice(), { params });
    for (let step = 0; step < 2; step++) {
      const xin = randomData(B * L * I, "f32", 10 + step);
      assertClose(
        (await exe.run({ x: xin })).y.data,
        (await ref.run({ x: xin })).y.data,
        1e-5,
        1e-5,
        `L ${L}`,
      );
    }
    assertClose(
      (await exe.readState("s")).data,
      (await ref.readState("s")).data,
      0,
      0,
      `state L ${L}`,
    );
    exe.dispose();
  }
  // The step op: in place, no copies.
  const g = new GraphBuilder();
  const s = g.state("s", [B, I, S]);
  const [y, next] = conv1dStep(s, g.input("x", [B, 1, I]), g.param("w", [I, 1, k]), {
    bias: g.param("b", [I]),
    silu: true,
  });
  g.assign(s, next);
  g.output("y", y);
  const params = { w: randomData(I * k, "f32", 3), b: randomData(I, "f32", 4) };
  const exe = compile(g.build(), await gpu(), { params });
  const ref = compile(g.build(), cpuDevice(), { params });
  for (let step = 0; step < 6; step++) {
    const xin = randomData(B * I, "f32", 20 + step);
    assertClose(
      (await exe.run({ x: xin })).y.data,
      (await ref.run({ x: xin })).y.data,
      1e-5,
      1e-5,
      `step ${step}`,
    );
  }
  const plan = exe.lastPlan!;
  assert.equal(plan.after.length, 0);
  assert.ok(plan.kernels.every((kk) => kk.before.every((op) => op.kind !== "copy")));
  exe.dispose();
});

Deno.test("bad shapes raise clear errors while building", () => {
  const g = new GraphBuilder();
  const u = g.input("u", [1, 8, 16]);
  const A = g.param("A", [16, 4]);
  const D = g.param("D", [16]);
  const B4 = g.input("B4", [1, 8, 4]);
  const C5 = g.input("C5", [1, 8, 5]);
  assert.throws(
    () => selectiveScan(u, u, A, B4, C5, D),
    (e: Error) =>
      e instanceof RangeError && /C has state size 5 but A \[16, 4\] has N = 4/.test(e.message),
  );
  assert.throws(
    () => selectiveScan(u, u, g.param("A2", [15, 4]), B4, B4, D),
    /A must be \[I, N\] = \[16, N\]/,
  );
  assert.throws(
    () => selectiveScan(u, u, A, B4, B4, D, { initialState: g.input("h", [1, 16, 5]) }),
    /initial state must be \[B, I, N\] = \[1, 16, 4\]/,
  );
  assert.throws(() => selectiveScan(u, u, A, B4, B4, D, { chunk: -1 }), /chunk must be an integer/);
  const x = g.input("x", [1, 3, 16]);
  assert.throws(
    () => conv1dCausal(x, g.param("w", [16, 1, 4])),
    (e: Error) =>
      e instanceof RangeError &&
      /kernel width 4 exceeds the sequence length 3 and no conv state/.test(e.message),
  );
  // With a state the short sequence is fine.
  conv1dCausal(x, g.param("w2", [16, 1, 4]), { state: g.state("cs", [1, 16, 3]) });
  assert.throws(
    () => conv1dCausal(x, g.param("w3", [16, 1, 4]), { state: g.state("cs2", [1, 16, 2]) }),
    /state holds 2 steps but kernel width 4 needs at least 3/,
  );
  assert.throws(
    () => ssmStep(g.state("h2", [1, 16, 4]), x, x, A, B4, B4, D),
    /x must be \[B, I\] or \[B, 1, I\]/,
  );
  // Fused dt_proj: the weight must be [I, R] and the low-rank delta u's rows × R.
  const h3 = g.state("h3", [1, 16, 4]);
  const u1 = g.input("u1", [1, 16]), b1 = g.input("b1", [1, 4]);
  assert.throws(
    () =>
      ssmStep(h3, u1, g.input("lo", [1, 3]), A, b1, b1, D, { deltaProj: g.param("W", [15, 3]) }),
    (e: Error) =>
      e instanceof RangeError &&
      /dt_proj weight must be \[I, R\] = \[16, 3\], got \[15, 3\]/.test(e.message),
  );
  assert.throws(
    () =>
      ssmStep(h3, u1, g.input("lo2", [1, 5]), A, b1, b1, D, { deltaProj: g.param("W2", [16, 3]) }),
    (e: Error) =>
      e instanceof RangeError && /low-rank delta \[1, 5\] must be u's rows × 3/.test(e.message),
  );
});

// ---------------------------------------------------------------- the mixer

interface MixerWeights {
  [name: string]: Float32Array;
}

const H = 32, EXPAND = 2, N = 8, K = 4, R = 2;
const I = EXPAND * H;

function mixerWeights(seed: number, prefix: string): MixerWeights {
  const r = rng(seed);
  const rand = (n: number, s: number) => new Float32Array(n).map(() => (r() * 2 - 1) * s);
  const A_log = new Float32Array(I * N).map((_, j) => Math.log((j % N) + 1) + 0.1 * (r() - 0.5));
  return {
    [`${prefix}.in_proj.weight`]: rand(2 * I * H, 1 / Math.sqrt(H)),
    [`${prefix}.conv1d.weight`]: rand(I * K, 0.5),
    [`${prefix}.conv1d.bias`]: rand(I, 0.2),
    [`${prefix}.x_proj.weight`]: rand((R + 2 * N) * I, 1 / Math.sqrt(I)),
    [`${prefix}.dt_proj.weight`]: rand(I * R, 1 / Math.sqrt(R)),
    // HF inits dt so that softplus(bias) lies in [1e-3, 0.1].
    [`${prefix}.dt_proj.bias`]: new Float32Array(I).map(() =>
      Math.log(Math.expm1(0.001 + 0.099 * r()))
    ),
    [`${prefix}.A_log`]: A_log,
    [`${prefix}.D`]: new Float32Array(I).fill(1),
    [`${prefix}.out_proj.weight`]: rand(H * I, 1 / Math.sqrt(I)),
  };
}

/** Float64 transcription of HF `MambaMixer.slow_forward` (no cache), x [B, L, H]. */
function hfSlowForward(
  w: MixerWeights,
  p: string,
  x: Float32Array,
  B: number,
  L: number,
): Float64Array {
  const W = (n: string) => w[`${p}.${n}`];
  const silu = (v: number) => v / (1 + Math.exp(-v));
  const softplus = (v: number) => (v > 20 ? v : Math.log1p(Math.exp(v)));
  const out = new Float64Array(B * L * H);
  for (let b = 0; b < B; b++) {
    // 1. projected_states = in_proj(x).transpose(1, 2) → hidden [I, L], gate [I, L]
    const hid = Array.from({ length: I }, () => new Float64Array(L));
    const gate = Array.from({ length: I }, () => new Float64Array(L));
    for (let t = 0; t < L; t++) {
      for (let o = 0; o < 2 * I; o++) {
        let acc = 0;
        for (let h = 0; h < H; h++) acc += W("in_proj.weight")[o * H + h] * x[(b * L + t) * H + h];
        (o < I ? hid[o] : gate[o - I])[t] = acc;
      }
    }
    // 2. act(conv1d(hidden)[..., :L]) with padding k − 1
    const u = Array.from({ length: I }, () => new Float64Array(L));
    for (let i = 0; i < I; i++) {
      for (let t = 0; t < L; t++) {
        let acc = W("conv1d.bias")[i];
        for (let j = 0; j < K; j++) {
          const s = t + j - (K - 1);
          if (s >= 0) acc += W("conv1d.weight")[i * K + j] * hid[i][s];
        }
        u[i][t] = silu(acc);
      }
    }
    // 3. x_proj → dt [R], B [N], C [N]; dt = softplus(dt_proj(dt))
    const ssmP = Array.from({ length: L }, () => new Float64Array(R + 2 * N));
    for (let t = 0; t < L; t++) {
      for (let o = 0; o < R + 2 * N; o++) {
        let acc = 0;
        for (let i = 0; i < I; i++) acc += W("x_proj.weight")[o * I + i] * u[i][t];
        ssmP[t][o] = acc;
      }
    }
    // 4.-5. discretise and scan
    const y = Array.from({ length: I }, () => new Float64Array(L));
    for (let i = 0; i < I; i++) {
      const h = new Float64Array(N);
      for (let t = 0; t < L; t++) {
        let dtv = W("dt_proj.bias")[i];
        for (let r = 0; r < R; r++) dtv += W("dt_proj.weight")[i * R + r] * ssmP[t][r];
        dtv = softplus(dtv);
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const A = -Math.exp(W("A_log")[i * N + n]);
          h[n] = Math.exp(A * dtv) * h[n] + dtv * ssmP[t][R + n] * u[i][t];
          acc += h[n] * ssmP[t][R + N + n];
        }
        // 6. y + u·D, gated by act(gate)
        y[i][t] = (acc + u[i][t] * W("D")[i]) * silu(gate[i][t]);
      }
    }
    for (let t = 0; t < L; t++) {
      for (let o = 0; o < H; o++) {
        let acc = 0;
        for (let i = 0; i < I; i++) acc += W("out_proj.weight")[o * I + i] * y[i][t];
        out[(b * L + t) * H + o] = acc;
      }
    }
  }
  return out;
}

function mixerGraph(mode: "prefill" | "decode" | "stateless", B: number, chunk?: number) {
  const g = new GraphBuilder();
  const x = g.input("x", [B, mode === "decode" ? 1 : "L", H]);
  g.output(
    "y",
    mambaMixer(g, x, {
      name: "m",
      d: H,
      expand: EXPAND,
      stateSize: N,
      convKernel: K,
      dtRank: R,
      mode,
      chunk,
    }),
  );
  return g.build();
}

Deno.test("mamba mixer equals HF slow_forward (float64) and prefill + decode equals one forward", async () => {
  const B = 2, L = 70, M = 5;
  const w = mixerWeights(7, "m");
  const x = randomData(B * (L + M) * H, "f32", 11, -1, 1) as Float32Array;
  const want = hfSlowForward(w, "m", x, B, L + M);
  const dev = await gpu();
  // One forward over L + M (stateless and prefill modes).
  for (const mode of ["stateless", "prefill"] as const) {
    const full = compile(mixerGraph(mode, B, 32), dev, { params: w });
    const { y } = await full.run({ x: x });
    assertClose(y.data, want, 2e-3, 2e-4, `${mode} forward vs HF`);
    full.dispose();
  }
  // Prefill L, then M decode steps in a second executable fed the states.
  const pre = compile(mixerGraph("prefill", B, 32), dev, { params: w });
  const dec = compile(mixerGraph("decode", B), dev, { params: w });
  const xs = (t0: number, t1: number) => {
    const out = new Float32Array(B * (t1 - t0) * H);
    for (let b = 0; b < B; b++) {
      out.set(x.subarray((b * (L + M) + t0) * H, (b * (L + M) + t1) * H), b * (t1 - t0) * H);
    }
    return out;
  };
  const pick = (t0: number, t1: number) => {
    const out = new Float64Array(B * (t1 - t0) * H);
    for (let b = 0; b < B; b++) {
      out.set(want.subarray((b * (L + M) + t0) * H, (b * (L + M) + t1) * H), b * (t1 - t0) * H);
    }
    return out;
  };
  const { y: yp } = await pre.run({ x: xs(0, L) });
  assertClose(yp.data, pick(0, L), 2e-3, 2e-4, "prefill");
  for (const s of ["m.conv_state", "m.ssm_state"]) dec.writeState(s, (await pre.readState(s)).data);
  for (let t = L; t < L + M; t++) {
    const { y } = await dec.run({ x: xs(t, t + 1) });
    assertClose(y.data, pick(t, t + 1), 2e-3, 2e-4, `decode token ${t}`);
  }
  // Decode keeps both states in place: no copies around the step kernels.
  const plan = dec.lastPlan!;
  assert.equal(plan.after.length, 0, "no end-of-run state copies");
  assert.ok(plan.kernels.every((k) => k.before.every((op) => op.kind !== "copy")));
  // A prompt fed in two pieces through the same prefill executable continues its state.
  pre.resetStates();
  await pre.run({ x: xs(0, 40) });
  const { y: y2 } = await pre.run({ x: xs(40, L + M) });
  assertClose(y2.data, pick(40, L + M), 2e-3, 2e-4, "chunked prefill");
  pre.dispose();
  dec.dispose();
});

Deno.test("stacked mamba blocks and the Jamba mixer run on the GPU as on the CPU", async () => {
  const g = new GraphBuilder();
  let h = g.input("x", [1, "L", H]);
  for (let i = 0; i < 2; i++) {
    h = mambaBlock(g, h, {
      name: `l${i}`,
      d: H,
      stateSize: N,
      dtRank: R,
      jamba: i === 1,
      chunk: 16,
    });
  }
  g.output("h", h);
  const graph = g.build();
  const params: Record<string, Float32Array> = {};
  for (let i = 0; i < 2; i++) {
    Object.assign(params, mixerWeights(30 + i, `l${i}.mixer`));
    params[`l${i}.norm.weight`] = new Float32Array(H).map((_, j) => 1 + 0.01 * j);
  }
  params["l1.mixer.dt_layernorm.weight"] = new Float32Array(R).fill(1);
  params["l1.mixer.b_layernorm.weight"] = new Float32Array(N).fill(0.9);
  params["l1.mixer.c_layernorm.weight"] = new Float32Array(N).fill(1.1);
  const exe = compile(graph, await gpu(), { params });
  const ref = compile(graph, cpuDevice(), { params });
  const x = randomData(40 * H, "f32", 5, -1, 1);
  assertClose((await exe.run({ x })).h.data, (await ref.run({ x })).h.data, 2e-3, 2e-4, "blocks");
  exe.dispose();
});

/** A, D and the Δ bias of a step test: HiPPO-like A, random D and a negative bias. */
function stepParams(In: number, Nn: number): Record<string, Float32Array> {
  return {
    A: new Float32Array(In * Nn).map((_, j) => -((j % Nn) + 1)),
    D: randomData(In, "f32", 1) as Float32Array,
    dtb: randomData(In, "f32", 2, -2, 0) as Float32Array,
  };
}

/** A gated decode step graph (state "h", Δ bias, softplus) compiled on `dev` and on the CPU. */
function stepPair(dev: GpuDevice, Bn: number, In: number, Nn: number) {
  const g = new GraphBuilder();
  const h = g.state("h", [Bn, In, Nn]);
  const [y, next] = ssmStep(
    h,
    g.input("u", [Bn, In]),
    g.input("dt", [Bn, In]),
    g.param("A", [In, Nn]),
    g.input("Bm", [Bn, Nn]),
    g.input("Cm", [Bn, Nn]),
    g.param("D", [In]),
    { z: g.input("z", [Bn, In]), deltaBias: g.param("dtb", [In]), softplus: true },
  );
  g.assign(h, next);
  g.output("y", y);
  const graph = g.build();
  const params = stepParams(In, Nn);
  return { exe: compile(graph, dev, { params }), ref: compile(graph, cpuDevice(), { params }) };
}

/**
 * Runs `tokens` decode steps of `exe` and `ref` on the same random inputs (`delta`
 * names the Δ input and its width) and compares y each step and the state "h" after.
 */
async function compareSteps(
  exe: Executable,
  ref: Executable,
  tokens: number,
  [Bn, In, Nn]: [number, number, number],
  delta: [string, number],
  what: string,
): Promise<void> {
  for (let t = 0; t < tokens; t++) {
    const inputs = {
      u: randomData(Bn * In, "f32", 10 * t),
      [delta[0]]: randomData(Bn * delta[1], "f32", 10 * t + 1),
      Bm: randomData(Bn * Nn, "f32", 10 * t + 2),
      Cm: randomData(Bn * Nn, "f32", 10 * t + 3),
      z: randomData(Bn * In, "f32", 10 * t + 4),
    };
    const [got, want] = [await exe.run(inputs), await ref.run(inputs)];
    assertClose(got.y.data, want.y.data, 1e-5, 1e-5, `${what} token ${t}`);
  }
  const [gh, wh] = [await exe.readState("h"), await ref.readState("h")];
  assertClose(gh.data, wh.data, 1e-5, 1e-5, `${what} state`);
}

for (const limit of [undefined, 8]) {
  Deno.test(`ssm_step with dt_proj fused equals dt_proj then the step (storage buffers: ${limit ?? "adapter"})`, async () => {
    // With 8 bindings the pack kernel projects Δ; with more the step kernel does.
    const dev = limit ? await requestDevice({ limits: { maxStorageBuffers: limit } }) : await gpu();
    const Bn = 2, Nn = 16, R = 6;
    for (const In of [40, 300, 2102]) { // 2102: past the one-channel step shape
      const build = (fused: boolean) => {
        const g = new GraphBuilder();
        const h = g.state("h", [Bn, In, Nn]);
        const lo = g.input("lo", [Bn, R]);
        const W = g.param("W", [In, R]);
        const delta = fused ? lo : lo.matmul(W, { transB: true });
        const [y, next] = ssmStep(
          h,
          g.input("u", [Bn, In]),
          delta,
          g.param("A", [In, Nn]),
          g.input("Bm", [Bn, Nn]),
          g.input("Cm", [Bn, Nn]),
          g.param("D", [In]),
          {
            z: g.input("z", [Bn, In]),
            deltaBias: g.param("dtb", [In]),
            softplus: true,
            deltaProj: fused ? W : undefined,
          },
        );
        g.assign(h, next);
        g.output("y", y);
        return g.build();
      };
      const params = { ...stepParams(In, Nn), W: randomData(In * R, "f32", 3, -0.5, 0.5) };
      const exe = compile(build(true), dev, { params });
      const ref = compile(build(false), cpuDevice(), { params });
      await compareSteps(exe, ref, 3, [Bn, In, Nn], ["lo", R], `I ${In}`);
      const labels = exe.lastPlan!.kernels.map((k) => k.label);
      // No GEMV: the projection lives in the step (or, short of bindings, in the pack kernel).
      assert.ok(!labels.some((l) => /gemv|matmul/.test(l)), labels.join());
      assert.equal(labels.filter((l) => /pack/.test(l)).length, limit ? 1 : 0, labels.join());
      exe.dispose();
    }
    if (limit) dev.destroy();
  });
}

for (const limit of [undefined, 8]) {
  Deno.test(`ssm_step equals the scan one token at a time, in place (storage buffers: ${limit ?? "adapter"})`, async () => {
    // With 8 bindings the step packs A, D and the Δ bias first; with more it reads them directly.
    const dev = limit ? await requestDevice({ limits: { maxStorageBuffers: limit } }) : await gpu();
    const Bn = 3, Nn = 16;
    // 40 channels: one per thread; 300: four per thread as a vec4, ragged last block.
    for (const In of [40, 300, 2102]) { // 2102: past the one-channel step shape
      const { exe, ref } = stepPair(dev, Bn, In, Nn);
      await compareSteps(exe, ref, 4, [Bn, In, Nn], ["dt", In], `I ${In}`);
      const plan = exe.lastPlan!;
      assert.equal(plan.after.length, 0);
      const slot = plan.states.get("h")!.slot;
      assert.ok(
        plan.kernels.some((k) =>
          k.bindings.some((b) => b.slot === slot && b.access === "read_write")
        ),
      );
      assert.equal(plan.kernels.filter((k) => /pack/.test(k.label)).length, limit ? 1 : 0);
      exe.dispose();
    }
    if (limit) dev.destroy();
  });
}

for (const limit of [undefined, 8]) {
  Deno.test(`ssm_step at large N walks the states in a loop, in place (storage buffers: ${limit ?? "adapter"})`, async () => {
    // Mamba-2 checkpoints keep 128 states a channel: the CPU rasteriser's step loops
    // over them (the unrolled kernel's compile grows with N); short of bindings it
    // keeps the packed, unrolled kernel.
    const dev = limit ? await requestDevice({ limits: { maxStorageBuffers: limit } }) : await gpu();
    const Bn = 2;
    for (const [In, Nn] of [[37, 64], [130, 128]]) {
      const { exe, ref } = stepPair(dev, Bn, In, Nn);
      await compareSteps(exe, ref, 4, [Bn, In, Nn], ["dt", In], `I ${In}, N ${Nn}`);
      const plan = exe.lastPlan!;
      assert.equal(plan.after.length, 0, "the state is updated in place");
      const loops = plan.kernels.filter((k) => /ssm_step_loop/.test(k.label)).length;
      assert.equal(loops, limit ? 0 : 1, plan.kernels.map((k) => k.label).join());
      exe.dispose();
    }
    if (limit) dev.destroy();
  });
}
