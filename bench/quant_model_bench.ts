/**
 * Decode speed of a ~100M-parameter Mixtral-style model with quantized weights
 * (issue 15's targets), every variant loaded at once and measured side by side:
 *
 * - f32 and f16 weights (f16 where the adapter has `shader-f16`),
 * - Q8_0 and Q4_K weights quantized on load (the same blocks a GGUF file holds),
 * - Q4_K with the expert scheduler holding half the expert bytes (`memoryBudget`
 *   = fixed bytes + 50% of the experts; `stream` and `lru` policies).
 *
 * Decode: a 64-token prompt, then N steps queued on the device with the sampled
 * ids read back every 16 (the loop of `generate`); models take turns, median of
 * the rounds. Prints a markdown table for BENCHMARKS.md.
 *
 * Usage: `deno run -A bench/quant_model_bench.ts [--tokens 24] [--rounds 5]`
 *
 * @module
 */

import { loadModel, type Model } from "../app/model/mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { requestDevice } from "../runtime/device.ts";
import { interleavedMedians } from "./_timing.ts";

const arg = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
};
const TOKENS = arg("--tokens", 24), ROUNDS = arg("--rounds", 5);
const CONFIG = {
  architectures: ["MixtralForCausalLM"],
  vocab_size: 32000,
  hidden_size: 512,
  intermediate_size: 1536,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 1e6,
  max_position_embeddings: 1024,
  tie_word_embeddings: false,
};

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
    ["q8_0", () => loadModel(dir, { ...base, quantize: "q8_0" })],
    ["q4_k", () => loadModel(dir, { ...base, quantize: "q4_k" })],
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
  const decode = async (m: Model) => {
    await m.forward(prompt);
    const d = m.decode;
    for (let i = 0; i < TOKENS; i++) {
      await d.submit({ pos: [prompt.length + i], seed: [0], step: [i + 1] });
      if ((i + 1) % 16 === 0 || i === TOKENS - 1) await d.readState("generated");
    }
  };
  // generateIds keeps the scheduler's bookkeeping (windows, uploads) in the loop.
  const generate = async (m: Model) => {
    for await (
      const _ of m.generateIds(prompt, { maxTokens: TOKENS + 1, readEvery: 16 })
    ) { /* drain */ }
  };
  const runs = models.map(([name, m]) => () => (name.includes("50%") ? generate(m) : decode(m)));
  const ms = await interleavedMedians(runs, ROUNDS);
  // The prefill inside each run is the same work for every variant of one kind; report
  // decode tok/s from generate's own clock for every model too.
  const rates: number[] = [];
  for (const [, m] of models) {
    await generate(m);
    const s = m.lastStats!;
    rates.push(TOKENS / (s.decodeMs / 1000));
  }
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
    `| weights | prompt+decode ms (median) | decode tok/s | vs ${
      models[ref][0]
    } | vs q4_k resident |`,
  );
  console.log("|---|---|---|---|---|");
  models.forEach(([name], i) => {
    console.log(
      `| ${name} | ${ms[i].toFixed(0)} | ${rates[i].toFixed(1)} | ${
        (rates[i] / rates[ref]).toFixed(2)
      }× | ${(rates[i] / rates[q4]).toFixed(2)}× |`,
    );
  });
  for (const [, m] of models) m.dispose();
} finally {
  await Deno.remove(dir, { recursive: true });
}
