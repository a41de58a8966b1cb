/**
 * What a new prompt length costs: the demo's model (examples/demo.ts's config,
 * seeded random weights) generates after prompts of several lengths, once with
 * prompts run as chunks of fixed lengths (the default: the chunk lengths the
 * model has compiled, the last chunk padded — see `planPrompt`) and once with
 * each prompt whole (`prefillChunk: false`), each side on a device of its own.
 * For each call: the compile time before the clock (`compileMs`), the prefill
 * time and the chunks run (`n/len` a padded one). Measure cold with Mesa's
 * shader cache off:
 *
 *     MESA_SHADER_CACHE_DISABLE=true deno run -A bench/prompt_length_bench.ts
 *
 * @module
 */
import { loadModel, requestDevice } from "../mod.ts";
import { planPrompt } from "../runtime/prompt_plan.ts";
import { probeChunk } from "../runtime/prompt.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { DEMO_CONFIG } from "../examples/demo_config.ts";

const LENGTHS = [256, 100, 77, 150, 33, 200, 511];
const dir = await Deno.makeTempDir({ prefix: "kiln_prompt_bench_" });
await writeRandomCheckpoint(dir, DEMO_CONFIG, { seed: 0 });
const sides = [["chunks", undefined], ["whole", false]] as const;
const rows: string[][] = LENGTHS.map((n) => [String(n)]);
const plans: string[] = [];
let adapter = "";
for (const [name, prefillChunk] of sides) {
  const device = await requestDevice();
  adapter = device.adapterName;
  // The chunks' compiles are measured: short prompts never take the decode step instead.
  const model = await loadModel(dir, {
    device,
    quiet: true,
    maxSeq: 1024,
    prefillChunk,
    coldPromptTokens: 0,
  });
  const ids = Array.from({ length: 1024 }, (_, i) => (i * 7919 + 1) % DEMO_CONFIG.vocab_size);
  for (const [i, n] of LENGTHS.entries()) {
    // The runs generateIds plans for this prompt, asked the same way before it runs.
    const runs = planPrompt(n, {
      buckets: model.prefillBuckets,
      ready: (b) => model.prefill.compiled(probeChunk(b)),
      maxSeq: model.maxSeq,
      singles: true,
    });
    if (prefillChunk === undefined) {
      plans[i] = runs.map((r) => r.tokens === r.length ? r.length : `${r.tokens}/${r.length}`)
        .join(" + ");
    }
    for await (const _ of model.generateIds(ids.slice(0, n), { maxTokens: 1 })) { /* one token */ }
    const s = model.lastStats!;
    rows[i].push((s.compileMs / 1000).toFixed(2), s.prefillMs.toFixed(0));
  }
  console.error(`${name}: ${device.pipelines.size} pipelines compiled in all`);
  model.dispose();
  device.destroy();
}
await Deno.remove(dir, { recursive: true });
console.log(`adapter: ${adapter}`);
console.log(
  "| prompt | chunks run | chunks: compile s | chunks: prefill ms | whole: compile s | whole: prefill ms |",
);
console.log("|---|---|---|---|---|---|");
for (const [i, r] of rows.entries()) {
  console.log(`| ${[r[0], plans[i], ...r.slice(1)].join(" | ")} |`);
}
