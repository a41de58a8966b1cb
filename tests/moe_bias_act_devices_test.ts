/**
 * GPT-OSS experts (`expertBias`, `swiglu_oai`) on the lowerings beyond the
 * portable f32 kernels, each against the float64 reference: the `gpu`
 * target's kernels (lavapipe posing as a GPU, `cpuCores: 0`: workgroup GEMVs
 * with tree or subgroup reductions, workgroup-tiled grouped GEMMs, slot
 * tables, f16), block-quantized expert weights (Q8_0, Q4_K, MXFP4 — GPT-OSS's
 * own format — on the decode, prefill and dense paths, with a slot table and
 * a W2 format of its own), and expert weights over one storage binding (read
 * in segments, and split into launches by slabs).
 */
import assert from "node:assert/strict";
import { requestDevice } from "../runtime/device.ts";
import type { Plan } from "../compiler/plan_types.ts";
import { gpu } from "./_util.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";
import { type BiasActCase, runCase } from "./fixtures/moe_bias_act.ts";

const has = (labels: string[], re: RegExp) =>
  labels.flatMap((l) => l.split("+")).some((l) => re.test(l.replace(/^moe:/, "")));

Deno.test("moe bias/act on the gpu target: GEMVs (tree and subgroups), grouped GEMMs, slots, f16", async () => {
  const cases: (BiasActCase & { subgroups?: boolean })[] = [
    { T: 1, d: 20, ff: 12, E: 4, k: 2, seed: 1 },
    { T: 3, d: 36, ff: 24, E: 6, k: 3, limit: 0.5, alpha: 1, seed: 2 },
    { T: 7, d: 20, ff: 12, E: 4, k: 2, seed: 3 },
    { T: 33, d: 36, ff: 24, E: 6, k: 3, limit: 0.5, alpha: 1, seed: 4 },
    { T: 2, d: 18, ff: 10, E: 5, k: 2, seed: 5 }, // scalar loads
    { T: 13, d: 18, ff: 10, E: 5, k: 2, seed: 6 },
    { T: 2, d: 264, ff: 40, E: 4, k: 2, seed: 7 }, // 128-wide GEMV 1 workgroup
    { T: 2, d: 20, ff: 12, E: 4, k: 2, subgroups: true, seed: 8 },
    { T: 13, d: 36, ff: 24, E: 6, k: 2, subgroups: true, seed: 9 },
    { T: 3, d: 20, ff: 12, E: 5, k: 2, slots: 3, seed: 10 },
    { T: 13, d: 20, ff: 12, E: 5, k: 2, slots: 3, seed: 11 },
    { T: 3, d: 20, ff: 12, E: 5, k: 2, activation: "swiglu", seed: 12 },
    { T: 13, d: 20, ff: 12, E: 5, k: 2, bias: false, mask: true, residual: true, seed: 13 },
    { T: 2, d: 20, ff: 12, E: 5, k: 2, router: "sigmoid_bias", residual: true, seed: 14 },
    { T: 1, d: 20, ff: 12, E: 4, k: 2, dtype: "f16", seed: 15 },
    { T: 13, d: 20, ff: 12, E: 4, k: 2, dtype: "f16", seed: 16 },
  ];
  for (const c of cases) {
    const dev = await gpuTarget(c.subgroups ?? false);
    if (c.dtype === "f16" && !dev.caps.f16) continue;
    const { labels } = await runCase(c, dev, "gpu target");
    const want = c.T <= 4
      ? [/^moe_gpu_decode_gemv1_/, /^moe_gpu_decode_gemv2_/]
      : [/^moe_gpu_grouped_gemm1_/, /^moe_gpu_grouped_gemm2_/];
    for (const re of want) assert.ok(has(labels, re), `${JSON.stringify(c)}: ${labels.join(", ")}`);
  }
  // The portable fallbacks of the gpu target: capacity drops, the dense baseline.
  const dev = await gpuTarget(false);
  const cap = await runCase(
    { T: 33, d: 20, ff: 12, E: 4, k: 2, capacityFactor: 0.5, seed: 17 },
    dev,
    "gpu target capacity",
  );
  assert.ok(has(cap.labels, /^moe_grouped_gemm1_/), cap.labels.join(", "));
  await runCase({ T: 7, d: 20, ff: 12, E: 4, k: 2, dense: true, seed: 18 }, dev, "gpu dense");
});

