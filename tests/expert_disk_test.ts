/**
 * The disk tier of the expert scheduler: under a host memory budget, experts
 * that do not fit stay in the safetensors files and are read by offset when
 * needed. Outputs stay bit-identical to all-resident execution for every
 * policy, from the smallest host budget (one expert: everything not pinned on
 * the GPU comes from disk) to one that holds a part; the plan shows the tiers;
 * bad budgets are clear errors.
 */
import assert from "node:assert/strict";
import { planModelExperts } from "../app/model/mod.ts";
import { writeTinyJamba, writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { assertBitsEqual, collectIds, gpu, MOE_PROMPT, openTiny } from "./_util.ts";
import { describeExpertPlan, planExperts } from "../app/experts/placement.ts";

const CONFIG = { num_local_experts: 8, num_experts_per_tok: 2, num_hidden_layers: 3 };

Deno.test("disk tier: tiny host budgets read experts from the checkpoint, outputs bit-identical", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_disk_" });
  try {
    await writeTinyMixtral(dir, { config: CONFIG, seed: 3 });
    const ref = await openTiny(dir);
    const refLogits = (await ref.forward(MOE_PROMPT)).slice();
    const refIds = await collectIds(ref, 12);
    ref.dispose();
    const probe = await openTiny(dir, { memoryBudget: "64GiB" });
    const { fixedBytes: F, expertBytes: eb, layers: L, experts: E } = probe.expertPlan!;
    probe.dispose();
    for (const slots of [E, E + 2 * L]) {
      for (const hostExperts of [1, 7]) {
        for (const policy of ["lru", "stream", "naive"] as const) {
          const m = await openTiny(dir, {
            memoryBudget: F + slots * eb,
            hostMemoryBudget: hostExperts * eb,
            expertPolicy: policy,
          });
          try {
            const p = m.expertPlan!;
            const onDisk = p.disk.reduce((a, r) => a + r.length, 0);
            const inHost = p.host.reduce((a, r) => a + r.length, 0);
            const free = L * E - p.pinned.reduce((a, r) => a + r.length, 0);
            assert.equal(inHost + onDisk, free);
            assert.equal(inHost, hostExperts - 1, "one expert of the budget is the read buffer");
            const what = `${slots} slots, ${hostExperts} host experts, ${policy}`;
            assertBitsEqual(await m.forward(MOE_PROMPT), refLogits, `prefill logits, ${what}`);
            assert.deepEqual(await collectIds(m, 12), refIds, `generated ids, ${what}`);
            const st = m.experts!.stats;
            assert.ok(st.diskBytesRead > 0, `${what}: experts were read from disk`);
            assert.equal(st.diskBytesRead % eb, 0);
            assert.match(m.experts!.report(), /disk tier: \d+ experts read from the checkpoint/);
          } finally {
            m.dispose();
          }
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The spill files of converted disk-tier experts now in the temporary folder. */
async function spillFiles(): Promise<string[]> {
  const dir = Deno.env.get("TMPDIR") ?? "/tmp";
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (/^kiln_experts_.*\.blocks$/.test(e.name)) out.push(`${dir}/${e.name}`);
  }
  return out;
}

Deno.test("disk tier with quantize-on-load: experts quantized once into a spill file, outputs bit-identical", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_disk_q_" });
  try {
    await writeTinyMixtral(dir, { config: CONFIG, seed: 4 });
    const ref = await openTiny(dir, { quantize: "q8_0" });
    const refLogits = (await ref.forward(MOE_PROMPT)).slice();
    const refIds = await collectIds(ref, 12);
    ref.dispose();
    const probe = await openTiny(dir, { quantize: "q8_0", memoryBudget: "64GiB" });
    const { fixedBytes: F, expertBytes: eb, experts: E } = probe.expertPlan!;
    probe.dispose();
    const before = await spillFiles();
    for (const policy of ["lru", "stream"] as const) {
      const m = await openTiny(dir, {
        quantize: "q8_0",
        memoryBudget: F + E * eb,
        hostMemoryBudget: eb,
        expertPolicy: policy,
      });
      let spill: string[];
      try {
        const onDisk = m.expertPlan!.disk.reduce((a, r) => a + r.length, 0);
        assert.ok(onDisk > 0);
        spill = (await spillFiles()).filter((f) => !before.includes(f));
        assert.equal(spill.length, 1, "one spill file while the model lives");
        assert.equal((await Deno.stat(spill[0])).size, onDisk * eb, "each disk expert's blocks");
        assertBitsEqual(await m.forward(MOE_PROMPT), refLogits, `prefill logits, ${policy}`);
        assert.deepEqual(await collectIds(m, 12), refIds, `ids, ${policy}`);
        assert.ok(m.experts!.stats.diskBytesRead > 0);
      } finally {
        m.dispose();
      }
      await assert.rejects(() => Deno.stat(spill[0]), Deno.errors.NotFound, "removed on dispose");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("disk tier: a Jamba model (streamed, Mamba state) reads its experts from disk", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_disk_jamba_" });
  try {
    await writeTinyJamba(dir, { seed: 5, config: { num_experts: 8 } });
    const ref = await openTiny(dir);
    const refIds = await collectIds(ref, 10);
    ref.dispose();
    const probe = await openTiny(dir, { memoryBudget: "64GiB" });
    const { fixedBytes: F, expertBytes: eb, experts: E } = probe.expertPlan!;
    probe.dispose();
    const m = await openTiny(dir, {
      memoryBudget: F + E * eb,
      hostMemoryBudget: eb,
      expertPolicy: "stream",
    });
    try {
      assert.equal(m.experts!.policy, "stream");
      assert.deepEqual(await collectIds(m, 10), refIds);
      assert.ok(m.experts!.stats.decodeDiskBytes >= 9 * E * eb, "every step streams from disk");
    } finally {
      m.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("disk tier: the plan shows GPU / host / disk experts; bad host budgets are clear errors", async () => {
  const p = planExperts({
    layers: 2,
    experts: 4,
    topK: 2,
    expertBytes: 100,
    fixedBytes: 0,
    budget: 600,
    hostBudget: 300,
    stats: { version: 1, layers: 2, experts: 4, counts: [[9, 8, 1, 2], [0, 5, 7, 6]] },
  });
  assert.deepEqual(p.pinned, [[0, 1], [2, 3]]);
  // 300 bytes: the read buffer plus the two most used non-pinned experts.
  assert.deepEqual(p.host, [[3], [1]]);
  assert.deepEqual(p.disk, [[2], [0]]);
  assert.equal(p.diskBytesPerStep, 200);
  const text = describeExpertPlan(p);
  assert.match(text, /layer 0: GPU \[0, 1\] .*host \[3\], disk \[2\]/);
  assert.match(text, /read from disk per token: 200 B/);
  assert.throws(
    () =>
      planExperts({
        layers: 1,
        experts: 4,
        topK: 2,
        expertBytes: 100,
        fixedBytes: 0,
        budget: 400,
        hostBudget: 99,
      }),
    (e: Error) =>
      e instanceof RangeError &&
      /Host memory budget 99 B \(99 bytes\) is below the minimum 100 B/.test(e.message),
  );
  const dir = await Deno.makeTempDir({ prefix: "kiln_disk_err_" });
  try {
    await writeTinyMixtral(dir, { config: CONFIG, seed: 3 });
    await assert.rejects(() => openTiny(dir, { hostMemoryBudget: "1GiB" }), TypeError);
    await assert.rejects(
      () => openTiny(dir, { memoryBudget: "64GiB", hostMemoryBudget: "lots" }),
      SyntaxError,
    );
    const probe = await openTiny(dir, { memoryBudget: "64GiB" });
    const { fixedBytes: F, expertBytes: eb, experts: E } = probe.expertPlan!;
    probe.dispose();
    await assert.rejects(
      () => openTiny(dir, { memoryBudget: F + E * eb, hostMemoryBudget: eb - 4 }),
      /Host memory budget .* is below the minimum/,
    );
    const plan = await planModelExperts(dir, {
      device: await gpu(),
      maxSeq: 64,
      memoryBudget: F + E * eb,
      hostMemoryBudget: 2 * eb,
    });
    assert.equal(plan.host.reduce((a, r) => a + r.length, 0), 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
