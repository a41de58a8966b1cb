/**
 * The compile entry point: runs the passes (fold → CSE → DCE → fuse), then builds
 * and caches a device plan per binding of the symbolic dimensions, and runs it.
 *
 * @module
 */

import type { Graph } from "../core/graph.ts";
import type { DimBindings } from "../core/shape.ts";
import type { HostTensor } from "../core/types.ts";
import type { TensorData } from "../core/host.ts";
import { fuse, type Schedule } from "../compiler/passes/fuse.ts";
import { optimize } from "../compiler/optimize.ts";
import { activationStorage } from "../compiler/storage.ts";
import { describePlan, type Plan } from "../compiler/plan.ts";
import { type Backend, type BoundRun, EXECUTABLE_DISPOSED, type StateType } from "./backend.ts";
import {
  bindInputs,
  checkParams,
  checkState,
  type GraphInterface,
  graphInterface,
  stateType,
  usedDims,
} from "./bind.ts";
import { CpuBackend, type CpuObserver } from "./cpu_backend.ts";
import type { CpuDevice, KilnDevice } from "./device.ts";
import { GpuBackend } from "./gpu_backend.ts";
import type { EncodeHooks, GpuExecutable, HostBarriers, KernelTiming } from "./gpu_executor.ts";
import type { CompileOptions, ProfileResult, RunOptions } from "./run_options.ts";

export type { CompileOptions, EncodeHooks, HostBarriers, KernelTiming, ProfileResult, RunOptions };
export { type CpuObserver, runCpu } from "./cpu_backend.ts";

/**
 * A graph compiled for one device. Plans are built per binding of the symbolic
 * dimensions on first use and cached; pipelines are cached by WGSL text.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["N"]);
 * g.output("y", x.mul(2).add(1).silu());
 * const dev = await requestDevice();
 * const exe = compile(g.build(), dev);
 * const { y } = await exe.run({ x: new Float32Array([1, 2, 3]) });
 * exe.dispose();
 * ```
 */
export class Executable {
  /** The optimised graph. */
  readonly graph: Graph;
  /** The fused schedule (device independent). */
  readonly schedule: Schedule;
  /** The device it runs on. */
  readonly device: KilnDevice;
  readonly #backend: Backend;
  readonly #iface: GraphInterface;
  #disposed = false;

  /**
   * The plan the most recent GPU run used (undefined before the first run or on the CPU).
   *
   * @example
   * ```ts ignore
   * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["N"]).exp());
   * const exe = compile(g.build(), await requestDevice());
   * await exe.run({ x: new Float32Array(16) });
   * exe.lastPlan?.kernels.length; // 1
   * ```
   */
  get lastPlan(): Plan | undefined {
    return this.#live.lastPlan;
  }

  /** The backend, unless disposed: then every method says so, instead of failing on freed buffers. */
  get #live(): Backend {
    if (this.#disposed) throw new TypeError(EXECUTABLE_DISPOSED);
    return this.#backend;
  }

  /** Use {@linkcode compile}. */
  constructor(graph: Graph, device: KilnDevice, options: CompileOptions = {}) {
    this.graph = optimize(graph);
    this.schedule = withActivationStorage(
      fuse(this.graph, { enabled: options.fusion ?? true }),
      device,
      options.activationDtype,
    );
    this.#iface = graphInterface(this.graph);
    this.device = device;
    if (options.shareWith && options.shareWith.device !== device) {
      throw new TypeError("shareWith: the executables must be compiled for the same device");
    }
    if (options.shareWith && options.shareWith.#disposed) {
      throw new TypeError(
        "shareWith: that Executable was disposed (its buffers are freed); compile the graph again",
      );
    }
    const shared = options.shareWith ? options.shareWith.#backend : undefined;
    // The one place the device kind matters: which backend runs the graph.
    this.#backend = device.kind === "gpu"
      ? new GpuBackend(this.graph, this.schedule, device, (shared as GpuBackend)?.store)
      : new CpuBackend(this.graph, (shared as CpuBackend)?.store);
    if (options.params) this.setParams(options.params);
  }

