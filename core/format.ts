/**
 * Human-readable numbers for messages, plans and progress: one formatter for
 * bytes, everywhere.
 *
 * @module
 */

const BINARY = ["B", "KiB", "MiB", "GiB", "TiB"];
const DECIMAL = ["B", "kB", "MB", "GB", "TB"];

/**
 * Bytes as a short human string: binary units with two decimals (`1.50 MiB`,
 * memory sizes and budgets), or decimal units with one (`1.5 MB`, as download
 * tools show transfers); plain bytes below the first unit.
 *
 * @example
 * ```ts
 * import { formatBytes } from "@kiln/kiln";
 * formatBytes(1536 * 1024); // "1.50 MiB"
 * formatBytes(1_500_000, "decimal"); // "1.5 MB"
 * formatBytes(512); // "512 B"
 * ```
 */
export function formatBytes(n: number, units: "binary" | "decimal" = "binary"): string {
  const [names, step, digits] = units === "binary" ? [BINARY, 1024, 2] : [DECIMAL, 1000, 1];
  let i = 0, v = n;
  while (Math.abs(v) >= step && i < names.length - 1) {
    v /= step;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(digits)} ${names[i]}`;
}
