/**
 * The `kiln` command line.
 *
 * ```sh
 * deno run -A cli.ts inspect examples/fused_mlp.ts --dims T=128 [--wgsl]
 * ```
 *
 * `inspect FILE` imports a module exporting `build()` (returning a `GraphBuilder` or a
 * `Graph`) and optional `dims`, and prints the IR, the fused kernel plan with buffer
 * sizes and peak bytes, and with `--wgsl` every kernel's source. User mistakes print
 * one line and exit with status 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { GraphBuilder } from "./compiler/builder.ts";
import { dumpGraph, type Graph } from "./compiler/graph.ts";
import { compile } from "./compiler/compile.ts";
import { requestDevice } from "./runtime/device.ts";

const USAGE = `usage: kiln <command> [options]

commands:
  inspect FILE [--dims T=128,B=2] [--wgsl]   IR, fused kernel plan, buffers and WGSL of a graph module
  help                                       this text`;

/** A mistake of the user's: printed as one line, exit status 1, no stack trace. */
export class UsageError extends Error {
  /** Makes a usage error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function parseDims(text: string | undefined): Record<string, number> {
  const dims: Record<string, number> = {};
  if (!text) return dims;
  for (const part of text.split(",")) {
    const m = part.trim().match(/^([A-Za-z_]\w*)=(\d+)$/);
    if (!m) throw new UsageError(`--dims: expected NAME=INT[,NAME=INT], got "${part}"`);
    dims[m[1]] = Number(m[2]);
  }
  return dims;
}

async function loadGraph(file: string): Promise<{ graph: Graph; dims: Record<string, number> }> {
  let mod: Record<string, unknown>;
  try {
    const url = new URL(file, `file://${Deno.cwd()}/`).href;
    mod = await import(url);
  } catch (e) {
    throw new UsageError(`cannot import ${file}: ${(e as Error).message.split("\n")[0]}`);
  }
  const build = (mod.build ?? mod.default) as (() => unknown) | undefined;
  if (typeof build !== "function") throw new UsageError(`${file} exports no build() function`);
  const made = build();
  const graph = made instanceof GraphBuilder ? made.build() : (made as Graph);
  if (!graph || !("nodes" in graph)) {
    throw new UsageError(`${file}: build() must return a GraphBuilder or a Graph`);
  }
  return { graph, dims: (mod.dims as Record<string, number>) ?? {} };
}

async function inspect(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { dims: { type: "string" }, wgsl: { type: "boolean", default: false } },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (!file) throw new UsageError("inspect: give a graph module, e.g. examples/fused_mlp.ts");
  const { graph, dims } = await loadGraph(file);
  Object.assign(dims, parseDims(values.dims));
  console.log("== IR");
  console.log(dumpGraph(graph));
  const device = await requestDevice();
  const exe = compile(graph, device);
  console.log(`\n== plan on ${device.adapterName}`);
  console.log(exe.inspect(dims));
  if (values.wgsl) {
    exe.plan(dims).kernels.forEach((k, i) => {
      console.log(`\n== kernel ${i}: ${k.label}\n${k.code}`);
    });
  }
  exe.dispose();
  device.destroy();
}

/**
 * Runs the CLI with `args`; returns the exit status.
 *
 * @example
 * ```ts ignore
 * import { main } from "@kiln/kiln/cli";
 * Deno.exit(await main(["inspect", "model.ts"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  try {
    switch (cmd) {
      case "inspect":
        await inspect(rest);
        return 0;
      case undefined:
      case "help":
      case "--help":
        console.log(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown command "${cmd}" (try: kiln help)`);
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof TypeError || e instanceof RangeError) {
      console.error(`kiln: ${e.message}`);
      return 1;
    }
    if (e instanceof Error && /No WebGPU adapter/.test(e.message)) {
      console.error(`kiln: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
