/**
 * @file qmatmul and qgather on the WebGPU adapter: the kernels dequantize
 * llama.cpp blocks as they read them; checked against dequantizing on the CPU
 * (the codecs of core/quant, tested on their own in quant_formats_test.ts) and
 * multiplying in f64, on random weights, awkward row counts, fused prologues
 * and epilogues, f16 activations and weights split over bindings.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice, requestDevice } from "../runtime/device.ts";
import { dequantize } from "../core/quant/mod.ts";
import { GGML_TYPES, QUANT_FORMATS, type QuantFormat } from "../core/quant/formats.ts";
import { quantWords } from "../ops/quant/mod.ts";
import { BLOCK_CODECS } from "../ops/quant/block_codecs.ts";
import { assertClose, gpu, rng } from "./_util.ts";
import { testBlocks } from "./fixtures/quant_blocks.ts";
import { kernelTable, type KernelTableName } from "../core/kernel_tables.ts";

/** A quantized [rows, cols] weight (from random f32 through the codec) as u32 words. */
function weight(format: QuantFormat, rows: number, cols: number, seed: number) {
  const r = rng(seed);
  const f = Float32Array.from({ length: rows * cols }, () => (r() * 2 - 1) * (0.5 + r()));
  const bytes = testBlocks(format, f, r);
  const words = new Uint32Array(quantWords(format, rows, cols));
  new Uint8Array(words.buffer).set(bytes);
  return { words, dense: dequantize(format, bytes, rows * cols) };
}

/** x · Wᵀ in f64 from the dequantized weight. */
function expected(x: ArrayLike<number>, w: Float32Array, M: number, N: number, K: number) {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x[m * K + k] * w[n * K + k];
      y[m * N + n] = acc;
    }
  }
  return y;
}

const scaleOf = (y: ArrayLike<number>) => Math.max(...Array.from(y, Math.abs));

/**
 * Row counts each format runs: every one for the first formats; the later ones
 * (read by the same kernels through their own block readers, whose 1–4-row
 * decode cases BLOCK_CASES covers) one decode count and two prefill counts,
 * which keeps the suite's compile time in bounds.
 */
const ROW_COUNTS = (f: QuantFormat) =>
  ["q8_0", "q4_0", "q4_k", "q5_k", "q6_k"].includes(f) ? [1, 2, 3, 4, 5, 9, 17] : [3, 5, 17];

for (const format of QUANT_FORMATS) {
  Deno.test(`qmatmul ${format}: decode and prefill row counts against dequantize-then-matmul`, async () => {
    const dev = await gpu();
    const block = GGML_TYPES[format].blockElems;
    for (const [N, K] of [[5, block * 2], [13, Math.max(block * 3, 512)]]) {
      const { words, dense } = weight(format, N, K, N * 7 + K);
      for (const M of ROW_COUNTS(format)) {
        const g = new GraphBuilder();
        const x = g.input("x", [M, K]);
        const w = g.param("w", [words.length], "u32");
        const [y] = g.apply("qmatmul", [x, w], { format, rows: N, cols: K });
        g.output("y", y);
        const xs = Float32Array.from({ length: M * K }, rng(M * 31 + K));
        const exe = compile(g.build(), dev, { params: { w: words } });
        try {
          const got = (await exe.run({ x: xs })).y.data;
          const want = expected(xs, dense, M, N, K);
          const s = scaleOf(want);
          assertClose(got, want, 0, 2e-5 * s, `${format} M=${M} N=${N} K=${K}`);
        } finally {
          exe.dispose();
        }
      }
    }
  });
}

/**
 * Decode shapes (1–4 rows) that reach each way the block GEMV reads its
 * blocks (`ops/quant/block_words.ts`): whole aligned units, word-aligned units
 * at a runtime word offset, a block at a runtime 2-byte offset; vec4 loads or
 * single words (a weight not a whole number of vec4s); N not a multiple of the
 * rows an invocation owns, K of one block and of several, f16 activations, a
 * fused prologue and epilogue. (The decode tests above add 1–4 rows at
 * N = 5, 13 with K of 2–3 blocks.)
 */
