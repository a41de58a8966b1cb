/**
 * Environment switches read without asking for a permission: Kiln must run with
 * `--allow-read=<model folder>` alone, and reading an environment variable
 * without `--allow-env` would stop a terminal session at Deno's permission prompt.
 *
 * @module
 */

/**
 * Whether the environment variable `name` is `"1"`, read only when env access
 * to it is already granted; otherwise `false`, with no prompt and no error.
 *
 * @example
 * ```ts
 * import { envFlag } from "./env_flag.ts";
 * // Under `deno run` without --allow-env this is false and nothing prompts.
 * const debug: boolean = envFlag("KILN_DEBUG");
 * ```
 */
export function envFlag(name: string): boolean {
  try {
    // A "prompt" state would ask on a terminal and throw elsewhere: both mean off.
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return false;
    }
    return Deno.env.get(name) === "1";
  } catch {
    return false;
  }
}
