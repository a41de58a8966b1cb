/**
 * Ahead-of-time builds of a Hugging Face model folder: the prefill graph
 * planned for every prompt-chunk length and the decode graph, for greedy
 * sampling and any other prebuilt setting, emitted as one standalone module
 * that imports only Kiln's runtime, with the weights (converted as `loadModel`
 * converts them) packed into a compressed bundle beside it.
 *
 * @module
 */

import { basename, dirname, resolve } from "node:path";
import type { TensorData } from "../../core/host.ts";
import type { DeviceCaps } from "../../core/types.ts";
import { buildCausalLM } from "../../models/causal_lm.ts";
import type { ModelConfig } from "../../models/config.ts";
import { promptsThroughDecode } from "../../models/mamba2.ts";
import { recurrentStateNames, STATES } from "../../models/states.ts";
import { checkParams } from "../../runtime/bind.ts";
import type { PrebuiltModelData, SamplingSettings } from "../../runtime/prebuilt_model.ts";
import { readConfig } from "../config_file.ts";
import { DEFAULT_PREFILL_CHUNK, prefillBuckets } from "../model/prefill_chunks.ts";
import { checkUnusedTensors, loadWeights } from "../model/weights.ts";
import { openWeights } from "../model/source.ts";
import { folderTokenizer } from "../tokenizer/folder.ts";
import { checkSource, prebuildGraph, writeSource } from "./build.ts";
import { type BundleTensor, encodeBundle } from "./bundle_writer.ts";
import { emitModelModule } from "./emit_model.ts";

/**
 * Options of {@linkcode buildModelModule}.
 *
 * @example
 * ```ts ignore
 * import type { ModelBuildOptions } from "./build_model.ts";
 * const options: ModelBuildOptions = { name: "tiny", caps, runtime: "../runtime/mod.ts" };
 * ```
 */
export interface ModelBuildOptions {
  /** The module's name (its doc comment, the default bundle file name). */
  readonly name: string;
  /** Limits and features of the device the plans are for (`requestDevice()`'s `caps`). */
  readonly caps: DeviceCaps;
  /** Module specifier of the runtime entry the module imports (default `@kiln/kiln/runtime`). */
  readonly runtime?: string;
  /** File name of the weight bundle beside the module (default `NAME.kwb`). */
  readonly bundle?: string;
  /** KV-cache capacity in tokens (default 2048, as `loadModel`). */
  readonly maxSeq?: number;
  /** Largest prompt chunk (default 256, as `loadModel`): chunks of 1, 4, 16 … up to it. */
  readonly prefillChunk?: number;
  /** Compute dtype (default f32); f16 needs `caps.f16`. */
  readonly dtype?: "f32" | "f16";
  /** Sampling settings to prebuild besides greedy (each one more pair of graphs, same weights). */
  readonly sampling?: readonly SamplingSettings[];
  /** Check every weight is finite as it is read (default true). */
  readonly checkFinite?: boolean;
}

/**
 * A built model module: its source, data and packed weights.
 *
 * @example
 * ```ts ignore
 * import { buildModelModule } from "./build_model.ts";
 * const built = await buildModelModule("./tiny-mixtral", { name: "tiny", caps });
 * built.data.prefillBuckets; // [1, 4, 16, 64, 256]
 * ```
 */
export interface BuiltModel {
  /** TypeScript source of the module. */
  readonly source: string;
  /** The model's data the module embeds. */
  readonly data: PrebuiltModelData;
  /** The one shader table of every graph. */
  readonly shaders: readonly string[];
  /** File name of the weight bundle the module loads. */
  readonly bundle: string;
  /** The bundle's bytes. */
  readonly bundleBytes: Uint8Array;
  /** The parsed config. */
  readonly config: ModelConfig;
}

const GREEDY: SamplingSettings = { temperature: 0, topK: 0, topP: 1 };
const samplingKey = (s: SamplingSettings) => `${s.temperature}/${s.topK}/${s.topP}`;

/**
 * Plans a model folder's graphs on a device with `options.caps`, reads its
 * weights into a bundle, and emits the module's source. A config the loader
 * refuses, unused or missing tensors and non-finite weights are thrown here.
 *
 * @example
 * ```ts ignore
 * import { requestDevice } from "@kiln/kiln";
 * import { buildModelModule } from "./build_model.ts";
 * const { caps } = await requestDevice();
 * const built = await buildModelModule("./tiny-mixtral", { name: "tiny", caps });
 * ```
 */
