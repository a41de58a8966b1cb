/**
 * Runs plans made ahead of time: an ahead-of-time module (`kiln build`) embeds
 * its graph's interface and one plan per prebuilt binding of the symbolic dims,
 * and runs them here with the same checks as `compile`, but without the DSL,
 * the passes or the planner — none of their code is imported.
 *
 * @module
 */

import type { HostTensor } from "../core/types.ts";
import { toHost } from "../core/dtype.ts";
import type { TensorData } from "../core/host.ts";
import type { Plan } from "../compiler/plan_types.ts";
import { isKernelTable } from "../core/kernel_tables.ts";
import type { BoundRun, StateType } from "./backend.ts";
import {
  bindInputs,
  checkParams,
  checkState,
  type GraphInterface,
  stateType,
  usedDims,
} from "./bind.ts";
import type { GpuDevice } from "./device.ts";
import type { GpuExecutable } from "./gpu_executor.ts";
import { compilePipelines } from "./pipelines.ts";
import { GpuRunner } from "./gpu_runner.ts";
import { planFromData, type PrebuiltData } from "./plan_data.ts";
import type { ProfileResult, RunOptions } from "./run_options.ts";

const DISPOSED = "PrebuiltExecutable was disposed; load the module again";

/**
 * Options of {@linkcode PrebuiltExecutable}.
 *
 * @example
 * ```ts
 * import type { PrebuiltOptions } from "@kiln/kiln/runtime";
 * const options: PrebuiltOptions = { params: { w: [1, 2, 3] } };
 * ```
 */
export interface PrebuiltOptions<P = Record<string, TensorData>> {
  /** Parameter values by name (more can be set later with `setParams`). */
  params?: Partial<P>;
  /**
   * Another prebuilt executable on the same device whose parameter and state
   * buffers this one shares (a model's prefill and decode graphs): one copy of
   * the weights, and states written by one are read by the other.
   */
  // deno-lint-ignore no-explicit-any
  shareWith?: PrebuiltExecutable<any, any, any, any>;
}

const keyOf = (dims: Record<string, number>) => JSON.stringify(Object.entries(dims).sort());
const showDims = (dims: Record<string, number>) =>
  `{${Object.entries(dims).map(([k, v]) => `${k}=${v}`).join(", ")}}`;

/**
 * Why `plan` cannot run on a device with `caps`, or undefined when it can: a
 * module planned for a larger device binds more buffers or bigger ranges.
 */
function misfit(plan: Plan, device: GpuDevice): string | undefined {
  const caps = device.caps;
  const unknown = plan.slots.find((s) => s.table !== undefined && !isKernelTable(s.table));
  if (unknown) return `it names kernel table "${unknown.table}", which this version of Kiln lacks`;
  for (const k of plan.kernels) {
    const storage = k.bindings.filter((b) => b.access !== "uniform").length;
    if (storage > caps.maxStorageBuffers) {
      return `kernel ${k.label} binds ${storage} storage buffers, this device allows ${caps.maxStorageBuffers}`;
    }
    const big = k.bindings.find((b) => b.size > caps.maxBindingSize);
    if (big) {
      return `kernel ${k.label} binds ${big.size} bytes, this device allows ${caps.maxBindingSize}`;
    }
    if (k.workgroups.some((w) => w > caps.maxWorkgroupsPerDim)) {
      return `kernel ${k.label} dispatches ${
        k.workgroups.join("x")
      } workgroups, this device allows ${caps.maxWorkgroupsPerDim} per dimension`;
    }
    if (!caps.f16 && /\benable\s+f16\b/.test(k.code)) {
      return `kernel ${k.label} uses f16, which this device lacks (shader-f16)`;
    }
    if (!caps.subgroups && /\benable\s+subgroups\b/.test(k.code)) {
      return `kernel ${k.label} uses subgroups, which this device lacks`;
    }
  }
  return undefined;
}

/**
 * A graph prebuilt for a set of bindings of its symbolic dims, run on a WebGPU
 * device from plain data (no compiler at run time). Inputs, parameters and
 * states are checked as {@linkcode Executable} checks them; dims with no
 * prebuilt plan are a RangeError naming them and the prebuilt sets.
 *
 * @example
 * ```ts ignore
 * import { PrebuiltExecutable, requestDevice } from "@kiln/kiln/runtime";
 * import { PREBUILT } from "./mlp.aot.ts"; // emitted by `kiln build`
 * const exe = new PrebuiltExecutable(PREBUILT, await requestDevice(), { params });
 * const { y } = await exe.run({ x: new Float32Array(64 * 512) });
 * exe.dispose();
 * ```
 */
export class PrebuiltExecutable<
  I extends { [K in keyof I]: TensorData } = Record<string, TensorData>,
  O extends { [K in keyof O]: HostTensor } = Record<string, HostTensor>,
  P extends { [K in keyof P]: TensorData } = Record<string, TensorData>,
  S extends { [K in keyof S]: HostTensor } = Record<string, HostTensor>,
