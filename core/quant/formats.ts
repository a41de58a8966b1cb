/**
 * llama.cpp's (ggml's) tensor element types: their GGUF type ids, and for the
 * block-quantized ones the block geometry. One table that the block codecs, the
 * GGUF reader and writer, the fused-dequantization kernels and the expert
 * scheduler's byte counts all read.
 *
 * Ids are ggml's `enum ggml_type` (`ggml.h`; 4, 5 and 31–33, 36–38 are retired
 * and never appear in a GGUF file). Sizes are the block structs of
 * `ggml-common.h`: Q8_0 and Q4_0 hold 32 elements a block behind one f16 scale;
 * the K-quants hold super-blocks of 256.
 *
 * @module
 */

/**
 * A block-quantized weight format Kiln computes with (dequantized inside the
 * kernels that read it).
 *
 * @example
 * ```ts
 * import type { QuantFormat } from "./formats.ts";
 * const f: QuantFormat = "q4_k";
 * ```
 */
export type QuantFormat =
  | "q8_0"
  | "q4_0"
  | "q4_1"
  | "q5_0"
  | "q5_1"
  | "q2_k"
  | "q3_k"
  | "q4_k"
  | "q5_k"
  | "q6_k"
  | "iq4_nl"
  | "iq4_xs"
  | LatticeFormat
  | LowBitFormat;

/**
 * ggml's lattice formats (codebook points, `iq_lattice.ts`): read; of them Kiln
 * writes IQ3_XXS and IQ3_S (`iq3_encode.ts`).
 *
 * @example
 * ```ts
 * import type { LatticeFormat } from "./formats.ts";
 * const f: LatticeFormat = "iq2_xxs";
 * ```
 */
export type LatticeFormat =
  | "iq2_xxs"
  | "iq2_xs"
  | "iq2_s"
  | "iq3_xxs"
  | "iq3_s"
  | "iq1_s"
  | "iq1_m";

/**
 * The {@linkcode LatticeFormat}s, in a stable order.
 *
 * @example
 * ```ts
 * import { LATTICE_FORMATS } from "./formats.ts";
 * LATTICE_FORMATS.length; // 7
 * ```
 */
export const LATTICE_FORMATS: readonly LatticeFormat[] = [
  "iq2_xxs",
  "iq2_xs",
  "iq2_s",
  "iq3_xxs",
  "iq3_s",
  "iq1_s",
  "iq1_m",
];

/**
 * ggml's newer one-scale formats: the ternary TQ1_0 and TQ2_0, the binary Q1_0
 * and two-bit Q2_0 (`low_bit.ts`), and the 4-bit floats MXFP4 and NVFP4
 * (`fp4.ts`).
 *
 * @example
 * ```ts
 * import type { LowBitFormat } from "./formats.ts";
 * const f: LowBitFormat = "mxfp4";
 * ```
 */
export type LowBitFormat = "tq1_0" | "tq2_0" | "q1_0" | "q2_0" | "mxfp4" | "nvfp4";

/**
 * The {@linkcode LowBitFormat}s, in a stable order.
 *
 * @example
 * ```ts
 * import { LOW_BIT_FORMATS } from "./formats.ts";
 * LOW_BIT_FORMATS.includes("mxfp4"); // true
 * ```
 */
export const LOW_BIT_FORMATS: readonly LowBitFormat[] = [
  "tq1_0",
  "tq2_0",
  "q1_0",
  "q2_0",
  "mxfp4",
  "nvfp4",
];

/**
 * A format Kiln writes: every {@linkcode QuantFormat} but the IQ2 and IQ1
 * lattice formats.
 *
 * @example
 * ```ts
 * import type { QuantizeFormat } from "./formats.ts";
 * const f: QuantizeFormat = "q4_k";
 * ```
 */
export type QuantizeFormat = Exclude<QuantFormat, Exclude<LatticeFormat, "iq3_xxs" | "iq3_s">>;

/**
 * The formats Kiln writes (`kiln quantize`, quantize-on-load), in a stable order:
 * every format but the IQ2 and IQ1 lattice ones, which llama-quantize writes only
 * with an importance matrix.
 *
 * @example
 * ```ts
 * import { QUANTIZE_FORMATS } from "./formats.ts";
 * QUANTIZE_FORMATS.includes("q4_k"); // true
 * QUANTIZE_FORMATS.includes("iq2_xxs" as never); // false
 * ```
 */
