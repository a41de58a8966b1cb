/**
 * Pipeline compilation: one pipeline per distinct WGSL text a device has not
 * compiled yet, created concurrently, then dispatched once with zero
 * workgroups so that drivers that compile at the first dispatch (lavapipe's
 * LLVM) compile here, not inside a timed run. Awaited batch by batch with
 * progress (`compilePipelines`), or submitted in one go to overlap other JS
 * work (`startCompile`).
 *
 * @module
 */

import type { Plan, SlotBinding } from "../compiler/plan_types.ts";
import { debugEnabled } from "../core/debug.ts";
import { checkDeviceAlive, type GpuDevice, whileDeviceAlive } from "./device.ts";

/**
 * Compiles every kernel of `plan` not yet in the device's pipeline cache (one
 * pipeline per distinct WGSL text: layers with the same kernels share it), all
 * creations in flight together, then makes the driver finish its work.
 *
 * Some drivers compile to machine code only at a pipeline's first dispatch
 * (lavapipe: LLVM runs there, seconds per large kernel), so the first run would
 * pay the compile and timings that start after `prepare` would count it. Each
 * new pipeline is therefore dispatched once with zero workgroups on dummy
 * buffers: that triggers the driver's compile, and runs nothing. `onCompile`
 * hears `done` of `total` as batches of these finish.
 */
export async function compilePipelines(
  dev: GpuDevice,
  plan: Plan,
  onCompile?: (done: number, total: number) => void,
): Promise<void> {
  const todo = missingKernels(dev, plan);
  if (!todo.length) return;
  onCompile?.(0, todo.length);
  const made = await createPipelines(dev, todo);
  await warmUp(dev, made, onCompile);
  todo.forEach((k, i) => dev.pipelines.set(k.code, made[i].p));
}

/**
 * A compile {@linkcode startCompile} started: how many pipelines it makes, and
 * the wait for them (once; later calls share it).
 *
 * @example
 * ```ts ignore
 * const ahead: PendingCompile = await startCompile(device, plan);
 * await ahead.finish();
 * ```
 */
export interface PendingCompile {
  /** Pipelines the plan was missing. */
  readonly total: number;
  /** Resolves when they are compiled and in the device's cache. */
  finish(): Promise<void>;
}

/** A compile with nothing to do. */
export const NOTHING_TO_COMPILE: PendingCompile = { total: 0, finish: () => Promise.resolve() };

/**
 * Starts what {@linkcode compilePipelines} does and returns as soon as the
 * driver has the work: the pipelines are created and their zero-workgroup
 * dispatches submitted in one go. A submission returns at once while the
 * driver compiles (lavapipe: LLVM, on its queue's thread), but in Deno asking
 * when the queue is done holds the JS thread until it is — so that is left to
 * `finish()`, called when the compile is needed, and JS can do other work
 * (read weights, say) meanwhile. `finish()` resolves when the pipelines are
 * compiled and in the device's cache; `total` is how many were missing.
 *
 * @example
 * ```ts ignore
 * const ahead = await startCompile(device, exe.plan({}));
 * await readWeights();
 * await ahead.finish();
 * ```
 */
export async function startCompile(
  dev: GpuDevice,
  plan: Plan,
): Promise<PendingCompile> {
  const todo = missingKernels(dev, plan);
  if (!todo.length) return NOTHING_TO_COMPILE;
  const made = await createPipelines(dev, todo);
  const wait = submitWarmUp(dev, made);
  let done: Promise<void> | undefined;
  return {
    total: todo.length,
    finish: () =>
      done ??= wait().then(() => todo.forEach((k, i) => dev.pipelines.set(k.code, made[i].p))),
  };
}

/** The plan's kernels whose WGSL the device has no pipeline for, each text once. */
function missingKernels(dev: GpuDevice, plan: Plan): Plan["kernels"] {
  return plan.kernels.filter((k, i) =>
    !dev.pipelines.has(k.code) && plan.kernels.findIndex((o) => o.code === k.code) === i
  );
}

/** Bind group layout entry type of each binding access. */
const BUFFER_TYPE: Readonly<Record<SlotBinding["access"], GPUBufferBindingType>> = {
  read: "read-only-storage",
  read_write: "storage",
  uniform: "uniform",
};

/** Creates the kernels' pipelines, all in flight together (invalid WGSL: an Error naming the kernel). */
async function createPipelines(
  dev: GpuDevice,
  todo: Plan["kernels"],
): Promise<{ p: GPUComputePipeline; bindings: number }[]> {
  const device = dev.device;
  const debug = debugEnabled();
  return await Promise.all(todo.map(async (k) => {
    const t0 = performance.now();
    const module = device.createShaderModule({ label: k.label, code: k.code });
    const layout = device.createBindGroupLayout({
      entries: k.bindings.map((b, j) => ({
        binding: j,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: BUFFER_TYPE[b.access] },
      })),
    });
    let p: GPUComputePipeline;
    try {
      p = await whileDeviceAlive(
        dev,
        device.createComputePipelineAsync({
          label: k.label,
          layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
          compute: { module, entryPoint: "main" },
        }),
      );
    } catch (e) {
      // A lost device fails every compile: that is the error, not the WGSL.
      checkDeviceAlive(dev);
      const info = await module.getCompilationInfo();
      const msgs = info.messages.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ");
      throw new Error(
        `Kiln generated invalid WGSL for kernel ${k.label} (${k.ops[0] ?? ""}): ${
          msgs || (e as Error).message
        }`,
      );
    }
    if (debug) {
      console.error(
        `[kiln] compiled ${k.label} in ${(performance.now() - t0).toFixed(1)} ms\n${k.code}`,
      );
    }
    return { p, bindings: k.bindings.length };
  }));
}

/**
 * Dispatches each pipeline once with zero workgroups (see
 * {@linkcode compilePipelines}), in about ten submissions so progress moves.
 */
async function warmUp(
  dev: GpuDevice,
  made: readonly { p: GPUComputePipeline; bindings: number }[],
  onCompile?: (done: number, total: number) => void,
): Promise<void> {
  const batch = Math.max(1, Math.ceil(made.length / 10));
  for (let at = 0; at < made.length; at += batch) {
    await submitWarmUp(dev, made.slice(at, at + batch))();
    onCompile?.(Math.min(made.length, at + batch), made.length);
  }
}

/**
 * Submits one zero-workgroup dispatch of each pipeline and returns the wait
 * for it (which frees the dummy buffers). Every binding gets its own 256-byte
 * dummy buffer: no two bindings alias, and 256 bytes covers the largest array
 * element a kernel declares.
 */
function submitWarmUp(
  dev: GpuDevice,
  made: readonly { p: GPUComputePipeline; bindings: number }[],
): () => Promise<void> {
  const device = dev.device;
  const width = Math.max(0, ...made.map((m) => m.bindings));
  const dummies = Array.from(
    { length: width },
    () => device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }),
  );
  const enc = device.createCommandEncoder({ label: "kiln pipeline warm-up" });
  const pass = enc.beginComputePass();
  for (const { p, bindings } of made) {
    pass.setPipeline(p);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: p.getBindGroupLayout(0),
        entries: dummies.slice(0, bindings).map((buffer, j) => ({
          binding: j,
          resource: { buffer },
        })),
      }),
    );
    pass.dispatchWorkgroups(0);
  }
  pass.end();
  device.queue.submit([enc.finish()]);
  return async () => {
    try {
      await whileDeviceAlive(dev, device.queue.onSubmittedWorkDone());
    } finally {
      for (const b of dummies) b.destroy();
    }
  };
}
