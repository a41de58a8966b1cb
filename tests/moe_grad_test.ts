/**
 * Gradients through `moe`: every router kind and weight option against
 * central finite differences in float64 (with capacity drops, a padding mask,
 * the aux and z losses, the logits and routing outputs all feeding the loss),
 * and the `moe_grad` kernels on the GPU against the float64 references at a
 * larger size.
 */

import assert from "node:assert/strict";
import { assertDeviceGrads } from "./fixtures/grad_compare.ts";
import { GraphBuilder } from "../compiler/builder.ts";
import { Tensor } from "../compiler/tensor.ts";
import { moe } from "../models/moe.ts";
import { withFloat64Host } from "../core/dtype.ts";
import { type MoeAttrs, routerHasBias } from "../ops/moe/mod.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { compile } from "../runtime/executable.ts";
import { checkGrad, type CheckInput } from "./grad_check.ts";
import { gpu, rng } from "./_util.ts";

const [T, d, E, K, FF] = [5, 6, 4, 2, 7];

interface Variant {
  name: string;
  attrs: Partial<MoeAttrs>;
  mask?: boolean;
  logitsIn?: boolean;
}

const VARIANTS: Variant[] = [
  { name: "softmax_topk renormalised", attrs: { router: "softmax_topk", normTopk: true } },
  { name: "softmax_topk raw weights", attrs: { router: "softmax_topk", normTopk: false } },
  {
    name: "softmax_topk with capacity drops and a mask",
    attrs: { router: "softmax_topk", normTopk: true, capacityFactor: 0.8 },
    mask: true,
  },
  { name: "switch (top-1)", attrs: { router: "switch", topK: 1, capacityFactor: 1 } },
  { name: "sigmoid_bias scaled", attrs: { router: "sigmoid_bias", routedScaling: 2.5 } },
  {
    name: "sigmoid_bias with capacity drops",
    attrs: { router: "sigmoid_bias", routedScaling: 1, capacityFactor: 0.5 },
    mask: true,
  },
  {
    name: "sigmoid_bias in 1 of 2 groups, weights not renormalised",
    attrs: {
      router: "sigmoid_bias",
      normTopk: false,
      routedScaling: 1.5,
      groups: 2,
      groupsKept: 1,
    },
  },
  {
    name: "softmax_topk scaled within 1 of 2 groups (DeepSeek-V2)",
    attrs: { router: "softmax_topk", normTopk: false, routedScaling: 3, groups: 2, groupsKept: 1 },
  },
  { name: "softmax_bias renormalised (ERNIE 4.5)", attrs: { router: "softmax_bias" } },
  {
    name: "softmax_bias scaled, raw weights, capacity drops",
    attrs: { router: "softmax_bias", normTopk: false, routedScaling: 2, capacityFactor: 0.5 },
    mask: true,
  },
  { name: "given logits", attrs: { router: "softmax_topk", normTopk: true }, logitsIn: true },
  { name: "dense baseline path", attrs: { router: "softmax_topk", normTopk: true, dense: true } },
];

function fullAttrs(v: Variant, experts = E): MoeAttrs {
  return {
    experts,
    topK: K,
    router: "softmax_topk",
    normTopk: true,
    routedScaling: 1,
    capacityFactor: 0,
    dense: false,
    routing: true,
    ...v.attrs,
    ...(v.logitsIn ? { logitsIn: true } : {}),
  } as MoeAttrs;
}

/** The layer with every output in the checked value: y, the logits, both losses, the routing weights. */
function layer(v: Variant, xs: Record<string, Tensor>, experts = E): Tensor {
  const attrs = fullAttrs(v, experts);
  const inputs = [xs.x, v.logitsIn ? xs.logits : xs.router, xs.w1, xs.w3, xs.w2];
  if (routerHasBias(attrs.router)) inputs.push(xs.bias);
  if (v.mask) inputs.push(xs.mask);
  const [y, logits, , losses, , topkW] = xs.x.builder.apply("moe", inputs, attrs);
  const perToken = logits.mul(logits).sum(-1, true).mul(0.1).add(topkW.sum(-1, true).mul(0.5));
  return y.add(perToken).add(losses.slice(0, 0, 1).mul(3)).add(losses.slice(0, 1, 2).mul(0.2));
}

