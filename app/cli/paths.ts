/**
 * The paths the command line is given, checked before any long work: a model
 * folder that exists and may be read, a graph module that exists and exports
 * `build()`, an output file that may be written. A missing permission is said
 * to be one, naming the flag to add — never "does not exist".
 *
 * @module
 */

import { fileError, isPermissionError } from "../fs_errors.ts";
import { UsageError } from "./errors.ts";

/** The permission error for `path` itself (a folder or a file the user named). */
function noPermission(e: unknown, path: string, what: string): Error {
  if (e instanceof Deno.errors.NotCapable) {
    return new Deno.errors.NotCapable(
      `${path}: no permission to read ${what}; run with --allow-read=${path}`,
    );
  }
  return new Deno.errors.PermissionDenied(
    `${path}: the operating system refused to read ${what} (check its permissions)`,
  );
}

/**
 * `Deno.stat` of a path the user named: `undefined` when it does not exist, a
 * one-line permission error (naming `--allow-read=<path>`) when it may not be read.
 *
 * @example
 * ```ts ignore
 * import { statPath } from "./paths.ts";
 * const info = await statPath("./Mixtral-8x7B-v0.1", "a model folder");
 * ```
 */
export async function statPath(path: string, what: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (isPermissionError(e)) throw noPermission(e, path, what);
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw e;
  }
}

/**
 * A model folder argument: the path when it is a folder that may be read,
 * else one line saying it does not exist, is not a folder, or may not be read.
 *
 * @example
 * ```ts ignore
 * import { modelFolder } from "./paths.ts";
 * const dir = await modelFolder("./mamba-130m-hf", "generate --model");
 * ```
 */
export async function modelFolder(path: string, what: string): Promise<string> {
  const gguf = /\.gguf$/i.test(path);
  const info = await statPath(path, gguf ? "the GGUF file" : "the model folder");
  if (gguf ? !info?.isFile : !info?.isDirectory) {
    throw new UsageError(
      `${what}: ${path} ${
        info ? (gguf ? "is not a file" : "is not a folder") : "does not exist"
      } (expected a model folder or a .gguf file)`,
    );
  }
  return path;
}

/**
 * Whether a module's source exports `build` (or a default export), judged from
 * its text: `export function build`, `export const build`, `export { build }`,
 * `export { x as build }`, `export default`. `export * from` may re-export it,
 * so it counts as maybe (the import then decides).
 *
 * @example
 * ```ts
 * import { exportsBuild } from "./paths.ts";
 * exportsBuild("export function build() {}"); // true
 * exportsBuild("console.log('a demo');"); // false
 * ```
 */
export function exportsBuild(source: string): boolean {
  // Comments could hide or fake an export; drop them first.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
  return /\bexport\s+(async\s+)?function\s*\*?\s*build\b/.test(code) ||
    /\bexport\s+(const|let|var|class)\s+build\b/.test(code) ||
    /\bexport\s*\{[^}]*\bbuild\b[^}]*\}/.test(code) ||
    /\bexport\s+default\b/.test(code) ||
    /\bexport\s*\*\s*from\b/.test(code);
}

/**
 * A graph module argument of `inspect`: read its source and refuse at once,
 * without running it, when it exports no `build()`.
 *
 * @example
 * ```ts ignore
 * import { checkGraphModule } from "./paths.ts";
 * await checkGraphModule("examples/fused_mlp.ts");
 * ```
 */
export async function checkGraphModule(path: string): Promise<void> {
  let source: string;
  try {
    source = await Deno.readTextFile(path);
  } catch (e) {
    throw fileError(e, path, "a .ts module exporting build()");
  }
  if (!exportsBuild(source)) {
    throw new UsageError(
      `${path} exports no build() function (inspect takes a model folder, or a module ` +
        `exporting build() that returns a GraphBuilder or a Graph, e.g. examples/fused_mlp.ts)`,
    );
  }
}

/**
 * Asks for permission to write `path` before any long work (a prompt on a
 * terminal, else the grant as given), so a missing `--allow-write` is reported
 * at once, naming the flag, instead of after the run.
 *
 * @example
 * ```ts ignore
 * import { checkWritable } from "./paths.ts";
 * await checkWritable("usage.svg", "--heatmap");
 * ```
 */
export async function checkWritable(path: string, option: string): Promise<void> {
  const { state } = await Deno.permissions.request({ name: "write", path });
  if (state !== "granted") {
    throw new Deno.errors.NotCapable(
      `${option} ${path}: no permission to write it; run with --allow-write=${path}`,
    );
  }
}

/**
 * A corpus file as text; missing, unreadable, not UTF-8 or empty is an error
 * naming it. `keepBom` keeps a leading byte-order mark as text (Hugging Face's
 * tokenizer trainer reads lines as they are); otherwise it is dropped.
 *
 * @example
 * ```ts ignore
 * const { text, bytes } = await readCorpus("data/a.txt", false);
 * ```
 */
export async function readCorpus(
  path: string,
  keepBom: boolean,
): Promise<{ text: string; bytes: number }> {
  let data: Uint8Array;
  try {
    data = await Deno.readFile(path);
  } catch (e) {
    throw fileError(e, path, "a text corpus for --corpus");
  }
  if (data.length === 0) throw new RangeError(`${path}: the corpus is empty`);
  try {
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: keepBom }).decode(data);
    return { text, bytes: data.length };
  } catch {
    throw new TypeError(`${path}: the corpus is not UTF-8 text`);
  }
}

/**
 * Creates a command's `--out` folder (and its parents): a file in its place,
 * or a missing permission, is a one-line error naming the folder.
 *
 * @example
 * ```ts ignore
 * await makeOutputDir("run/", "train");
 * ```
 */
export async function makeOutputDir(dir: string, command: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new Deno.errors.NotADirectory(`${dir}: is a file, expected a folder for --out`);
    }
    throw outputWriteError(e, dir, command);
  }
}

/**
 * A permission error on a command's `--out` folder as one line naming the
 * flag to add (other errors as they are).
 *
 * @example
 * ```ts ignore
 * try { await Deno.writeTextFile(`${out}/x.json`, text); } catch (e) { throw outputWriteError(e, out, "train"); }
 * ```
 */
export function outputWriteError(e: unknown, dir: string, command: string): unknown {
  if (e instanceof Deno.errors.NotCapable) {
    return new Deno.errors.NotCapable(
      `${command}: --out ${dir}: no permission to write there; run with ` +
        `--allow-write=${dir} (or a folder above it)`,
    );
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    return new Deno.errors.PermissionDenied(
      `${command}: --out ${dir}: the operating system refused to write there`,
    );
  }
  return e;
}
