/**
 * The GGUF fuzzer's campaign, run in the parent: {@linkcode runGgufFuzz}
 * writes the seeds, runs cases in workers (`./worker.ts`), ends a case that
 * hangs by terminating its worker and goes on in a new one, and groups the
 * failures by kind, counting {@linkcode KNOWN_ISSUES} apart;
 * {@linkcode formatGgufReport} prints the result.
 *
 * @module
 */

import { join } from "node:path";
import type { LoaderCounts } from "../../fuzz_loaders.ts";
import type { GgufCaseResult } from "./oracle.ts";
import { writeGgufSeeds } from "./seeds.ts";
import { runCaseWorker } from "../../fuzz_loaders/run_worker.ts";
import type { GgufWorkerRequest } from "./worker.ts";

/** Options of {@linkcode runGgufFuzz}. */
export interface GgufFuzzOptions {
  /** Cases (default 10,000, or no limit when `minutes` is given). */
  cases?: number;
  /** Stop starting new cases after this many minutes. */
  minutes?: number;
  /** First case index (default 0); with `cases: 1`, replays one case. */
  first?: number;
  /** Seed of the run (default 1). */
  seed?: number;
  /** Time limit of one case in milliseconds (default 2000; cases that load the model get 5×). */
  timeoutMs?: number;
  /** Fraction of cases that also load and run the model (default 1/8; data mutations always do). */
  runFraction?: number;
  /** Report known issues apart from the failures (default true). */
  known?: boolean;
  /** Told about each case as it ends. */
  onCase?: (index: number, result: GgufCaseResult) => void;
}

/** A case that found a bug. */
export interface GgufFailure {
  /** The case index (replay with `--case=<index>` and the run's `--seed`). */
  index: number;
  /** What went wrong. */
  failure: string;
  /** The mutation (shrunk when the case had several). */
  what: string;
  /** The error's class and message, when there was one. */
  error?: string;
  /** The step where it happened. */
  step?: string;
  /** The mutations' families. */
  kinds?: string;
  /** The id of the known issue it is an instance of. */
  known?: string;
}

/**
 * Bugs the fuzzer found outside the GGUF reader (app/model, app/tokenizer),
 * reported apart from the failures — counted, with an example — until fixed:
 * delete an entry with its fix, and the cases count as failures again.
 */
export const KNOWN_ISSUES: readonly {
  id: string;
  about: string;
  match: (f: GgufFailure) => boolean;
}[] = [];

/** Failures of one kind: the same reason, error class and message (numbers and paths aside). */
export interface GgufFailureGroup {
  /** The normalized reason and message. */
  signature: string;
  /** How many cases. */
  count: number;
  /** The case with the shortest description. */
  example: GgufFailure;
}

/** What {@linkcode runGgufFuzz} found. */
export interface GgufFuzzReport {
  /** Cases, accepted, refused by error class, failures. */
  counts: LoaderCounts;
  /** Refusals by the step that refused. */
  steps: Record<string, number>;
  /** Every failing case. */
  failures: GgufFailure[];
  /** Failures grouped by kind. */
  groups: GgufFailureGroup[];
  /** Failures that are known issues (not counted as failures), by issue id. */
  known: GgufFailureGroup[];
  /** Wall time of the run (seeds included). */
  seconds: number;
}

/** The worker module (it starts serving cases when loaded as a Worker). */
const WORKER = new URL("./worker.ts", import.meta.url);

/** The signature of a failure, for grouping. */
function signature(f: GgufFailure): string {
  const msg = (f.error ?? "")
    .replace(/^[^:]*\.gguf(?: \([^)]*\))?: /, "")
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\d+/g, "N")
    .slice(0, 140);
  return `${f.failure.replace(/\d+/g, "N").slice(0, 80)} @${f.step ?? "?"} ${msg} [${
    f.kinds ?? "?"
  }]`;
}

/**
 * Runs the GGUF fuzzer: writes the seeds, runs cases in workers, and reports
 * counts, failures and their groups (it throws only when the fuzzer itself
 * cannot run).
 *
 * @example
 * ```ts ignore
 * import { runGgufFuzz } from "./campaign.ts";
 * const report = await runGgufFuzz({ cases: 300, seed: 7 });
 * report.failures.length; // 0
 * ```
 */
