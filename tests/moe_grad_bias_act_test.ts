/**
 * Gradients of GPT-OSS's expert features in `moe`: the experts' biases
 * (`expertBias`: b1, b3, b2) and the clamped `swiglu_oai` activation. Every
 * gradient (x, the router or the given logits, w1, w3, w2, b1, b3, b2)
 * against central finite differences of the float64 references at awkward
 * sizes, with the clamps met on every side (a small limit, and the default 7
 * with large weights), swiglu with biases, swiglu_oai without, both, the
 * GEGLU and ReGLU gates (hidden_act gelu / gelu_pytorch_tanh / relu), capacity
 * drops, a mask and every router kind; the `moe_grad` kernels on the portable
 * device and the GPU-shaped one (`cpuCores: 0`) against the float64 reference,
 * twice for the same bits; zero biases give the bias-free layer's gradients
 * bit for bit; slot tables and quantized weights are still refused, and
 * `moe_grad`'s bad operands are named.
 */

import assert from "node:assert/strict";
import { assertDeviceGrads } from "./fixtures/grad_compare.ts";
import { GraphBuilder } from "../compiler/builder.ts";
import { Tensor } from "../compiler/tensor.ts";
import { withFloat64Host } from "../core/dtype.ts";
import { moe } from "../models/moe.ts";
import type { MoeAttrs } from "../ops/moe/mod.ts";
import { moeReference } from "../ops/moe/reference.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { type GpuDevice, requestDevice } from "../runtime/device.ts";
import { compile } from "../runtime/executable.ts";
import { checkGrad, type CheckInput } from "./grad_check.ts";
import { gpu, rng } from "./_util.ts";

/** One layer: sizes, attributes and the scales of its random operands. */
interface Case {
  name: string;
  T: number;
  d: number;
  ff: number;
  E: number;
  k: number;
  attrs: Partial<MoeAttrs>;
  mask?: boolean;
  logitsIn?: boolean;
  /** Scales of x, of w1 / w3 (times 1/√d) and of the biases (default 1, 1, 1). */
  xScale?: number;
  wScale?: number;
  bScale?: number;
  /** The clamps must be met above the gate and on both sides of the up projection. */
  clamped?: boolean;
}

const oai = (limit?: number, alpha?: number) => ({
  activation: "swiglu_oai",
  ...(alpha === undefined ? {} : { alpha }),
  ...(limit === undefined ? {} : { limit }),
});

const CASES: Case[] = [
  {
    name: "swiglu with biases",
    T: 5,
    d: 6,
    ff: 7,
    E: 4,
    k: 2,
    attrs: { expertBias: true },
  },
  {
    name: "swiglu_oai without biases, limit 0.5",
    T: 6,
    d: 6,
    ff: 7,
    E: 4,
    k: 2,
    attrs: oai(0.5, 1),
    xScale: 2,
    wScale: 2,
    clamped: true,
  },
  {
    name: "swiglu_oai with biases, the default limit 7 and large weights",
    T: 7,
    d: 5,
    ff: 6,
    E: 3,
    k: 2,
    attrs: { ...oai(), expertBias: true },
    xScale: 6,
    wScale: 3,
    bScale: 2,
    clamped: true,
  },
  {
    name: "swiglu_oai with biases, capacity drops and a mask",
    T: 9,
    d: 6,
    ff: 5,
    E: 4,
    k: 2,
    attrs: { ...oai(0.5, 1.3), expertBias: true, capacityFactor: 0.7 },
    mask: true,
    xScale: 2,
    wScale: 2,
    clamped: true,
  },
  {
    name: "sigmoid_bias router (selection bias, then b1 b3 b2, then the mask)",
    T: 7,
    d: 6,
    ff: 5,
    E: 5,
    k: 2,
    attrs: { ...oai(0.5), expertBias: true, router: "sigmoid_bias", routedScaling: 2.5 },
    mask: true,
    xScale: 2,
    wScale: 2,
    clamped: true,
  },
  {
    name: "given logits (GPT-OSS's biased router), raw softmax weights",
    T: 6,
    d: 7,
    ff: 6,
    E: 4,
    k: 2,
    attrs: { ...oai(0.7, 1.702), expertBias: true, normTopk: false },
    logitsIn: true,
    xScale: 2,
    wScale: 2,
    clamped: true,
  },
  // The GEGLU / ReGLU gates (hidden_act gelu, gelu_pytorch_tanh, relu).
  {
    name: "geglu with biases",
    T: 6,
    d: 6,
    ff: 7,
    E: 4,
    k: 2,
    attrs: { activation: "geglu", expertBias: true },
    xScale: 2,
  },
  {
    name: "geglu_tanh, capacity drops",
    T: 9,
    d: 5,
    ff: 6,
    E: 3,
    k: 2,
    attrs: { activation: "geglu_tanh", capacityFactor: 0.7 },
    xScale: 2,
  },
  {
    name: "reglu with biases and a mask",
    T: 7,
    d: 6,
    ff: 5,
    E: 4,
    k: 2,
    attrs: { activation: "reglu", expertBias: true },
    mask: true,
    xScale: 2,
  },
  {
    name: "quick_geglu (hidden_act quick_gelu) with biases",
    T: 7,
    d: 6,
    ff: 5,
    E: 3,
    k: 2,
    attrs: { activation: "quick_geglu", expertBias: true },
    xScale: 2,
  },
  // Nemotron-H's ungated relu(up)²: w3 is an operand the layer never reads (dw3 = 0).
  {
    name: "relu2 (ungated), a mask, capacity drops",
    T: 8,
    d: 6,
    ff: 5,
    E: 4,
    k: 2,
    attrs: { activation: "relu2", capacityFactor: 0.8 },
    mask: true,
    xScale: 2,
  },
  {
    name: "switch (top-1) with biases and a capacity",
    T: 7,
    d: 6,
    ff: 7,
    E: 3,
    k: 1,
    attrs: { ...oai(0.5), expertBias: true, router: "switch", capacityFactor: 1 },
    xScale: 2,
    wScale: 2,
    clamped: true,
  },
];

