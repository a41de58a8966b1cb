/**
 * The command line's own error: a user mistake, printed as one `kiln: …` line
 * with exit status 1 and no stack trace.
 *
 * @module
 */

/**
 * A mistake of the user's: printed as one line, exit status 1, no stack trace.
 *
 * @example
 * ```ts
 * import { UsageError } from "./errors.ts";
 * const err = new UsageError("unknown command \"fly\" (try: kiln help)");
 * err.name; // "UsageError"
 * ```
 */
export class UsageError extends Error {
  /** Makes a usage error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
