/**
 * The compile entry point: runs the passes (fold → CSE → DCE → fuse), then builds
 * and caches a device plan per binding of the symbolic dimensions, and runs it.
 *
 * @module
 */

import type { DType, HostArray } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { type DimBindings, formatShape, numel } from "../core/shape.ts";
import { fuse, type Schedule } from "../compiler/passes/fuse.ts";
import { optimize } from "../compiler/optimize.ts";
import { debugEnabled } from "../core/debug.ts";
import { buildPlan, describePlan, type Plan } from "../compiler/plan.ts";
import { allocHost, dtypeOfHost, paddedBytes, toHost } from "../core/dtype.ts";
import { opDef } from "../ops/registry.ts";
import type { HostTensor } from "../core/types.ts";
import type { CpuDevice, GpuDevice, KilnDevice } from "./device.ts";
import {
  type EncodeHooks,
  GpuExecutable,
  type HostBarriers,
  type KernelTiming,
  ParamBuffers,
} from "./gpu_executor.ts";
import { coerce, type TensorData, unpack } from "../core/host.ts";

export type { EncodeHooks, HostBarriers, KernelTiming };

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
  readonly #plans = new Map<string, { plan: Plan; exe?: GpuExecutable }>();
  readonly #store: Store;
  #last?: Plan;

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
    return this.#last;
  }

  /** Use {@linkcode compile}. */
  constructor(graph: Graph, device: KilnDevice, options: CompileOptions = {}) {
    this.graph = optimize(graph);
    this.schedule = fuse(this.graph, { enabled: options.fusion ?? true });
    this.device = device;
    if (options.shareWith && options.shareWith.device !== device) {
      throw new TypeError("shareWith: the executables must be compiled for the same device");
    }
    this.#store = options.shareWith ? options.shareWith.#store : new Store(device);
    this.#store.users++;
    if (options.params) this.setParams(options.params);
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
    const checked: [string, HostArray][] = [];
    for (const [name, data] of Object.entries(params)) {
      const id = this.graph.params.get(name);
      if (id === undefined) {
        const known = [...this.graph.params.keys()].join(", ") || "none";
        throw new TypeError(`Unknown param "${name}" (known: ${known})`);
      }
      const v = this.graph.values[id];
      const { values, shape } = unpack(data, `param "${name}"`);
      const n = numel(v.shape as number[]);
      if (values.length !== n || (shape && formatShape(shape) !== formatShape(v.shape))) {
        throw new RangeError(
          `Param "${name}" expects ${n} values of shape ${
            formatShape(v.shape)
          }, got ${values.length}${shape ? ` of shape ${formatShape(shape)}` : ""}`,
        );
      }
      checked.push([name, coerce(values, v.dtype, `param "${name}"`)]);
    }
    for (const [name, arr] of checked) {
      this.#store.paramData.set(name, arr);
      this.#store.params?.set(name, arr, paddedBytes(arr.length, dtypeOfHost(arr)));
    }
  }

  /** Binds symbolic dims from the inputs; checks every input; converts data. */
  #bind(
    inputs: Record<string, TensorData>,
    options: RunOptions,
  ): { dims: Record<string, number>; data: Map<string, HostArray> } {
    const dims: Record<string, number> = { ...(options.dims ?? {}) };
    for (const [k, v] of Object.entries(dims)) {
      if (!Number.isInteger(v) || v < 0) {
        throw new RangeError(`Dimension "${k}" must be an integer >= 0, got ${v}`);
      }
    }
    for (const name of Object.keys(inputs)) {
      if (!this.graph.inputs.has(name)) {
        throw new TypeError(
          `Unknown input "${name}" (inputs: ${[...this.graph.inputs.keys()].join(", ") || "none"})`,
        );
      }
    }
    const data = new Map<string, HostArray>();
    const pending: [string, number, HostArray | readonly number[]][] = [];
    for (const [name, id] of this.graph.inputs) {
      const v = this.graph.values[id];
      if (!(name in inputs)) {
        throw new TypeError(`Missing input "${name}" of shape ${formatShape(v.shape)}`);
      }
      const { values, shape } = unpack(inputs[name], `input "${name}"`);
      if (shape) {
        if (shape.length !== v.shape.length) {
          throw new RangeError(
            `Input "${name}" has shape ${formatShape(shape)}, expected ${formatShape(v.shape)}`,
          );
        }
        v.shape.forEach((d, k) => {
          if (typeof d === "number") {
            if (d !== shape[k]) {
              throw new RangeError(
                `Input "${name}" has shape ${formatShape(shape)}, expected ${formatShape(v.shape)}`,
              );
            }
          } else if (dims[d] !== undefined && dims[d] !== shape[k]) {
            throw new RangeError(
              `Input "${name}" binds "${d}" = ${shape[k]} but it is already ${dims[d]}`,
            );
          } else dims[d] = shape[k];
        });
      }
      pending.push([name, id, values]);
    }
    // Inputs given as flat arrays: solve for at most one unknown symbol by length.
    for (const [name, id, values] of pending) {
      const v = this.graph.values[id];
      let known = 1;
      const unknown: string[] = [];
      for (const d of v.shape) {
        if (typeof d === "number") known *= d;
        else if (dims[d] !== undefined) known *= dims[d];
        else if (!unknown.includes(d)) unknown.push(d);
        else unknown.push(d);
      }
      if (unknown.length === 1 && known > 0 && values.length % known === 0) {
        dims[unknown[0]] = values.length / known;
      } else if (unknown.length > 1) {
        throw new RangeError(
          `Input "${name}" ${formatShape(v.shape)}: pass { data, shape } or dims for ${
            unknown.join(", ")
          }`,
        );
      }
      const n = v.shape.reduce<number>(
        (a, d) => a * (typeof d === "number" ? d : dims[d] ?? NaN),
        1,
      );
      if (values.length !== n) {
        throw new RangeError(
          `Input "${name}" ${formatShape(v.shape)} expects ${n} values, got ${values.length}`,
        );
      }
      data.set(name, coerce(values, v.dtype, `input "${name}"`));
    }
    for (const [name] of this.graph.params) {
      if (!this.#store.paramData.has(name)) {
        throw new TypeError(`Param "${name}" has no value: pass it with setParams()`);
      }
    }
    return { dims, data };
  }

  #usedDims(dims: Record<string, number>): Record<string, number> {
    const used: Record<string, number> = {};
    for (const v of this.graph.values) {
      for (const d of v.shape) if (typeof d === "string" && d in dims) used[d] = dims[d];
    }
    return used;
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
    return this.#entry(this.#usedDims({ ...dims })).plan;
  }

  #entry(dims: Record<string, number>): { plan: Plan; exe?: GpuExecutable } {
    if (this.device.kind !== "gpu") {
      throw new TypeError("Plans exist only for GPU devices; the CPU device interprets the graph");
    }
    const key = JSON.stringify(Object.entries(dims).sort());
    let e = this.#plans.get(key);
    if (!e) {
      e = { plan: buildPlan(this.schedule, dims, this.device.caps) };
      this.#plans.set(key, e);
    }
    return e;
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
    return (await this.#run(inputs, options, false)).outputs;
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
    if (this.device.kind === "cpu") {
      await this.#run(inputs, options, false);
      return;
    }
    const exe = await this.prepare(inputs, options);
    this.#last = exe.plan;
    const device = (this.device as GpuDevice).device;
    const hooks = options.hooks?.(exe.plan);
    const from = await exe.runToBarriers(hooks, options.barriers?.(exe.plan));
    const enc = device.createCommandEncoder();
    exe.encode(enc, false, hooks, from);
    device.queue.submit([enc.finish()]);
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
    const r = await this.#run(inputs, options, true);
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
    const { dims, data } = this.#bind(inputs, options);
    const exe = await this.#gpuExe(this.#usedDims(dims));
    for (const [name, arr] of data) exe.writeInput(name, arr);
    return exe;
  }

  async #gpuExe(dims: Record<string, number>): Promise<GpuExecutable> {
    const e = this.#entry(dims);
    if (!e.exe) {
      const consts = this.graph.constants;
      e.exe = await GpuExecutable.create(
        this.device as GpuDevice,
        e.plan,
        this.#store.params!,
        (v) => toHost(consts.get(v)!, this.graph.values[v].dtype),
        this.#store.states,
      );
    }
    return e.exe;
  }

  async #run(inputs: Record<string, TensorData>, options: RunOptions, profile: boolean) {
    const { dims, data } = this.#bind(inputs, options);
    if (this.device.kind === "cpu") {
      return {
        outputs: runCpu(this.graph, dims, data, this.#store.paramData, this.#store.cpuStates),
        timings: undefined,
      };
    }
    const exe = await this.#gpuExe(this.#usedDims(dims));
    this.#last = exe.plan;
    for (const [name, arr] of data) exe.writeInput(name, arr);
    const debug = debugEnabled();
    const r = await exe.run(
      profile || (debug && (this.device as GpuDevice).timestamps),
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

  #stateType(name: string): { shape: readonly number[]; dtype: DType } {
    const id = this.graph.states.get(name);
    if (id === undefined) {
      throw new TypeError(
        `Unknown state "${name}" (states: ${[...this.graph.states.keys()].join(", ") || "none"})`,
      );
    }
    const v = this.graph.values[id];
    const planned = this.#last?.states.get(name);
    if (planned) return { shape: planned.shape, dtype: v.dtype };
    if (v.shape.some((d) => typeof d === "string")) {
      throw new RangeError(
        `State "${name}" ${formatShape(v.shape)} has no size yet: run the graph first`,
      );
    }
    return { shape: v.shape as number[], dtype: v.dtype };
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
    const { shape, dtype } = this.#stateType(name);
    const n = numel(shape);
    if (this.device.kind === "cpu") {
      const data = this.#store.cpuStates.get(name) ?? allocHost(dtype, n);
      return { data: data.slice(), shape, dtype };
    }
    const out = allocHost(dtype, n);
    const bytes = paddedBytes(n, dtype);
    const src = this.#store.states!.ensure(name, bytes);
    const device = (this.device as GpuDevice).device;
    const staging = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, staging, 0, bytes);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    new Uint8Array(out.buffer).set(new Uint8Array(staging.getMappedRange(), 0, out.byteLength));
    staging.destroy();
    return { data: out, shape, dtype };
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
    const out: Record<string, HostTensor> = {};
    if (this.device.kind === "cpu") {
      for (const n of names) out[n] = await this.readState(n);
      return out;
    }
    const device = (this.device as GpuDevice).device;
    const parts = names.map((name) => {
      const { shape, dtype } = this.#stateType(name);
      const data = allocHost(dtype, numel(shape));
      const bytes = paddedBytes(data.length, dtype);
      return { name, shape, dtype, data, bytes, src: this.#store.states!.ensure(name, bytes) };
    });
    const total = parts.reduce((a, p) => a + p.bytes, 0);
    const staging = device.createBuffer({
      size: total,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    let off = 0;
    for (const p of parts) {
      enc.copyBufferToBuffer(p.src, 0, staging, off, p.bytes);
      off += p.bytes;
    }
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const all = staging.getMappedRange();
    off = 0;
    for (const p of parts) {
      new Uint8Array(p.data.buffer).set(new Uint8Array(all, off, p.data.byteLength));
      off += p.bytes;
      out[p.name] = { data: p.data, shape: p.shape, dtype: p.dtype };
    }
    staging.destroy();
    return out;
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
    return this.#store.params?.buffers.get(name);
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
    const { shape, dtype } = this.#stateType(name);
    const { values } = unpack(data, `state "${name}"`);
    const n = numel(shape);
    if (values.length !== n) {
      throw new RangeError(
        `State "${name}" ${formatShape(shape)} expects ${n} values, got ${values.length}`,
      );
    }
    const arr = coerce(values, dtype, `state "${name}"`);
    if (this.device.kind === "cpu") {
      this.#store.cpuStates.set(name, arr.slice());
      return;
    }
    const bytes = paddedBytes(n, dtype);
    const padded = new Uint8Array(bytes);
    padded.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
    (this.device as GpuDevice).device.queue.writeBuffer(
      this.#store.states!.ensure(name, bytes),
      0,
      padded,
    );
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
    this.#store.cpuStates.clear();
    if (!this.#store.states) return;
    const device = (this.device as GpuDevice).device;
    const enc = device.createCommandEncoder();
    for (const b of this.#store.states.buffers.values()) enc.clearBuffer(b);
    device.queue.submit([enc.finish()]);
  }

  /**
   * Frees device buffers of every plan and the parameters.
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
    for (const e of this.#plans.values()) e.exe?.destroy();
    this.#plans.clear();
    if (--this.#store.users === 0) {
      this.#store.params?.destroy();
      this.#store.states?.destroy();
    }
  }
}

/** Parameters and states, shared by executables compiled with `shareWith`. */
class Store {
  readonly params: ParamBuffers | undefined;
  readonly states: ParamBuffers | undefined;
  readonly paramData = new Map<string, HostArray>();
  readonly cpuStates = new Map<string, HostArray>();
  users = 0;
  constructor(device: KilnDevice) {
    this.params = device.kind === "gpu" ? new ParamBuffers(device) : undefined;
    this.states = device.kind === "gpu" ? new ParamBuffers(device) : undefined;
  }
}

/** Interprets a graph on the CPU with each op's reference. */
export function runCpu(
  graph: Graph,
  dims: Record<string, number>,
  inputs: ReadonlyMap<string, HostArray>,
  params: ReadonlyMap<string, HostArray>,
  states: Map<string, HostArray> = new Map(),
): Record<string, HostTensor> {
  const vals = new Map<number, HostTensor>();
  const shapeOf = (id: number) =>
    graph.values[id].shape.map((d) => (typeof d === "number" ? d : dims[d]));
  for (const [name, id] of graph.inputs) {
    vals.set(id, { data: inputs.get(name)!, shape: shapeOf(id), dtype: graph.values[id].dtype });
  }
  for (const [name, id] of graph.params) {
    vals.set(id, { data: params.get(name)!, shape: shapeOf(id), dtype: graph.values[id].dtype });
  }
  for (const [name, id] of graph.states) {
    const v = graph.values[id];
    const shape = shapeOf(id);
    let data = states.get(name);
    if (!data || data.length !== shape.reduce((a, b) => a * b, 1)) {
      data = allocHost(v.dtype, shape.reduce((a, b) => a * b, 1));
      states.set(name, data);
    }
    vals.set(id, { data, shape, dtype: v.dtype });
  }
  for (const node of graph.nodes) {
    if (node.op === "input" || node.op === "param" || node.op === "state") continue;
    if (node.op === "const") {
      const v = graph.values[node.outputs[0]];
      vals.set(v.id, {
        data: toHost(graph.constants.get(v.id)!, v.dtype),
        shape: shapeOf(v.id),
        dtype: v.dtype,
      });
      continue;
    }
    const outs = node.outputs.map((id) => ({
      shape: shapeOf(id),
      dtype: graph.values[id].dtype as DType,
    }));
    const res = opDef(node.op).reference(node.inputs.map((v) => vals.get(v)!), node.attrs, outs);
    node.outputs.forEach((id, i) =>
      vals.set(id, { data: res[i], shape: outs[i].shape, dtype: outs[i].dtype })
    );
  }
  const out: Record<string, HostTensor> = {};
  for (const [name, id] of graph.outputs) out[name] = vals.get(id)!;
  // States update after every output was taken, as on the device.
  for (const [name, id] of graph.assigns) states.set(name, vals.get(id)!.data.slice());
  return out;
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
