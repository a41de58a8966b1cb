/**
 * Ahead-of-time builds: a graph planned for a set of bindings of its symbolic
 * dims on a device, emitted as one standalone TypeScript module that imports
 * only Kiln's runtime, then formatted and type-checked; its weights either
 * passed to `load()` or packed into one compressed bundle beside it.
 *
 * @module
 */

import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { GraphBuilder } from "../../compiler/builder.ts";
import { optimize } from "../../compiler/optimize.ts";
import { fuse } from "../../compiler/passes/fuse.ts";
import { buildPlan } from "../../compiler/plan.ts";
import type { Graph } from "../../core/graph.ts";
import type { TensorData } from "../../core/host.ts";
import type { DimBindings } from "../../core/shape.ts";
import type { DeviceCaps } from "../../core/types.ts";
import { checkParams, graphInterface } from "../../runtime/bind.ts";
import { type ConstantData, planToData, type PrebuiltData } from "../../runtime/plan_data.ts";
import { type BundleTensor, encodeBundle } from "./bundle_writer.ts";
import { emitModule } from "./emit_module.ts";

/**
 * Options of {@linkcode buildModule}.
 *
 * @example
 * ```ts
 * import type { BuildOptions } from "./build.ts";
 * const options: BuildOptions = { name: "mlp", dims: [{ T: 1 }, { T: 64 }], caps: undefined! };
 * ```
 */
export interface BuildOptions {
  /** The module's name (its doc comment, the default bundle file name). */
  readonly name: string;
  /** Limits and features of the device the plans are for (`requestDevice()`'s `caps`). */
  readonly caps: DeviceCaps;
  /** The bindings of the symbolic dims to prebuild, one plan each (default: none, `[{}]`). */
  readonly dims?: readonly DimBindings[];
  /** Module specifier of the runtime entry the module imports (default: {@linkcode runtimeSpecifier}). */
  readonly runtime?: string;
  /** Where the graph came from, for the module's doc comment. */
  readonly source?: string;
  /** File name of the weight bundle written beside the module, when weights are packed. */
  readonly bundle?: string;
  /** Fuse kernels (default true). */
  readonly fusion?: boolean;
}

/**
 * A built module: its source and the data embedded in it.
 *
 * @example
 * ```ts ignore
 * import { buildModule } from "./build.ts";
 * const { source, data } = buildModule(graph, { name: "mlp", caps, dims: [{ T: 64 }] });
 * ```
 */
export interface BuiltModule {
  /** TypeScript source of the module. */
  readonly source: string;
  /** Interface, plans, shaders and constants it embeds. */
  readonly data: PrebuiltData;
  /** The optimised graph the plans were made from. */
  readonly graph: Graph;
  /** File name of the weight bundle the module loads, when weights are packed. */
  readonly bundle?: string;
}

/** This checkout's root, when Kiln runs from local files (not from a registry). */
function localRoot(): string | undefined {
  const url = new URL("../../", import.meta.url);
  return url.protocol === "file:" ? fileURLToPath(url) : undefined;
}

/**
 * How a module written to `outFile` imports the runtime Kiln itself came from:
 * a relative path into this checkout, or `jsr:@kiln/kiln@VERSION/runtime` when
 * Kiln was imported from JSR, else the runtime entry's URL.
 *
 * @example
 * ```ts ignore
 * import { runtimeSpecifier } from "./build.ts";
 * runtimeSpecifier("/work/main/out/mlp.ts"); // "../runtime/mod.ts" from a checkout
 * ```
 */
export function runtimeSpecifier(outFile: string): string {
  const entry = new URL("../../runtime/mod.ts", import.meta.url);
  if (entry.protocol === "file:") {
    const rel = relative(dirname(resolve(outFile)), fileURLToPath(entry)).replaceAll("\\", "/");
    return rel.startsWith(".") ? rel : `./${rel}`;
  }
  const jsr = /^https:\/\/jsr\.io\/(@[^/]+\/[^/]+)\/([^/]+)\//.exec(entry.href);
  return jsr ? `jsr:${jsr[1]}@${jsr[2]}/runtime` : entry.href;
}