export const QUANTIZE_FORMATS: readonly QuantizeFormat[] = [
  "q8_0",
  "q4_0",
  "q4_1",
  "q5_0",
  "q5_1",
  "q2_k",
  "q3_k",
  "q4_k",
  "q5_k",
  "q6_k",
  "iq4_nl",
  "iq4_xs",
  "iq3_xxs",
  "iq3_s",
  ...LOW_BIT_FORMATS,
];

/**
 * What quantize-on-load (`loadModel({ quantize })`, `--quantize`) takes: one
 * format for every matrix, or `mxfp4_moe`, llama-quantize's MXFP4_MOE mix
 * (MoE experts in MXFP4, every other matrix in Q8_0).
 *
 * @example
 * ```ts
 * import type { QuantizeChoice } from "./formats.ts";
 * const q: QuantizeChoice = "mxfp4_moe";
 * ```
 */
export type QuantizeChoice = QuantizeFormat | "mxfp4_moe";

/**
 * The {@linkcode QuantizeChoice}s: the {@linkcode QUANTIZE_FORMATS}, then `mxfp4_moe`.
 *
 * @example
 * ```ts
 * import { QUANTIZE_CHOICES } from "./formats.ts";
 * QUANTIZE_CHOICES.at(-1); // "mxfp4_moe"
 * ```
 */
export const QUANTIZE_CHOICES: readonly QuantizeChoice[] = [...QUANTIZE_FORMATS, "mxfp4_moe"];

/**
 * True when `name` is one of {@linkcode QUANTIZE_CHOICES}.
 *
 * @example
 * ```ts
 * import { isQuantizeChoice } from "./formats.ts";
 * isQuantizeChoice("mxfp4_moe"); // true
 * ```
 */
export function isQuantizeChoice(name: string): name is QuantizeChoice {
  return (QUANTIZE_CHOICES as readonly string[]).includes(name);
}

/**
 * The format a {@linkcode QuantizeChoice} gives one matrix (`expert`: a stacked MoE
 * expert weight): the choice itself, or MXFP4_MOE's MXFP4 for experts and Q8_0
 * for the rest.
 *
 * @example
 * ```ts
 * import { choiceFormat } from "./formats.ts";
 * choiceFormat("mxfp4_moe", false); // "q8_0"
 * ```
 */
export function choiceFormat(choice: QuantizeChoice, expert: boolean): QuantizeFormat {
  return choice !== "mxfp4_moe" ? choice : expert ? "mxfp4" : "q8_0";
}

/**
 * Every quantized format Kiln reads and computes with, in a stable order: the
 * {@linkcode QUANTIZE_FORMATS} (ggml's low-bit TQ1_0, TQ2_0, Q1_0, Q2_0, MXFP4,
 * NVFP4 among them), then the lattice formats IQ2 and IQ1 (written only with an
 * importance matrix, as llama-quantize writes them).
 *
 * @example
 * ```ts
 * import { QUANT_FORMATS } from "./formats.ts";
 * QUANT_FORMATS.includes("iq2_xxs"); // true
 * ```
 */
export const QUANT_FORMATS: readonly QuantFormat[] = [
  ...new Set([...QUANTIZE_FORMATS, ...LATTICE_FORMATS]),
];

/**
 * One ggml element type: its GGUF id, name and block geometry (`blockElems`
 * elements stored in `blockBytes` bytes; 1 and the element size for plain
 * types).
 *
 * @example
 * ```ts
 * import { GGML_TYPES } from "./formats.ts";
 * GGML_TYPES.q4_k.blockBytes; // 144
 * ```
 */
export interface GgmlTypeInfo {
  /** ggml's name, lower case (`"q4_k"`, `"f16"`). */
  readonly name: string;
  /** The `ggml_type` enum value GGUF stores. */
  readonly id: number;
  /** Elements per block. */
  readonly blockElems: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  /** Whether Kiln can read tensors of this type. */
  readonly supported: boolean;
}

const t = (name: string, id: number, blockElems: number, blockBytes: number, supported = false) =>
  ({ name, id, blockElems, blockBytes, supported }) as const;

