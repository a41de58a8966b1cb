/**
 * Mamba (S6) ops for the compiler: the causal depthwise conv1d in front of the
 * scan, its conv-state update, the single-token conv step (`conv.ts`), the
 * selective scan (`scan.ts`: one pass over L, or chunked in three passes where
 * the device needs the parallelism — `chooser.ts` picks per device — plus the
 * one-thread-per-channel baseline) and the single-token SSM step (`step.ts`).
 * The step ops update their state in place (`inplace`), so with `g.state` +
 * `g.assign` a decode token costs O(1) and the state never leaves the device.
 *
 * Layouts are row-major: activations `[B, L, I]`, B and C `[B, L, N]`, A `[I, N]`,
 * D and the Δ bias `[I]`, SSM states `[B, I, N]` (always f32, even when the
 * activations are f16), conv weight `[I, 1, k]` (HF) or `[I, k]`, conv states
 * `[B, I, S]` holding the last S pre-conv inputs, oldest first (S ≥ k − 1; HF
 * keeps S = k).
 *
 * The scan kernels (`scan_kernels.ts`) reach their operands through a
 * `KernelIo`. On a CPU rasteriser (the ops' portable kernels) a thread owns many
 * channels, so each B/C row load is shared, and reads u/Δ/z and writes y as vec4
 * channel groups when the layout allows; on a GPU (the `gpu` target's
 * {@linkcode selectiveScanGpu} and {@linkcode ssmStepGpu}) a thread owns one
 * channel.
 *
 * @example
 * ```ts ignore
 * import { scanAttrs, selectiveScan } from "./mod.ts";
 * selectiveScan.infer(inputs, scanAttrs({ finalState: true })); // [y, h]
 * ```
 *
 * @module
 */

export {
  type Conv1dAttrs,
  type Conv1dStepAttrs,
  SCAN_ALGORITHMS,
  type ScanAttrs,
  scanAttrs,
} from "./attrs.ts";
export { conv1dCausal, conv1dStep, convStateUpdate } from "./conv.ts";
export { selectiveScan, selectiveScanGpu } from "./scan.ts";
export { ssmStep, ssmStepGpu } from "./step.ts";
export { type ScanAlgorithm, type ScanChoice } from "./chooser.ts";
