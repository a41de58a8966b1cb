/**
 * The element types a safetensors header may name, their sizes, and the float
 * types Kiln reads tensors as.
 *
 * @module
 */

/**
 * The element types a safetensors header may name (the byte-sized ones).
 *
 * @example
 * ```ts
 * import type { SafeDType } from "@kiln/kiln";
 * const dtype: SafeDType = "BF16"; // read as f32 or f16 with readAs
 * ```
 */
export type SafeDType =
  | "BOOL"
  | "U8"
  | "I8"
  | "F8_E4M3"
  | "F8_E5M2"
  | "F8_E8M0"
  | "U16"
  | "I16"
  | "F16"
  | "BF16"
  | "U32"
  | "I32"
  | "F32"
  | "U64"
  | "I64"
  | "F64";

const DTYPE_SIZE: { readonly [D in SafeDType]: number } = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  U16: 2,
  I16: 2,
  F16: 2,
  BF16: 2,
  U32: 4,
  I32: 4,
  F32: 4,
  U64: 8,
  I64: 8,
  F64: 8,
};

/**
 * Every dtype this reader understands, in the order error messages list them.
 *
 * @example
 * ```ts
 * import { SAFE_DTYPES } from "./dtypes.ts";
 * SAFE_DTYPES.includes("BF16"); // true
 * ```
 */
export const SAFE_DTYPES: readonly SafeDType[] = Object.keys(DTYPE_SIZE) as SafeDType[];

/**
 * Bytes per element of a safetensors dtype.
 *
 * @example
 * ```ts
 * import { dtypeSize } from "./dtypes.ts";
 * dtypeSize("BF16"); // 2
 * ```
 */
export function dtypeSize(dtype: SafeDType): number {
  return DTYPE_SIZE[dtype];
}

/**
 * Whether `s` is a dtype this reader understands.
 *
 * @example
 * ```ts
 * import { isSafeDType } from "./dtypes.ts";
 * isSafeDType("F32"); // true
 * isSafeDType("F4"); // false (sub-byte types are not supported)
 * ```
 */
export function isSafeDType(s: unknown): s is SafeDType {
  return typeof s === "string" && Object.hasOwn(DTYPE_SIZE, s);
}

/**
 * Float types a tensor can be read as.
 *
 * @example
 * ```ts ignore
 * import { Checkpoint, type ReadDType } from "@kiln/kiln";
 * const ckpt = await Checkpoint.open("./mamba-130m-hf");
 * const as: ReadDType = "f16";
 * const w = await ckpt.readAs("backbone.norm_f.weight", as);
 * ckpt.close();
 * ```
 */
export type ReadDType = "f32" | "f16";
