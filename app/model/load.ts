/**
 * Loading a Hugging Face causal LM folder: config.json, safetensors (single or
 * sharded) and, optionally, tokenizer.json — with every expert resident, under
 * a GPU memory budget (the expert scheduler), or split across devices (expert
 * parallelism).
 *
 * @module
 */

import type { Graph } from "../../core/graph.ts";
import { expertTensor, moePrefix, selectionBiasTensor } from "../../models/architectures/mod.ts";
import { buildCausalLM } from "../../models/causal_lm.ts";
import { expertInputWidth, expertWidth } from "../../models/config.ts";
import { moeActivationOf } from "../../models/activation.ts";
import { SLOT_POOL } from "../../models/states.ts";
import { routerHasBias } from "../../ops/moe/mod.ts";
import {
  defaultDevice,
  type GpuDevice,
  type KilnDevice,
  requestDevice,
} from "../../runtime/device.ts";
import { NOTHING_TO_COMPILE } from "../../runtime/pipelines.ts";
import type { ExpertPlan, RoutingStats } from "../experts/placement.ts";
import type { DevicePlan } from "../experts/device_plan.ts";
import { checkDevices, ExpertParallel } from "../experts/parallel.ts";
import type { ExpertPolicy, ExpertPrefetch } from "../experts/policy.ts";
import { ExpertScheduler } from "../experts/scheduler.ts";
import type { ExpertFormats } from "../experts/tiers.ts";
import { createProgress, type Progress } from "../progress.ts";
import { prefillBuckets } from "./prefill_chunks.ts";
import { checkParamBuffers, checkWeightsFit } from "./capacity.ts";
import { moeLayers, planForBudget, planForDevices } from "./expert_budget.ts";
import { Model } from "./model.ts";
import type { Sampling } from "./generate_options.ts";
import {
  checkUnusedTensors,
  finiteReads,
  loadWeights,
  unifyExpertFormats,
  weightFormatsFor,
} from "./weights.ts";
import {
  modelTokenizer,
  openWeights,
  readModelConfig,
  withImportance,
  withQuantizer,
} from "./source.ts";
import { type Imatrix, importanceByTensor, readImatrix } from "../gguf/imatrix.ts";
import { QuantPool } from "../quantize_pool.ts";
import {
  GGUF_MIXES,
  type GgufMix,
  IMATRIX_MIXES,
  isGgufMix,
  lackingImportance,
} from "../gguf/quant_mix.ts";
import {
  isQuantizeChoice,
  QUANTIZE_CHOICES,
  type QuantizeChoice,
} from "../../core/quant/formats.ts";
import type { WeightFormats } from "../../models/weights.ts";
import type { ModelConfig } from "../../models/config.ts";

/**
 * Options of {@linkcode loadModel}.
 *
 * @example
 * ```ts ignore
 * import { loadModel, type LoadOptions } from "@kiln/kiln";
 * const options: LoadOptions = { maxSeq: 4096, dtype: "f16", memoryBudget: "24GiB", quiet: true };
 * const model = await loadModel("./Mixtral-8x7B-v0.1", options);
 * ```
 */
