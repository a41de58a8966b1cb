/**
 * Router-lookahead prefetch of the expert cache: the decode graph applies each
 * MoE layer's router to the previous MoE layer's input on the GPU and logs the
 * predicted experts; cache windows upload them. Outputs stay bit-identical
 * (mispredictions miss and re-run), both predictors are scored, and the
 * prediction sets follow the documented rules.
 */
import assert from "node:assert/strict";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { collectIds, openTiny } from "./_util.ts";

const CONFIG = { num_local_experts: 8, num_experts_per_tok: 2, num_hidden_layers: 3 };

Deno.test("router lookahead: identical outputs, mispredictions re-run, both predictors scored", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_lookahead_" });
  try {
    await writeTinyMixtral(dir, { config: CONFIG, seed: 3 });
    const ref = await openTiny(dir);
    const want = await collectIds(ref, 16);
    ref.dispose();
    const probe = await openTiny(dir, { memoryBudget: "64GiB" });
    const { fixedBytes: F, expertBytes: eb, layers: L, experts: E } = probe.expertPlan!;
    probe.dispose();
    for (const slots of [E, E + 2 * L, E + 4 * L]) {
      for (const prefetch of ["lookahead", "both"] as const) {
        for (const policy of ["lru", "lfu"] as const) {
          const m = await openTiny(dir, {
            memoryBudget: F + slots * eb,
            prefetch,
            expertPolicy: policy,
          });
          m.experts!.streamOnMisses = false;
          try {
            const what = `${slots} slots, ${prefetch}, ${policy}`;
            assert.ok(m.experts!.lookahead, `${what}: the decode graph logs the lookahead`);
            for (const readEvery of [1, 4]) {
              m.experts!.resetStats();
              assert.deepEqual(
                await collectIds(m, 16, readEvery),
                want,
                `${what}, readEvery ${readEvery}`,
              );
              const st = m.experts!.stats;
              const pinned = m.expertPlan!.pinned.slice(1).reduce((a, r) => a + r.length, 0);
              // 14 scored step pairs (steps 1..15); each layer after the first predicts ≥ k experts.
              assert.ok(st.lookaheadPredicted > 0, `${what}: lookahead scored`);
              assert.ok(
                st.lookaheadPredicted >= 14 * ((L - 1) * 2 - pinned),
                `${what}: ${st.lookaheadPredicted} predictions`,
              );
              assert.ok(st.lookaheadCorrect <= st.lookaheadPredicted);
              assert.ok(st.temporalCorrect <= st.temporalPredicted);
              const s = m.experts!.summary();
              assert.ok(s.lookaheadAccuracy >= 0 && s.lookaheadAccuracy <= 1);
              assert.match(m.experts!.report(), /temporal \d+\.\d%, router lookahead \d+\.\d%/);
              if (slots === E) assert.ok(st.misses > 0, `${what}: the minimum budget mispredicts`);
            }
          } finally {
            m.dispose();
          }
        }
      }
    }
    // The default is the temporal predictor, without the lookahead kernels.
    const t = await openTiny(dir, { memoryBudget: F + E * eb });
    assert.equal(t.experts!.prefetch, "temporal");
    assert.equal(t.experts!.lookahead, false);
    assert.deepEqual(await collectIds(t, 16), want);
    assert.ok(Number.isNaN(t.experts!.summary().lookaheadAccuracy));
    t.dispose();
    await assert.rejects(
      () => openTiny(dir, { memoryBudget: F + E * eb, prefetch: "psychic" as "both" }),
      (e: Error) => e instanceof TypeError && /prefetch must be/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("router lookahead: prediction sets (first layer temporal, union for both)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_lookahead_sets_" });
  try {
    await writeTinyMixtral(dir, { config: CONFIG, seed: 3 });
    const probe = await openTiny(dir, { memoryBudget: "64GiB" });
    const { fixedBytes: F, expertBytes: eb, experts: E } = probe.expertPlan!;
    probe.dispose();
    const m = await openTiny(dir, { memoryBudget: F + E * eb, prefetch: "lookahead" });
    try {
      const x = m.experts!;
      assert.equal(x.plan.pinned.flat().length, 0);
      const row = new Uint32Array(3 * E), la = new Uint32Array(3 * E);
      row[1] = row[4] = 1; // layer 0 routed 1, 4
      row[E + 2] = row[E + 3] = 1; // layer 1 routed 2, 3
      la[E + 5] = la[E + 6] = 1; // the lookahead predicts 5, 6 for layer 1
      la[2 * E + 0] = la[2 * E + 7] = 1; // and 0, 7 for layer 2
      assert.deepEqual(x.predict(row, la), [1, 4, E + 5, E + 6, 2 * E, 2 * E + 7]);
      x.prefetch = "both";
      assert.deepEqual(
        x.predict(row, la).sort((a, b) => a - b),
        [1, 4, E + 2, E + 3, E + 5, E + 6, 2 * E, 2 * E + 7],
      );
      x.prefetch = "temporal";
      assert.deepEqual(x.predict(row, la), [1, 4, E + 2, E + 3]);
      // Scoring: step q used layer 1's experts 3 and 5.
      const next = new Uint32Array(3 * E);
      next[E + 3] = next[E + 5] = 1;
      x.resetStats();
      x.scorePredictors(row, next, la);
      const st = x.stats;
      assert.deepEqual(
        [st.temporalPredicted, st.temporalCorrect, st.lookaheadPredicted, st.lookaheadCorrect],
        [2, 1, 4, 1],
      );
    } finally {
      m.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
