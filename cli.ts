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
import { dumpGraph, type Graph } from "./core/graph.ts";

import { requestDevice } from "./runtime/device.ts";
import { loadModel, planModelDevices, planModelExperts } from "./app/model/mod.ts";
import { describeDevicePlan } from "./app/experts/mod.ts";
import { describeExpertPlan, writeRoutingStats } from "./app/experts/placement.ts";
import { usageHeatmapSvg } from "./app/experts/mod.ts";
import { specOf } from "./models/architectures/mod.ts";
import { readConfig } from "./app/config_file.ts";
import { expertWidth } from "./models/config.ts";
import { buildCausalLM } from "./models/causal_lm.ts";
import { countParams } from "./compiler/params.ts";
import { compile } from "./runtime/executable.ts";
import { optimize } from "./compiler/optimize.ts";
import { setDebugSource } from "./core/debug.ts";
import { fuse } from "./compiler/passes/fuse.ts";
import { buildPlan } from "./compiler/plan.ts";
import { formatBytes } from "./core/format.ts";
import type { DeviceCaps } from "./core/types.ts";

// KILN_DEBUG=1 prints each kernel's WGSL and GPU time (read only when output may be printed).
setDebugSource(() => Deno.env.get("KILN_DEBUG") === "1");

const USAGE = `usage: kiln <command> [options]

commands:
  generate --model DIR --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]
           [--top-p P] [--seed S] [--max-seq N] [--read-every N] [--stats] [--quiet]
           [--gpu-memory 2GiB] [--policy lru|lfu|stream|naive] [--heatmap FILE.svg]
           [--save-routing-stats] [--devices N] [--host-memory 8GiB]
           [--prefetch temporal|lookahead|both]
                                     stream text from a Hugging Face model folder; --gpu-memory
                                     caches (lru, lfu) or streams experts that do not fit;
                                     --host-memory keeps the rest in the checkpoint files;
                                     --devices N splits the experts over N GPU devices
  inspect DIR [--gpu-memory 2GiB] [--host-memory 8GiB] [--devices N]
                                     a model from config.json alone: architecture, layer pattern,
                                     parameters total vs active per token, bytes, kernels per step;
                                     with --gpu-memory, the expert placement plan; with
                                     --devices N, the split of the experts over N devices
  inspect FILE [--dims T=128] [--wgsl]
                                     IR, fused kernel plan, buffers and WGSL of a graph module
  bench DIR [--prompt-tokens N] [--tokens N]
                                     prefill and decode tokens/s of a model folder
  help                               this text`;

/**
 * A mistake of the user's: printed as one line, exit status 1, no stack trace.
 *
 * @example
 * ```ts
 * import { UsageError } from "@kiln/kiln/cli";
 * const err = new UsageError("unknown command \"fly\" (try: kiln help)");
 * err.name; // "UsageError"
 * ```
 */
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

