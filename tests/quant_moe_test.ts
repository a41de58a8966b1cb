/**
 * @file The `moe` op with block-quantized expert weights: every path (decode
 * GEMVs, prefill grouped GEMMs, the dense baseline), slot tables, weights over
 * one binding and a W2 format differing from W1/W3's — against the same layer
 * with f32 weights holding the dequantized values, on the GPU and the CPU
 * reference.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice, requestDevice } from "../runtime/device.ts";
import { moe, moeDense } from "../models/moe.ts";
import { dequantize } from "../core/quant/mod.ts";
import type { QuantFormat } from "../core/quant/formats.ts";
import { quantRowBytes, quantWords } from "../ops/quant/mod.ts";
import { assertClose, gpu, rng } from "./_util.ts";
import { testBlocks } from "./fixtures/quant_blocks.ts";
import type { GpuDevice } from "../runtime/device.ts";

/** E experts of [rows, cols] quantized: u32 slabs (word padded) and their f32 values. */
function experts(format: QuantFormat, E: number, rows: number, cols: number, seed: number) {
  const r = rng(seed);
  const words = quantWords(format, rows, cols);
  const q = new Uint32Array(E * words);
  const dense = new Float32Array(E * rows * cols);
  for (let e = 0; e < E; e++) {
    const f = Float32Array.from({ length: rows * cols }, () => (r() * 2 - 1) / Math.sqrt(cols));
    const bytes = testBlocks(format, f, r);
    assert.equal(bytes.length, rows * quantRowBytes(format, cols));
    new Uint8Array(q.buffer, e * words * 4, bytes.length).set(bytes);
    dense.set(dequantize(format, bytes, rows * cols), e * rows * cols);
  }
  return { q, dense };
}

interface Case {
  T: number;
  d: number;
  ff: number;
  E: number;
  k: number;
  f: QuantFormat;
  f2?: QuantFormat;
  dense?: boolean;
  slots?: boolean;
}

async function check(c: Case, dev: GpuDevice): Promise<string[]> {
  const { T, d, ff, E, k } = c;
  const f2 = c.f2 ?? c.f;
  const w1 = experts(c.f, E, ff, d, 1), w3 = experts(c.f, E, ff, d, 2);
  const w2 = experts(f2, E, d, ff, 3);
  const router = Float32Array.from({ length: E * d }, rng(4));
  const xs = Float32Array.from({ length: T * d }, rng(6)).map((v) => v * 2 - 1);
  // Slots: experts live in a pool in reverse order behind a slot table.
  const perm = c.slots ? Array.from({ length: E }, (_, e) => E - 1 - e) : undefined;
  const pool = (w: { q: Uint32Array; dense: Float32Array }, per: number, words: number) => {
    if (!perm) return w;
    const q = new Uint32Array(w.q.length), dense = new Float32Array(w.dense.length);
    perm.forEach((s, e) => {
      q.set(w.q.subarray(e * words, (e + 1) * words), s * words);
      dense.set(w.dense.subarray(e * per, (e + 1) * per), s * per);
    });
    return { q, dense };
  };
  const p1 = pool(w1, ff * d, quantWords(c.f, ff, d)),
    p3 = pool(w3, ff * d, quantWords(c.f, ff, d));
  const p2 = pool(w2, ff * d, quantWords(f2, d, ff));
  const build = (quant: boolean) => {
    const g = new GraphBuilder();
    const xin = g.input("x", [T, d]);
    const o = {
      name: "m",
      experts: E,
      topK: k,
      ff,
      ...(quant ? { weightFormat: c.f, w2Format: f2 } : {}),
      ...(c.slots ? { slots: { count: E, pool: "pool" } } : {}),
    };
    g.output("y", (c.dense ? moeDense : moe)(g, xin, o).y);
    return g.build();
  };
  const prefix = c.slots ? "pool" : "m";
  const table: Record<string, Uint32Array> = perm ? { "m.slot_table": Uint32Array.from(perm) } : {};
  const qParams: Record<string, Float32Array | Uint32Array> = {
    "m.router": router,
    [`${prefix}.w1`]: p1.q,
    [`${prefix}.w3`]: p3.q,
    [`${prefix}.w2`]: p2.q,
    ...table,
  };
  const dParams: Record<string, Float32Array | Uint32Array> = {
    "m.router": router,
    [`${prefix}.w1`]: p1.dense,
    [`${prefix}.w3`]: p3.dense,
    [`${prefix}.w2`]: p2.dense,
    ...table,
  };
  const want =
    (await compile(build(false), cpuDevice(), { params: dParams }).run({ x: xs })).y.data;
  const cpu = (await compile(build(true), cpuDevice(), { params: qParams }).run({ x: xs })).y.data;
  const what = JSON.stringify(c);
  assertClose(cpu, want, 1e-4, 1e-5, `${what}: CPU reference`);
  const exe = compile(build(true), dev, { params: qParams });
  try {
    const got = (await exe.run({ x: xs })).y.data;
    assertClose(got, want, 2e-4, 2e-5, `${what}: GPU`);
    return exe.lastPlan!.kernels.map((kk) => kk.label);
  } finally {
    exe.dispose();
  }
}

