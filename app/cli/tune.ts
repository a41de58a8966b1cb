/**
 * `kiln tune FILE`: tunes the matmul tiles of a graph module's plan at its dims
 * on this machine's adapter (`tuneMatmul`) and records the choices in the
 * tuning cache, where `kiln inspect FILE --cache PATH` (and `applyTuning`) use them.
 *
 * @module
 */

import { requestDevice } from "../../runtime/device.ts";
import { matmulProblems, problemKey, tuneMatmul } from "../../runtime/tuning.ts";
import {
  cachedChoices,
  defaultCachePath,
  deviceKey,
  readTuningCache,
  recordChoices,
  writeTuningCache,
} from "../tuning/cache.ts";
import { intOption, type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { loadGraphModule } from "./graph_module.ts";
import { parseDims } from "./inspect.ts";
import { checkGraphModule } from "./paths.ts";
import { usage } from "./usage.ts";

const SPEC: OptionSpec = {
  dims: { type: "string" },
  cache: { type: "string" },
  "budget-ms": { type: "string" },
  "max-candidates": { type: "string" },
  "expected-runs": { type: "string" },
  retune: { type: "boolean" },
};

/**
 * Runs `kiln tune` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { tune } from "./tune.ts";
 * await tune(["examples/fused_mlp.ts", "--dims", "T=128", "--cache", "/tmp/tuning.json"]);
 * ```
 */
export async function tune(args: string[]): Promise<void> {
  const { values, positionals, help } = parseCommand("tune", args, SPEC, true);
  if (help) return console.log(usage("tune"));
  const file = positionals[0];
  if (!file || positionals.length > 1) {
    throw new UsageError("tune: give one graph module, e.g. examples/fused_mlp.ts");
  }
  const path = (values.cache as string | undefined) ?? defaultCachePath();
  if (path === undefined) {
    throw new UsageError("tune: HOME is not readable; give --cache PATH (or --allow-env=HOME)");
  }
  const budgetMs = intOption(values["budget-ms"], "budget-ms", 60_000, 0);
  const maxCandidates = intOption(values["max-candidates"], "max-candidates", 4, 1, 16);
  const expectedRuns = intOption(values["expected-runs"], "expected-runs", 100, 1);
  await checkGraphModule(file);
  const { graph, dims } = await loadGraphModule(file);
  Object.assign(dims, parseDims(values.dims as string | undefined));
  const cache = await readTuningCache(path);
  const device = await requestDevice();
  try {
    const key = deviceKey(device);
    const known = cachedChoices(cache, key);
    const problems = matmulProblems(graph, dims)
      .filter((p) => values.retune || !known.has(problemKey(p)));
    console.log(`device: ${key}`);
    console.log(
      `${problems.length} matmul problem(s) to tune (budget ${budgetMs} ms, ` +
        `${maxCandidates} candidates, amortised over ${expectedRuns} runs)`,
    );
    const choices = await tuneMatmul(device, problems, { budgetMs, maxCandidates, expectedRuns });
    for (const [k, c] of choices) {
      console.log(`${k}: ${c.tile ?? "default"} — ${c.reason}`);
      for (const t of c.timings) {
        console.log(
          `    ${t.tile}: compile ${t.compileMs.toFixed(0)} ms, run ${t.runMs.toFixed(2)} ms`,
        );
      }
    }
    const skipped = problems.length - choices.size;
    if (skipped > 0) console.log(`${skipped} problem(s) left untuned: the budget ran out`);
    recordChoices(cache, key, choices);
    await writeTuningCache(path, cache);
    console.log(`wrote ${path}`);
  } finally {
    device.destroy();
  }
}
