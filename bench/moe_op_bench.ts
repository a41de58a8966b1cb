/**
 * The `moe` op through the compiler (run: `deno bench -A bench/moe_op_bench.ts`).
 *
 * - T=512, d=512, ff=1408, E=8, k=2: routed (sort + grouped GEMMs) vs the same
 *   layer computed densely over all experts (`moeDense`); target routed ≤ 0.375×
 *   dense. Measured side by side in one process, GPU-only (encode + submit +
 *   wait, no readback) and from timestamp queries.
 * - Kernel launches per layer (prefill / decode / dense).
 * - Decode T=1 of the same layer: upload + run + readback, and GPU time.
 * - T=64, d=256, ff=512, E=8, k=2, softmax top-2 renormalised: upload x + run +
 *   read y back every run; target median ≤ 25 ms.
 *
 * The machine may be shared: the summary prints the load average next to the
 * figures.
 */
import { compile, type Executable, GraphBuilder, moe, moeDense, requestDevice } from "../mod.ts";

const device = await requestDevice();
const dev = device.device;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return (a / 4294967296) * 2 - 1;
  };
}
const fill = (n: number, s: number, r: () => number) =>
  Float32Array.from({ length: n }, () => r() * s);

interface Layer {
  d: number;
  ff: number;
  E: number;
  k: number;
}

function layer(l: Layer, dense: boolean): Executable {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", l.d]);
  const m = (dense ? moeDense : moe)(g, x, { name: "m", experts: l.E, topK: l.k, ff: l.ff });
  g.output("y", m.y);
  const r = rng(7);
  const { d, ff, E } = l;
  return compile(g.build(), device, {
    params: {
      "m.router": fill(E * d, 1, r),
      "m.w1": fill(E * ff * d, 1 / Math.sqrt(d), r),
      "m.w3": fill(E * ff * d, 1 / Math.sqrt(d), r),
      "m.w2": fill(E * d * ff, 1 / Math.sqrt(ff), r),
    },
  });
}

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? s[s.length >> 1] : NaN;
};

const big: Layer = { d: 512, ff: 1408, E: 8, k: 2 };
const T = 512;
const bigX = fill(T * big.d, 1, rng(11));
const routed = layer(big, false);
const dense = layer(big, true);
const routedRun = await routed.prepare({ x: bigX });
const denseRun = await dense.prepare({ x: bigX });

async function gpuOnly(run: Awaited<ReturnType<Executable["prepare"]>>): Promise<void> {
  const enc = dev.createCommandEncoder();
  run.encode(enc);
  dev.queue.submit([enc.finish()]);
  await dev.queue.onSubmittedWorkDone();
}
await gpuOnly(routedRun); // pipelines compile outside the timing
await gpuOnly(denseRun);

const decX = bigX.slice(0, big.d);
await routed.run({ x: decX });

const small: Layer = { d: 256, ff: 512, E: 8, k: 2 };
const smallExe = layer(small, false);
const smallX = fill(64 * small.d, 1, rng(12));
await smallExe.run({ x: smallX });

const times: Record<string, number[]> = { routed: [], dense: [], decode: [], small: [] };
const timed = (key: string, f: () => Promise<unknown>) => async () => {
  const t0 = performance.now();
  await f();
  times[key].push(performance.now() - t0);
};

Deno.bench({
  name: "moe T=512 d=512 ff=1408 E=8 k=2 routed (GPU only)",
  group: "prefill",
  n: 8,
  warmup: 1,
  fn: timed("routed", () => gpuOnly(routedRun)),
});
Deno.bench({
  name: "moe T=512 dense over all 8 experts (GPU only)",
  group: "prefill",
  baseline: true,
  n: 4,
  warmup: 1,
  fn: timed("dense", () => gpuOnly(denseRun)),
});
Deno.bench({
  name: "moe decode T=1 d=512 ff=1408 E=8 k=2, upload + run + readback",
  n: 30,
  warmup: 3,
  fn: timed("decode", () => routed.run({ x: decX })),
});
Deno.bench({
  name: "moe T=64 d=256 ff=512 E=8 k=2, upload + run + readback",
  n: 40,
  warmup: 3,
  fn: timed("small", () => smallExe.run({ x: smallX })),
});

/** Sum of per-kernel GPU times (timestamp queries), median over a few runs, in ms. */
async function gpuTime(exe: Executable, x: Float32Array, runs = 3): Promise<number> {
  if (!device.timestamps) return NaN;
  const s: number[] = [];
  for (let i = 0; i < runs; i++) {
    const p = await exe.profile({ x });
    s.push(p.kernels.reduce((a, k) => a + k.ns, 0) / 1e6);
  }
  return median(s);
}

globalThis.addEventListener("unload", () => {
  // Timestamp figures are gathered here, after deno bench's own timing.
  const lines: string[] = [];
  const r = median(times.routed), dn = median(times.dense);
  lines.push(
    `prefill T=512 (encode+submit+wait): routed ${r.toFixed(1)} ms, dense ${dn.toFixed(1)} ms, ` +
      `ratio ${(r / dn).toFixed(3)} (target ≤ 0.375)`,
  );
  lines.push(
    `decode T=1 end to end median ${median(times.decode).toFixed(2)} ms`,
    `T=64 d=256 ff=512 end to end median ${median(times.small).toFixed(2)} ms (target ≤ 25)`,
  );
  for (
    const [name, exe, t] of [["prefill", routed, T], ["decode", routed, 1], [
      "dense",
      dense,
      T,
    ]] as const
  ) {
    const p = exe.plan({ T: t });
    lines.push(`${name} kernels per layer: ${p.kernels.length} (${p.kernels.map((k) => k.label)})`);
  }
  console.log("\n" + lines.join("\n"));
});

// GPU timestamps, printed before the bench table (deno bench runs benches after module load).
const [gr, gd, gdec, gs] = [
  await gpuTime(routed, bigX),
  await gpuTime(dense, bigX),
  await gpuTime(routed, decX, 5),
  await gpuTime(smallExe, smallX, 5),
];
const load = new TextDecoder().decode(
  (await new Deno.Command("uptime").output()).stdout,
).trim();
console.log(
  `GPU timestamps: routed T=512 ${gr.toFixed(1)} ms, dense ${gd.toFixed(1)} ms, ratio ${
    (gr / gd).toFixed(3)
  }; decode T=1 ${gdec.toFixed(2)} ms; T=64 ${gs.toFixed(2)} ms\nload: ${load}`,
);