const BLOCK_CASES: Record<string, [M: number, N: number, K: number, f16: boolean, how: RegExp][]> =
  {
    q8_0: [
      [1, 300, 512, false, /r1x16\b.*4 blocks an iteration, vec4<u32> loads, word offset/],
      [1, 8, 64, true, /2 blocks an iteration, vec4<u32> loads, word offset/],
      [1, 13, 64, false, /2 blocks an iteration, u32 loads, word offset/],
      [2, 24, 32, true, /1 block an iteration, vec4<u32> loads, offset at run time/],
      [3, 7, 96, false, /1 block an iteration, u32 loads, offset at run time/],
      [4, 40, 256, true, /r4x4\b.*vec4<u32> loads, offset at run time/],
    ],
    q4_0: [
      [1, 300, 512, false, /r1x16\b.*8 blocks an iteration, vec4<u32> loads,/],
      [1, 13, 128, true, /4 blocks an iteration, u32 loads, word offset/],
      [2, 24, 32, true, /1 block an iteration, vec4<u32> loads, offset at run time/],
      [3, 7, 96, false, /1 block an iteration, u32 loads, offset at run time/],
      [4, 40, 256, false, /r4x4\b.*vec4<u32> loads, offset at run time/],
    ],
    // Q4_1's 20-byte blocks: units of 8 (160 bytes) aligned, 2 word-aligned, 1 at a 0 or 4 offset.
    q4_1: [
      [1, 300, 512, false, /r1x16\b.*8 blocks an iteration, vec4<u32> loads,/],
      [1, 13, 64, true, /2 blocks an iteration, u32 loads, word offset/],
      [3, 7, 96, false, /1 block an iteration, u32 loads, word offset/],
      [4, 40, 256, true, /r4x4\b.*vec4<u32> loads/],
    ],
    // Q5_0's 22-byte blocks (fifth bits a bit array): every way, odd blocks at a 2-byte offset.
    q5_0: [
      [1, 300, 512, false, /r1x16\b.*8 blocks an iteration, vec4<u32> loads,/],
      [1, 13, 128, true, /4 blocks an iteration, u32 loads, word offset/],
      [2, 24, 32, true, /1 block an iteration, vec4<u32> loads, offset at run time/],
      [3, 7, 96, false, /1 block an iteration, u32 loads, offset at run time/],
      [4, 40, 256, false, /r4x4\b.*vec4<u32> loads/],
    ],
    q5_1: [
      [1, 300, 512, false, /r1x16\b.*8 blocks an iteration, vec4<u32> loads,/],
      [2, 13, 32, true, /1 block an iteration, u32 loads, word offset/],
      [3, 8, 96, false, /r3x4\b/],
    ],
    // Q2_K's 84-byte blocks: word-aligned; Q3_K's 110: at a 2-byte offset every other block.
    q2_k: [
      [1, 300, 512, false, /r1x16\b.*1 block an iteration, vec4<u32> loads, word offset/],
      [1, 13, 256, true, /1 block an iteration, u32 loads, word offset/],
      [3, 8, 512, false, /r3x4\b/],
    ],
    q3_k: [
      [1, 300, 512, false, /r1x16\b.*1 block an iteration, vec4<u32> loads, offset at run time/],
      [1, 13, 256, true, /1 block an iteration, u32 loads, offset at run time/],
      [2, 8, 256, false, /r2x4\b.*vec4<u32> loads, offset at run time/],
      [4, 9, 768, true, /r4x4\b/],
    ],
    // IQ4 levels from a polynomial of the code: Q4_0's layouts (IQ4_NL) and 136-byte blocks.
    iq4_nl: [
      [1, 300, 512, false, /r1x16\b.*8 blocks an iteration, vec4<u32> loads,/],
      [2, 24, 32, true, /1 block an iteration, vec4<u32> loads, offset at run time/],
      [3, 7, 96, false, /1 block an iteration, u32 loads, offset at run time/],
    ],
    iq4_xs: [
      [1, 300, 512, false, /r1x8\b.*2 blocks an iteration, vec4<u32> loads,/],
      [1, 13, 256, true, /1 block an iteration, u32 loads, word offset/],
      [4, 8, 512, false, /r4x4\b/],
    ],
    q5_k: [
      [1, 300, 512, false, /r1x16\b.*1 block an iteration, vec4<u32> loads,/],
      [2, 7, 256, true, /r2x4\b/],
      [4, 9, 256, true, /r4x4\b/],
    ],
    // ggml's newer formats (`block_codecs_low_bit.ts`): 54-, 66-, 18-, 17- and 36-byte blocks.
    tq1_0: [
      [1, 300, 2048, false, /r1x16\b.*2 blocks an iteration, vec4<u32> loads, word offset/],
      [1, 13, 256, true, /1 block an iteration, u32 loads, offset at run time/],
      [4, 40, 1024, false, /r4x4\b.*vec4<u32> loads, offset at run time/],
    ],
    tq2_0: [
      [1, 300, 2048, false, /r1x16\b.*2 blocks an iteration, vec4<u32> loads, word offset/],
      [3, 7, 768, true, /1 block an iteration, u32 loads, offset at run time/],
    ],
    q1_0: [
      [1, 300, 1024, false, /r1x16\b.*4 blocks an iteration, vec4<u32> loads, word offset/],
      [1, 13, 384, true, /1 block an iteration, u32 loads, offset at run time/],
      [2, 24, 128, false, /r2x4\b.*vec4<u32> loads, offset at run time/],
    ],
    q2_0: [
      [1, 300, 512, false, /r1x16\b.*4 blocks an iteration, vec4<u32> loads, word offset/],
      [1, 13, 192, true, /1 block an iteration, u32 loads, offset at run time/],
      [4, 40, 64, false, /r4x4\b.*vec4<u32> loads, offset at run time/],
    ],
    // MXFP4's 17-byte blocks: units of 4 or 8 blocks keep every unit word-aligned.
    mxfp4: [
      [1, 300, 512, false, /r1x16\b.*8 blocks an iteration, vec4<u32> loads, word offset/],
      [1, 13, 128, true, /4 blocks an iteration, u32 loads, word offset/],
      [4, 40, 384, false, /r4x4\b.*4 blocks an iteration, vec4<u32> loads, word offset/],
      [3, 7, 1024, true, /r3x4\b/],
    ],
    nvfp4: [
      [1, 300, 512, false, /r1x16\b.*4 blocks an iteration, vec4<u32> loads, each/],
      [1, 13, 192, true, /1 block an iteration, u32 loads, word offset/],
      [2, 24, 64, false, /r2x4\b.*vec4<u32> loads, word offset/],
    ],
    // The lattice formats (`block_codecs_lattice.ts`): grid points from the kernel's
    // constant table; 66-, 74-, 82-, 98-, 110-, 50- and 56-byte blocks.
    ...Object.fromEntries(
      ["iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"].map((f) => [f, [
        [1, 300, 512, false, /r1x8\b.*1 block an iteration, vec4<u32> loads/],
        [1, 13, 256, true, /r1x4\b.*u32 loads/],
        [3, 7, 768, false, /r3x4\b/],
        [4, 40, 256, true, /r4x4\b/],
      ]]),
    ),
    q6_k: [
      [1, 296, 256, false, /r1x12\b.*vec4<u32> loads, offset at run time/],
      [1, 13, 256, true, /u32 loads, offset at run time/],
      [2, 8, 256, true, /r2x4\b.*vec4<u32> loads, offset at run time/],
      [4, 16, 512, true, /r4x4\b.*vec4<u32> loads/],
    ],
  };

