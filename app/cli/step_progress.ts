/**
 * Progress of long model work on stderr, phase by phase (`prefill: 100000
 * tokens, 0:12`, `decode: 12/32 tokens, 3.1 tokens/s, ETA 0:06`), so a run of
 * minutes is never silent. On a terminal one line is redrawn in place (and the
 * time keeps ticking while the device works); with `--progress` and stderr not
 * a terminal (a log, CI) each phase prints its start, its end and at most one
 * line per few seconds in between.
 *
 * @module
 */

import { formatDuration } from "../progress.ts";

/**
 * How progress is shown: not at all, redrawn in place on a terminal, or as
 * plain lines.
 *
 * @example
 * ```ts
 * import type { ProgressMode } from "./step_progress.ts";
 * const mode: ProgressMode = "lines";
 * ```
 */
export type ProgressMode = "off" | "terminal" | "lines";

/**
 * The mode for a command: `terminal` when stderr is a terminal (unless
 * `quiet`), `lines` when `--progress` is given and stderr is not a terminal,
 * else `off`.
 *
 * @example
 * ```ts ignore
 * import { progressMode } from "./step_progress.ts";
 * const mode = progressMode(values.progress === true, values.quiet === true);
 * ```
 */
export function progressMode(asked: boolean, quiet: boolean): ProgressMode {
  let tty = false;
  try {
    tty = Deno.stderr.isTerminal();
  } catch {
    // No stderr to ask: treat as not a terminal.
  }
  if (tty) return quiet && !asked ? "off" : "terminal";
  return asked ? "lines" : "off";
}

/**
 * A phase-by-phase progress display.
 *
 * @example
 * ```ts
 * import { createStepProgress } from "./step_progress.ts";
 * const out: string[] = [];
 * const p = createStepProgress({ mode: "lines", write: (t) => out.push(t) });
 * p.start("decode", 2);
 * p.update(2);
 * p.end(); // out: ["[kiln] decode: 0/2 tokens\n", "[kiln] decode: 2/2 tokens in 0:00 …\n"]
 * ```
 */
export interface StepProgress {
  /**
   * Starts a phase of `total` tokens, `done` of them already done; `counted`
   * false: no counts, only the time it takes.
   */
  start(label: string, total: number, counted?: boolean, done?: number): void;
  /** Tokens done so far in the current phase. */
  update(done: number): void;
  /**
   * Ends the current phase with its final line; with `erase` (the phase was cut
   * short, or text follows on the same terminal) without one, clearing a terminal line.
   */
  end(erase?: boolean): void;
}

/**
 * Options of {@linkcode createStepProgress}.
 *
 * @example
 * ```ts
 * import type { StepProgressOptions } from "./step_progress.ts";
 * const options: StepProgressOptions = { mode: "lines", write: (t) => console.log(t) };
 * ```
 */
export interface StepProgressOptions {
  /** How to show progress. */
  mode: ProgressMode;
  /** Where text goes (default: stderr). */
  write?: (text: string) => void;
  /** Clock in milliseconds (default `performance.now`). */
  now?: () => number;
}

/** Least time between redraws on a terminal, and between plain lines. */
export const REDRAW_MS = 100;
/** Least time between plain progress lines (`lines` mode; also the tick of its clock). */
export const LINE_MS = 5000;

/**
 * Creates a progress display; `off` gives one that draws nothing.
 *
 * @example
 * ```ts
 * import { createStepProgress } from "./step_progress.ts";
 * const p = createStepProgress({ mode: "off" });
 * p.start("prefill", 128, false);
 * p.end();
 * ```
 */
export function createStepProgress(options: StepProgressOptions): StepProgress {
  const { mode } = options;
  if (mode === "off") return { start() {}, update() {}, end() {} };
  const write = options.write ?? writeStderr;
  const now = options.now ?? (() => performance.now());
  const columns = mode === "terminal" ? terminalColumns() : 0;
  let label = "", total = 0, counted = true, done = 0, first = 0, t0 = 0, last = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  let active = false;

  const text = (final: boolean): string => {
    const seconds = (now() - t0) / 1000;
    if (!counted) {
      return `[kiln] ${label}: ${total} tokens${final ? " in" : ","} ${formatDuration(seconds)}`;
    }
    // The rate of this phase's own work: tokens done before it started do not count.
    const rate = seconds > 0 ? (done - first) / seconds : 0;
    const speed = done > first && seconds > 0 ? `, ${rate.toFixed(1)} tokens/s` : "";
    if (final) {
      return `[kiln] ${label}: ${done}/${total} tokens in ${formatDuration(seconds)}${speed}`;
    }
    const eta = rate > 0 ? `, ETA ${formatDuration((total - done) / rate)}` : "";
    return `[kiln] ${label}: ${done}/${total} tokens${speed}${eta}`;
  };
  const put = progressLine(mode, write, columns);
  const draw = (final: boolean): void => {
    last = now();
    put(text(final), final);
  };
  const end = (erase = false): void => {
    if (!active) return;
    active = false;
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
    if (!erase) draw(true);
    else if (mode === "terminal") write(`\r${" ".repeat(columns - 1)}\r`);
  };
  return {
    start(name: string, n: number, isCounted = true, already = 0): void {
      end();
      [label, total, counted, done, first] = [name, n, isCounted, already, already];
      [t0, active] = [now(), true];
      draw(false);
      // While the device works nothing calls update: the clock ticks on its own.
      const t = setInterval(() => draw(false), mode === "terminal" ? 1000 : LINE_MS);
      Deno.unrefTimer(t);
      timer = t;
    },
    update(n: number): void {
      if (!active) return;
      done = n;
      if (now() - last >= (mode === "terminal" ? REDRAW_MS : LINE_MS)) draw(false);
    },
    end,
  };
}

/**
 * Writes a progress line: a line of its own in `lines` mode, else redrawn in
 * place on the terminal (a final one ends the line).
 *
 * @example
 * ```ts
 * import { progressLine } from "./step_progress.ts";
 * progressLine("lines", (t) => console.log(t.trimEnd()), 0)("[kiln] 3/10", false);
 * ```
 */
export function progressLine(
  mode: ProgressMode,
  write: (text: string) => void,
  columns: number,
): (text: string, final: boolean) => void {
  return (text, final) => {
    if (mode === "lines") return write(`${text}\n`);
    // Padding covers the rest of a longer previous line.
    write(`\r${text.slice(0, columns - 1).padEnd(columns - 1)}${final ? "\n" : ""}`);
  };
}

/**
 * Writes all of `text` to stderr.
 *
 * @example
 * ```ts ignore
 * writeStderr("[kiln] done\n");
 * ```
 */
export function writeStderr(text: string): void {
  const bytes = new TextEncoder().encode(text);
  // writeSync may write only part of the buffer.
  let off = 0;
  while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
}

/**
 * The terminal's width, clamped to 40–120 (80 when unknown).
 *
 * @example
 * ```ts ignore
 * const width = terminalColumns(); // 80 off a terminal
 * ```
 */
export function terminalColumns(): number {
  try {
    return Math.max(40, Math.min(Deno.consoleSize().columns || 80, 120));
  } catch {
    return 80;
  }
}
