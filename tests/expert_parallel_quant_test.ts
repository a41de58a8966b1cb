/**
 * @file Expert parallelism with quantized experts (quantize-on-load Q8_0 and
 * Q4_K, and a Q4_K_M-style GGUF file): every device's slot pool holds blocks;
 * logits and greedy ids are bit-identical to the same quantized model on one
 * device (top-2 routing) for 2 and 3 devices and for per-device budgets that
 * force remote experts, within float reassociation for top-4; the placement counts experts in block bytes (checked
 * against the formats' block sizes by hand) and `describeDevicePlan` and the
 * parallel report print them.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { LoadOptions, Model } from "../app/model/mod.ts";
import { planModelDevices } from "../app/model/mod.ts";
import { describeDevicePlan, type DevicePlan } from "../app/experts/mod.ts";
import { convertToGguf } from "../app/gguf/arch.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { formatBytes } from "../core/format.ts";
import { type GpuDevice, requestDevice } from "../runtime/device.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { assertBitsEqual, collectIds, gpu, MOE_PROMPT, openTiny } from "./_util.ts";
import { twoDeviceMinimum } from "./fixtures/device_budgets.ts";
import { writeQ6kMix } from "./fixtures/gguf_mixed.ts";

const extra: Promise<GpuDevice>[] = [];
/** Devices 1, 2, … from further adapter requests (lavapipe hands out several). */
async function devicesOf(n: number): Promise<GpuDevice[]> {
  const list = [await gpu()];
  for (let i = 1; i < n; i++) list.push(await (extra[i - 1] ??= requestDevice()));
  return list;
}

const tmp = await Deno.makeTempDir({ prefix: "kiln_epq_" });

async function tinyMixtral(name: string, config: Record<string, unknown>): Promise<string> {
  const dir = join(tmp, name);
  await writeTinyMixtral(dir, { config, seed: 3 });
  return dir;
}

interface Reference {
  prefill: Float32Array;
  ids: number[];
  steps: Float32Array[];
}

/**
 * Prefill logits, three decode steps' logits after it and greedy ids. Prompts
 * run whole, as in expert parallelism; one prompt length keeps the pipelines
 * compiled (the slow part on lavapipe) to a few.
 */
async function reference(m: Model): Promise<Reference> {
  const T = MOE_PROMPT.length;
  const prefill = (await m.forward(MOE_PROMPT)).slice();
  const steps: Float32Array[] = [];
  for (let t = T; t < T + 3; t++) steps.push((await m.step(MOE_PROMPT[t - T], t)).slice());
  const ids = await collectIds(m, 8);
  return { prefill, ids, steps };
}

function assertSame(got: Reference, want: Reference, what: string): void {
  assertBitsEqual(got.prefill, want.prefill, `${what}: prefill logits`);
  assert.deepEqual(got.ids, want.ids, `${what}: greedy ids`);
  got.steps.forEach((s, i) => assertBitsEqual(s, want.steps[i], `${what}: decode logits ${i}`));
}

/** Max |a − b| within 1e-5 of the largest |b| (float reassociation, not a wrong expert). */
function assertNear(a: Float32Array, b: Float32Array, what: string): void {
  let worst = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  assert.ok(worst <= 1e-5 * scale, `${what}: max difference ${worst} at logit scale ${scale}`);
}

/** Loads `path` with `options`, compares it with `want`, and hands back its plan. */
async function check(
  path: string,
  options: LoadOptions,
  want: Reference,
  what: string,
): Promise<{ plan: DevicePlan; report: string }> {
  const m = await openTiny(path, options);
  try {
    assert.ok(m.parallel, `${what}: expert parallel`);
    assertSame(await reference(m), want, what);
    return { plan: m.parallel.plan, report: m.parallel.report() };
  } finally {
    m.dispose();
  }
}

/**
 * Per-device budgets from the two-device minimum (remote experts forced) to
 * what holds every expert at home (`all`; else the minimum alone): each plan
 * fits in block bytes, and each run matches `want`.
 */
