/**
 * The tuning cache: the matmul tiles `tuneMatmul` chose, per device and per
 * problem, in one JSON file (default `$HOME/.cache/kiln/tuning.json`):
 *
 * ```json
 * { "version": 1,
 *   "devices": { "<adapter> | <target> | <caps>": {
 *     "f32 b1 256x256x1024 nt shared": { "tile": "rb16x16_wg1x16b_u1", "reason": "tuned …",
 *       "timing": "wall", "timings": [{ "tile": "…", "compileMs": 1, "runMs": 2 }] } } } }
 * ```
 *
 * @module
 */

import type { DeviceCaps } from "../../core/types.ts";
import { targetOf } from "../../ops/targets.ts";
import type { TuneChoice } from "../../runtime/tuning.ts";
import { isPermissionError } from "../fs_errors.ts";

/**
 * A tuning cache file's contents.
 *
 * @example
 * ```ts
 * import type { TuningCache } from "./cache.ts";
 * const empty: TuningCache = { version: 1, devices: {} };
 * ```
 */
export interface TuningCache {
  /** Format version (1). */
  version: 1;
  /** Device key (see {@linkcode deviceKey}) → problem key → choice. */
  devices: Record<string, Record<string, TuneChoice>>;
}

/**
 * The key of a device in the cache: adapter name, target, and the limits the
 * kernels depend on, so a driver update that changes them tunes again.
 *
 * @example
 * ```ts
 * import { deviceKey } from "./cache.ts";
 * const caps = {
 *   maxStorageBuffers: 8, maxBindingSize: 1 << 30, maxInvocations: 256, maxWorkgroupStorage: 16384,
 *   maxWorkgroupsPerDim: 65535, offsetAlignment: 256, f16: false, subgroups: false, cpuCores: 8,
 * };
 * deviceKey({ adapterName: "llvmpipe", caps }); // "llvmpipe | cpu_raster | cores=8 inv=256 wgmem=16384 f16=false"
 * ```
 */
export function deviceKey(device: { adapterName: string; caps: DeviceCaps }): string {
  const c = device.caps;
  return `${device.adapterName} | ${
    targetOf(c)
  } | cores=${c.cpuCores} inv=${c.maxInvocations} wgmem=${c.maxWorkgroupStorage} f16=${c.f16}`;
}

/**
 * The default cache path, `$HOME/.cache/kiln/tuning.json`, or undefined when
 * HOME is unset or may not be read (no permission prompt).
 *
 * @example
 * ```ts
 * import { defaultCachePath } from "./cache.ts";
 * const path: string | undefined = defaultCachePath();
 * ```
 */
export function defaultCachePath(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: "HOME" }).state !== "granted") {
      return undefined;
    }
    const home = Deno.env.get("HOME");
    return home ? `${home}/.cache/kiln/tuning.json` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a cache: an empty one when the file does not exist; a clear error when
 * it may not be read or is not a tuning cache.
 *
 * @example
 * ```ts ignore
 * import { readTuningCache } from "./cache.ts";
 * const cache = await readTuningCache("/tmp/kiln_tuning.json");
 * ```
 */
export async function readTuningCache(path: string): Promise<TuningCache> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { version: 1, devices: {} };
    if (isPermissionError(e)) {
      throw new Deno.errors.PermissionDenied(
        `${path}: no permission to read the tuning cache (run with --allow-read=${path})`,
      );
    }
    throw e;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new SyntaxError(`${path}: the tuning cache is not JSON; delete it to tune again`);
  }
  const c = data as TuningCache;
  if (c?.version !== 1 || typeof c.devices !== "object" || c.devices === null) {
    throw new TypeError(`${path}: not a version 1 tuning cache; delete it to tune again`);
  }
  return c;
}

/**
 * Writes a cache (creating its folder), with a clear error when it may not.
 *
 * @example
 * ```ts ignore
 * import { writeTuningCache } from "./cache.ts";
 * await writeTuningCache("/tmp/kiln_tuning.json", { version: 1, devices: {} });
 * ```
 */
export async function writeTuningCache(path: string, cache: TuningCache): Promise<void> {
  try {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    if (dir) await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(path, JSON.stringify(cache, null, 2) + "\n");
  } catch (e) {
    if (isPermissionError(e)) {
      throw new Deno.errors.PermissionDenied(
        `${path}: no permission to write the tuning cache (run with --allow-write=${path})`,
      );
    }
    throw e;
  }
}

/**
 * The choices the cache holds for a device (empty when it holds none).
 *
 * @example
 * ```ts
 * import { cachedChoices } from "./cache.ts";
 * const choices = cachedChoices({ version: 1, devices: {} }, "llvmpipe | cpu_raster | …");
 * choices.size; // 0
 * ```
 */
export function cachedChoices(cache: TuningCache, device: string): Map<string, TuneChoice> {
  return new Map(Object.entries(cache.devices[device] ?? {}));
}

/**
 * Records choices for a device in the cache (replacing those for the same problems).
 *
 * @example
 * ```ts
 * import { recordChoices, type TuningCache } from "./cache.ts";
 * const cache: TuningCache = { version: 1, devices: {} };
 * recordChoices(cache, "dev", new Map([["f32 b1 8x8x8 nn shared", { reason: "tuned", timings: [], timing: "wall" }]]));
 * Object.keys(cache.devices.dev); // ["f32 b1 8x8x8 nn shared"]
 * ```
 */
export function recordChoices(
  cache: TuningCache,
  device: string,
  choices: ReadonlyMap<string, TuneChoice>,
): void {
  const entry = cache.devices[device] ??= {};
  for (const [key, c] of choices) entry[key] = c;
}