/**
 * ggml's element types by name. Kiln reads `f32`, `f16`, `bf16` and the formats
 * of {@linkcode QUANT_FORMATS}; the others are listed so that a file holding
 * them is refused by name, not as an unknown id.
 *
 * @example
 * ```ts
 * import { GGML_TYPES } from "./formats.ts";
 * GGML_TYPES.q8_0.id; // 8
 * ```
 */
export const GGML_TYPES: Readonly<Record<GgmlTypeName, GgmlTypeInfo>> = {
  f32: t("f32", 0, 1, 4, true),
  f16: t("f16", 1, 1, 2, true),
  q4_0: t("q4_0", 2, 32, 18, true),
  q4_1: t("q4_1", 3, 32, 20, true),
  q5_0: t("q5_0", 6, 32, 22, true),
  q5_1: t("q5_1", 7, 32, 24, true),
  q8_0: t("q8_0", 8, 32, 34, true),
  q8_1: t("q8_1", 9, 32, 36),
  q2_k: t("q2_k", 10, 256, 84, true),
  q3_k: t("q3_k", 11, 256, 110, true),
  q4_k: t("q4_k", 12, 256, 144, true),
  q5_k: t("q5_k", 13, 256, 176, true),
  q6_k: t("q6_k", 14, 256, 210, true),
  q8_k: t("q8_k", 15, 256, 292),
  iq2_xxs: t("iq2_xxs", 16, 256, 66, true),
  iq2_xs: t("iq2_xs", 17, 256, 74, true),
  iq3_xxs: t("iq3_xxs", 18, 256, 98, true),
  iq1_s: t("iq1_s", 19, 256, 50, true),
  iq4_nl: t("iq4_nl", 20, 32, 18, true),
  iq3_s: t("iq3_s", 21, 256, 110, true),
  iq2_s: t("iq2_s", 22, 256, 82, true),
  iq4_xs: t("iq4_xs", 23, 256, 136, true),
  i8: t("i8", 24, 1, 1),
  i16: t("i16", 25, 1, 2),
  i32: t("i32", 26, 1, 4),
  i64: t("i64", 27, 1, 8),
  f64: t("f64", 28, 1, 8),
  iq1_m: t("iq1_m", 29, 256, 56, true),
  bf16: t("bf16", 30, 1, 2, true),
  tq1_0: t("tq1_0", 34, 256, 54, true),
  tq2_0: t("tq2_0", 35, 256, 66, true),
  mxfp4: t("mxfp4", 39, 32, 17, true),
  nvfp4: t("nvfp4", 40, 64, 36, true),
  q1_0: t("q1_0", 41, 128, 18, true),
  q2_0: t("q2_0", 42, 64, 18, true),
};

/**
 * A ggml type name.
 *
 * @example
 * ```ts
 * import type { GgmlTypeName } from "./formats.ts";
 * const n: GgmlTypeName = "q6_k";
 * ```
 */
export type GgmlTypeName =
  | "f32"
  | "f16"
  | "q4_0"
  | "q4_1"
  | "q5_0"
  | "q5_1"
  | "q8_0"
  | "q8_1"
  | "q2_k"
  | "q3_k"
  | "q4_k"
  | "q5_k"
  | "q6_k"
  | "q8_k"
  | "iq2_xxs"
  | "iq2_xs"
  | "iq3_xxs"
  | "iq1_s"
  | "iq4_nl"
  | "iq3_s"
  | "iq2_s"
  | "iq4_xs"
  | "i8"
  | "i16"
  | "i32"
  | "i64"
  | "f64"
  | "iq1_m"
  | "bf16"
  | "tq1_0"
  | "tq2_0"
  | "mxfp4"
  | "nvfp4"
  | "q1_0"
  | "q2_0";

const BY_ID = new Map<number, GgmlTypeInfo>(Object.values(GGML_TYPES).map((v) => [v.id, v]));

/**
 * The type with GGUF id `id`, or undefined for an id ggml does not define.
 *
 * @example
 * ```ts
 * import { ggmlTypeById } from "./formats.ts";
 * ggmlTypeById(12)?.name; // "q4_k"
 * ```
 */
export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

