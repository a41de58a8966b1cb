/**
 * Gradients of the Mamba path: `selective_scan` and `conv1d_causal` against
 * central finite differences (float64 CPU references) and on the GPU; the
 * scan's reverse chunked backward at a larger size, chunked vs small-chunk vs
 * one chunk, against the CPU reference's gradient; and the plan of a
 * training-like graph holding no `[B, L, I, N]` buffer.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { Tensor } from "../compiler/tensor.ts";
import type { HostArray } from "../core/dtype.ts";
import { conv1dCausal, type ScanOptions, selectiveScan } from "../models/mamba.ts";
import { opDef } from "../ops/registry.ts";
import { scanAttrs } from "../ops/ssm/attrs.ts";
import { cpuDevice, requestDevice } from "../runtime/device.ts";
import { compile } from "../runtime/executable.ts";
import { assertClose, gpu, largestTensor, randomData, rng } from "./_util.ts";
import { checkGrad, type CheckInput } from "./grad_check.ts";

interface Case {
  B: number;
  L: number;
  I: number;
  N: number;
  gate?: boolean;
  bias?: boolean;
  softplus?: boolean;
  h0?: boolean;
  /** What reaches the loss: y (default), the final state, or both. */
  out?: "y" | "h" | "both";
  chunk?: number;
}

/** A = −(1 … N)·(0.5 … 1.5), as Mamba's S4D-real init: a decaying state. */
function negA(I: number, N: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: I * N }, (_, j) => -((j % N) + 1) * (0.5 + r()) / N);
}

function scanInputs(c: Case): Record<string, CheckInput> {
  const { B, L, I, N } = c;
  const inputs: Record<string, CheckInput> = {
    u: { shape: [B, L, I] },
    dt: { shape: [B, L, I] },
    A: { shape: [I, N], data: negA(I, N, 3) },
    Bm: { shape: [B, L, N] },
    Cm: { shape: [B, L, N] },
    D: { shape: [I] },
  };
  if (c.gate) inputs.z = { shape: [B, L, I] };
  if (c.bias) inputs.bias = { shape: [I] };
  if (c.h0) inputs.h0 = { shape: [B, I, N] };
  return inputs;
}

function scanOf(c: Case) {
  return (x: Record<string, Tensor>): Tensor => {
    const opts: ScanOptions = {
      softplus: c.softplus ?? true,
      finalState: c.out === "h" || c.out === "both",
      chunk: c.chunk,
    };
    if (c.gate) opts.z = x.z;
    if (c.bias) opts.deltaBias = x.bias;
    if (c.h0) opts.initialState = x.h0;
    const [y, h] = selectiveScan(x.u, x.dt, x.A, x.Bm, x.Cm, x.D, opts);
    if (c.out === "h") return h;
    if (c.out === "both") return y.sum(1).add(h.mean(2));
    return y;
  };
}

Deno.test("grad: selective_scan, every operand and attribute, against finite differences", async () => {
  const base = { B: 2, L: 7, I: 5, N: 3 };
  const cases: Case[] = [
    { ...base },
    { ...base, gate: true, bias: true, h0: true, out: "both", chunk: 2 },
    { ...base, softplus: false, h0: true, out: "h", chunk: 3 },
    { ...base, gate: true, chunk: 1 },
    { B: 1, L: 9, I: 6, N: 4, gate: true, bias: true, chunk: 4 },
    // I a multiple of 4: a thread's channels go as vec4 groups.
    { B: 2, L: 7, I: 8, N: 4, gate: true, bias: true, h0: true, out: "both", chunk: 3 },
    // vec4 channel groups with a state size that is not: scalar B/C rows and dB/dC sums.
    { B: 1, L: 6, I: 8, N: 3, gate: true, softplus: false, out: "both", chunk: 4 },
  ];
  for (const c of cases) {
    await checkGrad(`selective_scan ${JSON.stringify(c)}`, scanInputs(c), scanOf(c), {
      gpuTol: 5e-4,
    });
  }
});

Deno.test("grad: conv1d_causal with bias, silu and a state, against finite differences", async () => {
  const shapes = (k: number, S: number): Record<string, CheckInput> => ({
    x: { shape: [2, 7, 5] },
    w: { shape: [5, 1, k] },
    bias: { shape: [5] },
    st: { shape: [2, 5, S] },
  });
  for (const [k, S] of [[4, 3], [3, 5], [1, 2]]) {
    for (const silu of [false, true]) {
      await checkGrad(
        `conv1d_causal k=${k} S=${S} silu=${silu}`,
        shapes(k, S),
        ({ x, w, bias, st }) => conv1dCausal(x, w, { bias, state: st, silu }),
      );
    }
  }
  // [I, k] weight, no bias, no state.
  await checkGrad(
    "conv1d_causal plain",
    { x: { shape: [1, 6, 3] }, w: { shape: [3, 4] } },
    ({ x, w }) => conv1dCausal(x, w, { silu: true }),
  );
});