function num(
  v: string | undefined,
  name: string,
  fallback: number,
  integer = true,
  range: [number, number] = [-Infinity, Infinity],
): number {
  if (v === undefined) return fallback;
  const n = v.trim() === "" ? NaN : Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${name}: expected ${integer ? "an integer" : "a number"}, got "${v}"`);
  }
  if (n < range[0] || n > range[1]) {
    const [lo, hi] = range;
    const want = hi === Infinity ? `>= ${lo}` : `between ${lo} and ${hi}`;
    throw new UsageError(`--${name}: must be ${want}, got ${v}`);
  }
  return n;
}

/** A model folder argument: a one-line error when it is not a folder at all. */
async function modelDir(path: string, what: string): Promise<string> {
  if (!(await isDir(path))) {
    const exists = await Deno.stat(path).then(() => true, () => false);
    throw new UsageError(
      `${what}: ${path} ${exists ? "is not a folder" : "does not exist"} (expected a model folder)`,
    );
  }
  return path;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function generate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      prompt: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
      "max-seq": { type: "string" },
      "read-every": { type: "string" },
      stats: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      "gpu-memory": { type: "string" },
      policy: { type: "string" },
      heatmap: { type: "string" },
      "save-routing-stats": { type: "boolean", default: false },
      devices: { type: "string" },
      "host-memory": { type: "string" },
      prefetch: { type: "string" },
    },
  });
  if (!values.model) throw new UsageError("generate: --model DIR is required");
  const PREFETCH = ["temporal", "lookahead", "both"] as const;
  const prefetch = values.prefetch as (typeof PREFETCH)[number] | undefined;
  if (prefetch !== undefined && !PREFETCH.includes(prefetch)) {
    throw new UsageError(
      `generate: --prefetch must be one of ${PREFETCH.join(", ")}, got "${prefetch}"`,
    );
  }
  const devices = num(values.devices, "devices", 1, true, [1, 64]);
  const POLICIES = ["lru", "lfu", "stream", "naive"] as const;
  const policy = values.policy as (typeof POLICIES)[number] | undefined;
  if (policy !== undefined && !POLICIES.includes(policy)) {
    throw new UsageError(
      `generate: --policy must be one of ${POLICIES.join(", ")}, got "${policy}"`,
    );
  }
  if (values.prompt === undefined) throw new UsageError("generate: --prompt TEXT is required");
  // Every option is checked before the (possibly long) load, so a typo fails at once.
  const options = {
    maxTokens: num(values["max-tokens"], "max-tokens", 64, true, [1, Infinity]),
    temperature: num(values.temperature, "temperature", 0, false, [0, Infinity]),
    topK: num(values["top-k"], "top-k", 0, true, [0, Infinity]),
    topP: num(values["top-p"], "top-p", 1, false, [Number.MIN_VALUE, 1]),
    seed: num(values.seed, "seed", 0, true, [0, 2 ** 32 - 1]),
    readEvery: num(values["read-every"], "read-every", 8, true, [1, Infinity]),
  };
  const maxSeq = num(values["max-seq"], "max-seq", 2048, true, [1, Infinity]);
  const model = await loadModel(await modelDir(values.model, "generate --model"), {
    quiet: values.quiet,
    maxSeq,
    memoryBudget: values["gpu-memory"],
    expertPolicy: policy,
    devices,
    hostMemoryBudget: values["host-memory"],
    prefetch,
  });
  const enc = new TextEncoder();
  for await (
    const text of model.generate(values.prompt, options)
  ) await Deno.stdout.write(enc.encode(text));
  await Deno.stdout.write(enc.encode("\n"));
  if (values.stats && model.lastStats) {
    const s = model.lastStats;
    console.error(
      `[kiln] pipelines compiled in ${s.compileMs.toFixed(0)} ms; ` +
        `prompt ${s.promptTokens} tokens, prefill ${s.prefillMs.toFixed(0)} ms; ` +
        `${s.generatedTokens} tokens generated, the ${
          Math.max(0, s.generatedTokens - 1)
        } after the first in ${s.decodeMs.toFixed(0)} ms (${
          s.generatedTokens > 1 ? ((s.generatedTokens - 1) / (s.decodeMs / 1000)).toFixed(1) : "–"
        } tok/s), ${s.readbacks} host round trips`,
    );
    if (model.experts) console.error(`[kiln] ${model.experts.report()}`);
    if (model.parallel) console.error(`[kiln] ${model.parallel.report()}`);
  }
  if (model.experts && values.heatmap) {
    await Deno.writeTextFile(values.heatmap, usageHeatmapSvg(model.experts.stats.usage));
    console.error(`[kiln] expert usage heatmap written to ${values.heatmap}`);
  }
  if (model.experts && values["save-routing-stats"]) {
    await writeRoutingStats(values.model, model.experts.routingStats(), true);
  }
  model.dispose();
}

/** Capabilities used when counting kernels without a device: no binding-size splits. */
const COUNTING_CAPS: DeviceCaps = {
  maxStorageBuffers: 8,
  maxBindingSize: 2 ** 52,
  maxInvocations: 256,
  maxWorkgroupStorage: 16384,
  maxWorkgroupsPerDim: 65535,
  offsetAlignment: 256,
  f16: true,
  subgroups: false,
  cpuCores: 0,
};

async function inspectModel(
  dir: string,
  gpuMemory?: string,
  devices = 1,
  hostMemory?: string,
): Promise<void> {
  if (hostMemory !== undefined && (gpuMemory === undefined || devices > 1)) {
    throw new UsageError("inspect: --host-memory needs --gpu-memory and one device");
  }
  const cfg = await readConfig(dir);
  const maxSeq = 4096;
  const prefill = buildCausalLM(cfg, { mode: "prefill", maxSeq, maxNew: 1 });
  const decode = buildCausalLM(cfg, { mode: "decode", maxSeq, maxNew: 1 });
  const count = countParams(prefill);
  // Billions for real models; tiny test models would all print "0.00B".
  const b = (n: number) =>
    n >= 1e9
      ? `${(n / 1e9).toFixed(2)}B`
      : n >= 1e6
      ? `${(n / 1e6).toFixed(2)}M`
      : n >= 1e3
      ? `${(n / 1e3).toFixed(1)}K`
      : `${n}`;
  const pattern = cfg.pattern.map((p) =>
    `${p.mixer === "attention" ? "A" : "M"}${p.ffn === "moe" ? "e" : p.ffn === "mlp" ? "f" : ""}`
  );
  console.log(`architecture: ${cfg.architecture} (${specOf(cfg).summary})`);
  console.log(`layers: ${cfg.layers}, hidden ${cfg.hidden}, vocab ${cfg.vocabSize}`);
  console.log(`layer pattern (A attention, M mamba, e MoE FFN, f dense FFN): ${pattern.join(" ")}`);
  if (cfg.attention) {
    const a = cfg.attention;
    const windows = [
      ...new Set(
        cfg.pattern.flatMap((p) => p.mixer === "attention" ? [p.window ?? a.slidingWindow] : []),
      ),
    ];
    const rope = !a.ropeTheta
      ? "none"
      : a.rope
      ? `θ ${a.ropeTheta}, ${a.rope.type} scaling ×${a.rope.factor}`
      : `θ ${a.ropeTheta}`;
    const extras = [
      a.qkvBias ? "q/k/v biases" : "",
      a.outBias ? "o bias" : "",
      a.qkNorm ? "QK-norm" : "",
      a.clipQkv ? `clip_qkv ${a.clipQkv}` : "",
    ].filter((x) => x).join(", ");
    console.log(
      `attention: ${a.heads} heads, ${a.kvHeads} kv heads, head dim ${a.headDim}, rope ${rope}, ` +
        `sliding window ${windows.map((w) => w || "none").join(" / ")}${
          extras ? `, ${extras}` : ""
        }`,
    );
  }
  if (cfg.mamba) {
    console.log(
      `mamba: state ${cfg.mamba.stateSize}, inner ${cfg.mamba.inner}, conv ${cfg.mamba.convKernel}, dt rank ${cfg.mamba.dtRank}`,
    );
    console.log(`selective scan, prefill of 512 tokens: ${await scanChoice(prefill)}`);
  }
  if (cfg.moe) {
    const shared = cfg.moe.sharedExpert;
    console.log(
      `moe: ${cfg.moe.experts} experts, top-${cfg.moe.topK}${
        cfg.moe.normTopk ? " (renormalised)" : ""
      }, expert width ${expertWidth(cfg)}${
        shared ? `, shared expert width ${shared.ff}${shared.gated ? " (sigmoid-gated)" : ""}` : ""
      }`,
    );
  }
  console.log(`parameters: ${b(count.total)} total, ${b(count.activePerToken)} active per token`);
  console.log(
    `weights: ${formatBytes(count.total * 4)} at f32, ${formatBytes(count.total * 2)} at f16`,
  );
  const kernels = (g: typeof prefill, dims: Record<string, number>) =>
    buildPlan(fuse(optimize(g)), dims, COUNTING_CAPS).kernels.length;
  console.log(
    `kernels: ${kernels(decode, {})} per decode step, ${
      kernels(prefill, { T: 512 })
    } per prefill of 512 tokens`,
  );
  if (devices > 1) {
    console.log(
      describeDevicePlan(await planModelDevices(dir, { devices, memoryBudget: gpuMemory })),
    );
  } else if (gpuMemory !== undefined) {
    console.log(
      describeExpertPlan(
        await planModelExperts(dir, { memoryBudget: gpuMemory, hostMemoryBudget: hostMemory }),
      ),
    );
  }
}

/**
 * Which scan algorithm the compiler picks for a 512-token prefill on this machine's
 * adapter, and why (from the plan's kernel label); as on a GPU when there is none.
 */
async function scanChoice(prefill: Graph): Promise<string> {
  let caps = COUNTING_CAPS;
  let where = "no WebGPU adapter here: as on a GPU";
  try {
    const dev = await requestDevice();
    caps = dev.caps;
    where = dev.adapterName;
    dev.device.destroy();
  } catch {
    // No adapter: keep the GPU-like counting caps.
  }
  const choice = buildPlan(fuse(optimize(prefill)), { T: 512 }, caps).kernels
    .find((k) => k.op === "selective_scan" && k.choice !== undefined)?.choice;
  return `${choice ? `[${choice.algorithm}] ${choice.reason}` : "none"} (${where})`;
}

async function bench(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      "prompt-tokens": { type: "string" },
      tokens: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
    allowPositionals: true,
  });
  const dir = positionals[0];
  if (!dir) throw new UsageError("bench: give a model folder");
  const P = num(values["prompt-tokens"], "prompt-tokens", 128, true, [1, Infinity]);
  const N = num(values.tokens, "tokens", 32, true, [2, Infinity]);
  const model = await loadModel(await modelDir(dir, "bench"), {
    quiet: values.quiet,
    maxSeq: P + N + 1,
  });
  const ids = Array.from({ length: P }, (_, i) => (i * 7919 + 1) % model.config.vocabSize);
  // Warm-up with the same prompt length: kernels are specialised per T, so a
  // shorter warm-up would leave the timed prefill compiling pipelines.
  for await (const _ of model.generateIds(ids, { maxTokens: 2 })) { /* compile */ }
  let n = 0;
  for await (const _ of model.generateIds(ids, { maxTokens: N, readEvery: 8 })) n++;
  const s = model.lastStats!;
  console.log(
    `prefill: ${P} tokens in ${s.prefillMs.toFixed(0)} ms = ${
      (P / s.prefillMs * 1000).toFixed(1)
    } tok/s (until the first sampled token is on the host)`,
  );
  console.log(
    `decode: ${n - 1} tokens in ${s.decodeMs.toFixed(0)} ms = ${
      ((n - 1) / (s.decodeMs / 1000)).toFixed(1)
    } tok/s, ${s.readbacks} host round trips (ids read back every 8 tokens)`,
  );
  model.dispose();
}

async function inspect(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      dims: { type: "string" },
      wgsl: { type: "boolean", default: false },
      "gpu-memory": { type: "string" },
      devices: { type: "string" },
      "host-memory": { type: "string" },
    },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (!file) {
    throw new UsageError(
      "inspect: give a model folder or a graph module, e.g. examples/fused_mlp.ts",
    );
  }
  if (await isDir(file)) {
    const devices = num(values.devices, "devices", 1, true, [1, 64]);
    return await inspectModel(file, values["gpu-memory"], devices, values["host-memory"]);
  }
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
      case "generate":
        await generate(rest);
        return 0;
      case "bench":
        await bench(rest);
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
    if (
      e instanceof UsageError || e instanceof TypeError || e instanceof RangeError ||
      e instanceof SyntaxError || e instanceof Deno.errors.NotFound ||
      e instanceof Deno.errors.NotADirectory || e instanceof Deno.errors.IsADirectory ||
      e instanceof Deno.errors.PermissionDenied
    ) {
      // One line, always: some messages (node:util parseArgs hints) span several.
      console.error(`kiln: ${e.message.trim().replace(/\s*\n\s*/g, " ")}`);
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
