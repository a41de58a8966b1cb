/**
 * The `gpu` target's attention kernels (ops/attention_gpu.ts), run on lavapipe
 * through a device that reports itself as a GPU (`cpuCores: 0`) and checked
 * against the op's CPU reference at awkward sizes: the tiled flash kernel for
 * prefill and the split-K decode kernel with its combine, GQA, causal masks with
 * and without a sliding window at a cache position past zero, f32 and f16, row
 * statistics merged by a workgroup-memory tree and by subgroup shuffles, inputs
 * bound in segments or behind a fused prologue, and the portable fallback.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice } from "../runtime/device.ts";
import { attentionGpu, planAttentionGpu } from "../ops/attention_gpu.ts";
import { assertClose, randomData } from "./_util.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";

interface Case {
  T: number;
  S: number;
  Hq: number;
  Hkv: number;
  D: number;
  pos: number;
  window: number;
  causal?: boolean;
  dtype?: DType;
  subgroups?: boolean;
  /** Multiply q by 0.5 first: a fused prologue (scalar loads). */
  prologue?: boolean;
  splits?: number;
  maxBindingSize?: number;
}

/** Runs one case on the GPU target and the CPU reference; returns the kernel labels. */
async function check(c: Case, label: RegExp): Promise<string[]> {
  const dtype = c.dtype ?? "f32";
  const dev = await gpuTarget(c.subgroups ?? false, c.maxBindingSize);
  assert.equal(dev.caps.subgroups, c.subgroups ?? false);
  const g = new GraphBuilder();
  const q = g.input("q", [c.T, c.Hq, c.D], dtype);
  const k = g.input("k", [c.S, c.Hkv, c.D], dtype);
  const v = g.input("v", [c.S, c.Hkv, c.D], dtype);
  const pos = g.input("pos", [1], "u32");
  const opts = { causal: c.causal ?? true, window: c.window, splits: c.splits ?? 0 };
  g.output("y", g.attention(c.prologue ? q.mul(0.5) : q, k, v, pos, opts));
  const graph = g.build();
  const inputs = {
    q: randomData(c.T * c.Hq * c.D, dtype, c.T + c.D, -1.5, 1.5),
    k: randomData(c.S * c.Hkv * c.D, dtype, c.S + 1, -1.5, 1.5),
    v: randomData(c.S * c.Hkv * c.D, dtype, c.S + 2),
    pos: new Uint32Array([c.pos]),
  };
  const exe = compile(graph, dev);
  try {
    const got = await exe.run(inputs);
    const want = await compile(graph, cpuDevice()).run(inputs);
    const kernels = exe.lastPlan!.kernels;
    const labels = kernels.map((k) => k.label);
    const what = `${JSON.stringify(c)}: kernels ${labels.join(", ")}`;
    assert.ok(labels.flatMap((l) => l.split("+")).some((l) => label.test(l)), what);
    assert.ok(kernels.every((k) => k.target === "gpu"), what);
    const tol = dtype === "f16" ? 5e-3 : 2e-5;
    assertClose(got.y.data, want.y.data, tol, tol, what);
    return labels;
  } finally {
    exe.dispose();
  }
}

const FLASH = /^(attention:)?attention_gpu_flash$/;
const DECODE = /^(attention:)?attention_gpu_decode$/;
const sg = (re: RegExp) => new RegExp(re.source.replaceAll("$", "_sg$"));

/**
 * The shape grid, sampled so every T, D, head layout, window and cache position
 * meets the others without running all of their products.
 */
function grid(): Case[] {
  const cases: Case[] = [];
  const Ts = [1, 3, 17, 65], Ds = [24, 64, 128];
  const heads: [number, number][] = [[4, 4], [8, 2]];
  let i = 0;
  for (const T of Ts) {
    for (const D of Ds) {
      for (const [Hq, Hkv] of heads) {
        const S = [300, 97, 211][i % 3];
        const pos = Math.max(1, Math.min(S - T, [37, 150, 260][(i + 1) % 3]));
        const window = i % 2 ? 0 : [5, 33, 130][i % 3];
        cases.push({ T, S, Hq, Hkv, D, pos, window });
        i++;
      }
    }
  }
  return cases;
}

Deno.test("gpu attention: flash prefill and split-K decode match the reference (f32, tree)", async () => {
  for (const c of grid()) {
    const labels = await check(c, c.T <= 4 ? DECODE : FLASH);
    if (c.T <= 4 && c.S >= 64) {
      assert.ok(labels.includes("attention:attention_gpu_combine"), labels.join(", "));
    }
  }
});

