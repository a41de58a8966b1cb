/**
 * `moe` with more experts than a workgroup has invocations (E > 256, up to
 * `MOE_MAX_EXPERTS` = 1024: Qwen3-Next's and Qwen3.5's 512, Kimi K2's 384):
 * the router, sort, aux-loss and backward kernels that give each invocation
 * several experts, on the GPU against the float64 CPU reference — decode
 * (T ≤ 4) and prefill, softmax, sigmoid and softmax + bias routers, group
 * limits, capacity drops of "hot" experts across several sort chunks, the aux
 * and z losses with a mask, and the gradients. Plus a static check that every
 * kernel of such a layer stays within WebGPU's default limits (lavapipe
 * allows more, so running alone would not catch an overrun).
 *
 * Inputs and router weights are multiples of 1/8, so the logits are exact in
 * f32 and the GPU chooses the experts the float64 reference does — equal
 * logits included, which must go to the lower expert index.
 */
import assert from "node:assert/strict";
import { compile, cpuDevice, GraphBuilder, moe, type MoeOptions } from "../mod.ts";
import type { Tensor } from "../compiler/tensor.ts";
import { withFloat64Host } from "../core/dtype.ts";
import { type MoeAttrs, type MoeRouterKind, routerHasBias } from "../ops/moe/mod.ts";
import { MOE_MAX_EXPERTS } from "../ops/moe/attrs.ts";
import { moeCapacity } from "../ops/moe/config.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import type { GpuDevice } from "../runtime/device.ts";
import { quantRowBytes, quantWords } from "../ops/quant/mod.ts";
import { assertDeviceGrads } from "./fixtures/grad_compare.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";
import { testBlocks } from "./fixtures/quant_blocks.ts";
import { assertClose, gpu, rng } from "./_util.ts";

const [D, FF] = [16, 8];

interface Case {
  T: number;
  E: number;
  k: number;
  router: MoeRouterKind;
  normTopk?: boolean;
  routedScaling?: number;
  capacityFactor?: number;
  groups?: number;
  groupsKept?: number;
  /** Experts every token ranks first (router rows of ones on inputs of mean 1). */
  hot?: number[];
  mask?: boolean;
  seed: number;
}

/** Multiples of 1/8 in [-1, 1] (plus `offset`): exact products and sums in f32. */
function eighths(n: number, r: () => number, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, () => Math.round((r() * 2 - 1) * 8) / 8 + offset);
}

