/**
 * What `kiln train` leaves beside the model: `loss.csv` (one row per logged
 * update, the held-out loss where one was measured) and `loss.svg` (both
 * curves), rewritten after every evaluation and at the end so an interrupted
 * run still has its curve so far.
 *
 * @module
 */

import type { LossRecord } from "../train/trainer.ts";
import { lineChartSvg, type Series } from "../plot/svg.ts";

/**
 * A held-out loss measured after `step` updates.
 *
 * @example
 * ```ts
 * import type { EvalRecord } from "./train_report.ts";
 * const r: EvalRecord = { step: 100, loss: 3.9 };
 * ```
 */
export interface EvalRecord {
  /** Updates done when it was measured. */
  readonly step: number;
  /** Mean cross-entropy (nats) on the held-out tokens. */
  readonly loss: number;
}

/**
 * `loss.csv`: `step,train_loss,eval_loss`, one row per step with either loss
 * (an empty cell where that loss was not measured).
 *
 * @example
 * ```ts
 * import { lossCsv } from "./train_report.ts";
 * lossCsv([{ step: 1, loss: 5 }, { step: 2, loss: 4 }], [{ step: 2, loss: 4.5 }]);
 * // "step,train_loss,eval_loss\n1,5,\n2,4,4.5\n"
 * ```
 */
export function lossCsv(train: readonly LossRecord[], evals: readonly EvalRecord[]): string {
  const rows = new Map<number, [string, string]>();
  for (const r of train) rows.set(r.step, [String(r.loss), ""]);
  for (const r of evals) rows.set(r.step, [rows.get(r.step)?.[0] ?? "", String(r.loss)]);
  const lines = [...rows].sort((a, b) => a[0] - b[0]).map(([s, [t, e]]) => `${s},${t},${e}`);
  return ["step,train_loss,eval_loss", ...lines].join("\n") + "\n";
}

/**
 * `loss.svg`: the training loss (a line) and the held-out loss (markers) by step.
 *
 * @example
 * ```ts
 * import { lossSvg } from "./train_report.ts";
 * lossSvg([{ step: 1, loss: 5 }, { step: 2, loss: 4 }], []).startsWith("<svg"); // true
 * ```
 */
export function lossSvg(train: readonly LossRecord[], evals: readonly EvalRecord[]): string {
  const series: Series[] = [
    { label: "train", points: train.map((r) => [r.step, r.loss] as const) },
  ];
  if (evals.length > 0) {
    series.push({
      label: "held-out",
      points: evals.map((r) => [r.step, r.loss] as const),
      markers: true,
    });
  }
  return lineChartSvg({ title: "training loss", xLabel: "step", yLabel: "nats", series });
}

/**
 * Writes `DIR/loss.csv` and `DIR/loss.svg` (the chart only once some loss is known).
 *
 * @example
 * ```ts ignore
 * await writeLossReport("out", trainer.history, evals);
 * ```
 */
export async function writeLossReport(
  dir: string,
  train: readonly LossRecord[],
  evals: readonly EvalRecord[],
): Promise<void> {
  await Deno.writeTextFile(`${dir}/loss.csv`, lossCsv(train, evals));
  if (train.some((r) => Number.isFinite(r.loss)) || evals.some((r) => Number.isFinite(r.loss))) {
    await Deno.writeTextFile(`${dir}/loss.svg`, lossSvg(train, evals));
  }
}
