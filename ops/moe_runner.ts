/**
 * A small raw-WebGPU runner for one MoE layer built from the emitters in
 * `moe_kernels.ts`: buffers, pipelines and bind groups are created once; each
 * {@linkcode MoeLayer.run} records every kernel into one compute pass of one
 * command encoder and reads all outputs back with a single `mapAsync` (each
 * readback costs ~10 ms in Deno). The compiler's executor will take this
 * plumbing over later; the emitters do not depend on it.
 *
 * @module
 */

import {
  declareBindings,
  kernelNeedsF16,
  moeBufferSizes,
  type MoeConfig,
  type MoeKernel,
  moeKernels,
  type MoePath,
  resolveMoeConfig,
} from "./moe_kernels.ts";
import type { MoeWeights } from "./moe_reference.ts";

/** Outputs of one forward pass. */
export interface MoeRunResult {
  /** Layer output `[T, d]`. */
  y: Float32Array;
  /** Router logits `[T, E]`. */
  logits: Float32Array;
  /** Chosen experts `[T, k]`. */
  topkIdx: Uint32Array;
  /** Their routing weights `[T, k]`. */
  topkW: Float32Array;
  /** Routed (token, slot) pairs per expert `[E]`. */
  counts: Uint32Array;
  /** Pairs kept after capacity `[E]` (equal to counts when dropless; prefill only, else counts). */
  keptCounts: Uint32Array;
  /** Load-balancing loss (NaN when built with `aux: false`). */
  auxLoss: number;
  /** Router z-loss (NaN when built with `aux: false`). */
  zLoss: number;
}

/** Options of {@linkcode createMoeLayer}. */
export interface MoeLayerOptions {
  /** Kernel sequence; `"auto"` (default) picks decode for T ≤ 4 when dropless, else prefill. */
  path?: MoePath | "auto";
  /** Compute the aux and z losses (one extra tiny kernel). Default true. */
  aux?: boolean;
}

/** A ready-to-run layer. */
export interface MoeLayer {
  /** The resolved path. */
  readonly path: MoePath;
  /** The kernels, in launch order. */
  readonly kernels: readonly MoeKernel[];
  /** Bytes of each named device buffer. */
  readonly bufferBytes: Readonly<Record<string, number>>;
  /** Uploads `x` (and the mask, all ones when absent), runs, reads back once. */
  run(x: Float32Array, mask?: Float32Array): Promise<MoeRunResult>;
  /** Uploads `x` (and optionally a mask) without running. */
  upload(x: Float32Array, mask?: Float32Array): void;
  /** Records the forward pass into `encoder` (no upload, no readback). */
  encode(encoder: GPUCommandEncoder): void;
  /** Destroys every buffer. */
  destroy(): void;
}

function toF16Bits(src: ArrayLike<number>): Uint16Array {
  // Float16Array does the IEEE round-to-nearest-even conversion for us.
  const h = new Float16Array(src.length);
  for (let i = 0; i < src.length; i++) h[i] = src[i];
  return new Uint16Array(h.buffer);
}

const pad4 = (n: number): number => Math.max(4, Math.ceil(n / 4) * 4);

/**
 * Creates buffers and pipelines for one MoE layer of fixed shape.
 *
 * @example
 * ```ts
 * import { createMoeLayer } from "./moe_runner.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * const device = await adapter!.requestDevice();
 * const cfg = { T: 4, d: 8, ff: 16, E: 4, k: 2, router: "softmax_topk" as const };
 * const w = {
 *   wg: new Float32Array(32), w1: new Float32Array(512), w3: new Float32Array(512), w2: new Float32Array(512),
 * };
 * const layer = createMoeLayer(device, cfg, w);
 * const out = await layer.run(new Float32Array(32));
 * console.log(out.y.length);
 * ```
 */
