/**
 * A short, fixed-seed run of the loader fuzzer (tools/fuzz_loaders.ts) on each
 * loader: every mutated safetensors file, sharded folder, config.json and
 * tokenizer.json must load or fail with a Kiln error naming the file — no other
 * exception, engine message, hang or runaway allocation — and safetensors
 * verdicts and bytes must match the independent reference reader. The long run
 * is `deno task fuzz loaders` (or `deno run -A tools/fuzz_loaders.ts`).
 */

import assert from "node:assert/strict";
import { type LoaderName, runLoaderFuzz } from "../tools/fuzz_loaders.ts";

/** Cases per loader: about 20–30 s in all on a busy two-core machine. */
const CASES: Record<LoaderName, number> = {
  safetensors: 1500,
  sharded: 600,
  config: 1000,
  tokenizer: 800,
};

for (const [loader, cases] of Object.entries(CASES) as [LoaderName, number][]) {
  Deno.test(`loader fuzz (seed 2024): ${cases} mutated ${loader} inputs load or fail cleanly`, async () => {
    // A hang detector, not a timing check: other test files run at the same time.
    const report = await runLoaderFuzz({ loaders: [loader], cases, seed: 2024, timeoutMs: 30_000 });
    const lines = report.failures.slice(0, 10).map((f) =>
      `#${f.index}: ${f.failure}\n  ${f.what}${f.error ? `\n  ${f.error}` : ""}`
    );
    assert.equal(
      report.failures.length,
      0,
      `replay with: deno run -A tools/fuzz_loaders.ts --loader=${loader} --seed=2024 --case=N\n` +
        lines.join("\n"),
    );
    const c = report.counts[loader];
    assert.equal(c.cases, cases);
    // The mutations must reach both sides: some inputs load, most are refused.
    assert.ok(c.ok > cases / 20, `only ${c.ok} of ${cases} loaded`);
    assert.ok(c.cases - c.ok > cases / 2, `only ${c.cases - c.ok} of ${cases} refused`);
  });
}