async function checkBudgets(
  path: string,
  base: LoadOptions,
  p0: DevicePlan,
  want: Reference,
  all = true,
): Promise<void> {
  const { fixedBytes: F, expertBytes: eb, layers: L, experts: E } = p0;
  const min = twoDeviceMinimum(p0);
  let sawRemote = false;
  for (const budget of all ? [min, min + L * eb, F + L * E * eb] : [min]) {
    const { plan } = await check(path, { ...base, memoryBudget: budget }, want, `budget ${budget}`);
    assert.equal(plan.expertBytes, eb);
    assert.equal(plan.fixedBytes, F);
    assert.equal(plan.counts[0] + plan.counts[1], E);
    assert.ok(F + plan.slots[0] * eb <= budget, "home fits its budget in block bytes");
    assert.ok(plan.remoteFixedBytes + plan.slots[1] * eb <= budget, "device 1 fits");
    // A budget of exactly the home's fixed bytes plus every expert's blocks keeps all home.
    if (budget === F + L * E * eb) assert.deepEqual(plan.counts, [E, 0]);
    else if (plan.counts[1] > 0) sawRemote = true;
  }
  assert.ok(sawRemote, "the minimum budget puts experts on device 1");
}

Deno.test("expert parallel, Q8_0 experts: 2 and 3 devices and budgets match one device bit for bit", async () => {
  const dir = await tinyMixtral("q8", {
    num_local_experts: 8,
    num_experts_per_tok: 2,
    num_hidden_layers: 3,
  });
  const devices = await devicesOf(3);
  const one = await openTiny(dir, { device: devices[0], prefillChunk: false, quantize: "q8_0" });
  const want = await reference(one);
  one.dispose();
  const { plan, report } = await check(
    dir,
    { devices: devices.slice(0, 2), quantize: "q8_0" },
    want,
    "2 devices",
  );
  // One expert: w1, w3 [64, 32] of one 32-weight block a row and w2 [32, 64] of two,
  // each block 34 bytes (an f16 scale and 32 int8).
  const eb = 64 * 1 * 34 * 2 + 32 * 2 * 34;
  assert.equal(eb, 6528);
  assert.equal(plan.expertBytes, eb);
  assert.deepEqual(plan.formats, { w13: "q8_0", w2: "q8_0" });
  assert.deepEqual(plan.counts, [4, 4]);
  assert.match(report, /in q8_0\/q8_0 blocks, 6528 bytes an expert/);
  assert.match(report, new RegExp(`device 1: 12 experts, ${formatBytes(12 * eb)},`));
  // Non-expert weights count in blocks too: less than the dense model's.
  const dense = await planModelDevices(dir, { devices: 2, device: devices[0], maxSeq: 64 });
  assert.equal(dense.expertBytes, 3 * 64 * 32 * 4);
  assert.ok(plan.fixedBytes < dense.fixedBytes, `${plan.fixedBytes} < ${dense.fixedBytes}`);
  // What `kiln inspect --devices 2 --quantize q8_0` prints, from config.json alone.
  const planned = await planModelDevices(dir, {
    devices: 2,
    device: devices[0],
    maxSeq: 64,
    quantize: "q8_0",
  });
  assert.equal(planned.expertBytes, eb);
  assert.equal(planned.fixedBytes, plan.fixedBytes);
  const text = describeDevicePlan(planned);
  assert.match(text, /experts in q8_0 blocks: .* \(6528 bytes\) each/);
  assert.match(
    text,
    new RegExp(`device 1: 4 experts per layer, 12 in all, ${formatBytes(12 * eb)} of experts`),
  );
  const three = await check(dir, { devices, quantize: "q8_0" }, want, "3 devices");
  assert.deepEqual(three.plan.counts, [3, 3, 2]);
  await checkBudgets(dir, { devices: devices.slice(0, 2), quantize: "q8_0" }, plan, want);
});