Deno.test("moe q-experts: decode, prefill and dense paths in every format", async () => {
  const dev = await gpu();
  for (const f of ["q8_0", "q4_0", "q4_k", "q5_k", "q6_k"] as const) {
    const big = f.endsWith("_k");
    const d = big ? 256 : 64, ff = big ? 256 : 96;
    for (const T of [1, 3, 13]) {
      const labels = await check({ T, d, ff, E: 4, k: 2, f }, dev);
      assert.ok(labels.some((l) => l.includes(`_${f}`)), `${f} kernels: ${labels.join(", ")}`);
      // A CPU adapter's decode GEMVs read the other formats a block at a time.
      const blocks = labels.filter((l) => /moe_decode_gemv[12]_\w+_blocks/.test(l)).length;
      const want = T <= 4 && f !== "q4_k" && dev.caps.cpuCores > 0 ? 2 : 0;
      assert.equal(blocks, want, `${f} T ${T}: ${labels.join(", ")}`);
    }
    await check({ T: 5, d, ff, E: 3, k: 2, f, dense: true }, dev);
  }
});

Deno.test("moe q-experts: Q4_1, Q5_0, Q5_1 (llama-quantize's Q4_K/Q5_K fallbacks), Q2_K, Q3_K, IQ4_XS, IQ4_NL", async () => {
  const dev = await gpu();
  for (const f of ["q4_1", "q5_0", "q5_1"] as const) {
    for (const T of [1, 13]) {
      const labels = await check({ T, d: 96, ff: 64, E: 4, k: 2, f }, dev);
      const blocks = labels.filter((l) => /moe_decode_gemv[12]_\w+_blocks/.test(l)).length;
      assert.equal(blocks, T === 1 && dev.caps.cpuCores > 0 ? 2 : 0, labels.join(", "));
    }
  }
  // Q2_K, Q3_K, IQ4_XS (Q2_K, Q3_K_M and IQ4_XS files); IQ4_NL (their fallback).
  for (const f of ["q2_k", "q3_k", "iq4_xs", "iq4_nl"] as const) {
    for (const T of [1, 9]) {
      const labels = await check({ T, d: 256, ff: 256, E: 4, k: 2, f }, dev);
      const blocks = labels.filter((l) => /moe_decode_gemv[12]_\w+_blocks/.test(l)).length;
      const want = T === 1 && dev.caps.cpuCores > 0 ? 2 : 0;
      assert.equal(blocks, want, labels.join(", "));
    }
  }
  // Q5_0 W2 beside Q4_K W1/W3: a Q4_K_M file whose ffn width is not whole super-blocks.
  await check({ T: 1, d: 256, ff: 96, E: 4, k: 2, f: "q4_k", f2: "q5_0" }, dev);
  await check({ T: 5, d: 64, ff: 96, E: 3, k: 2, f: "q5_1", dense: true }, dev);
});

Deno.test("moe q-experts: the lattice formats (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M), blocks for decode, groups for prefill", async () => {
  const dev = await gpu();
  const formats = ["iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"] as const;
  const blocks = (labels: string[]) => labels.some((l) => /moe_decode_gemv\d?_\w+_blocks/.test(l));
  for (const [i, f] of formats.entries()) {
    // Decode and prefill, one each per format (alternating) to bound the compile time.
    const T = i % 2 ? 1 : 9;
    const labels = await check({ T, d: 256, ff: 256, E: 3, k: 2, f }, dev);
    assert.ok(labels.some((l) => l.includes(`_${f}`)), `${f} kernels: ${labels.join(", ")}`);
    assert.equal(blocks(labels), T === 1 && dev.caps.cpuCores > 0, labels.join(", "));
  }
  // An IQ2_XXS file keeps some experts' W2 in IQ3_XXS (two codebook tables in one
  // plan); dense FFN in IQ1_M.
  const mixed = await check(
    { T: 1, d: 256, ff: 256, E: 3, k: 2, f: "iq2_xxs", f2: "iq3_xxs" },
    dev,
  );
  assert.ok(blocks(mixed), mixed.join(", "));
  await check({ T: 5, d: 256, ff: 256, E: 3, k: 2, f: "iq1_m", dense: true }, dev);
});

