/**
 * Fused attention benchmarks (Hq 8, Hkv 2, D 64, causal, f32):
 * - prefill T = 512 and 2048 (k, v = the same T tokens);
 * - decode step T = 1 against a KV cache holding 64 / 512 / 2048 / 8192 tokens,
 *   single pass (`splits: 1`) vs split over the keys + combine (flash-decoding,
 *   automatic split count).
 *
 * On load it prints a table of GPU time per run (timestamp queries, over a
 * few runs, the minimum since the machine may be shared) with the effective FLOP rate (4·Hq·D per visible (query, key) pair);
 * the `Deno.bench` cases then report wall time per submit (no readback).
 *
 * Run: `deno bench -A bench/attention_bench.ts` (ATTN_BENCH_QUICK=1 skips T = 2048
 * prefill and context 8192 in the table).
 *
 * @module
 */
import { compile, type Executable, GraphBuilder, requestDevice } from "../mod.ts";

const dev = await requestDevice();
const Hq = 8, Hkv = 2, D = 64;
const quick = Deno.env.get("ATTN_BENCH_QUICK") === "1";

function rand(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return (a / 4294967296) * 2 - 1;
  });
}

interface Case {
  name: string;
  exe: Executable;
  inputs: Record<string, Float32Array | Uint32Array>;
  /** Visible (query, key) pairs, for the FLOP rate. */
  pairs: number;
}

function makeCase(T: number, S: number, splits: number, name: string): Case {
  const g = new GraphBuilder();
  const q = g.input("q", [T, Hq, D]);
  const k = g.input("k", [S, Hkv, D]);
  const v = g.input("v", [S, Hkv, D]);
  const pos = g.input("pos", [1], "u32");
  g.output("o", g.attention(q, k, v, pos, { causal: true, splits }));
  const exe = compile(g.build(), dev);
  const p = S - T; // the cache is full: query t at S − T + t
  let pairs = 0;
  for (let t = 0; t < T; t++) pairs += p + t + 1;
  return {
    name,
    exe,
    inputs: {
      q: rand(T * Hq * D, 1),
      k: rand(S * Hkv * D, 2),
      v: rand(S * Hkv * D, 3),
      pos: new Uint32Array([p]),
    },
    pairs: pairs * Hq,
  };
}

/** Minimum over `reps` runs: the machine is shared, so the fastest run is the least disturbed. */
async function gpuMs(c: Case, reps = 7): Promise<{ ms: number; kernels: string }> {
  const times: number[] = [];
  let kernels = "";
  for (let i = 0; i < reps; i++) {
    const r = await c.exe.profile(c.inputs);
    times.push(r.kernels.reduce((a, k) => a + k.ns, 0) / 1e6);
    kernels = r.kernels.map((k) => `${k.label} ${(k.ns / 1e3).toFixed(0)}µs`).join(", ");
  }
  return { ms: Math.min(...times), kernels };
}

const prefill = (quick ? [512] : [512, 2048]).map((T) => makeCase(T, T, 0, `prefill T=${T}`));
const contexts = quick ? [64, 512, 2048] : [64, 512, 2048, 8192];
const decode = contexts.flatMap((S) => [
  makeCase(1, S, 1, `decode ctx=${S} single-pass`),
  makeCase(1, S, 0, `decode ctx=${S} split`),
]);

console.log(`adapter: ${dev.adapterName}`);
console.log("case                          GPU ms   GFLOP/s  kernels");
for (const c of [...prefill, ...decode]) {
  const { ms, kernels } = await gpuMs(c);
  const gflops = (4 * D * c.pairs) / (ms * 1e6);
  console.log(
    `${c.name.padEnd(30)}${ms.toFixed(3).padStart(7)}  ${
      gflops.toFixed(2).padStart(8)
    }  ${kernels}`,
  );
}

type Prepared = Awaited<ReturnType<Executable["prepare"]>>;

async function submit(run: Prepared): Promise<void> {
  const d = dev.device;
  const enc = d.createCommandEncoder();
  run.encode(enc);
  d.queue.submit([enc.finish()]);
  await d.queue.onSubmittedWorkDone();
}

for (const c of [...prefill, ...decode.filter((c) => c.name.endsWith("split"))]) {
  const run = await c.exe.prepare(c.inputs);
  // Prefill at T = 2048 takes about a second per run here: a few iterations suffice.
  const opts = c.name.startsWith("prefill")
    ? { group: "prefill", n: 5, warmup: 1 }
    : { group: "decode" };
  Deno.bench(`attention ${c.name}`, opts, async () => {
    await submit(run);
  });
}
