/**
 * The selective scan's saved chunk states (`checkpoints`): the forward's extra
 * output against the CPU reference and against the final state of the scan
 * over each prefix; the backward walking back from them against the CPU
 * reference's gradients and against the backward that walks L again; the
 * `scanCheckpoints` pass pairing a training graph's scan with its backward;
 * and the errors.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { optimize } from "../compiler/optimize.ts";
import type { HostArray } from "../core/dtype.ts";
import { selectiveScan } from "../models/mamba.ts";
import { opDef } from "../ops/registry.ts";
import { scanAttrs } from "../ops/ssm/attrs.ts";
import { referenceScan } from "../ops/ssm/reference.ts";
import { cpuDevice, requestDevice } from "../runtime/device.ts";
import type { KilnDevice } from "../runtime/device.ts";
import { compile } from "../runtime/executable.ts";
import { assertClose, gpu, randomData } from "./_util.ts";

interface Sizes {
  B: number;
  L: number;
  I: number;
  N: number;
}

function data({ B, L, I, N }: Sizes, seed: number): Record<string, HostArray> {
  const n = B * L * I, nb = B * L * N;
  return {
    u: randomData(n, "f32", seed, -1, 1),
    dt: randomData(n, "f32", seed + 1, -3, 1),
    A: Float32Array.from({ length: I * N }, (_, j) => -((j % N) + 1) * (0.5 + (j % 7) / 7)),
    Bm: randomData(nb, "f32", seed + 2, -1, 1),
    Cm: randomData(nb, "f32", seed + 3, -1, 1),
    D: randomData(I, "f32", seed + 4, -1, 1),
    z: randomData(n, "f32", seed + 5, -2, 2),
    bias: randomData(I, "f32", seed + 6, -1, 0.5),
    dy: randomData(n, "f32", seed + 7, -1, 1),
  };
}

function operands(g: GraphBuilder, { B, L, I, N }: Sizes) {
  return [
    g.input("u", [B, L, I]),
    g.input("dt", [B, L, I]),
    g.input("A", [I, N]),
    g.input("Bm", [B, L, N]),
    g.input("Cm", [B, L, N]),
    g.input("D", [I]),
    g.input("z", [B, L, I]),
    g.input("bias", [I]),
  ];
}

const ATTRS = scanAttrs({ gate: true, deltaBias: true, softplus: true });
const GRADS = ["du", "ddt", "dA", "dB", "dC", "dD", "dz", "dbias"];

/** The forward with saved states every `every` steps: outputs y and saved. */
function forwardGraph(s: Sizes, every: number, extra: Record<string, string | number> = {}) {
  const g = new GraphBuilder();
  const [y, saved] = g.apply("selective_scan", operands(g, s), {
    ...ATTRS,
    ...extra,
    checkpoints: every,
  });
  g.output("y", y);
  g.output("saved", saved);
  return g.build();
}

/** Forward with saved states → backward from them (or, `every` 0, the backward alone). */
function backwardGraph(s: Sizes, every: number) {
  const g = new GraphBuilder();
  const ins = operands(g, s);
  const dy = g.input("dy", [s.B, s.L, s.I]);
  const attrs = { ...ATTRS, finalGrad: false };
  let outs;
  if (every > 0) {
    const [, saved] = g.apply("selective_scan", ins, { ...ATTRS, checkpoints: every });
    outs = g.apply("selective_scan_grad", [...ins, dy, saved], { ...attrs, checkpoints: every });
  } else {
    outs = g.apply("selective_scan_grad", [...ins, dy], attrs);
  }
  outs.forEach((t, j) => g.output(GRADS[j], t));
  return g.build();
}

async function runOn(dev: KilnDevice, graph: ReturnType<typeof forwardGraph>, feed: object) {
  const exe = compile(graph, dev);
  try {
    return await exe.run(feed as Record<string, HostArray>);
  } finally {
    exe.dispose();
  }
}

function scaleOf(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s = Math.max(s, Math.abs(a[i]));
  return Math.max(s, 1);
}