/** Inputs and dy of the scan backward at a size the GPU kernels run chunked. */
function bigData(B: number, L: number, I: number, N: number): Record<string, HostArray> {
  const n = B * L * I, nb = B * L * N;
  return {
    u: randomData(n, "f32", 11, -1, 1),
    dt: randomData(n, "f32", 12, -3, 1),
    A: Float32Array.from(negA(I, N, 13).map((a) => a * N)),
    Bm: randomData(nb, "f32", 14, -1, 1),
    Cm: randomData(nb, "f32", 15, -1, 1),
    D: randomData(I, "f32", 16, -1, 1),
    z: randomData(n, "f32", 17, -2, 2),
    bias: randomData(I, "f32", 18, -1, 0.5),
    h0: randomData(B * I * N, "f32", 19, -1, 1),
    dy: randomData(n, "f32", 20, -1, 1),
    dh: randomData(B * I * N, "f32", 21, -1, 1),
  };
}

const GRAD_NAMES = ["du", "ddt", "dA", "dB", "dC", "dD", "dz", "dbias", "dh0"];

function gradGraph(B: number, L: number, I: number, N: number, chunk: number) {
  const g = new GraphBuilder();
  const ins = [
    g.input("u", [B, L, I]),
    g.input("dt", [B, L, I]),
    g.input("A", [I, N]),
    g.input("Bm", [B, L, N]),
    g.input("Cm", [B, L, N]),
    g.input("D", [I]),
    g.input("z", [B, L, I]),
    g.input("bias", [I]),
    g.input("h0", [B, I, N]),
    g.input("dy", [B, L, I]),
    g.input("dh", [B, I, N]),
  ];
  const attrs = {
    ...scanAttrs({ gate: true, deltaBias: true, softplus: true, initialState: true, chunk }),
    finalGrad: true,
  };
  const outs = g.apply("selective_scan_grad", ins, attrs);
  outs.forEach((t, j) => g.output(GRAD_NAMES[j], t));
  return g.build();
}

Deno.test("selective_scan_grad: chunk 16, chunk 4 and one chunk agree with the CPU reference (L = 256, I = 64, N = 16)", async () => {
  const [B, L, I, N] = [1, 256, 64, 16];
  const data = bigData(B, L, I, N);
  const want = await compile(gradGraph(B, L, I, N, 0), cpuDevice()).run(data);
  const dev = await gpu();
  const runs: Record<string, Record<string, { data: ArrayLike<number> }>> = {};
  for (const chunk of [16, 4, L]) {
    const exe = compile(gradGraph(B, L, I, N, chunk), dev);
    try {
      runs[chunk] = await exe.run(data);
    } finally {
      exe.dispose();
    }
    for (const k of GRAD_NAMES) {
      let s = 0;
      for (const v of want[k].data) s = Math.max(s, Math.abs(v));
      assertClose(
        runs[chunk][k].data,
        want[k].data,
        1e-3,
        1e-4 * Math.max(s, 1),
        `chunk ${chunk} ${k}`,
      );
    }
  }
  for (const k of GRAD_NAMES) {
    assertClose(runs[4][k].data, runs[L][k].data, 1e-3, 1e-4, `chunk 4 vs one chunk: ${k}`);
    assertClose(runs[16][k].data, runs[L][k].data, 1e-3, 1e-4, `chunk 16 vs one chunk: ${k}`);
  }
});

Deno.test("selective_scan_grad's GPU-shaped kernels (one channel a thread) match the CPU reference", async () => {
  const [B, L, I, N] = [2, 50, 12, 8];
  const data = bigData(B, L, I, N);
  const want = await compile(gradGraph(B, L, I, N, 0), cpuDevice()).run(data);
  const dev = await requestDevice({ limits: { cpuCores: 0 } });
  try {
    for (const chunk of [8, L]) {
      const exe = compile(gradGraph(B, L, I, N, chunk), dev);
      const got = await exe.run(data);
      exe.dispose();
      for (const k of GRAD_NAMES) {
        let s = 0;
        for (const v of want[k].data) s = Math.max(s, Math.abs(v));
        assertClose(got[k].data, want[k].data, 1e-3, 1e-4 * Math.max(s, 1), `chunk ${chunk} ${k}`);
      }
    }
  } finally {
    dev.destroy();
  }
});

