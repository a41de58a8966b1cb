/**
 * Expert placement for `loadModel`'s budgets, from config.json (and routing
 * statistics) alone: the fixed bytes (non-expert weights, caches, activations)
 * and one expert's bytes, then the plan for a GPU memory budget
 * ({@linkcode planForBudget}) or the split across devices
 * ({@linkcode planForDevices}).
 *
 * @module
 */

import type { QuantFormat } from "../../core/quant/formats.ts";
import { quantWords } from "../../ops/quant/mod.ts";
import type { WeightFormats } from "../../models/weights.ts";
import { isGgufPath, openWeights, readModelConfig, sideFolder } from "./source.ts";
import { unifyExpertFormats, weightFormatsFor } from "./weights.ts";
import { byteSize, paddedBytes } from "../../core/dtype.ts";
import { expertWeights, moePrefix } from "../../models/architectures/mod.ts";
import { buildCausalLM } from "../../models/causal_lm.ts";
import { expertInputWidth, expertWidth, type ModelConfig } from "../../models/config.ts";
import { defaultDevice, type KilnDevice } from "../../runtime/device.ts";
import { compile } from "../../runtime/executable.ts";
import {
  type ExpertPlan,
  parseBytes,
  planExperts,
  readRoutingStats,
  type RoutingStats,
} from "../experts/placement.ts";
import { type DevicePlan, planDevices } from "../experts/device_plan.ts";
import { buildRemoteExperts } from "../experts/parallel.ts";
import type { ExpertFormats } from "../experts/tiers.ts";
import type { LoadOptions } from "./load.ts";
import { checkWeightsFit } from "./capacity.ts";

/**
 * Indices of the MoE layers.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../../models/architectures/mod.ts";
 * import { moeLayers } from "./expert_budget.ts";
 * const cfg = parseConfig({
 *   architectures: ["MixtralForCausalLM"], vocab_size: 64, hidden_size: 32, intermediate_size: 64,
 *   num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
 *   num_local_experts: 4, num_experts_per_tok: 2,
 * });
 * moeLayers(cfg); // [0, 1]
 * ```
 */
export function moeLayers(cfg: ModelConfig): number[] {
  return cfg.pattern.flatMap((p, i) => (p.ffn === "moe" ? [i] : []));
}

/**
 * The expert placement `loadModel` would use for `options.memoryBudget`, from
 * config.json (and `kiln_routing_stats.json`) alone, without loading weights.
 *
 * @example
 * ```ts ignore
 * const plan = await planModelExperts("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB" });
 * console.log(describeExpertPlan(plan));
 * ```
 */
export async function planModelExperts(dir: string, options: LoadOptions): Promise<ExpertPlan> {
  if (options.memoryBudget === undefined) {
    throw new TypeError("planModelExperts: memoryBudget is required");
  }
  const cfg = await readModelConfig(dir);
  const device = options.device ?? await defaultDevice();
  return await planForBudget(dir, cfg, device, options, await modelFormats(dir, cfg, options));
}

/**
 * The split of experts across `options.devices` devices that `loadModel` would
 * use (with `options.memoryBudget` per device), from config.json (and
 * `kiln_routing_stats.json`) alone, without loading weights.
 *
 * @example
 * ```ts ignore
 * import { describeDevicePlan, planModelDevices } from "@kiln/kiln";
 * const plan = await planModelDevices("./Mixtral-8x7B-v0.1", { devices: 2, memoryBudget: "24GiB" });
 * console.log(describeDevicePlan(plan));
 * ```
 */
export async function planModelDevices(dir: string, options: LoadOptions): Promise<DevicePlan> {
  const n = typeof options.devices === "number" ? options.devices : options.devices?.length;
  if (n === undefined || !Number.isInteger(n) || n < 2) {
    throw new RangeError(`planModelDevices: devices must be 2 or more, got ${n}`);
  }
  const cfg = await readModelConfig(dir);
  const given = options.device ?? (Array.isArray(options.devices) ? options.devices[0] : undefined);
  const device = given ?? await defaultDevice();
  return await planForDevices(dir, cfg, n, device, options, await modelFormats(dir, cfg, options));
}

