/**
 * Runs plans on a WebGPU device, wherever they came from: the planner
 * (`gpu_backend.ts`, for `compile`) or a prebuilt module (`prebuilt.ts`). It
 * imports nothing of the compiler's code, so a prebuilt module needs none at
 * run time.
 *
 * @module
 */

import { allocHost, type DType, type HostArray, paddedBytes } from "../core/dtype.ts";
import type { HostTensor } from "../core/types.ts";
import { debugEnabled } from "../core/debug.ts";
import type { Plan } from "../compiler/plan_types.ts";
import { type Backend, type BoundRun, EXECUTABLE_DISPOSED, type StateType } from "./backend.ts";
import { checkDeviceAlive, type GpuDevice, whileDeviceAlive } from "./device.ts";
import { GpuExecutable, type KernelTiming, ParamBuffers } from "./gpu_executor.ts";
import type { RunOptions } from "./run_options.ts";

/**
 * Parameter and state buffers, shared by the executables compiled with `shareWith`.
 *
 * @example
 * ```ts ignore
 * import { GpuStore } from "./gpu_runner.ts";
 * const store = new GpuStore(await requestDevice());
 * store.params.buffers.size; // 0
 * ```
 */
export class GpuStore {
  /** Parameter buffers by name. */
  readonly params: ParamBuffers;
  /** State buffers by name. */
  readonly states: ParamBuffers;
  /** Names of parameters that have a value. */
  readonly set: Set<string> = new Set();
  /** Executables using these buffers; the last one to be disposed frees them. */
  users = 0;

  /** Empty buffers on `device`. */
  constructor(device: GpuDevice) {
    this.params = new ParamBuffers(device);
    this.states = new ParamBuffers(device);
  }
}

/**
 * Where a runner's plans and constants come from: the planner (`compile`) or
 * data shipped with a prebuilt module.
 *
 * @example
 * ```ts ignore
 * import type { PlanSource } from "./gpu_runner.ts";
 * const source: PlanSource = {
 *   plan: (dims) => plans.get(JSON.stringify(dims))!,
 *   constant: (value) => new Float32Array(constants.get(value)!),
 *   paramDType: () => "f32",
 * };
 * ```
 */
export interface PlanSource {
  /** The plan for these values of the graph's symbols (called once per binding). */
  plan(dims: Record<string, number>): Plan;
  /** The data of constant value `value`, in its dtype. */
  constant(value: number): HostArray;
  /** The dtype of parameter `name`. */
  paramDType(name: string): DType;
  /** Plans are looked up, not built (a prebuilt module's): asking for one costs nothing. */
  readonly lookup?: boolean;
}

/** The cache key of a binding of the symbolic dims. */
const planKey = (dims: Record<string, number>) => JSON.stringify(Object.entries(dims).sort());

/**
 * Runs plans on a WebGPU device: one `GpuExecutable` per binding of the
 * symbolic dims (made on first use and cached), parameters and states in
 * device buffers, batched readbacks.
 *
 * @example
 * ```ts ignore
 * import { GpuRunner } from "./gpu_runner.ts";
 * const runner = new GpuRunner(source, await requestDevice());
 * ```
 */
export class GpuRunner implements Backend {
  readonly #source: PlanSource;
  readonly #device: GpuDevice;
  readonly #plans = new Map<string, { plan: Plan; exe?: GpuExecutable }>();
  readonly store: GpuStore;
  #last?: Plan;
  #disposed = false;
  /** Copies kept by `copyStates` (this runner's own: the states store may be shared). */
  readonly #saved = new Map<string, GPUBuffer>();

  /** Runs the plans of `source` on `device`, keeping buffers in `store`. */
  constructor(source: PlanSource, device: GpuDevice, store?: GpuStore) {
    this.#source = source;
    this.#device = device;
    this.store = store ?? new GpuStore(device);
    this.store.users++;
  }

