import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { Graph } from "../core/graph.ts";
import { compile } from "../runtime/executable.ts";
import { applyTuning, matmulProblems, problemKey, tuneMatmul } from "../runtime/tuning.ts";
import {
  cachedChoices,
  deviceKey,
  readTuningCache,
  recordChoices,
  writeTuningCache,
} from "../app/tuning/cache.ts";
import { requestDevice } from "../runtime/device.ts";
import { kiln } from "./fixtures/kiln_cli.ts";
import { assertClose, gpu, randomData, runBoth } from "./_util.ts";

function mlp(): Graph {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 64]);
  const h = x.matmul(g.param("w1", [96, 64]), { transB: true }).relu();
  g.output("y", h.matmul(g.param("w2", [96, 32])));
  return g.build();
}

const params = { w1: randomData(96 * 64, "f32", 1), w2: randomData(96 * 32, "f32", 2) };
const CANDIDATES = ["rb8x16_wg1x16b_u1", "rb16x16_wg1x16b_u1"];

Deno.test("tuning: matmulProblems finds the distinct problems at dims", () => {
  const ps = matmulProblems(mlp(), { T: 32 });
  assert.deepEqual(ps.map(problemKey), ["f32 b1 32x96x64 nt shared", "f32 b1 32x32x96 nn shared"]);
  assert.equal(matmulProblems(mlp()).length, 0, "unbound T: no concrete problem");
});

Deno.test("tuning: the default rule and its reason appear in plans", async () => {
  const dev = await gpu();
  const exe = compile(mlp(), dev, { params });
  try {
    const ks = exe.plan({ T: 32 }).kernels.filter((k) => k.op === "matmul");
    assert.equal(ks.length, 2);
    for (const k of ks) {
      assert.ok(k.choice, k.label);
      assert.match(k.choice.reason, /^default for (cpu_raster|gpu)/);
      assert.ok(k.label.includes(k.choice.algorithm), `${k.label} names ${k.choice.algorithm}`);
    }
  } finally {
    exe.dispose();
  }
});

Deno.test("tuning: the tuner measures candidates, the cache round-trips, compile uses it", async () => {
  const dev = await gpu();
  const problems = matmulProblems(mlp(), { T: 32 });
  const choices = await tuneMatmul(dev, problems, {
    candidates: CANDIDATES,
    budgetMs: 30_000,
    runs: 1,
    expectedRuns: 10,
  });
  assert.equal(choices.size, 2);
  for (const c of choices.values()) {
    assert.ok(c.timings.length >= 2, "default plus at least one candidate");
    for (const t of c.timings) assert.ok(t.compileMs >= 0 && t.runMs >= 0, JSON.stringify(t));
    assert.match(c.reason, /^tuned/);
    const cost = (t: { compileMs: number; runMs: number }) => t.compileMs + 10 * t.runMs;
    const best = c.timings.reduce((x, y) => cost(y) < cost(x) ? y : x);
    assert.equal(c.tile ?? c.timings[0].tile, best.tile, "the cheapest candidate wins");
  }

  // The cache, keyed by device, round-trips through a file.
  const path = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.remove(path);
  try {
    const empty = await readTuningCache(path);
    assert.deepEqual(empty, { version: 1, devices: {} });
    const key = deviceKey(dev);
    assert.ok(key.startsWith(dev.adapterName));
    recordChoices(empty, key, choices);
    await writeTuningCache(path, empty);
    const back = await readTuningCache(path);
    assert.deepEqual(cachedChoices(back, key), choices);
    assert.equal(cachedChoices(back, "another adapter | gpu").size, 0);

    // Force a tuned tile to check that compile honours it and results match.
    const forced = new Map(cachedChoices(back, key));
    const k0 = problemKey(problems[0]);
    forced.set(k0, { ...forced.get(k0)!, tile: "rb16x16_wg1x16b_u1", reason: "tuned: test" });
    const tuned = applyTuning(mlp(), forced, { T: 32 });
    const x = randomData(32 * 64, "f32", 3);
    const r = await runBoth(tuned, { x }, params, { T: 32 });
    assert.ok(r.labels.some((l) => l.includes("rb16x16_wg1x16b_u1")), r.labels.join(", "));
    assertClose(r.gpu.y.data, r.cpu.y.data, 1e-3, 1e-3, "tuned plan vs CPU reference");
    const exe = compile(tuned, dev, { params });
    try {
      const k = exe.plan({ T: 32 }).kernels.find((k) => k.label.includes("rb16x16"))!;
      assert.deepEqual(k.choice, { algorithm: "rb16x16_wg1x16b_u1", reason: "tuned: test" });
    } finally {
      exe.dispose();
    }
  } finally {
    await Deno.remove(path).catch(() => {});
  }
});

Deno.test("tuning: the budget bounds the candidates", async () => {
  const dev = await gpu();
  const p = matmulProblems(mlp(), { T: 8 });
  const choices = await tuneMatmul(dev, p, { candidates: CANDIDATES, budgetMs: 0, runs: 1 });
  // No candidate starts after the budget: the first problem gets only the default.
  assert.ok(choices.size <= 1);
  for (const c of choices.values()) assert.equal(c.timings.length, 1);
  await assert.rejects(() => tuneMatmul(dev, p, { candidates: ["nope"] }), RangeError);
});

Deno.test("tuning: on the gpu target the workgroup-tiled GEMM is the default candidate", async () => {
  const dev = await requestDevice({ limits: { cpuCores: 0 } });
  try {
    const p = matmulProblems(mlp(), { T: 32 });
    const choices = await tuneMatmul(dev, p.slice(0, 1), { runs: 1, maxCandidates: 1 });
    const c = choices.get(problemKey(p[0]))!;
    assert.equal(c.timings.length, 2);
    assert.doesNotMatch(c.timings[0].tile, /^rb/, "the default is the GPU GEMM");
    const exe = compile(applyTuning(mlp(), choices, { T: 32 }), dev, { params });
    try {
      const k = exe.plan({ T: 32 }).kernels.find((k) => k.op === "matmul")!;
      assert.equal(k.choice?.reason, c.reason);
    } finally {
      exe.dispose();
    }
  } finally {
    dev.destroy();
  }
});

Deno.test("tuning: kiln tune writes the cache and kiln inspect --cache shows the tiles", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.remove(path);
  try {
    const t = await kiln(
      "tune",
      "examples/fused_mlp.ts",
      "--dims",
      "T=8",
      "--cache",
      path,
      "--max-candidates",
      "1",
    );
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /2 matmul problem\(s\) to tune/);
    assert.match(t.stdout, /f32 b1 8x1024x256 nt shared: \S+ — tuned/);
    const cache = await readTuningCache(path);
    assert.equal(Object.keys(cache.devices).length, 1);
    const i = await kiln("inspect", "examples/fused_mlp.ts", "--dims", "T=8", "--cache", path);
    assert.equal(i.code, 0, i.stderr);
    assert.match(i.stdout, /== matmul tiles \(cache .*\)\nkernel \d+ matmul_\S+: \S+ — tuned/);
    const again = await kiln("tune", "examples/fused_mlp.ts", "--dims", "T=8", "--cache", path);
    assert.match(
      again.stdout,
      /0 matmul problem\(s\) to tune/,
      "cached problems are not tuned again",
    );
  } finally {
    await Deno.remove(path).catch(() => {});
  }
});
