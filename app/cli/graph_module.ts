/**
 * A graph module the command line is given: a `.ts` file exporting `build()`
 * (returning a `GraphBuilder` or a `Graph`) and optionally `dims` (default
 * bindings of its symbolic dims) and `params` (its weights: an object or a
 * function returning one), imported as the user's own code.
 *
 * @module
 */

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { GraphBuilder } from "../../compiler/builder.ts";
import type { Graph } from "../../core/graph.ts";
import type { TensorData } from "../../core/host.ts";
import { UsageError } from "./errors.ts";

/**
 * What a graph module exports.
 *
 * @example
 * ```ts ignore
 * import { loadGraphModule } from "./graph_module.ts";
 * const { graph, dims, params } = await loadGraphModule("examples/fused_mlp.ts");
 * ```
 */
export interface GraphModule {
  /** The graph `build()` made. */
  readonly graph: Graph;
  /** Its exported `dims`, or `{}`. */
  readonly dims: Record<string, number>;
  /** Its exported `params` (called when a function), if any. */
  readonly params?: Record<string, TensorData>;
}

/**
 * Imports `file` and makes its graph; an import failure, a missing `build()`
 * or one returning something else is a one-line error naming the file.
 *
 * @example
 * ```ts ignore
 * import { loadGraphModule } from "./graph_module.ts";
 * const { graph } = await loadGraphModule("examples/fused_mlp.ts");
 * ```
 */
export async function loadGraphModule(file: string): Promise<GraphModule> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(resolve(file)).href);
  } catch (e) {
    const message = (e as Error).message.split("\n")[0];
    // Importing reads every local module the graph module imports.
    const denied = /Requires read access to "([^"]+)"/.exec(message);
    if (denied) {
      throw new Deno.errors.NotCapable(
        `${file} imports ${denied[1]}, which needs --allow-read=${
          denied[1]
        } (or a folder above it)`,
      );
    }
    throw new UsageError(`cannot import ${file}: ${message}`);
  }
  const build = (mod.build ?? mod.default) as (() => unknown) | undefined;
  if (typeof build !== "function") throw new UsageError(`${file} exports no build() function`);
  const made = build();
  const graph = made instanceof GraphBuilder ? made.build() : (made as Graph);
  if (!graph || !("nodes" in graph)) {
    throw new UsageError(`${file}: build() must return a GraphBuilder or a Graph`);
  }
  const params = typeof mod.params === "function" ? await mod.params() : mod.params;
  if (params !== undefined && (typeof params !== "object" || params === null)) {
    throw new UsageError(`${file}: params must be an object of parameter values (or a function)`);
  }
  return {
    graph,
    dims: (mod.dims as Record<string, number>) ?? {},
    params: params as Record<string, TensorData> | undefined,
  };
}