  setParam(name: string, data: HostArray): void {
    checkDeviceAlive(this.#device);
    this.store.params.set(name, data, paddedBytes(data.length, this.#source.paramDType(name)));
    this.store.set.add(name);
  }

  hasParam(name: string): boolean {
    return this.store.set.has(name);
  }

  plan(dims: Record<string, number>): Plan {
    return this.#entry(dims).plan;
  }

  get lastPlan(): Plan | undefined {
    return this.#last;
  }

  compiled(dims: Record<string, number>): boolean {
    // Building a plan costs planning time, so a plan never built is not compiled.
    const e = this.#plans.get(planKey(dims)) ??
      (this.#source.lookup ? this.#entry(dims) : undefined);
    return !!e &&
      (e.exe !== undefined || e.plan.kernels.every((k) => this.#device.pipelines.has(k.code)));
  }

  #entry(dims: Record<string, number>): { plan: Plan; exe?: GpuExecutable } {
    const key = planKey(dims);
    let e = this.#plans.get(key);
    if (!e) {
      e = { plan: this.#source.plan(dims) };
      this.#plans.set(key, e);
    }
    return e;
  }

  async #exe(
    dims: Record<string, number>,
    onCompile?: (done: number, total: number) => void,
  ): Promise<GpuExecutable> {
    const e = this.#entry(dims);
    if (!e.exe) {
      checkDeviceAlive(this.#device);
      const exe = await GpuExecutable.create(
        this.#device,
        e.plan,
        this.store.params,
        (v) => this.#source.constant(v),
        this.store.states,
        // Disposed while the pipelines compiled: the buffers it would bind are gone.
        () => this.#disposed,
        onCompile,
      );
      if (e.exe) exe.destroy(); // another run made it meanwhile
      else e.exe = exe;
    }
    return e.exe;
  }

  async prepare(bound: BoundRun, options: RunOptions = {}): Promise<GpuExecutable> {
    const exe = await this.#exe(bound.dims, options.onCompile);
    if (this.#disposed) throw new TypeError(EXECUTABLE_DISPOSED);
    checkDeviceAlive(this.#device);
    for (const [name, arr] of bound.data) exe.writeInput(name, arr);
    return exe;
  }

  async run(
    bound: BoundRun,
    options: RunOptions,
    profile: boolean,
  ): Promise<{ outputs: Record<string, HostTensor>; timings?: KernelTiming[] }> {
    const exe = await this.prepare(bound, options);
    this.#last = exe.plan;
    const debug = debugEnabled();
    const r = await exe.run(
      profile || (debug && this.#device.timestamps),
      options.hooks?.(exe.plan),
      options.barriers?.(exe.plan),
    );
    if (debug && r.timings) {
      for (const t of r.timings) console.error(`[kiln] ${t.label}: ${(t.ns / 1e3).toFixed(1)} µs`);
    }
    const outputs: Record<string, HostTensor> = {};
    for (const [name, t] of exe.plan.outputs) {
      outputs[name] = { data: r.outputs.get(name)!, shape: t.shape, dtype: t.dtype };
    }
    return { outputs, timings: r.timings };
  }

  async submit(bound: BoundRun, options: RunOptions): Promise<void> {
    const exe = await this.prepare(bound, options);
    this.#last = exe.plan;
    const device = this.#device.device;
    const hooks = options.hooks?.(exe.plan);
    const from = await exe.runToBarriers(hooks, options.barriers?.(exe.plan));
    const enc = device.createCommandEncoder();
    exe.encode(enc, false, hooks, from);
    device.queue.submit([enc.finish()]);
  }

  async readStates(
    states: readonly (StateType & { name: string })[],
  ): Promise<Record<string, HostTensor>> {
    checkDeviceAlive(this.#device);
    const device = this.#device.device;
    const parts = states.map(({ name, shape, dtype }) => {
      const data = allocHost(dtype, shape.reduce((a, b) => a * b, 1));
      const bytes = paddedBytes(data.length, dtype);
      return { name, shape, dtype, data, bytes, src: this.store.states.ensure(name, bytes) };
    });
    const total = parts.reduce((a, p) => a + p.bytes, 0);
    // One staging buffer and one map for all of them: each readback costs a round trip.
    const staging = device.createBuffer({
      size: Math.max(4, total),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    let off = 0;
    for (const p of parts) {
      enc.copyBufferToBuffer(p.src, 0, staging, off, p.bytes);
      off += p.bytes;
    }
    try {
      device.queue.submit([enc.finish()]);
      await whileDeviceAlive(this.#device, staging.mapAsync(GPUMapMode.READ));
      const all = staging.getMappedRange();
      const out: Record<string, HostTensor> = {};
      off = 0;
      for (const p of parts) {
        new Uint8Array(p.data.buffer).set(new Uint8Array(all, off, p.data.byteLength));
        off += p.bytes;
        out[p.name] = { data: p.data, shape: p.shape, dtype: p.dtype };
      }
      return out;
    } finally {
      staging.destroy(); // on a failed readback too: one buffer per call would pile up
    }
  }

  writeState(name: string, data: HostArray, type: StateType): void {
    checkDeviceAlive(this.#device);
    const bytes = paddedBytes(data.length, type.dtype);
    const padded = new Uint8Array(bytes);
    padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.#device.device.queue.writeBuffer(this.store.states.ensure(name, bytes), 0, padded);
  }

  copyStates(
    states: readonly (StateType & { name: string })[],
    direction: "save" | "restore",
  ): void {
    checkDeviceAlive(this.#device);
    if (direction === "restore") {
      const missing = states.find((s) => !this.#saved.has(s.name));
      if (missing) throw new TypeError(`restoreStates: state "${missing.name}" was never saved`);
    }
    const device = this.#device.device;
    const enc = device.createCommandEncoder();
    for (const { name, shape, dtype } of states) {
      const bytes = paddedBytes(shape.reduce((a, b) => a * b, 1), dtype);
      const live = this.store.states.ensure(name, bytes);
      let kept = this.#saved.get(name);
      if (!kept) {
        kept = device.createBuffer({
          size: bytes,
          usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
        });
        this.#saved.set(name, kept);
      }
      if (direction === "save") enc.copyBufferToBuffer(live, 0, kept, 0, bytes);
      else enc.copyBufferToBuffer(kept, 0, live, 0, bytes);
    }
    device.queue.submit([enc.finish()]);
  }

  resetStates(): void {
    checkDeviceAlive(this.#device);
    const device = this.#device.device;
    const enc = device.createCommandEncoder();
    for (const b of this.store.states.buffers.values()) enc.clearBuffer(b);
    device.queue.submit([enc.finish()]);
  }

  paramBuffer(name: string): GPUBuffer | undefined {
    return this.store.params.buffers.get(name);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const e of this.#plans.values()) e.exe?.destroy();
    this.#plans.clear();
    for (const b of this.#saved.values()) b.destroy();
    this.#saved.clear();
    if (--this.store.users === 0) {
      this.store.params.destroy();
      this.store.states.destroy();
    }
  }
}
