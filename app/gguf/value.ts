/**
 * GGUF metadata values as Kiln holds them in memory, shared by the reader, the
 * writer, the tokenizer and the architecture mapping.
 *
 * @module
 */

/**
 * GGUF's metadata value types (`gguf_metadata_value_type`), by the names Kiln
 * uses for them.
 *
 * @example
 * ```ts
 * import { GGUF_VALUE_TYPES } from "./value.ts";
 * GGUF_VALUE_TYPES.indexOf("string"); // 8
 * ```
 */
export const GGUF_VALUE_TYPES = [
  "u8",
  "i8",
  "u16",
  "i16",
  "u32",
  "i32",
  "f32",
  "bool",
  "string",
  "array",
  "u64",
  "i64",
  "f64",
] as const;

/**
 * One of {@linkcode GGUF_VALUE_TYPES}.
 *
 * @example
 * ```ts
 * import type { GgufValueType } from "./value.ts";
 * const t: GgufValueType = "u32";
 * ```
 */
export type GgufValueType = typeof GGUF_VALUE_TYPES[number];

/**
 * A metadata value in memory: integers up to 32 bits and floats are numbers,
 * 64-bit integers are bigints, `bool` a boolean, `string` a string, and an
 * array a {@linkcode GgufArray} (its element type kept, so a file is written
 * back as it was read).
 *
 * @example
 * ```ts
 * import type { GgufValue } from "./value.ts";
 * const v: GgufValue = { type: "string", values: ["<s>", "</s>"] };
 * ```
 */
export type GgufValue = number | bigint | boolean | string | GgufArray;

/**
 * A GGUF array: its element type and elements (arrays of arrays nest).
 *
 * @example
 * ```ts
 * import type { GgufArray } from "./value.ts";
 * const scores: GgufArray = { type: "f32", values: [0, -1.5] };
 * ```
 */
export interface GgufArray {
  /** Element type. */
  readonly type: GgufValueType;
  /** Elements, each held as a scalar of that type would be. */
  readonly values: readonly GgufValue[];
}

/**
 * A metadata entry for the writer: the value and, for scalars, the GGUF type
 * to store it as (a number alone is ambiguous).
 *
 * @example
 * ```ts
 * import type { GgufEntry } from "./value.ts";
 * const e: GgufEntry = { type: "u32", value: 4096 };
 * ```
 */
export interface GgufEntry {
  /** Stored type; `"array"` for a {@linkcode GgufArray}. */
  readonly type: GgufValueType;
  /** The value. */
  readonly value: GgufValue;
}
