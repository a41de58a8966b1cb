/**
 * Device acquisition: a WebGPU device with the adapter's real limits and the
 * features Kiln uses, or the explicit CPU reference device.
 *
 * @module
 */

import type { DeviceCaps } from "../core/types.ts";

/**
 * A WebGPU device Kiln runs kernels on.
 *
 * @example
 * ```ts ignore
 * import { type GpuDevice, requestDevice } from "@kiln/kiln";
 * const dev: GpuDevice = await requestDevice();
 * console.log(dev.adapterName, dev.timestamps);
 * dev.destroy();
 * ```
 */
export interface GpuDevice {
  /** Discriminant. */
  readonly kind: "gpu";
  /** The underlying WebGPU device. */
  readonly device: GPUDevice;
  /** Adapter description, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`. */
  readonly adapterName: string;
  /** Limits and features kernels may use. */
  readonly caps: DeviceCaps;
  /** `timestamp-query` is enabled, so per-kernel GPU times can be measured. */
  readonly timestamps: boolean;
  /** Compiled pipelines keyed by WGSL source (shared by every model on this device). */
  readonly pipelines: Map<string, GPUComputePipeline>;
  /**
   * Destroys the device: its buffers and pipelines are freed, and work on it
   * from then on fails with a {@linkcode DeviceLostError}.
   */
  destroy(): void;
}

let shared: Promise<GpuDevice> | undefined;

/**
 * The process-wide default device, requested once and shared by every model
 * loaded without a `device` of its own. Requesting a device per model costs
 * memory the runtime only returns when the garbage collector gets to it (tens
 * of MiB per device with lavapipe), so loads and disposes in a loop would grow
 * without bound. A lost default device is replaced on the next call; a failed
 * request is retried.
 *
 * @example
 * ```ts ignore
 * import { defaultDevice } from "@kiln/kiln";
 * const a = await defaultDevice(), b = await defaultDevice();
 * a === b; // true
 * ```
 */
export function defaultDevice(): Promise<GpuDevice> {
  if (!shared) {
    const p: Promise<GpuDevice> = requestDevice().then((dev) => {
      const wrapped: GpuDevice = {
        ...dev,
        // Shared: a model's dispose must not end every other model's device.
        destroy() {},
      };
      dev.device.lost?.then?.(() => {
        if (shared === p) shared = undefined;
      });
      return wrapped;
    });
    p.catch(() => {
      if (shared === p) shared = undefined;
    });
    shared = p;
  }
  return shared;
}

/**
 * The CPU device: runs every op's reference implementation. For tests and tiny work.
 *
 * @example
 * ```ts
 * import { compile, type CpuDevice, cpuDevice, GraphBuilder } from "@kiln/kiln";
 * const cpu: CpuDevice = cpuDevice();
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [2]).exp());
 * await compile(g.build(), cpu).run({ x: [0, 1] });
 * ```
 */
export interface CpuDevice {
  /** Discriminant. */
  readonly kind: "cpu";
}

/**
 * Either device.
 *
 * @example
 * ```ts ignore
 * import { cpuDevice, type KilnDevice, requestDevice } from "@kiln/kiln";
 * const device: KilnDevice = Deno.env.get("KILN_CPU") ? cpuDevice() : await requestDevice();
 * device.kind; // "cpu" or "gpu"
 * ```
 */
export type KilnDevice = GpuDevice | CpuDevice;

/**
 * Options of {@linkcode requestDevice}.
 *
 * @example
 * ```ts ignore
 * import { type DeviceOptions, requestDevice } from "@kiln/kiln";
 * const options: DeviceOptions = {
 *   powerPreference: "high-performance",
 *   limits: { maxStorageBuffers: 8 }, // mimic a smaller GPU
 *   disableFeatures: ["shader-f16"],
 * };
 * const dev = await requestDevice(options);
 * ```
 */
export interface DeviceOptions {
  /** A `GPU` object to use instead of `navigator.gpu` (another provider, a test double). */
  gpu?: GPU;
  /** Adapter preference. */
  powerPreference?: GPUPowerPreference;
  /**
   * Lower some limits below the adapter's (to test splitting, or to mimic a smaller
   * GPU); `cpuCores` overrides the CPU-adapter detection (0: shape kernels for a GPU).
   */
  limits?: Partial<Pick<DeviceCaps, "maxStorageBuffers" | "maxBindingSize" | "cpuCores">>;
  /** Disable features even when present (for example `["shader-f16"]`). */
  disableFeatures?: readonly GPUFeatureName[];
}