for (
  const [format, cases] of Object.entries(BLOCK_CASES) as [QuantFormat, typeof BLOCK_CASES.q8_0][]
) {
  Deno.test(`qmatmul ${format}: decode a block at a time, every way of reading the blocks`, async () => {
    const dev = await gpu();
    for (const [M, N, K, half, how] of cases) {
      if (half && !dev.caps.f16) continue;
      const dtype = half ? "f16" : "f32";
      // Small cases of 1–2 rows also take a fused prologue (activations through
      // in0_load, four scalar loads a vec4: long to compile for more rows) and epilogue.
      const fused = N < 16 && M <= 2;
      const { words, dense } = weight(format, N, K, M * 131 + N + K);
      const g = new GraphBuilder();
      const x = g.input("x", [M, K], dtype);
      const [y] = g.apply("qmatmul", [fused ? x.mul(2) : x, g.param("w", [words.length], "u32")], {
        format,
        rows: N,
        cols: K,
      });
      g.output("y", fused ? y.mul(0.5) : y);
      const r = rng(M * 7 + K);
      const xs = Float32Array.from({ length: M * K }, () => r() * 2 - 1);
      const xin = half ? Float16Array.from(xs) : xs;
      const exe = compile(g.build(), dev, { params: { w: words } });
      try {
        const got = (await exe.run({ x: xin })).y.data;
        const k = exe.lastPlan!.kernels[0];
        const what = `${format} M=${M} N=${N} K=${K} ${dtype}`;
        assert.match(k.label, new RegExp(`qgemv_${format}_blocks_r${M}x`), what);
        const gotHow = `${k.label}: ${k.choice?.reason}`;
        assert.match(gotHow, how, `${what}: ${gotHow}`);
        const want = expected(Array.from(xin), dense, M, N, K);
        const s = scaleOf(want);
        assertClose(got, want, half ? 2e-3 : 0, (half ? 2e-3 : 2e-5) * s, what);
      } finally {
        exe.dispose();
      }
    }
  });
}

