/**
 * Runs a plan on a WebGPU device: buffers per slot, pipelines from the device's
 * cache, one command encoder per run, one batched readback, optional per-kernel GPU
 * timing from timestamp queries.
 *
 * @module
 */

import type { Plan } from "../compiler/plan_types.ts";
import type { HostArray } from "../core/dtype.ts";
import { allocHost } from "../core/dtype.ts";
import { kernelTable as tableData } from "../core/kernel_tables.ts";
import { checkDeviceAlive, type GpuDevice, whileDeviceAlive } from "./device.ts";
import { compilePipelines } from "./pipelines.ts";
import { EXECUTABLE_DISPOSED } from "./backend.ts";

/**
 * GPU time of one kernel in a profiled run.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, type KernelTiming, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["N"]).silu());
 * const exe = compile(g.build(), await requestDevice());
 * const timings: KernelTiming[] = (await exe.profile({ x: new Float32Array(1 << 20) })).kernels;
 * ```
 */
export interface KernelTiming {
  /** Kernel label. */
  readonly label: string;
  /** GPU nanoseconds between the start and end of its pass. */
  readonly ns: number;
}

/**
 * Commands recorded before kernel `i` (by plan index), outside compute passes.
 *
 * @example
 * ```ts ignore
 * import { compile, type EncodeHooks, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [4]).add(g.param("b", [4])));
 * const exe = compile(g.build(), await requestDevice(), { params: { b: [0, 0, 0, 0] } });
 * const src = exe.paramBuffer("b")!;
 * // Before kernel 0: clear the bias buffer inside the run's own command buffer.
 * const hooks: EncodeHooks = new Map([[0, (enc: GPUCommandEncoder) => enc.clearBuffer(src)]]);
 * await exe.run({ x: [1, 2, 3, 4] }, { hooks: () => hooks });
 * ```
 */
export type EncodeHooks = ReadonlyMap<number, (encoder: GPUCommandEncoder) => void>;

/**
 * Host barriers: before kernel `i` (by plan index) the run ends its command
 * encoder, submits what it recorded, and awaits the callback (which may read
 * buffers back, run work on another device, or write buffers) before it records
 * kernel `i` onwards in a new encoder. The expert-parallel runner uses them to
 * move a MoE layer's activations to the devices holding its experts.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, type HostBarriers, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [4]).exp().add(1));
 * const exe = compile(g.build(), await requestDevice());
 * const barriers: HostBarriers = new Map([[1, async () => console.log("kernels before 1 submitted")]]);
 * await exe.run({ x: [1, 2, 3, 4] }, { barriers: () => barriers });
 * ```
 */
export type HostBarriers = ReadonlyMap<number, (exe: GpuExecutable) => Promise<void> | void>;

/**
 * Named device buffers shared by every plan of one compiled graph: params and states.
 *
 * @example
 * ```ts
 * import type { ParamBuffers } from "@kiln/kiln";
 * function residentBytes(params: ParamBuffers): number {
 *   let n = 0;
 *   for (const buf of params.buffers.values()) n += buf.size;
 *   return n;
 * }
 * ```
 */
export class ParamBuffers {
  /** Device buffer of each parameter, by name. */
  readonly buffers: Map<string, GPUBuffer> = new Map();
  readonly #dev: GpuDevice;
  /** Makes an empty set of parameter buffers on `dev`. */
  constructor(dev: GpuDevice) {
    this.#dev = dev;
  }
  /** Uploads (or re-uploads) a parameter. */
  set(name: string, data: HostArray, bytes: number): void {
    writePadded(this.#dev.device, this.ensure(name, bytes), 0, data);
  }
  /** Returns the buffer `name`, creating it zero-filled (or re-creating it) at `bytes`. */
  ensure(name: string, bytes: number): GPUBuffer {
    let buf = this.buffers.get(name);
    if (!buf || buf.size !== bytes) {
      buf?.destroy();
      // New buffers are zero-filled by WebGPU.
      buf = this.#dev.device.createBuffer({
        label: name,
        size: bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
      });
      this.buffers.set(name, buf);
    }
    return buf;
  }

  /** Destroys every parameter buffer. */
  destroy(): void {
    for (const b of this.buffers.values()) b.destroy();
    this.buffers.clear();
  }
}

