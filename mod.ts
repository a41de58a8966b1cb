/**
 * Kiln: a compute-graph compiler for Deno. Describe a model with a TypeScript DSL,
 * compile it into fused WGSL kernels, and run it on Deno's built-in WebGPU.
 *
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 *
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * const w = g.param("w", [1024, 512]);
 * const b = g.param("b", [1024]);
 * g.output("y", x.matmul(w, { transB: true }).add(b).silu()); // one kernel
 *
 * const device = await requestDevice();
 * const exe = compile(g.build(), device, { params: { w: weights, b: bias } });
 * const { y } = await exe.run({ x: input });
 * console.log(exe.inspect({ T: 128 }));
 * ```
 *
 * @module
 */

import { setDebugSource } from "./core/debug.ts";
import { envFlag } from "./app/env_flag.ts";

// KILN_DEBUG=1 prints each kernel's WGSL and GPU time (read only when output may be printed,
// and only with env access granted: no permission prompt).
setDebugSource(() => envFlag("KILN_DEBUG"));

export { optimize } from "./compiler/optimize.ts";
export {
  type AttentionOptions,
  type GradOptions,
  GraphBuilder,
  type MatmulOptions,
  Tensor,
  type TensorLike,
  TensorMath,
} from "./compiler/builder.ts";
export {
  compile,
  type CompileOptions,
  type CpuObserver,
  Executable,
  type ProfileResult,
  type RunOptions,
} from "./runtime/executable.ts";
export type { KernelTiming } from "./runtime/gpu_executor.ts";
export type { PendingCompile } from "./runtime/pipelines.ts";
export {
  applyTuning,
  defaultCandidates,
  type MatmulProblem,
  matmulProblems,
  problemKey,
  type TileTiming,
  type TuneChoice,
  tuneMatmul,
  type TuneOptions,
} from "./runtime/tuning.ts";
export type { EncodeHooks, HostBarriers, ParamBuffers } from "./runtime/gpu_executor.ts";
export {
  allocHost,
  byteSize,
  checkDType,
  type DType,
  dtypeOfHost,
  type HostArray,
  isFloat,
  padBytes,
  paddedBytes,
  roundHost,
  toHost,
  withFloat64Host,
} from "./core/dtype.ts";
export { type Dim, type DimBindings, formatShape, type Shape } from "./core/shape.ts";
export {
  type Attrs,
  type AttrValue,
  dumpGraph,
  type Graph,
  type Node,
  type TensorType,
  type Value,
} from "./core/graph.ts";
export {
  type BindingAccess,
  type BufferOp,
  describePlan,
  type KernelTableName,
  type Plan,
  type PlannedKernel,
  type PlannedTensor,
  type Slot,
  type SlotBinding,
  type SlotKind,
} from "./compiler/plan.ts";
export {
  type CpuDevice,
  cpuDevice,
  defaultDevice,
  DeviceLostError,
  type DeviceOptions,
  type GpuDevice,
  type KilnDevice,
  NO_ADAPTER_HELP,
  requestDevice,
} from "./runtime/device.ts";
export type { TensorData } from "./core/host.ts";
export type { ConcreteType, DeviceCaps, HostTensor } from "./core/types.ts";
export type { Cluster, Group, Schedule } from "./compiler/passes/fuse.ts";
export { activationStorage } from "./compiler/storage.ts";
export type { OpAttrMap, OpName } from "./ops/registry.ts";
export type {
  KernelChoice,
  KernelContext,
  KernelEmission,
  KernelEmitter,
  KernelOperand,
  KernelSource,
  KernelSymbol,
  OpAttrs,
  ScratchSpec,
} from "./ops/types.ts";
export {
  emitterOf,
  type Target,
  TARGET_TABLES,
  targetOf,
  type TargetTable,
} from "./ops/targets.ts";
export type { CastAttrs, NoAttrs } from "./ops/unary.ts";
export type { ReduceAttrs } from "./ops/reduce.ts";
export type { MatmulAttrs } from "./ops/matmul/mod.ts";
export type { SoftmaxAttrs } from "./ops/softmax.ts";
export type { NormAttrs } from "./ops/norm.ts";
export type { ConcatAttrs, ReshapeAttrs, SliceAttrs, TransposeAttrs } from "./ops/layout.ts";
export type { CumsumAttrs } from "./ops/cumsum.ts";
export type { TopkAttrs } from "./ops/topk.ts";
export { SAMPLE_NON_FINITE, type SampleAttrs } from "./ops/sample.ts";
export type { AttentionAttrs } from "./ops/attention.ts";
export type { RopeAttrs } from "./ops/rope.ts";
export type { ExpandAttrs } from "./ops/expand.ts";
export type { ScatterAddAttrs } from "./ops/scatter_add.ts";
export type { LmHeadXentAttrs } from "./ops/xent/mod.ts";
export {
  crossEntropy,
  type CrossEntropyOptions,
  lmHeadCrossEntropy,
  type TokenCrossEntropy,
} from "./compiler/cross_entropy.ts";
export { attentionBlock, type AttentionBlockOptions } from "./models/attention.ts";
export type { Conv1dAttrs, Conv1dStepAttrs, ScanAttrs } from "./ops/ssm/mod.ts";
export type { ScanGradAttrs } from "./ops/ssm/scan_grad_reference.ts";
export {
  conv1dCausal,
  type Conv1dOptions,
  conv1dStep,
  convStateUpdate,
  MAMBA_STATE_SUFFIXES,
  mambaBlock,
  type MambaBlockOptions,
  mambaMixer,
  type MambaMixerOptions,
  type ScanOptions,
  selectiveScan,
  ssmStep,
  type SsmStepOptions,
} from "./models/mamba.ts";
export {
  clampsDelta,
  mamba2Mixer,
  type Mamba2MixerOptions,
  promptsThroughDecode,
} from "./models/mamba2.ts";
export { configMixer, type ConfigMixerOptions } from "./models/ssm_mixer.ts";
export {
  gatedDeltaNetMixer,
  type GatedDeltaNetOptions,
  gatedDeltaRule,
} from "./models/gated_delta_net.ts";
export type { GatedDeltaAttrs } from "./ops/delta/gated_delta.ts";
export { shortConvMixer, type ShortConvOptions } from "./models/short_conv.ts";
export {
  MOE_ROLES,
  type MoeActivation,
  type MoeAttrs,
  type MoeRole,
  type MoeRouterKind,
  routerHasBias,
} from "./ops/moe/mod.ts";
export type { MoeGradAttrs } from "./ops/moe/grad.ts";
export { type QuantAttrs, quantRowBytes, quantWords } from "./ops/quant/mod.ts";
export {
  dequantize,
  GGML_TYPES,
  type GgmlTypeInfo,
  type GgmlTypeName,
  LATTICE_FORMATS,
  type LatticeFormat,
  LOW_BIT_FORMATS,
  type LowBitFormat,
  QUANT_FORMATS,
  quantBytes,
  type QuantFormat,
  quantize,
  QUANTIZE_CHOICES,
  QUANTIZE_FORMATS,
  type QuantizeChoice,
  type QuantizeFormat,
} from "./core/quant/mod.ts";
export { type Quantizer, QuantPool, type QuantPoolOptions } from "./app/quantize_pool.ts";
export {
  type Importance,
  IMPORTANCE_FORMATS,
  quantizeWithImportance,
} from "./core/quant/importance.ts";
export {
  type Imatrix,
  type ImatrixEntry,
  imatrixFromSums,
  type ImatrixSums,
  parseLegacyImatrix,
  readImatrix,
  writeImatrix,
} from "./app/gguf/imatrix.ts";
export { type ComputedImatrix, computeImatrix, type ComputeImatrixOptions } from "./app/imatrix.ts";
export {
  embedding,
  head,
  linear,
  quantizable,
  quantParam,
  type WeightFormats,
} from "./models/weights.ts";
export {
  encodeGguf,
  GGUF_VALUE_TYPES,
  type GgufArray,
  type GgufEntry,
  GgufFile,
  GgufMetadata,
  type GgufMetadataInput,
  type GgufOpenOptions,
  type GgufTensorInfo,
  type GgufTensorSpec,
  type GgufValue,
  type GgufValueType,
  type GgufWriteSpec,
  writeGguf,
} from "./app/gguf/mod.ts";
export {
  convertToGguf,
  type ConvertToGgufOptions,
  GGUF_MIXES,
  type GgufMappedTensor,
  type GgufMix,
  type GgufModel,
  type GgufOutType,
  type HfTensorSource,
  openGgufModel,
  type TensorTypeOverrides,
} from "./app/gguf/arch.ts";
export { GgufCheckpoint } from "./app/gguf/checkpoint.ts";
export {
  type HeatmapOptions,
  heatmapSvg,
  type LineChartOptions,
  lineChartSvg,
  panelsSvg,
  type Series,
} from "./app/plot/svg.ts";
export { tokenizerFromGguf } from "./app/gguf/tokenizer.ts";
export {
  type GgufTokenizerExportOptions,
  ggufTokenizerMetadata,
} from "./app/gguf/tokenizer_export.ts";
export {
  moe,
  moeDense,
  type MoeOptions,
  type MoeOutputs,
  type SharedExpertOptions,
  stackExperts,
} from "./models/moe.ts";
export {
  applyHiddenAct,
  gateOfMoeActivation,
  HF_HIDDEN_ACTS,
  type HiddenAct,
  moeActivationOf,
} from "./models/activation.ts";
export { countParams, type ParamCount, type ParamUsage } from "./compiler/params.ts";
export { GpuExecutable } from "./runtime/gpu_executor.ts";
export { type ConvAttrs, type FftAttrs, fftF64 } from "./ops/fft/mod.ts";
export type { S4Attrs, S4KernelAttrs } from "./ops/s4/mod.ts";
export type {
  ConvGradInputAttrs,
  ConvGradKernelAttrs,
  ConvGradMethod,
} from "./ops/fft/conv_grad.ts";
export type { S4KernelGradAttrs } from "./ops/s4/grad.ts";
export type { S4StateGradAttrs } from "./ops/s4/state_grad.ts";
export {
  type DiscreteS4,
  discretise,
  discretiseDiagonal,
  fft,
  hippoLegS,
  hippoLegSDiagonal,
  hippoLegSNplr,
  type HippoMatrices,
  type HippoNplr,
  initS4,
  type InitS4Options,
  longConv,
  type S4Choice,
  s4Choice,
  type S4Discretisation,
  type S4Init,
  s4Kernel,
  s4KernelF64,
  s4Layer,
  type S4LayerOptions,
  type S4Mode,
  s4ParamRecord,
  type S4Params,
  storedStates,
} from "./models/s4.ts";
export {
  type BpeTrainOptions,
  type DecodeOptions,
  type EncodeOptions,
  StreamDecoder,
  Tokenizer,
  type TokenizerOptions,
  trainByteLevelBpe,
  type TrainedBpe,
  WordCounts,
} from "./app/tokenizer/mod.ts";
export {
  type ChatMessage,
  type ChatOptions,
  ChatTemplate,
  folderChatTemplate,
  folderSpecialTokens,
  ggufChatTemplate,
  TemplateError,
} from "./app/chat_template/mod.ts";
export {
  Checkpoint,
  type CheckpointOptions,
  type ReadDType,
  type SafeDType,
  SafetensorsFile,
  type TensorInfo,
} from "./app/safetensors/mod.ts";
export { createProgress, type Progress, type ProgressOptions } from "./app/progress.ts";
export {
  type Architecture,
  ARCHITECTURES,
  type AttentionConfig,
  type CheckpointQuantization,
  expertInputWidth,
  expertWidth,
  type FfnKind,
  type GatedDeltaConfig,
  hasAttention,
  hasMamba,
  type LayerSpec,
  type MambaConfig,
  type MambaSsdConfig,
  type MixerKind,
  type MlaConfig,
  type ModelConfig,
  type ModelScaling,
  type MoeConfig,
} from "./models/config.ts";
export {
  ARCHITECTURE_SPECS,
  type ArchitectureSpec,
  type CheckpointLayout,
  ConfigReader,
  expertTensor,
  expertWeights,
  type FusedPacking,
  type FusedTensor,
  fusedTensors,
  layerPrefix,
  moePrefix,
  parseConfig,
  selectionBiasTensor,
  specOf,
  type SwigluNames,
} from "./models/architectures/mod.ts";
export { readConfig } from "./app/config_file.ts";
export {
  checkRopeLength,
  pairsToHalves,
  readRopeSettings,
  ROPE_TYPES,
  ropeDivisors,
  ropeFrequencies,
  type RopeSettings,
  type RopeType,
} from "./models/rope_scaling.ts";
export {
  buildCausalLM,
  type CausalLMOptions,
  checkpointSources,
  type ParamSource,
} from "./models/causal_lm.ts";
export { recurrentStateNames, type StateName, STATES } from "./models/states.ts";
export { TrainableBuilder } from "./compiler/train/trainable.ts";
export {
  type BalanceUpdate,
  buildTrainStep,
  TRAIN_STATES,
  type TrainStep,
  type TrainStepOptions,
} from "./compiler/train/step.ts";
export { adamw, type AdamWOptions, sgd, type SgdOptions } from "./compiler/train/optimizers.ts";
export type {
  Optimizer,
  ParamGrad,
  StateUpdate,
  UpdateContext,
  UpdateResult,
} from "./compiler/train/types.ts";
export { learningRate, learningRateAt, type LrSchedule } from "./compiler/train/schedule.ts";
export { clipByGlobalNorm, globalNorm } from "./compiler/train/clip.ts";
export { softmaxCrossEntropy } from "./compiler/train/cross_entropy.ts";
export {
  buildTrainingLM,
  frozenParams,
  layerCheckpoints,
  type TrainingLM,
  type TrainingLMOptions,
} from "./models/causal_lm_train.ts";
export {
  CHECKPOINT_FILES,
  type CheckpointContents,
  fromCheckpointTensors,
  hfNames,
  initParam,
  type LossRecord,
  microBatch,
  type NamedTensor,
  type OptimizerSpec,
  readCheckpoint,
  readSafetensors,
  toCheckpointTensors,
  Trainer,
  type TrainerOptions,
  type TrainLoopOptions,
  writeCheckpoint,
  writeSafetensors,
} from "./app/train/mod.ts";
export {
  type GenerateOptions,
  type GenerateStats,
  loadModel,
  type LoadOptions,
  loadWeights,
  type LoadWeightsOptions,
  Model,
  planModelDevices,
  planModelExperts,
} from "./app/model/mod.ts";
export {
  chatSpecialTokens,
  isGgufPath,
  modelChatTemplate,
  modelTokenizer,
  openWeights,
  readModelConfig,
  readWeightBytes,
  weightFormatsFor,
  type WeightInfo,
  type WeightSource,
} from "./app/model/mod.ts";
export {
  buildRemoteExperts,
  checkDevices,
  describeDevicePlan,
  type DevicePlan,
  type DevicePlanInput,
  type ExpertFormats,
  ExpertParallel,
  type HostRouting,
  type ParallelStats,
  planDevices,
  type RemoteRouting,
  routeOnHost,
} from "./app/experts/mod.ts";
export {
  describeExpertPlan,
  type ExpertPlan,
  type ExpertPlanInput,
  formatBytes,
  minimumBudget,
  parseBytes,
  planExperts,
  readRoutingStats,
  ROUTING_STATS_FILE,
  type RoutingStats,
  writeRoutingStats,
} from "./app/experts/placement.ts";
export {
  type ExpertPolicy,
  type ExpertPrefetch,
  ExpertScheduler,
  type ExpertStats,
  type ExpertStatsSummary,
  SLOT_POOL,
  usageHeatmapSvg,
  type WindowCheck,
} from "./app/experts/mod.ts";
export { mulberry32 } from "./core/random.ts";