/**
 * Message shown when no WebGPU adapter exists; says how to get one.
 *
 * @example
 * ```ts
 * import { cpuDevice, type KilnDevice, NO_ADAPTER_HELP, requestDevice } from "@kiln/kiln";
 * let dev: KilnDevice;
 * try {
 *   dev = await requestDevice();
 * } catch (e) {
 *   if ((e as Error).message !== NO_ADAPTER_HELP) throw e;
 *   dev = cpuDevice();
 * }
 * ```
 */
export const NO_ADAPTER_HELP: string =
  "No WebGPU adapter found. On a headless Linux machine install a Vulkan driver — " +
  "for a software adapter `apt-get install -y mesa-vulkan-drivers` (lavapipe) — and run " +
  "Deno 2.x with a writable XDG_RUNTIME_DIR. Or pass `cpuDevice()` to run the CPU reference.";

/** True for software adapters, where a workgroup runs on one CPU thread. */
function isCpuAdapter(info: GPUAdapterInfo): boolean {
  const text = `${info.description} ${info.vendor} ${info.architecture} ${info.device}`;
  return (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /llvmpipe|lavapipe|swiftshader|warp|software/i.test(text);
}

const WANTED: GPUFeatureName[] = ["shader-f16", "subgroups" as GPUFeatureName, "timestamp-query"];

/**
 * Acquires a WebGPU device, asking for the adapter's real limits (not WebGPU's
 * defaults) and the features `shader-f16`, `subgroups` and `timestamp-query` where
 * present. Throws an Error that explains how to get an adapter when there is none.
 *
 * @example
 * ```ts ignore
 * import { requestDevice } from "@kiln/kiln";
 * const dev = await requestDevice();
 * console.log(dev.adapterName, dev.caps.f16);
 * dev.destroy();
 * ```
 */
export async function requestDevice(options: DeviceOptions = {}): Promise<GpuDevice> {
  const gpu = options.gpu ?? (globalThis.navigator as { gpu?: GPU } | undefined)?.gpu;
  if (!gpu) throw new Error(NO_ADAPTER_HELP);
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference });
  if (!adapter) throw new Error(NO_ADAPTER_HELP);
  const disabled = new Set(options.disableFeatures ?? []);
  const features = WANTED.filter((f) => adapter.features.has(f) && !disabled.has(f));
  const l = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    maxBindGroups: l.maxBindGroups,
  };
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const caps: DeviceCaps = {
    maxStorageBuffers: Math.min(
      device.limits.maxStorageBuffersPerShaderStage,
      options.limits?.maxStorageBuffers ?? Infinity,
    ),
    maxBindingSize: Math.min(
      device.limits.maxStorageBufferBindingSize,
      options.limits?.maxBindingSize ?? Infinity,
    ),
    maxInvocations: device.limits.maxComputeInvocationsPerWorkgroup,
    maxWorkgroupStorage: device.limits.maxComputeWorkgroupStorageSize,
    maxWorkgroupsPerDim: device.limits.maxComputeWorkgroupsPerDimension,
    offsetAlignment: device.limits.minStorageBufferOffsetAlignment,
    f16: features.includes("shader-f16"),
    subgroups: features.includes("subgroups" as GPUFeatureName),
    cpuCores: options.limits?.cpuCores ??
      (isCpuAdapter(adapter.info) ? navigator.hardwareConcurrency : 0),
  };
  const info = adapter.info;
  const pipelines = new Map<string, GPUComputePipeline>();
  watch(device);
  return {
    kind: "gpu",
    device,
    adapterName: info.description || info.vendor || "unknown adapter",
    caps,
    timestamps: features.includes("timestamp-query"),
    pipelines,
    destroy: () => {
      // Known at once, not a tick later when `device.lost` resolves.
      markLost(watch(device), "destroyed", "GpuDevice.destroy() was called");
      pipelines.clear();
      device.destroy();
    },
  };
}

/**
 * The error of every run, readback and upload on a GPU device that was lost
 * (destroyed, reset by the driver, unplugged): its buffers and pipelines are
 * gone, so the work is refused — pending work included — instead of hanging,
 * returning garbage or raising a WebGPU validation error. Recover by loading
 * (or compiling) again on a new device.
 *
 * @example
 * ```ts ignore
 * import { DeviceLostError, loadModel, requestDevice } from "@kiln/kiln";
 * let model = await loadModel("./mamba-130m-hf");
 * try {
 *   await model.forward([1, 2, 3]);
 * } catch (e) {
 *   if (!(e instanceof DeviceLostError)) throw e;
 *   model.dispose();
 *   model = await loadModel("./mamba-130m-hf", { device: await requestDevice() });
 * }
 * ```
 */
