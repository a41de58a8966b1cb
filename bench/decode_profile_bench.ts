/**
 * Where a decode step's time goes: the ~100M-parameter Mixtral-style model of
 * `bench/quant_model_bench.ts` (random weights) loaded at Q4_K and at f16,
 * each decode step profiled with GPU timestamps (every kernel in its own
 * timed pass; the formats take turns step by step), summed by kernel kind and
 * averaged over steps. Digits in labels
 * are folded to `#` so each layer's kernels add up under one name.
 *
 * Usage: `deno run -A bench/decode_profile_bench.ts [--steps 5] [--formats q4_k,f16]`
 *
 * @module
 */

import { loadModel } from "../app/model/mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { requestDevice } from "../runtime/device.ts";
import { STATES } from "../models/states.ts";
import type { QuantizeFormat } from "../core/quant/formats.ts";
import { MIXTRAL_100M } from "./mixtral_100m.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const STEPS = Number(arg("--steps", "5"));
const FORMATS = arg("--formats", "q4_k,f16").split(",");
const CONFIG = MIXTRAL_100M;

const device = await requestDevice();
if (!device.timestamps) {
  throw new Error("this adapter has no timestamp queries: nothing to profile");
}
const dir = await Deno.makeTempDir({ prefix: "kiln_decode_profile_" });
try {
  await writeRandomCheckpoint(dir, CONFIG, { seed: 1 });
  console.log(`# decode step by kernel kind on ${device.adapterName}, mean of ${STEPS} steps`);
  const models = [];
  for (const format of FORMATS) {
    const weights = format === "f32" || format === "f16"
      ? { dtype: format as "f32" | "f16" }
      : { quantize: format as QuantizeFormat };
    const model = await loadModel(dir, { device, quiet: true, maxSeq: 256, ...weights });
    // Warm up: compiles the pipelines and fills a few cache rows.
    for await (const _ of model.generateIds([1, 2, 3, 4], { maxTokens: 2 })) { /* ids */ }
    models.push({ format, model, byKind: new Map<string, number>() });
  }
  // The formats take turns step by step: the machine's speed drifts within a run.
  for (let s = 0; s < STEPS; s++) {
    for (const { model, byKind } of models) {
      model.decode.writeState(STATES.token, [5 + s]);
      const { kernels } = await model.decode.profile({ pos: [8 + s], seed: [0], step: [0] });
      for (const k of kernels) {
        const kind = k.label.replace(/\d+/g, "#");
        byKind.set(kind, (byKind.get(kind) ?? 0) + k.ns / 1e6 / STEPS);
      }
    }
  }
  for (const { format, model, byKind } of models) {
    const total = [...byKind.values()].reduce((a, b) => a + b, 0);
    console.log(`\n| ${format}: kernel kind | ms per step | share |`);
    console.log("| --- | --- | --- |");
    for (const [kind, ms] of [...byKind].sort((a, b) => b[1] - a[1])) {
      console.log(`| ${kind} | ${ms.toFixed(2)} | ${(100 * ms / total).toFixed(0)}% |`);
    }
    const n = model.decode.lastPlan!.kernels.length;
    console.log(`| **all ${n} kernels** | **${total.toFixed(2)}** | |`);
    model.dispose();
  }
} finally {
  await Deno.remove(dir, { recursive: true });
  device.destroy();
}
