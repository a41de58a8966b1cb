/**
 * Mutation fuzzing of every loader: safetensors files, sharded checkpoints,
 * config.json and tokenizer.json. Each case starts from a valid input, mutates
 * it (see `fuzz_loaders/`), loads it and uses what loaded; the outcome must be a
 * success or a Kiln error (TypeError, RangeError, SyntaxError, `Deno.errors.*`)
 * whose message starts with the file's path and is Kiln's own — never another
 * exception, an engine message, a hang (each case is time-bound) or a runaway
 * allocation. Safetensors verdicts and bytes are also compared with an
 * independent reference reader (`fuzz_loaders/reference.ts`).
 *
 * Cases run in a worker per loader, so a case that hangs is ended by
 * terminating the worker; the run then goes on from the next case. Every case
 * is seeded by (seed, loader, index): `--case=N` replays one.
 *
 * Usage:
 *
 * ```sh
 * deno run -A tools/fuzz_loaders.ts [--loader=safetensors,sharded,config,tokenizer]
 *   [--cases=10000] [--minutes=M] [--seed=1] [--timeout-ms=2000] [--case=N] [--full] [--verbose]
 * ```
 *
 * Exit status 1 when any case failed; each failure is printed with its loader,
 * index and mutation, and the counts per loader and outcome come last.
 *
 * @module
 */

import { join } from "node:path";
import type { CaseResult } from "./fuzz_loaders/judge.ts";
import type { LoaderName, WorkerRequest } from "./fuzz_loaders/worker.ts";
import { runCaseWorker } from "./fuzz_loaders/run_worker.ts";

export type { CaseResult, LoaderName };

/** Every loader the fuzzer drives, in the order it runs them. */
export const LOADERS: readonly LoaderName[] = ["safetensors", "sharded", "config", "tokenizer"];

/** Options of {@linkcode runLoaderFuzz}. */
export interface LoaderFuzzOptions {
  /** Loaders to fuzz (default: all). */
  loaders?: readonly LoaderName[];
  /** Cases per loader (default 10,000, or no limit when `minutes` is given). */
  cases?: number;
  /** Stop starting new cases after this many minutes, shared evenly by the loaders. */
  minutes?: number;
  /** First case index (default 0); with `cases: 1`, replays one case. */
  first?: number;
  /** Seed of the run (default 1). */
  seed?: number;
  /** Time limit of one case in milliseconds (default 2000; whole real tokenizers get 10×). */
  timeoutMs?: number;
  /** Also mutate the whole real tokenizer files, not only shrunk copies (slow). */
  full?: boolean;
  /** Told about each case as it ends. */
  onCase?: (loader: LoaderName, index: number, result: CaseResult) => void;
}

/** Counts of one loader's run. */
export interface LoaderCounts {
  /** Cases run. */
  cases: number;
  /** Inputs that loaded and worked. */
  ok: number;
  /** Inputs refused with a proper Kiln error, by error class. */
  errors: Record<string, number>;
  /** Cases that found a bug (crash, hang, wrong error, wrong success). */
  failures: number;
}

/** A case that found a bug. */
export interface LoaderFailure {
  /** Which loader. */
  loader: LoaderName;
  /** The case index (replay with `--loader=<loader> --case=<index>`). */
  index: number;
  /** What went wrong: `hang`, `crash`, or the judge's reason. */
  failure: string;
  /** The mutation. */
  what: string;
  /** The error's class and message, when there was one. */
  error?: string;
}

/** What {@linkcode runLoaderFuzz} found. */
export interface LoaderFuzzReport {
  /** Counts per loader. */
  counts: Record<string, LoaderCounts>;
  /** Every failing case. */
  failures: LoaderFailure[];
  /** Wall time of the run. */
  seconds: number;
}

const WORKER = new URL("./fuzz_loaders/worker.ts", import.meta.url);

/**
 * Runs the loader fuzzer and reports counts and failures (it throws only when
 * the fuzzer itself cannot run).
 *
 * @example
 * ```ts ignore
 * import { runLoaderFuzz } from "./fuzz_loaders.ts";
 * const report = await runLoaderFuzz({ cases: 500, seed: 7 });
 * report.failures.length; // 0
 * ```
 */