Deno.test("selective_scan's saved states are the final states of its prefixes (CPU reference)", () => {
  const s = { B: 2, L: 21, I: 3, N: 4 }, every = 5;
  const d = data(s, 1);
  const t = (key: string, shape: number[]) => ({ data: d[key], shape, dtype: "f32" as const });
  const full = (L: number) => [
    t("u", [s.B, L, s.I]),
    t("dt", [s.B, L, s.I]),
    t("A", [s.I, s.N]),
    t("Bm", [s.B, L, s.N]),
    t("Cm", [s.B, L, s.N]),
    t("D", [s.I]),
    t("z", [s.B, L, s.I]),
    t("bias", [s.I]),
  ];
  const [, saved] = referenceScan(full(s.L), { ...ATTRS, checkpoints: every }, false);
  assert.equal(saved.length, s.B * 5 * s.N * s.I);
  for (let c = 0; c < 5; c++) {
    // The state entering step c·S is the final state of the first c·S steps.
    const rows = c * every;
    const prefix = full(s.L).map((x) => {
      if (x.shape.length !== 3 || x.shape[1] !== s.L) return x;
      const w = x.shape[2], out = new Float32Array(s.B * rows * w);
      for (let b = 0; b < s.B; b++) {
        out.set((x.data as Float32Array).subarray(b * s.L * w, (b * s.L + rows) * w), b * rows * w);
      }
      return { ...x, data: out, shape: [s.B, rows, w] };
    });
    const h = rows === 0
      ? new Float32Array(s.B * s.I * s.N)
      : referenceScan(prefix, { ...ATTRS, finalState: true }, false)[1];
    for (let b = 0; b < s.B; b++) {
      for (let i = 0; i < s.I; i++) {
        for (let n = 0; n < s.N; n++) {
          const got = saved[((b * 5 + c) * s.N + n) * s.I + i];
          assert.ok(Math.abs(got - h[(b * s.I + i) * s.N + n]) < 1e-6, `chunk ${c} b${b} i${i}`);
        }
      }
    }
  }
});

Deno.test("selective_scan's saved states on the GPU match the CPU reference (one pass, chunked, scalar and vec4 channels)", async () => {
  const cases: [Sizes, number, Record<string, string | number>][] = [
    [{ B: 2, L: 37, I: 12, N: 8 }, 8, {}],
    [{ B: 1, L: 100, I: 10, N: 5 }, 16, {}],
    [{ B: 2, L: 70, I: 16, N: 16 }, 24, { algorithm: "chunked", chunk: 16 }],
    [{ B: 1, L: 9, I: 8, N: 4 }, 32, {}],
  ];
  const cpu = cpuDevice();
  const gpuShaped = await requestDevice({ limits: { cpuCores: 0 } });
  try {
    for (const [k, [s, every, extra]] of cases.entries()) {
      const graph = forwardGraph(s, every, extra);
      const { dy: _, ...feed } = data(s, 10 + k);
      const want = await runOn(cpu, graph, feed);
      for (
        const [name, dev] of [["cpu adapter", await gpu()], ["gpu-shaped", gpuShaped]] as const
      ) {
        const got = await runOn(dev, graph, feed);
        const what = `${name} L${s.L} I${s.I} N${s.N} every ${every}`;
        assertClose(got.saved.data, want.saved.data, 1e-4, 1e-5, `${what}: saved`);
        assertClose(got.y.data, want.y.data, 1e-4, 1e-5, `${what}: y`);
      }
    }
  } finally {
    gpuShaped.destroy();
  }
});

Deno.test("selective_scan_grad from the forward's saved states equals the CPU reference and the walk from h0", async () => {
  const s = { B: 2, L: 200, I: 64, N: 16 };
  const feed = data(s, 30);
  const want = await runOn(cpuDevice(), backwardGraph(s, 0), feed);
  const dev = await gpu();
  const walked = await runOn(dev, backwardGraph(s, 0), feed);
  for (const every of [16, 200]) {
    const got = await runOn(dev, backwardGraph(s, every), feed);
    for (const k of GRADS) {
      const tol = 1e-4 * scaleOf(want[k].data);
      assertClose(got[k].data, want[k].data, 1e-3, tol, `every ${every}: ${k} vs reference`);
      assertClose(got[k].data, walked[k].data, 1e-3, tol, `every ${every}: ${k} vs the walk`);
    }
  }
  // GPU-shaped kernels (one channel a thread) at an awkward size.
  const small = { B: 2, L: 50, I: 12, N: 8 };
  const feedSmall = data(small, 40);
  const wantSmall = await runOn(cpuDevice(), backwardGraph(small, 0), feedSmall);
  const gpuShaped = await requestDevice({ limits: { cpuCores: 0 } });
  try {
    const got = await runOn(gpuShaped, backwardGraph(small, 8), feedSmall);
    for (const k of GRADS) {
      const tol = 1e-4 * scaleOf(wantSmall[k].data);
      assertClose(got[k].data, wantSmall[k].data, 1e-3, tol, `gpu-shaped ${k}`);
    }
  } finally {
    gpuShaped.destroy();
  }
});

