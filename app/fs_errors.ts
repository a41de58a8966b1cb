/**
 * File-system errors as users should read them: a missing file, a folder where a
 * file was expected, and above all a missing permission — which Deno reports as
 * `NotCapable` (or `PermissionDenied` from the OS) and which must never read as
 * "does not exist". Every loader opens files through {@linkcode fileError}.
 *
 * @module
 */

/**
 * True when `e` means Deno was not allowed to read (`--allow-read` missing or
 * too narrow) or the OS refused access.
 *
 * @example
 * ```ts
 * import { isPermissionError } from "./fs_errors.ts";
 * isPermissionError(new Deno.errors.NotCapable("read")); // true
 * ```
 */
export function isPermissionError(e: unknown): boolean {
  return e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied;
}

/**
 * Rethrows a file-system error on `path` as one clear line: a permission error
 * names the flag to add (`--allow-read=<dir>`), a missing file says so and what
 * was expected there; anything else passes through unchanged.
 *
 * @example
 * ```ts ignore
 * import { fileError } from "./fs_errors.ts";
 * try {
 *   await Deno.readTextFile("./model/config.json");
 * } catch (e) {
 *   throw fileError(e, "./model/config.json", "the model's config.json");
 * }
 * ```
 */
export function fileError(e: unknown, path: string, what: string): unknown {
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
    const err = new Deno.errors.NotCapable(
      e instanceof Deno.errors.NotCapable
        ? `${path}: no permission to read ${what}; run with --allow-read=${dir} (or a folder above it)`
        : `${path}: the operating system refused to read ${what} (check the file's permissions)`,
    );
    return err;
  }
  if (e instanceof Deno.errors.NotFound) {
    return new Deno.errors.NotFound(`${path}: not found (expected ${what})`);
  }
  if (e instanceof Deno.errors.IsADirectory) {
    return new Deno.errors.IsADirectory(`${path}: is a folder, expected ${what}`);
  }
  return e;
}

/**
 * Opens `path` for reading as a regular file and returns it with its size,
 * every failure one clear line naming `what` was expected ({@linkcode fileError}):
 * a folder opens for reading on Linux and its reads then fail with no path in
 * the message, and a device or pipe has no size to check offsets against. The
 * file is closed again when it is not a regular file.
 *
 * @example
 * ```ts ignore
 * import { openRegularFile } from "./fs_errors.ts";
 * const { file, size } = await openRegularFile("model.gguf", "a GGUF file");
 * file.close();
 * ```
 */
export async function openRegularFile(
  path: string,
  what: string,
): Promise<{ file: Deno.FsFile; size: number }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw fileError(e, path, what);
  }
  try {
    const stat = await file.stat();
    if (stat.isDirectory) {
      throw new Deno.errors.IsADirectory(`${path}: is a folder, expected ${what}`);
    }
    if (!stat.isFile) throw new TypeError(`${path}: is not a regular file, expected ${what}`);
    return { file, size: stat.size };
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * The JSON value in the file at `path`: file-system errors as {@linkcode fileError}
 * words them (`what`: what the file should be, e.g. "the model's config.json"),
 * text that is not JSON a SyntaxError naming the file; `undefined` when an
 * `optional` file does not exist.
 *
 * @example
 * ```ts ignore
 * import { readJsonFile } from "./fs_errors.ts";
 * const gen = await readJsonFile("./model/generation_config.json", "a generation_config.json", true);
 * ```
 */
export async function readJsonFile(
  path: string,
  what: string,
  optional = false,
): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (optional && e instanceof Deno.errors.NotFound) return undefined;
    throw fileError(e, path, what);
  }
  try {
    return parsePythonJson(text);
  } catch (e) {
    throw new SyntaxError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

const NON_FINITE = /^(-?Infinity|NaN)/;

/**
 * `JSON.parse`, also accepting the bare `NaN`, `Infinity` and `-Infinity` that
 * Python's `json.dump` writes (transformers 4 configs hold them, e.g. Mamba-2's
 * `time_step_limit`): each becomes `{"__float__": "Infinity"}`, the form
 * transformers 5 writes. Text that is not JSON either way throws JSON.parse's
 * error for the original text.
 *
 * @example
 * ```ts ignore
 * import { parsePythonJson } from "./fs_errors.ts";
 * parsePythonJson('{"limit": [0.0, Infinity]}'); // { limit: [0, { __float__: "Infinity" }] }
 * ```
 */
export function parsePythonJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    let out = "", from = 0, inString = false, changed = false;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (inString) {
        if (ch === "\\") i++;
        else if (ch === '"') inString = false;
        continue;
      }
      if (ch === '"') {
        inString = true;
        continue;
      }
      if (ch !== "N" && ch !== "I" && ch !== "-") continue;
      const m = NON_FINITE.exec(text.slice(i, i + 9));
      if (!m) continue;
      out += `${text.slice(from, i)}{"__float__":"${m[1]}"}`;
      from = i + m[1].length;
      i = from - 1;
      changed = true;
    }
    if (!changed) throw e;
    try {
      return JSON.parse(out + text.slice(from));
    } catch {
      throw e;
    }
  }
}
