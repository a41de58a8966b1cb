/**
 * One switch for Kiln's debug output (each kernel's WGSL as it compiles, its GPU
 * time as it runs). The core reads no environment itself, so it runs anywhere
 * WebGPU does; the Deno entry points (`mod.ts`, `cli.ts`) connect it to the
 * `KILN_DEBUG=1` environment variable.
 *
 * @module
 */

let source: () => boolean = () => false;

/**
 * Where the debug switch is read from: a function called each time output may
 * be printed (so a permission prompt, if any, happens only then).
 *
 * @example
 * ```ts
 * import { setDebugSource } from "./debug.ts";
 * setDebugSource(() => true); // print every kernel
 * ```
 */
export function setDebugSource(read: () => boolean): void {
  source = read;
}

/**
 * Whether debug output is on; a source that throws (no permission) means off.
 *
 * @example
 * ```ts
 * import { debugEnabled } from "./debug.ts";
 * if (debugEnabled()) console.error("kernel …");
 * ```
 */
export function debugEnabled(): boolean {
  try {
    return source();
  } catch {
    return false;
  }
}
