/**
 * The `moe` op through the public path: GraphBuilder → compile(graph, GPU) → run,
 * against compile(graph, cpuDevice()) → run (the float64 reference).
 */
import assert from "node:assert/strict";
import { compile, cpuDevice, GraphBuilder, type HostTensor, type Plan } from "../mod.ts";
import { countParams, moe, moeDense, type MoeOptions, type MoeRouterKind } from "../mod.ts";
import { moeWeightTraffic } from "../ops/moe/mod.ts";
import { assertClose, gpu, rng } from "./_util.ts";

interface Case {
  T: number;
  d: number;
  ff: number;
  E: number;
  k: number;
  router?: MoeRouterKind;
  normTopk?: boolean;
  routedScaling?: number;
  capacityFactor?: number;
  seed?: number;
  mask?: Float32Array;
  residual?: boolean;
  dense?: boolean;
  shared?: MoeOptions["shared"];
  weightDtype?: "f32" | "f16";
  /** Overrides of the generated parameters (by suffix: router, w1, w3, w2, bias, …). */
  params?: Record<string, Float32Array>;
  x?: Float32Array;
}

function uniform(n: number, scale: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

function paramsOf(c: Case): Record<string, Float32Array> {
  const r = rng(c.seed ?? 1);
  const { d, ff, E } = c;
  const p: Record<string, Float32Array> = {
    "m.router": uniform(E * d, 1, r),
    "m.w1": uniform(E * ff * d, 1 / Math.sqrt(d), r),
    "m.w3": uniform(E * ff * d, 1 / Math.sqrt(d), r),
    "m.w2": uniform(E * d * ff, 1 / Math.sqrt(ff), r),
  };
  if (c.router === "sigmoid_bias" || c.router === "softmax_bias") {
    p["m.bias"] = uniform(E, 0.3, r);
  }
  if (c.shared) {
    p["m.shared.w1"] = uniform(c.shared.ff * d, 1 / Math.sqrt(d), r);
    p["m.shared.w3"] = uniform(c.shared.ff * d, 1 / Math.sqrt(d), r);
    p["m.shared.w2"] = uniform(d * c.shared.ff, 1 / Math.sqrt(c.shared.ff), r);
    if (c.shared.gated) p["m.shared.gate"] = uniform(d, 1, r);
  }
  for (const [k, v] of Object.entries(c.params ?? {})) p[`m.${k}`] = v;
  return p;
}

function graphOf(c: Case) {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", c.d]);
  const opts: MoeOptions = {
    name: "m",
    experts: c.E,
    topK: c.k,
    ff: c.ff,
    router: c.router,
    normTopk: c.normTopk,
    routedScaling: c.routedScaling,
    capacityFactor: c.capacityFactor,
    mask: c.mask ? g.input("mask", ["T"]) : undefined,
    shared: c.shared,
    weightDtype: c.weightDtype,
  };
  const m = (c.dense ? moeDense : moe)(g, x, opts);
  g.output("y", c.residual ? m.y.add(x) : m.y);
  g.output("logits", m.logits);
  g.output("counts", m.counts);
  g.output("losses", m.losses);
  return g.build();
}

interface Result {
  gpu: Record<string, HostTensor>;
  cpu: Record<string, HostTensor>;
  plan: Plan;
}

async function check(c: Case, what: string): Promise<Result> {
  const graph = graphOf(c);
  const params = paramsOf(c);
  const x = c.x ?? uniform(c.T * c.d, 1, rng((c.seed ?? 1) + 100));
  const inputs: Record<string, Float32Array> = { x };
  if (c.mask) inputs.mask = c.mask;
  const eg = compile(graph, await gpu(), { params });
  const ec = compile(graph, cpuDevice(), { params });
  try {
    const a = await eg.run(inputs);
    const b = await ec.run(inputs);
    const tol = c.weightDtype === "f16" ? 3e-3 : 2e-4;
    assertClose(a.y.data, b.y.data, tol, tol, `${what}: y`);
    assertClose(a.logits.data, b.logits.data, 1e-4, 1e-5, `${what}: logits`);
    assert.deepEqual(Array.from(a.counts.data), Array.from(b.counts.data), `${what}: counts`);
    assertClose(a.losses.data, b.losses.data, 1e-4, 1e-6, `${what}: losses`);
    return { gpu: a, cpu: b, plan: eg.lastPlan! };
  } finally {
    eg.dispose();
  }
}

const labels = (p: Plan) => p.kernels.map((k) => k.label).join(" ");

Deno.test("moe: random routings, k = 1, 2, 4, 8, E up to 64, T not a multiple of the tile", async () => {
  const cases: Case[] = [
    { T: 37, d: 32, ff: 48, E: 8, k: 2, seed: 1 },
    { T: 13, d: 16, ff: 24, E: 4, k: 1, seed: 2 },
    { T: 29, d: 24, ff: 32, E: 16, k: 4, seed: 3 },
    { T: 21, d: 16, ff: 16, E: 8, k: 8, seed: 4 },
    { T: 70, d: 16, ff: 20, E: 64, k: 8, seed: 5 },
    { T: 6, d: 12, ff: 10, E: 5, k: 3, seed: 6 }, // widths that are not multiples of 4
  ];
  for (const c of cases) {
    const r = await check(c, JSON.stringify(c));
    assert.match(labels(r.plan), /sort/, "prefill path for T > 4");
  }
});

Deno.test("moe: every router kind", async () => {
  const base = { T: 19, d: 32, ff: 24, E: 8 };
  await check({ ...base, k: 2, router: "softmax_topk", normTopk: true, seed: 7 }, "mixtral");
  await check({ ...base, k: 2, router: "softmax_topk", normTopk: false, seed: 8 }, "qwen2-moe");
  await check(
    { ...base, k: 3, router: "sigmoid_bias", routedScaling: 2.5, seed: 9 },
    "deepseek-v3",
  );
  await check({ ...base, k: 1, router: "switch", seed: 10 }, "switch");
  await check({ ...base, k: 2, router: "softmax_bias", seed: 14 }, "ernie-4.5");
  // Decode path too, for each kind.
  await check({ ...base, T: 3, k: 2, router: "softmax_topk", normTopk: false, seed: 11 }, "d1");
  await check({ ...base, T: 2, k: 2, router: "sigmoid_bias", seed: 12 }, "d2");
  await check({ ...base, T: 4, k: 1, router: "switch", seed: 13 }, "d3");
  await check({ ...base, T: 3, k: 2, router: "softmax_bias", seed: 15 }, "d4");
});

Deno.test("moe: ties go to the lower expert index", async () => {
  const d = 16, E = 8;
  // Experts 2, 3 and 5 have identical router rows: their logits tie exactly.
  const r = rng(20);
  const router = uniform(E * d, 0.2, r);
  const row = uniform(d, 1, r);
  for (const e of [2, 3, 5]) router.set(row, e * d);
  const x = Float32Array.from({ length: 9 * d }, (_, i) => row[i % d] * (1 + (i % 3)));
  const res = await check({ T: 9, d, ff: 16, E, k: 2, params: { router }, x, seed: 21 }, "ties");
  // Every token aligns with the tied row: experts 2 and 3 win, never 5.
  assert.deepEqual(Array.from(res.gpu.counts.data), [0, 0, 9, 9, 0, 0, 0, 0]);
  await check({ T: 1, d, ff: 16, E, k: 2, params: { router }, x: x.slice(0, d) }, "ties T=1");
});

/** Router and NaN-poisoned experts: only experts 0 and 1 can win, the rest hold NaN. */
function poisoned(d: number, ff: number, E: number): Record<string, Float32Array> {
  const router = new Float32Array(E * d);
  for (let i = 0; i < d; i++) {
    router[i] = 1;
    router[d + i] = 0.5;
    for (let e = 2; e < E; e++) router[e * d + i] = -1;
  }
  const r = rng(30);
  const w1 = uniform(E * ff * d, 0.3, r), w3 = uniform(E * ff * d, 0.3, r);
  const w2 = uniform(E * d * ff, 0.3, r);
  w1.fill(NaN, 2 * ff * d);
  w3.fill(NaN, 2 * ff * d);
  w2.fill(NaN, 2 * d * ff);
  return { router, w1, w3, w2 };
}

Deno.test("moe: all tokens on one expert, experts with zero tokens never read (NaN)", async () => {
  const d = 16, ff = 32, E = 8;
  const x = (T: number) => Float32Array.from({ length: T * d }, (_, i) => 0.1 + (i % 7) * 0.1);
  for (const T of [1, 3, 4, 5, 33]) {
    const res = await check(
      { T, d, ff, E, k: 1, params: poisoned(d, ff, E), x: x(T) },
      `one expert T=${T}`,
    );
    assert.equal(res.gpu.counts.data[0], T);
    assert.ok(Array.from(res.gpu.y.data).every(Number.isFinite), `T=${T}: y is finite`);
    assert.match(labels(res.plan), T <= 4 ? /decode_gemv/ : /grouped_gemm/);
  }
  // k = 2 over 16 experts: 14 have no tokens and NaN weights.
  const p = poisoned(d, ff, 16);
  const res = await check({ T: 18, d, ff, E: 16, k: 2, params: p, x: x(18) }, "zero-token experts");
  assert.deepEqual(Array.from(res.gpu.counts.data), [18, 18, ...new Array(14).fill(0)]);
});

Deno.test("moe: decode binds all experts but reads only the chosen ones", async () => {
  const d = 16, ff = 32, E = 8, T = 2;
  const res = await check(
    {
      T,
      d,
      ff,
      E,
      k: 2,
      params: poisoned(d, ff, E),
      x: Float32Array.from({ length: T * d }, () => 0.3),
    },
    "decode NaN",
  );
  assert.equal(res.plan.kernels.length, 4);
  assert.doesNotMatch(labels(res.plan), /sort/);
  // Each decode GEMV binds the whole stacked weights (E slabs) …
  const slab = ff * d * 4;
  for (const k of res.plan.kernels.filter((k) => /gemv/.test(k.label))) {
    const weightBytes = k.bindings.filter((b) => res.plan.slots[b.slot].kind === "param")
      .reduce((a, b) => a + b.size, 0);
    assert.equal(weightBytes, (/gemv1/.test(k.label) ? 2 : 1) * E * slab);
  }
  // … but indexes only k/E of them, which the NaN experts above prove.
  const t = moeWeightTraffic({ T: 1, d: 4096, ff: 14336, E: 8, k: 2, weightBytes: 2 }, 2);
  assert.equal(t.path, "decode");
  assert.equal(t.read / t.bound, 0.25);
});

Deno.test("moe: capacity dropping exactly as Switch defines it", async () => {
  const d = 16, ff = 16, E = 4, T = 20;
  // Capacity ⌊1.0·20·1/4⌋ = 5; all tokens prefer expert 0, so tokens 5.. overflow and skip the layer.
  const router = new Float32Array(E * d);
  for (let i = 0; i < d; i++) router[i] = 1;
  const x = Float32Array.from({ length: T * d }, (_, i) => 0.05 + (i % 5) * 0.05);
  for (const residual of [false, true]) {
    const res = await check(
      { T, d, ff, E, k: 1, router: "switch", capacityFactor: 1, params: { router }, x, residual },
      `capacity residual=${residual}`,
    );
    assert.equal(res.gpu.counts.data[0], T, "counts are routed pairs, before the drop");
    const y = res.gpu.y.data;
    for (let t = 0; t < T; t++) {
      const row = Array.from(y.slice(t * d, (t + 1) * d));
      const xin = Array.from(x.slice(t * d, (t + 1) * d));
      const passthrough = row.every((v, i) => v === (residual ? xin[i] : 0));
      assert.equal(passthrough, t >= 5, `token ${t} ${t >= 5 ? "dropped" : "kept"}`);
    }
  }
  // Capacity with k = 2 and T = 1 stays on the prefill path (decode is dropless).
  const r = await check(
    { T: 1, d, ff, E, k: 2, capacityFactor: 1.25, seed: 40 },
    "capacity T=1",
  );
  assert.match(labels(r.plan), /sort/);
  await check({ T: 33, d, ff, E: 8, k: 2, capacityFactor: 0.5, seed: 41 }, "cf 0.5");
});

Deno.test("moe: aux and z losses against a hand computation", async () => {
  // Router = I, x₀ = (ln 3, 0), x₁ = (0, 0): p₀ = (3/4, 1/4), p₁ = (1/2, 1/2) (tie → expert 0).
  // k = 1: f = (1, 0), P = (5/8, 3/8) → aux = 2·(1·5/8) = 1.25;
  // z = ((ln 4)² + (ln 2)²) / 2 = 2.5·(ln 2)².
  const ln2 = Math.log(2);
  const params = { router: Float32Array.of(1, 0, 0, 1) };
  const x = Float32Array.of(Math.log(3), 0, 0, 0);
  const base = { T: 2, d: 2, ff: 4, E: 2, k: 1, params, x, seed: 50 };
  const a = await check(base, "hand");
  assertClose(a.gpu.losses.data, [1.25, 2.5 * ln2 * ln2], 1e-5, 1e-6, "hand losses");
  assert.deepEqual(Array.from(a.gpu.counts.data), [2, 0]);
  // Mask out token 1: f = (1, 0), P = (3/4, 1/4) → aux = 1.5; z = (ln 4)² = 4·(ln 2)².
  const b = await check({ ...base, mask: Float32Array.of(1, 0) }, "hand masked");
  assertClose(b.gpu.losses.data, [1.5, 4 * ln2 * ln2], 1e-5, 1e-6, "hand masked losses");
  // Same on the prefill path (T = 6 copies of the pair, same means).
  const x6 = new Float32Array(12);
  for (let t = 0; t < 6; t += 2) x6.set(x, t * 2);
  const c = await check({ ...base, T: 6, x: x6 }, "hand T=6");
  assertClose(c.gpu.losses.data, [1.25, 2.5 * ln2 * ln2], 1e-5, 1e-6, "hand losses T=6");
});

Deno.test('moe: auxLossConvention "hf" equals transformers\' load_balancing_loss_func', async () => {
  const T = 9, d = 8, ff = 8, E = 4, k = 2;
  const r = rng(90);
  const params = {
    "l.router": uniform(E * d, 1, r),
    "l.w1": uniform(E * ff * d, 0.3, r),
    "l.w3": uniform(E * ff * d, 0.3, r),
    "l.w2": uniform(E * d * ff, 0.3, r),
  };
  const x = uniform(T * d, 1, r);
  const run = async (auxLossConvention?: "pairs" | "hf") => {
    const g = new GraphBuilder();
    const m = moe(g, g.input("x", [T, d]), {
      name: "l",
      experts: E,
      topK: k,
      ff,
      auxLossConvention,
    });
    g.output("logits", m.logits);
    g.output("aux", m.auxLoss);
    g.output("losses", m.losses);
    const exe = compile(g.build(), await gpu(), { params });
    try {
      return await exe.run({ x });
    } finally {
      exe.dispose();
    }
  };
  const pairs = await run(), hf = await run("hf");
  // load_balancing_loss_func, written from its definition: probabilities over all
  // experts, one-hot [T, k, E] of the top-k picks, mean over tokens per slot,
  // times the mean probability, summed, times E.
  const logits = hf.logits.data;
  const P = new Float64Array(E), perSlot = new Float64Array(k * E);
  for (let t = 0; t < T; t++) {
    const z = Array.from(logits.slice(t * E, (t + 1) * E));
    const mx = Math.max(...z), e = z.map((v) => Math.exp(v - mx)), s = e.reduce((a, b) => a + b);
    const p = e.map((v) => v / s);
    p.forEach((v, i) => (P[i] += v / T));
    const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    for (let j = 0; j < k; j++) perSlot[j * E + order[j]] += 1 / T;
  }
  let want = 0;
  for (let j = 0; j < k; j++) for (let i = 0; i < E; i++) want += perSlot[j * E + i] * P[i];
  want *= E;
  assertClose(hf.aux.data, [want], 1e-5, 1e-6, "hf aux");
  assertClose(pairs.aux.data, [want / k], 1e-5, 1e-6, "pairs aux = hf / k");
  assertClose(hf.losses.data, [want, pairs.losses.data[1]], 1e-5, 1e-6, "z-loss unchanged");
  assert.throws(
    () =>
      moe(new GraphBuilder(), new GraphBuilder().input("x", [1, d]), {
        name: "l",
        experts: E,
        topK: k,
        ff,
        auxLossConvention: "tokens" as "hf",
      }),
    /auxLossConvention must be "pairs" or "hf", got "tokens"/,
  );
});

Deno.test("moe: prefill takes at most 6 kernels, independent of E", async () => {
  const counts: number[] = [];
  for (const E of [8, 64]) {
    const r = await check(
      { T: 40, d: 16, ff: 16, E, k: 2, seed: 60 + E, residual: true },
      `E=${E}`,
    );
    counts.push(r.plan.kernels.length);
    // The residual add rides in the combine kernel's epilogue.
    assert.ok(r.plan.kernels.some((k) => /combine.*ew/.test(k.label)), labels(r.plan));
  }
  assert.ok(counts[0] <= 6, `prefill kernels ${counts[0]}`);
  assert.equal(counts[0], counts[1]);
});

Deno.test("moe: one compiled graph serves decode and prefill sizes of T", async () => {
  const c: Case = { T: 0, d: 16, ff: 16, E: 8, k: 2, seed: 70 };
  const graph = graphOf(c);
  const params = paramsOf(c);
  const eg = compile(graph, await gpu(), { params });
  const ec = compile(graph, cpuDevice(), { params });
  try {
    for (const T of [1, 4, 5, 17, 1]) {
      const x = uniform(T * c.d, 1, rng(T));
      const a = await eg.run({ x });
      const b = await ec.run({ x });
      assertClose(a.y.data, b.y.data, 2e-4, 2e-4, `T=${T}`);
      assert.equal(/gemv/.test(labels(eg.lastPlan!)), T <= 4);
    }
    // T = 0: empty outputs, zero counts and losses.
    const z = await eg.run({ x: new Float32Array(0) });
    assert.deepEqual(Array.from(z.counts.data), new Array(8).fill(0));
    assert.deepEqual(Array.from(z.losses.data), [0, 0]);
  } finally {
    eg.dispose();
  }
});

Deno.test("moe: dense baseline, shared experts, f16 weights, mask", async () => {
  const base = { T: 23, d: 16, ff: 24, E: 8, k: 2, seed: 80 };
  const routed = await check(base, "routed");
  const dense = await check({ ...base, dense: true }, "dense");
  assertClose(dense.gpu.y.data, routed.gpu.y.data, 1e-4, 1e-5, "dense = routed");
  assert.match(labels(dense.plan), /dense_gemm/);
  await check({ ...base, shared: { ff: 20 } }, "shared");
  await check({ ...base, shared: { ff: 20, gated: true }, residual: true }, "gated shared");
  await check({ ...base, T: 2, shared: { ff: 8, gated: true } }, "gated shared decode");
  const mask = Float32Array.from({ length: 23 }, (_, t) => (t % 3 === 0 ? 0 : 1));
  await check({ ...base, mask }, "mask");
  if ((await gpu()).caps.f16) {
    await check({ ...base, weightDtype: "f16" }, "f16");
    const dec = await check({ ...base, T: 1, weightDtype: "f16" }, "f16 decode");
    // A CPU adapter reads f16 expert rows of whole 8-value words packed (d 16, ff 24);
    // ff 20 leaves W2's rows unpacked.
    const cpu = (await gpu()).caps.cpuCores > 0;
    const packed = (p: Plan, re: RegExp) => p.kernels.some((k) => re.test(k.label));
    assert.equal(packed(dec.plan, /moe_decode_gemv1_\w*f16_packed/), cpu);
    assert.equal(packed(dec.plan, /moe_decode_gemv2_\w*f16_packed/), cpu);
    const odd = await check({ ...base, T: 2, ff: 20, weightDtype: "f16" }, "f16 decode, ff 20");
    assert.equal(packed(odd.plan, /moe_decode_gemv1_\w*f16_packed/), cpu);
    assert.equal(packed(odd.plan, /moe_decode_gemv2_\w*f16_packed/), false);
  }
});

Deno.test("moe: bad configurations raise at graph-build time", () => {
  const layer = (o: Partial<MoeOptions>, d = 16) => {
    const g = new GraphBuilder();
    const x = g.input("x", ["T", d]);
    return moe(g, x, { name: "m", experts: 4, topK: 2, ff: 8, ...o });
  };
  assert.throws(() => layer({ topK: 5 }), /topK \(5\) exceeds the number of experts \(4\)/);
  assert.throws(() => layer({ topK: 0 }), /topK must be an integer >= 1, got 0/);
  assert.throws(() => layer({ capacityFactor: 0 }), /capacityFactor must be > 0, got 0/);
  assert.throws(() => layer({ capacityFactor: -1 }), /capacityFactor must be > 0, got -1/);
  assert.throws(() => layer({ router: "switch" }), /switch router is top-1, got topK 2/);
  assert.throws(() => layer({ experts: 1025 }), /experts must be an integer in \[1, 1024\]/);
  assert.throws(() => layer({ router: "top2" as MoeRouterKind }), TypeError);
  // Mismatched expert shapes name the tensor and both shapes.
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 16]);
  const p = (n: string, s: number[], dt: "f32" | "f16" = "f32") => g.param(n, s, dt);
  const attrs = {
    experts: 4,
    topK: 2,
    router: "softmax_topk" as const,
    normTopk: true,
    routedScaling: 1,
    capacityFactor: 0,
    dense: false,
  };
  const r = p("r", [4, 16]), w1 = p("w1", [4, 8, 16]), w2 = p("w2", [4, 16, 8]);
  assert.throws(
    () => g.apply("moe", [x, r, w1, p("w3", [4, 9, 16]), w2], attrs),
    /w3 shape \[4, 9, 16\] differs from w1 shape \[4, 8, 16\]/,
  );
  assert.throws(
    () => g.apply("moe", [x, r, w1, w1, p("w2b", [4, 8, 16])], attrs),
    /w2 must be \[experts, d, ff\] = \[4, 16, 8\].*got \[4, 8, 16\]/,
  );
  assert.throws(
    () => g.apply("moe", [x, p("r5", [5, 16]), w1, w1, w2], attrs),
    /router weight must be \[experts, d\] = \[4, 16\], got \[5, 16\]/,
  );
  assert.throws(
    () => g.apply("moe", [x, r, w1, p("w3h", [4, 8, 16], "f16"), w2], attrs),
    /w3 is f16 but w1 is f32/,
  );
  assert.throws(
    () => g.apply("moe", [x, r, w1, w1, w2, g.input("mask", [7])], attrs),
    /mask must be f32\[T\]/,
  );
  assert.throws(
    () => g.apply("moe", [x, r, w1, w1, w2], { ...attrs, router: "sigmoid_bias" }),
    /sigmoid_bias router takes 6..7 inputs/,
  );
});

