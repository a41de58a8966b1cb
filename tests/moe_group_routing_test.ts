/**
 * Group-limited routing (DeepSeek-V3's and GLM-4.5's `n_group` / `topk_group`)
 * and unnormalised sigmoid weights (`norm_topk_prob: false`) in the `moe` op,
 * and DeepSeek-V2's softmax routing (scaled, `group_limited_greedy`):
 * the chosen experts against a test-local transcription of transformers'
 * `Glm4MoeTopkRouter` (groups scored by their two best biased affinities, the
 * other groups masked to −∞, then top-k), and the layer's output on the GPU
 * (prefill and decode paths) against the float64 CPU reference.
 */
import assert from "node:assert/strict";
import { compile, cpuDevice, GraphBuilder } from "../mod.ts";
import type { MoeConfig } from "../ops/moe/config.ts";
import { assertClose, gpu, rng } from "./_util.ts";

interface Case extends Pick<MoeConfig, "T" | "d" | "ff" | "E" | "k"> {
  /** DeepSeek-V2's softmax router (`group_limited_greedy`) instead of V3's sigmoid. */
  softmax?: boolean;
  groups: number;
  kept: number;
  normTopk: boolean;
  scaling: number;
  seed: number;
}

const uniform = (n: number, s: number, r: () => number) =>
  Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);

/** transformers' DeepseekV2TopkRouter.forward (softmax, group_limited_greedy), step by step. */
function hfV2Router(c: Case, logits: ArrayLike<number>, t: number) {
  const { E, k, groups, kept } = c;
  const per = E / groups;
  const row = Array.from({ length: E }, (_, e) => logits[t * E + e]);
  const mx = Math.max(...row);
  const ex = row.map((z) => Math.exp(z - mx));
  const sum = ex.reduce((a, b) => a + b, 0);
  const scores = ex.map((v) => v / sum);
  const groupScores = Array.from(
    { length: groups },
    (_, g) => Math.max(...scores.slice(g * per, (g + 1) * per)),
  );
  const keptGroups = groupScores.map((s, g) => [s, g]).sort((x, y) => y[0] - x[0]).slice(0, kept)
    .map(([, g]) => g);
  const masked = scores.map((s, e) => keptGroups.includes(Math.floor(e / per)) ? s : 0);
  const idx = masked.map((s, e) => [s, e]).sort((x, y) => y[0] - x[0]).slice(0, k).map(([, e]) =>
    e
  );
  return { idx, w: idx.map((e) => scores[e] * c.scaling) };
}

/** transformers' router, step by step as Glm4MoeTopkRouter.forward writes it. */
function hfRouter(c: Case, logits: ArrayLike<number>, bias: ArrayLike<number>, t: number) {
  const { E, k, groups, kept } = c;
  const per = E / groups;
  const scores = Array.from({ length: E }, (_, e) => 1 / (1 + Math.exp(-logits[t * E + e])));
  const choice = scores.map((s, e) => s + bias[e]);
  const groupScores = Array.from({ length: groups }, (_, g) => {
    const [a, b] = choice.slice(g * per, (g + 1) * per).sort((x, y) => y - x);
    return a + b;
  });
  const keptGroups = groupScores.map((s, g) => [s, g]).sort((x, y) => y[0] - x[0]).slice(0, kept)
    .map(([, g]) => g);
  const masked = choice.map((s, e) => keptGroups.includes(Math.floor(e / per)) ? s : -Infinity);
  const idx = masked.map((s, e) => [s, e]).sort((x, y) => y[0] - x[0]).slice(0, k).map(([, e]) =>
    e
  );
  let w = idx.map((e) => scores[e]);
  if (c.normTopk) {
    const sum = w.reduce((a, b) => a + b, 0) + 1e-20;
    w = w.map((v) => v / sum);
  }
  return { idx, w: w.map((v) => v * c.scaling) };
}

