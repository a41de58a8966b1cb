/**
 * The expert scheduler's counters and what is derived from them: hit rate,
 * prefetch accuracy, bytes and round trips per token, and the printed report.
 *
 * @module
 */

import { type ExpertPlan, formatBytes } from "./placement.ts";
import type { ExpertPolicy, ExpertPrefetch } from "./policy.ts";

/**
 * Counters of the scheduler, cumulative since load (or `resetStats`).
 *
 * @example
 * ```ts ignore
 * import { type ExpertStats, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB" });
 * for await (const text of model.generate("Hello", { maxTokens: 16 })) console.log(text);
 * const stats: ExpertStats | undefined = model.experts?.stats;
 * console.log(stats?.bytesUploaded, stats?.misses);
 * ```
 */
export interface ExpertStats {
  /** Forward passes run (prefill and decode steps). */
  steps: number;
  /** Decode steps whose routing was read back (the basis of the rates below). */
  decodeSteps: number;
  /** Expert bytes copied from the host tier into slots. */
  bytesUploaded: number;
  /** Host round trips made by the scheduler itself (0: copies ride in the step's command buffer). */
  schedulerRoundTrips: number;
  /** Routed (token, slot) pairs per layer during decode. */
  routed: number[];
  /** Of those, pairs whose expert was pinned (resident before the step). */
  hits: number[];
  /** Streamed expert copies per layer during decode. */
  streamed: number[];
  /** Streamed copies that the step used (prefetch accuracy = used / streamed). */
  streamedUsed: number[];
  /** Routed pairs per layer and expert, prefill and decode (`usage[l][e]`). */
  usage: number[][];
  /** Expert bytes uploaded during decode (streamed copies, cache fills, reruns). */
  decodeBytesUploaded: number;
  /** Decode steps that used a non-resident expert (cache and naive policies). */
  misses: number;
  /** Decode steps run again after a miss (a streamed rerun or a naive retry). */
  reruns: number;
  /** Host round trips of the decode loop (readbacks after the first token). */
  decodeRoundTrips: number;
  /** Expert bytes read from the checkpoint files (disk tier) after load. */
  diskBytesRead: number;
  /**
   * Predictor scores over consecutive decode steps, MoE layers after the first,
   * non-pinned experts: predicted entries and those the next step used, for the
   * temporal predictor and (when the graph logs it) the router lookahead.
   */
  temporalPredicted: number;
  /** See `temporalPredicted`. */
  temporalCorrect: number;
  /** See `temporalPredicted`. */
  lookaheadPredicted: number;
  /** See `temporalPredicted`. */
  lookaheadCorrect: number;
  /** Of those, during decode. */
  decodeDiskBytes: number;
}

/**
 * A derived summary of {@linkcode ExpertStats}.
 *
 * @example
 * ```ts ignore
 * import { type ExpertStatsSummary, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB" });
 * for await (const text of model.generate("Hello", { maxTokens: 16 })) console.log(text);
 * const s: ExpertStatsSummary | undefined = model.experts?.summary();
 * console.log(s?.hitRate, s?.bytesPerToken);
 * ```
 */
export interface ExpertStatsSummary {
  /** Fraction of decode routed pairs served by resident (pinned) experts. */
  hitRate: number;
  /** Fraction of streamed expert copies a decode step used. */
  prefetchAccuracy: number;
  /** Expert bytes uploaded per decode step. */
  bytesPerToken: number;
  /** Host round trips (readbacks) of the decode loop per decode step. */
  roundTripsPerToken: number;
  /** Expert bytes read from the checkpoint files per decode step. */
  diskBytesPerToken: number;
  /** Accuracy of the temporal predictor (NaN before two decode steps). */
  temporalAccuracy: number;
  /** Accuracy of the router lookahead (NaN when not logged). */
  lookaheadAccuracy: number;
  /** Hit rate per layer. */
  hitRateByLayer: number[];
}

/**
 * Counters at zero for `L` MoE layers of `E` experts.
 *
 * @example
 * ```ts
 * import { emptyExpertStats } from "./stats.ts";
 * emptyExpertStats(2, 8).usage[1].length; // 8
 * ```
 */