/**
 * The expert plan for `options.memoryBudget`: non-expert parameters plus the
 * larger of the decode plan's and a prefill plan's buffers (KV caches, states,
 * activations) come first; what remains holds expert slots.
 *
 * @example
 * ```ts ignore
 * import { planForBudget } from "./expert_budget.ts";
 * const dir = "./Mixtral-8x7B-v0.1";
 * const plan = await planForBudget(dir, await readConfig(dir), device, { memoryBudget: "24GiB" });
 * ```
 */
export async function planForBudget(
  dir: string,
  cfg: ModelConfig,
  device: KilnDevice,
  options: LoadOptions,
  formats: WeightFormats = {},
): Promise<ExpertPlan> {
  const budget = parseBytes(options.memoryBudget!);
  const z = await expertSizing(dir, cfg, device, options, "memoryBudget", formats);
  return planExperts({
    layers: z.layers,
    experts: z.experts,
    topK: cfg.moe!.topK,
    expertBytes: z.expertBytes,
    fixedBytes: z.fixedBytes,
    budget,
    stats: z.stats,
    hostBudget: options.hostMemoryBudget === undefined
      ? undefined
      : parseBytes(options.hostMemoryBudget),
  });
}

/**
 * The split of experts across `n` devices `loadModel` would use
 * (`options.devices`, with `options.memoryBudget` per device). With quantized
 * `formats` (unified across MoE layers, see `unifyExpertFormats`), experts and
 * non-expert weights count in their block bytes.
 *
 * @example
 * ```ts ignore
 * import { planForDevices } from "./expert_budget.ts";
 * const dir = "./Mixtral-8x7B-v0.1";
 * const plan = await planForDevices(dir, await readConfig(dir), 2, device, {});
 * ```
 */
export async function planForDevices(
  dir: string,
  cfg: ModelConfig,
  n: number,
  device: KilnDevice,
  options: LoadOptions,
  formats: WeightFormats = {},
): Promise<DevicePlan> {
  const z = await expertSizing(dir, cfg, device, options, "devices", formats);
  const dtype = options.dtype ?? "f32";
  // Another device's activations: its experts-only plans for a prompt and a token.
  const remote = compile(
    buildRemoteExperts({
      d: expertInputWidth(cfg),
      ff: expertWidth(cfg),
      experts: z.experts,
      topK: cfg.moe!.topK,
      slots: 1,
      dtype,
      formats: z.formats,
    }),
    device,
  );
  const remoteFixed = Math.max(
    remote.plan({ T: z.prefillTokens }).peakBytes,
    remote.plan({ T: 1 }).peakBytes,
  );
  remote.dispose();
  return planDevices({
    devices: n,
    layers: z.layers,
    experts: z.experts,
    expertBytes: z.expertBytes,
    formats: z.formats,
    fixedBytes: z.fixedBytes,
    remoteFixedBytes: remoteFixed,
    budget: options.memoryBudget === undefined ? undefined : parseBytes(options.memoryBudget),
    stats: z.stats,
  });
}

/**
 * Sizes for expert placement: non-expert parameters plus the larger of the
 * decode plan's and a prefill plan's buffers (KV caches, states, activations)
 * are the fixed bytes; one expert's bytes; routing statistics.
 */
