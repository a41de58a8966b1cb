/**
 * WGSL literals from JS numbers: one way to write them, for every kernel.
 *
 * @module
 */

import type { DType } from "../../core/dtype.ts";

/**
 * A WGSL literal of `dtype` for a JS number. Floats keep 10 significant digits
 * (exact for f32); NaN and ±∞, which WGSL cannot write as literals, become bit
 * patterns (a constant tensor may legitimately hold −∞, e.g. a mask).
 *
 * @example
 * ```ts
 * import { lit } from "./literal.ts";
 * lit(0.5); // "f32(5.000000000e-1)"
 * lit(3, "u32"); // "3u"
 * lit(-Infinity); // "f32(bitcast<f32>(0xff800000u))"
 * ```
 */
export function lit(v: number, dtype: DType = "f32"): string {
  switch (dtype) {
    case "i32":
      return `i32(${Math.trunc(v)})`;
    case "u32":
      return `${Math.trunc(v) >>> 0}u`;
    case "f16":
    case "f32": {
      if (Number.isNaN(v)) return `${dtype}(bitcast<f32>(0x7fc00000u))`;
      if (!Number.isFinite(v)) {
        return `${dtype}(bitcast<f32>(${v > 0 ? "0x7f800000u" : "0xff800000u"}))`;
      }
      const s = Number.isInteger(v) && Math.abs(v) < 1e15 ? v.toFixed(1) : v.toExponential(9);
      return `${dtype}(${s})`;
    }
  }
}

/**
 * A bare f32 literal (`1.5`, `-2.0e-3`) for arithmetic inside f32 expressions.
 * Only finite values: an attribute reaching a kernel has been checked finite
 * when the graph was built, so a non-finite one here is a Kiln bug, reported as
 * a RangeError naming `what` rather than a WGSL compile error.
 *
 * @example
 * ```ts
 * import { f32 } from "./literal.ts";
 * f32(2); // "2.0"
 * f32(1e-6); // "1.000000000e-6"
 * ```
 */
export function f32(v: number, what = "a kernel constant"): string {
  if (!Number.isFinite(v)) throw new RangeError(`${what} must be finite, got ${v}`);
  return Number.isInteger(v) && Math.abs(v) < 1e15 ? v.toFixed(1) : v.toExponential(9);
}

/**
 * A u32 literal (`7u`) of a non-negative integer.
 *
 * @example
 * ```ts
 * import { u32 } from "./literal.ts";
 * u32(7); // "7u"
 * ```
 */
export function u32(v: number): string {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`a u32 literal must be an integer in [0, 2^32), got ${v}`);
  }
  return `${v}u`;
}

/**
 * `array<f32, n>(…)` of f32 values (constant tables such as RoPE frequencies).
 *
 * @example
 * ```ts
 * import { f32Array } from "./literal.ts";
 * f32Array([1, 0.5]); // "array<f32, 2>(1.0, 5.000000000e-1)"
 * ```
 */
export function f32Array(values: ArrayLike<number>, what = "a kernel table"): string {
  return `array<f32, ${values.length}>(${Array.from(values, (v) => f32(v, what)).join(", ")})`;
}

/**
 * `array<u32, n>(…)`.
 *
 * @example
 * ```ts
 * import { u32Array } from "./literal.ts";
 * u32Array([0, 4]); // "array<u32, 2>(0u, 4u)"
 * ```
 */
export function u32Array(values: ArrayLike<number>): string {
  return `array<u32, ${values.length}>(${Array.from(values, u32).join(", ")})`;
}

/**
 * Four of the eight f16 values packed in a `vec4<u32>` word group, widened to
 * `vec4<f32>`: `h` 0 gives values 0–3 (components x, y), 1 gives 4–7 (z, w).
 * Reading f16 as packed words halves the loads where a load costs per
 * component (llvmpipe loads each lane's components one at a time).
 *
 * @example
 * ```ts
 * import { unpackHalves } from "./literal.ts";
 * unpackHalves("q", 1); // "vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w))"
 * ```
 */
export function unpackHalves(word4: string, h: 0 | 1): string {
  return `vec4<f32>(unpack2x16float(${word4}.${"xz"[h]}), unpack2x16float(${word4}.${"yw"[h]}))`;
}
