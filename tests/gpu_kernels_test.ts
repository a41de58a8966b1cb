/**
 * The `gpu` target's own kernels (ops/targets.ts), run on lavapipe through a
 * device that reports itself as a GPU (`cpuCores: 0`) and checked against the
 * CPU reference at awkward sizes: the workgroup-tiled matmul (ragged M/N/K,
 * every transpose, batched and broadcast, vec4 and scalar tile loads, fused
 * prologue and epilogue) and the decode GEMV with its workgroup reduction, in
 * f32 and f16; and a tiny Mixtral whose projections run on them.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { Graph } from "../core/graph.ts";
import type { DType } from "../core/dtype.ts";
import type { TensorData } from "../core/host.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice } from "../runtime/device.ts";
import { loadModel } from "../app/model/mod.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import {
  assertClose,
  assertDecodeMatchesForward,
  gpu,
  MOE_PROMPT,
  randomData,
  relMaxError,
} from "./_util.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";

async function check(
  graph: Graph,
  inputs: Record<string, TensorData>,
  dtype: DType,
  label: RegExp,
  what: string,
): Promise<void> {
  const dev = await gpuTarget();
  const g = compile(graph, dev);
  const c = compile(graph, cpuDevice());
  try {
    const got = await g.run(inputs);
    const want = await c.run(inputs);
    const labels = g.lastPlan!.kernels.flatMap((k) => k.label.split("+"));
    assert.ok(labels.some((l) => label.test(l)), `${what}: kernels ${labels.join(", ")}`);
    assert.ok(g.lastPlan!.kernels.every((k) => k.target === "gpu"));
    const tol = dtype === "f16" ? 2e-2 : 2e-4;
    assertClose(got.y.data, want.y.data, tol, tol, what);
  } finally {
    g.dispose();
  }
}

interface Case {
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  batchA?: number[];
  batchB?: number[];
  dtype?: DType;
  fused?: boolean;
}

async function checkMatmul(c: Case, label: RegExp): Promise<void> {
  const dtype = c.dtype ?? "f32";
  const ba = c.batchA ?? [], bb = c.batchB ?? [];
  const aShape = [...ba, ...(c.transA ? [c.K, c.M] : [c.M, c.K])];
  const bShape = [...bb, ...(c.transB ? [c.N, c.K] : [c.K, c.N])];
  const g = new GraphBuilder();
  const a = g.input("a", aShape, dtype);
  const b = g.input("b", bShape, dtype);
  let y = (c.fused ? a.mul(0.5) : a).matmul(b, { transA: c.transA, transB: c.transB });
  if (c.fused) y = y.silu();
  g.output("y", y);
  const n = (s: number[]) => s.reduce((x, y) => x * y, 1);
  await check(
    g.build(),
    { a: randomData(n(aShape), dtype, 1), b: randomData(n(bShape), dtype, 2) },
    dtype,
    label,
    JSON.stringify(c),
  );
}

const TILED = /^matmul_gpu_t64x64x16_r4x4/;

Deno.test("gpu target matmul: ragged M, N, K and every transpose match the reference", async () => {
  const sizes: [number, number, number][] = [
    [17, 65, 130],
    [65, 130, 17],
    [130, 3, 64],
    [64, 64, 64],
    [3, 17, 1],
    [1, 130, 3],
    [130, 130, 65],
    [5, 1, 17],
  ];
  let i = 0;
  for (const [M, N, K] of sizes) {
    for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
      // M ≤ 4 with transB against a weight takes the GEMV, tested below.
      if (M <= 4 && transB && !transA) continue;
      if ((i++ % 2) && M * N * K > 100_000) continue; // keep lavapipe time down
      await checkMatmul({ M, N, K, transA, transB }, TILED);
    }
  }
});

Deno.test("gpu target matmul: vec4 and scalar tile loads, batched, broadcast, fused, f16", async () => {
  // vec4 loads on both operands (K and N multiples of 4) and on neither.
  await checkMatmul({ M: 65, N: 68, K: 36, transB: true }, /_va_vb$/);
  await checkMatmul({ M: 65, N: 68, K: 36 }, /_va_vb$/);
  await checkMatmul({ M: 65, N: 67, K: 37, transB: true }, /r4x4$/);
  // Batched with B broadcast and with both present; a fused prologue reads scalars.
  await checkMatmul({ M: 17, N: 65, K: 64, batchA: [3], transB: true }, TILED);
  await checkMatmul({ M: 17, N: 20, K: 33, batchA: [2, 3], batchB: [2, 3] }, TILED);
  await checkMatmul({ M: 66, N: 40, K: 24, transB: true, fused: true }, /r4x4_vb$/);
  // 128×64 blocks with 8×4 per invocation (M, N ≥ 256), vec4 and scalar loads.
  const BIG = /^matmul_gpu_t128x64x16_r8x4/;
  await checkMatmul({ M: 260, N: 257, K: 33, transB: true }, BIG);
  await checkMatmul({ M: 257, N: 260, K: 20, transA: true }, BIG);
  await checkMatmul({ M: 256, N: 256, K: 40, batchA: [2], transB: true }, BIG);
  await checkMatmul({ M: 260, N: 257, K: 24, transA: true, transB: true }, /r8x4_va_vb$/);
  const dev = await gpuTarget();
  if (!dev.caps.f16) return;
  await checkMatmul({ M: 260, N: 264, K: 36, transB: true, dtype: "f16" }, BIG);
  await checkMatmul({ M: 65, N: 130, K: 64, transB: true, dtype: "f16" }, /_va_vb$/);
  await checkMatmul({ M: 17, N: 3, K: 130, transA: true, dtype: "f16" }, TILED);
  await checkMatmul({ M: 33, N: 17, K: 65, batchA: [2], batchB: [2], dtype: "f16" }, TILED);
});

Deno.test("gpu target GEMV: 1–4 rows against an [N, K] weight, workgroup reduction over K", async () => {
  const cases: [number, number, number][] = [
    [1, 3, 4],
    [1, 130, 64],
    [2, 17, 1028], // K/4 = 257 vec4s: more than one stride of 128 invocations
    [1, 40, 400], // K/4 = 100: 64 invocations
    [3, 65, 132],
    [4, 130, 520],
  ];
  for (const [M, N, K] of cases) {
    await checkMatmul({ M, N, K, transB: true }, /^gemv_gpu_r\dx4_wg(32|64|128)$/);
  }
  await checkMatmul({ M: 2, N: 33, K: 64, transB: true, fused: true }, /^gemv_gpu_r2x4/);
  await checkMatmul({ M: 1, N: 17, K: 64, batchA: [3], transB: true }, /^gemv_gpu_r3x4/);
  const dev = await gpuTarget();
  if (!dev.caps.f16) return;
  await checkMatmul({ M: 1, N: 130, K: 516, transB: true, dtype: "f16" }, /^gemv_gpu_r1x4/);
  await checkMatmul({ M: 4, N: 17, K: 64, transB: true, dtype: "f16" }, /^gemv_gpu_r4x4/);
});

Deno.test("gpu target: a tiny Mixtral's prefill and decode agree with the cpu_raster kernels", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_gpu_kernels_" });
  try {
    await writeTinyMixtral(dir, { tokenizer: "none" });
    const shapedModel = await loadModel(dir, {
      device: await gpuTarget(),
      quiet: true,
      maxSeq: 64,
    });
    const raster = await loadModel(dir, { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      const labels = shapedModel.decode.plan({}).kernels.map((k) => k.label).join(" ");
      assert.match(labels, /gemv_gpu_r1x4/);
      const got = await shapedModel.forward(MOE_PROMPT);
      const want = await raster.forward(MOE_PROMPT);
      assert.ok(relMaxError(got, want) < 1e-4, `${relMaxError(got, want)}`);
      await assertDecodeMatchesForward(shapedModel, MOE_PROMPT, 6);
    } finally {
      shapedModel.dispose();
      raster.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gpu target rmsnorm and softmax: one workgroup per row at awkward widths", async () => {
  // The gpu table's row kernels (ops/rows_gpu.ts; tests/rows_gpu_test.ts covers
  // them in depth): a workgroup per row from 64 wide, an invocation per row below.
  const dev = await gpuTarget();
  for (const dtype of dev.caps.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
    for (const d of [1, 3, 17, 64, 65, 130, 4100]) {
      const rows = 5;
      const g = new GraphBuilder();
      const x = g.input("x", [rows, d], dtype);
      g.output("y", x.rmsnorm(g.input("w", [d], dtype), 1e-5));
      await check(
        g.build(),
        { x: randomData(rows * d, dtype, 3), w: randomData(d, dtype, 4) },
        dtype,
        d >= 64 ? /^rmsnorm_gpu_wg/ : /^rmsnorm_gpu_thread/,
        `rmsnorm ${dtype} d ${d}`,
      );
      const s = new GraphBuilder();
      s.output("y", s.input("x", [rows, d], dtype).softmax(-1));
      await check(
        s.build(),
        { x: randomData(rows * d, dtype, 5, -8, 8) },
        dtype,
        d >= 64 ? /^softmax_gpu_wg/ : /^softmax_gpu_thread/,
        `softmax ${dtype} d ${d}`,
      );
    }
  }
});