function fullAttrs(c: Case): MoeAttrs {
  return {
    experts: c.E,
    topK: c.k,
    router: "softmax_topk",
    normTopk: true,
    routedScaling: 1,
    capacityFactor: 0,
    dense: false,
    routing: true,
    ...c.attrs,
    ...(c.logitsIn ? { logitsIn: true } : {}),
  } as MoeAttrs;
}

/** The layer with every output in the checked value: y, the logits, both losses, the routing weights. */
function layer(c: Case, xs: Record<string, Tensor>): Tensor {
  const attrs = fullAttrs(c);
  const inputs = [xs.x, c.logitsIn ? xs.logits : xs.router, xs.w1, xs.w3, xs.w2];
  if (attrs.router === "sigmoid_bias") inputs.push(xs.bias);
  if (attrs.expertBias) inputs.push(xs.b1, xs.b3, xs.b2);
  if (c.mask) inputs.push(xs.mask);
  const [y, logits, , losses, , topkW] = xs.x.builder.apply("moe", inputs, attrs);
  const perToken = logits.mul(logits).sum(-1, true).mul(0.1).add(topkW.sum(-1, true).mul(0.5));
  return y.add(perToken).add(losses.slice(0, 0, 1).mul(3)).add(losses.slice(0, 1, 2).mul(0.2));
}

/** The operands of a case, with seeded data at the case's scales. */
function inputsOf(c: Case, seed: number): Record<string, CheckInput & { data: Float64Array }> {
  const r = rng(seed);
  const { T, d, ff, E } = c;
  const u = (n: number, s: number) => Float64Array.from({ length: n }, () => (r() * 2 - 1) * s);
  const xs = c.xScale ?? 1, ws = (c.wScale ?? 1) / Math.sqrt(d), bs = c.bScale ?? 1;
  const inputs: Record<string, CheckInput & { data: Float64Array }> = {
    x: { shape: [T, d], data: u(T * d, xs) },
    w1: { shape: [E, ff, d], data: u(E * ff * d, ws) },
    w3: { shape: [E, ff, d], data: u(E * ff * d, ws) },
    w2: { shape: [E, d, ff], data: u(E * d * ff, 1 / Math.sqrt(ff)) },
  };
  // Logits of order 1, so that every chosen expert carries a real weight.
  if (c.logitsIn) inputs.logits = { shape: [T, E], data: u(T * E, 1.5) };
  else inputs.router = { shape: [E, d], data: u(E * d, 1.5 / (xs * Math.sqrt(d))) };
  if (fullAttrs(c).router === "sigmoid_bias") inputs.bias = { shape: [E], data: u(E, 0.3) };
  if (c.attrs.expertBias) {
    inputs.b1 = { shape: [E, ff], data: u(E * ff, bs) };
    inputs.b3 = { shape: [E, ff], data: u(E * ff, bs) };
    inputs.b2 = { shape: [E, d], data: u(E * d, bs) };
  }
  if (c.mask) {
    inputs.mask = {
      shape: [T],
      data: Float64Array.from({ length: T }, (_, t) => t % 3 === 1 ? 0 : 1),
    };
  }
  return inputs;
}