Deno.test("moe q-experts: the low-bit formats (TQ1_0, TQ2_0, Q1_0, Q2_0, MXFP4, NVFP4), group by group", async () => {
  const dev = await gpu();
  const formats = ["tq1_0", "tq2_0", "q1_0", "q2_0", "mxfp4", "nvfp4"] as const;
  for (const [i, f] of formats.entries()) {
    const labels = await check({ T: i % 2 ? 1 : 9, d: 256, ff: 256, E: 3, k: 2, f }, dev);
    assert.ok(labels.some((l) => l.includes(`_${f}`)), `${f} kernels: ${labels.join(", ")}`);
  }
  // MXFP4_MOE files: MXFP4 experts with rows of an odd number of 17-byte blocks
  // (d = 96: 51 bytes a row), so rows start at every byte offset; Q8_0 dense FFN.
  await check({ T: 1, d: 96, ff: 160, E: 4, k: 2, f: "mxfp4" }, dev);
  await check({ T: 7, d: 96, ff: 160, E: 4, k: 2, f: "mxfp4" }, dev);
  await check({ T: 5, d: 256, ff: 256, E: 3, k: 2, f: "nvfp4", dense: true }, dev);
});

Deno.test("moe q-experts: Q6_K W2 beside Q4_K W1/W3 (Q4_K_M), and a slot table", async () => {
  const dev = await gpu();
  for (const T of [1, 9]) {
    const labels = await check({ T, d: 256, ff: 512, E: 4, k: 2, f: "q4_k", f2: "q6_k" }, dev);
    // W2's Q6_K decode GEMV reads blocks on a CPU adapter; W1/W3 take the Q4_K kernel.
    const q6 = labels.some((l) => /moe_decode_gemv2_\w+_blocks/.test(l));
    assert.equal(q6, T === 1 && dev.caps.cpuCores > 0, labels.join(", "));
    await check({ T, d: 64, ff: 64, E: 4, k: 2, f: "q8_0", slots: true }, dev);
  }
});

Deno.test("moe q-experts: weights over one binding are read in segments", async () => {
  // 8 experts × [96, 64] q8_0: 6528 bytes each, 52 KB a matrix over 12 KiB bindings;
  // 4 × [256, 256] q6_k (210-byte blocks straddle the bindings) over 32 KiB.
  for (
    const [limit, c] of [
      [12288, { T: 1, d: 64, ff: 96, E: 8, k: 2, f: "q8_0" }],
      [12288, { T: 5, d: 64, ff: 96, E: 8, k: 1, f: "q8_0" }],
      [32768, { T: 6, d: 256, ff: 256, E: 4, k: 1, f: "q6_k" }],
      [12288, { T: 2, d: 64, ff: 96, E: 8, k: 2, f: "q4_0" }],
      // Q5_0's 22-byte blocks straddle the bindings too.
      [12288, { T: 1, d: 64, ff: 96, E: 8, k: 2, f: "q5_0" }],
      // MXFP4's 17-byte blocks (rows of 34 and 51 bytes) straddle them at odd offsets.
      [12288, { T: 1, d: 64, ff: 96, E: 8, k: 2, f: "mxfp4" }],
      [12288, { T: 5, d: 64, ff: 96, E: 8, k: 2, f: "mxfp4" }],
      // Q4_K is read as vec4<u32> super-blocks: segments of vec4s.
      [32768, { T: 1, d: 256, ff: 256, E: 4, k: 2, f: "q4_k" }],
      [32768, { T: 6, d: 256, ff: 256, E: 4, k: 1, f: "q4_k" }],
    ] as const
  ) {
    const dev = await requestDevice({ limits: { maxBindingSize: limit } });
    try {
      const labels = await check(c, dev);
      // Weights in segments keep the group-wise decode GEMVs (block loops through
      // segment readers compile for minutes).
      assert.ok(!labels.some((l) => l.includes("_blocks")), labels.join(", "));
    } finally {
      dev.destroy();
    }
  }
});

Deno.test("moe q-experts on a GPU-shaped device: decode and prefill, a format of each family", async () => {
  const dev = await requestDevice({ limits: { cpuCores: 0 } });
  try {
    const formats = ["q4_k", "q6_k", "iq4_xs", "iq2_xxs", "mxfp4", "tq2_0"] as const;
    for (const [i, f] of formats.entries()) {
      const labels = await check({ T: i % 2 ? 1 : 9, d: 256, ff: 256, E: 3, k: 2, f }, dev);
      assert.ok(labels.some((l) => l.includes(`_${f}`)), `${f} kernels: ${labels.join(", ")}`);
    }
  } finally {
    dev.destroy();
  }
});

Deno.test("moe q-experts: wrong weight words are refused by name", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [2, 64]);
  assert.throws(
    () =>
      g.apply("moe", [
        x,
        g.param("r", [2, 64]),
        g.param("w1", [2, 100], "u32"),
        g.param("w3", [2, 100], "u32"),
        g.param("w2", [2, 100], "u32"),
      ], {
        experts: 2,
        topK: 1,
        router: "softmax_topk",
        normTopk: true,
        routedScaling: 1,
        capacityFactor: 0,
        dense: false,
        weightFormat: "q8_0",
        ff: 64,
      }),
    (e: Error) =>
      e instanceof TypeError &&
      /q8_0 w1 must be u32\[experts, words\] = u32\[2, 1088\]/.test(e.message),
  );
});
