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

/** The values an integer dtype holds: anything else would wrap or truncate silently. */
const INT_RANGE: Partial<Record<DType, readonly [number, number]>> = {
  i32: [-2147483648, 2147483647],
  u32: [0, 4294967295],
};

/**
 * Converts to a typed array of `dtype` (f32 data for an f16 tensor is rounded).
 * For i32 and u32 every element must be an integer the dtype holds: -1, 2.7 or
 * 1e10 for u32 is a RangeError naming `what`, the element and the bound, never
 * a wrapped or truncated value.
 */
export function coerce(
  values: HostArray | readonly number[],
  dtype: DType,
  what: string,
): HostArray {
  if (ArrayBuffer.isView(values) && dtypeOfHost(values as HostArray) === dtype) {
    return values as HostArray;
  }
  const range = INT_RANGE[dtype];
  const isIntTarget = range !== undefined;
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
    if (range && !(Number.isInteger(v) && v >= range[0] && v <= range[1])) {
      const name = what.charAt(0).toUpperCase() + what.slice(1);
      throw new RangeError(
        `${name}: element ${i} is ${v}, ${
          Number.isInteger(v) ? `outside ${dtype} [${range[0]}, ${range[1]}]` : "not an integer"
        }`,
      );
    }
    out[i] = v;
  }
  return out;
}
