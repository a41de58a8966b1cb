/**
 * Conversion of user-supplied host data to typed arrays of a tensor's dtype, with
 * errors that name the tensor.
 *
 * @module
 */

import { allocHost, type DType, dtypeOfHost, type HostArray } from "./dtype.ts";
import type { HostTensor } from "./types.ts";

/**
 * What a caller may pass for a tensor's data.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, GraphBuilder, type TensorData } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [2, 2]).neg());
 * const exe = compile(g.build(), cpuDevice());
 * const inputs: TensorData[] = [
 *   [1, 2, 3, 4],
 *   new Float32Array([1, 2, 3, 4]),
 *   { data: new Float32Array([1, 2, 3, 4]), shape: [2, 2], dtype: "f32" },
 * ];
 * for (const x of inputs) await exe.run({ x });
 * ```
 */
export type TensorData = HostArray | readonly number[] | HostTensor;

/** Splits user data into values and an optional shape. */
export function unpack(
  data: TensorData,
  what: string,
): { values: HostArray | readonly number[]; shape?: readonly number[] } {
  if (Array.isArray(data)) return { values: data };
  if (ArrayBuffer.isView(data)) return { values: data as HostArray };
  if (data && typeof data === "object" && "data" in data && "shape" in data) {
    return { values: (data as HostTensor).data, shape: (data as HostTensor).shape };
  }
  throw new TypeError(
    `${what}: expected a typed array, a number array or { data, shape }, got ${typeof data}`,
  );
}

/** Converts to a typed array of `dtype` (f32 data for an f16 tensor is rounded). */
export function coerce(
  values: HostArray | readonly number[],
  dtype: DType,
  what: string,
): HostArray {
  if (ArrayBuffer.isView(values) && dtypeOfHost(values as HostArray) === dtype) {
    return values as HostArray;
  }
  const isIntTarget = dtype === "i32" || dtype === "u32";
  if (
    ArrayBuffer.isView(values) && isIntTarget && dtypeOfHost(values as HostArray) !== dtype &&
    !(values instanceof Int32Array || values instanceof Uint32Array)
  ) {
    throw new TypeError(
      `${what}: is ${dtype} but got ${dtypeOfHost(values as HostArray)} data; pass integers`,
    );
  }
  const out = allocHost(dtype, values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== "number") throw new TypeError(`${what}: element ${i} is not a number`);
    out[i] = v;
  }
  return out;
}