export interface LoadOptions {
  /** Device to run on (default: a new WebGPU device). */
  device?: KilnDevice;
  /** KV-cache capacity in tokens (prompt + generated). Default 2048. */
  maxSeq?: number;
  /**
   * Largest prompt chunk (default 256): prompts run as chunks of 1, 4, 16, 64
   * … up to this many tokens, so only those lengths are ever compiled, not one
   * set of pipelines per prompt length; a prompt's last chunk may be padded up
   * to a compiled length, so after the first prompt that runs the prefill
   * none compiles (`warmUp` compiles them all). `false`: each prompt in one run.
   */
  prefillChunk?: number | false;
  /**
   * Prompts of at most this many tokens run through the decode step, token by
   * token, while the prefill's pipelines for them are not compiled yet
   * (default 64): a first short prompt waits only for the decode step's
   * compile. 0: every prompt runs the prefill.
   */
  coldPromptTokens?: number;
  /**
   * Compile the decode step's pipelines while the weights load (default true),
   * so a first generation waits for no compile unless its prompt needs the
   * prefill's. `false` for a model only ever run through `forward`: on a GPU
   * queue the decode step's compile would run before its first prefill.
   */
  compileDecode?: boolean;
  /** No progress bar on stderr. */
  quiet?: boolean;
  /**
   * Hears long phases advance instead of the progress bar on stderr: `"load"`
   * counts bytes of weights read, `"compile"` pipelines compiled (at load for
   * the decode step's left when the weights are in; at the first run that needs
   * new kernels, before its clock starts).
   */
  onProgress?: (phase: "load" | "compile", done: number, total: number) => void;
  /** Compute dtype (default f32); f16 needs the adapter's `shader-f16`. */
  dtype?: "f32" | "f16";
  /**
   * GPU memory budget (bytes, or a string like `"2GiB"`) for a MoE model: the
   * non-expert weights, caches and activations are planned first, the rest
   * holds expert slots; experts that do not fit stream from the host tier (see
   * `app/experts/scheduler.ts`). Below the minimum: a RangeError naming it.
   * Absent: every expert resident.
   */
  memoryBudget?: number | string;
  /**
   * Routing statistics steering which experts are pinned (default: read
   * `kiln_routing_stats.json` from the model folder when it exists).
   */
  routingStats?: RoutingStats;
  /**
   * How experts that are not pinned reach the GPU (see `ExpertPolicy`): `lru`
   * (default) or `lfu` cache, `stream` (every one copied in every step, no round
   * trips), `naive` (on-demand baseline). A cache miss is repaired by re-running
   * steps; recurrent (Mamba) state is kept on the device at each window's start
   * and rewound first.
   */
  expertPolicy?: ExpertPolicy;
  /**
   * Host memory budget (bytes or `"8GiB"`) for the experts that are not pinned
   * on the GPU (needs `memoryBudget`): those that do not fit stay in the
   * safetensors files and are read by offset when needed (one expert of the
   * budget is the read buffer; below that: a RangeError). Absent: every
   * non-pinned expert has a host copy.
   */
  hostMemoryBudget?: number | string;
  /**
   * How the `lru` / `lfu` cache predicts each window's uploads (see
   * `ExpertPrefetch`): `temporal` (default: the last step's experts) or
   * `lookahead` / `both` (Mixtral-offloading's router lookahead, computed on the
   * GPU and read back with the routing log).
   */
  prefetch?: ExpertPrefetch;
  /** Prompt tokens the activation estimate of the budget covers (default min(maxSeq, 512)). */
  budgetPrefillTokens?: number;
  /**
   * Expert parallelism: GPU devices (or how many to request) to split a MoE
   * model's experts across; device 0 is the home device (every non-expert
   * weight, cache and activation). Each MoE layer's input moves to the devices
   * holding its chosen experts and their outputs move back (see
   * `app/experts/parallel.ts`). With `memoryBudget`, the budget is per device
   * and the home device keeps as many experts as fit. Quantized experts
   * (`quantize`, a GGUF file's blocks) stay blocks on every device, one format
   * per weight across layers, and budgets count their block bytes. 1 (or one
   * device) runs on one device as usual.
   */
  devices?: number | readonly KilnDevice[];
  /**
   * Refuse weights holding NaN or ±Inf, naming the tensor, the count and the
   * first index (default true). Each tensor is scanned in memory as it is
   * uploaded (no second read of the files); `false` skips the scan for trusted
   * checkpoints. Disk-tier experts (`hostMemoryBudget`) are read during
   * generation and not scanned; generation still stops with an error naming the
   * step if the logits stop being finite.
   */
  checkFinite?: boolean;
  /**
   * Quantize-on-load: store every Linear weight and embedding as llama.cpp
   * blocks of this format (rows that are not whole blocks fall back as
   * `fitFormat` says, or stay dense), quantized from the checkpoint as it is
   * read; the kernels dequantize as they read them. `mxfp4_moe` is
   * llama-quantize's MXFP4_MOE mix: MoE experts in MXFP4, every other matrix in
   * Q8_0. A mix of llama-quantize's (`q4_k_m`, `q3_k_s`, `iq3_m`…) stores each
   * weight in the type llama-quantize would give it (see `kiln quantize`). A GGUF
   * file's quantized tensors are used as stored without this option.
   */
  quantize?: QuantizeChoice | GgufMix;
  /**
   * An importance matrix for `quantize` (a file `llama-imatrix` or
   * `writeImatrix` wrote, GGUF or legacy, or one already read with
   * `readImatrix`): each weight it has an entry for is fitted with it, as
   * `llama-quantize --imatrix` fits it (the same bytes as `kiln quantize
   * --imatrix`). Only with `quantize` (a `TypeError` otherwise).
   */
  imatrix?: string | Imatrix;
  /**
   * Host threads that encode weights quantized on load (default: every logical
   * core); the bytes are the same for any count.
   */
  threads?: number;
}

