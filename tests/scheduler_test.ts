/**
 * Expert scheduler: the slot-table indirection of the `moe` op, budgets from the
 * minimum to full on a tiny Mixtral (E = 8, k = 2) giving bit-identical logits
 * and generated ids, adversarial placement, routing statistics files, and the
 * minimum-budget error.
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "../app/model/mod.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { assertBitsEqual, gpu } from "./_util.ts";
import {
  planExperts,
  readRoutingStats,
  ROUTING_STATS_FILE,
  writeRoutingStats,
} from "../app/experts/placement.ts";
import { type ExpertPolicy, NOT_RESIDENT, usageHeatmapSvg } from "../app/experts/mod.ts";

const CONFIG = { num_local_experts: 8, num_experts_per_tok: 2, num_hidden_layers: 3 };
const PROMPT = [5, 17, 3, 99, 42, 7, 250, 11, 0, 64, 31, 8, 120];

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_sched_" });
  try {
    await writeTinyMixtral(dir, { config: CONFIG, seed: 3 });
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function open(
  dir: string,
  memoryBudget?: number | string,
  expertPolicy?: ExpertPolicy,
): Promise<Model> {
  return await loadModel(dir, {
    device: await gpu(),
    quiet: true,
    maxSeq: 64,
    memoryBudget,
    expertPolicy,
  });
}

async function collect(model: Model, n: number, readEvery = 4): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of model.generateIds(PROMPT, { maxTokens: n, readEvery })) ids.push(id);
  return ids;
}

Deno.test("scheduler: every budget from the minimum to full is bit-identical to all-resident", async () => {
  await withDir(async (dir) => {
    const ref = await open(dir);
    const refLogits = await ref.forward(PROMPT);
    const refIds = await collect(ref, 12);
    const V = ref.config.vocabSize;
    await ref.forward(PROMPT.slice(0, 9));
    const refSteps: Float32Array[] = [];
    for (let t = 9; t < 12; t++) refSteps.push((await ref.step(PROMPT[t], t)).slice());
    ref.dispose();
    const probe = await open(dir, "64GiB");
    const plan0 = probe.expertPlan!;
    probe.dispose();
    assert.ok(plan0.allResident);
    const L = plan0.layers, E = plan0.experts;
    let sawStreaming = false;
    for (const policy of ["lru", "lfu", "stream"] as const) {
      for (let slots = E; slots <= L * E; slots += policy === "stream" ? 4 : 2) {
        const budget = plan0.fixedBytes + slots * plan0.expertBytes;
        const m = await open(dir, budget, policy);
        // Pure cache mode (no streamed fallback windows): misses and reruns happen.
        if (m.experts) m.experts.streamOnMisses = false;
        try {
          const p = m.expertPlan!;
          assert.ok(p.slots <= slots, `${p.slots} slots within a budget of ${slots}`);
          if (!p.allResident) {
            sawStreaming = true;
            assert.ok(m.experts, "a scheduler runs below full residency");
          }
          assertBitsEqual(await m.forward(PROMPT), refLogits, `prefill logits, ${slots} slots`);
          assert.deepEqual(await collect(m, 12), refIds, `generated ids, ${slots} slots`);
          await m.forward(PROMPT.slice(0, 9));
          for (let t = 9; t < 12; t++) {
            assertBitsEqual(
              await m.step(PROMPT[t], t),
              refSteps[t - 9],
              `decode logits ${t}, ${slots} slots`,
            );
          }
          if (m.experts) {
            const s = m.experts.summary();
            assert.equal(m.experts.policy, policy);
            assert.ok(s.hitRate >= 0 && s.hitRate <= 1);
            assert.ok(s.roundTripsPerToken <= 1 + m.experts.stats.misses, `${policy} round trips`);
            if (policy === "stream") assert.equal(m.experts.stats.misses, 0);
            assert.ok(m.experts.stats.bytesUploaded > 0 || p.allResident);
          }
        } finally {
          m.dispose();
        }
        void V;
      }
    }
    assert.ok(sawStreaming);
  });
});

Deno.test("scheduler: adversarial placement (least-used experts pinned) still matches", async () => {
  await withDir(async (dir) => {
    const ref = await open(dir);
    const refIds = await collect(ref, 10);
    ref.dispose();
    // Stats claiming the experts really used are never used: every routed expert streams.
    const probe = await open(dir, "64GiB");
    const p0 = probe.expertPlan!;
    probe.dispose();
    const m0 = await open(dir, p0.fixedBytes + p0.layers * p0.experts * p0.expertBytes - 1);
    await collect(m0, 10);
    const usage = m0.experts!.stats.usage;
    m0.dispose();
    const inverted = usage.map((row) => row.map((c) => Math.max(...row) - c));
    await writeRoutingStats(dir, {
      version: 1,
      layers: p0.layers,
      experts: p0.experts,
      counts: inverted,
    });
    const m = await open(dir, p0.fixedBytes + (p0.experts + p0.layers) * p0.expertBytes);
    try {
      assert.deepEqual(await collect(m, 10), refIds);
      const s = m.experts!.summary();
      assert.ok(s.hitRate < 0.5, `adversarial pinning hit rate ${s.hitRate}`);
    } finally {
      m.dispose();
    }
  });
});

Deno.test("scheduler: a budget below the minimum is a RangeError naming the bytes needed", async () => {
  await withDir(async (dir) => {
    const probe = await open(dir, "64GiB");
    const min = probe.expertPlan!.minimumBytes;
    probe.dispose();
    await assert.rejects(() => open(dir, min - 1), (e: Error) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, new RegExp(`below the minimum .*\\(${min} bytes\\)`));
      return true;
    });
    await assert.rejects(() => open(dir, "lots"), SyntaxError);
  });
});

Deno.test("scheduler: routing stats round trip, a corrupt file warns and falls back", async () => {
  await withDir(async (dir) => {
    const stats = {
      version: 1 as const,
      layers: 3,
      experts: 8,
      counts: [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1], [0, 0, 0, 9, 9, 0, 0, 0]],
    };
    await writeRoutingStats(dir, stats);
    assert.deepEqual(await readRoutingStats(dir, { layers: 3, experts: 8 }), stats);
    await writeRoutingStats(dir, stats, true);
    assert.equal((await readRoutingStats(dir))!.counts[2][3], 18);
    const warn = console.warn;
    const seen: string[] = [];
    console.warn = (m: string) => seen.push(m);
    try {
      await Deno.writeTextFile(`${dir}/${ROUTING_STATS_FILE}`, "{ not json");
      assert.equal(await readRoutingStats(dir), undefined);
      await Deno.writeTextFile(
        `${dir}/${ROUTING_STATS_FILE}`,
        JSON.stringify({ ...stats, version: 7 }),
      );
      assert.equal(await readRoutingStats(dir), undefined);
      await writeRoutingStats(dir, stats);
      assert.equal(await readRoutingStats(dir, { layers: 2, experts: 8 }), undefined);
      // loadModel falls back to no statistics with a corrupt file.
      await Deno.writeTextFile(`${dir}/${ROUTING_STATS_FILE}`, "[1, 2");
      const m = await open(dir, "64GiB");
      m.dispose();
    } finally {
      console.warn = warn;
    }
    assert.equal(seen.length, 4, seen.join("\n"));
    assert.match(seen[0], /invalid JSON/);
    assert.match(seen[1], /unsupported version 7/);
    assert.match(seen[2], /3 layers × 8 experts/);
  });
});

Deno.test("planExperts: pins by statistics, fits the budget, SVG heatmap", () => {
  const counts = [[0, 9, 0, 0, 5, 0, 0, 1], [3, 0, 0, 0, 0, 0, 7, 0]];
  const p = planExperts({
    layers: 2,
    experts: 8,
    topK: 2,
    expertBytes: 100,
    fixedBytes: 1000,
    budget: 1000 + 10 * 100,
    stats: { version: 1, layers: 2, experts: 8, counts },
  });
  assert.equal(p.slots, 10);
  assert.deepEqual(p.pinned.map((x) => x.length), [2, 2]);
  assert.deepEqual(p.pinned, [[1, 4], [0, 6]]);
  assert.equal(p.rotating, 6);
  assert.equal(p.bytesPerStep, 12 * 100);
  const svg = usageHeatmapSvg(counts);
  assert.match(svg, /^<svg/);
  assert.equal((svg.match(/<rect/g) ?? []).length, 16);
});

Deno.test("scheduler: mispredictions miss, re-run and stay identical (LRU, LFU, naive, fallback)", async () => {
  await withDir(async (dir) => {
    const ref = await open(dir);
    const want = await collect(ref, 16);
    ref.dispose();
    const probe = await open(dir, "64GiB");
    const min = probe.expertPlan!.minimumBytes;
    probe.dispose();
    for (const policy of ["lru", "lfu", "naive"] as const) {
      for (const fallback of [false, true]) {
        if (policy === "naive" && fallback) continue;
        const m = await open(dir, min, policy);
        m.experts!.streamOnMisses = fallback;
        try {
          for (const readEvery of [1, 4, 8]) {
            m.experts!.resetStats();
            assert.deepEqual(
              await collect(m, 16, readEvery),
              want,
              `${policy} readEvery ${readEvery}`,
            );
            const st = m.experts!.stats;
            assert.ok(st.misses > 0, `${policy}: the minimum budget mispredicts`);
            assert.ok(st.reruns > 0);
            assert.equal(st.decodeSteps, 15);
            if (policy === "naive") {
              assert.ok(m.experts!.summary().roundTripsPerToken > 1);
            }
          }
          if (fallback) assert.ok(m.experts!.streamedWindows > 0, "falls back to streaming");
        } finally {
          m.dispose();
        }
      }
    }
  });
});

Deno.test("scheduler: eviction under adversarial routing (every token a new expert), LRU vs LFU", async () => {
  await withDir(async (dir) => {
    const probe = await open(dir, "64GiB");
    const min = probe.expertPlan!.minimumBytes;
    probe.dispose();
    for (const policy of ["lru", "lfu"] as const) {
      const m = await open(dir, min, policy);
      try {
        const x = m.experts!;
        const { layers: L, experts: E, rotating: R } = x.plan;
        assert.equal(x.plan.pinned.flat().length, 0, "the minimum budget pins nothing");
        const row = (...ids: number[]) => {
          const r = new Uint32Array(2 * L * E);
          for (const id of ids) r[L * E + id] = 1; // step 1's row
          return r;
        };
        // Every step routes to an entry never seen before, predicted from the last step.
        let prev: number[] = [];
        for (let i = 0; i < L * E; i++) {
          await x.beginWindow(prev);
          const chk = x.checkWindow(row(i), 1, 2);
          assert.equal(chk.missStep, 1, `${policy}: a new expert always misses (step ${i})`);
          assert.equal(chk.missLayer, Math.floor(i / E));
          x.observeRow(row(i).subarray(L * E), false);
          prev = [i];
        }
        assert.equal(x.stats.misses, L * E);
        // Hot entry 0 used often, then a scan of R new entries: LRU evicts it, LFU keeps it.
        for (let r = 0; r < 6; r++) {
          await x.beginWindow([0]);
          assert.equal(x.checkWindow(row(0), 1, 2).missStep, -1, "a resident expert hits");
        }
        for (let i = 1; i <= R; i++) {
          await x.beginWindow([i]);
          x.checkWindow(row(i), 1, 2);
        }
        await x.beginWindow([]);
        const hit = x.checkWindow(row(0), 1, 2).missStep === -1;
        assert.equal(hit, policy === "lfu", `${policy}: hot expert after a scan`);
        assert.notEqual(NOT_RESIDENT, 0);
      } finally {
        m.dispose();
      }
    }
  });
});
