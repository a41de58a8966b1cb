/**
 * Disposal: what `dispose()` frees (buffers, staging buffers on error paths, the
 * devices `loadModel` requested itself — never one the caller passed), the
 * short soak (no growth in live buffers over load/generate/dispose cycles), and
 * the one clear error every method of a disposed object throws.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile, type Executable } from "../runtime/executable.ts";
import { cpuDevice, defaultDevice, type KilnDevice, requestDevice } from "../runtime/device.ts";
import { loadModel } from "../app/model/mod.ts";
import { writeTinyMamba, writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { trackAdapters, trackDevice } from "./fixtures/gpu_tracker.ts";
import { gpu, MOE_PROMPT } from "./_util.ts";

async function tempCheckpoint(
  write: typeof writeTinyMixtral,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_dispose_" });
  try {
    await write(dir, {});
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function drain(it: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of it) { /* */ }
}

/** A graph with a param, a state, a symbolic dim and an output. */
function smallGraph() {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 8]);
  const w = g.param("w", [8, 8]);
  const s = g.state("s", [8]);
  const y = x.matmul(w, { transB: true });
  g.assign(s, s.add(y.sum(0)));
  g.output("y", y.silu());
  return g.build();
}

Deno.test("models without a device share the default device; dispose leaves it clean and alive", async () => {
  await tempCheckpoint(writeTinyMamba, async (dir) => {
    const shared = await defaultDevice();
    const t = trackDevice(shared.device);
    const own = await loadModel(dir, { quiet: true, maxSeq: 16 });
    assert.equal(own.prefill.device, shared, "a model without a device runs on the default one");
    await drain(own.generateIds([1, 2], { maxTokens: 2 }));
    own.dispose();
    own.dispose(); // idempotent
    assert.equal(t.count, 0, "none of the model's buffers are left on the shared device");
    assert.ok(!t.destroyed, "the shared device stays alive for the next model");
    const again = await loadModel(dir, { quiet: true, maxSeq: 16 });
    assert.equal(again.prefill.device, shared);
    await drain(again.generateIds([1, 2], { maxTokens: 2 }));
    again.dispose();
    assert.equal(t.count, 0);

    const dev = await requestDevice();
    const passed = await loadModel(dir, { device: dev, quiet: true, maxSeq: 16 });
    const tp = trackDevice(dev.device);
    passed.dispose();
    assert.ok(!tp.destroyed, "a device the caller passed stays");
    dev.destroy();
  });
});

Deno.test("devices: 2 — dispose destroys both requested devices; a failed load destroys its own", async () => {
  await tempCheckpoint(writeTinyMixtral, async (dir) => {
    const t = trackAdapters();
    try {
      const model = await loadModel(dir, { devices: 2, quiet: true, maxSeq: 16 });
      assert.equal(t.devices.length, 2);
      await drain(model.generateIds(MOE_PROMPT.slice(0, 4), { maxTokens: 2 }));
      model.dispose();
      assert.deepEqual(t.devices.map((d) => d.destroyed), [true, true]);
      // A load that fails after requesting its devices (maxSeq is checked later).
      await assert.rejects(loadModel(dir, { devices: 2, quiet: true, maxSeq: 0 }), /maxSeq/);
      assert.equal(t.devices.length, 4);
      assert.equal(t.liveDevices(), 0, "the failed load's devices were destroyed");
    } finally {
      t.stop();
    }
  });
});

Deno.test("soak (short): live buffers do not grow over load/generate/dispose and compile/run/dispose cycles", async () => {
  await tempCheckpoint(writeTinyMixtral, async (dir) => {
    const dev = await requestDevice();
    const t = trackDevice(dev.device);
    try {
      const counts: number[] = [];
      for (let i = 0; i < 5; i++) {
        const model = await loadModel(dir, { device: dev, quiet: true, maxSeq: 32 });
        await drain(model.generateIds(MOE_PROMPT.slice(0, 5), { maxTokens: 4, readEvery: 2 }));
        await drain(model.generateIds([1, 2], { maxTokens: 3, temperature: 0.7, seed: i }));
        await model.forward([3, 4, 5]);
        model.dispose();
        counts.push(t.count);
      }
      assert.deepEqual(counts, [0, 0, 0, 0, 0], "live buffers after each cycle");
      const graph = smallGraph();
      for (let i = 0; i < 5; i++) {
        const exe = compile(graph, dev, { params: { w: new Float32Array(64) } });
        await exe.run({ x: new Float32Array(8 * (i + 1)) });
        await exe.submit({ x: new Float32Array(8) });
        await exe.readStates(["s"]);
        if (dev.timestamps) await exe.profile({ x: new Float32Array(16) });
        exe.dispose();
        assert.equal(t.count, 0, `compile/run cycle ${i}: ${t.count} buffers left`);
      }
      assert.ok(t.created > 0);
    } finally {
      dev.destroy();
    }
  });
});