/**
 * Plans `graph` for every binding in `options.dims` on a device with
 * `options.caps`, as data: the optimised graph and its prebuilt data. Every
 * kernel's WGSL goes into `shaders` (each distinct text once), which several
 * graphs may share (a model's prefill and decode graphs).
 *
 * @example
 * ```ts ignore
 * import { prebuildGraph } from "./build.ts";
 * const shaders: string[] = [];
 * const { data } = prebuildGraph(g, { name: "mlp", caps, dims: [{ T: 1 }] }, shaders);
 * ```
 */
export function prebuildGraph(
  graph: Graph | GraphBuilder,
  options: BuildOptions,
  shaders: string[] = [],
): { data: PrebuiltData; graph: Graph } {
  const g = optimize(graph instanceof GraphBuilder ? graph.build() : graph);
  const schedule = fuse(g, { enabled: options.fusion ?? true });
  const iface = graphInterface(g);
  const bindings = options.dims?.length ? options.dims : [{}];
  const seen = new Set<string>();
  const plans = [];
  for (const given of bindings) {
    const dims: Record<string, number> = {};
    for (const s of iface.symbols) if (s in given) dims[s] = given[s];
    const missing = iface.symbols.filter((s) => !(s in dims));
    if (missing.length) {
      throw new RangeError(
        `Build of "${options.name}": dims ${JSON.stringify(given)} leave ${
          missing.join(", ")
        } unbound (the graph's symbols: ${iface.symbols.join(", ")}); give a value for each`,
      );
    }
    const key = JSON.stringify(Object.entries(dims).sort());
    if (seen.has(key)) continue;
    seen.add(key);
    plans.push(planToData(buildPlan(schedule, dims, options.caps), shaders));
  }
  const constants: ConstantData[] = [];
  const wanted = new Set(plans.flatMap((p) => p.slots.flatMap((s) => s.value ?? [])));
  for (const v of [...wanted].sort((a, b) => a - b)) {
    const data = g.constants.get(v);
    if (!data) throw new Error(`internal: constant %${v} has no data`);
    constants.push({ value: v, dtype: g.values[v].dtype, data: Array.from(data) });
  }
  const data: PrebuiltData = {
    format: 1,
    name: options.name,
    interface: iface,
    shaders,
    plans,
    constants,
    caps: { ...options.caps },
  };
  return { data, graph: g };
}

/**
 * Plans `graph` for every binding in `options.dims` on a device with
 * `options.caps` and emits the module's source. Shape errors, unbound symbols
 * and bindings that do not fit the device are thrown here, at build time.
 *
 * @example
 * ```ts ignore
 * import { GraphBuilder, requestDevice } from "@kiln/kiln";
 * import { buildModule } from "./build.ts";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 8]).silu());
 * const { caps } = await requestDevice();
 * const { source } = buildModule(g, { name: "silu", caps, dims: [{ T: 1 }, { T: 64 }] });
 * ```
 */
export function buildModule(graph: Graph | GraphBuilder, options: BuildOptions): BuiltModule {
  const { data, graph: g } = prebuildGraph(graph, options);
  const source = emitModule(data, {
    runtime: options.runtime ?? "@kiln/kiln/runtime",
    source: options.source,
    bundle: options.bundle,
  });
  return { source, data, graph: g, bundle: options.bundle };
}

/**
 * The bytes of a weight bundle of every parameter of a built module, checked
 * against its interface (a missing, unknown or mis-sized parameter throws).
 *
 * @example
 * ```ts ignore
 * import { bundleParams } from "./build.ts";
 * const bytes = bundleParams(built, { w: new Float32Array(128) });
 * ```
 */
export function bundleParams(built: BuiltModule, params: Record<string, TensorData>): Uint8Array {
  const iface = built.data.interface;
  const checked = new Map(checkParams(iface, params));
  const tensors: BundleTensor[] = iface.params.map((p) => {
    const data = checked.get(p.name);
    if (!data) throw new TypeError(`Param "${p.name}" has no value to pack into the bundle`);
    return { name: p.name, dtype: p.dtype, shape: p.shape as number[], data };
  });
  return encodeBundle(tensors);
}