function writePadded(device: GPUDevice, buf: GPUBuffer, offset: number, data: HostArray): void {
  // Deno's writeBuffer panics on an empty write; an empty tensor has nothing to send.
  if (data.byteLength === 0) return;
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  if (bytes.byteLength % 4 === 0) {
    device.queue.writeBuffer(buf, offset, bytes);
  } else {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    device.queue.writeBuffer(buf, offset, padded);
  }
}

/**
 * A plan made runnable on one device.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["N"]).silu());
 * const dev = await requestDevice();
 * const gpu = await compile(g.build(), dev).prepare({ x: new Float32Array(1024) }); // a GpuExecutable
 * const { outputs } = await gpu.run();
 * outputs.get("y")?.length; // 1024
 * ```
 */
export class GpuExecutable {
  /** The plan this executable runs. */
  readonly plan: Plan;
  readonly #dev: GpuDevice;
  readonly #buffers: GPUBuffer[];
  readonly #owned: GPUBuffer[] = [];
  readonly #pipelines: GPUComputePipeline[];
  readonly #bindGroups: GPUBindGroup[];
  readonly #staging: GPUBuffer;
  readonly #readOffsets = new Map<string, number>();
  readonly #readBytes: number;
  #query?: { set: GPUQuerySet; resolve: GPUBuffer; read: GPUBuffer };

  /** Creates buffers, pipelines and bind groups for `plan` (use `Executable.prepare`). */
  constructor(
    dev: GpuDevice,
    plan: Plan,
    params: ParamBuffers,
    constants: (value: number) => HostArray,
    states?: ParamBuffers,
  ) {
    this.plan = plan;
    this.#dev = dev;
    const device = dev.device;
    try {
      this.#buffers = this.#slotBuffers(params, constants, states);
    } catch (e) {
      for (const b of this.#owned) b.destroy();
      throw e;
    }
    this.#pipelines = plan.kernels.map((k) => {
      const p = dev.pipelines.get(k.code);
      if (!p) {
        for (const b of this.#owned) b.destroy();
        throw new Error(
          `internal: pipeline for ${k.label} was not compiled (use GpuExecutable.create)`,
        );
      }
      return p;
    });
    this.#bindGroups = plan.kernels.map((k, i) =>
      device.createBindGroup({
        label: k.label,
        layout: this.#pipelines[i].getBindGroupLayout(0),
        entries: k.bindings.map((b, j) => ({
          binding: j,
          resource: { buffer: this.#buffers[b.slot], offset: b.offset, size: b.size },
        })),
      })
    );
    let off = 0;
    for (const [name, t] of plan.outputs) {
      this.#readOffsets.set(name, off);
      off += Math.ceil(plan.slots[t.slot].bytes / 4) * 4;
    }
    this.#readBytes = Math.max(off, 4);
    this.#staging = device.createBuffer({
      label: "readback",
      size: this.#readBytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  /** A buffer per slot: shared params and states, and new ones (owned) for the rest. */
  #slotBuffers(
    params: ParamBuffers,
    constants: (value: number) => HostArray,
    states?: ParamBuffers,
  ): GPUBuffer[] {
    const device = this.#dev.device;
    return this.plan.slots.map((slot, i) => {
      if (slot.kind === "param") {
        const b = params.buffers.get(slot.name!);
        if (!b) throw new Error(`internal: param "${slot.name}" has no buffer`);
        return b;
      }
      if (slot.kind === "state") {
        if (!states) throw new Error(`internal: state "${slot.name}" without state buffers`);
        return states.ensure(slot.name!, slot.bytes);
      }
      const buf = device.createBuffer({
        label: `${slot.kind} #${i}${slot.name ?? slot.table ? ` ${slot.name ?? slot.table}` : ""}`,
        size: slot.bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC |
          (slot.table ? GPUBufferUsage.UNIFORM : 0),
      });
      this.#owned.push(buf);
      if (slot.table) writePadded(device, buf, 0, tableData(slot.table));
      else if (slot.kind === "const") writePadded(device, buf, 0, constants(slot.value!));
      return buf;
    });
  }