export async function runLoaderFuzz(options: LoaderFuzzOptions = {}): Promise<LoaderFuzzReport> {
  const t0 = performance.now();
  const loaders = options.loaders ?? LOADERS;
  const first = options.first ?? 0;
  const end = first +
    (options.cases ?? (options.minutes === undefined ? 10_000 : Number.MAX_SAFE_INTEGER));
  const perLoaderMs = options.minutes === undefined
    ? Infinity
    : options.minutes * 60_000 / loaders.length;
  const report: LoaderFuzzReport = { counts: {}, failures: [], seconds: 0 };
  const root = await Deno.makeTempDir({ prefix: "kiln_fuzz_loaders_" });
  try {
    for (const loader of loaders) {
      const counts: LoaderCounts = { cases: 0, ok: 0, errors: {}, failures: 0 };
      report.counts[loader] = counts;
      const record = (index: number, result: CaseResult) => {
        counts.cases++;
        if (result.outcome === "ok") counts.ok++;
        else if (result.outcome === "error") {
          const cls = result.errorClass ?? "?";
          counts.errors[cls] = (counts.errors[cls] ?? 0) + 1;
        } else {
          counts.failures++;
          report.failures.push({
            loader,
            index,
            failure: result.failure ?? "?",
            what: result.what,
            error: result.errorClass ? `${result.errorClass}: ${result.message}` : undefined,
          });
        }
        options.onCase?.(loader, index, result);
      };
      let next = first;
      const deadline = performance.now() + perLoaderMs;
      for (let run = 0; next < end && performance.now() < deadline; run++) {
        const dir = join(root, `${loader}-${run}`);
        await Deno.mkdir(dir);
        next = await runCaseWorker(
          WORKER,
          {
            loader,
            seed: options.seed ?? 1,
            start: next,
            end,
            dir,
            full: options.full ?? false,
          } satisfies WorkerRequest,
          options.timeoutMs ?? 2000,
          deadline,
          record,
          (i) => `case ${i} (the mutation is lost with the worker; replay it with --case)`,
        );
      }
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/** One line of counts. */
export function formatCounts(loader: string, c: LoaderCounts): string {
  const errors = Object.entries(c.errors).sort().map(([k, v]) => `${k} ${v}`).join(", ");
  return `${loader}: ${c.cases} cases — ${c.ok} loaded, ${c.cases - c.ok - c.failures} refused (${
    errors || "none"
  }), ${c.failures} failures`;
}

if (import.meta.main) {
  const args = new Map(
    Deno.args.map((a) => {
      const [k, v] = a.replace(/^--/, "").split("=");
      return [k, v ?? "true"] as const;
    }),
  );
  const loaders = args.get("loader")?.split(",") as LoaderName[] | undefined;
  for (const l of loaders ?? []) {
    if (!LOADERS.includes(l)) {
      console.error(`fuzz_loaders: unknown loader "${l}" (known: ${LOADERS.join(", ")})`);
      Deno.exit(2);
    }
  }
  const one = args.get("case");
  const verbose = args.has("verbose");
  const minutes = args.has("minutes") ? Number(args.get("minutes")) : undefined;
  const report = await runLoaderFuzz({
    loaders,
    minutes,
    cases: one !== undefined ? 1 : args.has("cases") ? Number(args.get("cases")) : undefined,
    first: one === undefined ? 0 : Number(one),
    seed: Number(args.get("seed") ?? 1),
    timeoutMs: Number(args.get("timeout-ms") ?? 2000),
    full: args.has("full"),
    onCase: (loader, index, r) => {
      if (verbose || one !== undefined) {
        console.log(`${loader} #${index} ${r.outcome}: ${r.what}`);
        if (r.errorClass) console.log(`  ${r.errorClass}: ${r.message}`);
      }
      if (r.outcome === "failure") {
        console.log(`FAIL ${loader} #${index}: ${r.failure}\n  ${r.what}`);
        if (r.errorClass) console.log(`  ${r.errorClass}: ${r.message}`);
      }
    },
  });
  for (const [loader, c] of Object.entries(report.counts)) console.log(formatCounts(loader, c));
  console.log(`${report.failures.length} failures in ${report.seconds.toFixed(1)} s`);
  if (report.failures.length) Deno.exit(1);
}