/**
 * Loads a Hugging Face model folder (config.json + safetensors [+ tokenizer.json]).
 * Without `device`, the model runs on the shared {@linkcode defaultDevice}; the
 * extra devices of `devices` as a count belong to the model: `Model.dispose`
 * destroys them, and so does a load that fails.
 * Weights that cannot fit the device or the host, and non-finite weights, are
 * refused with a RangeError before (or while) anything is uploaded.
 *
 * @example
 * ```ts ignore
 * import { loadModel } from "@kiln/kiln";
 * const model = await loadModel("./mamba-130m-hf");
 * const logits = await model.forward([1, 2, 3]);
 * ```
 */
export async function loadModel(dir: string, options: LoadOptions = {}): Promise<Model> {
  const cfg = await readModelConfig(dir);
  const created: GpuDevice[] = [];
  try {
    return await load(dir, cfg, options, created);
  } catch (e) {
    // The model never came to own them; a requested device left alive leaks its memory.
    for (const d of created) d.destroy();
    throw e;
  }
}

async function load(
  dir: string,
  cfg: ModelConfig,
  options: LoadOptions,
  created: GpuDevice[],
): Promise<Model> {
  const devices = await resolveDevices(options, created);
  // Without a device of its own, a model runs on the shared default device.
  const device: KilnDevice = devices?.[0] ?? options.device ?? await defaultDevice();
  const maxSeq = options.maxSeq ?? 2048;
  if (!Number.isInteger(maxSeq) || maxSeq < 1) {
    throw new RangeError(`loadModel: maxSeq must be a positive integer, got ${maxSeq}`);
  }
  const buckets = options.prefillChunk === undefined
    ? undefined
    : options.prefillChunk === false
    ? []
    : prefillBuckets(maxSeq, options.prefillChunk);
  if (options.compileDecode !== undefined && typeof options.compileDecode !== "boolean") {
    throw new TypeError(
      `loadModel: compileDecode must be a boolean, got ${JSON.stringify(options.compileDecode)}`,
    );
  }
  const cold = options.coldPromptTokens;
  if (cold !== undefined && (!Number.isInteger(cold) || cold < 0)) {
    throw new RangeError(`loadModel: coldPromptTokens must be an integer >= 0, got ${cold}`);
  }
  const maxNew = maxSeq;
  const dtype = options.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`loadModel: dtype must be "f32" or "f16", got ${JSON.stringify(dtype)}`);
  }
  if (dtype === "f16" && device.kind === "gpu" && !device.caps.f16) {
    throw new TypeError(
      "loadModel: dtype f16 needs the adapter feature shader-f16, which this adapter lacks",
    );
  }
  if (devices && (cfg.moe?.expertBias || cfg.moe?.activation)) {
    // The other devices' expert graph has no biases, clamps or ungated experts.
    const what = cfg.moe?.activation?.kind === "relu2"
      ? "ungated relu² experts"
      : "experts (biases, clamped SwiGLU)";
    throw new TypeError(
      `loadModel: ${cfg.architecture}'s ${what} do not run split across several devices yet; ` +
        "load it on one device (memoryBudget streams experts)",
    );
  }
  if (options.hostMemoryBudget !== undefined) {
    if (options.memoryBudget === undefined) {
      throw new TypeError(
        "loadModel: hostMemoryBudget applies to experts that do not fit memoryBudget; give both",
      );
    }
    if (devices) {
      throw new TypeError(
        "loadModel: hostMemoryBudget is not supported with several devices (each holds its experts)",
      );
    }
  }
  if (
    options.quantize !== undefined && !isQuantizeChoice(options.quantize) &&
    !isGgufMix(options.quantize)
  ) {
    throw new TypeError(
      `loadModel: quantize must be one of ${[...QUANTIZE_CHOICES, ...GGUF_MIXES].join(", ")}, got ${
        JSON.stringify(options.quantize)
      }`,
    );
  }
  if ((IMATRIX_MIXES as readonly string[]).includes(options.quantize ?? "") && !options.imatrix) {
    throw new TypeError(
      `loadModel: quantize ${options.quantize} needs an importance matrix (imatrix), as llama-quantize`,
    );
  }
  if (options.imatrix !== undefined && options.quantize === undefined) {
    throw new TypeError(
      "loadModel: imatrix fits the weights quantize-on-load writes; give quantize too",
    );
  }
  // Read before any weight is, so a bad file fails first.
  const imatrix = typeof options.imatrix === "string"
    ? await readImatrix(options.imatrix)
    : options.imatrix;
  const mix = options.quantize !== undefined && isGgufMix(options.quantize)
    ? options.quantize
    : undefined;
  const lacking = imatrix && mix && lackingImportance(cfg, mix, (n) => imatrix.entries.has(n));
  if (lacking) {
    throw new TypeError(
      `loadModel: quantize ${mix} stores ${lacking} in a format llama-quantize writes only with ` +
        `an importance matrix holding it, and this matrix has no entry for it`,
    );
  }
  const threads = options.threads;
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) {
    throw new RangeError(`loadModel: threads must be a positive integer, got ${threads}`);
  }
  // Workers start only if a tensor is quantized on the way; closed with the checkpoint.
  const pool = new QuantPool({ threads: options.threads });
  const onProgress = options.onProgress;
  const stored = await openWeights(dir, {
    config: cfg,
    progress: (total) => {
      if (!onProgress) return createProgress({ total, label: "loading", quiet: options.quiet });
      let done = 0;
      return {
        advance: (bytes) => onProgress("load", done += bytes, total),
        done: () => {},
      };
    },
  });
  const ckpt = withQuantizer(
    imatrix ? withImportance(stored, importanceByTensor(imatrix, cfg)) : stored,
    (f, x, imp) => pool.quantize(f, x, imp),
  );
  let model: Model;
  let weightFormats: WeightFormats;
  let expertPlan: ExpertPlan | undefined;
  let devicePlan: DevicePlan | undefined;
  try {
    checkUnusedTensors(cfg, ckpt);
    weightFormats = weightFormatsFor(cfg, ckpt, options.quantize);
    // A shared expert slot pool (the scheduler's, or each device's with expert
    // parallelism) holds one format per weight across layers.
    if (options.memoryBudget !== undefined || devices) {
      weightFormats = unifyExpertFormats(cfg, weightFormats);
    }
    // Before planning, which would compile graphs of impossible sizes.
    checkWeightsFit(cfg, device, {
      dtype,
      budgeted: options.memoryBudget !== undefined,
      parallel: devices !== undefined,
      formats: weightFormats,
    });
    if (devices) {
      devicePlan = await planForDevices(dir, cfg, devices.length, device, options, weightFormats);
    } else if (options.memoryBudget !== undefined) {
      expertPlan = await planForBudget(dir, cfg, device, options, weightFormats);
    }
  } catch (e) {
    ckpt.close();
    pool.close();
    throw e;
  }
  const expertSlots = devicePlan
    ? Math.max(1, devicePlan.slots[0])
    : expertPlan && !expertPlan.allResident
    ? expertPlan.slots
    : undefined;
  const expertParallel = devicePlan !== undefined;
  const policy = options.expertPolicy ?? "lru";
  const prefetch = options.prefetch ?? "temporal";
  if (!["temporal", "lookahead", "both"].includes(prefetch)) {
    throw new TypeError(
      `loadModel: prefetch must be "temporal", "lookahead" or "both", got ${
        JSON.stringify(prefetch)
      }`,
    );
  }
  const moeLookahead = expertSlots !== undefined && !expertParallel && prefetch !== "temporal" &&
    (policy === "lru" || policy === "lfu");
  const shared = {
    maxSeq,
    maxNew,
    dtype,
    expertSlots,
    expertParallel,
    moeLookahead,
    weightFormats,
  };
  const build = (sampling: Sampling): [Graph, Graph] => [
    buildCausalLM(cfg, { mode: "prefill", sampling, ...shared }),
    buildCausalLM(cfg, { mode: "decode", sampling, ...shared }),
  ];
  try {
    const tokenizer = await modelTokenizer(dir);
    model = new Model(cfg, build, device, maxSeq, tokenizer, created, dir);
  } catch (e) {
    ckpt.close();
    pool.close();
    throw e;
  }
  created.length = 0; // the model owns them now: its dispose destroys them
  if (buckets) model.prefillBuckets = buckets;
  if (cold !== undefined) model.coldPromptTokens = cold;
  model.onCompile = onProgress
    ? (done, total) => onProgress("compile", done, total)
    : compileBar(options.quiet);
  model.expertPlan = expertPlan;
  const checkFinite = options.checkFinite ?? true;
  // The expert machinery reads its weights itself: through a scanning view.
  const experts = checkFinite ? finiteReads(ckpt) : ckpt;
  try {
    checkParamBuffers(model.prefill.graph, device);
    if (expertSlots) {
      const layers = moeLayers(cfg);
      const prefixes = layers.map((i) => moePrefix(cfg, i));
      const skip = (n: string) => n.startsWith(`${SLOT_POOL}.`) || n.endsWith(".slot_table");
      await loadWeights(model.prefill, cfg, ckpt, skip, { checkFinite, formats: weightFormats });
      const tensorOf = (l: number, e: number, w: "w1" | "w3" | "w2") =>
        expertTensor(cfg, layers[l], e, w);
      if (devicePlan) {
        model.parallel = await ExpertParallel.load(
          model.prefill,
          devices!,
          experts,
          devicePlan,
          prefixes,
          tensorOf,
          {
            d: expertInputWidth(cfg),
            ff: expertWidth(cfg),
            topK: cfg.moe!.topK,
            normTopk: cfg.moe!.normTopk,
            router: cfg.moe!.router,
            routedScaling: cfg.moe!.routedScaling,
            groups: cfg.moe!.groups,
            activation: moeActivationOf(cfg.hiddenAct),
            selectionBias: routerHasBias(cfg.moe!.router ?? "softmax_topk")
              ? await Promise.all(
                layers.map(async (i) =>
                  Float32Array.from(await ckpt.readAs(selectionBiasTensor(cfg, i), "f32"))
                ),
              )
              : undefined,
            dtype,
            formats: expertFormats(weightFormats, prefixes[0]),
          },
        );
        return model;
      }
      model.experts = await ExpertScheduler.load(
        model.prefill,
        experts,
        expertPlan!,
        prefixes,
        tensorOf,
        dtype,
        policy,
        // The disk tier reads from its own handle, open until dispose.
        expertPlan!.disk.some((r) => r.length > 0)
          ? await openWeights(dir, { config: cfg })
          : undefined,
        expertFormats(weightFormats, prefixes[0]),
      );
      model.experts.prefetch = prefetch;
      model.experts.lookahead = moeLookahead;
    } else {
      // The decode step's pipelines compile while the weights load (the compile
      // needs only its plan); what is left after the load shows as a compile.
      const ahead = options.compileDecode ?? true ? await model.compileAhead() : NOTHING_TO_COMPILE;
      try {
        await loadWeights(model.prefill, cfg, ckpt, undefined, {
          checkFinite,
          formats: weightFormats,
        });
      } catch (e) {
        // A bad weight is the error now, not after the compile.
        ahead.finish().catch(() => {});
        throw e;
      }
      if (ahead.total) model.onCompile?.(0, ahead.total);
      await ahead.finish();
      if (ahead.total) model.onCompile?.(ahead.total, ahead.total);
    }
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    ckpt.close();
    pool.close();
  }
  return model;
}