Deno.test("moe bias/act: block-quantized experts (Q8_0, Q4_K, MXFP4) on every path", async () => {
  const dev = await gpu();
  const layers: Omit<BiasActCase, "T" | "seed">[] = [
    { d: 64, ff: 96, E: 4, k: 2, format: "q8_0" },
    { d: 256, ff: 256, E: 3, k: 2, format: "q4_k", limit: 0.5, alpha: 1 },
    { d: 96, ff: 160, E: 4, k: 3, format: "mxfp4" }, // odd 17-byte blocks a row
  ];
  let seed = 20;
  for (const layer of layers) {
    for (const T of [1, 3, 9]) {
      const { labels } = await runCase({ ...layer, T, seed: seed++ }, dev, "quant");
      assert.ok(labels.some((l) => l.includes(`_${layer.format}`)), labels.join(", "));
    }
    await runCase({ ...layer, T: 5, dense: true, seed: seed++ }, dev, "quant dense");
  }
  // A slot table with an absent expert, and Q6_K W2 beside Q4_K W1/W3 (a Q4_K_M file).
  for (const T of [1, 9]) {
    await runCase(
      { T, d: 64, ff: 64, E: 4, k: 2, format: "q8_0", slots: 3, seed: 40 + T },
      dev,
      "quant slots",
    );
  }
  await runCase(
    { T: 13, d: 64, ff: 96, E: 4, k: 2, format: "mxfp4", capacityFactor: 0.5, seed: 50 },
    dev,
    "quant capacity",
  );
});

Deno.test("moe bias/act: quantized experts on the gpu target (portable fallback)", async () => {
  const dev = await requestDevice({ limits: { cpuCores: 0 } });
  try {
    for (const [T, format] of [[1, "mxfp4"], [9, "mxfp4"], [2, "q4_k"]] as const) {
      const d = format === "q4_k" ? 256 : 64;
      await runCase({ T, d, ff: d, E: 3, k: 2, format, seed: 60 + T }, dev, "quant gpu");
    }
  } finally {
    dev.destroy();
  }
});

/** Param bindings of the kernels whose label matches. */
function paramBindings(plan: Plan, label: RegExp): number[] {
  return plan.kernels.filter((k) => label.test(k.label)).map((k) =>
    k.bindings.filter((b) => plan.slots[b.slot].kind === "param").length
  );
}

Deno.test("moe bias/act: expert weights over one binding, in segments and split by slabs", async () => {
  // 8 experts of [36, 100]: 115 200 bytes a weight over 16 KiB bindings.
  const base = { d: 100, ff: 36, E: 8, k: 2 };
  for (const dtype of ["f32", "f16"] as const) {
    const dev = await requestDevice({ limits: { maxBindingSize: 16384 } });
    try {
      if (dtype === "f16" && !dev.caps.f16) continue;
      for (const [T, dense] of [[6, false], [3, false], [7, true]] as const) {
        const c = { ...base, T, dtype, dense, seed: 70 + T };
        const { labels, plan } = await runCase(c, dev, "segments");
        const gemm1 = dense ? /dense_gemm1/ : T > 4 ? /grouped_gemm1/ : /decode_gemv1/;
        assert.ok(has(labels, gemm1), labels.join(", "));
        // w1 and w3 each in several segments.
        assert.ok(paramBindings(plan, gemm1).every((n) => n > 2), labels.join(", "));
      }
      await runCase({ d: 99, ff: 37, E: 7, k: 2, T: 5, dtype, seed: 80 }, dev, "segments odd");
    } finally {
      dev.destroy();
    }
  }
  // Ten storage buffers: with three bias buffers beside them, the expert kernels split.
  const dev = await requestDevice({ limits: { maxBindingSize: 16384, maxStorageBuffers: 10 } });
  try {
    const pre = await runCase({ ...base, T: 8, seed: 81 }, dev, "split");
    assert.ok(
      pre.labels.filter((l) => /grouped_gemm1.*_slabs/.test(l)).length > 1,
      pre.labels.join(),
    );
    assert.ok(
      pre.labels.filter((l) => /grouped_gemm2.*_slabs/.test(l)).length > 1,
      pre.labels.join(),
    );
    const dec = await runCase({ ...base, T: 2, dtype: "f16", seed: 82 }, dev, "split decode");
    assert.ok(dec.labels.some((l) => /decode_gemv1.*_slabs/.test(l)), dec.labels.join());
  } finally {
    dev.destroy();
  }
  // Quantized weights in segments.
  for (const [T, format] of [[1, "q8_0"], [5, "mxfp4"]] as const) {
    const q = await requestDevice({ limits: { maxBindingSize: 12288 } });
    try {
      await runCase({ T, d: 64, ff: 96, E: 8, k: 2, format, seed: 90 + T }, q, "quant segments");
    } finally {
      q.destroy();
    }
  }
});
