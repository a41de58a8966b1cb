/**
 * Command-line options: parsing (negative numbers accepted as option values,
 * `--help` recognised anywhere) and checking each value with a message that
 * names the option, what it must be and what was given.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseBytes } from "../experts/placement.ts";
import { UsageError } from "./errors.ts";

/**
 * The options a command takes: each a string (takes a value) or a boolean (a switch).
 *
 * @example
 * ```ts
 * import type { OptionSpec } from "./args.ts";
 * const spec: OptionSpec = { model: { type: "string" }, quiet: { type: "boolean" } };
 * ```
 */
export type OptionSpec = Record<string, { type: "string" | "boolean" }>;

/**
 * A parsed command line: option values by name (strings, or `true` for a switch
 * given), the positional arguments, and whether `--help` / `-h` was asked for.
 *
 * @example
 * ```ts
 * import type { ParsedArgs } from "./args.ts";
 * const parsed: ParsedArgs = { values: { model: "./m" }, positionals: [], help: false };
 * ```
 */
export interface ParsedArgs {
  /** Option values by name; an option not given is absent. */
  values: Record<string, string | boolean | undefined>;
  /** Arguments that are not options. */
  positionals: string[];
  /** `--help` or `-h` was given: print the command's usage, nothing else. */
  help: boolean;
}

/**
 * Parses `args` of `command` against `spec`. A value starting with `-` after an
 * option that takes one (`--temperature -1`, `--gpu-memory -5GiB`) is that
 * option's value, so the value check can say what is wrong with it (node:util's
 * parseArgs would call it an ambiguous option). `--help` or `-h` anywhere before
 * `--` wins over every other mistake. Unknown options and missing values are a
 * {@linkcode UsageError} naming the command.
 *
 * @example
 * ```ts
 * import { parseCommand } from "./args.ts";
 * const { values } = parseCommand("generate", ["--temperature", "-1"], {
 *   temperature: { type: "string" },
 * });
 * values.temperature; // "-1"
 * ```
 */
export function parseCommand(
  command: string,
  args: readonly string[],
  spec: OptionSpec,
  allowPositionals = false,
): ParsedArgs {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      joined.push(...args.slice(i));
      break;
    }
    if (a === "--help" || a === "-h") return { values: {}, positionals: [], help: true };
    const next = args[i + 1];
    const takesValue = a.startsWith("--") && spec[a.slice(2)]?.type === "string";
    if (
      takesValue && next !== undefined && next.startsWith("-") && !next.startsWith("--") &&
      next !== "-h"
    ) {
      joined.push(`${a}=${next}`);
      i++;
    } else {
      joined.push(a);
    }
  }
  try {
    const { values, positionals } = parseArgs({
      args: joined,
      options: spec,
      allowPositionals,
      strict: true,
    });
    return { values: values as ParsedArgs["values"], positionals, help: false };
  } catch (e) {
    // node:util explains some mistakes over several lines; the CLI prints one.
    const message = (e as Error).message.trim().replace(/\s*\n\s*/g, " ");
    throw new UsageError(`${command}: ${message} (see: kiln ${command} --help)`);
  }
}

/** The value as the user typed it: quoted when it is not a number at all. */
function shown(v: string): string {
  return v.trim() !== "" && !Number.isNaN(Number(v)) ? v : JSON.stringify(v);
}

/**
 * An integer option: `fallback` when absent, else an integer in `[min, max]`,
 * or a {@linkcode UsageError} like `--max-tokens must be a positive integer, got -5`.
 *
 * @example
 * ```ts
 * import { intOption } from "./args.ts";
 * intOption("8", "read-every", 8, 1); // 8
 * intOption(undefined, "read-every", 8, 1); // 8
 * ```
 */
export function intOption(
  v: string | boolean | undefined,
  name: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (v === undefined || typeof v === "boolean") return fallback;
  const want = max < Number.MAX_SAFE_INTEGER
    ? `an integer in [${min}, ${max}]`
    : min === 1
    ? "a positive integer"
    : `an integer >= ${min}`;
  const n = v.trim() === "" ? NaN : Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} must be ${want}, got ${shown(v)}`);
  }
  if (n > max) throw new UsageError(`--${name} must be ${want}, got ${shown(v)} (too large)`);
  return n;
}

/**
 * A number option: `fallback` when absent, else a finite number in the range
 * `[min, max]` (`(min, max]` with `minExclusive`), or a {@linkcode UsageError}
 * like `--top-p must be in (0, 1], got 2`.
 *
 * @example
 * ```ts
 * import { numberOption } from "./args.ts";
 * numberOption("0.9", "top-p", 1, { min: 0, minExclusive: true, max: 1 }); // 0.9
 * ```
 */
export function numberOption(
  v: string | boolean | undefined,
  name: string,
  fallback: number,
  range: { min: number; minExclusive?: boolean; max?: number },
): number {
  if (v === undefined || typeof v === "boolean") return fallback;
  const { min, minExclusive = false, max = Infinity } = range;
  const want = max === Infinity
    ? `a number ${minExclusive ? ">" : ">="} ${min}`
    : `in ${minExclusive ? "(" : "["}${min}, ${max}]`;
  const n = v.trim() === "" ? NaN : Number(v);
  if (!Number.isFinite(n) || n < min || (minExclusive && n === min) || n > max) {
    throw new UsageError(`--${name} must be ${want}, got ${shown(v)}`);
  }
  return n;
}

/**
 * One of a fixed set of words, or a {@linkcode UsageError} listing them.
 *
 * @example
 * ```ts
 * import { choiceOption } from "./args.ts";
 * choiceOption("lfu", "policy", ["lru", "lfu"] as const); // "lfu"
 * ```
 */
export function choiceOption<T extends string>(
  v: string | boolean | undefined,
  name: string,
  choices: readonly T[],
): T | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got ${shown(v)}`);
  }
  return v as T;
}

/**
 * A byte size option (`2GiB`, `512MiB`, `1.5GB`, a number of bytes) in bytes,
 * or a {@linkcode UsageError} naming the option.
 *
 * @example
 * ```ts
 * import { bytesOption } from "./args.ts";
 * bytesOption("2GiB", "gpu-memory"); // 2147483648
 * ```
 */
export function bytesOption(v: string | boolean | undefined, name: string): number | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  try {
    return parseBytes(v);
  } catch {
    throw new UsageError(
      `--${name} must be a byte size above 0 like 2GiB, 512MiB, 1.5GB or a number of bytes, got ${
        shown(v)
      }`,
    );
  }
}
