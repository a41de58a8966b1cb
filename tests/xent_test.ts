/**
 * Cross-entropy fused with the LM head (`lm_head_xent`, its gradient op and
 * `crossEntropy`): the forward against plain logits then log-softmax, the
 * gradients against finite differences in float64, the kernels against the
 * CPU reference at a size with many blocks, and the plan against a `[T, V]`
 * buffer.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { crossEntropy, lmHeadCrossEntropy } from "../compiler/cross_entropy.ts";
import { compile } from "../runtime/executable.ts";
import { assertBitsEqual, assertClose, gpu, largestTensor, randomData, runBoth } from "./_util.ts";
import { checkGrad } from "./grad_check.ts";

/** Independent oracle: every logit, then log-softmax, in float64. */
function plainXent(
  h: ArrayLike<number>,
  w: ArrayLike<number>,
  targets: ArrayLike<number>,
  V: number,
  d: number,
): { loss: number[]; lse: number[] } {
  const loss: number[] = [], lse: number[] = [];
  for (let t = 0; t < targets.length; t++) {
    const logits = Array.from({ length: V }, (_, v) => {
      let s = 0;
      for (let k = 0; k < d; k++) s += h[t * d + k] * w[v * d + k];
      return s;
    });
    const m = Math.max(...logits);
    const z = m + Math.log(logits.reduce((a, x) => a + Math.exp(x - m), 0));
    const tg = targets[t];
    lse.push(z);
    loss.push(tg >= 0 && tg < V ? -(logits[tg] - z) : 0);
  }
  return { loss, lse };
}

/** Targets with ignored entries: −100, V (past the end) and, for i32, −1. */
function targetsOf(T: number, V: number, dtype: "i32" | "u32", seed: number) {
  const data = randomData(T, "u32", seed, 0, V) as Uint32Array;
  const out = dtype === "i32" ? Int32Array.from(data) : data;
  out[1] = dtype === "i32" ? -100 : V;
  if (T > 4) out[4] = dtype === "i32" ? V + 3 : 0xffffffff;
  if (T > 5 && dtype === "i32") out[5] = -1;
  return out;
}

Deno.test("lm_head_xent equals plain logits then log-softmax (GPU and CPU, awkward sizes)", async () => {
  const cases = [
    { T: 7, d: 5, V: 37, dtype: "i32", block: 0 },
    { T: 7, d: 5, V: 37, dtype: "u32", block: 6 },
    { T: 9, d: 8, V: 37, dtype: "i32", block: 5 },
    { T: 13, d: 12, V: 70, dtype: "i32", block: 16 },
  ] as const;
  for (const [n, c] of cases.entries()) {
    const g = new GraphBuilder();
    const h = g.input("h", ["T", c.d]);
    const w = g.input("w", [c.V, c.d]);
    const { loss, lse } = lmHeadCrossEntropy(h, w, g.input("tg", ["T"], c.dtype), {
      block: c.block,
    });
    g.output("loss", loss);
    g.output("lse", lse);
    const hs = randomData(c.T * c.d, "f32", 10 * n + 1);
    const ws = randomData(c.V * c.d, "f32", 10 * n + 2);
    const tg = targetsOf(c.T, c.V, c.dtype, 10 * n + 3);
    const want = plainXent(hs, ws, tg, c.V, c.d);
    const { gpu: gr, cpu: cr, labels } = await runBoth(g.build(), { h: hs, w: ws, tg }, {}, {
      T: c.T,
    });
    const what = `case ${JSON.stringify(c)} [${labels}]`;
    for (const r of [gr, cr]) {
      assertClose(r.loss.data, want.loss, 1e-5, 1e-5, `${what} loss`);
      assertClose(r.lse.data, want.lse, 1e-5, 1e-5, `${what} lse`);
    }
    assert.equal(gr.loss.data[1], 0, `${what}: an ignored target counts`);
  }
});