function inputsOf(v: Variant, t: number, dd: number, e: number, ff: number) {
  const inputs: Record<string, CheckInput> = {
    x: { shape: [t, dd] },
    w1: { shape: [e, ff, dd] },
    w3: { shape: [e, ff, dd] },
    w2: { shape: [e, dd, ff] },
  };
  if (v.logitsIn) inputs.logits = { shape: [t, e] };
  else inputs.router = { shape: [e, dd] };
  if (routerHasBias(fullAttrs(v).router)) inputs.bias = { shape: [e] };
  if (v.mask) {
    // One padding token (0), fractional weights elsewhere.
    inputs.mask = { shape: [t], data: Array.from({ length: t }, (_, i) => (i === 1 ? 0 : 1)) };
  }
  return inputs;
}

Deno.test("moe grad: every router kind against finite differences (float64) and on the GPU", async () => {
  for (const v of VARIANTS) {
    const inputs = inputsOf(v, T, d, E, FF);
    const wrt = Object.keys(inputs).filter((n) => n !== "mask");
    await checkGrad(`moe ${v.name}`, inputs, (xs) => layer(v, xs), { wrt, samples: 16 });
  }
});

Deno.test("moe grad: vector and scalar kernel paths (d, ff multiples of 4 or not)", async () => {
  // d = 8, ff = 6: vec4 along d, scalar along ff; d = 12, ff = 8: an odd count of d
  // vectors; T = 3 runs the forward's decode path (dropless GEMVs, no sort).
  for (
    const [t, dd, ff, v] of [[7, 8, 6, VARIANTS[2]], [7, 12, 8, VARIANTS[2]], [
      3,
      8,
      8,
      VARIANTS[0],
    ]] as const
  ) {
    const inputs = inputsOf(v, t, dd, E, ff);
    const wrt = Object.keys(inputs).filter((n) => n !== "mask");
    await checkGrad(`moe T=${t} d=${dd} ff=${ff}`, inputs, (xs) => layer(v, xs), {
      wrt,
      samples: 6,
    });
  }
});

Deno.test("moe grad: capacity drops really drop (dropped pairs get no expert gradient)", () => {
  // capacity min(T, ⌊0.4·T·k/E⌋) = 1 per expert: of T·k = 10 pairs at most 4 are kept.
  const v: Variant = { name: "cap", attrs: { capacityFactor: 0.4 } };
  const g = new GraphBuilder();
  const xs: Record<string, Tensor> = {};
  const inputs = inputsOf(v, T, d, E, FF);
  for (const [n, s] of Object.entries(inputs)) xs[n] = g.input(n, s.shape);
  const [y, , , , , , kept] = g.apply(
    "moe",
    [xs.x, xs.router, xs.w1, xs.w3, xs.w2],
    fullAttrs(v),
  );
  const [dw2] = g.grad(y.reshape([-1]).sum(0), [xs.w2]);
  g.output("dw2", dw2);
  g.output("kept", kept);
  const r = rng(3);
  const feed = new Map(
    Object.entries(inputs).map(([n, s]) => [
      n,
      Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1),
    ]),
  );
  const out = runCpu(g.build(), {}, feed, new Map());
  const keptCounts = [...out.kept.data];
  for (let e = 0; e < E; e++) {
    const slab = [...out.dw2.data.slice(e * d * FF, (e + 1) * d * FF)];
    const any = slab.some((x) => x !== 0);
    assert.equal(any, keptCounts[e] > 0, `expert ${e}: kept ${keptCounts[e]}, gradient ${any}`);
    assert.ok(keptCounts[e] <= 1, `expert ${e} kept ${keptCounts[e]} pairs over capacity 1`);
  }
});