Deno.test("gpu attention: subgroup shuffles for the row statistics", async () => {
  const cases = grid().filter((_, i) => i % 3 === 1);
  for (const c of cases) await check({ ...c, subgroups: true }, sg(c.T <= 4 ? DECODE : FLASH));
  // One row per KV head at decode: a row spans 16 subgroups (slots in workgroup memory).
  await check({ T: 1, S: 300, Hq: 4, Hkv: 4, D: 64, pos: 280, window: 0, subgroups: true }, /_sg$/);
});

Deno.test("gpu attention: f16 storage with f32 accumulation", async () => {
  const dev = await gpuTarget(false);
  if (!dev.caps.f16) return;
  const cases = grid().filter((_, i) => i % 4 === 0);
  for (const c of cases) await check({ ...c, dtype: "f16" }, c.T <= 4 ? DECODE : FLASH);
  const c: Case = { T: 65, S: 300, Hq: 8, Hkv: 2, D: 128, pos: 200, window: 0, dtype: "f16" };
  await check({ ...c, subgroups: true }, sg(FLASH));
});

Deno.test("gpu attention: no causal mask, empty rows, forced splits, odd D, prologue, segments", async () => {
  const base = { Hq: 8, Hkv: 2, D: 64, window: 0 };
  await check({ ...base, T: 17, S: 120, pos: 50, causal: false }, FLASH);
  await check({ ...base, T: 3, S: 300, pos: 100, causal: false }, DECODE);
  // Queries past the cache's end with a short window: rows 13… see no key (zeros).
  await check({ ...base, T: 17, S: 40, pos: 30, window: 4 }, FLASH);
  // A requested split count on prefill (combine kernel) and on decode.
  await check({ ...base, T: 17, S: 211, pos: 70, window: 33, splits: 3 }, /flash$/);
  await check({ ...base, T: 1, S: 211, pos: 150, window: 0, splits: 2 }, DECODE);
  // D not a multiple of 4 (scalar loads, zero-padded vec4s); q behind a fused prologue.
  await check({ ...base, T: 9, S: 60, pos: 20, D: 18, window: 7 }, FLASH);
  await check({ ...base, T: 2, S: 60, pos: 20, D: 18, window: 0 }, DECODE);
  await check({ ...base, T: 33, S: 100, pos: 10, prologue: true }, FLASH);
  // K and V bound in segments (vec4 segment reads) at prefill and decode.
  const seg = { ...base, S: 300, D: 128, maxBindingSize: 65536 };
  await check({ ...seg, T: 17, pos: 200, window: 0 }, FLASH);
  await check({ ...seg, T: 1, pos: 250, window: 0 }, DECODE);
});

Deno.test("gpu attention: plans respect the device's limits; the portable kernels cover the rest", async () => {
  const q = (T: number, H: number, D: number) => ({
    shape: [T, H, D],
    dtype: "f32" as const,
    direct: true,
  });
  const caps = (await gpuTarget(false)).caps;
  const attrs = { scale: 0.1, causal: true, window: 0, splits: 0 };
  for (const D of [24, 40, 64, 80, 96, 128, 256]) {
    for (const T of [1, 4, 5, 512]) {
      for (const storage of [16384, 8192]) {
        const c = { ...caps, maxWorkgroupStorage: storage };
        const plan = planAttentionGpu({
          attrs,
          inputs: [q(T, 32, D), q(4096, 8, D), q(4096, 8, D), { ...q(1, 1, 1), dtype: "u32" }],
          outputs: [q(T, 32, D)],
          caps: c,
        });
        assert.ok(plan, `D ${D} T ${T}`);
        assert.ok(plan.smemBytes <= storage, `${D}/${T}: ${plan.smemBytes} > ${storage}`);
        assert.equal(plan.kind, T <= 4 ? "decode" : "flash");
      }
    }
  }
  // D > 256 takes the portable kernels, even on a GPU.
  const wide = {
    attrs,
    inputs: [q(5, 2, 260), q(20, 1, 260), q(20, 1, 260), { ...q(1, 1, 1), dtype: "u32" as const }],
    outputs: [q(5, 2, 260)],
    caps,
  };
  assert.equal(planAttentionGpu(wide), undefined);
  const labels = attentionGpu(wide).kernels.map((k) => k.label);
  assert.ok(labels.every((l) => !l.includes("gpu")), labels.join(", "));
});