export async function buildModelModule(
  dir: string,
  options: ModelBuildOptions,
): Promise<BuiltModel> {
  const cfg = await readConfig(dir);
  const maxSeq = options.maxSeq ?? 2048;
  if (!Number.isInteger(maxSeq) || maxSeq < 1) {
    throw new RangeError(`build: maxSeq must be a positive integer, got ${maxSeq}`);
  }
  const dtype = options.dtype ?? "f32";
  if (dtype === "f16" && !options.caps.f16) {
    throw new TypeError("build: dtype f16 needs the adapter feature shader-f16, which it lacks");
  }
  const buckets = prefillBuckets(maxSeq, options.prefillChunk ?? DEFAULT_PREFILL_CHUNK);
  const settings = [GREEDY, ...(options.sampling ?? [])].filter((s, i, all) =>
    all.findIndex((t) => samplingKey(t) === samplingKey(s)) === i
  );
  const shared = { maxSeq, maxNew: maxSeq, dtype };
  const shaders: string[] = [];
  const variants = settings.map((sampling, i) => {
    const suffix = i === 0 ? "" : `.${i}`;
    const prefill = prebuildGraph(
      buildCausalLM(cfg, { mode: "prefill", sampling, ...shared }),
      {
        name: `${options.name}.prefill${suffix}`,
        caps: options.caps,
        dims: buckets.map((T) => ({ T })),
      },
      shaders,
    );
    const decode = prebuildGraph(
      buildCausalLM(cfg, { mode: "decode", sampling, ...shared }),
      { name: `${options.name}.decode${suffix}`, caps: options.caps },
      shaders,
    );
    return { sampling, prefill, decode };
  });
  const eos = new Set(cfg.eosTokenIds);
  // Generation stops at the tokenizer's EOS too, as `Model.generateIds` does.
  const eosId = (await folderTokenizer(dir))?.eosId;
  if (eosId !== undefined) eos.add(eosId);

  const graph = variants[0].prefill.graph;
  const params = new Map<string, TensorData>();
  const ckpt = await openWeights(dir, { config: cfg });
  try {
    checkUnusedTensors(cfg, ckpt);
    await loadWeights(
      {
        graph,
        setParams: (p: Record<string, TensorData>) => {
          for (const [k, v] of Object.entries(p)) params.set(k, v);
        },
      },
      cfg,
      ckpt,
      undefined,
      { checkFinite: options.checkFinite ?? true },
    );
  } finally {
    ckpt.close();
  }
  const iface = variants[0].prefill.data.interface;
  const checked = new Map(checkParams(iface, Object.fromEntries(params)));
  const tensors: BundleTensor[] = iface.params.map((p) => {
    const data = checked.get(p.name);
    if (!data) throw new TypeError(`${dir}: weight "${p.name}" has no value to pack`);
    return { name: p.name, dtype: p.dtype, shape: p.shape as number[], data };
  });
  const bundleBytes = encodeBundle(tensors);
  const data: PrebuiltModelData = {
    format: 1,
    name: options.name,
    architecture: cfg.architecture,
    vocabSize: cfg.vocabSize,
    maxSeq,
    maxNew: maxSeq,
    prefillBuckets: buckets,
    paddedPrompts: true,
    ...(promptsThroughDecode(cfg) ? {} : { promptsViaDecode: false }),
    eosTokenIds: [...eos].sort((a, b) => a - b),
    states: {
      token: STATES.token,
      generated: STATES.generated,
      recurrent: recurrentStateNames(iface.states.map((s) => s.name)),
    },
    variants: variants.map((v) => ({
      sampling: v.sampling,
      prefill: v.prefill.data,
      decode: v.decode.data,
    })),
  };
  const bundle = options.bundle ?? `${options.name}.kwb`;
  const source = emitModelModule(data, shaders, {
    runtime: options.runtime ?? "@kiln/kiln/runtime",
    bundle,
    source: basename(resolve(dir)),
  });
  return { source, data, shaders, bundle, bundleBytes, config: cfg };
}

/**
 * Writes a built model module to `outFile` (formatted with `deno fmt`) and
 * its bundle beside it, then type-checks the module with `deno check` unless
 * `check` is false. Needs read, write and run (`deno`) permissions.
 *
 * @example
 * ```ts ignore
 * import { buildModelModule, writeModelModule } from "./build_model.ts";
 * await writeModelModule("out/tiny.aot.ts", await buildModelModule(dir, { name: "tiny", caps }));
 * ```
 */
export async function writeModelModule(
  outFile: string,
  built: BuiltModel,
  options: { check?: boolean } = {},
): Promise<{ module: string; bundle: string }> {
  await writeSource(outFile, built.source, { check: false });
  const bundle = resolve(dirname(outFile), built.bundle);
  await Deno.writeFile(bundle, built.bundleBytes);
  if (options.check ?? true) await checkSource(outFile);
  return { module: outFile, bundle };
}