Deno.test("countParams: Mixtral-8x7B shapes give ~46.7B total, ~12.9B active", () => {
  const vocab = 32000, d = 4096, layers = 32, ff = 14336, heads = 32, kvHeads = 8, hd = 128;
  const g = new GraphBuilder();
  const ids = g.input("ids", ["T"], "u32");
  let h = g.param("model.embed_tokens.weight", [vocab, d]).gather(ids);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    const a = h.rmsnorm(g.param(`${p}.input_layernorm.weight`, [d]));
    const proj = (n: string, out: number) =>
      a.matmul(g.param(`${p}.self_attn.${n}_proj.weight`, [out, d]), { transB: true });
    // Attention-shaped parameters (the score computation itself does not matter here).
    const q = proj("q", heads * hd), k = proj("k", kvHeads * hd), v = proj("v", kvHeads * hd);
    const mixed = q.mul(k.sum(-1, true)).mul(v.sum(-1, true));
    const attn = mixed.matmul(g.param(`${p}.self_attn.o_proj.weight`, [d, heads * hd]), {
      transB: true,
    });
    h = h.add(attn);
    const n2 = h.rmsnorm(g.param(`${p}.post_attention_layernorm.weight`, [d]));
    h = h.add(moe(g, n2, { name: `${p}.block_sparse_moe`, experts: 8, topK: 2, ff }).y);
  }
  h = h.rmsnorm(g.param("model.norm.weight", [d]));
  g.output("logits", h.matmul(g.param("lm_head.weight", [vocab, d]), { transB: true }));
  const c = countParams(g.build());
  assert.ok(Math.abs(c.total / 1e9 - 46.7) < 0.05, `total ${c.total / 1e9}B`);
  assert.ok(Math.abs(c.activePerToken / 1e9 - 12.9) < 0.05, `active ${c.activePerToken / 1e9}B`);
  const w1 = c.byParam.find((p) => p.name === "model.layers.0.block_sparse_moe.w1")!;
  assert.equal(w1.fraction, 0.25);
  assert.equal(c.byParam.find((p) => p.name === "lm_head.weight")!.fraction, 1);
});

Deno.test("moe: an inference graph that reads neither losses nor counts skips the aux kernel", async () => {
  const { GraphBuilder } = await import("../compiler/builder.ts");
  const { compile } = await import("../runtime/executable.ts");
  const { moe } = await import("../models/moe.ts");
  const { gpu } = await import("./_util.ts");
  const dev = await gpu();
  for (const [T, expected] of [[1, 3], [9, 5]] as const) {
    const g = new GraphBuilder();
    const x = g.input("x", [T, 16]);
    g.output("y", moe(g, x, { name: "m", experts: 4, topK: 2, ff: 8 }).y);
    const exe = compile(g.build(), dev);
    const labels = exe.plan().kernels.map((k) => k.label);
    assert.equal(labels.length, expected, labels.join());
    assert.ok(!labels.some((l) => /aux/.test(l)), labels.join());
    exe.dispose();
  }
});