Deno.test("scanCheckpoints: a training graph's scan saves its states and its backward walks no checkpoints", async () => {
  const [B, L, I, N] = [1, 64, 8, 4];
  const g = new GraphBuilder();
  const u = g.input("u", [B, L, I]), dt = g.input("dt", [B, L, I]);
  const A = g.param("A", [I, N]), D = g.param("D", [I]);
  const Bm = g.input("Bm", [B, L, N]), Cm = g.input("Cm", [B, L, N]);
  const [y] = selectiveScan(u, dt, A, Bm, Cm, D, { z: u, softplus: true });
  g.grad(y.mul(y).reshape([-1]).sum(0), [A, D, u]).forEach((d, j) => g.output(`d${j}`, d));
  const graph = optimize(g.build());
  const fwd = graph.nodes.find((n) => n.op === "selective_scan")!;
  const bwd = graph.nodes.find((n) => n.op === "selective_scan_grad")!;
  assert.equal(fwd.attrs.checkpoints, 8);
  assert.equal(bwd.attrs.checkpoints, 8);
  assert.equal(bwd.inputs.at(-1), fwd.outputs.at(-1));
  assert.deepEqual(graph.values[fwd.outputs.at(-1)!].shape, [B, 8, N, I]);
  const params = { A: new Float32Array(I * N).fill(-1), D: new Float32Array(I).fill(0.5) };
  const exe = compile(g.build(), await gpu(), { params });
  try {
    const labels = exe.plan().kernels.map((k) => k.label);
    assert.ok(labels.some((l) => l.includes("ssm_scan_grad_setup")), labels.join(", "));
    assert.ok(!labels.some((l) => l.includes("ssm_scan_grad_checkpoints")), labels.join(", "));
  } finally {
    exe.dispose();
  }
  // A forward that also hands on its final state keeps its kernels as they were.
  const g2 = new GraphBuilder();
  const u2 = g2.input("u", [B, L, I]), A2 = g2.param("A", [I, N]), D2 = g2.param("D", [I]);
  const B2 = g2.input("Bm", [B, L, N]);
  const [y2, h2] = selectiveScan(u2, u2, A2, B2, B2, D2, { finalState: true });
  const loss2 = y2.mul(y2).sum(-1).sum(-1).sum(0).add(h2.sum(-1).sum(-1).sum(0));
  g2.output("loss", loss2);
  g2.output("dA", g2.grad(loss2, [A2])[0]);
  const kept = optimize(g2.build());
  assert.equal(kept.nodes.find((n) => n.op === "selective_scan")!.attrs.checkpoints, undefined);
});

Deno.test("saved states: bad attributes and shapes are named", () => {
  const t = (shape: number[], dtype: "f32" | "u32" = "f32") => ({ shape, dtype });
  const fwd = [t([1, 10, 3]), t([1, 10, 3]), t([3, 2]), t([1, 10, 2]), t([1, 10, 2]), t([3])];
  const scan = opDef("selective_scan");
  assert.deepEqual(scan.infer(fwd, { ...scanAttrs(), checkpoints: 4 })[1].shape, [1, 3, 2, 3]);
  assert.throws(() => scan.infer(fwd, { ...scanAttrs(), checkpoints: 2.5 }), RangeError);
  assert.throws(
    () => scan.infer([...fwd, t([1], "u32")], { ...scanAttrs(), last: true, checkpoints: 4 }),
    /checkpoints cannot go with a `last` input/,
  );
  const grad = opDef("selective_scan_grad");
  const attrs = { ...scanAttrs(), finalGrad: false, checkpoints: 4 };
  assert.equal(grad.infer([...fwd, t([1, 10, 3]), t([1, 3, 2, 3])], attrs).length, 6);
  assert.throws(
    () => grad.infer([...fwd, t([1, 10, 3]), t([1, 3, 3, 2])], attrs),
    /saved states must be f32\[1, 3, 2, 3\] \(checkpoints 4\), got f32\[1, 3, 3, 2\]/,
  );
  assert.throws(() => grad.infer([...fwd, t([1, 10, 3])], attrs), /call for 8 inputs/);
});