/** Clamped gate and up pre-activations among the kept pairs, and the dropped pairs. */
function clampHits(c: Case, ins: ReturnType<typeof inputsOf>) {
  const { T, d, ff, k } = c;
  const a = fullAttrs(c);
  const limit = typeof a.limit === "number" ? a.limit : 7;
  const w1 = ins.w1.data, w3 = ins.w3.data, x = ins.x.data;
  const r = moeReference(
    {
      ...c,
      router: a.router,
      normTopk: a.normTopk,
      routedScaling: a.routedScaling,
      capacityFactor: a.capacityFactor > 0 ? a.capacityFactor : undefined,
    },
    {
      wg: ins.router?.data ?? [],
      logits: ins.logits?.data,
      w1,
      w3,
      w2: ins.w2.data,
      bias: ins.bias?.data,
    },
    x,
  );
  const hits = { gate: 0, upHigh: 0, upLow: 0, dropped: 0 };
  for (let i = 0; i < T * k; i++) {
    if (!r.keptSlot[i]) {
      hits.dropped++;
      continue;
    }
    const t = Math.floor(i / k), e = r.topkIdx[i];
    for (let n = 0; n < ff; n++) {
      let ga = ins.b1?.data[e * ff + n] ?? 0, gb = ins.b3?.data[e * ff + n] ?? 0;
      for (let j = 0; j < d; j++) {
        ga += w1[(e * ff + n) * d + j] * x[t * d + j];
        gb += w3[(e * ff + n) * d + j] * x[t * d + j];
      }
      if (ga > limit) hits.gate++;
      if (gb > limit) hits.upHigh++;
      if (gb < -limit) hits.upLow++;
    }
  }
  return hits;
}

Deno.test("moe grad bias/act: every gradient against finite differences (float64) and on the GPU", async () => {
  for (const [i, c] of CASES.entries()) {
    const inputs = inputsOf(c, 100 + i);
    const hits = clampHits(c, inputs);
    if (c.clamped) {
      assert.ok(
        hits.gate > 0 && hits.upHigh > 0 && hits.upLow > 0,
        `${c.name}: clamps not met ${JSON.stringify(hits)}`,
      );
    }
    if ((c.attrs.capacityFactor ?? 0) > 0) assert.ok(hits.dropped > 0, `${c.name}: no drops`);
    const wrt = Object.keys(inputs).filter((n) => n !== "mask" && n !== "bias");
    await checkGrad(`moe ${c.name}`, inputs, (xs) => layer(c, xs), { wrt, samples: 14 });
  }
});

/** The gradient graph of a case's layer, projected on a random r. */
function gradGraph(c: Case, inputs: Record<string, CheckInput>) {
  const wrt = Object.keys(inputs).filter((n) => n !== "mask" && n !== "bias");
  const g = new GraphBuilder();
  const xs: Record<string, Tensor> = {};
  for (const [n, s] of Object.entries(inputs)) xs[n] = g.input(n, s.shape);
  const out = layer(c, xs);
  const loss = out.mul(g.input("__r", [...out.shape])).reshape([-1]).sum(0);
  g.grad(loss, wrt.map((n) => xs[n])).forEach((t, i) => g.output(`d_${wrt[i]}`, t));
  return { graph: g.build(), wrt };
}

/** Runs a case's gradients on `dev` twice (same bits) against the float64 reference. */
async function deviceVsReference(c: Case, dev: GpuDevice, seed: number, what: string) {
  const inputs = inputsOf(c, seed);
  const { graph, wrt } = gradGraph(c, inputs);
  const feed: Record<string, Float32Array> = {};
  for (const [n, s] of Object.entries(inputs)) feed[n] = Float32Array.from(s.data);
  const r = rng(seed + 1);
  feed.__r = Float32Array.from({ length: c.T * c.d }, () => r() * 2 - 1);
  // The reference from the f32 operands, so both sides see the same routing.
  const f64 = new Map(Object.entries(feed).map(([n, v]) => [n, Float64Array.from(v)]));
  const want = withFloat64Host(() =>
    runCpu(graph, {}, f64 as unknown as Map<string, Float32Array>, new Map())
  );
  const exe = compile(graph, dev);
  try {
    const got = await exe.run(feed);
    const again = await exe.run(feed);
    // An ungated layer never reads w3: its gradient is exactly 0 on both sides.
    const ungated = c.attrs.activation === "relu2";
    const live = ungated ? wrt.filter((n) => n !== "w3") : wrt;
    assertDeviceGrads(got, again, want, live, `${what} ${c.name}`, { nonZero: true });
    if (ungated) {
      assert.ok(Array.from(got.d_w3.data).every((v) => v === 0), `${what} ${c.name}: d_w3`);
      assert.ok(Array.from(want.d_w3.data).every((v) => v === 0), `${c.name}: reference d_w3`);
    }
  } finally {
    exe.dispose();
  }
}