Deno.test("moe grad: GPU kernels vs float64 reference at T=64, d=64, E=8, k=2", async () => {
  const [t, dd, e, ff] = [64, 64, 8, 32]; // k = 2
  for (
    const v of [
      VARIANTS[0],
      { name: "sigmoid cap", attrs: { router: "sigmoid_bias", capacityFactor: 1.0 } },
    ] as Variant[]
  ) {
    const inputs = inputsOf(v, t, dd, e, ff);
    const wrt = Object.keys(inputs);
    const g = new GraphBuilder();
    const xs: Record<string, Tensor> = {};
    for (const [n, s] of Object.entries(inputs)) xs[n] = g.input(n, s.shape);
    const out = layer(v, xs, e);
    const proj = g.input("__r", [...out.shape]);
    const loss = out.mul(proj).reshape([-1]).sum(0);
    const grads = g.grad(loss, wrt.map((n) => xs[n]));
    wrt.forEach((n, i) => g.output(`d_${n}`, grads[i]));
    const graph = g.build();
    const r = rng(11);
    const feed: Record<string, Float32Array> = {};
    for (const [n, s] of Object.entries(inputs)) {
      const len = s.shape.reduce((a, b) => a * b, 1);
      feed[n] = Float32Array.from({ length: len }, () => (r() * 2 - 1) * (n === "x" ? 1 : 0.3));
    }
    feed.__r = Float32Array.from({ length: t * dd }, () => r() * 2 - 1);
    const want = withFloat64Host(() => runCpu(graph, {}, new Map(Object.entries(feed)), new Map()));
    const exe = compile(graph, await gpu());
    try {
      const got = await exe.run(feed);
      const again = await exe.run(feed);
      assertDeviceGrads(got, again, want, wrt, v.name);
    } finally {
      exe.dispose();
    }
  }
});

Deno.test("moe grad: the model layer with a symbolic token count, mask, shared expert, both losses", async () => {
  const g = new GraphBuilder();
  const [dd, ff, e] = [16, 12, 4];
  const x = g.input("x", ["T", dd]);
  const mask = g.input("mask", ["T"]);
  const m = moe(g, x, {
    name: "l0",
    experts: e,
    topK: 2,
    ff,
    mask,
    auxLossConvention: "hf",
    // Ungated: a sigmoid-gated shared expert's gradient graph trips the fusion pass's
    // dependency-cycle error with or without moe (a compiler bug outside this op).
    shared: { ff: 8 },
  });
  const loss = m.y.mul(g.input("r", ["T", dd])).sum(-1).sum(0)
    .add(m.auxLoss.mul(0.5)).add(m.zLoss.mul(0.1));
  const graph0 = g.peek();
  const params = [...graph0.params].map(([name, id]) => {
    const v = graph0.values[id];
    return [name, new Tensor(g, id, v.shape, v.dtype)] as const;
  });
  const wrt = [["x", x] as const, ...params];
  g.grad(loss, wrt.map(([, t]) => t)).forEach((t, i) => g.output(`d_${wrt[i][0]}`, t));
  const graph = g.build();
  const r = rng(5);
  const T = 10;
  const rand = (n: number, s = 1) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
  const feed: Record<string, Float32Array> = {
    x: rand(T * dd),
    r: rand(T * dd),
    mask: Float32Array.from({ length: T }, (_, t) => (t % 4 === 3 ? 0 : 1)),
  };
  const paramData = new Map(
    params.map(([n, t]) => [n, rand(t.shape.reduce<number>((a, b) => a * (b as number), 1), 0.4)]),
  );
  const want = withFloat64Host(() =>
    runCpu(graph, { T }, new Map(Object.entries(feed)), paramData)
  );
  const exe = compile(graph, await gpu(), { params: Object.fromEntries(paramData) });
  try {
    const got = await exe.run(feed);
    for (const [n] of wrt) {
      const a = got[`d_${n}`].data, b = want[`d_${n}`].data;
      let s = 1e-3, worst = 0;
      for (let i = 0; i < b.length; i++) s = Math.max(s, Math.abs(b[i]));
      for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / s);
      assert.ok(worst < 5e-4, `d_${n}: GPU vs float64 error ${worst} of scale ${s}`);
      assert.ok(b.some((v) => v !== 0), `d_${n} is all zeros`);
    }
  } finally {
    exe.dispose();
  }
});

