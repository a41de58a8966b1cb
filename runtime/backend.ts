/**
 * What an executable needs from the machine it runs on: one interface, two
 * implementations — the CPU interpreter (`cpu_backend.ts`, each op's reference)
 * and WebGPU (`gpu_backend.ts`, planned kernels). The executable validates
 * inputs, parameters and states once, for both, and never branches on the
 * device kind again.
 *
 * @module
 */

import type { DType, HostArray } from "../core/dtype.ts";
import type { HostTensor } from "../core/types.ts";
import type { Plan } from "../compiler/plan_types.ts";
import type { GpuExecutable, KernelTiming } from "./gpu_executor.ts";
import type { RunOptions } from "./run_options.ts";

/**
 * The message of every method of a disposed `Executable` (its buffers are
 * freed; nothing about it can be run or read any more).
 *
 * @example
 * ```ts ignore
 * import { EXECUTABLE_DISPOSED } from "./backend.ts";
 * throw new TypeError(EXECUTABLE_DISPOSED);
 * ```
 */
export const EXECUTABLE_DISPOSED = "Executable was disposed; compile the graph again";

/** Shape and dtype of one state, as the executable resolved them. */
export interface StateType {
  /** Concrete shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/** A run's inputs after validation: symbol values and typed data by input name. */
export interface BoundRun {
  /** Values of the symbols the graph uses. */
  readonly dims: Record<string, number>;
  /** Input data, converted to each input's dtype. */
  readonly data: ReadonlyMap<string, HostArray>;
}

/** Runs one compiled graph on one kind of device. */
export interface Backend {
  /** Stores a validated parameter. */
  setParam(name: string, data: HostArray): void;
  /** True once parameter `name` has a value. */
  hasParam(name: string): boolean;
  /** The plan for these dims (GPU); the CPU interpreter has none and throws. */
  plan(dims: Record<string, number>): Plan;
  /** The plan the most recent run used (GPU), else undefined. */
  readonly lastPlan: Plan | undefined;
  /** Runs and reads every output back (with per-kernel GPU times when `profile`). */
  run(
    bound: BoundRun,
    options: RunOptions,
    profile: boolean,
  ): Promise<{ outputs: Record<string, HostTensor>; timings?: KernelTiming[] }>;
  /** Queues a run without reading anything back. */
  submit(bound: BoundRun, options: RunOptions): Promise<void>;
  /** Plans and uploads a run without submitting it (GPU). */
  prepare(bound: BoundRun, options?: RunOptions): Promise<GpuExecutable>;
  /**
   * Whether a run at these dims would start without planning or compiling a
   * pipeline (always on the CPU interpreter).
   */
  compiled(dims: Record<string, number>): boolean;
  /** Reads states back (one round trip on a GPU). */
  readStates(
    states: readonly (StateType & { name: string })[],
  ): Promise<Record<string, HostTensor>>;
  /** Overwrites a state. */
  writeState(name: string, data: HostArray, type: StateType): void;
  /** Zeroes every state. */
  resetStates(): void;
  /**
   * Keeps a copy of each state (`save`) or writes the kept copies back
   * (`restore`), ordered after the work already queued; no readback.
   */
  copyStates(
    states: readonly (StateType & { name: string })[],
    direction: "save" | "restore",
  ): void;
  /** The device buffer of a parameter (GPU), else undefined. */
  paramBuffer(name: string): GPUBuffer | undefined;
  /**
   * Frees this executable's buffers (and the shared ones when it is their last
   * user). Called once; work still in flight then fails with
   * {@linkcode EXECUTABLE_DISPOSED}.
   */
  dispose(): void;
}