/**
 * True when `name` is one of {@linkcode QUANT_FORMATS}.
 *
 * @example
 * ```ts
 * import { isQuantFormat } from "./formats.ts";
 * isQuantFormat("q4_k"); // true
 * ```
 */
export function isQuantFormat(name: string): name is QuantFormat {
  return (QUANT_FORMATS as readonly string[]).includes(name);
}

/**
 * True when Kiln writes `name` (one of {@linkcode QUANTIZE_FORMATS}).
 *
 * @example
 * ```ts
 * import { isQuantizeFormat } from "./formats.ts";
 * isQuantizeFormat("q4_k"); // true
 * isQuantizeFormat("iq2_xxs"); // false
 * ```
 */
export function isQuantizeFormat(name: string): name is QuantizeFormat {
  return (QUANTIZE_FORMATS as readonly string[]).includes(name);
}

/**
 * Bytes of `elems` elements of a quantized format, which must fill whole
 * blocks (RangeError naming the format and block size otherwise).
 *
 * @example
 * ```ts
 * import { quantBytes } from "./formats.ts";
 * quantBytes("q4_k", 4096); // 2304
 * ```
 */
export function quantBytes(format: QuantFormat, elems: number): number {
  const info = GGML_TYPES[format];
  if (!Number.isInteger(elems) || elems < 0 || elems % info.blockElems !== 0) {
    throw new RangeError(
      `${format}: ${elems} elements is not a whole number of ${info.blockElems}-element blocks`,
    );
  }
  return (elems / info.blockElems) * info.blockBytes;
}

/**
 * llama-quantize's fallback for a row that is not whole super-blocks; Q4_0 for
 * the one-scale formats of 64–256 elements (llama.cpp's for TQ1_0 and TQ2_0).
 */
const FALLBACK: Readonly<Partial<Record<QuantFormat, QuantFormat>>> = {
  tq1_0: "q4_0",
  tq2_0: "q4_0",
  q1_0: "q4_0",
  q2_0: "q4_0",
  nvfp4: "q4_0",
  q2_k: "iq4_nl",
  q3_k: "iq4_nl",
  iq4_xs: "iq4_nl",
  iq3_xxs: "iq4_nl",
  iq3_s: "iq4_nl",
  iq2_xxs: "iq4_nl",
  iq2_xs: "iq4_nl",
  iq2_s: "iq4_nl",
  iq1_s: "iq4_nl",
  iq1_m: "iq4_nl",
  q4_k: "q5_0",
  q5_k: "q5_1",
  q6_k: "q8_0",
};

/**
 * The formats Kiln (like llama-quantize) writes only with an importance
 * matrix: ggml has no unweighted fit of IQ2_XXS, IQ2_XS and IQ1_S, and
 * llama-quantize refuses IQ2_S without one. (IQ1_M, which ggml fits either
 * way, llama-quantize refuses too but for the embeddings and output.)
 *
 * @example
 * ```ts
 * import { IMATRIX_ONLY_FORMATS } from "./formats.ts";
 * IMATRIX_ONLY_FORMATS.includes("iq2_xxs"); // true
 * ```
 */
export const IMATRIX_ONLY_FORMATS: readonly QuantFormat[] = ["iq2_xxs", "iq2_xs", "iq2_s", "iq1_s"];

/**
 * The format a row of `cols` elements is stored in when `format` is asked
 * for: `format` itself when the row is whole blocks, else llama-quantize's
 * fallback to a 32-element format (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K,
 * Q3_K, IQ4_XS, IQ3_XXS, IQ3_S, the IQ2 and IQ1 formats → IQ4_NL; TQ1_0, TQ2_0, Q1_0, Q2_0 and NVFP4 → Q4_0),
 * else undefined (the row stays f16/f32, as llama.cpp keeps it f16).
 *
 * @example
 * ```ts
 * import { fitFormat } from "./formats.ts";
 * fitFormat("q4_k", 1408); // "q5_0": 1408 is not a multiple of 256
 * fitFormat("q8_0", 48); // undefined
 * ```
 */
export function fitFormat(format: QuantFormat, cols: number): QuantFormat | undefined {
  if (cols % GGML_TYPES[format].blockElems === 0) return format;
  const fallback = FALLBACK[format];
  return fallback !== undefined && cols % GGML_TYPES[fallback].blockElems === 0
    ? fallback
    : undefined;
}
