/**
 * `kiln build FILE.ts -o OUT.ts`: compiles a graph module ahead of time into
 * one standalone TypeScript module that imports only Kiln's runtime, its
 * weights (when the module exports `params`) packed into a compressed bundle
 * beside it. `kiln build DIR -o OUT.ts` does the same for a Hugging Face model
 * folder: the decode step and every prefill chunk length, the weights in the
 * bundle. `--binary OUT` also compiles it with a small main into one
 * executable (`deno compile`). Arguments are checked before anything is
 * imported or planned.
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
  "max-seq": { type: "string" },
  "prefill-chunk": { type: "string" },
  dtype: { type: "string" },
  sampling: { type: "string" },
  binary: { type: "string" },
};

/** A positive integer option's value. */
function positiveInt(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`build: --${name} must be a positive integer, got "${text}"`);
  }
  return Number(text);
}

/**
 * The sampling settings `--sampling` asks to prebuild besides greedy:
 * `temperature=0.8,top-k=40,top-p=0.95`, several separated by `;` (missing
 * keys: temperature 1, top-k off, top-p off).
 *
 * @example
 * ```ts
 * import { parseSampling } from "./build.ts";
 * parseSampling("temperature=0.7,top-p=0.9"); // [{ temperature: 0.7, topK: 0, topP: 0.9 }]
 * ```
 */
export function parseSampling(text: string): { temperature: number; topK: number; topP: number }[] {
  return text.split(";").map((part) => {
    const s = { temperature: 1, topK: 0, topP: 1 };
    for (const kv of part.split(",")) {
      const m = kv.trim().match(/^(temperature|top-k|top-p)=(\d+(?:\.\d+)?)$/);
      const v = Number(m?.[2]);
      const ok = m &&
        (m[1] === "temperature" ? v > 0 : m[1] === "top-k" ? Number.isInteger(v) : v > 0 && v <= 1);
      if (!ok) {
        throw new UsageError(
          `build: --sampling must be temperature=T,top-k=K,top-p=P (T > 0, K an integer, ` +
            `0 < P <= 1; several joined by ;), got "${kv.trim()}"`,
        );
      }
      if (m[1] === "temperature") s.temperature = v;
      else if (m[1] === "top-k") s.topK = v;
      else s.topP = v;
    }
    return s;
  });
}

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
  const binary = values.binary as string | undefined;
  if (binary !== undefined && (binary === "" || binary.endsWith(".ts"))) {
    throw new UsageError(`build: --binary ${binary}: give the executable's path, e.g. out/model`);
  }
  if (binary !== undefined) await checkWritable(binary, "--binary");
  const modelOnly = ["max-seq", "prefill-chunk", "dtype", "sampling"].find((k) => k in values);
  if (info.isDirectory) {
    if (given) {
      throw new UsageError("build: --dims is for graph modules; a model folder's are fixed");
    }
    return await buildModel(file, out, name, values, binary);
  }
  if (modelOnly) throw new UsageError(`build: --${modelOnly} is for model folders, not ${file}`);
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
    if (binary !== undefined) {
      const { compileBinary } = await import("../build/binary.ts");
      const made = await compileBinary({
        module: out,
        bundle: written.bundle,
        kind: "graph",
        output: binary,
      });
      console.log(`built ${made.binary}: ${made.binary} --inputs '{"x": [...]}' prints outputs`);
    }
  } finally {
    device.destroy();
  }
}

/** `kiln build DIR`: a model folder's prefill and decode plans, weights in NAME.kwb. */
async function buildModel(
  dir: string,
  out: string,
  name: string,
  values: Record<string, unknown>,
  binary: string | undefined,
): Promise<void> {
  const maxSeq = positiveInt("max-seq", values["max-seq"] as string | undefined);
  const prefillChunk = positiveInt("prefill-chunk", values["prefill-chunk"] as string | undefined);
  const dtype = values.dtype as string | undefined;
  if (dtype !== undefined && dtype !== "f32" && dtype !== "f16") {
    throw new UsageError(`build: --dtype must be f32 or f16, got "${dtype}"`);
  }
  const sampling = values.sampling === undefined ? [] : parseSampling(values.sampling as string);
  if (values["no-bundle"]) {
    throw new UsageError(
      "build: --no-bundle: a model module always loads its weights from NAME.kwb",
    );
  }
  await checkWritable(out, "-o");
  await checkWritable(join(dirname(out), `${name}.kwb`), "-o (its weight bundle)");
  const { runtimeSpecifier } = await import("../build/build.ts");
  const { buildModelModule, writeModelModule } = await import("../build/build_model.ts");
  const device = await requestDevice();
  try {
    const built = await buildModelModule(dir, {
      name,
      caps: device.caps,
      runtime: runtimeSpecifier(out),
      maxSeq,
      prefillChunk,
      dtype,
      sampling,
    });
    const written = await writeModelModule(out, built, { check: !values["no-check"] });
    const { data } = built;
    console.log(
      `built ${written.module}: ${data.architecture}, prefill chunks ${
        data.prefillBuckets.join(", ")
      } and the decode step for ${data.variants.length} sampling setting(s), maxSeq ${data.maxSeq}, ` +
        `${built.shaders.length} distinct kernels, for ${device.adapterName}; weights in ${written.bundle}`,
    );
    if (binary !== undefined) {
      const { compileBinary } = await import("../build/binary.ts");
      const made = await compileBinary({
        module: out,
        bundle: written.bundle,
        kind: "model",
        output: binary,
      });
      console.log(`built ${made.binary}: ${made.binary} --prompt-ids 1,2,3 --max-tokens 8`);
    }
  } finally {
    device.destroy();
  }
}
