/**
 * Expert parallelism on two devices (two adapters on lavapipe): prefill logits,
 * decode-step logits and generated ids bit-identical to one device for budgets
 * from the minimum for two devices to full; top-4 routing within a tight
 * tolerance (summation order); a Jamba (Mamba state) model; host barriers of
 * the executor; the device planner; clear errors for bad device lists and
 * budgets.
 */
import assert from "node:assert/strict";
import type { LoadOptions, Model } from "../app/model/mod.ts";
import { writeTinyJamba, writeTinyMamba, writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { assertBitsEqual, collectIds, gpu, MOE_PROMPT, openTiny } from "./_util.ts";
import { twoDeviceMinimum } from "./fixtures/device_budgets.ts";
import { type GpuDevice, requestDevice } from "../runtime/device.ts";
import { describeDevicePlan, planDevices } from "../app/experts/mod.ts";
import { compile } from "../runtime/executable.ts";
import { GraphBuilder } from "../compiler/builder.ts";

let second: Promise<GpuDevice> | undefined;
/** A second device from a second adapter request (lavapipe hands out several). */
function gpu2(): Promise<GpuDevice> {
  second ??= requestDevice();
  return second;
}

async function withMixtral(
  config: Record<string, unknown>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_ep_" });
  try {
    await writeTinyMixtral(dir, { config, seed: 3 });
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

interface Reference {
  prefill: Float32Array;
  ids: number[];
  steps: Float32Array[];
}

/**
 * The single-device reference. It runs each prompt whole (`prefillChunk: false`),
 * as expert parallelism does, so the two compare bit for bit.
 */
async function reference(m: Model): Promise<Reference> {
  const prefill = (await m.forward(MOE_PROMPT)).slice();
  const ids = await collectIds(m, 12);
  await m.forward(MOE_PROMPT.slice(0, 9));
  const steps: Float32Array[] = [];
  for (let t = 9; t < 12; t++) steps.push((await m.step(MOE_PROMPT[t], t)).slice());
  return { prefill, ids, steps };
}

/** The prefill logits, greedy ids and decode logits of two runs are the same bits. */
function assertSameRun(got: Reference, want: Reference): void {
  assertBitsEqual(got.prefill, want.prefill, "prefill logits");
  assert.deepEqual(got.ids, want.ids);
  got.steps.forEach((s, i) => assertBitsEqual(s, want.steps[i], `decode logits ${i}`));
}

const MIXTRAL = { num_local_experts: 8, num_experts_per_tok: 2, num_hidden_layers: 3 };

Deno.test("expert parallel: two devices, budgets from the two-device minimum to full, bit-identical", async () => {
  await withMixtral(MIXTRAL, async (dir) => {
    const devices = [await gpu(), await gpu2()];
    const one = await openTiny(dir, { device: devices[0], prefillChunk: false });
    const want = await reference(one);
    one.dispose();
    // Balanced split, no budget.
    const probe = await openTiny(dir, { devices });
    const p0 = probe.parallel!.plan;
    assert.deepEqual(p0.counts, [4, 4]);
    const got0 = await reference(probe);
    assertBitsEqual(got0.prefill, want.prefill, "prefill logits, balanced split");
    assert.deepEqual(got0.ids, want.ids, "generated ids, balanced split");
    got0.steps.forEach((s, i) => assertBitsEqual(s, want.steps[i], `decode logits ${i}, balanced`));
    const st = probe.parallel!.stats;
    assert.ok(st.remoteRuns > 0, "some tokens used device 1's experts");
    assert.ok(st.pairs[1] > 0 && st.pairs[0] > 0);
    assert.ok(st.decodeRoundTrips >= st.decodeSteps * 3, "one readback per MoE layer per step");
    assert.ok(
      st.decodeRoundTrips <= st.decodeSteps * 3 * 2,
      "at most one more round trip per MoE layer (one remote device)",
    );
    assert.match(probe.parallel!.report(), /device 1: 12 experts/);
    probe.dispose();
    // Budgets: from the minimum for two devices (home holds as few as it can) to full.
    const { fixedBytes: F, expertBytes: eb, layers: L, experts: E } = p0;
    const min = twoDeviceMinimum(p0);
    let sawRemote = false, sawHomeOnly = false;
    for (const budget of [min, min + L * eb, min + 2 * L * eb, F + L * E * eb]) {
      const m = await openTiny(dir, { devices, memoryBudget: budget });
      try {
        const plan = m.parallel!.plan;
        assert.equal(plan.counts[0] + plan.counts[1], E);
        assert.ok(F + plan.slots[0] * eb <= budget, "home fits its budget");
        assert.ok(plan.remoteFixedBytes + plan.slots[1] * eb <= budget, "device 1 fits");
        const got = await reference(m);
        assertBitsEqual(got.prefill, want.prefill, `prefill logits, budget ${budget}`);
        assert.deepEqual(got.ids, want.ids, `generated ids, budget ${budget}`);
        got.steps.forEach((s, i) =>
          assertBitsEqual(s, want.steps[i], `decode ${i}, budget ${budget}`)
        );
        if (plan.counts[1] > 0) sawRemote = true;
        if (plan.counts[1] === 0) {
          sawHomeOnly = true;
          assert.equal(m.parallel!.stats.roundTrips, 0, "nothing moves when home holds all");
        }
      } finally {
        m.dispose();
      }
    }
    assert.ok(sawRemote && sawHomeOnly);
    await assert.rejects(
      () => openTiny(dir, { devices, memoryBudget: min - 1 }),
      (e: Error) => {
        assert.ok(e instanceof RangeError);
        assert.match(e.message, new RegExp(`below the minimum .*\\(${min} bytes\\) for 2 devices`));
        return true;
      },
    );
  });
});

Deno.test("expert parallel: top-4 routing matches one device within float reassociation", async () => {
  await withMixtral({ ...MIXTRAL, num_experts_per_tok: 4 }, async (dir) => {
    const one = await openTiny(dir, { device: await gpu(), prefillChunk: false });
    const want = await reference(one);
    one.dispose();
    const m = await openTiny(dir, { devices: [await gpu(), await gpu2()] });
    try {
      const got = await reference(m);
      // Slot sums in another order: differences of a few ulps of the logits' scale.
      let worst = 0, scale = 0, differ = 0;
      for (let i = 0; i < want.prefill.length; i++) {
        worst = Math.max(worst, Math.abs(got.prefill[i] - want.prefill[i]));
        scale = Math.max(scale, Math.abs(want.prefill[i]));
        if (got.prefill[i] !== want.prefill[i]) differ++;
      }
      assert.ok(worst <= 1e-5 * scale, `max difference ${worst} at logit scale ${scale}`);
      assert.ok(differ > 0, "top-4 tokens split across devices are summed in another order");
      assert.deepEqual(got.ids, want.ids);
    } finally {
      m.dispose();
    }
  });
});

Deno.test("expert parallel: a Jamba model (Mamba state, attention, MoE every second layer)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_ep_jamba_" });
  try {
    await writeTinyJamba(dir, { seed: 5, config: { num_experts: 8 } });
    const one = await openTiny(dir, { device: await gpu(), prefillChunk: false });
    const want = await reference(one);
    one.dispose();
    const m = await openTiny(dir, { devices: 2 });
    try {
      assertSameRun(await reference(m), want);
    } finally {
      m.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("expert parallel: GELU experts (hidden_act gelu) split across devices, bit-identical", async () => {
  await withMixtral({ ...MIXTRAL, hidden_act: "gelu" }, async (dir) => {
    const one = await openTiny(dir, { device: await gpu(), prefillChunk: false });
    const want = await reference(one);
    one.dispose();
    const m = await openTiny(dir, { devices: [await gpu(), await gpu2()] });
    try {
      // The other device holds experts: a remote graph with silu would not match.
      assert.ok(m.parallel!.plan.slots[1] > 0, JSON.stringify(m.parallel!.plan.slots));
      assertSameRun(await reference(m), want);
    } finally {
      m.dispose();
    }
  });
});

Deno.test("expert parallel: bad device lists and options are clear errors", async () => {
  await withMixtral(MIXTRAL, async (dir) => {
    const a = await gpu(), b = await gpu2();
    const bad: [LoadOptions, ErrorConstructor, RegExp][] = [
      [{ devices: [] }, TypeError, /non-empty array/],
      [{ devices: 0 }, RangeError, /devices must be an integer/],
      [{ devices: 2.5 }, RangeError, /devices must be an integer/],
      [{ devices: [a, a] }, TypeError, /devices\[1\] is the same device as devices\[0\]/],
      [
        { devices: [a, "gpu" as unknown as GpuDevice] },
        TypeError,
        /devices\[1\] is not a GPU device/,
      ],
      [{ devices: [a, b], device: b }, TypeError, /options.device differs from devices\[0\]/],
    ];
    for (const [options, type, message] of bad) {
      await assert.rejects(() => openTiny(dir, options), (e: Error) => {
        assert.ok(e instanceof type, `${e.constructor.name}: ${e.message}`);
        assert.match(e.message, message);
        return true;
      });
    }
    // One device in the list is plain single-device execution.
    const m = await openTiny(dir, { devices: [a] });
    assert.equal(m.parallel, undefined);
    m.dispose();
  });
  const mamba = await Deno.makeTempDir({ prefix: "kiln_ep_mamba_" });
  try {
    await writeTinyMamba(mamba, {});
    const devices = [await gpu(), await gpu2()];
    await assert.rejects(
      () => openTiny(mamba, { devices }),
      /devices applies to MoE models/,
    );
  } finally {
    await Deno.remove(mamba, { recursive: true });
  }
});

Deno.test("planDevices: balanced, budgeted, statistics keep the most used experts home", () => {
  const base = {
    devices: 3,
    layers: 2,
    experts: 8,
    expertBytes: 100,
    fixedBytes: 1000,
    remoteFixedBytes: 50,
  };
  assert.deepEqual(planDevices(base).counts, [3, 3, 2]);
  const p = planDevices({
    ...base,
    devices: 2,
    budget: 1000 + 2 * 5 * 100,
    stats: {
      version: 1,
      layers: 2,
      experts: 8,
      counts: [[0, 0, 9, 9, 9, 9, 9, 0], [1, 2, 3, 4, 5, 6, 7, 8]],
    },
  });
  assert.deepEqual(p.counts, [5, 3]);
  assert.deepEqual([...p.owner[0]], [1, 1, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...p.owner[1]], [1, 1, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(p.slots, [10, 6]);
  assert.equal(p.tables[1][1][0], 3); // after device 1's three experts of layer 0
  assert.equal(p.tables[0][1][0], 0xffffffff);
  assert.match(describeDevicePlan(p), /device 1: 3 experts per layer/);
  assert.throws(() => planDevices({ ...base, devices: 1 }), RangeError);
  assert.throws(() => planDevices({ ...base, budget: 500 }), /below the minimum/);
});

Deno.test("host barriers split a run and see the kernels before them finished", async () => {
  const dev = await gpu();
  const g = new GraphBuilder();
  const x = g.input("x", [4, 8]);
  const w = g.param("w", [8, 8]);
  g.output("y", x.matmul(w, { transB: true }).sum(1).exp());
  const exe = compile(g.build(), dev, {
    params: { w: Float32Array.from({ length: 64 }, (_, i) => (i % 7) / 10) },
  });
  const input = { x: Float32Array.from({ length: 32 }, (_, i) => i / 32) };
  const plain = (await exe.run(input)).y.data as Float32Array;
  const n = exe.lastPlan!.kernels.length;
  assert.ok(n >= 2, `needs two kernels, got ${n}`);
  let calls = 0;
  const split = (await exe.run(input, {
    barriers: () => new Map([[1, () => void calls++]]),
  })).y.data as Float32Array;
  assert.equal(calls, 1);
  assertBitsEqual(split, plain, "split run");
  await exe.submit(input, { barriers: () => new Map([[1, () => void calls++]]) });
  assert.equal(calls, 2);
  exe.dispose();
});