Deno.test("a failed readback destroys its staging buffer", async () => {
  const dev = await requestDevice();
  const t = trackDevice(dev.device);
  try {
    const exe = compile(smallGraph(), dev, { params: { w: new Float32Array(64) } });
    await exe.run({ x: new Float32Array(8) });
    const before = t.count;
    t.failMaps = true;
    await assert.rejects(exe.readStates(["s"]), /test: mapAsync failed/);
    t.failMaps = false;
    assert.equal(t.count, before, "no staging buffer left behind");
    exe.dispose();
    assert.equal(t.count, 0);
  } finally {
    dev.destroy();
  }
});

/** Every public method and getter of `exe` that touches freed state. */
function disposedCalls(exe: Executable): [string, () => unknown][] {
  const x = new Float32Array(8);
  return [
    ["run", () => exe.run({ x })],
    ["submit", () => exe.submit({ x })],
    ["profile", () => exe.profile({ x })],
    ["prepare", () => exe.prepare({ x })],
    ["setParams", () => exe.setParams({ w: new Float32Array(64) })],
    ["readState", () => exe.readState("s")],
    ["readStates", () => exe.readStates(["s"])],
    ["writeState", () => exe.writeState("s", new Float32Array(8))],
    ["resetStates", () => exe.resetStates()],
    ["paramBuffer", () => exe.paramBuffer("w")],
    ["plan", () => exe.plan({ T: 1 })],
    ["inspect", () => exe.inspect({ T: 1 })],
    ["lastPlan", () => exe.lastPlan],
  ];
}

for (const kind of ["gpu", "cpu"] as const) {
  Deno.test(`${kind}: every method of a disposed Executable says it was disposed`, async () => {
    const dev: KilnDevice = kind === "gpu" ? await gpu() : cpuDevice();
    const graph = smallGraph();
    const exe = compile(graph, dev, { params: { w: new Float32Array(64) } });
    await exe.run({ x: new Float32Array(8) });
    exe.dispose();
    exe.dispose(); // idempotent
    for (const [name, call] of disposedCalls(exe)) {
      if (kind === "cpu" && (name === "plan" || name === "inspect" || name === "prepare")) continue;
      await assert.rejects(
        async () => await call(),
        (e: Error) =>
          e instanceof TypeError &&
          e.message === "Executable was disposed; compile the graph again",
        name,
      );
    }
    assert.throws(
      () => compile(graph, dev, { shareWith: exe }),
      (e: Error) => e instanceof TypeError && /shareWith: .*was disposed/.test(e.message),
    );
  });
}

Deno.test("every method of a disposed Model (and its expert scheduler) says it was disposed", async () => {
  await tempCheckpoint(writeTinyMixtral, async (dir) => {
    const model = await loadModel(dir, {
      device: await gpu(),
      quiet: true,
      maxSeq: 32,
      memoryBudget: 1, // below the minimum: refused, naming it
    }).catch((e) => e as Error);
    assert.ok(model instanceof RangeError);
    const budget = Number(/minimum .*?\((\d+) bytes\)/.exec(model.message)![1]);
    const m = await loadModel(dir, {
      device: await gpu(),
      quiet: true,
      maxSeq: 32,
      memoryBudget: budget,
    });
    assert.ok(m.experts, "the budget streams experts");
    const experts = m.experts;
    await drain(m.generateIds(MOE_PROMPT.slice(0, 4), { maxTokens: 2 }));
    m.dispose();
    m.dispose(); // idempotent
    const isDisposed = (e: Error) =>
      e instanceof TypeError && e.message === "Model was disposed; load it again";
    await assert.rejects(m.forward([1, 2]), isDisposed);
    await assert.rejects(m.step(1, 0), isDisposed);
    await assert.rejects(drain(m.generateIds([1, 2])), isDisposed);
    await assert.rejects(drain(m.generate("hi")), isDisposed);
    const schedulerDisposed = (e: Error) =>
      e instanceof TypeError && /^ExpertScheduler was disposed/.test(e.message);
    assert.throws(() => experts.useStreamingTables(), schedulerDisposed);
    await assert.rejects(experts.beginWindow([]), schedulerDisposed);
    assert.throws(() => experts.hooks(m.decode.graph as never), schedulerDisposed);
  });
});