/** conv → scan (gated by the conv's input) → Σy², and the gradients of every weight. */
function trainingGraph(B: number, L: number, I: number, N: number) {
  const g = new GraphBuilder();
  const x = g.input("x", [B, L, I]);
  const w = g.param("w", [I, 1, 4]);
  const dt = g.input("dt", [B, L, I]);
  const A = g.param("A", [I, N]);
  const Bm = g.input("Bm", [B, L, N]);
  const Cm = g.input("Cm", [B, L, N]);
  const D = g.param("D", [I]);
  const dtb = g.param("dtb", [I]);
  const u = conv1dCausal(x, w, { silu: true });
  const [y] = selectiveScan(u, dt, A, Bm, Cm, D, { z: x, deltaBias: dtb, softplus: true });
  const loss = y.mul(y).reshape([-1]).sum(0);
  const grads = g.grad(loss, [w, A, D, dtb, dt, Bm, Cm]);
  g.output("loss", loss);
  grads.forEach((d, j) => g.output(`d${j}`, d));
  const params = {
    w: randomData(I * 4, "f32", 1, -0.5, 0.5),
    A: Float32Array.from(negA(I, N, 2)),
    D: randomData(I, "f32", 3),
    dtb: randomData(I, "f32", 4),
  };
  return { graph: g.build(), params };
}

Deno.test("a training step through conv and scan runs on the GPU as on the CPU reference", async () => {
  // Fused prologues (dy = 2y·…) reach the grad kernels through their load functions.
  const [B, L, I, N] = [2, 37, 12, 8];
  const { graph, params } = trainingGraph(B, L, I, N);
  const inputs = {
    x: randomData(B * L * I, "f32", 5, -1, 1),
    dt: randomData(B * L * I, "f32", 6, -2, 1),
    Bm: randomData(B * L * N, "f32", 7, -1, 1),
    Cm: randomData(B * L * N, "f32", 8, -1, 1),
  };
  const want = await compile(graph, cpuDevice(), { params }).run(inputs);
  const exe = compile(graph, await gpu(), { params });
  try {
    const got = await exe.run(inputs);
    for (const k of Object.keys(want)) {
      let s = 0;
      for (const v of want[k].data) s = Math.max(s, Math.abs(v));
      assertClose(got[k].data, want[k].data, 1e-3, 1e-4 * Math.max(s, 1), k);
    }
  } finally {
    exe.dispose();
  }
});

Deno.test("a training step through the scan holds no [B, L, I, N] buffer", async () => {
  const [B, L, I, N] = [2, 512, 64, 16];
  const { graph, params } = trainingGraph(B, L, I, N);
  const exe = compile(graph, await gpu(), { params });
  try {
    const plan = exe.plan();
    const labels = plan.kernels.map((k) => k.label);
    assert.ok(labels.some((l) => l.includes("ssm_scan_grad_reverse")), labels.join(", "));
    const full = B * L * I * N * 4;
    const biggest = largestTensor(plan);
    assert.ok(biggest < full / 4, `a tensor of ${biggest} B (the full state is ${full} B)`);
    assert.ok(plan.peakBytes < full, `peak ${plan.peakBytes} B vs the full state's ${full} B`);
  } finally {
    exe.dispose();
  }
});

Deno.test("selective_scan_grad names what is wrong with its operands", () => {
  const def = opDef("selective_scan_grad");
  const t = (shape: number[], dtype: "f32" | "f16" = "f32") => ({ shape, dtype });
  const fwd = [t([1, 4, 3]), t([1, 4, 3]), t([3, 2]), t([1, 4, 2]), t([1, 4, 2]), t([3])];
  const attrs = { ...scanAttrs(), finalGrad: false };
  assert.equal(def.infer([...fwd, t([1, 4, 3])], attrs).length, 6);
  assert.throws(() => def.infer([...fwd, t([1, 4, 2])], attrs), /dy must be f32\[1, 4, 3\]/);
  assert.throws(() => def.infer(fwd, attrs), /call for 7 inputs/);
  assert.throws(
    () => def.infer([...fwd, t([1, 4, 3]), t([1, 3])], { ...attrs, finalGrad: true }),
    /final state's gradient/,
  );
  assert.throws(
    () =>
      opDef("conv1d_causal_grad").infer([t([1, 4, 3]), t([3, 2]), t([1, 4, 2])], {
        bias: false,
        state: false,
        silu: false,
      }),
    /dy must be/,
  );
});