function uniform(n: number, scale: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

function attrsOf(c: Case): MoeAttrs {
  return {
    experts: c.E,
    topK: c.k,
    router: c.router,
    normTopk: c.normTopk ?? true,
    routedScaling: c.routedScaling ?? 1,
    capacityFactor: c.capacityFactor ?? 0,
    dense: false,
    routing: true,
    ...(c.groups ? { groups: c.groups, groupsKept: c.groupsKept ?? c.groups } : {}),
  };
}

/** The layer's tensors (by name) and their data for case `c`. */
function dataOf(c: Case): Record<string, Float32Array> {
  const r = rng(c.seed);
  const { T, E } = c;
  const hot = c.hot ?? [];
  const router = eighths(E * D, r);
  for (const e of hot) router.fill(2, e * D, (e + 1) * D);
  const data: Record<string, Float32Array> = {
    x: eighths(T * D, r, hot.length ? 1 : 0),
    router,
    w1: uniform(E * FF * D, 1 / Math.sqrt(D), r),
    w3: uniform(E * FF * D, 1 / Math.sqrt(D), r),
    w2: uniform(E * D * FF, 1 / Math.sqrt(FF), r),
  };
  if (routerHasBias(c.router)) {
    // Selection biases in [-1/2, 1/2]; a hot expert's 1 outranks any other's sigmoid + bias.
    data.bias = eighths(E, r).map((v) => v / 2);
    for (const e of hot) data.bias[e] = 1;
  }
  if (c.mask) data.mask = Float32Array.from({ length: T }, (_, t) => (t % 5 === 2 ? 0 : 1));
  return data;
}

/** Shapes of the tensors `dataOf` makes (and of the backward's projection `r`). */
function shapesOf(c: Case): Record<string, number[]> {
  const { T, E } = c;
  return {
    x: [T, D],
    router: [E, D],
    w1: [E, FF, D],
    w3: [E, FF, D],
    w2: [E, D, FF],
    bias: [E],
    mask: [T],
    r: [T, D],
  };
}

/** The `moe` node's operands in order: x, router, w1, w3, w2, then bias and mask if any. */
function operands(c: Case, t: Record<string, Tensor>): Tensor[] {
  const ins = [t.x, t.router, t.w1, t.w3, t.w2];
  if (routerHasBias(c.router)) ins.push(t.bias);
  if (c.mask) ins.push(t.mask);
  return ins;
}

const OUTPUTS = ["y", "logits", "counts", "losses", "topk_idx", "topk_w", "kept"];

async function checkForward(c: Case): Promise<void> {
  const what = JSON.stringify({ ...c, hot: c.hot?.length });
  const data = dataOf(c);
  const shapes = shapesOf(c);
  const g = new GraphBuilder();
  const t: Record<string, Tensor> = {};
  for (const name of Object.keys(data)) {
    const input = name === "x" || name === "mask";
    t[name] = input ? g.input(name, shapes[name]) : g.param(name, shapes[name]);
  }
  const outs = g.apply("moe", operands(c, t), attrsOf(c));
  OUTPUTS.forEach((name, j) => g.output(name, outs[j]));
  const graph = g.build();
  const params = Object.fromEntries(
    Object.entries(data).filter(([n]) => n !== "x" && n !== "mask"),
  );
  const inputs = Object.fromEntries(
    Object.entries(data).filter(([n]) => n === "x" || n === "mask"),
  );
  const eg = compile(graph, await gpu(), { params });
  try {
    const a = await eg.run(inputs);
    const b = await compile(graph, cpuDevice(), { params }).run(inputs);
    for (const name of ["topk_idx", "counts", "kept"]) {
      assert.deepEqual([...a[name].data], [...b[name].data], `${what}: ${name}`);
    }
    assertClose(a.logits.data, b.logits.data, 0, 0, `${what}: logits (exact)`);
    assertClose(a.topk_w.data, b.topk_w.data, 1e-5, 1e-6, `${what}: topk_w`);
    assertClose(a.y.data, b.y.data, 2e-4, 2e-5, `${what}: y`);
    assertClose(a.losses.data, b.losses.data, 1e-4, 1e-6, `${what}: losses`);
    const cap = moeCapacity(c.T, c.k, c.E, c.capacityFactor || undefined);
    if (c.hot && cap !== undefined) {
      // The hot experts keep their first `cap` tokens and drop the rest.
      for (const e of c.hot) assert.equal(a.kept.data[e], cap, `${what}: kept of hot ${e}`);
      assert.ok(cap < c.T, `${what}: capacity ${cap} drops tokens`);
    }
    const path = eg.lastPlan!.kernels.map((k) => k.role);
    const decode = c.T <= 4 && !c.capacityFactor;
    assert.equal(path.includes("sort"), !decode, `${what}: ${path.join()}`);
  } finally {
    eg.dispose();
  }
}

Deno.test("moe many experts: decode (T = 1, 3), every router kind, E = 257, 300, 384, 512, 1024", async () => {
  const cases: Case[] = [
    { T: 1, E: 300, k: 2, router: "softmax_topk", seed: 1 },
    { T: 3, E: 512, k: 10, router: "softmax_topk", normTopk: false, seed: 2 },
    { T: 1, E: 257, k: 3, router: "softmax_bias", seed: 3 },
    { T: 3, E: 384, k: 8, router: "sigmoid_bias", routedScaling: 2.5, seed: 4 },
    { T: 3, E: 1024, k: 6, router: "softmax_topk", mask: true, seed: 5 },
    { T: 1, E: 1024, k: 1, router: "switch", seed: 6 },
  ];
  for (const c of cases) await checkForward(c);
});

Deno.test("moe many experts: prefill, group limits, losses with a mask", async () => {
  const cases: Case[] = [
    { T: 70, E: 300, k: 2, router: "softmax_topk", mask: true, seed: 11 },
    { T: 70, E: 257, k: 5, router: "softmax_bias", normTopk: false, seed: 12 },
    { T: 3, E: 512, k: 4, router: "softmax_topk", capacityFactor: 300, seed: 13 },
    {
      T: 70,
      E: 512,
      k: 8,
      router: "sigmoid_bias",
      routedScaling: 2.5,
      groups: 8,
      groupsKept: 4,
      mask: true,
      seed: 14,
    },
    { T: 40, E: 1024, k: 4, router: "softmax_topk", groups: 16, groupsKept: 3, seed: 15 },
  ];
  for (const c of cases) await checkForward(c);
});

Deno.test("moe many experts: capacity drops keep each hot expert's first tokens across sort chunks", async () => {
  // Sort chunks: 256 tokens at E = 300, 128 at 512 (T = 150: 2), 64 at 1024 (T = 70: 2).
  const cases: Case[] = [
    { T: 70, E: 1024, k: 10, router: "softmax_topk", hot: [5, 700, 1023], seed: 21 },
    { T: 150, E: 512, k: 4, router: "sigmoid_bias", hot: [0, 511], seed: 22 },
    { T: 70, E: 300, k: 3, router: "softmax_topk", hot: [299, 7], mask: true, seed: 23 },
    { T: 70, E: 1024, k: 1, router: "switch", hot: [600], seed: 24 },
  ].map((c) => {
    // The hot experts get all T tokens, capacity about T / 2 (others stay below it).
    const capacityFactor = (c.T / 2 + 0.5) * c.E / (c.T * c.k);
    return { ...c, router: c.router as MoeRouterKind, capacityFactor };
  });
  for (const c of cases) await checkForward(c);
});

/**
 * The layer through `moe` (its parameters by name) on `dev` against the CPU
 * reference: q8_0 expert weights, or the GPU target's GEMVs and grouped GEMMs.
 */
async function checkLayer(
  dev: GpuDevice,
  T: number,
  o: MoeOptions,
  d: number,
  seed: number,
): Promise<string[]> {
  const r = rng(seed);
  const { experts: E, ff } = o;
  const params: Record<string, Float32Array | Uint32Array> = { "m.router": eighths(E * d, r) };
  for (const [name, rows, cols] of [["w1", ff, d], ["w3", ff, d], ["w2", d, ff]] as const) {
    const f = Float32Array.from({ length: E * rows * cols }, () => (r() * 2 - 1) / Math.sqrt(cols));
    if (!o.weightFormat) {
      params[`m.${name}`] = f;
      continue;
    }
    const words = quantWords(o.weightFormat, rows, cols);
    const q = new Uint32Array(E * words);
    for (let e = 0; e < E; e++) {
      const bytes = testBlocks(
        o.weightFormat,
        f.subarray(e * rows * cols, (e + 1) * rows * cols),
        r,
      );
      assert.equal(bytes.length, rows * quantRowBytes(o.weightFormat, cols));
      new Uint8Array(q.buffer, e * words * 4, bytes.length).set(bytes);
    }
    params[`m.${name}`] = q;
  }
  const g = new GraphBuilder();
  const m = moe(g, g.input("x", [T, d]), o);
  g.output("y", m.y);
  g.output("counts", m.counts);
  const graph = g.build();
  const x = eighths(T * d, r);
  const exe = compile(graph, dev, { params });
  try {
    const a = await exe.run({ x });
    const b = await compile(graph, cpuDevice(), { params }).run({ x });
    const what = `T=${T} ${JSON.stringify(o)}`;
    assert.deepEqual([...a.counts.data], [...b.counts.data], `${what}: counts`);
    assertClose(a.y.data, b.y.data, 2e-4, 2e-5, `${what}: y`);
    return exe.lastPlan!.kernels.map((k) => k.label);
  } finally {
    exe.dispose();
  }
}

Deno.test("moe many experts: q8_0 experts, and the GPU target's GEMVs and grouped GEMMs", async () => {
  const q8: MoeOptions = { name: "m", experts: 300, topK: 4, ff: 32, weightFormat: "q8_0" };
  for (const T of [1, 20]) {
    const labels = await checkLayer(await gpu(), T, q8, 32, 41 + T);
    assert.ok(labels.some((l) => l.includes("q8_0")), labels.join());
  }
  const o: MoeOptions = { name: "m", experts: 512, topK: 8, ff: FF };
  for (const T of [1, 70]) {
    const labels = await checkLayer(await gpuTarget(), T, o, D, 51 + T);
    assert.ok(labels.some((l) => l.includes("moe_gpu_")), labels.join());
  }
});

/** y plus terms on every output the backward takes a gradient from. */
function lossOf(c: Case, t: Record<string, Tensor>): Tensor {
  const [y, logits, , losses, , topkW] = t.x.builder.apply("moe", operands(c, t), attrsOf(c));
  const perToken = logits.mul(logits).sum(-1, true).mul(0.1).add(topkW.sum(-1, true).mul(0.5));
  const out = y.add(perToken).add(losses.slice(0, 0, 1).mul(3)).add(losses.slice(0, 1, 2).mul(0.2));
  return out.mul(t.r).reshape([-1]).sum(0);
}

async function checkBackward(c: Case): Promise<void> {
  const what = JSON.stringify({ ...c, hot: c.hot?.length });
  const data = { ...dataOf(c), r: uniform(c.T * D, 1, rng(c.seed + 1000)) };
  const shapes = shapesOf(c);
  const g = new GraphBuilder();
  const t: Record<string, Tensor> = {};
  for (const name of Object.keys(data)) t[name] = g.input(name, shapes[name]);
  // The selection bias only chooses experts: its gradient is zero by definition.
  const wrt = ["x", "router", "w1", "w3", "w2"];
  g.grad(lossOf(c, t), wrt.map((n) => t[n])).forEach((d, i) => g.output(`d_${wrt[i]}`, d));
  const graph = g.build();
  const want = withFloat64Host(() => runCpu(graph, {}, new Map(Object.entries(data)), new Map()));
  const exe = compile(graph, await gpu());
  try {
    const got = await exe.run(data);
    assertDeviceGrads(got, await exe.run(data), want, wrt, what, { nonZero: true });
  } finally {
    exe.dispose();
  }
}

Deno.test("moe many experts: gradients of every input against float64 (E = 300, 512, 257, 1024)", async () => {
  const cases: Case[] = [
    { T: 70, E: 300, k: 2, router: "softmax_topk", capacityFactor: 6, mask: true, seed: 31 },
    { T: 3, E: 512, k: 4, router: "sigmoid_bias", routedScaling: 1.5, seed: 32 },
    { T: 20, E: 257, k: 3, router: "softmax_bias", normTopk: false, seed: 33 },
    // Two sort chunks of 64 tokens; the hot experts keep tokens 0–69 (capacity 70).
    {
      T: 100,
      E: 1024,
      k: 3,
      router: "softmax_topk",
      hot: [9, 1000],
      capacityFactor: 240.6,
      seed: 34,
    },
  ];
  for (const c of cases) await checkBackward(c);
});

/** Bytes of `var<workgroup>` arrays, and the largest function's `var` arrays, in WGSL `code`. */
function memoryOf(code: string): { workgroup: number; fn: number; wg: number } {
  const bytes = (decl: RegExpMatchArray) => Number(decl[2]) * (decl[1].includes("vec4") ? 16 : 4);
  let workgroup = 0, fn = 0;
  for (const m of code.matchAll(/var<workgroup>\s+\w+\s*:\s*array<([\w<>]+),\s*(\d+)>/g)) {
    workgroup += bytes(m);
  }
  for (const body of code.split(/\nfn /).slice(1)) {
    let sum = 0;
    for (const m of body.matchAll(/\bvar\s+\w+\s*:\s*array<([\w<>]+),\s*(\d+)>/g)) sum += bytes(m);
    fn = Math.max(fn, sum);
  }
  const wg = Number(code.match(/@workgroup_size\((\d+)/)?.[1] ?? 0);
  return { workgroup, fn, wg };
}

Deno.test("moe many experts: every kernel within WebGPU's default limits up to E = 1024", async () => {
  assert.equal(MOE_MAX_EXPERTS, 1024);
  const dev = await gpu();
  for (const E of [257, 384, 512, 683, 820, 1023, 1024]) {
    for (const [T, router] of [[1, "softmax_topk"], [300, "sigmoid_bias"]] as const) {
      const c: Case = { T, E, k: 8, router, capacityFactor: T > 1 ? 2 : 0, mask: true, seed: 1 };
      const g = new GraphBuilder();
      const t: Record<string, Tensor> = {};
      for (const [name, s] of Object.entries(shapesOf(c))) {
        if (name !== "bias" || routerHasBias(router)) t[name] = g.input(name, s);
      }
      const ins = ["x", "router", "w1", "w3", "w2"];
      g.grad(lossOf(c, t), ins.map((n) => t[n])).forEach((d, i) => g.output(`d_${ins[i]}`, d));
      const exe = compile(g.build(), dev);
      try {
        const kernels = exe.plan().kernels.filter((k) => k.op === "moe" || k.op === "moe_grad");
        assert.ok(kernels.some((k) => k.role === "sort"), "the backward sorts");
        for (const k of kernels) {
          const m = memoryOf(k.code);
          const tag = `E=${E} T=${T} ${k.label}`;
          assert.ok(m.wg >= 1 && m.wg <= 256, `${tag}: workgroup size ${m.wg}`);
          assert.ok(m.workgroup <= 16384, `${tag}: ${m.workgroup} bytes of workgroup memory`);
          assert.ok(m.fn <= 8192, `${tag}: ${m.fn} bytes of function arrays`);
        }
      } finally {
        exe.dispose();
      }
    }
  }
});

Deno.test("moe many experts: 1025 experts are refused at graph-build time", () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", D]);
  const p = (n: string, s: number[]) => g.param(n, s);
  const E = MOE_MAX_EXPERTS + 1;
  assert.throws(
    () =>
      g.apply("moe", [
        x,
        p("r", [E, D]),
        p("w1", [E, FF, D]),
        p("w3", [E, FF, D]),
        p("w2", [E, D, FF]),
      ], {
        ...attrsOf({ T: 1, E, k: 2, router: "softmax_topk", seed: 0 }),
      }),
    /experts must be an integer in \[1, 1024\], got 1025/,
  );
});