Deno.test("qmatmul mxfp4: rows that are not whole units of four 17-byte blocks are read group by group", async () => {
  const dev = await gpu();
  for (const K of [32, 96, 160, 192]) {
    const { words, dense } = weight("mxfp4", 9, K, K);
    const g = new GraphBuilder();
    const [y] = g.apply("qmatmul", [g.input("x", [1, K]), g.param("w", [words.length], "u32")], {
      format: "mxfp4",
      rows: 9,
      cols: K,
    });
    g.output("y", y);
    const xs = Float32Array.from({ length: K }, rng(K));
    const exe = compile(g.build(), dev, { params: { w: words } });
    try {
      const got = (await exe.run({ x: xs })).y.data;
      assert.match(exe.lastPlan!.kernels[0].label, /^qmatmul_mxfp4_r1x4/, `K=${K}`);
      const want = expected(xs, dense, 1, 9, K);
      assertClose(got, want, 0, 2e-5 * scaleOf(want), `K=${K}`);
    } finally {
      exe.dispose();
    }
  }
});

Deno.test("qmatmul: the CPU reference equals dequantize-then-matmul", async () => {
  for (const format of QUANT_FORMATS) {
    const K = GGML_TYPES[format].blockElems * 2, N = 3, M = 2;
    const { words, dense } = weight(format, N, K, 5);
    const g = new GraphBuilder();
    const [y] = g.apply("qmatmul", [g.input("x", [M, K]), g.param("w", [words.length], "u32")], {
      format,
      rows: N,
      cols: K,
    });
    g.output("y", y);
    const xs = Float32Array.from({ length: M * K }, rng(9));
    const got = await compile(g.build(), cpuDevice(), { params: { w: words } }).run({ x: xs });
    assertClose(got.y.data, expected(xs, dense, M, N, K), 1e-5, 1e-5, format);
  }
});

