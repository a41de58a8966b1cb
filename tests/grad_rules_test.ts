/**
 * Every gradient rule against central finite differences (float64 CPU
 * references) and on the GPU against those gradients, at awkward sizes.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { checkGrad } from "./grad_check.ts";
import { OPS } from "../ops/registry.ts";
import { GRAD_RULES, NO_GRADIENT } from "../compiler/grad/table.ts";
import { compile } from "../runtime/executable.ts";
import { assertClose, gpu, rng, runBoth } from "./_util.ts";

const UNARY = [
  "neg",
  "abs",
  "exp",
  "tanh",
  "sigmoid",
  "silu",
  "gelu",
  "softplus",
  "relu",
] as const;

Deno.test("grad: unary ops", async () => {
  for (const op of UNARY) {
    await checkGrad(op, { x: { shape: [3, 5] } }, ({ x }) => x.mul(3)[op]());
  }
  // Positive domains.
  await checkGrad("log", { x: { shape: [7] } }, ({ x }) => x.mul(x).add(0.5).log());
  await checkGrad("sqrt", { x: { shape: [7] } }, ({ x }) => x.mul(x).add(0.5).sqrt());
  await checkGrad("rsqrt", { x: { shape: [7] } }, ({ x }) => x.mul(x).add(0.5).rsqrt());
  await checkGrad(
    "gelu_erf",
    { x: { shape: [9] } },
    ({ x }) => x.mul(3).gelu({ approximate: "none" }),
  );
});

Deno.test("grad: binary ops with broadcasting, where, maximum, pow", async () => {
  const shapes = { a: { shape: [2, 3, 5] }, b: { shape: [3, 1] } };
  await checkGrad("add", shapes, ({ a, b }) => a.add(b));
  await checkGrad("sub", shapes, ({ a, b }) => a.sub(b));
  await checkGrad("mul", shapes, ({ a, b }) => a.mul(b));
  await checkGrad("div", shapes, ({ a, b }) => a.div(b.mul(b).add(0.5)));
  await checkGrad("maximum", shapes, ({ a, b }) => a.maximum(b));
  await checkGrad("minimum", shapes, ({ a, b }) => a.minimum(b));
  await checkGrad("pow", shapes, ({ a, b }) => a.mul(a).add(0.5).pow(b));
  await checkGrad("where", shapes, ({ a, b }) => a.where(a.greater(0), b));
  // Fan-out: one value used three times.
  await checkGrad("fan-out", { x: { shape: [4, 3] } }, ({ x }) => x.mul(x).add(x.exp()).mul(x));
});

Deno.test("grad: reductions, softmax, logsumexp, cumsum", async () => {
  for (const keep of [false, true]) {
    for (const axis of [0, 1, -1]) {
      const x = { x: { shape: [3, 4, 5] } };
      await checkGrad(`sum ${axis} ${keep}`, x, ({ x }) => x.sum(axis, keep));
      await checkGrad(`mean ${axis} ${keep}`, x, ({ x }) => x.mean(axis, keep));
      await checkGrad(`max ${axis} ${keep}`, x, ({ x }) => x.max(axis, keep));
      await checkGrad(`min ${axis} ${keep}`, x, ({ x }) => x.min(axis, keep));
      await checkGrad(`logsumexp ${axis} ${keep}`, x, ({ x }) => x.logsumexp(axis, keep));
    }
  }
  await checkGrad("softmax", { x: { shape: [3, 7] } }, ({ x }) => x.mul(2).softmax(-1));
  await checkGrad("softmax axis 0", { x: { shape: [5, 3] } }, ({ x }) => x.softmax(0));
  for (const exclusive of [false, true]) {
    for (const reverse of [false, true]) {
      await checkGrad(
        `cumsum ${exclusive} ${reverse}`,
        { x: { shape: [3, 6] } },
        ({ x }) => x.cumsum(-1, { exclusive, reverse }),
      );
    }
  }
  await checkGrad("topk values", { x: { shape: [4, 9] } }, ({ x }) => x.topk(3)[0]);
});

Deno.test("grad: layout ops and gather", async () => {
  await checkGrad(
    "reshape",
    { x: { shape: [6, 4] } },
    ({ x }) => x.reshape([3, 8]).mul(x.reshape([3, 8])),
  );
  await checkGrad(
    "transpose",
    { x: { shape: [2, 3, 5] } },
    ({ x }) => x.transpose([2, 0, 1]).exp(),
  );
  await checkGrad("slice", { x: { shape: [4, 7] } }, ({ x }) => x.slice(1, 2, 5).exp());
  await checkGrad("slice rows", { x: { shape: [6, 3] } }, ({ x }) => x.slice(0, 0, 4));
  await checkGrad(
    "concat",
    { a: { shape: [2, 3] }, b: { shape: [2, 4] } },
    ({ a, b }, g) => g.concat([a.exp(), b, a], 1),
  );
  await checkGrad(
    "gather (repeated and out-of-range ids)",
    {
      table: { shape: [7, 5] },
      ids: { shape: [9], dtype: "i32", data: [3, 0, 3, 6, -1, 3, 7, 2, 0] },
    },
    ({ table, ids }) => table.gather(ids),
  );
});

Deno.test("grad: matmul in every layout, batched and broadcast", async () => {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const [M, K, N] = [5, 7, 3];
      await checkGrad(`matmul ${transA} ${transB}`, {
        a: { shape: transA ? [K, M] : [M, K] },
        b: { shape: transB ? [N, K] : [K, N] },
      }, ({ a, b }) => a.matmul(b, { transA, transB }));
      await checkGrad(`batched matmul ${transA} ${transB}`, {
        a: { shape: transA ? [2, K, M] : [2, M, K] },
        b: { shape: transB ? [2, N, K] : [2, K, N] },
      }, ({ a, b }) => a.matmul(b, { transA, transB }));
      await checkGrad(`rows against a weight ${transA} ${transB}`, {
        a: { shape: transA ? [3, K, M] : [3, M, K] },
        b: { shape: transB ? [N, K] : [K, N] },
      }, ({ a, b }) => a.matmul(b, { transA, transB }));
    }
  }
});

Deno.test("grad: rmsnorm and layernorm", async () => {
  await checkGrad(
    "rmsnorm",
    { x: { shape: [3, 2, 9] }, w: { shape: [9] } },
    ({ x, w }) => x.rmsnorm(w, 1e-5),
  );
  await checkGrad(
    "layernorm",
    { x: { shape: [4, 7] }, w: { shape: [7] }, b: { shape: [7] } },
    ({ x, w, b }) => x.layernorm(w, b, 1e-5),
  );
});

Deno.test("grad: stop_gradient passes its values forward and nothing back", async () => {
  // y = Σ x ⊙ sg(x) ⊙ w: dy/dx = x ⊙ w (not 2x ⊙ w), dy/dw = x²; the same on CPU and GPU.
  const g = new GraphBuilder();
  const x = g.input("x", [37]);
  const w = g.input("w", [37]);
  const y = x.mul(x.stopGradient()).mul(w).sum(0);
  const [dx, dw] = g.grad(y, [x, w]);
  g.output("y", y);
  g.output("dx", dx);
  g.output("dw", dw);
  const r = rng(7);
  const xs = Float32Array.from({ length: 37 }, () => 2 * r() - 1);
  const ws = Float32Array.from({ length: 37 }, () => 2 * r() - 1);
  const { gpu: out, cpu } = await runBoth(g.build(), { x: xs, w: ws });
  for (const o of [out, cpu]) {
    assertClose(o.dx.data as Float32Array, xs.map((v, i) => v * ws[i]), 1e-6, 1e-6, "dx");
    assertClose(o.dw.data as Float32Array, xs.map((v) => v * v), 1e-6, 1e-6, "dw");
    const want = xs.reduce((a, v, i) => a + v * v * ws[i], 0);
    assertClose(o.y.data as Float32Array, Float32Array.of(want), 1e-5, 1e-5, "y");
  }
});

Deno.test("grad: a tensor the loss does not reach gets zeros; ops without a rule are named", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [3]);
  const w = g.input("w", [3]);
  const [dw] = g.grad(x.exp().sum(0), [w]);
  assert.deepEqual(dw.shape, [3]);
  const h = new GraphBuilder();
  const a = h.input("a", [8]);
  // A backward op: nothing differentiates a gradient twice.
  const k = h.input("k", [2, 3]);
  const loss = h.apply("conv_grad_input", [a.reshape([1, 4, 2]), k], { method: "fft" })[0];
  assert.throws(
    () => h.grad(loss.reshape([-1]).sum(0), [a]),
    /op "conv_grad_input" has no gradient rule/,
  );
  assert.throws(() => h.grad(a, [a]), /loss must be a float scalar/);
  assert.throws(() => h.grad(a.sum(0), [h.input("i", [2], "i32")]), /only float tensors/);
});

Deno.test("grad: a sigmoid-gated SwiGLU block compiles and is right (fusion splits a group rather than tie kernels into a cycle)", async () => {
  await checkGrad("gated SwiGLU", {
    x: { shape: [5, 6] },
    w1: { shape: [7, 6] },
    w3: { shape: [7, 6] },
    w2: { shape: [6, 7] },
    gate: { shape: [1, 6] },
  }, ({ x, w1, w3, w2, gate }) => {
    const h = x.matmul(w1, { transB: true }).silu().mul(x.matmul(w3, { transB: true }));
    return h.matmul(w2, { transB: true }).mul(x.matmul(gate, { transB: true }).sigmoid());
  }, { samples: 8 });
});

Deno.test("grad with checkpointing: the same gradients, recomputed in the backward, and the forward's activations die early", async () => {
  const T = 64, D = 32;
  const build = (checkpoint?: RegExp) => {
    const g = new GraphBuilder();
    let h = g.input("x", [T, D]);
    const ws = [0, 1, 2].map((i) => g.input(`w${i}`, [D, D]));
    ws.forEach((w, i) => {
      h = g.scope(`layers.${i}`, () => h.add(h.matmul(w, { transB: true }).silu().mul(h).tanh()));
    });
    const loss = h.mul(h).sum(-1).sum(0);
    g.grad(loss, ws, { checkpoint }).forEach((d, i) => g.output(`d${i}`, d));
    return g.build();
  };
  const plain = build(), ckpt = build(/^layers\.\d+/);
  assert.ok(ckpt.nodes.some((n) => n.recompute), "segments were rebuilt");
  assert.ok(!plain.nodes.some((n) => n.recompute));
  const dev = await gpu();
  const r = rng(5);
  const data = (n: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * 0.3);
  const feed = { x: data(T * D), w0: data(D * D), w1: data(D * D), w2: data(D * D) };
  const [a, b] = [compile(plain, dev), compile(ckpt, dev)];
  try {
    const [ra, rb] = [await a.run(feed), await b.run(feed)];
    for (const k of ["d0", "d1", "d2"]) {
      assertClose(rb[k].data, ra[k].data, 1e-5, 1e-6, k);
    }
    // The recomputed kernels run in the backward; the plan holds fewer bytes.
    assert.ok(b.plan().kernels.length > a.plan().kernels.length);
    assert.ok(
      b.plan().peakBytes < a.plan().peakBytes,
      `peak ${b.plan().peakBytes} with checkpointing vs ${a.plan().peakBytes}`,
    );
  } finally {
    a.dispose();
    b.dispose();
  }
});

Deno.test("grad: every op has a gradient rule or a stated reason for none, not both", () => {
  for (const op of Object.keys(OPS)) {
    const rule = op in GRAD_RULES, reason = op in NO_GRADIENT;
    assert.ok(
      rule !== reason,
      `${op}: ${rule ? "a rule and a reason" : "neither rule nor reason"}`,
    );
  }
  const g = new GraphBuilder();
  const src = g.input("src", [2, 3]);
  const rows = g.input("cache", [4, 3]).writeRows(src, g.input("pos", [1], "u32"));
  assert.throws(
    () => g.grad(rows.sum(-1).sum(0), [src]),
    /op "write_rows" has no gradient rule \(a decode-time cache write/,
  );
});

Deno.test("grad: scatter_add gathers its gradient back", async () => {
  await checkGrad("scatter_add", {
    src: { shape: [6, 3] },
    ids: { shape: [6], dtype: "i32", data: [2, 0, 2, 4, -1, 9] },
  }, ({ src, ids }, g) => g.apply("scatter_add", [src, ids], { rows: 5 })[0]);
});

Deno.test("examples/train_step_graph.ts: the training step's plan holds the gradient kernels", async () => {
  const { build, dims } = await import("../examples/train_step_graph.ts");
  const graph = build().build();
  assert.ok(graph.nodes.some((n) => n.scope?.endsWith(".grad")), "gradient nodes are scoped");
  assert.ok(graph.assigns.has("optim.w1.exp_avg") && graph.assigns.has("w1"), "AdamW updates w1");
  const exe = compile(graph, await gpu());
  try {
    const plan = exe.plan(dims);
    assert.ok(plan.kernels.some((k) => k.scope?.endsWith(".grad")));
  } finally {
    exe.dispose();
  }
});

Deno.test("grad: gradient nodes carry their forward node's call site", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [3]);
  const y = x.exp(); // the line the exp's gradient points at
  g.grad(y.sum(0), [x]);
  const graph = g.peek();
  const expSite = graph.nodes.find((n) => n.op === "exp")!.site;
  const grads = graph.nodes.filter((n) => n.scope === "grad");
  assert.ok(grads.length > 0);
  assert.ok(grads.every((n) => n.site !== "<unknown>"));
  assert.ok(grads.some((n) => n.site === expSite), `sites ${grads.map((n) => n.site)}`);
});
