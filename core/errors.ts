/**
 * Call-site capture so graph errors can point at the user's line, not Kiln's.
 *
 * @module
 */

// Kiln's own folder: frames inside its library folders are skipped, so errors
// point at the user's line even when they call a models/ helper.
const ROOT = new URL("../", import.meta.url).href.replace(/^file:\/\//, "");
const INTERNAL_DIRS = [
  "core/",
  "ops/",
  "compiler/",
  "runtime/",
  "models/",
  "app/",
  "mod.ts",
  "cli.ts",
].map((d) => ROOT + d);

function internal(file: string): boolean {
  return file.startsWith("node:") || file.startsWith("ext:") ||
    INTERNAL_DIRS.some((d) => file.startsWith(d));
}

/**
 * The first stack frame outside Kiln's own modules, as `file:line:col`.
 * Returns `"<unknown>"` when no such frame exists.
 */
export function callSite(): string {
  const stack = new Error().stack?.split("\n").slice(1) ?? [];
  for (const line of stack) {
    const m = line.match(/\(?((?:file|https?|jsr|npm):\/\/[^\s)]+|\/[^\s)]+):(\d+):(\d+)\)?\s*$/);
    if (!m) continue;
    const file = m[1].replace(/^file:\/\//, "");
    if (internal(file)) continue;
    return `${file}:${m[2]}`;
  }
  return "<unknown>";
}

/** Makes an error of the same class with the call site appended. */
export function atSite<E extends Error>(err: E, site: string): E {
  err.message = `${err.message} (at ${site})`;
  return err;
}