Deno.test("qmatmul: after an rmsnorm, with a fused silu epilogue, f32 and f16 activations", async () => {
  const dev = await gpu();
  const N = 24, K = 256, M = 6;
  for (const format of ["q4_k", "q6_k", "q8_0"] as const) {
    const { words, dense } = weight(format, N, K, 11);
    for (const dtype of ["f32", "f16"] as const) {
      if (dtype === "f16" && !dev.caps.f16) continue;
      const g = new GraphBuilder();
      const x = g.input("x", [M, K], dtype);
      const nw = g.param("nw", [K], dtype);
      const [y] = g.apply("qmatmul", [
        x.rmsnorm(nw, 1e-5).mul(2),
        g.param("w", [words.length], "u32"),
      ], {
        format,
        rows: N,
        cols: K,
      });
      g.output("y", y.silu());
      const graph = g.build();
      const r = rng(3);
      const xs = Float32Array.from({ length: M * K }, () => r() * 4 - 2);
      const ns = Float32Array.from({ length: K }, () => 0.5 + r());
      const cast = (a: Float32Array) => dtype === "f16" ? Float16Array.from(a) : a;
      const exe = compile(graph, dev, { params: { w: words, nw: cast(ns) } });
      try {
        const run = await exe.run({ x: cast(xs) });
        // The norm is its own kernel (a reduction); the silu fuses into qmatmul.
        const kernels = exe.lastPlan!.kernels.map((k) => k.label);
        assert.equal(kernels.length, 2, `rmsnorm + fused qmatmul, got ${kernels.join(", ")}`);
        assert.match(kernels[1], /^qmatmul_.*\+1ew/);
        // Reference: the same normalisation and silu in f64 on the rounded inputs.
        const xin = Array.from(cast(xs)), nin = Array.from(cast(ns));
        const normed = new Float64Array(M * K);
        for (let m = 0; m < M; m++) {
          let ss = 0;
          for (let k = 0; k < K; k++) ss += xin[m * K + k] ** 2;
          const inv = 1 / Math.sqrt(ss / K + 1e-5);
          for (let k = 0; k < K; k++) {
            const v = xin[m * K + k] * inv * nin[k] * 2;
            normed[m * K + k] = dtype === "f16" ? Math.f16round(v) : v;
          }
        }
        const want = expected(normed, dense, M, N, K).map((v) => v / (1 + Math.exp(-v)));
        const tol = (dtype === "f16" ? 4e-3 : 2e-5) * scaleOf(want);
        assertClose(run.y.data, want, dtype === "f16" ? 2e-3 : 0, tol, `${format} ${dtype}`);
      } finally {
        exe.dispose();
      }
    }
  }
});

Deno.test("qmatmul: a weight over one binding is read in segments", async () => {
  // q8_0 [40, 256]: 10 880 bytes over 4 KiB bindings; q6_k's 210-byte blocks straddle them.
  const dev = await requestDevice({ limits: { maxBindingSize: 4096 } });
  try {
    for (const format of ["q8_0", "q6_k", "q4_0"] as const) {
      const N = 40, K = 256;
      const { words, dense } = weight(format, N, K, 21);
      for (const M of [1, 7]) {
        const g = new GraphBuilder();
        const [y] = g.apply(
          "qmatmul",
          [g.input("x", [M, K]), g.param("w", [words.length], "u32")],
          {
            format,
            rows: N,
            cols: K,
          },
        );
        g.output("y", y);
        const xs = Float32Array.from({ length: M * K }, rng(M));
        const exe = compile(g.build(), dev, { params: { w: words } });
        try {
          const got = (await exe.run({ x: xs })).y.data;
          const want = expected(xs, dense, M, N, K);
          assertClose(got, want, 0, 2e-5 * scaleOf(want), `${format} segmented M=${M}`);
        } finally {
          exe.dispose();
        }
      }
    }
  } finally {
    dev.destroy();
  }
});

Deno.test("qgather: quantized embedding rows by id; out-of-range ids read zeros", async () => {
  const dev = await gpu();
  for (const format of QUANT_FORMATS) {
    const V = 11, D = GGML_TYPES[format].blockElems * 2;
    const { words, dense } = weight(format, V, D, 17);
    const g = new GraphBuilder();
    const [e] = g.apply("qgather", [
      g.param("t", [words.length], "u32"),
      g.input("ids", [2, 4], "i32"),
    ], {
      format,
      rows: V,
      cols: D,
    });
    g.output("e", e);
    const ids = new Int32Array([0, 10, 3, -1, 11, 5, 5, 7]);
    const exe = compile(g.build(), dev, { params: { t: words } });
    try {
      const got = (await exe.run({ ids })).e;
      assert.deepEqual(got.shape, [2, 4, D]);
      const want = new Float32Array(8 * D);
      ids.forEach((id, r) => {
        if (id >= 0 && id < V) want.set(dense.subarray(id * D, (id + 1) * D), r * D);
      });
      assertClose(got.data, want, 1e-6, 1e-7, `qgather ${format}`);
    } finally {
      exe.dispose();
    }
  }
});

