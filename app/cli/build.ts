/**
 * `kiln build FILE.ts -o OUT.ts`: compiles a graph module ahead of time into
 * one standalone TypeScript module that imports only Kiln's runtime, its
 * weights (when the module exports `params`) packed into a compressed bundle
 * beside it. Arguments are checked before anything is imported or planned.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { requestDevice } from "../../runtime/device.ts";
import { type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { loadGraphModule } from "./graph_module.ts";
import { checkWritable, exportsBuild, statPath } from "./paths.ts";
import { usage } from "./usage.ts";
import { fileError } from "../fs_errors.ts";

const SPEC: OptionSpec = {
  o: { type: "string" },
  out: { type: "string" },
  dims: { type: "string" },
  name: { type: "string" },
  "no-bundle": { type: "boolean" },
  "no-check": { type: "boolean" },
};

/**
 * The bindings `--dims` asks for: `T=1,64,256` prebuilds T at each value;
 * several symbols, separated by `;`, are combined (`T=1,64;S=128` → two).
 *
 * @example
 * ```ts
 * import { parseDimSets } from "./build.ts";
 * parseDimSets("T=1,64;S=8"); // [{ T: 1, S: 8 }, { T: 64, S: 8 }]
 * ```
 */
export function parseDimSets(text: string): Record<string, number>[] {
  let sets: Record<string, number>[] = [{}];
  for (const part of text.split(";")) {
    const m = part.trim().match(/^([A-Za-z_]\w*)=(\d+(?:,\d+)*)$/);
    if (!m) {
      throw new UsageError(
        `build: --dims must be NAME=INT[,INT…][;NAME=INT…], e.g. T=1,64,256; got "${part}"`,
      );
    }
    const values = [...new Set(m[2].split(",").map(Number))];
    sets = sets.flatMap((s) => values.map((v) => ({ ...s, [m[1]]: v })));
  }
  return sets;
}

/**
 * Runs `kiln build` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { build } from "./build.ts";
 * await build(["examples/fused_mlp.ts", "-o", "fused_mlp.aot.ts", "--dims", "T=1,64"]);
 * ```
 */
export async function build(args: string[]): Promise<void> {
  const { values, positionals, help } = parseCommand("build", args, SPEC, true);
  if (help) return console.log(usage("build"));
  const file = positionals[0];
  if (!file) throw new UsageError("build: give a graph module, e.g. examples/fused_mlp.ts");
  if (positionals.length > 1) {
    throw new UsageError(`build: one graph module expected, got also "${positionals[1]}"`);
  }
  const out = (values.o ?? values.out) as string | undefined;
  if (!out) throw new UsageError("build: give the output module with -o OUT.ts");
  if (!out.endsWith(".ts")) throw new UsageError(`build: -o ${out}: the output must be a .ts file`);
  const given = values.dims === undefined ? undefined : parseDimSets(values.dims as string);
  const name = (values.name as string | undefined) ?? basename(out).replace(/(\.aot)?\.ts$/, "");
  if (!/^[\w.-]+$/.test(name)) {
    throw new UsageError(`build: --name must be letters, digits, _ . or -, got "${name}"`);
  }
  const info = await statPath(file, "the graph module");
  if (!info) {
    throw new Deno.errors.NotFound(`${file}: not found (expected a .ts module exporting build())`);
  }
  if (info.isDirectory) {
    throw new UsageError(
      `build: ${file} is a folder; building a model folder is not supported yet (give a graph module)`,
    );
  }
  let source: string;
  try {
    source = await Deno.readTextFile(file);
  } catch (e) {
    throw fileError(e, file, "a .ts module exporting build()");
  }
  if (!exportsBuild(source)) {
    throw new UsageError(
      `build: ${file} exports no build() function (a module exporting build() that returns ` +
        `a GraphBuilder or a Graph, e.g. examples/fused_mlp.ts)`,
    );
  }
  await checkWritable(out, "-o");
  const mod = await loadGraphModule(file);
  const dims = given ?? [mod.dims];
  const bundle = mod.params && !values["no-bundle"] ? `${name}.kwb` : undefined;
  if (bundle) await checkWritable(join(dirname(out), bundle), "-o (its weight bundle)");
  // ts-morph is large: only `kiln build` loads it.
  const { buildModule, runtimeSpecifier, writeModule } = await import("../build/build.ts");
  const device = await requestDevice();
  try {
    const built = buildModule(mod.graph, {
      name,
      caps: device.caps,
      dims,
      runtime: runtimeSpecifier(out),
      source: basename(file),
      bundle,
    });
    const written = await writeModule(out, built, {
      params: bundle ? mod.params : undefined,
      check: !values["no-check"],
    });
    const plans = built.data.plans.map((p) =>
      Object.entries(p.dims).map(([k, v]) => `${k}=${v}`).join(",") || "no dims"
    );
    console.log(
      `built ${written.module}: ${plans.length} plan(s) (${plans.join("; ")}), ` +
        `${built.data.shaders.length} distinct kernels, for ${device.adapterName}` +
        (written.bundle ? `; weights in ${written.bundle}` : ""),
    );
  } finally {
    device.destroy();
  }
}
