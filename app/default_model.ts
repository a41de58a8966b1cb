/**
 * Where Kiln's default model lives: `assets/default_model/` in the repository, a
 * small Jamba-style hybrid trained on Moby-Dick by
 * `examples/train_default_model.ts`. `deno task demo` and `kiln generate`
 * without `--model` load it.
 *
 * @module
 */

/** The command that (re)creates the default model. */
export const DEFAULT_MODEL_COMMAND = "deno run -A examples/train_default_model.ts";

/**
 * The default model's folder as a local path, found beside this module (so it
 * does not depend on the working directory), or undefined where the module was
 * not loaded from disk (e.g. imported from a registry, which ships no weights).
 *
 * @example
 * ```ts
 * import { defaultModelPath } from "./default_model.ts";
 * defaultModelPath()?.endsWith("default_model"); // true when run from a checkout
 * ```
 */
export function defaultModelPath(): string | undefined {
  const url = new URL("../assets/default_model", import.meta.url);
  if (url.protocol !== "file:") return undefined;
  // A file URL's pathname is percent-encoded; decode it for the file system.
  const path = decodeURIComponent(url.pathname);
  return Deno.build.os === "windows" ? path.replace(/^\/([A-Za-z]:)/, "$1") : path;
}

/**
 * The default model's folder when it holds a checkpoint (a config.json), else
 * undefined (not trained yet, or not shipped with this copy of Kiln).
 *
 * @example
 * ```ts
 * import { findDefaultModel } from "./default_model.ts";
 * const dir = await findDefaultModel();
 * console.log(dir ?? "no default model");
 * ```
 */
export async function findDefaultModel(): Promise<string | undefined> {
  const dir = defaultModelPath();
  if (dir === undefined) return undefined;
  try {
    return (await Deno.stat(`${dir}/config.json`)).isFile ? dir : undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw e;
  }
}
