/**
 * Differential testing of the compiler (tools/fuzz/): random valid graphs run on
 * the GPU and on the CPU reference must agree. The quick run here takes a fixed,
 * deterministic set of seeds (those that together cover every generated op and
 * feature, then the next ones in order); `deno task fuzz graphs` runs thousands.
 * A failure prints the shrunk case as a test to paste.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { dumpGraph } from "../core/graph.ts";
import { OPS } from "../ops/registry.ts";
import type { OpDef } from "../ops/types.ts";
import {
  assertMatchesReference,
  buildGraph,
  caseFeatures,
  compareIndices,
  formatReport,
  generateCase,
  GENERATED_OPS,
  graphLines,
  opsOf,
  quickSeeds,
  runGraphCampaign,
  shrinkCase,
  SKIPPED_OPS,
  tolerances,
} from "../tools/fuzz/mod.ts";
import { gpu } from "./_util.ts";
import { requestDevice } from "../runtime/device.ts";

/** Graphs in the quick run: about 25 s on lavapipe (two cores, cold shader cache), 5 s warm. */
const QUICK_GRAPHS = 100;

/**
 * Seeds of failures found, reported and not yet fixed, kept out of the quick run
 * (each with where it was reported). Empty: every failure found so far is fixed
 * and has a regression test below.
 */
const KNOWN_FAILURES: ReadonlyMap<number, string> = new Map();

Deno.test("differential: every registered op is generated or skipped with a reason", () => {
  for (const op of Object.keys(OPS)) {
    const generated = (GENERATED_OPS as readonly string[]).includes(op);
    const skipped = op in SKIPPED_OPS;
    assert.ok(generated !== skipped, `${op}: generated ${generated}, skipped ${skipped}`);
  }
});

Deno.test("differential: the quick seeds cover every generated op and feature", () => {
  const seeds = quickSeeds({ f16: true, count: QUICK_GRAPHS });
  const covered = new Set<string>();
  for (const s of seeds) {
    caseFeatures(generateCase(s, { f16: true })).forEach((f) => covered.add(f));
  }
  const wanted = [
    ...GENERATED_OPS,
    "f16",
    "state",
    "symbolic",
    "symbol = 0",
    "several runs",
    "long axis",
  ];
  assert.deepEqual(wanted.filter((f) => !covered.has(f)), []);
});

Deno.test("differential: quick run — seeded random graphs match the CPU reference", async () => {
  const device = await gpu();
  const seeds = quickSeeds({
    f16: device.caps.f16,
    count: QUICK_GRAPHS,
    exclude: new Set(KNOWN_FAILURES.keys()),
  });
  const report = await runGraphCampaign({ device, seeds });
  assert.equal(report.graphs, seeds.length);
  if (report.failures.length) throw new Error(formatReport(report));
});