Deno.test("crossEntropy is the mean over counted tokens, 0 when none is counted", async () => {
  const T = 7, d = 5, V = 37;
  const g = new GraphBuilder();
  const tgIn = g.input("tg", [T], "i32");
  g.output("mean", crossEntropy(g.input("h", [T, d]), g.input("w", [V, d]), tgIn));
  const graph = g.build();
  const hs = randomData(T * d, "f32", 1), ws = randomData(V * d, "f32", 2);
  const tg = targetsOf(T, V, "i32", 3) as Int32Array;
  const { loss } = plainXent(hs, ws, tg, V, d);
  const counted = [...tg].filter((x) => x >= 0 && x < V).length;
  const want = loss.reduce((a, b) => a + b, 0) / counted;
  const { gpu: gr, cpu: cr } = await runBoth(graph, { h: hs, w: ws, tg });
  assertClose(gr.mean.data, [want], 1e-5, 1e-6, "mean on the GPU");
  assertClose(cr.mean.data, [want], 1e-5, 1e-6, "mean on the CPU");
  const none = await runBoth(graph, { h: hs, w: ws, tg: new Int32Array(T).fill(-100) });
  assert.equal(none.gpu.mean.data[0], 0);
});

Deno.test("lm_head_xent gradients equal finite differences (h, W; loss and lse)", async () => {
  const shapes = (dtype: "i32" | "u32", T: number, d: number, V: number) => ({
    h: { shape: [T, d] },
    w: { shape: [V, d] },
    tg: { shape: [T], dtype, data: targetsOf(T, V, dtype, 5) },
  });
  for (const block of [0, 6]) {
    await checkGrad(
      `loss, block ${block}`,
      shapes("i32", 7, 5, 37),
      ({ h, w, tg }) => lmHeadCrossEntropy(h, w, tg, { block }).loss,
    );
    // The log-sum-exp's gradient flows too (z-loss), ignored rows included.
    await checkGrad(
      `loss + z-loss, block ${block}`,
      shapes("u32", 7, 5, 37),
      ({ h, w, tg }) => {
        const { loss, lse } = lmHeadCrossEntropy(h, w, tg, { block });
        return loss.add(lse.mul(lse).mul(0.1));
      },
    );
  }
  // vec4 rows (d % 4 = 0), a batch axis, and the mean.
  await checkGrad(
    "mean over a [2, 3] batch, d = 8",
    {
      h: { shape: [2, 3, 8] },
      w: { shape: [11, 8] },
      tg: { shape: [2, 3], dtype: "i32", data: [3, -100, 10, 0, 7, 11] },
    },
    ({ h, w, tg }) => crossEntropy(h, w, tg, { block: 3 }).reshape([1]),
  );
  // Tied embeddings (Mamba's lm_head = embeddings): W's gradient sums the
  // head's and the gather's.
  await checkGrad(
    "tied embedding and head",
    {
      w: { shape: [13, 6] },
      ids: { shape: [5], dtype: "i32", data: [1, 12, 0, 5, 5] },
      tg: { shape: [5], dtype: "i32", data: [12, 0, -100, 5, 3] },
    },
    ({ w, ids, tg }) => lmHeadCrossEntropy(w.gather(ids).tanh(), w, tg).loss,
  );
  // Only one of the two gradients wanted: the other kernel is skipped.
  await checkGrad(
    "W only",
    shapes("i32", 7, 5, 37),
    ({ h, w, tg }) => lmHeadCrossEntropy(h, w, tg).loss,
    { wrt: ["w"] },
  );
});

