/**
 * Plain data types every floor shares: host tensors and the device
 * capabilities lowerings and plans are chosen by.
 *
 * @module
 */

import type { DType, HostArray } from "./dtype.ts";

/**
 * Host-side tensor data with a concrete shape.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, GraphBuilder, type HostTensor } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [2, 2]).neg());
 * const exe = compile(g.build(), cpuDevice());
 * const x: HostTensor = { data: new Float32Array([1, 2, 3, 4]), shape: [2, 2], dtype: "f32" };
 * const { y } = await exe.run({ x }); // y.shape: [2, 2]
 * ```
 */
export interface HostTensor {
  /** Elements in row-major order. */
  readonly data: HostArray;
  /** Concrete shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/** A type whose shape has been bound to numbers. */
export interface ConcreteType {
  /** Concrete shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/**
 * Device limits and features a lowering may rely on.
 *
 * @example
 * ```ts ignore
 * import { requestDevice } from "@kiln/kiln";
 * const { caps } = await requestDevice();
 * console.log(caps.maxStorageBuffers, caps.maxBindingSize, caps.f16, caps.subgroups);
 * ```
 */
export interface DeviceCaps {
  /** `maxStorageBuffersPerShaderStage`. */
  readonly maxStorageBuffers: number;
  /** `maxStorageBufferBindingSize` in bytes. */
  readonly maxBindingSize: number;
  /** `maxComputeInvocationsPerWorkgroup`. */
  readonly maxInvocations: number;
  /** `maxComputeWorkgroupStorageSize` in bytes. */
  readonly maxWorkgroupStorage: number;
  /** `maxComputeWorkgroupsPerDimension`. */
  readonly maxWorkgroupsPerDim: number;
  /** `minStorageBufferOffsetAlignment` in bytes. */
  readonly offsetAlignment: number;
  /** `shader-f16` is enabled. */
  readonly f16: boolean;
  /** `subgroups` is enabled. */
  readonly subgroups: boolean;
  /**
   * Host cores when the adapter is a CPU rasteriser (llvmpipe, SwiftShader, WARP),
   * which runs each workgroup on one thread with its invocations as SIMD lanes and
   * each storage access as a per-lane loop; 0 on a GPU. Lowerings pick CPU- or
   * GPU-shaped kernels by it (the selective scan's thread shape and algorithm).
   */
  readonly cpuCores: number;
}
