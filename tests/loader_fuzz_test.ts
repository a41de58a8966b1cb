/**
 * A short, fixed-seed run of the loader fuzzer (tools/fuzz_loaders.ts) on each
 * loader: every mutated safetensors file, sharded folder, config.json and
 * tokenizer.json must load or fail with a Kiln error naming the file — no other
 * exception, engine message, hang or runaway allocation — and safetensors
 * verdicts and bytes must match the independent reference reader. Then the
 * same for mutated GGUF files (tools/fuzz/gguf_loaders.ts), from the header
 * through loading and running the model on the CPU. The long run is
 * `deno task fuzz loaders` (or `deno run -A tools/fuzz_loaders.ts`,
 * `deno run -A tools/fuzz/gguf_loaders.ts`).
 */

import assert from "node:assert/strict";
import { type LoaderName, runLoaderFuzz } from "../tools/fuzz_loaders.ts";
import { runGgufFuzz } from "../tools/fuzz/gguf/campaign.ts";

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

/** GGUF cases: about 10 s on a two-core machine, seeds (tiny models converted) included. */
const GGUF_CASES = 400;

Deno.test(`loader fuzz (seed 2024): ${GGUF_CASES} mutated GGUF files load, run or fail cleanly`, async () => {
  // Fewer model runs than the campaign's 1/8 (mutated weights always run): they are the slow part.
  const report = await runGgufFuzz({
    cases: GGUF_CASES,
    seed: 2024,
    timeoutMs: 30_000,
    runFraction: 1 / 16,
  });
  // Bugs outside the GGUF reader are listed in KNOWN_ISSUES and reported apart, not here.
  const lines = report.groups.slice(0, 10).map((g) =>
    `×${g.count} #${g.example.index}: ${g.example.failure}${
      g.example.step ? ` (at ${g.example.step})` : ""
    }\n  ${g.example.what}${g.example.error ? `\n  ${g.example.error}` : ""}`
  );
  assert.equal(
    report.failures.length,
    0,
    "replay with: deno run -A tools/fuzz/gguf_loaders.ts --seed=2024 --case=N\n" +
      lines.join("\n"),
  );
  const c = report.counts;
  assert.equal(c.cases, GGUF_CASES);
  const known = report.known.reduce((a, g) => a + g.count, 0);
  assert.ok(c.ok > GGUF_CASES / 20, `only ${c.ok} of ${GGUF_CASES} loaded`);
  assert.ok(c.cases - c.ok - known > GGUF_CASES / 2, `only ${c.cases - c.ok} refused`);
  // Every step of the way refuses something: the header, the model, the tokenizer.
  for (const step of ["open", "model", "tokenizer"]) {
    assert.ok(
      (report.steps[step] ?? 0) > 0,
      `nothing refused at ${step}: ${JSON.stringify(report.steps)}`,
    );
  }
});