Deno.test("differential: printed DSL builds exactly the generated graph", () => {
  const strip = (s: string) => s.replace(/ {2}# .*$/gm, "");
  for (let seed = 1; seed <= 150; seed++) {
    const c = generateCase(seed, { f16: true });
    const g = new GraphBuilder();
    new Function("g", graphLines(c.graph).join("\n"))(g);
    assert.equal(
      strip(dumpGraph(g.build())),
      strip(dumpGraph(buildGraph(c.graph))),
      `seed ${seed}`,
    );
  }
});

Deno.test("differential: generated graphs are valid and reproducible from their seed", () => {
  for (let seed = 1; seed <= 300; seed++) {
    const a = generateCase(seed, { f16: seed % 2 === 0 });
    buildGraph(a.graph); // throws on an invalid graph
    assert.deepEqual(generateCase(seed, { f16: seed % 2 === 0 }), a);
    if (seed % 2) assert.ok(a.graph.nodes.every((n) => n.kind === "op" || n.dtype !== "f16"));
  }
});

Deno.test("differential: indices may differ only where their keys tie within tolerance", () => {
  // argmax over the last axis of [2, 4].
  const key = {
    data: new Float32Array([1, 3, 3.00001, 0, 5, 1, 2, 4]),
    shape: [2, 4],
    dtype: "f32" as const,
  };
  const tol = new Float64Array(8).fill(1e-4);
  assert.equal(compareIndices("argmax", -1, key, tol, [2, 0], [2, 0]), null);
  assert.equal(compareIndices("argmax", -1, key, tol, [1, 0], [2, 0]), null); // a near tie
  assert.match(compareIndices("argmax", -1, key, tol, [0, 0], [2, 0])!, /keys differ/);
  assert.match(compareIndices("argmax", -1, key, tol, [7, 0], [2, 0])!, /out of range/);
  // argmax over axis 0 (the index walks rows).
  assert.equal(compareIndices("argmax", 0, key, tol, [0, 1, 0, 1], [0, 1, 0, 1]), null);
  assert.match(compareIndices("argmax", 0, key, tol, [0, 0, 0, 1], [0, 1, 0, 1])!, /keys differ/);
  // topk k = 2: a tie may swap, but an index may not repeat in its row.
  assert.equal(compareIndices("topk", -1, key, tol, [1, 2, 0, 3], [2, 1, 0, 3]), null);
  assert.match(compareIndices("topk", -1, key, tol, [2, 2, 0, 3], [2, 1, 0, 3])!, /twice/);
});

Deno.test("differential: the tolerance follows the output scale and the reference's own movement", () => {
  const ref = [100, 1, 0];
  assert.deepEqual([...tolerances(ref, undefined, 1e-4)], [0.01, 0.01, 0.01]);
  const t = tolerances(ref, [100, 1.5, 0], 1e-4);
  assert.ok(t[1] > 0.5 && t[0] === 0.01 && t[2] === 0.01);
});

Deno.test("differential: the shrinker cuts a failing case down to the op at fault", async () => {
  // "Fails" here means "uses this op": the shrinker must leave that op alone.
  for (const op of ["softmax", "matmul", "topk"] as const) {
    const seeds = [...Array(300).keys()].map((i) => i + 1).filter((s) => {
      const c = generateCase(s, { f16: false });
      return opsOf(c.graph).has(op) && c.graph.nodes.filter((n) => n.kind === "op").length >= 8;
    }).slice(0, 3);
    assert.equal(seeds.length, 3);
    for (const seed of seeds) {
      const c = generateCase(seed, { f16: false });
      const { shrunk } = await shrinkCase(c, (x) => Promise.resolve(opsOf(x.graph).has(op)));
      const ops = shrunk.graph.nodes.filter((n) => n.kind === "op");
      assert.deepEqual(ops.map((n) => n.kind === "op" && n.op), [op], `${op}, seed ${seed}`);
      assert.equal(shrunk.runs.length, 1);
    }
  }
});

Deno.test("differential: a wrong op is caught, shrunk and printed as a test", async () => {
  const device = await gpu();
  const seed = quickSeeds({ f16: device.caps.f16, count: QUICK_GRAPHS }).find((s) =>
    opsOf(generateCase(s, { f16: device.caps.f16 }).graph).has("rmsnorm")
  )!;
  // Break the CPU reference of rmsnorm in one element: the GPU now "differs".
  const def = OPS.rmsnorm as unknown as { reference: OpDef<{ eps: number }>["reference"] };
  const original = def.reference;
  def.reference = (inputs, attrs, outs) => {
    const [y] = original(inputs, attrs, outs);
    if (y.length) y[0] += 1;
    return [y];
  };
  try {
    const report = await runGraphCampaign({ device, seeds: [seed] });
    assert.equal(report.failures.length, 1, `seed ${seed}`);
    const [f] = report.failures;
    assert.equal(f.failures[0].kind, "mismatch");
    assert.ok(f.shrunk.graph.nodes.length <= f.original.graph.nodes.length);
    assert.ok(opsOf(f.shrunk.graph).has("rmsnorm"));
    assert.match(f.dsl, /const g = new GraphBuilder\(\);/);
    assert.match(f.dsl, /\.rmsnorm\(/);
    assert.match(f.dsl, new RegExp(`graph seed ${seed}, inputs seed ${f.shrunk.inputsSeed}`));
  } finally {
    def.reference = original;
  }
});

// Regressions: failures the campaign found, as it printed them (shrunk).

Deno.test("regression: write_rows in place on a state whose source reads the state", async () => {
  const g = new GraphBuilder();
  const s0 = g.state("s0", [4, 1]);
  const v2 = s0.add(g.constant(0.5));
  const pos0 = g.input("pos0", [1], "u32");
  g.assign(s0, s0.writeRows(v2, pos0));
  // Two buffers in one dispatch were once the same (read-only and read-write).
  await assertMatchesReference(g.build(), {
    data: { pos0: { kind: "int", lo: 0, hi: 5 } },
    inputsSeed: 2855186133,
    runs: [{ dims: {} }, { dims: {} }],
  }, await gpu());
});

Deno.test("regression: write_rows in place with its source the same value", async () => {
  const g = new GraphBuilder();
  const s0 = g.state("s0", [1, 1]);
  const [v1] = s0.topk(1);
  const v3 = v1.writeRows(v1, g.input("pos0", [1], "u32"));
  const z0 = g.input("z0", [1, 1, 1], "u32");
  g.output("y3", v3.where(z0, v3));
  g.assign(s0, s0.writeRows(g.input("x1", ["T", 1]), g.input("pos1", [1], "u32")));
  await assertMatchesReference(g.build(), {
    data: {
      pos0: { kind: "int", lo: 0, hi: 5 },
      z0: { kind: "int", lo: 0, hi: 1 },
      x1: { kind: "uniform", lo: -2, hi: 2 },
      pos1: { kind: "int", lo: 0, hi: 4 },
    },
    inputsSeed: 2393910624,
    runs: [{ dims: { T: 0 } }, { dims: { T: 1 } }],
  }, await gpu());
});

Deno.test("regression: an output that is a state (or a reshape of it) is the value before the update", async () => {
  const g = new GraphBuilder();
  const s0 = g.state("s0", [2, 3]);
  g.output("old", s0);
  g.output("old_flat", s0.reshape([-1]));
  g.assign(s0, g.input("z0", [2, 3]));
  await assertMatchesReference(g.build(), {
    data: { z0: { kind: "uniform", lo: -2, hi: 2 } },
    inputsSeed: 2624854936,
    runs: [{ dims: {} }, { dims: {} }, { dims: {} }],
  }, await gpu());
});

Deno.test("regression: a slice of a reshape of a kernel's result is no epilogue", async () => {
  const g = new GraphBuilder();
  const x4 = g.input("x4", [11, 1, 4]);
  const pos1 = g.input("pos1", [1], "u32");
  const v4 = x4.rope(pos1, 10000).reshape([44, 1]).slice(-1, 0, 1);
  const w1 = g.param("w1", [4, 1, 11]);
  g.output("y2", v4.reshape([4, 1, 11]).matmul(w1, { transA: false, transB: true }));
  // Once "internal: view of an in-register value".
  await assertMatchesReference(g.build(), {
    data: {
      x4: { kind: "uniform", lo: -2, hi: 2 },
      pos1: { kind: "int", lo: 0, hi: 40 },
      w1: { kind: "uniform", lo: -1, hi: 1 },
    },
    inputsSeed: 3499238717,
    runs: [{ dims: {} }],
  }, await gpu());
});

Deno.test("regression: a reversed cumsum over an axis bound to 0", async () => {
  const g = new GraphBuilder();
  const z0 = g.input("z0", ["S", "S", 1], "f16");
  g.output("y0", z0.cumsum(1, { exclusive: false, reverse: true }));
  // Once invalid WGSL (`-1u`): the scan's last index of an empty axis.
  await assertMatchesReference(g.build(), {
    data: { z0: { kind: "uniform", lo: -1, hi: 1 } },
    inputsSeed: 2359313354,
    runs: [{ dims: { S: 0 } }, { dims: { S: 3 } }],
  }, await gpu());
});

Deno.test("regression: attention over an empty KV range gives zeros", async () => {
  for (const D of [4, 1]) {
    const g = new GraphBuilder();
    const q = g.param("q", [4, 1, D]);
    const k = g.input("k", ["T", 1, D]);
    const v = g.input("v", ["T", 1, D]);
    const pos = g.input("pos", [1], "u32");
    g.output("y0", g.attention(q, k, v, pos, { scale: 0.25, causal: false }).add(1));
    // Once a binding of 4 bytes for a vec4 array (D = 4) and invalid WGSL (D = 1).
    await assertMatchesReference(g.build(), {
      data: {
        q: { kind: "uniform", lo: -2, hi: 2 },
        k: { kind: "uniform", lo: -2, hi: 2 },
        v: { kind: "uniform", lo: -2, hi: 2 },
        pos: { kind: "int", lo: 0, hi: 0 },
      },
      inputsSeed: 4044021495,
      runs: [{ dims: { T: 0 } }, { dims: { T: 2 } }],
    }, await gpu());
  }
});

Deno.test("regression: a view of an input that another op of the kernel also loads", async () => {
  const g = new GraphBuilder();
  const z0 = g.input("z0", [1], "i32");
  const cond = g.constant([1], [], "i32").greater(z0);
  const v3 = z0.slice(0, 0, 1);
  g.output("y1", v3.where(cond, v3));
  // Once "internal: view of an in-register value" (z0 was loaded for the comparison).
  await assertMatchesReference(g.build(), {
    data: { z0: { kind: "int", lo: -1, hi: 2 } },
    inputsSeed: 3470821861,
    runs: [{ dims: {} }],
  }, await gpu());
});

Deno.test("regression: views of a tensor with an axis bound to 0", async () => {
  const g = new GraphBuilder();
  const z0 = g.input("z0", ["T", 2, 1]);
  g.output("y2", z0.transpose([2, 1, 0]).slice(-2, 0, 1));
  // Once invalid WGSL: a constant division by the empty axis in the view's index.
  await assertMatchesReference(g.build(), {
    data: { z0: { kind: "uniform", lo: -1, hi: 1 } },
    inputsSeed: 3737902397,
    runs: [{ dims: { T: 0 } }, { dims: { T: 3 } }],
  }, await gpu());
});

Deno.test("regression: a view with an axis bound to 0 fused as a norm's prologue", async () => {
  const g = new GraphBuilder();
  const x0 = g.input("x0", ["T", 3, 3]);
  const x1 = g.input("x1", ["T"]);
  g.output("y2", x0.transpose([1, 2, 0]).slice(-2, 2, 3).rmsnorm(x1, 0.01));
  // Once invalid WGSL (`(0u) / 0u` in the prologue's index): coordinates of an empty
  // shape are now 0u, as no element is read.
  await assertMatchesReference(g.build(), {
    data: { x0: { kind: "uniform", lo: -4, hi: 4 }, x1: { kind: "uniform", lo: 0.5, hi: 1.5 } },
    inputsSeed: 3907973989,
    runs: [{ dims: { T: 0 } }, { dims: { T: 1 } }, { dims: { T: 4 } }],
  }, await gpu());
});

Deno.test("regression: split attention whose partial states exceed one binding uses fewer parts", async () => {
  // With 4 KiB bindings the 4 parts' accumulators (16 × 6 rows × 4 parts × 16 bytes)
  // did not fit one binding: "kernel uses scratch1, which was never bound".
  const dev = await requestDevice({ limits: { maxBindingSize: 4096 } });
  for (const [D, splits, S] of [[1, 4, 16], [32, 2, 3]]) {
    const g = new GraphBuilder();
    const q = g.input("q", ["S", 6, D]);
    const k = g.input("k", [4, 1, D]);
    const v = g.input("v", [4, 1, D]);
    const pos = g.input("pos", [1], "u32");
    g.output("y", g.attention(q, k, v, pos, { scale: 0.5, causal: true, window: 0, splits }));
    await assertMatchesReference(g.build(), {
      data: {
        q: { kind: "uniform", lo: 0.5, hi: 3 },
        k: { kind: "uniform", lo: -2, hi: 2 },
        v: { kind: "uniform", lo: -2, hi: 2 },
        pos: { kind: "int", lo: 0, hi: 0 },
      },
      inputsSeed: 2328350622,
      runs: [{ dims: { S } }],
    }, dev);
  }
  dev.destroy();
});
