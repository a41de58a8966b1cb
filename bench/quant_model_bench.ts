/**
 * Decode speed of a ~100M-parameter Mixtral-style model with quantized weights
 * (issue 15's targets), every variant loaded at once and measured side by side:
 *
 * - f32 and f16 weights (f16 where the adapter has `shader-f16`),
 * - Q8_0 and Q4_K weights quantized on load (the same blocks a GGUF file holds),
 * - Q4_K with the expert scheduler holding half the expert bytes (`memoryBudget`
 *   = fixed bytes + 50% of the experts; `stream` and `lru` policies).
 *
 * Decode: `generateIds` on a 64-token prompt, N + 1 tokens, ids read back every
 * 16; tok/s from its `lastStats.decodeMs` (prefill excluded). The models take
 * turns, round after round; the median of each model's rounds. The ratios are
 * paired: each round's rate over the reference's rate in the same round, then
 * the median of those (the host's speed drifts by tens of percent between
 * rounds, far less within one). Prints a markdown table for BENCHMARKS.md.
 *
 * Usage: `deno run -A bench/quant_model_bench.ts [--tokens 24] [--rounds 5] [--formats q8_0,q4_k]`
 * (`--formats`: the formats quantized on load; Q4_K, which the scheduler rows
 * use, is always among them).
 *
 * @module
 */

import { loadModel, type Model } from "../app/model/mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { requestDevice } from "../runtime/device.ts";
import { MIXTRAL_100M } from "./mixtral_100m.ts";
import { isQuantizeChoice, type QuantizeChoice } from "../core/quant/formats.ts";

const arg = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
};
const TOKENS = arg("--tokens", 24), ROUNDS = arg("--rounds", 5);
const fi = Deno.args.indexOf("--formats");
const FORMATS: QuantizeChoice[] = [
  ...new Set([...(fi >= 0 ? Deno.args[fi + 1].split(",") : ["q8_0"]), "q4_k"]),
].map((f) => {
  if (!isQuantizeChoice(f)) throw new RangeError(`--formats: unknown format ${f}`);
  return f;
});
const CONFIG = MIXTRAL_100M;

const dir = await Deno.makeTempDir({ prefix: "kiln_qbench_" });
try {
  await writeRandomCheckpoint(dir, CONFIG, { seed: 1 });
  const device = await requestDevice();
  const base = { device, quiet: true, maxSeq: 256 } as const;
  const variants: [string, () => Promise<Model>][] = [
    ["f32", () => loadModel(dir, base)],
    ...(device.caps.f16
      ? [["f16", () => loadModel(dir, { ...base, dtype: "f16" })] as [string, () => Promise<Model>]]
      : []),
    ...FORMATS.map((q): [string, () => Promise<Model>] => [
      q,
      () => loadModel(dir, { ...base, quantize: q }),
    ]),
  ];
  const models: [string, Model][] = [];
  for (const [name, open] of variants) models.push([name, await open()]);
  // Half the Q4_K expert bytes on the GPU: the plan's fixed bytes plus 50% of the experts.
  const probe = await loadModel(dir, { ...base, quantize: "q4_k", memoryBudget: "64GiB" });
  const p = probe.expertPlan!;
  probe.dispose();
  const half = p.fixedBytes + Math.ceil(p.layers * p.experts / 2) * p.expertBytes;
  for (const policy of ["stream", "lru"] as const) {
    models.push([
      `q4_k, 50% experts (${policy})`,
      await loadModel(dir, { ...base, quantize: "q4_k", memoryBudget: half, expertPolicy: policy }),
    ]);
  }
  const prompt = Array.from({ length: 64 }, (_, i) => (i * 7919 + 1) % CONFIG.vocab_size);
  // Decode tok/s from generate's own clock (prefill excluded), the models taking turns
  // round after round; the median of each model's rounds.
  const rate = async (m: Model) => {
    for await (const _ of m.generateIds(prompt, { maxTokens: TOKENS + 1, readEvery: 16 })) {
      // drain
    }
    return TOKENS / (m.lastStats!.decodeMs / 1000);
  };
  for (const [, m] of models) await rate(m); // compile and warm every model first
  const all: number[][] = models.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, [, m]] of models.entries()) all[i].push(await rate(m));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const rates = all.map(median);
  // Paired ratio: rounds are side by side, so divide within a round, then take the median.
  const paired = (i: number, j: number) => median(all[i].map((x, r) => x / all[j][r]));
  const f16 = models.findIndex(([n]) => n === "f16");
  const ref = f16 >= 0 ? f16 : 0;
  const q4 = models.findIndex(([n]) => n === "q4_k");
  console.log(
    `adapter: ${device.adapterName}; ${TOKENS} decode tokens after a 64-token prompt, ${ROUNDS} rounds`,
  );
  console.log(
    `expert bytes: ${(p.expertBytes / 1024).toFixed(1)} KiB an expert at q4_k; 50% budget = ${
      (half / 2 ** 20).toFixed(1)
    } MiB\n`,
  );
  console.log(
    `| weights | decode tok/s (median) | vs ${
      models[ref][0]
    } (paired) | vs q4_k resident (paired) |`,
  );
  console.log("|---|---|---|---|");
  models.forEach(([name], i) => {
    const vs = (j: number) => `${paired(i, j).toFixed(2)}×`;
    console.log(`| ${name} | ${rates[i].toFixed(1)} | ${vs(ref)} | ${vs(q4)} |`);
  });
  for (const [, m] of models) m.dispose();
} finally {
  await Deno.remove(dir, { recursive: true });
}