  /**
   * Compiles the plan's missing pipelines asynchronously (a shader error becomes an
   * Error naming the kernel and the compiler's message), then builds the executable.
   * `disposed` is asked after the compile: an executable disposed meanwhile
   * has freed the buffers this one would bind.
   */
  static async create(
    dev: GpuDevice,
    plan: Plan,
    params: ParamBuffers,
    constants: (value: number) => HostArray,
    states?: ParamBuffers,
    disposed?: () => boolean,
    onCompile?: (done: number, total: number) => void,
  ): Promise<GpuExecutable> {
    await compilePipelines(dev, plan, onCompile);
    if (disposed?.()) throw new TypeError(EXECUTABLE_DISPOSED);
    checkDeviceAlive(dev);
    return new GpuExecutable(dev, plan, params, constants, states);
  }

  /** Writes input data into its buffer (already checked and converted). */
  writeInput(name: string, data: HostArray): void {
    const t = this.plan.inputs.get(name)!;
    writePadded(this.#dev.device, this.#buffers[t.slot], t.offset, data);
  }

  /**
   * Records all kernels into `encoder` (no readback). Timestamps when `profile` is
   * set. `hooks` record extra commands (buffer copies) right before kernel `i`,
   * outside any compute pass: the expert scheduler's uploads.
   */
  encode(
    encoder: GPUCommandEncoder,
    profile = false,
    hooks?: EncodeHooks,
    from = 0,
    to = this.plan.kernels.length,
  ): void {
    const kernels = this.plan.kernels;
    if (profile) this.#ensureQuery();
    let pass: GPUComputePassEncoder | undefined;
    kernels.forEach((k, i) => {
      if (i < from || i >= to) return;
      const hook = hooks?.get(i);
      // Buffer operations must sit between compute passes.
      if (pass && (profile || k.before.length > 0 || hook)) {
        pass.end();
        pass = undefined;
      }
      hook?.(encoder);
      this.#bufferOps(encoder, k.before);
      if (!pass) {
        pass = encoder.beginComputePass(
          profile
            ? {
              timestampWrites: {
                querySet: this.#query!.set,
                beginningOfPassWriteIndex: 2 * i,
                endOfPassWriteIndex: 2 * i + 1,
              },
            }
            : {},
        );
      }
      pass.setPipeline(this.#pipelines[i]);
      pass.setBindGroup(0, this.#bindGroups[i]);
      pass.dispatchWorkgroups(k.workgroups[0], k.workgroups[1], k.workgroups[2]);
    });
    pass?.end();
    if (to >= kernels.length) this.#bufferOps(encoder, this.plan.after);
  }

  /**
   * Submits the kernels before each host barrier, awaiting the barrier in
   * between; returns the index of the first kernel not yet submitted.
   */
  async runToBarriers(hooks?: EncodeHooks, barriers?: HostBarriers): Promise<number> {
    if (!barriers || barriers.size === 0) return 0;
    const device = this.#dev.device;
    let from = 0;
    for (const at of [...barriers.keys()].sort((a, b) => a - b)) {
      if (at <= from || at >= this.plan.kernels.length) continue;
      checkDeviceAlive(this.#dev); // a barrier may have awaited long enough to see a loss
      const enc = device.createCommandEncoder();
      this.encode(enc, false, hooks, from, at);
      device.queue.submit([enc.finish()]);
      await barriers.get(at)!(this);
      from = at;
    }
    return from;
  }

  #bufferOps(encoder: GPUCommandEncoder, ops: Plan["after"]): void {
    for (const op of ops) {
      if (op.kind === "zero") encoder.clearBuffer(this.#buffers[op.slot], op.offset, op.size);
      else {
        encoder.copyBufferToBuffer(
          this.#buffers[op.from],
          op.fromOffset,
          this.#buffers[op.to],
          op.toOffset,
          op.size,
        );
      }
    }
  }

  #ensureQuery() {
    if (this.#query) return;
    if (!this.#dev.timestamps) {
      throw new Error("Profiling needs the timestamp-query feature, which this adapter lacks");
    }
    const n = Math.max(2, this.plan.kernels.length * 2);
    const device = this.#dev.device;
    this.#query = {
      set: device.createQuerySet({ type: "timestamp", count: n }),
      resolve: device.createBuffer({
        size: n * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      }),
      read: device.createBuffer({
        size: n * 8,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      }),
    };
  }

  /**
   * Runs every kernel in one encoder and reads all outputs back with a single map.
   * With `profile`, also returns each kernel's GPU time.
   */
  async run(
    profile = false,
    hooks?: EncodeHooks,
    barriers?: HostBarriers,
  ): Promise<{ outputs: Map<string, HostArray>; timings?: KernelTiming[] }> {
    const device = this.#dev.device;
    const from = await this.runToBarriers(hooks, barriers);
    checkDeviceAlive(this.#dev);
    const encoder = device.createCommandEncoder();
    this.encode(encoder, profile, hooks, from);
    for (const [name, t] of this.plan.outputs) {
      const bytes = Math.ceil(this.plan.slots[t.slot].bytes / 4) * 4;
      encoder.copyBufferToBuffer(
        this.#buffers[t.slot],
        t.offset,
        this.#staging,
        this.#readOffsets.get(name)!,
        bytes,
      );
    }
    const q = profile ? this.#query! : undefined;
    if (q) {
      const n = this.plan.kernels.length * 2;
      encoder.resolveQuerySet(q.set, 0, n, q.resolve, 0);
      encoder.copyBufferToBuffer(q.resolve, 0, q.read, 0, n * 8);
    }
    device.queue.submit([encoder.finish()]);
    const maps = [this.#staging.mapAsync(GPUMapMode.READ)];
    if (q) maps.push(q.read.mapAsync(GPUMapMode.READ));
    await whileDeviceAlive(this.#dev, Promise.all(maps));
    const all = this.#staging.getMappedRange();
    const outputs = new Map<string, HostArray>();
    for (const [name, t] of this.plan.outputs) {
      const count = t.shape.reduce((a, b) => a * b, 1);
      const out = allocHost(t.dtype, count);
      const src = new Uint8Array(all, this.#readOffsets.get(name)!, out.byteLength);
      new Uint8Array(out.buffer).set(src);
      outputs.set(name, out);
    }
    this.#staging.unmap();
    let timings: KernelTiming[] | undefined;
    if (q) {
      const ts = new BigInt64Array(q.read.getMappedRange().slice(0));
      q.read.unmap();
      timings = this.plan.kernels.map((k, i) => ({
        label: k.label,
        ns: Number(ts[2 * i + 1] - ts[2 * i]),
      }));
    }
    return { outputs, timings };
  }

  /** Buffer of a slot (for advanced callers chaining work on the device). */
  buffer(slot: number): GPUBuffer {
    return this.#buffers[slot];
  }

  /** Frees the plan's own buffers, staging and query buffers (not the shared params). Idempotent. */
  destroy(): void {
    for (const b of this.#owned) b.destroy();
    this.#owned.length = 0;
    this.#staging.destroy();
    if (this.#query) {
      this.#query.set.destroy();
      this.#query.resolve.destroy();
      this.#query.read.destroy();
      this.#query = undefined;
    }
  }
}
