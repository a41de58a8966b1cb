/**
 * `scatter_add`: rows of `src` summed into a `[rows, ...D]` table at their ids —
 * the gradient of `gather` (an embedding's). Deterministic: each output element
 * is one invocation that walks the ids in order, so the sum's order never
 * depends on scheduling (no float atomics). Ids out of range add nothing, as
 * `gather` reads zeros for them.
 *
 * Cost: every invocation reads every id, `rows · D · ids` id loads — fine for
 * the vocabularies of the models trained here; a vocabulary of 32k at long
 * sequences wants the ids sorted into segments first (as MoE's routing sort).
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
      const io = new KernelIo();
      const id = ids.dtype === "i32" ? "u32(max(id, -1))" : "id";
      const body = `  let row = i / ${D}u;
  let col = i % ${D}u;
  var acc = ${zeroOf(src.dtype)};
  for (var t = 0u; t < ${T}u; t++) {
    let id = ${io.load(1, "t")};
    if (${id} == row) { acc += ${io.load(0, `t * ${D}u + col`)}; }
  }
  ${io.store(0, "i", "acc")};`;
      return { kernels: [flatKernel("scatter_add", attrs.rows * D, caps, body, "", io)] };
    },
  },
};
