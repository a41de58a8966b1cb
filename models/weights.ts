/**
 * Weight parameters that may be block-quantized: every Linear layer and
 * embedding of a model is declared through these helpers, which make a dense
 * parameter and a `matmul`/`gather`, or — when the model's format table names
 * the parameter — a `u32` parameter holding the llama.cpp blocks and a
 * `qmatmul`/`qgather` that dequantizes as it reads.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import { GGML_TYPES, type QuantFormat } from "../core/quant/formats.ts";
import { quantWords } from "../ops/quant/mod.ts";

/**
 * Which parameters are stored quantized, by Kiln parameter name (MoE experts:
 * the stacked `<layer>.moe.w1` etc.). Absent names are dense.
 *
 * @example
 * ```ts
 * import type { WeightFormats } from "@kiln/kiln";
 * const f: WeightFormats = { "lm_head.weight": "q6_k", "model.layers.0.self_attn.q_proj.weight": "q4_k" };
 * ```
 */
export type WeightFormats = Readonly<Record<string, QuantFormat>>;

/**
 * True when a `[rows, cols]` weight can be stored in `format`: each row a
 * whole number of blocks (llama.cpp keeps other tensors in f16/f32 too).
 *
 * @example
 * ```ts
 * import { quantizable } from "@kiln/kiln";
 * quantizable("q4_k", 48); // false: 48 columns are not a 256-element block
 * ```
 */
export function quantizable(format: QuantFormat, cols: number): boolean {
  return cols % GGML_TYPES[format].blockElems === 0;
}

/**
 * The `u32` parameter holding a quantized `[rows, cols]` weight's blocks.
 *
 * @example
 * ```ts
 * import { GraphBuilder, quantParam } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * quantParam(g, "w", "q8_0", 64, 64); // u32[1088]
 * ```
 */
export function quantParam(
  g: GraphBuilder,
  name: string,
  format: QuantFormat,
  rows: number,
  cols: number,
): Tensor {
  return g.param(name, [quantWords(format, rows, cols)], "u32");
}

/**
 * `x · Wᵀ` for the Linear weight `name` (`[rows, cols]`): dense in `dtype`, or
 * dequantized in the kernel when `formats` names it.
 *
 * @example
 * ```ts
 * import { GraphBuilder, linear } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 256]);
 * g.output("y", linear(g, x, "w", 64, 256, "f32", { w: "q4_k" }));
 * ```
 */
export function linear(
  g: GraphBuilder,
  x: Tensor,
  name: string,
  rows: number,
  cols: number,
  dtype: DType,
  formats: WeightFormats = {},
): Tensor {
  const format = formats[name];
  if (format === undefined) return x.matmul(g.param(name, [rows, cols], dtype), { transB: true });
  const w = quantParam(g, name, format, rows, cols);
  return g.apply("qmatmul", [x, w], { format, rows, cols })[0];
}

/**
 * Rows of the embedding table `name` (`[vocab, width]`) for `ids`, in `dtype`:
 * a `gather`, or a `qgather` of the quantized table. Returns the table too (a
 * tied LM head reads it with {@linkcode head}).
 *
 * @example
 * ```ts
 * import { embedding, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const { h } = embedding(g, g.input("ids", ["T"], "u32"), "embed", 100, 64, "f32", { embed: "q8_0" });
 * g.output("h", h);
 * ```
 */
export function embedding(
  g: GraphBuilder,
  ids: Tensor,
  name: string,
  vocab: number,
  width: number,
  dtype: DType,
  formats: WeightFormats = {},
): { h: Tensor; table: Tensor } {
  const format = formats[name];
  if (format === undefined) {
    const table = g.param(name, [vocab, width], dtype);
    return { h: table.gather(ids), table };
  }
  const table = quantParam(g, name, format, vocab, width);
  const [h] = g.apply("qgather", [table, ids], { format, rows: vocab, cols: width });
  return { h: dtype === "f32" ? h : h.cast(dtype), table };
}

/**
 * `x · Tᵀ` for a `[vocab, width]` table already declared (a tied LM head):
 * `qmatmul` when the table is quantized (a u32 parameter).
 *
 * @example
 * ```ts
 * import { embedding, GraphBuilder, head } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const { h, table } = embedding(g, g.input("ids", ["T"], "u32"), "embed", 100, 64, "f32");
 * g.output("logits", head(g, h, table, "embed", 100, 64, {}));
 * ```
 */
export function head(
  g: GraphBuilder,
  x: Tensor,
  table: Tensor,
  name: string,
  vocab: number,
  width: number,
  formats: WeightFormats,
): Tensor {
  const format = formats[name];
  if (format === undefined) return x.matmul(table, { transB: true });
  return g.apply("qmatmul", [x, table], { format, rows: vocab, cols: width })[0];
}
