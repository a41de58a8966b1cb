/**
 * Time to first token of the demo model (examples/demo.ts's Jamba-style
 * config, random weights from `writeRandomCheckpoint`): `loadModel` +
 * `generateIds` against the ahead-of-time module's `load()` + `generateIds`
 * (`kiln build DIR`), each in a fresh process, cold (Mesa's shader cache off:
 * `MESA_SHADER_CACHE_DISABLE=true`) and warm (a shader cache a first run
 * filled). The clock is the child's `performance.now()`, which starts with
 * the process: Deno's startup and module loading are included.
 *
 * Usage (one command runs both sides in turn):
 *
 * ```sh
 * deno run -A bench/aot_start_bench.ts [--reps 3] [--prompt 64] [--max-seq 2048]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { DEMO_CONFIG } from "../examples/demo_config.ts";

// examples/demo.ts's model.
const CONFIG = DEMO_CONFIG;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    child: { type: "string" },
    target: { type: "string" },
    reps: { type: "string", default: "3" },
    prompt: { type: "string", default: "64" },
    "max-seq": { type: "string", default: "2048" },
  },
});
const promptLength = Number(values.prompt);
const maxSeq = Number(values["max-seq"]);
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 131 + 7) % CONFIG.vocab_size);

/** One measured start in this process: prints JSON on stdout. */
async function child(kind: string, target: string): Promise<void> {
  const t = () => performance.now();
  let model: { generateIds(ids: number[], o: object): AsyncIterable<number>; dispose(): void };
  let imported: number;
  if (kind.startsWith("jit")) {
    const { loadModel } = await import("../mod.ts");
    imported = t();
    // "jit-prefill": the prompt always through the prefill (as before cold prompts).
    const coldPromptTokens = kind === "jit-prefill" ? 0 : undefined;
    model = await loadModel(target, { quiet: true, maxSeq, coldPromptTokens });
  } else {
    const mod = await import(pathToFileURL(target).href);
    imported = t();
    // "aot": pipelines compiled on first use (the default); "aot-eager": all at load.
    model = await mod.load({ compile: kind === "aot-eager" });
  }
  const loaded = t();
  let first = 0;
  const ids: number[] = [];
  for await (const id of model.generateIds(prompt, { maxTokens: 8 })) {
    if (!ids.length) first = t();
    ids.push(id);
  }
  const done = t();
  const via = (model as { lastStats?: { promptRun?: string } }).lastStats?.promptRun;
  model.dispose();
  console.log(JSON.stringify({ imported, loaded, first, done, ids, via }));
}

interface Sample {
  imported: number;
  loaded: number;
  first: number;
  done: number;
  ids: number[];
  via?: string;
}

async function spawn(kind: string, target: string, env: Record<string, string>): Promise<Sample> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--child",
      kind,
      "--target",
      target,
      "--prompt",
      String(promptLength),
      "--max-seq",
      String(maxSeq),
    ],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(text);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const reps = Number(values.reps);
  const dir = await Deno.makeTempDir({ prefix: "kiln_aot_start_" });
  try {
    const ckpt = join(dir, "demo");
    await Deno.mkdir(ckpt);
    const written = await writeRandomCheckpoint(ckpt, CONFIG, { seed: 0 });
    const module = join(dir, "demo.aot.ts");
    const tb = performance.now();
    const build = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "build",
        ckpt,
        "-o",
        module,
        "--max-seq",
        String(maxSeq),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!build.success) throw new Error(new TextDecoder().decode(build.stderr));
    const buildMs = performance.now() - tb;
    const moduleBytes = (await Deno.stat(module)).size;
    const bundleBytes = (await Deno.stat(join(dir, "demo.kwb"))).size;
    console.log(
      `demo config: ${(written.bytes / 2 ** 20).toFixed(1)} MiB of f32 safetensors; ` +
        `kiln build took ${(buildMs / 1000).toFixed(1)} s: module ${
          (moduleBytes / 2 ** 20).toFixed(2)
        } MiB, bundle ${(bundleBytes / 2 ** 20).toFixed(1)} MiB; prompt ${promptLength} tokens, ` +
        `maxSeq ${maxSeq}; median of ${reps} fresh processes each, ms from process start`,
    );
    const base = { ...Deno.env.toObject(), NO_COLOR: "1" };
    const cache = join(dir, "mesa_cache");
    const modes: [string, Record<string, string>][] = [
      ["cold", { ...base, MESA_SHADER_CACHE_DISABLE: "true" }],
      ["warm", { ...base, MESA_SHADER_CACHE_DIR: cache, MESA_SHADER_CACHE_DISABLE: "false" }],
    ];
    const kinds: [string, string][] = [
      ["jit", ckpt],
      ["jit-prefill", ckpt],
      ["aot", module],
      ["aot-eager", module],
    ];
    let reference: string | undefined;
    // Fill Deno's transpile cache and (for warm) Mesa's shader cache first.
    for (const [kind, target] of kinds) await spawn(kind, target, modes[1][1]);
    console.log(
      "mode  side                       import  load    first token  8 tokens  prompt via",
    );
    for (const [mode, env] of modes) {
      for (const [kind, target] of kinds) {
        const samples: Sample[] = [];
        for (let i = 0; i < reps; i++) samples.push(await spawn(kind, target, env));
        for (const s of samples) {
          const ids = s.ids.join(",");
          reference ??= ids;
          if (ids !== reference) throw new Error(`${kind} generated ${ids}, expected ${reference}`);
        }
        const m = (k: keyof Omit<Sample, "ids" | "via">) =>
          median(samples.map((s) => s[k])).toFixed(0);
        const side = {
          jit: "loadModel + generateIds",
          "jit-prefill": "loadModel, coldPrompt 0",
          aot: "AOT load + generateIds",
          "aot-eager": "AOT load(compile) + gen.",
        }[kind]!;
        console.log(
          `${mode.padEnd(5)} ${side.padEnd(26)} ${m("imported").padStart(6)}  ${
            m("loaded").padStart(6)
          }  ${m("first").padStart(11)}  ${m("done").padStart(8)}  ${samples[0].via}`,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (values.child) await child(values.child, values.target!);
else await main();
