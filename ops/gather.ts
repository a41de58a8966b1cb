/**
 * Gather rows of a table by integer ids (embedding lookup).
 *
 * Out-of-range ids — negative (i32) or `>= V` — read a row of zeros; they never
 * fault and never read another row. This matches what a padded embedding table
 * would give and keeps the kernel branch-light on the GPU.
 *
 * @module
 */

import { allocHost } from "../core/dtype.ts";
import { formatShape, numel } from "../core/shape.ts";
import type { KernelEmission, OpDef } from "./types.ts";
import type { NoAttrs } from "./unary.ts";
import { zeroOf } from "./layout.ts";
import { flatKernel, KernelIo } from "./wgsl/mod.ts";

/** gather(table [V, ...D], ids [...I]) → [...I, ...D]; ids out of range read zeros. */
export const gather: OpDef<NoAttrs> = {
  arity: 2,
  attrNames: [],
  infer([table, ids]) {
    if (table.shape.length < 1) {
      throw new RangeError(`gather: table must have rank >= 1, got ${formatShape(table.shape)}`);
    }
    if (ids.dtype !== "i32" && ids.dtype !== "u32") {
      throw new TypeError(
        `gather: ids must be i32 or u32, got ${ids.dtype} ${formatShape(ids.shape)}`,
      );
    }
    return [{ shape: [...ids.shape, ...table.shape.slice(1)], dtype: table.dtype }];
  },
  reference([table, ids], _a, [out]) {
    const V = table.shape[0];
    const D = numel(table.shape.slice(1));
    const res = allocHost(out.dtype, ids.data.length * D);
    for (let r = 0; r < ids.data.length; r++) {
      const id = ids.data[r];
      if (id < 0 || id >= V) continue; // zeros
      res.set(table.data.subarray(id * D, (id + 1) * D) as never, r * D);
    }
    return [res];
  },
  lower: {
    kind: "kernel",
    // A prologue on the table (e.g. a scaled embedding) is evaluated only for the
    // rows read; one on the ids (e.g. an offset) costs nothing extra.
    prologue: true,
    epilogue: true,
    emit({ inputs, outputs, caps }): KernelEmission {
      // One thread per output element: row r = i / D of the ids, column c = i % D.
      const [table, ids] = inputs;
      const V = table.shape[0];
      const D = numel(table.shape.slice(1));
      const n = numel(outputs[0].shape);
      const T = table.dtype;
      const valid = ids.dtype === "i32" ? `id >= 0 && id < ${V}` : `id < ${V}u`;
      const row = D === 1 ? "i" : `i / ${D}u`;
      const col = D === 1 ? "" : ` + i % ${D}u`;
      const io = new KernelIo();
      const body = `  let id = ${io.load(1, row)};
  var v = ${zeroOf(T)};
  if (${valid}) { v = ${io.load(0, `u32(id)${D === 1 ? "" : ` * ${D}u`}${col}`)}; }
  ${io.store(0, "i", "v")};`;
      return { kernels: [flatKernel("gather", n, caps, body, "", io)] };
    },
  },
};
