/**
 * Call-site capture so graph errors can point at the user's line, not Kiln's.
 *
 * @module
 */

const INTERNAL = /[\\/](compiler|ops|runtime)[\\/][^\\/]+\.ts|[\\/]mod\.ts|node:|ext:/;

/**
 * The first stack frame outside Kiln's own modules, as `file:line:col`.
 * Returns `"<unknown>"` when no such frame exists.
 */
export function callSite(): string {
  const stack = new Error().stack?.split("\n").slice(1) ?? [];
  for (const line of stack) {
    const m = line.match(/\(?((?:file|https?|jsr|npm):\/\/[^\s)]+|\/[^\s)]+):(\d+):(\d+)\)?\s*$/);
    if (!m) continue;
    if (INTERNAL.test(m[1])) continue;
    const file = m[1].replace(/^file:\/\//, "");
    return `${file}:${m[2]}`;
  }
  return "<unknown>";
}

/** Makes an error of the same class with the call site appended. */
export function atSite<E extends Error>(err: E, site: string): E {
  err.message = `${err.message} (at ${site})`;
  return err;
}