export function createMoeLayer(
  device: GPUDevice,
  config: MoeConfig,
  weights: MoeWeights,
  options: MoeLayerOptions = {},
): MoeLayer {
  const c = resolveMoeConfig(config);
  const { T, d, E, k } = c;
  const path: MoePath = options.path && options.path !== "auto"
    ? options.path
    : T <= 4 && c.capacityFactor === undefined
    ? "decode"
    : "prefill";
  const aux = options.aux ?? true;
  const kernels = moeKernels(config, path, aux);
  if (c.weightDtype === "f16" && !device.features.has("shader-f16")) {
    throw new TypeError('MoE weightDtype "f16" needs a device with the "shader-f16" feature');
  }
  const sizes = moeBufferSizes(config);
  const wBytes = c.weightDtype === "f16" ? 2 : 4;
  const bufferBytes: Record<string, number> = {};
  const buffers = new Map<string, GPUBuffer>();
  const used = new Set(kernels.flatMap((kn) => kn.bindings.map((b) => b.name)));
  used.add("y").add("logits").add("topk_idx").add("topk_w");
  if (aux) used.add("aux");
  if (path === "prefill") used.add("counts");
  const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  for (const name of used) {
    const elems = sizes[name];
    const bytes = pad4(elems * (name === "w1" || name === "w2" || name === "w3" ? wBytes : 4));
    bufferBytes[name] = bytes;
    buffers.set(name, device.createBuffer({ label: `moe.${name}`, size: bytes, usage: STORAGE }));
  }
  const write = (name: string, data: ArrayBufferView | ArrayLike<number>, f16 = false): void => {
    const buf = buffers.get(name);
    if (!buf) return;
    let view: ArrayBufferView;
    if (f16) view = toF16Bits(data as ArrayLike<number>);
    else if (ArrayBuffer.isView(data)) view = data;
    else view = Float32Array.from(data as ArrayLike<number>);
    const expected = sizes[name] * (f16 ? 2 : 4);
    if (view.byteLength !== expected) {
      throw new RangeError(
        `MoE buffer "${name}" needs ${expected} bytes: received ${view.byteLength}`,
      );
    }
    // writeBuffer wants a multiple of 4 bytes; an odd f16 count gets one zero pad.
    const bytes = new Uint8Array(pad4(view.byteLength));
    bytes.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    device.queue.writeBuffer(buf, 0, bytes);
  };
  const asF32 = (a: ArrayLike<number>): Float32Array =>
    a instanceof Float32Array ? a : Float32Array.from(a);
  write("wg", asF32(weights.wg));
  if (c.router === "sigmoid_bias") write("bias", asF32(weights.bias ?? new Float32Array(E)));
  const f16 = c.weightDtype === "f16";
  write("w1", f16 ? weights.w1 : asF32(weights.w1), f16);
  write("w3", f16 ? weights.w3 : asF32(weights.w3), f16);
  write("w2", f16 ? weights.w2 : asF32(weights.w2), f16);
  const ones = new Float32Array(T).fill(1);
  write("mask", ones);

  const steps = kernels.map((kn) => {
    const header = kernelNeedsF16(kn) ? "enable f16;\n" : "";
    const module = device.createShaderModule({
      label: kn.label,
      code: header + declareBindings(kn) + kn.code,
    });
    const layout = device.createBindGroupLayout({
      label: kn.label,
      entries: kn.bindings.map((b, i) => ({
        binding: i,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b.access === "read" ? "read-only-storage" : "storage" },
      })),
    });
    const pipeline = device.createComputePipeline({
      label: kn.label,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    const bindGroup = device.createBindGroup({
      layout,
      entries: kn.bindings.map((b, i) => ({
        binding: i,
        resource: { buffer: buffers.get(b.name)! },
      })),
    });
    return { pipeline, bindGroup, workgroups: kn.workgroups };
  });

  // One staging buffer for every output: a single mapAsync per run.
  const outs: [string, number][] = [
    ["y", T * d * 4],
    ["logits", T * E * 4],
    ["topk_idx", T * k * 4],
    ["topk_w", T * k * 4],
  ];
  if (buffers.has("counts")) outs.push(["counts", 2 * E * 4]);
  if (aux) outs.push(["aux", 16]);
  const offsets: Record<string, number> = {};
  let total = 0;
  for (const [name, bytes] of outs) {
    offsets[name] = total;
    total += bytes;
  }
  const staging = device.createBuffer({
    label: "moe.readback",
    size: total,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });

  let maskIsOnes = true;
  const upload = (x: Float32Array, mask?: Float32Array): void => {
    write("x", x);
    if (mask) {
      write("mask", mask);
      maskIsOnes = false;
    } else if (!maskIsOnes) {
      write("mask", ones);
      maskIsOnes = true;
    }
  };
  const encode = (encoder: GPUCommandEncoder): void => {
    const pass = encoder.beginComputePass({ label: `moe.${path}` });
    for (const s of steps) {
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(...s.workgroups);
    }
    pass.end();
  };
  return {
    path,
    kernels,
    bufferBytes,
    upload,
    encode,
    async run(x: Float32Array, mask?: Float32Array): Promise<MoeRunResult> {
      upload(x, mask);
      const encoder = device.createCommandEncoder();
      encode(encoder);
      for (const [name, bytes] of outs) {
        encoder.copyBufferToBuffer(buffers.get(name)!, 0, staging, offsets[name], bytes);
      }
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const data = staging.getMappedRange().slice(0);
      staging.unmap();
      const counts = buffers.has("counts")
        ? new Uint32Array(data, offsets.counts, 2 * E)
        : undefined;
      const topkIdx = new Uint32Array(data, offsets.topk_idx, T * k);
      let routed = counts?.slice(0, E);
      if (!routed) {
        // Decode / dense have no sort kernel: count on the host from topk_idx (T ≤ few).
        routed = new Uint32Array(E);
        for (const e of topkIdx) routed[e]++;
      }
      const auxV = aux ? new Float32Array(data, offsets.aux, 4) : undefined;
      return {
        y: new Float32Array(data, offsets.y, T * d),
        logits: new Float32Array(data, offsets.logits, T * E),
        topkIdx,
        topkW: new Float32Array(data, offsets.topk_w, T * k),
        counts: routed,
        keptCounts: counts ? counts.slice(E, 2 * E) : routed.slice(),
        auxLoss: auxV ? auxV[0] : NaN,
        zLoss: auxV ? auxV[1] : NaN,
      };
    },
    destroy(): void {
      for (const b of buffers.values()) b.destroy();
      staging.destroy();
    },
  };
}
