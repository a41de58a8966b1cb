/**
 * Expert parallelism for the routers with a selection bias — `sigmoid_bias`
 * (GLM-4.5, DeepSeek-V3) and `softmax_bias` (ERNIE 4.5):
 * the other device routes with the layer's selection bias, scaling, group
 * limit and normalisation, so a transformers-written GLM-4.5 checkpoint split
 * over two devices (two lavapipe adapters) gives the single device's logits
 * and transformers' own; and the host's repeat of the selection, which decides
 * which devices a layer needs, never leaves out an expert the kernel may pick.
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "../app/model/mod.ts";
import { routeOnHost } from "../app/experts/selection.ts";
import { type GpuDevice, requestDevice } from "../runtime/device.ts";
import { readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";
import { gpu, relMaxError } from "./_util.ts";

let second: Promise<GpuDevice> | undefined;
const gpu2 = () => (second ??= requestDevice());

/**
 * The checkpoint `name` of `fixtures/hf/` on one device and split over two:
 * the same logits (to a few ulps), transformers' own, the same greedy ids.
 */
async function assertSplitRunsAsOne(name: string, counts: number[]): Promise<void> {
  const dir = new URL(`./fixtures/hf/${name}/`, import.meta.url).pathname;
  const { ref, logits } = await readTransformersRef(`${dir}/ref.json`, `${dir}/logits.f32`);
  const devices = [await gpu(), await gpu2()];
  const one = await loadModel(dir, { device: devices[0], quiet: true, prefillChunk: false });
  const two = await loadModel(dir, { devices, quiet: true });
  try {
    assert.deepEqual(two.parallel!.plan.counts, counts);
    const a = (await one.forward(ref.ids)).slice(), b = (await two.forward(ref.ids)).slice();
    // A token's experts on both devices are summed in another order (a few ulps).
    assert.ok(relMaxError(b, a) < 1e-5, `two devices vs one: ${relMaxError(b, a)}`);
    const e = relToRms(b, logits, ref.logit_rms);
    assert.ok(e < 1e-4, `two devices vs transformers: ${e.toExponential(2)} of the logit rms`);
    const ids = async (m: Model) => {
      const out: number[] = [];
      for await (const id of m.generateIds(ref.ids.slice(0, 9), { maxTokens: 8 })) out.push(id);
      return out;
    };
    assert.deepEqual(await ids(two), await ids(one), "greedy ids, decode steps on two devices");
    const st = two.parallel!.stats;
    assert.ok(st.remoteRuns > 0 && st.pairs[0] > 0 && st.pairs[1] > 0, JSON.stringify(st.pairs));
  } finally {
    one.dispose();
    two.dispose();
  }
}

Deno.test("expert parallel: GLM-4.5 with group-limited sigmoid routing on two devices", async () => {
  await assertSplitRunsAsOne("glm4_moe_group_limit", [8, 8]);
});

Deno.test("expert parallel: ERNIE 4.5's softmax + selection bias routing on two devices", async () => {
  await assertSplitRunsAsOne("ernie4_5_moe_interval", [4, 4]);
});

Deno.test("routeOnHost: the kernel's choice, and every expert when a near-tie could flip it", () => {
  // Softmax routers: by the logits, ties to the lower index, exact.
  const soft = routeOnHost({ topK: 2 }, Float32Array.of(1, 3, 3, 0, 9, 9, 1, 2), 1, 4);
  assert.deepEqual([soft.chosen, soft.possible], [[0, 1], [0, 1]]);
  // Sigmoid + bias within the best 1 of 2 groups: σ(0) + 0.9 = 1.4 puts group 1 ahead
  // (1.4 + σ(-2) ≈ 1.52 against σ(1) + σ(0.5) ≈ 1.35), then its top 2.
  const bias = Float32Array.of(0, 0, 0, 0, 0.9, 0, 0, 0);
  const z = Float32Array.of(1, 0.5, -1, -3, 0, -2, -4, -5);
  const groups = { router: "sigmoid_bias" as const, topK: 2, groups: { count: 2, kept: 1 } };
  const g = routeOnHost(groups, z, 0, 8, bias);
  assert.deepEqual([g.chosen, g.possible], [[4, 5], [4, 5]]);
  // Without the group limit the best two scores overall.
  const all = routeOnHost({ router: "sigmoid_bias", topK: 2 }, z, 0, 8, bias);
  assert.deepEqual(all.chosen, [4, 0]);
  // Two experts a hair apart at the k-th place: either may be the kernel's (f32) pick.
  const tie = Float32Array.of(2, 1e-7, 0, -1);
  const t = routeOnHost({ router: "sigmoid_bias", topK: 2 }, tie, 0, 4, new Float32Array(4));
  assert.deepEqual([t.chosen, t.possible], [[0, 1], [0, 1, 2, 3]]);
  // Two groups a hair apart at the cut: the same.
  const gz = Float32Array.of(1, 0, 1e-7, 1, -3, -3, -3, -3);
  const gt = routeOnHost(
    { ...groups, groups: { count: 4, kept: 1 } },
    gz,
    0,
    8,
    new Float32Array(8),
  );
  assert.deepEqual(gt.possible, [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.throws(
    () => routeOnHost({ router: "sigmoid_bias", topK: 1 }, tie, 0, 4),
    /needs its 4 selection biases/,
  );
  // Softmax + bias (ERNIE 4.5): probabilities of [ln 4, ln 2, ln 1, ln 1] are [.5, .25, .125,
  // .125]; a bias of 0.2 on expert 3 lifts it to 0.325, past expert 1.
  const sz = Float32Array.of(Math.log(4), Math.log(2), 0, 0);
  const sb = routeOnHost(
    { router: "softmax_bias", topK: 2 },
    sz,
    0,
    4,
    Float32Array.of(0, 0, 0, 0.2),
  );
  assert.deepEqual([sb.chosen, sb.possible], [[0, 3], [0, 3]]);
  // A bias that brings two probabilities within a hair: every expert possible.
  const near = Float32Array.of(0, 0, 0.125 + 1e-7, 0);
  const nb = routeOnHost({ router: "softmax_bias", topK: 2 }, sz, 0, 4, near);
  assert.deepEqual(nb.possible, [0, 1, 2, 3]);
  assert.throws(
    () => routeOnHost({ router: "softmax_bias", topK: 1 }, sz, 0, 4),
    /softmax_bias router needs its 4 selection biases/,
  );
});
