/**
 * Whether a model's weights can fit at all, decided from config.json before
 * anything is allocated: each weight tensor must fit one device buffer
 * (`maxBufferSize`), and the weights must fit the memory that will hold them.
 * WebGPU does not report an adapter's memory; on a CPU adapter (lavapipe) and
 * the CPU device that memory is the host's, so the total is compared with the
 * host's RAM there. Elsewhere only the host staging of the largest tensor is.
 * A config asking for a hidden or vocabulary size of 1e9 is then one RangeError
 * with the bytes needed and available, not an allocation failure or a
 * storage-buffer count from deep inside the planner.
 *
 * @module
 */

import type { WeightFormats } from "../../models/weights.ts";
import { paddedBytes } from "../../core/dtype.ts";
import { formatBytes } from "../../core/format.ts";
import type { Graph } from "../../core/graph.ts";
import { expertWeights, moePrefix } from "../../models/architectures/mod.ts";
import { buildCausalLM } from "../../models/causal_lm.ts";
import type { ModelConfig } from "../../models/config.ts";
import type { KilnDevice } from "../../runtime/device.ts";

/**
 * Bytes of host memory (`Deno.systemMemoryInfo().total`), or undefined when
 * Deno may not read it (`--allow-sys` missing): then the check is skipped.
 *
 * @example
 * ```ts
 * import { hostMemoryBytes } from "./capacity.ts";
 * const host = hostMemoryBytes(); // e.g. 25276157952, or undefined
 * ```
 */
export function hostMemoryBytes(): number | undefined {
  try {
    // Ask first: reading it without --allow-sys would stop a terminal run at a prompt.
    const sys = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" });
    if (sys.state !== "granted") return undefined;
    return Deno.systemMemoryInfo().total;
  } catch {
    return undefined;
  }
}

/** Bytes of each parameter of `graph` as stored on the device, by name. */
function tensorBytes(graph: Graph): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, id] of graph.params) {
    const v = graph.values[id];
    out.set(name, paddedBytes((v.shape as number[]).reduce((a, b) => a * b, 1), v.dtype));
  }
  return out;
}

/**
 * What {@linkcode checkWeightsFit} compares, for a message or a report.
 *
 * @example
 * ```ts ignore
 * import { checkWeightsFit } from "./capacity.ts";
 * checkWeightsFit(cfg, device, { dtype: "f32" }); // or a RangeError with these figures
 * ```
 */
export interface WeightsFitOptions {
  /** Compute dtype of the weights. */
  dtype: "f32" | "f16";
  /** Parameters stored block-quantized (their real bytes are counted). */
  formats?: WeightFormats;
  /**
   * Experts are placed by a memory budget (`memoryBudget`): the stacked expert
   * tensors never exist (slot pools do, checked with the loaded graph), and
   * only the non-expert weights must fit the device.
   */
  budgeted?: boolean;
  /** Experts are split over several devices (`devices`): no stacked expert tensor exists. */
  parallel?: boolean;
  /** Host memory in bytes (default {@linkcode hostMemoryBytes}). */
  hostBytes?: number;
}

/**
 * Refuses, before anything is allocated, a config whose weights cannot fit:
 * a tensor over the device's largest buffer (named), or weights beyond the
 * memory that holds them (the host's, on a CPU adapter or the CPU device).
 * The graph is built to enumerate the parameters; nothing is allocated.
 *
 * @example
 * ```ts ignore
 * import { checkWeightsFit } from "./capacity.ts";
 * checkWeightsFit(await readConfig(dir), await requestDevice(), { dtype: "f32" });
 * // RangeError: the model needs 4.00 TiB of weights (f32); this device allows one buffer of
 * // at most 2.00 GiB (tensor "lm_head.weight" needs 3.73 TiB) and the host has 23.54 GiB
 * ```
 */
export function checkWeightsFit(
  cfg: ModelConfig,
  device: KilnDevice,
  options: WeightsFitOptions,
): void {
  const graph = buildCausalLM(cfg, {
    mode: "decode",
    maxSeq: 1,
    maxNew: 1,
    dtype: options.dtype,
    weightFormats: options.formats,
  });
  const experts = new Set(
    cfg.pattern.flatMap((p, i) =>
      p.ffn === "moe" ? expertWeights(cfg).map((w) => `${moePrefix(cfg, i)}.${w}`) : []
    ),
  );
  const sizes = tensorBytes(graph);
  let total = 0;
  for (const [name, bytes] of sizes) {
    if (!(options.budgeted && experts.has(name))) total += bytes;
  }
  const perTensor = [...sizes].filter(([name]) =>
    !((options.budgeted || options.parallel) && experts.has(name))
  );
  const host = options.hostBytes ?? hostMemoryBytes();
  // On a CPU adapter or the CPU device the weights live in host memory.
  const inHost = device.kind === "cpu" || device.caps.cpuCores > 0;
  const largest = perTensor.reduce<[string, number]>((a, t) => (t[1] > a[1] ? t : a), ["", 0]);
  const maxBuffer = device.kind === "gpu" ? device.device.limits.maxBufferSize : Infinity;
  const tooBig = largest[1] > maxBuffer;
  const tooMuch = host !== undefined && (inHost ? total : largest[1]) > host;
  if (!tooBig && !tooMuch) return;
  const parts = [
    device.kind === "gpu"
      ? `this device allows one buffer of at most ${formatBytes(maxBuffer)}` +
        (tooBig ? ` (tensor "${largest[0]}" needs ${formatBytes(largest[1])})` : "")
      : "the CPU device keeps the weights in host memory",
    host === undefined ? undefined : `the host has ${formatBytes(host)}`,
  ].filter((p) => p !== undefined);
  throw new RangeError(
    `the model needs ${formatBytes(total)} of ${options.budgeted ? "non-expert " : ""}weights ` +
      `(${options.dtype}); ${parts.join(" and ")}`,
  );
}

/**
 * Refuses a loaded graph with a parameter over the device's largest buffer
 * (an expert slot pool sized by a generous `memoryBudget`), naming it, before
 * any weight is uploaded.
 *
 * @example
 * ```ts ignore
 * import { checkParamBuffers } from "./capacity.ts";
 * checkParamBuffers(model.prefill.graph, device);
 * ```
 */
export function checkParamBuffers(graph: Graph, device: KilnDevice): void {
  if (device.kind !== "gpu") return;
  const max = device.device.limits.maxBufferSize;
  for (const [name, bytes] of tensorBytes(graph)) {
    if (bytes > max) {
      throw new RangeError(
        `parameter "${name}" needs ${formatBytes(bytes)} in one buffer; this device allows at ` +
          `most ${formatBytes(max)} (a smaller memoryBudget makes a smaller expert slot pool)`,
      );
    }
  }
}