Deno.test("moe grad: routed kernels agree with the layer built densely from matmuls (GPU)", async () => {
  // An oracle independent of moe's references: every expert on every token, the gate a
  // softmax over the top-k-masked logits, differentiated by the generic rules.
  const [t, dd, ff, e, k] = [40, 16, 12, 8, 2];
  const build = (dense: boolean) => {
    const g = new GraphBuilder();
    const x = g.input("x", [t, dd]);
    const wg = g.input("router", [e, dd]);
    const w1 = g.input("w1", [e, ff, dd]), w3 = g.input("w3", [e, ff, dd]);
    const w2 = g.input("w2", [e, dd, ff]);
    let y: Tensor;
    if (dense) {
      const z = x.matmul(wg, { transB: true });
      const [vals] = z.topk(k);
      const gate = z.where(z.greaterEqual(vals.slice(1, k - 1, k)), -1e30).softmax(-1);
      const a = x.matmul(w1.reshape([e * ff, dd]), { transB: true });
      const b = x.matmul(w3.reshape([e * ff, dd]), { transB: true });
      const h = a.silu().mul(b).reshape([t, e, ff]).mul(gate.reshape([t, e, 1]));
      y = h.reshape([t, e * ff]).matmul(w2.transpose([0, 2, 1]).reshape([e * ff, dd]));
    } else {
      [y] = g.apply("moe", [x, wg, w1, w3, w2], fullAttrs({ name: "", attrs: {} }, e));
    }
    const loss = y.mul(g.input("r", [t, dd])).sum(-1).sum(0);
    g.grad(loss, [x, wg, w1, w3, w2]).forEach((d, i) => g.output(`d${i}`, d));
    return g.build();
  };
  const r = rng(21);
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
  const feed = {
    x: rand(t * dd, 1),
    router: rand(e * dd, 1),
    w1: rand(e * ff * dd, 0.3),
    w3: rand(e * ff * dd, 0.3),
    w2: rand(e * dd * ff, 0.3),
    r: rand(t * dd, 1),
  };
  const dev = await gpu();
  const [routed, dense] = [compile(build(false), dev), compile(build(true), dev)];
  try {
    const [a, b] = [await routed.run(feed), await dense.run(feed)];
    for (let i = 0; i < 5; i++) {
      const x = a[`d${i}`].data, y = b[`d${i}`].data;
      let s = 1e-3, worst = 0;
      for (let j = 0; j < y.length; j++) s = Math.max(s, Math.abs(y[j]));
      for (let j = 0; j < y.length; j++) worst = Math.max(worst, Math.abs(x[j] - y[j]) / s);
      assert.ok(worst < 1e-4, `gradient ${i}: routed vs dense error ${worst} of scale ${s}`);
    }
  } finally {
    routed.dispose();
    dense.dispose();
  }
});

Deno.test("moe grad: bad operands and untrainable layouts are errors naming them", () => {
  const g = new GraphBuilder();
  const f = (name: string, shape: number[], dtype: "f32" | "f16" = "f32") =>
    g.input(name, shape, dtype);
  const attrs = { experts: E, topK: K, router: "softmax_topk" as const, normTopk: true };
  const ops = () => [
    f("x", [T, d]),
    f("logits", [T, E]),
    f("w1", [E, FF, d]),
    f("w3", [E, FF, d]),
    f("w2", [E, d, FF]),
  ];
  const rest = (dy: number[]) => [
    f("dy", dy),
    f("dl", [T, E]),
    f("dw", [T, K]),
    f("da", [2]),
    f("m", [T]),
    f("b", [E]),
  ];
  assert.throws(
    () =>
      g.apply("moe_grad", [...ops(), ...rest([T, d + 1])], {
        ...attrs,
        routedScaling: 1,
        capacityFactor: 0,
      }),
    (e: Error) => e instanceof RangeError && /dy must be \[5, 6\]/.test(e.message),
  );
  // f16 expert weights run forward but have no gradient here: the rule says so.
  const x = f("x16", [T, d]);
  const w = [f("a", [E, FF, d], "f16"), f("b3", [E, FF, d], "f16"), f("c", [E, d, FF], "f16")];
  const router = f("router", [E, d]);
  const [y] = g.apply("moe", [x, router, ...w], fullAttrs({ name: "", attrs: {} }));
  assert.throws(
    () => g.grad(y.sum(-1).sum(0), [router]),
    (e: Error) => e instanceof TypeError && /must be f32 to differentiate, got f16/.test(e.message),
  );
});