export async function runGgufFuzz(options: GgufFuzzOptions = {}): Promise<GgufFuzzReport> {
  const t0 = performance.now();
  const first = options.first ?? 0;
  const end = first +
    (options.cases ?? (options.minutes === undefined ? 10_000 : Number.MAX_SAFE_INTEGER));
  const deadline = options.minutes === undefined ? Infinity : t0 + options.minutes * 60_000;
  const counts: LoaderCounts = { cases: 0, ok: 0, errors: {}, failures: 0 };
  const steps: Record<string, number> = {};
  const failures: GgufFailure[] = [];
  const knownFailures: GgufFailure[] = [];
  const root = await Deno.makeTempDir({ prefix: "kiln_fuzz_gguf_" });
  try {
    const seedDir = join(root, "seeds");
    await Deno.mkdir(seedDir);
    const seeds = await writeGgufSeeds(seedDir);
    const record = (index: number, result: GgufCaseResult) => {
      counts.cases++;
      if (result.outcome === "ok") counts.ok++;
      else if (result.outcome === "error") {
        const cls = result.errorClass ?? "?";
        counts.errors[cls] = (counts.errors[cls] ?? 0) + 1;
        steps[result.step ?? "?"] = (steps[result.step ?? "?"] ?? 0) + 1;
      } else {
        const f: GgufFailure = {
          index,
          failure: result.failure ?? "?",
          what: result.what,
          error: result.errorClass ? `${result.errorClass}: ${result.message}` : undefined,
          step: result.step,
          kinds: result.kinds,
        };
        f.known = options.known === false ? undefined : KNOWN_ISSUES.find((k) => k.match(f))?.id;
        if (f.known) knownFailures.push(f);
        else {
          counts.failures++;
          failures.push(f);
        }
      }
      options.onCase?.(index, result);
    };
    let next = first;
    for (let run = 0; next < end && performance.now() < deadline; run++) {
      const dir = join(root, `run-${run}`);
      await Deno.mkdir(dir);
      next = await runCaseWorker(
        WORKER,
        {
          seeds,
          seed: options.seed ?? 1,
          start: next,
          end,
          dir,
          runFraction: options.runFraction ?? 1 / 8,
        } satisfies GgufWorkerRequest,
        options.timeoutMs ?? 2000,
        deadline,
        record,
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  return {
    counts,
    steps,
    failures,
    groups: group(failures, signature),
    known: group(knownFailures, (f) => f.known!),
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Failures grouped by `key`, biggest group first, each with its shortest case. */
function group(
  failures: readonly GgufFailure[],
  key: (f: GgufFailure) => string,
): GgufFailureGroup[] {
  const groups = new Map<string, GgufFailureGroup>();
  for (const f of failures) {
    const sig = key(f);
    const g = groups.get(sig);
    if (!g) groups.set(sig, { signature: sig, count: 1, example: f });
    else {
      g.count++;
      if (f.what.length < g.example.what.length) g.example = f;
    }
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

/** The report's lines: counts, refusals by step, and each group of failures. */
export function formatGgufReport(report: GgufFuzzReport, seed = 1): string[] {
  const c = report.counts;
  const errors = Object.entries(c.errors).sort().map(([k, v]) => `${k} ${v}`).join(", ");
  const steps = Object.entries(report.steps).map(([k, v]) => `${k} ${v}`).join(", ");
  const known = report.known.reduce((a, g) => a + g.count, 0);
  const lines = [
    `gguf: ${c.cases} cases — ${c.ok} loaded, ${c.cases - c.ok - c.failures - known} refused (${
      errors || "none"
    }), ${c.failures} failures${known ? `, ${known} known issues` : ""}`,
    `gguf: refused at step: ${steps || "none"}`,
  ];
  for (const g of report.known) {
    const about = KNOWN_ISSUES.find((k) => k.id === g.signature)?.about;
    lines.push(
      `KNOWN gguf ×${g.count} ${g.signature}: ${about}`,
      `  e.g. ${g.example.what}`,
      `  replay: deno run -A tools/fuzz/gguf_loaders.ts --case=${g.example.index} --seed=${seed}`,
    );
  }
  for (const g of report.groups) {
    const f = g.example;
    lines.push(
      `FAIL gguf ×${g.count}: ${f.failure}${f.step ? ` (at ${f.step})` : ""}`,
      `  ${f.what}`,
      ...(f.error ? [`  ${f.error}`] : []),
      `  replay: deno run -A tools/fuzz/gguf_loaders.ts --case=${f.index} --seed=${seed}`,
    );
  }
  return lines;
}