/** Runs `deno` with `args` (stdin `input`); throws its stderr on failure. */
async function deno(args: string[], what: string, input?: string): Promise<string> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args,
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const child = cmd.spawn();
  if (input !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(input));
    await w.close();
  }
  const out = await child.output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${what} failed:\n${err}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/**
 * Options of {@linkcode writeModule}.
 *
 * @example
 * ```ts
 * import type { WriteOptions } from "./build.ts";
 * const options: WriteOptions = { check: true };
 * ```
 */
export interface WriteOptions {
  /** Parameters to pack into the bundle (`built` must have been made with `bundle`). */
  readonly params?: Record<string, TensorData>;
  /** Type-check the written module with `deno check` (default true). */
  readonly check?: boolean;
}

/**
 * Writes a built module to `outFile` formatted with `deno fmt`, its weight
 * bundle beside it when it has one, then type-checks the module with `deno
 * check` (against this checkout's deno.json when the runtime is local, for
 * its import map). Needs read, write and run (`deno`) permissions.
 *
 * @example
 * ```ts ignore
 * import { buildModule, runtimeSpecifier, writeModule } from "./build.ts";
 * const built = buildModule(graph, { name: "mlp", caps, runtime: runtimeSpecifier("out/mlp.ts") });
 * await writeModule("out/mlp.ts", built);
 * ```
 */
export async function writeModule(
  outFile: string,
  built: BuiltModule,
  options: WriteOptions = {},
): Promise<{ module: string; bundle?: string }> {
  const bundleName = built.bundle;
  if (options.params && !bundleName) {
    throw new TypeError("writeModule: params given, but the module was built without a bundle");
  }
  if (bundleName && !options.params) {
    throw new TypeError(`writeModule: the module loads ${bundleName}: give the params to pack`);
  }
  const bundle = bundleName && options.params ? bundleParams(built, options.params) : undefined;
  await writeSource(outFile, built.source, { check: false });
  let bundlePath: string | undefined;
  if (bundle && bundleName) {
    bundlePath = resolve(dirname(outFile), bundleName);
    await Deno.writeFile(bundlePath, bundle);
  }
  if (options.check ?? true) await checkSource(outFile);
  return { module: outFile, bundle: bundlePath };
}

/**
 * Writes TypeScript `source` to `outFile` formatted with `deno fmt`, then
 * (unless `check` is false) type-checks it with `deno check`.
 *
 * @example
 * ```ts ignore
 * import { writeSource } from "./build.ts";
 * await writeSource("out/main.ts", 'console.log("hi");\n');
 * ```
 */
export async function writeSource(
  outFile: string,
  source: string,
  options: { check?: boolean } = {},
): Promise<void> {
  const formatted = await deno(
    ["fmt", "--ext", "ts", "--line-width", "100", "-"],
    `deno fmt of ${outFile}`,
    source,
  );
  await Deno.writeTextFile(outFile, formatted);
  if (options.check ?? true) await checkSource(outFile);
}

/**
 * Type-checks a written module with `deno check` (against this checkout's
 * deno.json when Kiln runs from local files, for its import map).
 *
 * @example
 * ```ts ignore
 * import { checkSource } from "./build.ts";
 * await checkSource("out/tiny.aot.ts");
 * ```
 */
export async function checkSource(file: string): Promise<void> {
  await deno(["check", "--quiet", ...configArgs(), file], `deno check of ${file}`);
}

/**
 * `--config DENO_JSON` of this checkout when Kiln runs from local files (its
 * import map resolves the runtime's npm imports), else nothing.
 *
 * @example
 * ```ts ignore
 * import { configArgs } from "./build.ts";
 * configArgs(); // ["--config", "/work/main/deno.json"] from a checkout
 * ```
 */
export function configArgs(): string[] {
  const root = localRoot();
  return root ? ["--config", resolve(root, "deno.json")] : [];
}