Deno.test("lm_head_xent forward and gradients on the GPU equal the CPU reference at T=64, d=64, V=1000", async () => {
  const T = 64, d = 64, V = 1000;
  for (const block of [0, 24]) {
    const g = new GraphBuilder();
    const h = g.input("h", ["T", d]);
    const w = g.input("w", [V, d]);
    const tg = g.input("tg", ["T"], "i32");
    const { loss, lse } = lmHeadCrossEntropy(h, w, tg, { block });
    const total = loss.add(lse.mul(lse).mul(1e-2)).sum(0);
    const [dh, dw] = g.grad(total, [h, w]);
    g.output("loss", loss);
    g.output("lse", lse);
    g.output("dh", dh);
    g.output("dw", dw);
    const hs = randomData(T * d, "f32", 11, -0.5, 0.5);
    const ws = randomData(V * d, "f32", 12, -0.5, 0.5);
    const tgs = targetsOf(T, V, "i32", 13);
    const graph = g.build();
    const feeds = { h: hs, w: ws, tg: tgs };
    const { gpu: gr, cpu: cr, labels } = await runBoth(graph, feeds, {}, { T });
    const what = `block ${block} [${labels}]`;
    assert.ok(labels.includes("lm_head_xent") && labels.includes("lm_head_xent_grad:dw"), what);
    assertClose(gr.loss.data, cr.loss.data, 1e-5, 1e-5, `${what} loss`);
    assertClose(gr.lse.data, cr.lse.data, 1e-5, 1e-5, `${what} lse`);
    assertClose(gr.dh.data, cr.dh.data, 1e-4, 1e-6, `${what} dh`);
    assertClose(gr.dw.data, cr.dw.data, 1e-4, 1e-6, `${what} dW`);
    if (block !== 0) continue;
    // No atomics: the same inputs give the same bits, run after run.
    const exe = compile(graph, await gpu());
    try {
      const [a, b] = [await exe.run(feeds), await exe.run(feeds)];
      assertBitsEqual(a.dh.data as Float32Array, b.dh.data as Float32Array, "dh twice");
      assertBitsEqual(a.dw.data as Float32Array, b.dw.data as Float32Array, "dW twice");
    } finally {
      exe.dispose();
    }
  }
});

Deno.test("a training step's plan holds no [T, V] buffer", async () => {
  const T = 128, d = 32, V = 1000;
  const g = new GraphBuilder();
  const h = g.input("h", ["T", d]);
  const w = g.param("lm_head.weight", [V, d]);
  const loss = crossEntropy(h, w, g.input("tg", ["T"], "i32"));
  const [dh, dw] = g.grad(loss, [h, w]);
  g.output("loss", loss);
  g.output("dh", dh);
  g.output("dw", dw);
  const exe = compile(g.build(), await gpu(), {
    params: { "lm_head.weight": new Float32Array(V * d) },
  });
  try {
    const plan = exe.plan({ T });
    const biggest = largestTensor(plan);
    assert.ok(biggest < T * V * 4, `a tensor of ${biggest} B ≥ T·V·4 = ${T * V * 4} B`);
    const labels = plan.kernels.map((k) => k.label);
    for (const k of ["lm_head_xent", "lm_head_xent_grad:dh", "lm_head_xent_grad:dw"]) {
      assert.ok(labels.includes(k), `${k} missing from [${labels}]`);
    }
  } finally {
    exe.dispose();
  }
});

Deno.test("lm_head_xent refuses operands that do not fit, naming them", () => {
  const g = new GraphBuilder();
  const w = g.input("w", [10, 4]);
  const tg = g.input("tg", [3], "i32");
  assert.throws(
    () => g.apply("lm_head_xent", [g.input("h", [3, 5]), w, tg], { block: 0 }),
    (e: Error) => e instanceof RangeError && /hidden size 4/.test(e.message),
  );
  assert.throws(
    () => g.apply("lm_head_xent", [g.input("h2", [3, 4]), w, g.input("f", [3])], { block: 0 }),
    (e: Error) => e instanceof TypeError && /targets must be i32 or u32/.test(e.message),
  );
  assert.throws(
    () => g.apply("lm_head_xent", [g.input("h3", [2, 4]), w, tg], { block: 0 }),
    (e: Error) => e instanceof RangeError && /targets \[3\]/.test(e.message),
  );
  assert.throws(
    () => g.apply("lm_head_xent", [g.input("h4", [3, 4]), w, tg], { block: -1 }),
    (e: Error) => e instanceof RangeError && /block/.test(e.message),
  );
});
