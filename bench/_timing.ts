/**
 * Timing helper shared by the benchmark scripts.
 *
 * @module
 */

/**
 * Medians of `runs` timed in turn, round after round, after one untimed call each
 * (pipelines compile outside the timing). The shared host's speed drifts by tens
 * of percent within minutes, so figures compared in one table row must be taken
 * side by side like this, never one after the other.
 */
export async function interleavedMedians(
  runs: readonly (() => Promise<unknown>)[],
  reps: number,
): Promise<number[]> {
  for (const run of runs) await run();
  const ts: number[][] = runs.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (const [i, run] of runs.entries()) {
      const t0 = performance.now();
      await run();
      ts[i].push(performance.now() - t0);
    }
  }
  return ts.map((t) => t.sort((a, b) => a - b)[t.length >> 1]);
}
