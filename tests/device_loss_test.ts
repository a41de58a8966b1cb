/**
 * A lost GPU device (destroyed, or `device.lost` resolving) rejects pending and
 * later work with one clear error instead of hanging, returning garbage or a
 * WebGPU validation error; a model loads again on a new device afterwards.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { DeviceLostError, requestDevice } from "../runtime/device.ts";
import { loadModel } from "../app/model/mod.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";

const LOST = /^Error: the GPU device was lost \(reason: destroyed\)/;

function isLost(e: unknown): boolean {
  return e instanceof DeviceLostError && e.reason === "destroyed" && LOST.test(String(e));
}

function graph() {
  const g = new GraphBuilder();
  const x = g.input("x", ["N"]);
  const s = g.state("s", [4]);
  g.assign(s, s.add(1));
  g.output("y", x.mul(2).add(1));
  return g.build();
}

Deno.test("runs after GpuDevice.destroy() reject with the device-lost error", async () => {
  const dev = await requestDevice();
  const exe = compile(graph(), dev);
  await exe.run({ x: [1, 2] });
  dev.destroy();
  await assert.rejects(exe.run({ x: [1, 2] }), isLost);
  await assert.rejects(exe.submit({ x: [1, 2] }), isLost);
  await assert.rejects(exe.readStates(["s"]), isLost);
  assert.throws(() => exe.writeState("s", [1, 2, 3, 4]), isLost);
  // A new graph on the lost device fails the same way (pipelines cannot compile).
  await assert.rejects(compile(graph(), dev).run({ x: [1, 2, 3] }), isLost);
  exe.dispose(); // disposing on a lost device is fine
});

Deno.test("a run pending when the WebGPU device is destroyed rejects; so do later ones", async () => {
  const dev = await requestDevice();
  const exe = compile(graph(), dev);
  await exe.run({ x: [1, 2] }); // pipelines compiled
  const pending = exe.run({ x: new Float32Array(1 << 16) });
  dev.device.destroy(); // the raw WebGPU device, behind Kiln's back
  await assert.rejects(pending, isLost);
  await assert.rejects(exe.run({ x: [1, 2] }), isLost);
  await assert.rejects(exe.readState("s"), isLost);
  exe.dispose();
});

Deno.test("a model on a lost device rejects forward and generate; it loads again on a new device", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_lost_" });
  try {
    await writeTinyMixtral(dir, {});
    const first = await requestDevice();
    const model = await loadModel(dir, { device: first, quiet: true, maxSeq: 32 });
    const want: number[] = [];
    for await (const id of model.generateIds([1, 2, 3], { maxTokens: 4 })) want.push(id);
    first.device.destroy();
    await assert.rejects(model.forward([1, 2, 3]), isLost);
    await assert.rejects(async () => {
      for await (const _ of model.generateIds([1, 2, 3], { maxTokens: 4 })) { /* */ }
    }, isLost);
    model.dispose();
    const again = await loadModel(dir, { device: await requestDevice(), quiet: true, maxSeq: 32 });
    const got: number[] = [];
    for await (const id of again.generateIds([1, 2, 3], { maxTokens: 4 })) got.push(id);
    assert.deepEqual(got, want);
    again.dispose();
    (again.prefill.device as { destroy(): void }).destroy();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