Deno.test("expert parallel, Q8_0 experts with top-4 routing: one device within float reassociation", async () => {
  const dir = await tinyMixtral("q8k4", {
    num_local_experts: 8,
    num_experts_per_tok: 4,
    num_hidden_layers: 2,
  });
  const devices = await devicesOf(2);
  const one = await openTiny(dir, { device: devices[0], prefillChunk: false, quantize: "q8_0" });
  const want = await reference(one);
  one.dispose();
  const m = await openTiny(dir, { devices, quantize: "q8_0" });
  try {
    const got = await reference(m);
    // A token's experts on both devices are summed in another order: a few ulps.
    assertNear(got.prefill, want.prefill, "prefill");
    got.steps.forEach((s, i) => assertNear(s, want.steps[i], `decode ${i}`));
    assert.deepEqual(got.ids, want.ids);
    assert.ok(m.parallel!.stats.remoteRuns > 0, "device 1's experts ran");
  } finally {
    m.dispose();
  }
});

Deno.test("expert parallel, Q4_K experts: a budget forcing remote experts matches one device", async () => {
  // Widths of whole 256-weight super-blocks, so Q4_K applies without a fallback.
  const dir = await tinyMixtral("q4k", {
    num_local_experts: 4,
    num_experts_per_tok: 2,
    num_hidden_layers: 2,
    hidden_size: 256,
    intermediate_size: 256,
    vocab_size: 300,
  });
  const devices = await devicesOf(2);
  const one = await openTiny(dir, { device: devices[0], prefillChunk: false, quantize: "q4_k" });
  const want = await reference(one);
  one.dispose();
  // The plan from config.json alone is the one loadModel makes (checkBudgets checks).
  const plan = await planModelDevices(dir, { devices, maxSeq: 64, quantize: "q4_k" });
  // Three [256, 256] weights, one 144-byte super-block (256 weights) a row.
  assert.equal(plan.expertBytes, 3 * 256 * 144);
  assert.deepEqual(plan.formats, { w13: "q4_k", w2: "q4_k" });
  // The minimum budget (device 1 holds most experts) alone: the balanced split and
  // the other budgets are the Q8_0 test's, and each slot count compiles its kernels.
  await checkBudgets(dir, { devices, quantize: "q4_k" }, plan, want, false);
});

Deno.test("expert parallel, a Q4_K_M-style GGUF file: experts unified to one format per weight", async () => {
  const config = {
    num_local_experts: 4,
    num_experts_per_tok: 2,
    num_hidden_layers: 3,
    hidden_size: 256,
    intermediate_size: 256,
    vocab_size: 300,
  };
  const dir = await tinyMixtral("mixed", config);
  const base = join(tmp, "mixed.q4_k.gguf");
  {
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    using ckpt = await Checkpoint.open(dir);
    const src = { config: cfg, tensors: ckpt.tensors, readF32: (n: string) => ckpt.readF32(n) };
    await convertToGguf(src, base, { type: "q4_k" });
  }
  // Layers 1 and 2 keep ffn_down in Q6_K (as llama.cpp's Q4_K_M does for some): the
  // pools' w2 format is Q6_K, and layer 0's is requantized to it as it loads.
  const file = join(tmp, "mixed.q4_k_m.gguf");
  await writeQ6kMix(base, file, (name) => /^blk\.[12]\.ffn_down_exps\.weight$/.test(name));
  const devices = await devicesOf(2);
  // One device with a budget that holds every expert: the same unified formats.
  const one = await openTiny(file, {
    device: devices[0],
    prefillChunk: false,
    memoryBudget: "64GiB",
  });
  assert.ok(one.expertPlan?.allResident);
  const want = await reference(one);
  one.dispose();
  const { plan } = await check(file, { devices }, want, "2 devices");
  // w1, w3: 256 rows of one Q4_K super-block (144 bytes); w2: of one Q6_K one (210).
  assert.equal(plan.expertBytes, 2 * 256 * 144 + 256 * 210);
  assert.deepEqual(plan.formats, { w13: "q4_k", w2: "q6_k" });
  const planned = await planModelDevices(file, { devices: 2, device: devices[0], maxSeq: 64 });
  assert.equal(planned.expertBytes, plan.expertBytes);
  assert.match(describeDevicePlan(planned), /experts in q4_k \(w1, w3\) \/ q6_k \(w2\) blocks/);
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});
