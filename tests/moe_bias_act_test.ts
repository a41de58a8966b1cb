/**
 * GPT-OSS experts in the `moe` op: per-expert biases (`expertBias`: b1, b3,
 * b2) and the clamped `swiglu_oai` activation. The float64 reference against
 * an independent naive layer written here; the portable kernels (decode
 * GEMVs, prefill grouped GEMMs, the dense baseline, capacity drops, slot
 * tables with absent experts, f16 weights, a mask, the sigmoid_bias router, a
 * fused residual) against the reference on awkward sizes; zero biases against
 * the bias-free layer bit for bit; bad inputs refused by name. The gradients
 * are in `moe_grad_bias_act_test.ts`.
 * Quantized weights, the GPU-shaped kernels and segmented bindings are in
 * `moe_bias_act_devices_test.ts`.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { moe, type MoeOptions } from "../models/moe.ts";
import { assertClose, gpu } from "./_util.ts";
import {
  assertClamped,
  type BiasActCase,
  checkNaive,
  type ClampHits,
  runCase,
} from "./fixtures/moe_bias_act.ts";

const isDecode = (labels: string[]) => labels.some((l) => /decode_gemv1/.test(l));
const has = (labels: string[], re: RegExp) => labels.some((l) => re.test(l));

Deno.test("moe bias/act: the reference equals a naive float64 layer, and the clamp is hit", async () => {
  const dev = await gpu();
  const cases: BiasActCase[] = [
    { T: 7, d: 20, ff: 12, E: 5, k: 2, seed: 1 },
    { T: 7, d: 20, ff: 12, E: 5, k: 2, limit: 0.5, alpha: 1, seed: 2 },
    { T: 3, d: 20, ff: 12, E: 5, k: 2, activation: "swiglu", seed: 3 },
    { T: 9, d: 16, ff: 8, E: 4, k: 3, bias: false, seed: 4 },
    { T: 2, d: 16, ff: 8, E: 4, k: 1, residual: true, limit: 2, seed: 5 },
  ];
  for (const c of cases) {
    const run = await runCase(c, dev, "naive");
    const hits = checkNaive(c, run);
    if ((c.activation ?? "swiglu_oai") === "swiglu_oai") assertClamped(hits, JSON.stringify(c));
    if (c.limit === 0.5) {
      // A small limit clamps most gates: far more than at the default limit.
      assert.ok(hits.gate > (c.T * c.k * c.ff) / 4, JSON.stringify(hits));
    }
  }
});

Deno.test("moe bias/act: decode (T = 1, 2, 3) and prefill (T = 7, 33) at awkward sizes", async () => {
  const dev = await gpu();
  const layers: Omit<BiasActCase, "T" | "seed">[] = [
    { d: 20, ff: 12, E: 4, k: 2 },
    { d: 36, ff: 24, E: 6, k: 3, limit: 0.5, alpha: 1 },
    { d: 18, ff: 10, E: 5, k: 1 }, // widths not multiples of 4: scalar loads and stores
  ];
  let seed = 10;
  for (const layer of layers) {
    // Over the decode sizes and over the prefill sizes, the clamp bites on every side.
    const hits: ClampHits[] = [0, 1].map(() => ({ gate: 0, upHigh: 0, upLow: 0 }));
    for (const T of [1, 2, 3, 7, 33]) {
      const c = { ...layer, T, seed: seed++ };
      const run = await runCase(c, dev, "paths");
      assert.equal(isDecode(run.labels), T <= 4, run.labels.join(", "));
      if (T > 4) assert.ok(has(run.labels, /grouped_gemm2/), run.labels.join(", "));
      const h = checkNaive(c, run), sum = hits[T > 4 ? 1 : 0];
      sum.gate += h.gate;
      sum.upHigh += h.upHigh;
      sum.upLow += h.upLow;
    }
    hits.forEach((h, i) =>
      assertClamped(h, `${JSON.stringify(layer)} ${i ? "prefill" : "decode"}`)
    );
  }
});

Deno.test("moe bias/act: swiglu with biases, swiglu_oai without, mask, sigmoid_bias router, residual", async () => {
  const dev = await gpu();
  const base = { d: 20, ff: 12, E: 5, k: 2 };
  for (const T of [3, 13]) {
    await runCase({ ...base, T, activation: "swiglu", seed: 30 + T }, dev, "swiglu+bias");
    await runCase({ ...base, T, bias: false, seed: 31 + T }, dev, "oai, no bias");
    // Input order: selection bias, then b1 b3 b2, then the mask.
    await runCase(
      { ...base, T, router: "sigmoid_bias", mask: true, seed: 32 + T },
      dev,
      "sigmoid_bias+mask",
    );
    await runCase({ ...base, T, mask: true, residual: true, seed: 33 + T }, dev, "mask+residual");
    await runCase({ ...base, T, router: "switch", k: 1, seed: 34 + T }, dev, "switch");
  }
});

Deno.test("moe bias/act: dense baseline, capacity drops, slot tables with absent experts, f16", async () => {
  const dev = await gpu();
  const base = { d: 20, ff: 12, E: 5, k: 2 };
  for (const T of [2, 7]) {
    const r = await runCase({ ...base, T, dense: true, seed: 40 + T }, dev, "dense");
    assert.ok(has(r.labels, /dense_gemm2/), r.labels.join(", "));
  }
  // Capacity ⌊0.5·33·2/4⌋ = 8 per expert: dropped pairs add nothing, not even b2.
  const cap = await runCase(
    { d: 20, ff: 12, E: 4, k: 2, T: 33, capacityFactor: 0.5, seed: 45 },
    dev,
    "capacity",
  );
  assert.ok(Array.from(cap.counts[1]).some((n) => n > 8), "some pairs are dropped");
  // 3 slots for 5 experts: experts 3 and 4 are on another device and add exactly 0
  // (their biases too); the biases are indexed by expert while the weights go by slot.
  for (const T of [2, 13]) {
    const r = await runCase({ ...base, T, slots: 3, seed: 46 + T }, dev, "slots");
    assert.ok(Array.from(r.counts[1]).slice(3).some((n) => n > 0), "absent experts chosen");
  }
  for (const T of [3, 13]) {
    await runCase({ ...base, T, slots: 5, seed: 50 + T }, dev, "slots, all present");
  }
  if (dev.caps.f16) {
    // d and ff multiples of 8: a CPU adapter's decode GEMVs read packed f16 words.
    for (const T of [1, 9]) {
      await runCase({ d: 24, ff: 16, E: 4, k: 2, T, dtype: "f16", seed: 71 + T }, dev, "f16");
    }
    await runCase({ d: 20, ff: 12, E: 4, k: 2, T: 2, dtype: "f16", seed: 70 }, dev, "f16 odd");
  }
});

Deno.test("moe bias/act: zero biases reproduce the bias-free layer bit for bit", async () => {
  const dev = await gpu();
  for (const activation of ["swiglu", "swiglu_oai"] as const) {
    for (const [T, extra] of [[2, {}], [9, {}], [5, { dense: true }], [9, { slots: 3 }]] as const) {
      const c = { d: 20, ff: 12, E: 5, k: 2, T, activation, seed: 60 + T, ...extra };
      const none = await runCase({ ...c, bias: false }, dev, "no bias");
      const zero = await runCase({ ...c, biasScale: 0 }, dev, "zero bias");
      assertClose(zero.got, none.got, 0, 0, `${activation} T=${T} ${JSON.stringify(extra)}`);
    }
  }
});

/** The `moe` attributes of a 4-expert top-2 layer. */
const ATTRS = {
  experts: 4,
  topK: 2,
  router: "softmax_topk" as const,
  normTopk: true,
  routedScaling: 1,
  capacityFactor: 0,
  dense: false,
};

