/**
 * The loader fuzzer's worker: runs cases `start..end` of one loader and reports
 * each one's start (so the parent can time it out) and its result. A case that
 * hangs is ended by the parent terminating this worker.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import type { CaseWorkerMessage } from "./run_worker.ts";
import type { CaseResult } from "./judge.ts";
import { caseRng } from "./mutate.ts";
import { type SafetensorsContext, shardedCase, singleCase } from "./safetensors_cases.ts";
import { configSeeds, safetensorsSeeds, shardedSeeds, tokenizerSeeds } from "./seeds.ts";
import { configCase, type TextContext, tokenizerCase } from "./text_cases.ts";

/** The loaders the fuzzer knows. */
export type LoaderName = "safetensors" | "sharded" | "config" | "tokenizer";

/** What the parent asks a worker to run. */
export interface WorkerRequest {
  /** Which loader. */
  loader: LoaderName;
  /** The run's seed. */
  seed: number;
  /** First case index. */
  start: number;
  /** One past the last case index. */
  end: number;
  /** A scratch folder for this worker alone. */
  dir: string;
  /** Whether whole real tokenizer files are seeds too (slow; long runs only). */
  full: boolean;
}

/** What a worker reports. */
export type WorkerMessage = CaseWorkerMessage<CaseResult>;

/** External memory (array buffers) a case may leave behind before it counts as a runaway allocation. */
const MAX_EXTERNAL = 512 * 1024 * 1024;

type Prepared = { budget: number; run: () => Promise<CaseResult> };

const post = (m: WorkerMessage) => self.postMessage(m);
const note = (what: string) => post({ type: "what", what });

async function context(req: WorkerRequest): Promise<(r: () => number, i: number) => Prepared> {
  const { loader, dir } = req;
  if (loader === "safetensors" || loader === "sharded") {
    const ctx: SafetensorsContext = {
      dir,
      seeds: await safetensorsSeeds(),
      folders: shardedSeeds(),
      note,
    };
    return loader === "safetensors"
      ? (r) => ({ budget: 1, run: () => singleCase(r, ctx) })
      : (r, i) => ({ budget: 1, run: () => shardedCase(r, ctx, i) });
  }
  const ctx: TextContext = {
    dir,
    configs: loader === "config" ? await configSeeds() : [],
    tokenizers: loader === "tokenizer" ? await tokenizerSeeds(req.full) : [],
    note,
  };
  return loader === "config"
    ? (r, i) => ({ budget: 1, run: () => configCase(r, ctx, i) })
    : (r, i) => tokenizerCase(r, ctx, i);
}

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  const req = e.data;
  const prepare = await context(req);
  for (let i = req.start; i < req.end; i++) {
    const c = prepare(caseRng(req.seed, req.loader, i), i);
    post({ type: "start", index: i, budget: c.budget });
    let result = await c.run();
    const external = Deno.memoryUsage().external;
    if (external > MAX_EXTERNAL && result.outcome !== "failure") {
      result = {
        ...result,
        outcome: "failure",
        failure: `${(external / 2 ** 20).toFixed(0)} MiB of array buffers allocated`,
      };
    }
    post({ type: "done", index: i, result });
  }
  post({ type: "finished" });
};