/**
 * The devices of `options.devices`: undefined for one device (no expert
 * parallelism), else at least two distinct GPU devices (a count requests them,
 * each pushed onto `created` as it arrives).
 */
async function resolveDevices(
  options: LoadOptions,
  created: GpuDevice[],
): Promise<GpuDevice[] | undefined> {
  const d = options.devices;
  if (d === undefined) return undefined;
  let list: GpuDevice[];
  if (typeof d === "number") {
    if (!Number.isInteger(d) || d < 1 || d > 64) {
      throw new RangeError(`loadModel: devices must be an integer in [1, 64], got ${d}`);
    }
    if (d === 1) return undefined;
    if (options.device && options.device.kind !== "gpu") {
      throw new TypeError("loadModel: devices needs GPU devices; options.device is the CPU device");
    }
    list = options.device ? [options.device as GpuDevice] : [];
    while (list.length < d) {
      const dev = await requestDevice();
      created.push(dev);
      list.push(dev);
    }
  } else {
    if (!Array.isArray(d) || d.length === 0) {
      throw new TypeError(
        `loadModel: devices must be a count or a non-empty array of GPU devices, got ${
          Array.isArray(d) ? "[]" : typeof d
        }`,
      );
    }
    if (d.length === 1) {
      if (d[0]?.kind !== "gpu") {
        throw new TypeError("loadModel: devices[0] is not a GPU device; use requestDevice()");
      }
      if (options.device && options.device !== d[0]) {
        throw new TypeError("loadModel: options.device differs from devices[0]");
      }
      return undefined;
    }
    checkDevices(d);
    list = [...d] as GpuDevice[];
  }
  if (options.device && options.device !== list[0]) {
    throw new TypeError("loadModel: options.device differs from devices[0] (the home device)");
  }
  return list;
}

/** A "compiling n/m pipelines" line on a terminal's stderr, one per compile. */
function compileBar(quiet?: boolean): (done: number, total: number) => void {
  let bar: Progress | undefined, shown = 0;
  return (done, total) => {
    if (done === 0) {
      bar = createProgress({ total, label: "compiling", unit: "pipelines", quiet });
      shown = 0;
    }
    bar?.advance(done - shown);
    shown = done;
    if (done === total) bar?.done();
  };
}

/** The expert pool's formats when the experts are quantized (see `unifyExpertFormats`). */
function expertFormats(formats: WeightFormats, prefix: string): ExpertFormats | undefined {
  const w13 = formats[`${prefix}.w1`], w2 = formats[`${prefix}.w2`];
  return w13 !== undefined && w2 !== undefined ? { w13, w2 } : undefined;
}
