/**
 * `kiln inspect`: a model folder from its config.json alone (architecture,
 * parameters, kernels, expert placement), or a graph module's IR, fused kernel
 * plan and WGSL. The path is checked first: a missing one, one that may not be
 * read, or a module that exports no `build()` is refused before anything runs.
 *
 * @module
 */

import { loadGraphModule } from "./graph_module.ts";
import { prefillBuckets } from "../model/prefill_chunks.ts";
import { optimize } from "../../compiler/optimize.ts";
import { countParams } from "../../compiler/params.ts";
import { fuse } from "../../compiler/passes/fuse.ts";
import { buildPlan } from "../../compiler/plan.ts";
import { formatBytes } from "../../core/format.ts";
import { dumpGraph, type Graph } from "../../core/graph.ts";
import type { DeviceCaps } from "../../core/types.ts";
import { specOf } from "../../models/architectures/mod.ts";
import { routerHasBias } from "../../ops/moe/mod.ts";
import { buildCausalLM } from "../../models/causal_lm.ts";
import { clampsDelta } from "../../models/mamba2.ts";
import { expertWidth, hasAttention, hasMamba } from "../../models/config.ts";
import { requestDevice } from "../../runtime/device.ts";
import { compile } from "../../runtime/executable.ts";
import { readModelConfig } from "../model/source.ts";
import { modelFormats } from "../model/expert_budget.ts";
import { QUANTIZE_CHOICES, type QuantizeChoice } from "../../core/quant/formats.ts";
import { GGUF_MIXES, type GgufMix } from "../gguf/quant_mix.ts";
import type { WeightFormats } from "../../models/weights.ts";
import type { ModelConfig } from "../../models/config.ts";
import { describeDevicePlan } from "../experts/mod.ts";
import { describeExpertPlan } from "../experts/placement.ts";
import { planModelDevices, planModelExperts } from "../model/mod.ts";
import { bytesOption, choiceOption, intOption, type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { checkGraphModule, statPath } from "./paths.ts";
import { usage } from "./usage.ts";
import { applyTuning } from "../../runtime/tuning.ts";
import { cachedChoices, deviceKey, readTuningCache } from "../tuning/cache.ts";
import type { Plan } from "../../compiler/plan_types.ts";

/**
 * One line per matmul kernel of a plan: its index, label, the tile it got and why.
 *
 * @example
 * ```ts ignore
 * import { describeMatmulChoices } from "./inspect.ts";
 * console.log(describeMatmulChoices(exe.plan({ T: 128 })));
 * // kernel 0 matmul_rb8x16_wg1x16b_u1+relu: rb8x16_wg1x16b_u1 — default for cpu_raster: …
 * ```
 */
export function describeMatmulChoices(plan: Plan): string {
  const lines = plan.kernels.flatMap((k, i) =>
    k.op === "matmul"
      ? [
        `kernel ${i} ${k.label}: ${k.choice?.algorithm ?? "?"} — ${
          k.choice?.reason ?? "no choice recorded"
        }`,
      ]
      : []
  );
  return lines.length ? lines.join("\n") : "(no matmul kernels)";
}

const SPEC: OptionSpec = {
  dims: { type: "string" },
  wgsl: { type: "boolean" },
  "gpu-memory": { type: "string" },
  devices: { type: "string" },
  "host-memory": { type: "string" },
  dtype: { type: "string" },
  quantize: { type: "string" },
  cache: { type: "string" },
};

/**
 * Parses `--dims NAME=INT[,NAME=INT]`; a UsageError naming the bad part.
 *
 * @example
 * ```ts
 * import { parseDims } from "./inspect.ts";
 * parseDims("T=128,S=8"); // { T: 128, S: 8 }
 * ```
 */
export function parseDims(text: string | undefined): Record<string, number> {
  const dims: Record<string, number> = {};
  if (!text) return dims;
  for (const part of text.split(",")) {
    const m = part.trim().match(/^([A-Za-z_]\w*)=(\d+)$/);
    if (!m) throw new UsageError(`--dims must be NAME=INT[,NAME=INT], got "${part}"`);
    dims[m[1]] = Number(m[2]);
  }
  return dims;
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
  gpuMemory?: number,
  devices = 1,
  hostMemory?: number,
  dtype?: "f32" | "f16",
  quantize?: QuantizeChoice | GgufMix,
): Promise<void> {
  if (hostMemory !== undefined && (gpuMemory === undefined || devices > 1)) {
    throw new UsageError("inspect: --host-memory needs --gpu-memory and one device");
  }
  const cfg = await readModelConfig(dir);
  const formats = await modelFormats(dir, cfg, { quantize });
  const quantized = Object.keys(formats).length > 0;
  const maxSeq = 4096;
  // Kernels as the model runs them (quantized where it loads quantized); parameters
  // counted on the dense graph (a quantized weight is u32 words).
  const weightFormats = formats;
  const prefill = buildCausalLM(cfg, { mode: "prefill", maxSeq, maxNew: 1, weightFormats });
  const decode = buildCausalLM(cfg, { mode: "decode", maxSeq, maxNew: 1, weightFormats });
  const count = countParams(buildCausalLM(cfg, { mode: "prefill", maxSeq, maxNew: 1 }));
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
    `${hasAttention(p) ? "A" : ""}${hasMamba(p) ? "M" : ""}${
      p.ffn === "moe" ? "e" : p.ffn === "mlp" ? "f" : ""
    }`
  );
  console.log(`architecture: ${cfg.architecture} (${specOf(cfg).summary})`);
  console.log(`layers: ${cfg.layers}, hidden ${cfg.hidden}, vocab ${cfg.vocabSize}`);
  // "M": the family's recurrent mixer (Mamba, Mamba-2, Gated DeltaNet or a short conv).
  const recurrent = cfg.mamba?.gatedDelta
    ? "gated deltanet"
    : cfg.mamba?.shortConv
    ? "short conv"
    : "mamba";
  console.log(
    `layer pattern (A attention, M ${recurrent}, e MoE FFN, f dense FFN): ${pattern.join(" ")}`,
  );
  if (cfg.attention) {
    const a = cfg.attention;
    const windows = [
      ...new Set(
        cfg.pattern.flatMap((p) => hasAttention(p) ? [p.window ?? a.slidingWindow] : []),
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
      a.qkNorm
        ? (a.qkNormPerHead ? "QK-norm per head" : "QK-norm") +
          (a.qkNormAfterRope ? " after RoPE" : "")
        : "",
      a.clipQkv ? `clip_qkv ${a.clipQkv}` : "",
      a.sinks ? "sinks" : "",
      a.outputGate ? "σ-gated output" : "",
      a.rotaryDim ? `RoPE over ${a.rotaryDim} of ${a.headDim} values a head` : "",
      a.mla
        ? `latent attention (${
          a.mla.qLoraRank ? `query rank ${a.mla.qLoraRank}, ` : ""
        }key/value rank ${a.mla.kvLoraRank}, value dim ${a.mla.vDim}${
          a.mla.interleave ? ", interleaved RoPE" : ""
        }; cache ${a.mla.kvLoraRank + a.mla.ropeDim} values a token)`
        : "",
    ].filter((x) => x).join(", ");
    console.log(
      `attention: ${a.heads} heads, ${a.kvHeads} kv heads, head dim ${a.headDim}, rope ${rope}, ` +
        `sliding window ${windows.map((w) => w || "none").join(" / ")}${
          extras ? `, ${extras}` : ""
        }`,
    );
  }
  const ssd = cfg.mamba?.ssd, gdn = cfg.mamba?.gatedDelta, conv = cfg.mamba?.shortConv;
  if (conv) {
    console.log(
      `short conv: B·x through ${cfg.mamba!.convKernel} causal taps, gated by C` +
        (conv.bias ? ", biases" : ""),
    );
  } else if (gdn) {
    console.log(
      `gated deltanet: ${gdn.keyHeads} key heads × ${gdn.keyDim}, ${gdn.valueHeads} value heads × ` +
        `${gdn.valueDim} (state ${gdn.keyDim} × ${gdn.valueDim} a value head), conv ${
          cfg.mamba!.convKernel
        }, gated norm per head`,
    );
  } else if (ssd) {
    const [lo, hi] = ssd.dtLimit;
    console.log(
      `mamba-2: state ${cfg.mamba!.stateSize}, ${ssd.heads} heads × ${ssd.headDim} (inner ${
        cfg.mamba!.inner
      }), ${ssd.groups} B/C group${ssd.groups > 1 ? "s" : ""}, conv ${cfg.mamba!.convKernel}` +
        (ssd.gatedNorm === "gate_only"
          ? ", silu(z) gate, no norm"
          : `, ${ssd.gatedNorm === "norm_first" ? "norm then gate" : "gated norm"} over ${
            ssd.normGroups > 1 ? `${ssd.normGroups} groups` : "all channels"
          }`) +
        (ssd.projScale || ssd.inScale !== undefined ? ", μP factors" : "") +
        (clampsDelta(ssd.dtLimit) ? `, Δ clamped to [${lo}, ${hi}]` : ""),
    );
  } else if (cfg.mamba) {
    console.log(
      `mamba: state ${cfg.mamba.stateSize}, inner ${cfg.mamba.inner}, conv ${cfg.mamba.convKernel}, dt rank ${cfg.mamba.dtRank}` +
        (cfg.mamba.weightlessNorms
          ? `, weightless Δ/B/C norms (ε ${cfg.mamba.weightlessNorms.eps.toExponential()})`
          : cfg.mamba.innerNorms
          ? ", Δ/B/C norms"
          : ""),
    );
  }
  if (cfg.mamba && !gdn && !conv) {
    console.log(`selective scan, prefill of 512 tokens: ${await scanChoice(prefill)}`);
  }
  if (cfg.moe) {
    const m = cfg.moe, shared = m.sharedExpert, act = m.activation;
    const extras = [
      routerHasBias(m.router ?? "softmax_topk")
        ? `${m.router === "softmax_bias" ? "softmax" : "sigmoid"} routing with a selection bias${
          m.routedScaling !== undefined && m.routedScaling !== 1
            ? `, weights ×${m.routedScaling}`
            : ""
        }`
        : "",
      !routerHasBias(m.router ?? "softmax_topk") && m.routedScaling !== undefined &&
        m.routedScaling !== 1
        ? `weights ×${m.routedScaling}`
        : "",
      m.groups ? `within the best ${m.groups.kept} of ${m.groups.count} expert groups` : "",
      m.routerBias ? "router bias" : "",
      m.expertBias ? "expert biases" : "",
      act?.kind === "swiglu_oai"
        ? `clamped SwiGLU (α ${act.alpha}, limit ${act.limit})`
        : act
        ? "ungated relu² experts"
        : "",
      !act && cfg.hiddenAct ? `${cfg.hiddenAct} gates` : "",
      m.latent ? `latent experts of width ${m.latent} (of ${cfg.hidden})` : "",
    ].filter((x) => x);
    console.log(
      `moe: ${m.experts} experts, top-${m.topK}${
        m.normTopk ? " (renormalised)" : ""
      }, expert width ${expertWidth(cfg)}${
        shared ? `, shared expert width ${shared.ff}${shared.gated ? " (sigmoid-gated)" : ""}` : ""
      }${extras.length ? `, ${extras.join(", ")}` : ""}`,
    );
  }
  console.log(`parameters: ${b(count.total)} total, ${b(count.activePerToken)} active per token`);
  const at = quantize ?? (quantized ? "the file's formats" : undefined);
  console.log(
    `weights: ${formatBytes(count.total * 4)} at f32, ${formatBytes(count.total * 2)} at f16${
      at ? `, ${formatBytes(storedBytes(cfg, formats))} at ${at}` : ""
    }`,
  );
  const planOf = (g: typeof prefill, dims: Record<string, number>) =>
    buildPlan(fuse(optimize(g)), dims, COUNTING_CAPS);
  const decodePlan = planOf(decode, {});
  console.log(
    `kernels: ${decodePlan.kernels.length} per decode step, ${
      planOf(prefill, { T: 512 }).kernels.length
    } per prefill of 512 tokens`,
  );
  // A model compiles its decode step and one prefill per chunk length; kernels
  // that are the same WGSL (the same layer kind at the same widths) share a pipeline.
  const buckets = prefillBuckets(2048);
  const all = [decodePlan, ...buckets.map((T) => planOf(prefill, { T }))].flatMap((p) => p.kernels);
  const distinct = (ks: readonly { code: string }[]) => new Set(ks.map((k) => k.code)).size;
  console.log(
    `pipelines: ${distinct(all)} distinct for ${all.length} kernels (decode step: ${
      distinct(decodePlan.kernels)
    } for ${decodePlan.kernels.length}; prefill chunks of ${buckets.join(", ")} tokens)`,
  );
  // Placements are planned on this machine's adapter (its binding and buffer limits),
  // at the weights' dtype: f32 unless --dtype f16.
  const weightsAt = quantize ?? (quantized ? "the file's formats" : dtype ?? "f32");
  if (devices > 1) {
    console.log(`placement at ${weightsAt}:`);
    console.log(
      describeDevicePlan(
        await planModelDevices(dir, { devices, memoryBudget: gpuMemory, dtype, quantize }),
      ),
    );
  } else if (gpuMemory !== undefined) {
    console.log(`placement at ${weightsAt}:`);
    console.log(
      describeExpertPlan(
        await planModelExperts(dir, {
          memoryBudget: gpuMemory,
          hostMemoryBudget: hostMemory,
          dtype,
          quantize,
        }),
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

/**
 * Runs `kiln inspect` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { inspect } from "./inspect.ts";
 * await inspect(["examples/fused_mlp.ts", "--dims", "T=128"]);
 * ```
 */
export async function inspect(args: string[]): Promise<void> {
  const { values, positionals, help } = parseCommand("inspect", args, SPEC, true);
  if (help) return console.log(usage("inspect"));
  const file = positionals[0];
  if (!file) {
    throw new UsageError(
      "inspect: give a model folder or a graph module, e.g. examples/fused_mlp.ts",
    );
  }
  if (positionals.length > 1) {
    throw new UsageError(
      `inspect: one model folder or module expected, got also "${positionals[1]}"`,
    );
  }
  const info = await statPath(file, "a model folder or a graph module");
  if (!info) {
    throw new Deno.errors.NotFound(
      `${file}: not found (expected a model folder with config.json, or a .ts module exporting build())`,
    );
  }
  const misplaced = (keys: string[]) => keys.find((k) => values[k] !== undefined);
  if (info.isDirectory || (info.isFile && /\.gguf$/i.test(file))) {
    const wrong = misplaced(["dims", "wgsl", "cache"]);
    if (wrong) {
      throw new UsageError(`inspect: --${wrong} applies to a graph module, not to ${file}`);
    }
    const devices = intOption(values.devices, "devices", 1, 1, 64);
    const gpuMemory = bytesOption(values["gpu-memory"], "gpu-memory");
    const hostMemory = bytesOption(values["host-memory"], "host-memory");
    const dtype = values.dtype as string | undefined;
    if (dtype !== undefined && dtype !== "f32" && dtype !== "f16") {
      throw new UsageError(`inspect: --dtype must be f32 or f16, got "${dtype}"`);
    }
    const quantize = choiceOption(values.quantize, "quantize", [
      ...QUANTIZE_CHOICES,
      ...GGUF_MIXES,
    ]);
    return await inspectModel(file, gpuMemory, devices, hostMemory, dtype, quantize);
  }
  const wrong = misplaced(["gpu-memory", "host-memory", "devices", "dtype", "quantize"]);
  if (wrong) throw new UsageError(`inspect: --${wrong} applies to a model folder, not to ${file}`);
  const given = parseDims(values.dims as string | undefined);
  await checkGraphModule(file);
  const { graph, dims } = await loadGraphModule(file);
  Object.assign(dims, given);
  console.log("== IR");
  console.log(dumpGraph(graph));
  const device = await requestDevice();
  try {
    const cachePath = values.cache as string | undefined;
    let tuned = graph;
    if (cachePath !== undefined) {
      const choices = cachedChoices(await readTuningCache(cachePath), deviceKey(device));
      tuned = applyTuning(graph, choices, dims);
    }
    const exe = compile(tuned, device);
    try {
      console.log(`\n== plan on ${device.adapterName}`);
      console.log(exe.inspect(dims));
      console.log(`\n== matmul tiles${cachePath ? ` (cache ${cachePath})` : ""}`);
      console.log(describeMatmulChoices(exe.plan(dims)));
      if (values.wgsl) {
        exe.plan(dims).kernels.forEach((k, i) => {
          console.log(`\n== kernel ${i}: ${k.label}\n${k.code}`);
        });
      }
    } finally {
      exe.dispose();
    }
  } finally {
    device.destroy();
  }
}

/** Bytes of every weight as the model stores them with `formats` (f32 elsewhere). */
function storedBytes(cfg: ModelConfig, formats: WeightFormats): number {
  const g = buildCausalLM(cfg, { mode: "decode", maxSeq: 1, maxNew: 1, weightFormats: formats });
  let total = 0;
  for (const id of g.params.values()) {
    const v = g.values[id];
    total += (v.shape as number[]).reduce((a, b) => a * b, 1) * 4;
  }
  return total;
}
