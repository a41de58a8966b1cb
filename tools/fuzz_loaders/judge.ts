/**
 * What counts as a correct outcome of one fuzz case: success, or an error of a
 * class Kiln uses (TypeError, RangeError, SyntaxError, a `Deno.errors.*`) whose
 * message is Kiln's own — it starts with the file's path, is a readable length,
 * and carries none of the JavaScript engine's phrases that mean a loader tripped
 * over the input instead of refusing it.
 *
 * @module
 */

/** The result of one case, as the worker reports it. */
export interface CaseResult {
  /** `ok`: loaded (and used); `error`: refused with a proper error; `failure`: a bug. */
  outcome: "ok" | "error" | "failure";
  /** The error's class (`RangeError`, `Deno.errors.NotFound`, …). */
  errorClass?: string;
  /** The error's message (cut to 300 characters). */
  message?: string;
  /** What the mutation did (seed, operations). */
  what: string;
  /** Why this is a bug, for `failure`. */
  failure?: string;
}

/** Engine phrases: a message containing one is not an error Kiln meant to raise. */
export const FOREIGN =
  /Cannot read propert|is not a function|is not iterable|Maximum call stack|Invalid array length|Array buffer allocation|Invalid string length|Invalid typed array length|\bundefined\b|\[object Object\]|Cannot convert|is not defined/;

/** Longest message accepted: a huge value must be cut, not echoed. */
export const MAX_MESSAGE = 2000;

const DENO_ERRORS = Object.entries(Deno.errors) as [string, new () => Error][];

/** The class of `e` as reports name it. */
export function errorClass(e: unknown): string {
  for (const [name, C] of DENO_ERRORS) if (e instanceof C) return `Deno.errors.${name}`;
  if (e instanceof Error) return e.constructor.name;
  return `non-Error ${typeof e}`;
}

/**
 * Judges an error thrown by a loader: `prefixes` are the paths a Kiln message may
 * start with (the file, or the model folder).
 */
export function judgeError(e: unknown, prefixes: readonly string[], what: string): CaseResult {
  const cls = errorClass(e);
  const message = e instanceof Error ? String(e.message) : String(e);
  const short = message.length > 300 ? message.slice(0, 300) + "…" : message;
  const base = { errorClass: cls, message: short, what };
  const kilnClass = cls.startsWith("Deno.errors.") ||
    ["TypeError", "RangeError", "SyntaxError"].includes(cls);
  if (!kilnClass) return { ...base, outcome: "failure", failure: `error class ${cls}` };
  if (!prefixes.some((p) => message.startsWith(p))) {
    return { ...base, outcome: "failure", failure: "message does not start with the file's path" };
  }
  const foreign = message.match(FOREIGN);
  if (foreign) {
    return { ...base, outcome: "failure", failure: `engine message (${foreign[0]})` };
  }
  if (message.length > MAX_MESSAGE) {
    return {
      ...base,
      outcome: "failure",
      failure: `message is ${message.length} characters (over ${MAX_MESSAGE})`,
    };
  }
  return { ...base, outcome: "error" };
}

/** A failure found while checking a success (the loader accepted something wrong). */
export function wrongSuccess(what: string, failure: string): CaseResult {
  return { outcome: "failure", what, failure };
}
