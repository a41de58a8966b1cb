/**
 * Progress of `kiln train` on stderr: `[kiln] train: step 40/200, loss 3.412,
 * 5120 tokens/s, 0:16 elapsed, ETA 1:02`. On a terminal the line is redrawn in place (the
 * clock ticks on while the device works); with `--progress` and stderr not a
 * terminal it prints a line at most every few seconds, and one at the end.
 * Losses arrive only when the trainer reads its log back (every `--log-every`
 * updates), so the step shown is the last one whose loss is known.
 *
 * @module
 */

import { formatDuration } from "../progress.ts";
import {
  LINE_MS,
  progressLine,
  type ProgressMode,
  REDRAW_MS,
  terminalColumns,
  writeStderr,
} from "./step_progress.ts";

/**
 * A training progress display.
 *
 * @example
 * ```ts
 * import { createTrainProgress } from "./train_progress.ts";
 * const out: string[] = [];
 * const p = createTrainProgress({ mode: "lines", total: 4, first: 0, write: (t) => out.push(t) });
 * p.update(4, 2.5, 1000);
 * p.end(); // out.at(-1): "[kiln] train: 4/4 steps in 0:00, loss 2.500, …\n"
 * ```
 */
export interface TrainProgress {
  /** Updates done, the latest training loss and the latest tokens per second. */
  update(step: number, loss: number, tokensPerSecond: number): void;
  /** Prints `text` on a line of its own (an evaluation result) without breaking the display. */
  note(text: string): void;
  /** Ends the display with its final line. */
  end(): void;
}

/**
 * Options of {@linkcode createTrainProgress}.
 *
 * @example
 * ```ts
 * import type { TrainProgressOptions } from "./train_progress.ts";
 * const o: TrainProgressOptions = { mode: "terminal", total: 1000, first: 0 };
 * ```
 */
export interface TrainProgressOptions {
  /** How to show progress. */
  mode: ProgressMode;
  /** Updates the run ends at. */
  total: number;
  /** Updates already done when it started (a resumed run): not counted in the rate. */
  first: number;
  /** Where text goes (default: stderr). */
  write?: (text: string) => void;
  /** Clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

/**
 * Creates a training progress display; `off` draws nothing.
 *
 * @example
 * ```ts
 * import { createTrainProgress } from "./train_progress.ts";
 * const p = createTrainProgress({ mode: "off", total: 10, first: 0 });
 * p.update(10, 1.5, 800);
 * p.end();
 * ```
 */
export function createTrainProgress(options: TrainProgressOptions): TrainProgress {
  const { mode, total, first } = options;
  if (mode === "off") return { update() {}, note() {}, end() {} };
  const write = options.write ?? writeStderr;
  const now = options.now ?? (() => performance.now());
  const columns = mode === "terminal" ? terminalColumns() : 0;
  const t0 = now();
  let step = first, loss = NaN, tps = 0, last = -Infinity, active = true;

  const text = (final: boolean): string => {
    const seconds = (now() - t0) / 1000;
    const lossText = Number.isFinite(loss) ? `, loss ${loss.toFixed(3)}` : "";
    const speed = tps > 0 ? `, ${Math.round(tps)} tokens/s` : "";
    if (final) {
      return `[kiln] train: ${step}/${total} steps in ${
        formatDuration(seconds)
      }${lossText}${speed}`;
    }
    // Steps per second of this run's own work, for the time left.
    const rate = seconds > 0 ? (step - first) / seconds : 0;
    const eta = rate > 0 ? `, ETA ${formatDuration((total - step) / rate)}` : "";
    // Elapsed time ticks even before the first loss (the first update compiles every kernel).
    const elapsed = `, ${formatDuration(seconds)} elapsed`;
    return `[kiln] train: step ${step}/${total}${lossText}${speed}${elapsed}${eta}`;
  };
  const put = progressLine(mode, write, columns);
  const draw = (final: boolean): void => {
    last = now();
    put(text(final), final);
  };
  draw(false);
  const timer = setInterval(() => draw(false), mode === "terminal" ? 1000 : LINE_MS);
  Deno.unrefTimer(timer);
  return {
    update(s: number, l: number, t: number): void {
      if (!active) return;
      [step, loss, tps] = [s, l, t];
      if (now() - last >= (mode === "terminal" ? REDRAW_MS : LINE_MS)) draw(false);
    },
    note(line: string): void {
      if (!active) return;
      if (mode === "terminal") write(`\r${" ".repeat(columns - 1)}\r${line}\n`);
      else write(`${line}\n`);
      if (mode === "terminal") draw(false);
    },
    end(): void {
      if (!active) return;
      active = false;
      clearInterval(timer);
      draw(true);
    },
  };
}
