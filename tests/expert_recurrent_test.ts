/**
 * The expert cache on models with recurrent state (Jamba: Mamba layers beside
 * the MoE ones). A cached decode window runs speculatively; a miss used to be
 * unrecoverable for Mamba's in-place conv/SSM states, so hybrids were forced
 * to stream. Now each window keeps a device copy of those states and a miss
 * rewinds them: ids must equal all-resident execution for every cache policy,
 * with misses actually taken. Also `Executable.saveStates`/`restoreStates`
 * themselves, on the CPU interpreter and the GPU.
 */
import assert from "node:assert/strict";
import { compile, cpuDevice, GraphBuilder } from "../mod.ts";
import { writeTinyJamba } from "./fixtures/tiny_checkpoints.ts";
import { collectIds, gpu, openTiny } from "./_util.ts";

Deno.test("saveStates/restoreStates: rewind persistent states on the CPU and the GPU; unsaved is a TypeError", async () => {
  for (const device of [cpuDevice(), await gpu()]) {
    const g = new GraphBuilder();
    const s = g.state("s", [3]);
    const t = g.state("t", [2], "u32");
    g.assign(s, s.add(g.input("x", [3])));
    g.assign(t, t.add(1));
    g.output("s", s);
    const exe = compile(g.build(), device);
    try {
      assert.throws(() => exe.restoreStates(["s"]), /state "s" was never saved/);
      assert.throws(() => exe.saveStates(["nope"]), /nope/);
      await exe.run({ x: [1, 2, 3] });
      exe.saveStates(["s", "t"]);
      await exe.run({ x: [10, 20, 30] });
      await exe.run({ x: [5, 5, 5] });
      exe.restoreStates(["s", "t"]);
      const got = await exe.readStates(["s", "t"]);
      assert.deepEqual([...got.s.data], [1, 2, 3], device.kind);
      assert.deepEqual([...got.t.data], [1, 1], device.kind);
      // The copy is kept: restoring twice gives the same state.
      await exe.run({ x: [7, 7, 7] });
      exe.restoreStates(["s"]);
      assert.deepEqual([...(await exe.readState("s")).data], [1, 2, 3], device.kind);
    } finally {
      exe.dispose();
    }
  }
});

Deno.test("expert cache on a Jamba model: Mamba state is rewound on misses, ids equal all-resident", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_recurrent_cache_" });
  try {
    await writeTinyJamba(dir, {
      seed: 7,
      config: { num_experts: 8, num_experts_per_tok: 2, num_hidden_layers: 4 },
    });
    const ref = await openTiny(dir);
    const refIds = await collectIds(ref, 16);
    ref.dispose();
    const probe = await openTiny(dir, { memoryBudget: "64GiB" });
    const { fixedBytes: F, expertBytes: eb, layers: L, experts: E } = probe.expertPlan!;
    probe.dispose();
    assert.ok(L >= 2, `the tiny Jamba has ${L} MoE layers`);
    let reruns = 0;
    for (const policy of ["lru", "lfu", "naive"] as const) {
      // One layer's experts plus a few: the rotating slots are shared across layers.
      const m = await openTiny(dir, { memoryBudget: F + (E + 2) * eb, expertPolicy: policy });
      try {
        assert.equal(m.experts!.policy, policy);
        m.experts!.streamOnMisses = false; // keep the cache path (no streamed fallback windows)
        assert.deepEqual(await collectIds(m, 16), refIds, policy);
        reruns += m.experts!.stats.reruns;
      } finally {
        m.dispose();
      }
    }
    assert.ok(reruns > 0, "some window missed, so the rewind path ran");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
