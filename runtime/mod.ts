/**
 * The runtime alone (`@kiln/kiln/runtime`): what an ahead-of-time module made
 * by `kiln build` imports to run its prebuilt plans — devices, the prebuilt
 * executable, weight bundles — and none of the DSL, passes or planner.
 *
 * ```ts ignore
 * import { PrebuiltExecutable, requestDevice } from "@kiln/kiln/runtime";
 * ```
 *
 * @module
 */

export {
  defaultDevice,
  DeviceLostError,
  type DeviceOptions,
  type GpuDevice,
  requestDevice,
} from "./device.ts";
export type { GraphInterface, TensorSpec } from "./bind.ts";
export {
  type ConstantData,
  type KernelData,
  type PlanData,
  planFromData,
  planToData,
  type PrebuiltData,
} from "./plan_data.ts";
export { PrebuiltExecutable, type PrebuiltOptions } from "./prebuilt.ts";
export {
  type PrebuiltGenerateOptions,
  type PrebuiltGenerateStats,
  PrebuiltModel,
  type PrebuiltModelData,
  type SamplingSettings,
} from "./prebuilt_model.ts";
export {
  COLD_PROMPT_TOKENS,
  coldPrompt,
  type DecodeHooks,
  type DecodeLoop,
  decodeSteps,
  type ExecutableLike,
  finiteLogits,
  type LoopRunner,
  type LoopStats,
  prefillChunksToCompile,
  sampledId,
  splitPrompt,
} from "./decode.ts";
export {
  planPrompt,
  type PromptPlanOptions,
  type PromptRun,
  RUN_COST_ROWS,
} from "./prompt_plan.ts";
export { commonPrefix, PromptCache, type StateKeeper } from "./prompt_cache.ts";
export type { PendingCompile } from "./pipelines.ts";
export {
  BUNDLE_MAGIC,
  type BundleEntry,
  type BundleHeader,
  bundlePrefix,
  type BundleSource,
  crc32,
  readBundle,
  type ReadBundleOptions,
} from "./bundle.ts";
export type { ProfileResult, RunOptions } from "./run_options.ts";
export type { EncodeHooks, GpuExecutable, HostBarriers, KernelTiming } from "./gpu_executor.ts";
export type { DType, HostArray } from "../core/dtype.ts";
export type { HostTensor } from "../core/types.ts";
export type { TensorData } from "../core/host.ts";
export type { DeviceCaps } from "../core/types.ts";
export type { KernelChoice } from "../ops/types.ts";
export type { Target } from "../ops/targets.ts";
export type { Dim, DimBindings } from "../core/shape.ts";
export type {
  BindingAccess,
  BufferOp,
  KernelTableName,
  Plan,
  PlannedKernel,
  PlannedTensor,
  Slot,
  SlotBinding,
  SlotKind,
} from "../compiler/plan_types.ts";