async function check(c: Case): Promise<void> {
  const r = rng(c.seed);
  const g = new GraphBuilder();
  const x = g.input("x", ["T", c.d]);
  const p = (name: string, shape: number[]) => g.param(name, shape);
  const [y, logits, , , idx, w] = g.apply("moe", [
    x,
    p("router", [c.E, c.d]),
    p("w1", [c.E, c.ff, c.d]),
    p("w3", [c.E, c.ff, c.d]),
    p("w2", [c.E, c.d, c.ff]),
    ...(c.softmax ? [] : [p("bias", [c.E])]),
  ], {
    experts: c.E,
    topK: c.k,
    router: c.softmax ? "softmax_topk" : "sigmoid_bias",
    normTopk: c.normTopk,
    routedScaling: c.scaling,
    capacityFactor: 0,
    dense: false,
    groups: c.groups,
    groupsKept: c.kept,
    routing: true,
  });
  for (const [name, v] of Object.entries({ y, logits, idx, w })) g.output(name, v);
  const graph = g.build();
  const params = {
    router: uniform(c.E * c.d, 1, r),
    w1: uniform(c.E * c.ff * c.d, 1 / Math.sqrt(c.d), r),
    w3: uniform(c.E * c.ff * c.d, 1 / Math.sqrt(c.d), r),
    w2: uniform(c.E * c.d * c.ff, 1 / Math.sqrt(c.ff), r),
    // Wide enough to move experts across groups: selection differs from the affinities.
    bias: uniform(c.E, 0.5, r),
  };
  const inputs = { x: uniform(c.T * c.d, 1, r) };
  if (c.softmax) delete (params as Partial<typeof params>).bias;
  const eg = compile(graph, await gpu(), { params });
  try {
    const a = await eg.run(inputs);
    const b = await compile(graph, cpuDevice(), { params }).run(inputs);
    const what = JSON.stringify(c);
    for (let t = 0; t < c.T; t++) {
      const want = c.softmax
        ? hfV2Router(c, a.logits.data, t)
        : hfRouter(c, a.logits.data, params.bias, t);
      const got = Array.from(a.idx.data.slice(t * c.k, (t + 1) * c.k));
      assert.deepEqual(got, want.idx, `${what}: experts of token ${t}`);
      assertClose(a.w.data.slice(t * c.k, (t + 1) * c.k), want.w, 1e-5, 1e-6, `${what}: w ${t}`);
    }
    assert.deepEqual(Array.from(a.idx.data), Array.from(b.idx.data), `${what}: CPU reference`);
    assertClose(a.y.data, b.y.data, 2e-4, 2e-4, `${what}: y`);
  } finally {
    eg.dispose();
  }
}

Deno.test("moe: group-limited sigmoid routing, prefill and decode, renormalised or not", async () => {
  const cases: Case[] = [
    {
      T: 23,
      d: 32,
      ff: 24,
      E: 16,
      k: 4,
      groups: 4,
      kept: 2,
      normTopk: true,
      scaling: 2.5,
      seed: 1,
    },
    { T: 19, d: 16, ff: 12, E: 8, k: 3, groups: 2, kept: 1, normTopk: false, scaling: 1, seed: 2 },
    { T: 3, d: 16, ff: 20, E: 12, k: 2, groups: 3, kept: 1, normTopk: true, scaling: 1, seed: 3 },
    { T: 1, d: 12, ff: 8, E: 64, k: 6, groups: 8, kept: 3, normTopk: false, scaling: 1.5, seed: 4 },
    { T: 37, d: 16, ff: 16, E: 6, k: 2, groups: 1, kept: 1, normTopk: false, scaling: 2, seed: 5 },
  ];
  for (const c of cases) await check(c);
});

Deno.test("moe: DeepSeek-V2's softmax routing, scaled, within the groups of the best probability", async () => {
  const base = { softmax: true, normTopk: false } as const;
  const cases: Case[] = [
    { ...base, T: 21, d: 16, ff: 12, E: 16, k: 3, groups: 4, kept: 2, scaling: 16, seed: 6 },
    { ...base, T: 2, d: 12, ff: 8, E: 9, k: 2, groups: 9, kept: 3, scaling: 1, seed: 7 },
    { ...base, T: 19, d: 8, ff: 8, E: 6, k: 2, groups: 1, kept: 1, scaling: 2.5, seed: 8 },
  ];
  for (const c of cases) await check(c);
});

Deno.test("moe: group-limited routing's bad configurations raise at graph-build time", () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 8]);
  const p = (name: string, shape: number[]) => g.param(name, shape);
  const E = 8;
  const ins = [x, p("r", [E, 8]), p("w1", [E, 4, 8]), p("w3", [E, 4, 8]), p("w2", [E, 8, 4])];
  const base = {
    experts: E,
    topK: 2,
    router: "sigmoid_bias",
    normTopk: true,
    routedScaling: 1,
    capacityFactor: 0,
    dense: false,
  };
  const apply = (extra: Record<string, unknown>) => () =>
    g.apply("moe", [...ins, p(`b${JSON.stringify(extra)}`, [E])], { ...base, ...extra } as never);
  assert.throws(apply({ groups: 3, groupsKept: 1 }), /groups \(3\) must split E \(8\)/);
  assert.throws(apply({ groups: 8, groupsKept: 2 }), /equal groups of at least 2 experts/);
  assert.throws(apply({ groups: 2, groupsKept: 3 }), /groupsKept \(3\) exceeds groups \(2\)/);
  assert.throws(apply({ groups: 4, groupsKept: 1, topK: 3 }), /k \(3\) exceeds the 2 experts/);
  assert.throws(apply({ groups: 0 }), /groups must be an integer in \[1, 1024\], got 0/);
  assert.throws(
    () =>
      g.apply(
        "moe",
        ins,
        { ...base, router: "switch", topK: 1, groups: 2, groupsKept: 1 } as never,
      ),
    /group-limited routing \(groups 2\) applies to the sigmoid_bias and softmax_topk routers, not switch/,
  );
});