> {
  /** Inputs, outputs, params, states and symbols of the graph. */
  readonly interface: GraphInterface;
  /** The device it runs on. */
  readonly device: GpuDevice;
  /** The bindings of the symbolic dims that have a plan. */
  readonly prebuiltDims: readonly Readonly<Record<string, number>>[];
  readonly #plans = new Map<string, Plan>();
  readonly #runner: GpuRunner;
  #disposed = false;

  /**
   * Checks that every plan fits `device` (a RangeError naming the kernel and
   * limit otherwise), then sets `options.params`.
   */
  constructor(data: PrebuiltData, device: GpuDevice, options: PrebuiltOptions<P> = {}) {
    if (data.format !== 1) {
      throw new TypeError(`Prebuilt module "${data.name}" has format ${data.format}, expected 1`);
    }
    this.interface = data.interface;
    this.device = device;
    for (const p of data.plans) {
      const plan = planFromData(p, data.shaders);
      const why = misfit(plan, device);
      if (why) {
        throw new RangeError(
          `Prebuilt module "${data.name}" does not fit ${device.adapterName}: ${why}; ` +
            `build it again for this device`,
        );
      }
      this.#plans.set(keyOf(usedDims(data.interface.symbols, { ...plan.dims })), plan);
    }
    this.prebuiltDims = data.plans.map((p) => p.dims);
    const constants = new Map(data.constants.map((c) => [c.value, c]));
    const dtypes = new Map(data.interface.params.map((p) => [p.name, p.dtype]));
    const shared = options.shareWith;
    if (shared && shared.device !== device) {
      throw new TypeError("shareWith: the executables must be on the same device");
    }
    if (shared && shared.#disposed) {
      throw new TypeError(
        "shareWith: that PrebuiltExecutable was disposed (its buffers are freed)",
      );
    }
    this.#runner = new GpuRunner(
      {
        plan: (dims) => this.#find(dims),
        constant: (v) => {
          const c = constants.get(v);
          if (!c) throw new RangeError(`Prebuilt module "${data.name}" lacks constant %${v}`);
          return toHost(c.data, c.dtype);
        },
        paramDType: (name) => dtypes.get(name)!,
        lookup: true,
      },
      device,
      shared ? shared.#runner.store : undefined,
    );
    if (options.params) this.setParams(options.params);
  }

  #find(dims: Record<string, number>): Plan {
    const plan = this.#plans.get(keyOf(dims));
    if (plan) return plan;
    const unbound = this.interface.symbols.filter((s) => !(s in dims));
    throw new RangeError(
      `No prebuilt plan for dims ${showDims(dims)}${
        unbound.length ? ` (${unbound.join(", ")} unbound)` : ""
      }: prebuilt for ${this.prebuiltDims.map(showDims).join(", ") || "none"}; ` +
        `build the module with these dims too`,
    );
  }

  get #live(): GpuRunner {
    if (this.#disposed) throw new TypeError(DISPOSED);
    return this.#runner;
  }

  /**
   * The plan the most recent run used.
   *
   * @example
   * ```ts ignore
   * await exe.run({ x });
   * exe.lastPlan?.kernels.length;
   * ```
   */
  get lastPlan(): Plan | undefined {
    return this.#live.lastPlan;
  }

  /**
   * The prebuilt plan for `dims` (a RangeError when there is none).
   *
   * @example
   * ```ts ignore
   * exe.plan({ T: 64 }).kernels.map((k) => k.label);
   * ```
   */
  plan(dims: Record<string, number> = {}): Plan {
    return this.#live.plan(usedDims(this.interface.symbols, { ...dims }));
  }

  /**
   * Compiles the pipelines of every prebuilt plan now, so no run waits for
   * them; `onCompile` hears progress.
   *
   * @example
   * ```ts ignore
   * await exe.compilePipelines((done, total) => console.error(`${done}/${total}`));
   * ```
   */
  async compilePipelines(onCompile?: (done: number, total: number) => void): Promise<void> {
    for (const plan of this.#plans.values()) {
      if (this.#disposed) throw new TypeError(DISPOSED);
      await compilePipelines(this.device, plan, onCompile);
    }
  }

  /**
   * Uploads parameters by name; unknown names and wrong sizes throw before anything is written.
   *
   * @example
   * ```ts ignore
   * exe.setParams({ w: new Float32Array(512 * 1024) });
   * ```
   */
  setParams(params: Partial<P>): void {
    const runner = this.#live;
    const given = params as Record<string, TensorData>;
    for (const [name, arr] of checkParams(this.interface, given)) runner.setParam(name, arr);
  }

  /**
   * True once parameter `name` has a value.
   *
   * @example
   * ```ts ignore
   * exe.hasParam("w"); // false until setParams({ w })
   * ```
   */
  hasParam(name: keyof P & string): boolean {
    return this.#live.hasParam(name);
  }

  #bind(inputs: I, options: RunOptions): BoundRun {
    const runner = this.#live;
    const given = inputs as Record<string, TensorData>;
    const bound = bindInputs(this.interface, given, options, (n) => runner.hasParam(n));
    this.#find(bound.dims); // before any upload: no plan means nothing runs
    return bound;
  }

  /**
   * Runs the graph and reads every output back in one round trip.
   *
   * @example
   * ```ts ignore
   * const { y } = await exe.run({ x: new Float32Array(64) });
   * ```
   */
  async run(inputs: I, options: RunOptions = {}): Promise<O> {
    return (await this.#live.run(this.#bind(inputs, options), options, false)).outputs as O;
  }

  /**
   * Queues a run without reading anything back (read states later).
   *
   * @example
   * ```ts ignore
   * await exe.submit({ inc: [1] });
   * ```
   */
  async submit(inputs: I, options: RunOptions = {}): Promise<void> {
    await this.#live.submit(this.#bind(inputs, options), options);
  }

  /**
   * Runs once with a timestamp around every kernel.
   *
   * @example
   * ```ts ignore
   * const { kernels } = await exe.profile({ x: new Float32Array(64) });
   * ```
   */
  async profile(inputs: I, options: RunOptions = {}): Promise<ProfileResult> {
    const r = await this.#live.run(this.#bind(inputs, options), options, true);
    return { outputs: r.outputs, kernels: r.timings ?? [] };
  }

  /**
   * Uploads a run's inputs without submitting it (for benchmarks that encode many runs).
   *
   * @example
   * ```ts ignore
   * const gpu = await exe.prepare({ x: new Float32Array(64) });
   * ```
   */
  async prepare(inputs: I, options: RunOptions = {}): Promise<GpuExecutable> {
    return await this.#live.prepare(this.#bind(inputs, options), options);
  }

  /**
   * Whether a run with these inputs would start without compiling a pipeline
   * (all compiled at load, or by an earlier run at these dims).
   *
   * @example
   * ```ts ignore
   * exe.compiled({ x: new Float32Array(64) }); // false before the first run
   * ```
   */
  compiled(inputs: I): boolean {
    return this.#live.compiled(this.#bind(inputs, {}).dims);
  }

  #stateType(name: string): StateType {
    return stateType(this.interface, name, this.#live.lastPlan);
  }

  /**
   * Reads a persistent state back to the host.
   *
   * @example
   * ```ts ignore
   * (await exe.readState("acc")).data;
   * ```
   */
  async readState<K extends keyof S & string>(name: K): Promise<S[K]> {
    return (await this.readStates([name]))[name];
  }

  /**
   * Reads several persistent states back in one round trip.
   *
   * @example
   * ```ts ignore
   * const { a, b } = await exe.readStates(["a", "b"]);
   * ```
   */
  async readStates<K extends keyof S & string>(names: readonly K[]): Promise<Pick<S, K>> {
    const types = names.map((name) => ({ name, ...this.#stateType(name) }));
    return await this.#live.readStates(types) as unknown as Pick<S, K>;
  }

  /**
   * Overwrites a persistent state (checked like an input).
   *
   * @example
   * ```ts ignore
   * exe.writeState("token", [41]);
   * ```
   */
  writeState(name: keyof S & string, data: TensorData): void {
    const type = this.#stateType(name);
    this.#live.writeState(name, checkState(name, type, data), type);
  }

  /**
   * Zeroes every persistent state.
   *
   * @example
   * ```ts ignore
   * exe.resetStates();
   * ```
   */
  resetStates(): void {
    this.#live.resetStates();
  }

  /**
   * Keeps a device copy of these states, queued after the work already
   * submitted (no readback): {@linkcode PrebuiltExecutable.restoreStates}
   * writes it back.
   *
   * @example
   * ```ts ignore
   * exe.saveStates(["l0.mamba.ssm_state"]);
   * ```
   */
  saveStates(names: readonly (keyof S & string)[]): void {
    this.#live.copyStates(names.map((name) => ({ name, ...this.#stateType(name) })), "save");
  }

  /**
   * Writes back the copies {@linkcode PrebuiltExecutable.saveStates} kept (a
   * TypeError naming a state that was never saved, before anything is written).
   *
   * @example
   * ```ts ignore
   * exe.restoreStates(["l0.mamba.ssm_state"]);
   * ```
   */
  restoreStates(names: readonly (keyof S & string)[]): void {
    this.#live.copyStates(names.map((name) => ({ name, ...this.#stateType(name) })), "restore");
  }

  /**
   * The device buffer of parameter `name` (after `setParams`).
   *
   * @example
   * ```ts ignore
   * exe.paramBuffer("w")?.size;
   * ```
   */
  paramBuffer(name: keyof P & string): GPUBuffer | undefined {
    return this.#live.paramBuffer(name);
  }

  /**
   * Frees every buffer. Idempotent; every other method then throws a TypeError.
   *
   * @example
   * ```ts ignore
   * exe.dispose();
   * ```
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#runner.dispose();
  }
}