export function emptyExpertStats(L: number, E: number): ExpertStats {
  const z = () => new Array(L).fill(0);
  return {
    steps: 0,
    decodeSteps: 0,
    bytesUploaded: 0,
    schedulerRoundTrips: 0,
    routed: z(),
    hits: z(),
    streamed: z(),
    streamedUsed: z(),
    usage: Array.from({ length: L }, () => new Array(E).fill(0)),
    decodeBytesUploaded: 0,
    misses: 0,
    reruns: 0,
    decodeRoundTrips: 0,
    diskBytesRead: 0,
    decodeDiskBytes: 0,
    temporalPredicted: 0,
    temporalCorrect: 0,
    lookaheadPredicted: 0,
    lookaheadCorrect: 0,
  };
}

/**
 * Rates derived from the counters of a scheduler running `plan`.
 *
 * @example
 * ```ts ignore
 * import { summarizeExpertStats } from "./stats.ts";
 * const s = summarizeExpertStats(model.experts!.stats, model.experts!.plan);
 * console.log(s.hitRate, s.bytesPerToken);
 * ```
 */
export function summarizeExpertStats(st: ExpertStats, plan: ExpertPlan): ExpertStatsSummary {
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  const n = Math.max(1, st.decodeSteps);
  const streamed = sum(st.streamed);
  return {
    hitRate: sum(st.routed) ? sum(st.hits) / sum(st.routed) : 1,
    prefetchAccuracy: streamed ? sum(st.streamedUsed) / streamed : 1,
    bytesPerToken: st.decodeSteps ? st.decodeBytesUploaded / n : plan.bytesPerStep,
    roundTripsPerToken: st.decodeRoundTrips / n,
    diskBytesPerToken: st.decodeDiskBytes / n,
    temporalAccuracy: st.temporalCorrect / st.temporalPredicted,
    lookaheadAccuracy: st.lookaheadCorrect / st.lookaheadPredicted,
    hitRateByLayer: st.routed.map((r, l) => (r ? st.hits[l] / r : 1)),
  };
}

/**
 * A printable report of the counters of a scheduler running `plan` under
 * `policy` and `prefetch`.
 *
 * @example
 * ```ts ignore
 * import { describeExpertStats } from "./stats.ts";
 * const x = model.experts!;
 * console.log(describeExpertStats(x.stats, x.plan, x.policy, x.prefetch));
 * ```
 */
export function describeExpertStats(
  st: ExpertStats,
  plan: ExpertPlan,
  policy: ExpertPolicy,
  prefetch: ExpertPrefetch,
): string {
  const s = summarizeExpertStats(st, plan);
  const lines = [
    `expert scheduler (${policy}): ${plan.slots} slots (${plan.rotating} ` +
    `rotating), ${st.decodeSteps} decode steps, ${st.misses} misses, ${st.reruns} reruns`,
    `  hit rate ${(100 * s.hitRate).toFixed(1)}%, prefetch accuracy ${
      (100 * s.prefetchAccuracy).toFixed(1)
    }%, uploaded ${formatBytes(st.bytesUploaded)} (${formatBytes(s.bytesPerToken)}/token), ` +
    `round trips ${s.roundTripsPerToken.toFixed(2)}/token`,
  ];
  if (st.temporalPredicted > 0) {
    const pct = (v: number) => (Number.isNaN(v) ? "—" : `${(100 * v).toFixed(1)}%`);
    lines.push(
      `  prefetch (${prefetch}): predictor accuracy, next step's experts in layers after ` +
        `the first: temporal ${pct(s.temporalAccuracy)}, router lookahead ${
          pct(s.lookaheadAccuracy)
        }`,
    );
  }
  if (plan.disk.some((r) => r.length > 0)) {
    lines.push(
      `  disk tier: ${plan.disk.reduce((a, r) => a + r.length, 0)} experts read from ` +
        `the checkpoint when needed, ${formatBytes(st.diskBytesRead)} read ` +
        `(${formatBytes(s.diskBytesPerToken)}/token)`,
    );
  }
  s.hitRateByLayer.forEach((h, l) => {
    lines.push(
      `  layer ${l}: hit ${(100 * h).toFixed(1)}%, streamed ${st.streamed[l]}, used ${
        st.streamedUsed[l]
      }`,
    );
  });
  return lines.join("\n");
}
