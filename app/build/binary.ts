/**
 * Standalone binaries of ahead-of-time modules (`kiln build … --binary OUT`):
 * a small main beside the module that runs it from the command line, compiled
 * with `deno compile` with the weight bundle embedded. `deno compile` needs a
 * base runtime (denort), which it downloads unless `DENORT_BIN` names one;
 * where it can get neither, the error says so and how to provide it.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { UsageError } from "../cli/errors.ts";
import { writeSource } from "./build.ts";

/**
 * Permissions the binary runs with (and the main's test runs it with): reading
 * its embedded bundle, and the environment the device setup reads.
 *
 * @example
 * ```ts
 * import { BINARY_PERMISSIONS } from "./binary.ts";
 * BINARY_PERMISSIONS.includes("--allow-read"); // true
 * ```
 */
export const BINARY_PERMISSIONS: readonly string[] = ["--allow-read", "--allow-env"];

/**
 * The source of the main of a model module's binary: `BIN --prompt-ids 1,2,3
 * [--max-tokens N] [--temperature T --top-k K --top-p P] [--seed S]` prints
 * the generated ids, comma-separated.
 *
 * @example
 * ```ts
 * import { modelMainSource } from "./binary.ts";
 * modelMainSource("tiny.aot.ts").includes('from "./tiny.aot.ts"'); // true
 * ```
 */
export function modelMainSource(moduleFile: string): string {
  const spec = JSON.stringify(`./${basename(moduleFile)}`);
  return `/**
 * Runs the ahead-of-time model module ${basename(moduleFile)} (made by \`kiln build --binary\`):
 * prints the ids generated after --prompt-ids, comma-separated.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { load } from ${spec};

const USAGE = "usage: --prompt-ids 1,2,3 [--max-tokens 16] [--temperature T] [--top-k K] [--top-p P] [--seed S]";

function fail(message: string): never {
  console.error(message);
  Deno.exit(1);
}

let values;
try {
  ({ values } = parseArgs({
    args: Deno.args,
    options: {
      "prompt-ids": { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
    },
  }));
} catch (e) {
  fail(\`\${(e as Error).message}; \${USAGE}\`);
}
const num = (name: string, text: string | undefined): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) fail(\`--\${name} must be a number, got "\${text}"; \${USAGE}\`);
  return n;
};
const prompt = values["prompt-ids"]?.split(",").map((t) => num("prompt-ids", t)!);
if (!prompt) fail(USAGE);
const model = await load();
try {
  const ids: number[] = [];
  for await (
    const id of model.generateIds(prompt, {
      maxTokens: num("max-tokens", values["max-tokens"]) ?? 16,
      temperature: num("temperature", values.temperature),
      topK: num("top-k", values["top-k"]),
      topP: num("top-p", values["top-p"]),
      seed: num("seed", values.seed),
    })
  ) ids.push(id);
  console.log(ids.join(","));
} catch (e) {
  if (e instanceof RangeError || e instanceof TypeError) fail(e.message);
  throw e;
} finally {
  model.dispose();
}
`;
}

/**
 * The source of the main of a graph module's binary: `BIN --inputs JSON`
 * (an object of input names to number arrays) prints the outputs as JSON.
 *
 * @example
 * ```ts
 * import { graphMainSource } from "./binary.ts";
 * graphMainSource("mlp.ts", "mlp.kwb").includes("mlp.kwb"); // true
 * ```
 */
export function graphMainSource(moduleFile: string, bundle?: string): string {
  const spec = JSON.stringify(`./${basename(moduleFile)}`);
  const load = bundle
    ? `await load({ bundle: await Deno.readFile(new URL(${
      JSON.stringify(`./${bundle}`)
    }, import.meta.url)) })`
    : "await load()";
  return `/**
 * Runs the ahead-of-time module ${basename(moduleFile)} (made by \`kiln build --binary\`):
 * \`--inputs '{"x": [1, 2]}'\` in, its outputs as JSON out.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { load } from ${spec};

const { values } = parseArgs({ args: Deno.args, options: { inputs: { type: "string" } } });
let inputs;
try {
  inputs = JSON.parse(values.inputs ?? "{}");
} catch (e) {
  console.error(\`--inputs must be a JSON object: \${(e as Error).message}\`);
  Deno.exit(1);
}
const runner = ${load};
try {
  const outputs = await runner.run(inputs);
  const shown: Record<string, unknown> = {};
  for (const [name, t] of Object.entries(outputs)) {
    shown[name] = { shape: t.shape, data: Array.from(t.data as ArrayLike<number>) };
  }
  console.log(JSON.stringify(shown));
} catch (e) {
  console.error((e as Error).message);
  Deno.exit(1);
} finally {
  runner.dispose();
}
`;
}

/** The denort archive `deno compile` downloads for this Deno, named in the error. */
function denortUrl(stderr: string): string {
  const found = /https:\/\/dl\.deno\.land\/\S+?\.zip/.exec(stderr)?.[0];
  return found ??
    `https://dl.deno.land/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`;
}

/**
 * Writes the main beside `moduleFile` (`NAME.main.ts`) and compiles it with
 * `deno compile` into `output`, the bundle embedded. A missing base runtime
 * (no network, no `DENORT_BIN`) is a {@linkcode UsageError} saying how to
 * provide one; other failures throw with `deno compile`'s message.
 *
 * @example
 * ```ts ignore
 * import { compileBinary } from "./binary.ts";
 * await compileBinary({ module: "out/tiny.aot.ts", bundle: "out/tiny.kwb", kind: "model", output: "out/tiny" });
 * ```
 */
export async function compileBinary(options: {
  readonly module: string;
  readonly bundle?: string;
  readonly kind: "model" | "graph";
  readonly output: string;
}): Promise<{ main: string; binary: string }> {
  const main = join(dirname(options.module), basename(options.module).replace(/\.ts$/, ".main.ts"));
  const bundleName = options.bundle ? basename(options.bundle) : undefined;
  const source = options.kind === "model"
    ? modelMainSource(options.module)
    : graphMainSource(options.module, bundleName);
  await writeSource(main, source, { check: false });
  const denort = Deno.env.get("DENORT_BIN");
  if (denort !== undefined) {
    const info = await Deno.stat(denort).catch(() => undefined);
    if (!info?.isFile) {
      throw new UsageError(
        `build: --binary: DENORT_BIN=${denort} is not a file; point it at an unzipped denort ` +
          `of Deno ${Deno.version.deno} (${denortUrl("")})`,
      );
    }
  }
  const args = [
    "compile",
    "--quiet",
    "--no-check",
    // Not the project's deno.json: its lockfile would embed every npm package it
    // lists (ts-morph, tokenizers…), ~250 MB; the runtime names its own imports.
    "--no-config",
    ...BINARY_PERMISSIONS,
    ...(options.bundle ? ["--include", options.bundle] : []),
    "--output",
    options.output,
    main,
  ];
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    if (denort === undefined && /denort|base binary|dl\.deno\.land/i.test(err)) {
      throw new UsageError(
        `build: --binary: deno compile cannot get its base runtime: it downloads denort from ` +
          `${denortUrl(err)}, which cannot be reached from here, and DENORT_BIN is not set; ` +
          `fetch that zip where you can, unzip it, and run again with DENORT_BIN=/path/to/denort ` +
          `(the module ${options.module} is built; ${main} runs it with deno run ` +
          `${BINARY_PERMISSIONS.join(" ")})`,
      );
    }
    throw new Error(`deno compile of ${main} failed:\n${err}`);
  }
  return { main, binary: options.output };
}
