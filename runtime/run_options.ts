/**
 * Options of compiling and running a graph, shared by the executable and its
 * backends.
 *
 * @module
 */

import type { DimBindings } from "../core/shape.ts";
import type { HostTensor } from "../core/types.ts";
import type { TensorData } from "../core/host.ts";
import type { Plan } from "../compiler/plan_types.ts";
import type { EncodeHooks, HostBarriers, KernelTiming } from "./gpu_executor.ts";
import type { Executable } from "./executable.ts";

/**
 * Options of {@linkcode compile}.
 *
 * @example
 * ```ts
 * import { compile, type CompileOptions, cpuDevice, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [2]).add(g.param("b", [2])));
 * const options: CompileOptions = { params: { b: [1, 2] }, fusion: false };
 * const exe = compile(g.build(), cpuDevice(), options);
 * ```
 */
export interface CompileOptions {
  /** Parameter values by name (more can be set later with `setParams`). */
  params?: Record<string, TensorData>;
  /** Fuse kernels (default true). False runs every op as its own kernel, for comparison. */
  fusion?: boolean;
  /**
   * Share parameters and states (by name) with another executable on the same device:
   * a model's prefill and decode graphs read one copy of the weights and one KV cache.
   */
  shareWith?: Executable;
  /**
   * Mixed precision: `"f16"` keeps the forward's activations (materialised f32
   * values of non-backward nodes, see `activationStorage`) in f16 buffers while
   * every kernel computes in f32 and parameters, gradients and states stay f32
   * — about half a training step's memory. Needs the adapter feature
   * `shader-f16` (a TypeError otherwise); the CPU device ignores it. Default
   * `"f32"`.
   */
  activationDtype?: "f32" | "f16";
}

/**
 * Options of a run.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, GraphBuilder, type RunOptions } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("z", g.input("cache", [8]).mul(g.input("s", [1])));
 * const exe = compile(g.build(), cpuDevice());
 * const options: RunOptions = { dims: {} }; // e.g. { dims: { S: 128 } } for a symbol no input fixes
 * await exe.run({ cache: new Float32Array(8), s: [2] }, options);
 * ```
 */
export interface RunOptions {
  /** Values of symbolic dimensions not deducible from the inputs' lengths. */
  dims?: DimBindings;
  /**
   * GPU only: commands recorded right before kernel `i` of the plan (the expert
   * scheduler's weight uploads), built from the plan this run uses.
   */
  hooks?: (plan: Plan) => EncodeHooks | undefined;
  /**
   * GPU only: host barriers (see `HostBarriers`) splitting the run into several
   * submissions, built from the plan this run uses.
   */
  barriers?: (plan: Plan) => HostBarriers | undefined;
  /**
   * GPU only: called as the pipelines this run needs and the device has not
   * compiled yet are compiled (`done` of `total`, from 0 to `total`), before
   * anything is submitted. Not called when every pipeline is compiled already.
   */
  onCompile?: (done: number, total: number) => void;
}

/**
 * Result of a profiled run.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, type ProfileResult, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["N"]).silu());
 * const exe = compile(g.build(), await requestDevice());
 * const r: ProfileResult = await exe.profile({ x: new Float32Array(1024) });
 * for (const k of r.kernels) console.log(k.label, k.ns / 1e3, "µs");
 * ```
 */
export interface ProfileResult {
  /** Outputs by name. */
  outputs: Record<string, HostTensor>;
  /** GPU time of each kernel, in plan order. */
  kernels: KernelTiming[];
}
