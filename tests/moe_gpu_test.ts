/**
 * The `gpu` target's `moe` kernels (ops/moe/gpu.ts) on lavapipe with
 * `cpuCores: 0`, against the CPU reference: GPU-shaped decode GEMVs and
 * workgroup-tiled grouped GEMMs (with and without subgroups, f32 and f16
 * weights, a slot table with absent experts), and the portable fallback.
 */
import assert from "node:assert/strict";
import { compile, cpuDevice, GraphBuilder, moe, type MoeOptions } from "../mod.ts";
import { assertClose, rng } from "./_util.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";

interface Case {
  T: number;
  d: number;
  ff: number;
  E: number;
  k: number;
  f16?: boolean;
  subgroups?: boolean;
  /** Slot table: `slots` slots; experts past them are absent (contribute 0). */
  slots?: number;
  capacityFactor?: number;
  maxBindingSize?: number;
  seed: number;
}

function uniform(n: number, scale: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

/** Runs one case on the GPU target and the CPU reference; returns the kernel labels. */
async function check(c: Case): Promise<string[]> {
  const { T, d, ff, E, k } = c;
  const dev = await gpuTarget(c.subgroups ?? false, c.maxBindingSize);
  assert.equal(dev.caps.subgroups, c.subgroups ?? false);
  if (c.f16 && !dev.caps.f16) return [];
  const g = new GraphBuilder();
  const x = g.input("x", [T, d]);
  const o: MoeOptions = {
    name: "m",
    experts: E,
    topK: k,
    ff,
    weightDtype: c.f16 ? "f16" : "f32",
    capacityFactor: c.capacityFactor,
    ...(c.slots ? { slots: { count: c.slots, pool: "pool" } } : {}),
  };
  const m = moe(g, x, o);
  g.output("y", m.y);
  g.output("counts", m.counts);
  const graph = g.build();
  const r = rng(c.seed);
  const W = c.slots ?? E;
  const pre = c.slots ? "pool" : "m";
  const params: Record<string, Float32Array | Uint32Array> = {
    "m.router": uniform(E * d, 1, r),
    [`${pre}.w1`]: uniform(W * ff * d, 1 / Math.sqrt(d), r),
    [`${pre}.w3`]: uniform(W * ff * d, 1 / Math.sqrt(d), r),
    [`${pre}.w2`]: uniform(W * d * ff, 1 / Math.sqrt(ff), r),
  };
  if (c.slots) {
    // Reversed slots; experts past the pool are on another device.
    params["m.slot_table"] = Uint32Array.from(
      { length: E },
      (_, e) => e < c.slots! ? c.slots! - 1 - e : 0xffffffff,
    );
  }
  const inputs = { x: uniform(T * d, 1, rng(c.seed + 100)) };
  const eg = compile(graph, dev, { params });
  const ec = compile(graph, cpuDevice(), { params });
  try {
    const a = await eg.run(inputs);
    const b = await ec.run(inputs);
    const labels = eg.lastPlan!.kernels.map((kk) => kk.label);
    if (Deno.env.get("MOE_GPU_LABELS")) console.log(JSON.stringify(c), labels.join(" "));
    const what = `${JSON.stringify(c)}: ${labels.join(", ")}`;
    const tol = c.f16 ? 3e-3 : 2e-4;
    assertClose(a.y.data, b.y.data, tol, tol, `${what}: y`);
    assert.deepEqual(Array.from(a.counts.data), Array.from(b.counts.data), `${what}: counts`);
    return labels;
  } finally {
    eg.dispose();
    ec.dispose();
  }
}

const has = (labels: string[], re: RegExp) =>
  labels.flatMap((l) => l.split("+")).some((l) => re.test(l.replace(/^moe:/, "")));

const DECODE = [/^moe_gpu_decode_gemv1_/, /^moe_gpu_decode_gemv2_/];
const PREFILL = [/^moe_gpu_grouped_gemm1_/, /^moe_gpu_grouped_gemm2_/, /^moe_combine/];

function assertGpu(c: Case, labels: string[]): void {
  if (labels.length === 0) return; // f16 not on this device
  for (const re of c.T <= 4 ? DECODE : PREFILL) assert.ok(has(labels, re), labels.join(", "));
}

Deno.test("moe gpu: decode GEMVs and grouped GEMMs match the reference (f32)", async () => {
  const cases: Case[] = [
    { T: 1, d: 40, ff: 72, E: 4, k: 1, seed: 1 },
    { T: 3, d: 64, ff: 96, E: 8, k: 2, seed: 2 },
    { T: 13, d: 40, ff: 72, E: 8, k: 2, seed: 3 },
    { T: 13, d: 64, ff: 96, E: 4, k: 1, seed: 4 },
    { T: 3, d: 18, ff: 30, E: 4, k: 2, seed: 5 }, // widths not multiples of 4: scalar loads
    { T: 13, d: 18, ff: 30, E: 4, k: 2, seed: 6 },
  ];
  for (const c of cases) assertGpu(c, await check(c));
});

Deno.test("moe gpu: subgroup reductions, f16 weights, slot table", async () => {
  const cases: Case[] = [
    { T: 1, d: 64, ff: 96, E: 8, k: 2, subgroups: true, seed: 7 },
    { T: 3, d: 40, ff: 72, E: 4, k: 2, subgroups: true, seed: 8 },
    { T: 1, d: 40, ff: 72, E: 8, k: 2, f16: true, seed: 9 },
    { T: 13, d: 64, ff: 96, E: 4, k: 2, f16: true, seed: 10 },
    { T: 3, d: 40, ff: 72, E: 8, k: 2, slots: 5, seed: 11 },
    { T: 13, d: 40, ff: 72, E: 8, k: 2, slots: 5, seed: 12 },
    { T: 2, d: 264, ff: 40, E: 4, k: 2, seed: 15 }, // 128-wide GEMV 1 workgroup (tree)
    { T: 2, d: 264, ff: 40, E: 4, k: 2, subgroups: true, seed: 16 },
  ];
  for (const c of cases) assertGpu(c, await check(c));
});

Deno.test("moe gpu: a capacity factor takes the portable kernels", async () => {
  const labels = await check({ T: 13, d: 40, ff: 72, E: 4, k: 2, capacityFactor: 1, seed: 13 });
  assert.ok(!labels.some((l) => l.includes("moe_gpu")), labels.join(", "));
  assert.ok(has(labels, /^moe_grouped_gemm1_/), labels.join(", "));
  // Expert weights over one binding (bound in segments): the portable GEMVs.
  const seg = await check({ T: 1, d: 40, ff: 72, E: 4, k: 2, maxBindingSize: 4096, seed: 14 });
  assert.ok(!seg.some((l) => l.includes("moe_gpu")), seg.join(", "));
  assert.ok(has(seg, /^moe_decode_gemv1_/), seg.join(", "));
});
