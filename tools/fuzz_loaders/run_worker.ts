/**
 * The parent side of a loader-fuzz worker, shared by the loader campaigns
 * (`tools/fuzz_loaders.ts`) and the GGUF one (`tools/fuzz/gguf/campaign.ts`):
 * a worker runs cases `[start, end)` and reports each; the parent arms a
 * per-case timer (a hang kills the worker) and records crashes, so one bad
 * case costs one worker, not the campaign.
 *
 * @module
 */

/** What a case worker posts. */
export type CaseWorkerMessage<R> =
  | { type: "start"; index: number; budget: number }
  | { type: "what"; what: string }
  | { type: "done"; index: number; result: R }
  | { type: "finished" };

/** The failure record the parent writes for a hang, a crash or a worker that never started. */
export interface WorkerFailure {
  outcome: "failure";
  failure: string;
  what: string;
}

/**
 * Runs cases in one worker until they are done, the deadline passes, one hangs
 * or the worker dies; returns the index to go on from. `startWhat` names a case
 * before the worker says more about it.
 */
export function runCaseWorker<
  Q extends { start: number; end: number },
  R extends { failure?: string },
>(
  url: URL,
  req: Q,
  timeoutMs: number,
  deadline: number,
  record: (index: number, result: R | WorkerFailure) => void,
  startWhat: (index: number) => string = (i) => `case ${i}`,
): Promise<number> {
  const worker = new Worker(url, { type: "module" });
  return new Promise((resolve) => {
    let current = req.start;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let what = "(worker starting)";
    const finish = (next: number) => {
      clearTimeout(timer);
      worker.terminate();
      resolve(next);
    };
    const arm = (ms: number, onTimeout: () => void) => {
      clearTimeout(timer);
      timer = setTimeout(onTimeout, ms);
    };
    // Building the seeds (parsing real tokenizers) takes a while on a busy machine.
    arm(120_000, () => {
      record(current, { outcome: "failure", failure: "worker did not start", what });
      finish(req.end);
    });
    worker.onmessage = (e: MessageEvent<CaseWorkerMessage<R>>) => {
      const m = e.data;
      if (m.type === "start") {
        current = m.index;
        what = startWhat(m.index);
        const ms = timeoutMs * m.budget;
        arm(ms, () => {
          record(current, { outcome: "failure", failure: `hang (over ${ms} ms)`, what });
          finish(current + 1);
        });
      } else if (m.type === "what") {
        what = m.what;
      } else if (m.type === "done") {
        clearTimeout(timer);
        record(m.index, m.result);
        // Array buffers stay counted until a collection; a fresh worker starts clean.
        if (m.result.failure?.includes("array buffers")) finish(m.index + 1);
        else if (performance.now() > deadline) finish(req.end);
      } else finish(req.end);
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      record(current, { outcome: "failure", failure: `crash: ${e.message}`, what });
      finish(current + 1);
    };
    worker.postMessage(req);
  });
}
