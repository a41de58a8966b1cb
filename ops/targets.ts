/**
 * Kernel targets: one table of kernel emitters per device class, chosen by the
 * device's capabilities. Every op's own lowering (`OpDef.lower`) is the
 * portable table — complete by type, shaped for CPU rasterisers such as
 * lavapipe and correct on any WebGPU device. A device class with kernels of its
 * own (GPU shapes: workgroup tiling, subgroups) overrides entries in its table;
 * a table that falls back to nothing makes a missing entry an error naming the
 * op and the target. The fusion contract (kind, prologue, epilogue, in-place)
 * stays the op's, the same on every target.
 *
 * @module
 */

import type { DeviceCaps } from "../core/types.ts";
import { type OpAttrMap, opDef, type OpName } from "./registry.ts";
import type { KernelEmitter, OpAttrs } from "./types.ts";
import { matmulGpu } from "./matmul/gpu_tiled.ts";
import { selectiveScanGpu, ssmStepGpu } from "./ssm/mod.ts";
import { attentionGpu } from "./attention_gpu.ts";
import { layernormGpu, rmsnormGpu } from "./norm_gpu.ts";
import { softmaxGpu } from "./softmax_gpu.ts";
import { moeGpu } from "./moe/gpu.ts";

/**
 * A device class kernels are shaped for.
 *
 * @example
 * ```ts
 * import type { Target } from "@kiln/kiln";
 * const t: Target = "gpu";
 * ```
 */
export type Target = "cpu_raster" | "gpu";

/**
 * The target a device's kernels are chosen for: CPU rasterisers (`caps.cpuCores`
 * > 0) or GPUs.
 *
 * @example
 * ```ts
 * import { targetOf } from "@kiln/kiln";
 * targetOf({ cpuCores: 0 } as never); // "gpu"
 * ```
 */
export function targetOf(caps: Pick<DeviceCaps, "cpuCores">): Target {
  return caps.cpuCores > 0 ? "cpu_raster" : "gpu";
}

/**
 * One target's emitters: a partial table over the ops, and what an op without
 * an entry gets.
 *
 * @example
 * ```ts
 * import type { TargetTable } from "@kiln/kiln";
 * const strict: TargetTable = { emitters: {}, fallback: "none" };
 * ```
 */
export interface TargetTable {
  /** Emitters that replace the op's portable kernels on this target. */
  readonly emitters: { readonly [K in OpName]?: KernelEmitter<OpAttrMap[K]> };
  /** `"portable"`: ops without an entry use their portable kernels; `"none"`: an error. */
  readonly fallback: "portable" | "none";
}

/**
 * The table of each target. GPU-shaped kernels are added here as they land.
 *
 * @example
 * ```ts
 * import { TARGET_TABLES } from "@kiln/kiln";
 * TARGET_TABLES.cpu_raster.fallback; // "portable"
 * ```
 */
export const TARGET_TABLES: { readonly [T in Target]: TargetTable } = {
  cpu_raster: { emitters: {}, fallback: "portable" },
  gpu: {
    emitters: {
      matmul: matmulGpu,
      selective_scan: selectiveScanGpu,
      ssm_step: ssmStepGpu,
      rmsnorm: rmsnormGpu,
      layernorm: layernormGpu,
      softmax: softmaxGpu,
      attention: attentionGpu,
      moe: moeGpu,
    },
    fallback: "portable",
  },
};

/**
 * The kernel emitter op `op` uses on `target`: the target's own, else the op's
 * portable one where the table allows it.
 *
 * @example
 * ```ts
 * import { emitterOf } from "@kiln/kiln";
 * const emit = emitterOf("matmul", "gpu");
 * ```
 */
export function emitterOf(
  op: string,
  target: Target,
  tables: { readonly [T in Target]: TargetTable } = TARGET_TABLES,
): KernelEmitter<OpAttrs> {
  const table = tables[target];
  const own = (table.emitters as Record<string, KernelEmitter<OpAttrs> | undefined>)[op];
  if (own) return own;
  const lower = opDef(op).lower;
  if (lower.kind !== "kernel") {
    throw new TypeError(`op "${op}" is not a kernel op (its lowering is ${lower.kind})`);
  }
  if (table.fallback === "none") {
    throw new TypeError(`op "${op}" has no kernel for target "${target}"`);
  }
  return lower.emit;
}
