/**
 * Element types Kiln tensors can hold, with their storage size and WGSL names.
 *
 * @module
 */

/**
 * Element type of a tensor. `f16` needs the adapter feature `shader-f16`.
 *
 * @example
 * ```ts
 * import { byteSize, type DType, GraphBuilder } from "@kiln/kiln";
 * const dtype: DType = "f16";
 * byteSize(dtype); // 2
 * new GraphBuilder().param("w", [64, 64], dtype);
 * ```
 */
export type DType = "f32" | "f16" | "i32" | "u32";

/** All dtypes, in a stable order. */
export const DTYPES: readonly DType[] = ["f32", "f16", "i32", "u32"];

/**
 * Typed array that holds host data of any dtype (`f16` as `Float16Array`).
 *
 * @example
 * ```ts
 * import { dtypeOfHost, type HostArray } from "@kiln/kiln";
 * const data: HostArray = new Int32Array([1, -2, 3]);
 * dtypeOfHost(data); // "i32"
 * ```
 */
export type HostArray = Float32Array | Float16Array | Int32Array | Uint32Array;

/**
 * Bytes per element of a dtype.
 *
 * @example
 * ```ts
 * import { byteSize } from "@kiln/kiln";
 * byteSize("f16"); // 2
 * ```
 */
export function byteSize(dtype: DType): number {
  return dtype === "f16" ? 2 : 4;
}

/**
 * Bytes of `count` elements of `dtype` rounded up to a multiple of 4 (and at
 * least 4): the size of a WebGPU buffer or binding holding them.
 *
 * @example
 * ```ts
 * import { paddedBytes } from "@kiln/kiln";
 * paddedBytes(3, "f16"); // 8
 * ```
 */
export function paddedBytes(count: number, dtype: DType): number {
  return padBytes(count * byteSize(dtype));
}

/**
 * A byte count rounded up to a multiple of 4 (and at least 4), as WebGPU
 * buffers and bindings need.
 *
 * @example
 * ```ts
 * import { padBytes } from "@kiln/kiln";
 * padBytes(6); // 8
 * ```
 */
export function padBytes(bytes: number): number {
  return Math.max(4, Math.ceil(bytes / 4) * 4);
}

/**
 * True for floating-point dtypes.
 *
 * @example
 * ```ts
 * import { isFloat } from "@kiln/kiln";
 * isFloat("i32"); // false
 * ```
 */
export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16";
}

/**
 * Checks that `value` names a dtype, throwing a `TypeError` that quotes it otherwise.
 *
 * @example
 * ```ts
 * import { checkDType } from "@kiln/kiln";
 * checkDType("f32", "input x"); // "f32"
 * ```
 */
export function checkDType(value: unknown, what: string): DType {
  if (typeof value === "string" && (DTYPES as readonly string[]).includes(value)) {
    return value as DType;
  }
  throw new TypeError(
    `Unknown dtype ${JSON.stringify(value)} for ${what}: expected one of ${DTYPES.join(", ")}`,
  );
}

let float64Host = false;

/**
 * Runs `fn` with the host arrays of `f32` values allocated as `Float64Array`:
 * the CPU references (`runCpu`) then compute in double precision, which the
 * gradient checks' central finite differences need. Synchronous on purpose:
 * nothing else can allocate while it runs.
 *
 * @example
 * ```ts
 * import { allocHost, withFloat64Host } from "@kiln/kiln";
 * withFloat64Host(() => allocHost("f32", 2)).constructor.name; // "Float64Array"
 * ```
 */
export function withFloat64Host<T>(fn: () => T): T {
  const was = float64Host;
  float64Host = true;
  try {
    return fn();
  } finally {
    float64Host = was;
  }
}

/**
 * `v` as storing it in a host array of `dtype` gives: rounded to f16 or f32
 * (references that mimic a kernel's intermediate rounding), unrounded inside
 * `withFloat64Host`.
 *
 * @example
 * ```ts
 * import { roundHost } from "@kiln/kiln";
 * roundHost("f32", 0.1) === Math.fround(0.1); // true
 * ```
 */
export function roundHost(dtype: DType, v: number): number {
  if (dtype === "f16") return Math.f16round(v);
  return float64Host ? v : Math.fround(v);
}

/**
 * Allocates a zeroed host array of `length` elements of `dtype`.
 *
 * @example
 * ```ts
 * import { allocHost } from "@kiln/kiln";
 * allocHost("i32", 4); // Int32Array(4)
 * ```
 */
export function allocHost(dtype: DType, length: number): HostArray {
  switch (dtype) {
    case "f32":
      // Double precision while `withFloat64Host` runs (typed as f32's array:
      // every reader only indexes it).
      return float64Host
        ? new Float64Array(length) as unknown as Float32Array
        : new Float32Array(length);
    case "f16":
      return new Float16Array(length);
    case "i32":
      return new Int32Array(length);
    case "u32":
      return new Uint32Array(length);
  }
}

/**
 * The dtype a host array holds.
 *
 * @example
 * ```ts
 * import { dtypeOfHost } from "@kiln/kiln";
 * dtypeOfHost(new Int32Array(2)); // "i32"
 * ```
 */
export function dtypeOfHost(data: HostArray): DType {
  if (data instanceof Float32Array) return "f32";
  if (data instanceof Float16Array) return "f16";
  if (data instanceof Int32Array) return "i32";
  return "u32";
}

/**
 * Converts numbers to a host array of `dtype`, rounding as the dtype would store them.
 *
 * @example
 * ```ts
 * import { toHost } from "@kiln/kiln";
 * toHost([1.5, -2], "i32"); // Int32Array [1, -2]
 * ```
 */
export function toHost(values: ArrayLike<number>, dtype: DType): HostArray {
  const out = allocHost(dtype, values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = dtype === "i32" || dtype === "u32" ? Math.trunc(values[i]) : values[i];
  }
  return out;
}