  /**
   * On the CPU device, `observer` hears every op node the interpreter runs
   * (with its input and output tensors) from the next run on: for analyses of
   * a model's activations, such as importance matrices. `undefined` stops it.
   * A GPU device runs fused kernels, not nodes: a `TypeError` there.
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [2]).mul(2));
   * const exe = compile(g.build(), cpuDevice());
   * const ops: string[] = [];
   * exe.observe((node) => ops.push(node.op));
   * await exe.run({ x: new Float32Array([1, 2]) });
   * ops.length > 0; // true
   * ```
   */
  observe(observer: CpuObserver | undefined): void {
    const backend = this.#live;
    if (!(backend instanceof CpuBackend)) {
      throw new TypeError("observe: only the CPU device runs a graph node by node");
    }
    backend.observer = observer;
  }

  /**
   * Uploads parameters by name; unknown names and wrong sizes throw before anything is written.
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [2]).mul(g.param("w", [2])));
   * const exe = compile(g.build(), cpuDevice());
   * exe.setParams({ w: new Float32Array([3, 4]) });
   * (await exe.run({ x: [1, 1] })).y.data; // Float32Array [3, 4]
   * ```
   */
  setParams(params: Record<string, TensorData>): void {
    const backend = this.#live;
    for (const [name, arr] of checkParams(this.#iface, params)) backend.setParam(name, arr);
  }

  /** Binds symbolic dims from the inputs; checks every input; converts data. */
  #bind(inputs: Record<string, TensorData>, options: RunOptions): BoundRun {
    const backend = this.#live;
    return bindInputs(this.#iface, inputs, options, (name) => backend.hasParam(name));
  }

  /**
   * The plan for these dims (built and cached on first use). GPU devices only.
   *
   * @example
   * ```ts ignore
   * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 512]);
   * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
   * const exe = compile(g.build(), await requestDevice());
   * const plan = exe.plan({ T: 128 });
   * console.log(plan.kernels.map((k) => k.label), plan.peakBytes);
   * ```
   */
  plan(dims: DimBindings = {}): Plan {
    return this.#live.plan(usedDims(this.#iface.symbols, { ...dims }));
  }

  /**
   * Text description of the plan: kernels with fused ops, grids, buffers, peak bytes.
   *
   * @example
   * ```ts ignore
   * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T", 64]).mul(2).add(1).silu());
   * const exe = compile(g.build(), await requestDevice());
   * console.log(exe.inspect({ T: 128 }));
   * ```
   */
  inspect(dims: DimBindings = {}): string {
    return describePlan(this.plan(dims));
  }

  /**
   * Runs the graph and reads every output back in one round trip.
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["N"]).mul(2));
   * const exe = compile(g.build(), cpuDevice());
   * const { y } = await exe.run({ x: [1, 2, 3] });
   * y.shape; // [3]
   * ```
   */
  async run(
    inputs: Record<string, TensorData>,
    options: RunOptions = {},
  ): Promise<Record<string, HostTensor>> {
    return (await this.#live.run(this.#bind(inputs, options), options, false)).outputs;
  }

  /**
   * Queues a run on the device without reading anything back: for loops whose
   * results stay on the device (a decode loop feeding sampled ids back through
   * state) and are read every few steps with `readState`.
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const n = g.state("n", [1]);
   * g.assign(n, n.add(g.input("inc", [1])));
   * g.output("n", n);
   * const exe = compile(g.build(), cpuDevice());
   * for (let i = 0; i < 3; i++) await exe.submit({ inc: [1] });
   * (await exe.readState("n")).data; // Float32Array [3]
   * ```
   */
  async submit(inputs: Record<string, TensorData>, options: RunOptions = {}): Promise<void> {
    await this.#live.submit(this.#bind(inputs, options), options);
  }

  /**
   * Runs once with a timestamp around every kernel.
   *
   * @example
   * ```ts ignore
   * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["N"]).silu());
   * const exe = compile(g.build(), await requestDevice());
   * const { kernels } = await exe.profile({ x: new Float32Array(1 << 20) });
   * console.log(kernels);
   * ```
   */
  async profile(
    inputs: Record<string, TensorData>,
    options: RunOptions = {},
  ): Promise<ProfileResult> {
    const r = await this.#live.run(this.#bind(inputs, options), options, true);
    return { outputs: r.outputs, kernels: r.timings ?? [] };
  }

  /**
   * Prepares (plans and uploads) a run without submitting it, for benchmarks that encode many runs.
   *
   * @example
   * ```ts ignore
   * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["N"]).silu());
   * const dev = await requestDevice();
   * const exe = compile(g.build(), dev);
   * const gpu = await exe.prepare({ x: new Float32Array(1024) });
   * const enc = dev.device.createCommandEncoder();
   * for (let i = 0; i < 10; i++) gpu.encode(enc);
   * dev.device.queue.submit([enc.finish()]);
   * ```
   */
  async prepare(
    inputs: Record<string, TensorData>,
    options: RunOptions = {},
  ): Promise<GpuExecutable> {
    return await this.#live.prepare(this.#bind(inputs, options), options);
  }

  /**
   * Whether a run with these inputs would start without planning or compiling
   * a pipeline: its dims ran (or were prepared) before. Always true on the CPU.
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["N"]).mul(2));
   * compile(g.build(), cpuDevice()).compiled({ x: [1, 2] }); // true: nothing to compile
   * ```
   */
  compiled(inputs: Record<string, TensorData>): boolean {
    return this.#live.compiled(this.#bind(inputs, {}).dims);
  }

  #stateType(name: string): StateType {
    return stateType(this.#iface, name, this.#live.lastPlan);
  }

  /**
   * Reads a persistent state back to the host (one round trip on a GPU).
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const acc = g.state("acc", [2]);
   * g.assign(acc, acc.add(g.input("x", [2])));
   * g.output("acc", acc);
   * const exe = compile(g.build(), cpuDevice());
   * await exe.run({ x: [1, 2] });
   * (await exe.readState("acc")).data; // Float32Array [1, 2]
   * ```
   */
  async readState(name: string): Promise<HostTensor> {
    return (await this.readStates([name]))[name];
  }

  /**
   * Reads several persistent states back in one round trip (one staging buffer,
   * one map). GPU only; the CPU device copies.
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const a = g.state("a", [1]), b = g.state("b", [1]);
   * g.assign(a, a.add(1));
   * g.assign(b, b.sub(1));
   * g.output("a", a);
   * const exe = compile(g.build(), cpuDevice());
   * await exe.run({});
   * const { a: av, b: bv } = await exe.readStates(["a", "b"]); // data [1] and [-1]
   * ```
   */
  async readStates(names: readonly string[]): Promise<Record<string, HostTensor>> {
    return await this.#live.readStates(
      names.map((name) => ({ name, ...this.#stateType(name) })),
    );
  }

  /**
   * The device buffer of parameter `name` (after `setParams`), for runtime code that writes it.
   *
   * @example
   * ```ts ignore
   * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).add(g.param("b", [4])));
   * const exe = compile(g.build(), await requestDevice(), { params: { b: [1, 2, 3, 4] } });
   * exe.paramBuffer("b")?.size; // 16
   * ```
   */
  paramBuffer(name: string): GPUBuffer | undefined {
    return this.#live.paramBuffer(name);
  }

  /**
   * Overwrites a persistent state (checked like an input).
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const tok = g.state("token", [1], "u32");
   * g.assign(tok, tok.add(1));
   * g.output("t", tok);
   * const exe = compile(g.build(), cpuDevice());
   * exe.writeState("token", [41]);
   * await exe.run({});
   * (await exe.readState("token")).data; // Uint32Array [42]
   * ```
   */
  writeState(name: string, data: TensorData): void {
    const type = this.#stateType(name);
    this.#live.writeState(name, checkState(name, type, data), type);
  }

  /**
   * Keeps a device-side copy of persistent states, queued after the work
   * already submitted (no readback): {@linkcode Executable.restoreStates}
   * writes it back, e.g. to rewind recurrent state after speculative steps.
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const s = g.state("s", [1]);
   * g.assign(s, s.add(1));
   * g.output("s", s);
   * const exe = compile(g.build(), cpuDevice());
   * await exe.run({});
   * exe.saveStates(["s"]); // s = 1 kept
   * await exe.run({}); // s = 2
   * exe.restoreStates(["s"]); // s = 1 again
   * ```
   */
  saveStates(names: readonly string[]): void {
    this.#live.copyStates(names.map((name) => ({ name, ...this.#stateType(name) })), "save");
  }

  /**
   * Writes back the copies {@linkcode Executable.saveStates} kept (a
   * TypeError naming a state that was never saved, before anything is written).
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const s = g.state("s", [1]);
   * g.assign(s, s.add(1));
   * g.output("s", s);
   * const exe = compile(g.build(), cpuDevice());
   * exe.saveStates(["s"]);
   * await exe.run({});
   * exe.restoreStates(["s"]); // s = 0 again
   * ```
   */
  restoreStates(names: readonly string[]): void {
    this.#live.copyStates(names.map((name) => ({ name, ...this.#stateType(name) })), "restore");
  }

  /**
   * Zeroes every persistent state (a new sequence).
   *
   * @example
   * ```ts
   * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const s = g.state("s", [1]);
   * g.assign(s, s.add(1));
   * g.output("s", s);
   * const exe = compile(g.build(), cpuDevice());
   * await exe.run({});
   * exe.resetStates(); // a new sequence: every state back to zero
   * ```
   */
  resetStates(): void {
    this.#live.resetStates();
  }

  /**
   * Frees device buffers of every plan and the parameters (shared ones when
   * this is their last user). Idempotent; every other method then throws a
   * TypeError saying the executable was disposed.
   *
   * @example
   * ```ts ignore
   * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).exp());
   * const exe = compile(g.build(), await requestDevice());
   * await exe.run({ x: [0, 1, 2, 3] });
   * exe.dispose(); // frees the plan and parameter buffers
   * ```
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#backend.dispose();
  }
}

/**
 * Compiles `graph` for `device`. Shape errors were already raised while building;
 * here the passes run and plans are made lazily per set of dims.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [3]);
 * g.output("y", x.add(1));
 * const exe = compile(g.build(), cpuDevice());
 * const { y } = await exe.run({ x: [1, 2, 3] });
 * y.data; // Float32Array [2, 3, 4]
 * ```
 */
export function compile(
  graph: Graph,
  device: KilnDevice | CpuDevice,
  options: CompileOptions = {},
): Executable {
  return new Executable(graph, device, options);
}

/**
 * The schedule with `CompileOptions.activationDtype`'s storage: f16 buffers for
 * the forward's activations on a GPU with `shader-f16`; unchanged for f32 and
 * on the CPU device (whose host arrays compute in f64/f32 anyway).
 */
function withActivationStorage(
  schedule: Schedule,
  device: KilnDevice | CpuDevice,
  dtype: unknown = "f32",
): Schedule {
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`activationDtype must be "f32" or "f16", got ${JSON.stringify(dtype)}`);
  }
  if (dtype === "f32" || device.kind !== "gpu") return schedule;
  if (!device.caps.f16) {
    throw new TypeError(
      `activationDtype "f16" needs the adapter feature shader-f16, which ${device.adapterName} lacks: use "f32"`,
    );
  }
  const storage = activationStorage(schedule, dtype);
  return storage.size ? { ...schedule, storage } : schedule;
}