Deno.test("qmatmul: bad weights and shapes are refused by name", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [2, 64]);
  assert.throws(
    () =>
      g.apply("qmatmul", [x, g.param("w1", [10], "u32")], { format: "q8_0", rows: 2, cols: 64 }),
    (e: Error) => e instanceof TypeError && /u32\[34\]/.test(e.message),
  );
  assert.throws(
    () =>
      g.apply("qmatmul", [x, g.param("w2", [34], "u32")], {
        format: "q5_1" as "q8_0",
        rows: 2,
        cols: 64,
      }),
    (e: Error) => e instanceof TypeError && /q5_1/.test(e.message),
  );
  assert.throws(
    () =>
      g.apply("qmatmul", [x, g.param("w3", [144], "u32")], { format: "q4_k", rows: 2, cols: 64 }),
    (e: Error) => e instanceof RangeError && /256-element blocks/.test(e.message),
  );
  assert.throws(
    () =>
      g.apply("qmatmul", [g.input("x2", [2, 32]), g.param("w4", [34], "u32")], {
        format: "q8_0",
        rows: 2,
        cols: 64,
      }),
    (e: Error) => e instanceof RangeError && /64 columns/.test(e.message),
  );
});

Deno.test("qmatmul on a GPU-shaped device: decode GEMVs and tiles dequantized into workgroup memory, every format", async () => {
  const dev = await requestDevice({ limits: { cpuCores: 0 } });
  try {
    for (const format of QUANT_FORMATS) {
      const K = Math.max(256, GGML_TYPES[format].blockElems * 2);
      for (const [M, N] of [[1, 13], [2, 8], [5, 13], [64, 64], [100, 70]]) {
        const { words, dense } = weight(format, N, K, M + N);
        const g = new GraphBuilder();
        // A fused prologue on the activations (read through in0_load).
        const x = g.input("x", [M, K]).mul(2);
        const [y] = g.apply("qmatmul", [x, g.param("w", [words.length], "u32")], {
          format,
          rows: N,
          cols: K,
        });
        g.output("y", y);
        const xs = Float32Array.from({ length: M * K }, rng(M * 3 + N));
        const exe = compile(g.build(), dev, { params: { w: words } });
        try {
          const got = (await exe.run({ x: xs })).y.data;
          // Decode rows: the block GEMV with 4 rows an invocation (Q4_K's own; the
          // formats without a block codec, read group by group, the group-wise GEMV);
          // else tiles.
          const decode = BLOCK_CODECS[format] || format === "q4_k"
            ? `qgemv_${format}_blocks`
            : `qmatmul_${format}`;
          assert.match(
            exe.lastPlan!.kernels[0].label,
            M > 4 ? /^prologue\+qgemm_/ : new RegExp(`^prologue\\+${decode}_r${M}x4`),
          );
          const want = expected(xs.map((v) => 2 * v), dense, M, N, K);
          assertClose(got, want, 0, 2e-5 * scaleOf(want), `gpu ${format} M=${M} N=${N}`);
        } finally {
          exe.dispose();
        }
      }
    }
  } finally {
    dev.destroy();
  }
});