Deno.test("moe bias/act: bad biases, activations, alpha and limit are refused by name", () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 16]);
  const p = (n: string, s: number[], dt: "f32" | "f16" = "f32") => g.param(n, s, dt);
  const w = [p("r", [4, 16]), p("w1", [4, 8, 16]), p("w3", [4, 8, 16]), p("w2", [4, 16, 8])];
  const b1 = p("b1", [4, 8]), b3 = p("b3", [4, 8]), b2 = p("b2", [4, 16]);
  const eb = { ...ATTRS, expertBias: true };
  const apply = (ins: ReturnType<typeof p>[], attrs: Record<string, unknown>) =>
    g.apply("moe", [x, ...ins], attrs as typeof ATTRS);
  // The good layer builds, with and without a mask after the biases.
  apply([...w, b1, b3, b2], eb);
  apply([...w, b1, b3, b2, g.input("mask", ["T"])], eb);
  const refuses = (
    ins: ReturnType<typeof p>[],
    attrs: object,
    kind: ErrorConstructor,
    re: RegExp,
  ) =>
    assert.throws(() => apply(ins, attrs as Record<string, unknown>), (e: Error) => {
      assert.ok(e instanceof kind, `${e.constructor.name}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    });
  refuses(
    [...w, p("b1w", [4, 9]), b3, b2],
    eb,
    RangeError,
    /expert bias b1 must be \[experts, ff\] = \[4, 8\], got \[4, 9\]/,
  );
  refuses(
    [...w, b1, p("b3w", [5, 8]), b2],
    eb,
    RangeError,
    /expert bias b3 must be \[experts, ff\] = \[4, 8\], got \[5, 8\]/,
  );
  refuses(
    [...w, b1, b3, p("b2w", [4, 8])],
    eb,
    RangeError,
    /expert bias b2 must be \[experts, d\] = \[4, 16\], got \[4, 8\]/,
  );
  refuses([...w, b1, b3, p("b2h", [4, 16], "f16")], eb, TypeError, /expert bias b2 must be f32/);
  refuses(w, eb, RangeError, /with expert biases takes 8\.\.9 inputs .*b1, b3, b2.*got 5/);
  refuses(
    [...w, b1, b3, b2],
    { ...ATTRS, expertBias: 1 },
    TypeError,
    /expertBias must be a boolean/,
  );
  refuses(
    w,
    { ...ATTRS, activation: "gelu" },
    TypeError,
    /activation must be one of swiglu, swiglu_oai, geglu, geglu_tanh, reglu, quick_geglu, relu2, got "gelu"/,
  );
  const oai = { ...ATTRS, activation: "swiglu_oai" };
  apply(w, { ...oai, alpha: 1.702, limit: 7 });
  refuses(w, { ...oai, limit: 0 }, RangeError, /limit must be a finite number > 0, got 0/);
  refuses(w, { ...oai, limit: -1 }, RangeError, /limit must be a finite number > 0, got -1/);
  // The builder refuses non-finite attributes before the op sees them.
  refuses(w, { ...oai, limit: Infinity }, RangeError, /"limit" must be finite, got Infinity/);
  refuses(w, { ...oai, alpha: NaN }, RangeError, /"alpha" must be finite, got NaN/);
  refuses(w, { ...ATTRS, limit: 7 }, TypeError, /limit applies to activation "swiglu_oai" only/);
  // The DSL says the same, naming the layer.
  const layer = (o: Partial<MoeOptions>) => {
    const g2 = new GraphBuilder();
    return moe(g2, g2.input("x", ["T", 16]), { name: "l0.moe", experts: 4, topK: 2, ff: 8, ...o });
  };
  assert.throws(
    () => layer({ activation: "swiglu_oai", limit: 0 }),
    /moe l0\.moe: limit must be a finite number > 0, got 0/,
  );
  assert.throws(
    () => layer({ activation: "swiglu_oai", alpha: Infinity }),
    /moe l0\.moe: alpha must be a finite number, got Infinity/,
  );
  assert.throws(() => layer({ alpha: 1 }), /alpha applies to activation "swiglu_oai" only/);
  assert.throws(() => layer({ activation: "relu" as "swiglu" }), TypeError);
  // expertBias declares the biases under the layer's name, even with a slot pool.
  const g3 = new GraphBuilder();
  const m3 = moe(g3, g3.input("x", ["T", 16]), {
    name: "l1.moe",
    experts: 4,
    topK: 2,
    ff: 8,
    expertBias: true,
    slots: { count: 2, pool: "pool" },
  });
  g3.output("y", m3.y);
  const graph = g3.build();
  const params = new Map([...graph.params].map(([n, id]) => [n, graph.values[id].shape]));
  assert.deepEqual(params.get("l1.moe.b1"), [4, 8]);
  assert.deepEqual(params.get("l1.moe.b3"), [4, 8]);
  assert.deepEqual(params.get("l1.moe.b2"), [4, 16]);
  assert.deepEqual(params.get("pool.w1"), [2, 8, 16]);
  assert.ok(!params.has("pool.b1"));
});

Deno.test("moe bias/act: a layer with biases or swiglu_oai differentiates (checked in moe_grad_bias_act_test.ts)", () => {
  for (
    const o of [
      { expertBias: true },
      { activation: "swiglu_oai" },
      { expertBias: true, activation: "swiglu_oai" },
      { activation: "swiglu" },
    ] as const
  ) {
    const g = new GraphBuilder();
    const x = g.input("x", [5, 16]);
    const y = moe(g, x, { name: "l0.moe", experts: 4, topK: 2, ff: 8, ...o }).y;
    const [dx] = g.grad(y.sum(-1).sum(0), [x]);
    assert.deepEqual(dx.shape, [5, 16]);
  }
});
