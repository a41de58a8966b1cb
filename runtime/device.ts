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
  /** Releases the device. */
  destroy(): void;
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
  return {
    kind: "gpu",
    device,
    adapterName: info.description || info.vendor || "unknown adapter",
    caps,
    timestamps: features.includes("timestamp-query"),
    pipelines: new Map(),
    destroy: () => device.destroy(),
  };
}

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
