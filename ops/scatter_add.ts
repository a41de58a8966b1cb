/**
 * `scatter_add`: rows of `src` summed into a `[rows, ...D]` table at their ids —
 * the gradient of `gather` (an embedding's). Deterministic, with no float
 * atomics: a first kernel sorts the positions by id into segments (a counting
 * sort, stable: one invocation walks the ids in order — `rows + 2·T` steps),
 * then each output element sums its row's segment in position order, so the
 * sum's order never depends on scheduling. Cost `T·D + rows·D` loads instead
 * of the `rows·D·T` of every element scanning every id. Ids out of range add
 * nothing, as `gather` reads zeros for them.
 *
 * @module
 */

import { allocHost } from "../core/dtype.ts";
import { formatShape, numel } from "../core/shape.ts";
import type { KernelEmission, OpDef } from "./types.ts";
import { zeroOf } from "./layout.ts";
import { flatKernel, KernelIo } from "./wgsl/mod.ts";

/**
 * Attributes of `scatter_add`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type ScatterAddAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: ScatterAddAttrs = { rows: 100 };
 * const src = g.input("dy", ["T", 16]);
 * g.output("dtable", g.apply("scatter_add", [src, g.input("ids", ["T"], "u32")], attrs)[0]);
 * ```
 */
export interface ScatterAddAttrs {
  /** Rows of the table (the vocabulary). */
  readonly rows: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

/** scatter_add(src [...I, ...D], ids [...I]) → [rows, ...D]. */
export const scatterAdd: OpDef<ScatterAddAttrs> = {
  arity: 2,
  attrNames: ["rows"],
  infer([src, ids], a) {
    if (!Number.isInteger(a.rows) || a.rows < 1) {
      throw new RangeError(`scatter_add: rows must be a positive integer, got ${a.rows}`);
    }
    if (ids.dtype !== "i32" && ids.dtype !== "u32") {
      throw new TypeError(`scatter_add: ids must be i32 or u32, got ${ids.dtype}`);
    }
    const r = ids.shape.length;
    if (src.shape.length < r || ids.shape.some((d, k) => d !== src.shape[k])) {
      throw new RangeError(
        `scatter_add: src ${formatShape(src.shape)} must start with the ids' shape ${
          formatShape(ids.shape)
        }`,
      );
    }
    return [{ shape: [a.rows, ...src.shape.slice(r)], dtype: src.dtype }];
  },
  reference([src, ids], a, [out]) {
    const D = numel(out.shape.slice(1));
    const res = allocHost(out.dtype, a.rows * D);
    for (let t = 0; t < ids.data.length; t++) {
      const id = ids.data[t];
      if (id < 0 || id >= a.rows) continue;
      for (let c = 0; c < D; c++) res[id * D + c] += src.data[t * D + c];
    }
    return [res];
  },
  lower: {
    kind: "kernel",
    prologue: true,
    epilogue: true,
    emit({ inputs, outputs, caps, attrs }): KernelEmission {
      const [src, ids] = inputs;
      const D = numel(outputs[0].shape.slice(1));
      const T = numel(ids.shape);
      const R = attrs.rows;
      const id = ids.dtype === "i32" ? "u32(max(ids_t, -1))" : "ids_t";
      // scratch0: [0, R) per-row counts, then segment ends; [R, R + T) the positions by id.
      const sortIo = new KernelIo();
      const seg = sortIo.scratch(0);
      const sort = `  for (var t = 0u; t < ${T}u; t++) {
    let ids_t = ${sortIo.load(1, "t")};
    let id = ${id};
    if (id < ${R}u) { ${seg}[id] += 1u; }
  }
  var acc = 0u;
  for (var r = 0u; r < ${R}u; r++) {
    let c = ${seg}[r];
    ${seg}[r] = acc;
    acc += c;
  }
  for (var t = 0u; t < ${T}u; t++) {
    let ids_t = ${sortIo.load(1, "t")};
    let id = ${id};
    if (id < ${R}u) {
      ${seg}[${R}u + ${seg}[id]] = t;
      ${seg}[id] += 1u;
    }
  }`;
      const io = new KernelIo();
      const ends = io.scratch(0);
      const body = `  let row = i / ${D}u;
  let col = i % ${D}u;
  var j = select(0u, ${ends}[row - 1u], row > 0u);
  let end = ${ends}[row];
  var acc = ${zeroOf(src.dtype)};
  for (; j < end; j++) {
    acc += ${io.load(0, `${ends}[${R}u + j] * ${D}u + col`)};
  }
  ${io.store(0, "i", "acc")};`;
      return {
        kernels: [
          flatKernel("scatter_add_sort", 1, caps, sort, "", sortIo),
          flatKernel("scatter_add", R * D, caps, body, "", io),
        ],
        scratch: [{ length: R + T, type: "u32", zero: true }],
      };
    },
  },
};