Deno.test("lattice codebooks: one constant table buffer a plan, uniform on a CPU adapter, read-only storage on a GPU", async () => {
  for (
    const [dev, access] of [[await gpu(), "uniform"], [
      await requestDevice({ limits: { cpuCores: 0 } }),
      "read",
    ]] as const
  ) {
    const g = new GraphBuilder();
    const x = g.input("x", [1, 256]);
    const wa = weight("iq2_xxs", 8, 256, 1), wb = weight("iq2_xxs", 8, 256, 2);
    const wc = weight("iq1_s", 8, 256, 3);
    const apply = (f: QuantFormat, name: string, len: number) =>
      g.apply("qmatmul", [x, g.param(name, [len], "u32")], { format: f, rows: 8, cols: 256 })[0];
    const ya = apply("iq2_xxs", "a", wa.words.length), yb = apply("iq2_xxs", "b", wb.words.length);
    g.output("y", ya.add(yb).add(apply("iq1_s", "c", wc.words.length)));
    const exe = compile(g.build(), dev, { params: { a: wa.words, b: wb.words, c: wc.words } });
    try {
      const xs = Float32Array.from({ length: 256 }, rng(5));
      const got = (await exe.run({ x: xs })).y.data;
      const want = expected(xs, wa.dense.map((v, i) => v + wb.dense[i] + wc.dense[i]), 1, 8, 256);
      assertClose(got, want, 0, 2e-5 * scaleOf(want), `tables on ${access}`);
      const plan = exe.lastPlan!;
      const tables = plan.slots.flatMap((s, i) => s.table ? [[s.table, i] as const] : []);
      assert.deepEqual(tables.map(([t]) => t).sort(), ["iq1s", "iq2xxs"]);
      for (const [t, slot] of tables) {
        assert.equal(plan.slots[slot].kind, "const");
        const users = plan.kernels.filter((k) => k.bindings.some((b) => b.slot === slot));
        assert.equal(users.length, t === "iq2xxs" ? 2 : 1, t);
        for (const k of users) {
          assert.equal(k.bindings.find((b) => b.slot === slot)!.access, access);
          assert.match(
            k.code,
            access === "uniform" ? /var<uniform> table_/ : /var<storage, read> table_/,
          );
        }
      }
    } finally {
      exe.dispose();
      if (access === "read") dev.destroy();
    }
  }
});

/**
 * SHA-256 of ggml's lattice grids (`iq2xxs_grid` … `iq1s_grid` in ggml-common.h,
 * ggml d99724f2) as little-endian bytes, IQ1's int8 levels plus one, padded with
 * zeros to 16 bytes: computed from ggml's source, not from Kiln.
 */
const GGML_GRID_SHA256: Record<KernelTableName, string> = {
  iq2xxs: "05826b5d3e472a3a78f196be62ac78acf81df0f909626e12ab9fa2a5d490dd54",
  iq2xs: "06e47aaca60b4dc1d9b5a3f34540437058a6b142b4d7a59d5ded769b4d1bf1de",
  iq2s: "e1aa1473412b0552c2174c30ef22ab4073f6a181b85a17056e8249bd2932fd88",
  iq3xxs: "46e35f5a997efdee6c99ce57854c8a0d4f0ff8ca57e5e8a60c0793ea580acf5d",
  iq3s: "bd1af4945a1717c65610b0284e4628b9a1ba3b306fae3a06f6e5f597356e349f",
  iq1s: "bf92c60e2ed15644d2d948b652a55624cc35699ef5c8e0337258e332f8c47b48",
};

Deno.test("kernel tables: ggml's grids as level bytes, and an unknown name refused", async () => {
  for (const [name, want] of Object.entries(GGML_GRID_SHA256) as [KernelTableName, string][]) {
    const t = kernelTable(name);
    assert.equal(t.length % 4, 0, name);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", t.slice()));
    assert.equal(Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""), want, name);
  }
  // Two entries read off ggml-common.h: iq2xxs_grid[1] = 0x080808080808082b, iq3s_grid[1] = 0x01010103.
  assert.deepEqual([...kernelTable("iq2xxs").subarray(2, 4)], [0x0808082b, 0x08080808]);
  assert.equal(kernelTable("iq3s")[1], 0x01010103);
  assert.throws(() => kernelTable("iq9" as "iq1s"), {
    name: "RangeError",
    message: /Unknown kernel table "iq9"/,
  });
});
