/**
 * A one-line progress bar on stderr for long loads (weights, shards): bytes done
 * of the total, the rate in MB/s and the time left. It redraws in place with `\r`
 * at most about ten times a second, and stays silent when stderr is not a
 * terminal (logs, CI, pipes) or when asked to be quiet.
 *
 * @example
 * ```ts
 * import { createProgress } from "./progress.ts";
 * const bar = createProgress({ total: 1 << 20, label: "weights" });
 * bar.advance(1 << 19);
 * bar.advance(1 << 19);
 * bar.done();
 * ```
 *
 * @module
 */

import { formatBytes as format } from "../core/format.ts";

/**
 * A byte count in decimal units, as download tools show transfers (`1.5 MB`).
 *
 * @example
 * ```ts
 * import { formatBytes } from "./progress.ts";
 * formatBytes(1_500_000); // "1.5 MB"
 * ```
 */
export function formatBytes(bytes: number): string {
  return format(bytes, "decimal");
}

/**
 * Something that counts bytes as they arrive: what loaders report to.
 *
 * @example
 * ```ts
 * import { createProgress, type Progress } from "@kiln/kiln";
 * const bar: Progress = createProgress({ total: 1024, label: "weights", quiet: true });
 * bar.advance(512);
 * bar.advance(512);
 * bar.done();
 * ```
 */
export interface Progress {
  /** Records `bytes` more bytes done. */
  advance(bytes: number): void;
  /** Ends the display (draws the final state and a newline). Idempotent. */
  done(): void;
}

/**
 * Options for {@linkcode createProgress}.
 *
 * @example
 * ```ts
 * import { createProgress, type ProgressOptions } from "@kiln/kiln";
 * const lines: string[] = [];
 * const options: ProgressOptions = { total: 100, label: "demo", write: (t) => lines.push(t) };
 * createProgress(options).done();
 * ```
 */
export interface ProgressOptions {
  /** Total bytes expected; 0 or less shows a bar without percentage or ETA. */
  total: number;
  /** Text in front of the bar, e.g. a model name. */
  label: string;
  /** Draw nothing at all. Defaults to `false`. */
  quiet?: boolean;
  /**
   * Where the text goes. Defaults to stderr, and then only when stderr is a
   * terminal; passing a writer always draws (unless `quiet`). Mainly for tests.
   */
  write?: (text: string) => void;
  /** Clock in milliseconds. Defaults to `performance.now`. Mainly for tests. */
  now?: () => number;
  /** Width of the line in columns. Defaults to the terminal width, capped at 100. */
  columns?: number;
  /**
   * What is counted: bytes (default; shown as `1.5 MB/3.0 MB` with a rate), or
   * items named by this word (`"pipelines"`: shown as `12/30 pipelines`).
   */
  unit?: string;
}

/** Least time between two redraws: more often only costs time and flicker. */
const REDRAW_MS = 100;

const NOOP: Progress = { advance(): void {}, done(): void {} };

/**
 * Creates a progress display for a load of `total` bytes.
 *
 * @example
 * ```ts
 * import { createProgress } from "./progress.ts";
 * const lines: string[] = [];
 * const bar = createProgress({ total: 100, label: "demo", write: (t) => lines.push(t) });
 * bar.advance(100);
 * bar.done(); // lines now ends with a full bar and "\n"
 * ```
 */
export function createProgress(options: ProgressOptions): Progress {
  const { total, label, quiet = false } = options;
  if (typeof total !== "number" || Number.isNaN(total)) {
    throw new TypeError(`createProgress: total must be a number, got ${String(total)}`);
  }
  if (quiet) return NOOP;
  const write = options.write ?? stderrWriter();
  if (!write) return NOOP;
  const now = options.now ?? (() => performance.now());
  const columns = Math.max(40, Math.min(options.columns ?? terminalColumns(), 100));
  const start = now();
  let doneBytes = 0;
  // The first redraw waits one interval: a rate measured over microseconds is noise.
  let lastDraw = start;
  let finished = false;

  const draw = (final: boolean): void => {
    const t = now();
    lastDraw = t;
    const seconds = Math.max((t - start) / 1000, 1e-9);
    const rate = doneBytes / seconds;
    const left = total > 0 ? Math.max(total - doneBytes, 0) : 0;
    const unit = options.unit;
    const parts = [
      unit !== undefined
        ? `${doneBytes}/${total} ${unit}${total > 0 ? ` ${pct(doneBytes, total)}` : ""}`
        : total > 0
        ? `${formatBytes(doneBytes)}/${formatBytes(total)} ${pct(doneBytes, total)}`
        : formatBytes(doneBytes),
      ...(unit !== undefined ? [] : [`${(rate / 1e6).toFixed(1)} MB/s`]),
      final
        ? formatDuration(seconds)
        : total > 0 && rate > 0
        ? `ETA ${formatDuration(left / rate)}`
        : "ETA --:--",
    ];
    const tail = ` ${parts.join("  ")}`;
    // The bar gets what the label and the numbers leave of the line; without
    // room for it the line still fits, so `\r` keeps overwriting one line.
    const room = columns - 1 - label.length - tail.length - 3;
    let bar = "";
    if (room >= 10) {
      const width = Math.min(room, 40);
      const fill = total > 0 ? Math.round(Math.min(doneBytes / total, 1) * width) : 0;
      bar = ` [${"#".repeat(fill)}${"-".repeat(width - fill)}]`;
    }
    let line = `${label}${bar}${tail}`;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    // Pad so a shorter line fully covers the previous one.
    write(`\r${line.padEnd(columns - 1)}${final ? "\n" : ""}`);
  };

  return {
    advance(bytes: number): void {
      if (finished) return;
      if (!Number.isFinite(bytes) || bytes < 0) {
        throw new RangeError(`progress "${label}": advance(${bytes}) needs a finite count >= 0`);
      }
      doneBytes += bytes;
      if (now() - lastDraw >= REDRAW_MS) draw(false);
    },
    done(): void {
      if (finished) return;
      finished = true;
      draw(true);
    },
  };
}

/** A writer to stderr when it is a terminal, else `undefined` (stay silent). */
function stderrWriter(): ((text: string) => void) | undefined {
  let tty = false;
  try {
    tty = Deno.stderr.isTerminal();
  } catch {
    // No stderr (e.g. a detached process): nothing to draw on.
  }
  if (!tty) return undefined;
  const encoder = new TextEncoder();
  return (text: string): void => {
    const bytes = encoder.encode(text);
    // writeSync may write only part of the buffer.
    let off = 0;
    while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
  };
}

function terminalColumns(): number {
  try {
    // A pseudo-terminal may report 0 columns.
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}

function pct(done: number, total: number): string {
  return `${Math.min(100, (done / total) * 100).toFixed(0).padStart(3)}%`;
}

/**
 * Formats seconds as `m:ss`, or `h:mm:ss` from an hour on.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./progress.ts";
 * formatDuration(75); // "1:15"
 * ```
 */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
