/**
 * The GGUF fuzzer's worker: the campaign (`./campaign.ts`) loads this module
 * as a Worker, and it plans each case (a seed and its mutations, from the
 * case's own generator), builds the file, runs it through the oracle
 * (`./oracle.ts`), shrinks a failing case of several mutations to one that
 * fails alone, and reports each case back. Running cases in a worker lets the
 * campaign end a hang by terminating it.
 *
 * @module
 */

import type { CaseWorkerMessage } from "../../fuzz_loaders/run_worker.ts";
import { join } from "node:path";
import { caseRng, chance, int, pick, type Rng } from "../../fuzz_loaders/mutate.ts";
import { cloneRaw, decodeRaw, findKv, stringOf } from "./codec.ts";
import { build, genOp } from "./mutations.ts";
import type { Op, SeedInfo } from "./op.ts";
import { type GgufCaseResult, pipeline } from "./oracle.ts";
import type { GgufSeed } from "./seeds.ts";

/** What the parent asks a worker to run. */
export interface GgufWorkerRequest {
  seeds: GgufSeed[];
  seed: number;
  start: number;
  end: number;
  dir: string;
  runFraction: number;
}

/** What a worker reports. */
export type GgufWorkerMessage = CaseWorkerMessage<GgufCaseResult>;

/** External memory a case may leave behind before it counts as a runaway allocation. */
const MAX_EXTERNAL = 512 * 1024 * 1024;

/** The generator of case `index` of a run. */
const rngOf = (seed: number, index: number) => caseRng(seed, "gguf", index);

/** Picks the seed and the mutations of one case. */
function plan(
  r: Rng,
  seeds: readonly SeedInfo[],
  runFraction: number,
): { s: SeedInfo; ops: Op[]; run: boolean } {
  const models = seeds.filter((s) => s.model);
  const s = models.length && chance(r, 0.8) ? pick(r, models) : pick(r, seeds);
  const g = cloneRaw(s.raw);
  const ops: Op[] = [];
  const n = chance(r, 0.7) ? 1 : 2 + int(r, 2);
  for (let k = 0; k < n; k++) {
    const op = genOp(r, g, s);
    ops.push(op);
    op.model?.(g);
  }
  return { s, ops, run: chance(r, runFraction) || ops.some((o) => o.run) };
}

async function runCase(
  s: SeedInfo,
  ops: readonly Op[],
  run: boolean,
  path: string,
  note?: (what: string) => void,
): Promise<GgufCaseResult> {
  const b = build(s.raw, ops);
  const what = `${s.name}: ${b.what.join("; ")}${run ? " (run)" : ""}`;
  note?.(what);
  await Deno.writeFile(path, b.bytes);
  const kinds = ops.map((o) => o.kind ?? "?").join("+");
  try {
    const result = await pipeline(path, s.model, run, what, b.exact);
    if (result.outcome === "ok" && b.refuse) {
      return { ...result, kinds, outcome: "failure", failure: ACCEPTED };
    }
    return { ...result, kinds };
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** The failure of a file accepted although a mutation made it invalid. */
const ACCEPTED = "accepted a file it must refuse";

/** The kind of a failure, for shrinking and grouping: the reason and the error class. */
function kindOf(r: GgufCaseResult): string {
  return `${(r.failure ?? "").replace(/\d+/g, "N").slice(0, 40)}|${r.errorClass ?? ""}`;
}

/** A failing case of several mutations, shrunk to one that fails the same way alone. */
async function shrink(
  s: SeedInfo,
  ops: readonly Op[],
  run: boolean,
  path: string,
  result: GgufCaseResult,
): Promise<GgufCaseResult> {
  if (ops.length < 2) return result;
  for (const op of ops) {
    const alone = await runCase(s, [op], run || op.run === true, path);
    if (alone.outcome === "failure" && kindOf(alone) === kindOf(result)) {
      return { ...alone, what: `${alone.what} [shrunk from: ${result.what}]` };
    }
  }
  // Each mutation that must be refused is refused alone: together they undid
  // each other (the data laid out again repairs an offset, a removed tensor
  // takes its bad offset along).
  if (result.failure === ACCEPTED) {
    return {
      ...result,
      outcome: "ok",
      failure: undefined,
      what: `${result.what} (accepted: the mutations undo each other's refusals)`,
    };
  }
  return result;
}

function workerMain(): void {
  const scope = globalThis as unknown as {
    onmessage: (e: MessageEvent<GgufWorkerRequest>) => void;
    postMessage: (m: GgufWorkerMessage) => void;
  };
  const post = (m: GgufWorkerMessage) => scope.postMessage(m);
  scope.onmessage = async (e) => {
    const req = e.data;
    const seeds: SeedInfo[] = [];
    for (const s of req.seeds) {
      const raw = decodeRaw(await Deno.readFile(s.path));
      seeds.push({
        name: s.name,
        model: s.model,
        raw,
        arch: stringOf(findKv(raw, "general.architecture")),
      });
    }
    for (let i = req.start; i < req.end; i++) {
      const r = rngOf(req.seed, i);
      let planned: ReturnType<typeof plan>;
      try {
        planned = plan(r, seeds, req.runFraction);
      } catch (err) {
        post({ type: "start", index: i, budget: 1 });
        const failure = `fuzzer error: ${err instanceof Error ? err.stack : String(err)}`;
        post({ type: "done", index: i, result: { outcome: "failure", failure, what: "(plan)" } });
        continue;
      }
      const { s, ops, run } = planned;
      post({ type: "start", index: i, budget: run ? 5 : 1 });
      const path = join(req.dir, `case${i}.gguf`);
      let result: GgufCaseResult;
      try {
        result = await runCase(s, ops, run, path, (what) => post({ type: "what", what }));
        if (result.outcome === "failure") result = await shrink(s, ops, run, path, result);
      } catch (err) {
        // The fuzzer's own code failed (a mutation that cannot apply): report it as such.
        result = {
          outcome: "failure",
          failure: `fuzzer error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`,
          what: `${s.name}: ${ops.map((o) => o.what).join("; ")}`,
        };
      }
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
}

/** Whether this module runs as the fuzzer's worker (it is loaded as one, nowhere else). */
const IN_WORKER = "WorkerGlobalScope" in globalThis;

if (IN_WORKER) workerMain();