/** Larger layers: vec4 and scalar paths (d, ff multiples of 4 or not), several row tiles. */
const DEVICE_CASES: Case[] = [
  {
    name: "oai+bias, capacity, mask, d=20 ff=12",
    T: 33,
    d: 20,
    ff: 12,
    E: 5,
    k: 2,
    attrs: { ...oai(), expertBias: true, capacityFactor: 1 },
    mask: true,
    xScale: 6,
    wScale: 3,
    bScale: 2,
    clamped: true,
  },
  {
    name: "oai, no bias, d=16 ff=8",
    T: 40,
    d: 16,
    ff: 8,
    E: 4,
    k: 2,
    attrs: oai(0.5, 1),
    xScale: 2,
    wScale: 2,
    clamped: true,
  },
  {
    name: "swiglu+bias, sigmoid_bias, d=18 ff=10",
    T: 21,
    d: 18,
    ff: 10,
    E: 6,
    k: 3,
    attrs: { expertBias: true, router: "sigmoid_bias", routedScaling: 1.5 },
  },
  {
    name: "geglu+bias, capacity, d=20 ff=12",
    T: 33,
    d: 20,
    ff: 12,
    E: 5,
    k: 2,
    attrs: { activation: "geglu", expertBias: true, capacityFactor: 1 },
    xScale: 2,
  },
  {
    name: "geglu_tanh, d=18 ff=10",
    T: 21,
    d: 18,
    ff: 10,
    E: 6,
    k: 3,
    attrs: { activation: "geglu_tanh" },
  },
  {
    name: "quick_geglu, d=20 ff=12",
    T: 23,
    d: 20,
    ff: 12,
    E: 5,
    k: 2,
    attrs: { activation: "quick_geglu" },
    xScale: 2,
  },
  {
    name: "reglu, mask, d=16 ff=8",
    T: 40,
    d: 16,
    ff: 8,
    E: 4,
    k: 2,
    attrs: { activation: "reglu" },
    mask: true,
    xScale: 2,
  },
  {
    name: "relu2, sigmoid_bias groups, d=20 ff=12",
    T: 29,
    d: 20,
    ff: 12,
    E: 6,
    k: 2,
    attrs: {
      activation: "relu2",
      router: "sigmoid_bias",
      groups: 3,
      groupsKept: 2,
      routedScaling: 2.5,
    },
    xScale: 2,
  },
  {
    name: "oai+bias, given logits, d=32 ff=24",
    T: 64,
    d: 32,
    ff: 24,
    E: 8,
    k: 2,
    attrs: { ...oai(), expertBias: true },
    logitsIn: true,
    xScale: 6,
    wScale: 3,
    bScale: 2,
    clamped: true,
  },
];

Deno.test("moe grad bias/act: the kernels on the portable and the GPU-shaped device, deterministic", async () => {
  const devices: [string, GpuDevice][] = [
    ["portable", await gpu()],
    ["gpu-shaped", await requestDevice({ limits: { cpuCores: 0 } })],
  ];
  for (const [i, c] of DEVICE_CASES.entries()) {
    if (c.clamped) {
      const h = clampHits(c, inputsOf(c, 200 + i));
      assert.ok(h.gate > 0 && h.upHigh > 0 && h.upLow > 0, `${c.name}: ${JSON.stringify(h)}`);
    }
    for (const [what, dev] of devices) await deviceVsReference(c, dev, 200 + i, what);
  }
});