async function expertSizing(
  dir: string,
  cfg: ModelConfig,
  device: KilnDevice,
  options: LoadOptions,
  what: string,
  formats: WeightFormats,
): Promise<{
  layers: number;
  experts: number;
  expertBytes: number;
  formats?: ExpertFormats;
  fixedBytes: number;
  prefillTokens: number;
  stats?: RoutingStats;
}> {
  const layers = moeLayers(cfg);
  if (!cfg.moe || layers.length === 0) {
    throw new TypeError(`loadModel: ${what} applies to MoE models; ${dir} has no MoE layers`);
  }
  if (device.kind !== "gpu") throw new TypeError(`loadModel: ${what} needs a GPU device`);
  const maxSeq = options.maxSeq ?? 2048, dtype = options.dtype ?? "f32";
  // Impossible sizes are refused here, not by the planner compiling their graphs.
  checkWeightsFit(cfg, device, {
    dtype,
    budgeted: options.memoryBudget !== undefined,
    parallel: what === "devices",
    formats,
  });
  const E = cfg.moe.experts;
  const sizing = { maxSeq, maxNew: maxSeq, dtype, weightFormats: formats };
  const el = byteSize(dtype);
  const pg = buildCausalLM(cfg, { mode: "prefill", ...sizing });
  const dg = buildCausalLM(cfg, { mode: "decode", ...sizing });
  // The stacked expert params are the model's to name: `<MoE prefix>.{w1,w3,w2}`.
  const expertParams = new Set(
    layers.flatMap((i) => expertWeights(cfg).map((w) => `${moePrefix(cfg, i)}.${w}`)),
  );
  let paramBytes = 0;
  for (const [name, id] of pg.params) {
    const v = pg.values[id];
    const n = (v.shape as number[]).reduce((a, b) => a * b, 1);
    if (!expertParams.has(name)) paramBytes += paddedBytes(n, v.dtype);
  }
  const T = Math.max(1, Math.min(options.budgetPrefillTokens ?? 512, maxSeq));
  const prefill = compile(pg, device);
  const decode = compile(dg, device);
  const act = Math.max(prefill.plan({ T }).peakBytes, decode.plan().peakBytes);
  prefill.dispose();
  decode.dispose();
  const stats = options.routingStats ??
    await readRoutingStats(sideFolder(dir), { layers: layers.length, experts: E });
  // One format per weight across layers (a shared slot pool): layer 0's are every layer's.
  const w13 = formats[`${moePrefix(cfg, layers[0])}.w1`];
  const w2 = formats[`${moePrefix(cfg, layers[0])}.w2`];
  return {
    layers: layers.length,
    experts: E,
    expertBytes: expertSlabBytes(cfg, el, w13, w2),
    formats: w13 !== undefined && w2 !== undefined ? { w13, w2 } : undefined,
    fixedBytes: paramBytes + act,
    prefillTokens: T,
    stats,
  };
}

/**
 * Bytes of one expert's w1, w3 and w2 (w1 and w2 when ungated) as a slot holds
 * them: `el`-byte values, or word-padded blocks of their formats.
 */
function expertSlabBytes(
  cfg: ModelConfig,
  el: number,
  f1: QuantFormat | undefined,
  f2: QuantFormat | undefined,
): number {
  const ff = expertWidth(cfg), d = expertInputWidth(cfg);
  const n13 = expertWeights(cfg).length - 1; // w1 (and w3)
  if (f1 === undefined || f2 === undefined) return (n13 + 1) * ff * d * el;
  return 4 * (n13 * quantWords(f1, ff, d) + quantWords(f2, d, ff));
}

/**
 * The formats a model loads with, without loading it: `options.quantize`
 * applied to the config's weights, a GGUF file's stored formats, or none;
 * with a memory budget or several devices unified across MoE layers, as an
 * expert slot pool holds them (as `loadModel` does).
 *
 * @example
 * ```ts ignore
 * const formats = await modelFormats("./Mixtral-8x7B-v0.1", cfg, { quantize: "q4_k" });
 * ```
 */
export async function modelFormats(
  path: string,
  cfg: ModelConfig,
  options: LoadOptions,
): Promise<WeightFormats> {
  const pooled = options.memoryBudget !== undefined || options.devices !== undefined;
  const unify = (f: WeightFormats) => pooled ? unifyExpertFormats(cfg, f) : f;
  if (options.quantize !== undefined) {
    return unify(weightFormatsFor(cfg, undefined, options.quantize));
  }
  if (!isGgufPath(path)) return {};
  const w = await openWeights(path, { config: cfg });
  try {
    return unify(weightFormatsFor(cfg, w));
  } finally {
    w.close();
  }
}