export class DeviceLostError extends Error {
  /** `GPUDeviceLostInfo.reason`: `"destroyed"` or `"unknown"`. */
  readonly reason: string;
  /** Makes the error for a device lost for `reason` (the driver's `message`, if any). */
  constructor(reason: string, message = "") {
    super(
      `the GPU device was lost (reason: ${reason})${message ? `: ${message}` : ""}; ` +
        "load the model again, or compile the graph again, on a new device (requestDevice())",
    );
    this.reason = reason;
  }
}

/** Whether a device was lost, and the work waiting on it. */
interface LostState {
  lost?: DeviceLostError;
  readonly waiters: Set<(e: DeviceLostError) => void>;
}

const states = new WeakMap<GPUDevice, LostState>();

/** The loss state of `device`, listening to `device.lost` from the first call on. */
function watch(device: GPUDevice): LostState {
  let state = states.get(device);
  if (!state) {
    const s: LostState = { waiters: new Set() };
    states.set(device, s);
    // One listener per device; each pending wait registers in `waiters` and
    // leaves when it settles, so long loops add nothing to the lost promise.
    device.lost?.then?.((info) => markLost(s, info.reason ?? "unknown", info.message));
    state = s;
  }
  return state;
}

function markLost(state: LostState, reason: string, message: string): void {
  if (state.lost) return;
  state.lost = new DeviceLostError(reason, message);
  for (const reject of state.waiters) reject(state.lost);
  state.waiters.clear();
}

/**
 * Throws {@linkcode DeviceLostError} when `dev` was lost. Runtime code calls it
 * before it records or uploads anything.
 *
 * @example
 * ```ts ignore
 * import { checkDeviceAlive, requestDevice } from "./device.ts";
 * const dev = await requestDevice();
 * dev.destroy();
 * checkDeviceAlive(dev); // throws DeviceLostError (reason: destroyed)
 * ```
 */
export function checkDeviceAlive(dev: GpuDevice): void {
  const lost = watch(dev.device).lost;
  if (lost) throw lost;
}

/**
 * Awaits `work` (a map, a pipeline compile) on `dev`, rejecting with
 * {@linkcode DeviceLostError} when the device is lost before, while or by the
 * time it settles: a map pending when the device is destroyed may still
 * resolve, over memory that no longer holds the results.
 *
 * @example
 * ```ts ignore
 * import { requestDevice, whileDeviceAlive } from "./device.ts";
 * const dev = await requestDevice();
 * const buf = dev.device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
 * await whileDeviceAlive(dev, buf.mapAsync(GPUMapMode.READ));
 * ```
 */
export function whileDeviceAlive<T>(dev: GpuDevice, work: Promise<T>): Promise<T> {
  const state = watch(dev.device);
  if (state.lost) {
    work.catch(() => {}); // settled or not, it no longer matters
    return Promise.reject(state.lost);
  }
  return new Promise<T>((resolve, reject) => {
    state.waiters.add(reject);
    work.then(
      (v) => {
        state.waiters.delete(reject);
        if (state.lost) reject(state.lost);
        else resolve(v);
      },
      (e) => {
        state.waiters.delete(reject);
        if (state.lost) return reject(state.lost);
        // A device destroyed behind Kiln's back fails a map a moment before
        // `device.lost` resolves: wait that moment, so the error says why.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<void>((r) => (timer = setTimeout(r, LOSS_GRACE_MS)));
        Promise.race([dev.device.lost ?? grace, grace]).then(() => {
          clearTimeout(timer);
          reject(state.lost ?? e);
        });
      },
    );
  });
}

/** How long a failed wait gives `device.lost` to resolve (failures only; successes never wait). */
const LOSS_GRACE_MS = 100;

/**
 * The CPU device. Never chosen silently: pass it explicitly.
 *
 * @example
 * ```ts
 * import { cpuDevice } from "@kiln/kiln";
 * const cpu = cpuDevice();
 * cpu.kind; // "cpu"
 * ```
 */
export function cpuDevice(): CpuDevice {
  return { kind: "cpu" };
}