Deno.test("moe grad bias/act: zero biases give the bias-free layer's gradients bit for bit", async () => {
  const dev = await gpu();
  for (const activation of [{}, oai(0.5, 1)]) {
    const base: Case = {
      name: "zero",
      T: 19,
      d: 12,
      ff: 10,
      E: 4,
      k: 2,
      attrs: { ...activation, capacityFactor: 1 },
      xScale: 2,
      wScale: 2,
    };
    const withBias: Case = { ...base, attrs: { ...base.attrs, expertBias: true }, bScale: 0 };
    const runs = [];
    for (const c of [base, withBias]) {
      const inputs = inputsOf(c, 300);
      const { graph, wrt } = gradGraph(c, inputs);
      const feed: Record<string, Float32Array> = {};
      for (const [n, s] of Object.entries(inputs)) feed[n] = Float32Array.from(s.data);
      feed.__r = Float32Array.from({ length: c.T * c.d }, (_, i) => Math.sin(i));
      const exe = compile(graph, dev);
      try {
        const out = await exe.run(feed);
        runs.push(Object.fromEntries(wrt.map((n) => [n, out[`d_${n}`].data])));
      } finally {
        exe.dispose();
      }
    }
    for (const n of ["x", "router", "w1", "w3", "w2"]) {
      assert.deepEqual(runs[1][n], runs[0][n], `${JSON.stringify(activation)} d_${n}`);
    }
    // db2 sums w·dy and dy is not zero; db1 and db3 are those of the gate and up.
    assert.ok(Array.from(runs[1].b2).some((v) => v !== 0));
  }
});

Deno.test("moe grad bias/act: the DSL layer differentiates; bad moe_grad operands, slot tables and quantized weights are refused", () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 16]);
  const o = { name: "l0.moe", experts: 4, topK: 2, ff: 8, expertBias: true } as const;
  const m = moe(g, x, { ...o, activation: "swiglu_oai", mask: g.input("mask", ["T"]) });
  const graph0 = g.peek();
  const names = ["l0.moe.b1", "l0.moe.b3", "l0.moe.b2", "l0.moe.w1"];
  const params = names.map((n) => {
    const id = graph0.params.get(n)!;
    return new Tensor(g, id, graph0.values[id].shape, graph0.values[id].dtype);
  });
  const grads = g.grad(m.y.sum(-1).sum(0).add(m.auxLoss), params);
  assert.deepEqual(grads.map((t) => t.shape), [[4, 8], [4, 8], [4, 16], [4, 8, 16]]);
  // moe_grad's own operands: the biases come with the attribute, in their shapes.
  const f = (n: string, shape: number[]) => g.input(n, shape);
  const [T, d, E, ff, k] = [5, 6, 4, 3, 2];
  const ops = [
    f("gx", [T, d]),
    f("gz", [T, E]),
    f("g1", [E, ff, d]),
    f("g3", [E, ff, d]),
    f("g2", [E, d, ff]),
    f("gdy", [T, d]),
    f("gdz", [T, E]),
    f("gdw", [T, k]),
    f("gda", [2]),
    f("gm", [T]),
    f("gb", [E]),
  ];
  const ga = {
    experts: E,
    topK: k,
    router: "softmax_topk" as const,
    normTopk: true,
    routedScaling: 1,
    capacityFactor: 0,
  };
  const eb = { ...ga, expertBias: true };
  const bs = [f("gb1", [E, ff]), f("gb3", [E, ff])];
  assert.equal(g.apply("moe_grad", [...ops, ...bs, f("gb2", [E, d])], eb).length, 8);
  assert.throws(() => g.apply("moe_grad", ops, eb), /takes 14 inputs with expertBias, got 11/);
  assert.throws(
    () => g.apply("moe_grad", [...ops, ...bs, f("gb2w", [E, ff])], eb),
    /moe_grad: b2 must be \[4, 6\], got \[4, 3\]/,
  );
  assert.throws(
    () => g.apply("moe_grad", ops, { ...ga, limit: 2 }),
    /limit applies to activation "swiglu_oai" only/,
  );
  for (
    const [extra, re] of [
      [{ slots: { count: 2, pool: "pool" } }, /slot table/],
      [{ weightFormat: "q8_0" }, /block-quantized expert weights/],
    ] as const
  ) {
    const g2 = new GraphBuilder();
    const x2 = g2.input("x", [5, 32]);
    const y = moe(g2, x2, { ...o, ff: 32, activation: "swiglu_oai", ...extra }).y;
    assert.throws(() => g2.grad(y.sum(-1).sum(0), [x2]), (e: Error) => {
      assert.ok(e instanceof TypeError, e.message);
      assert.match(e.message, re);
      return true;
    });
  }
});
