/**
 * write_rows: writes rows of `src` into `dst` starting at a row offset read from a
 * device buffer — the KV-cache append. It runs in place: when `dst` is a state whose
 * new value is this op's output, only the new rows are written.
 *
 * @module
 */

import { formatShape, numel } from "../core/shape.ts";
import { flatKernel, KernelIo } from "./wgsl/mod.ts";
import type { OpDef } from "./types.ts";
import type { NoAttrs } from "./unary.ts";

/**
 * write_rows(dst [R, ...D], src [T, ...D], pos u32 [1]) → dst with rows
 * pos..pos+T−1 replaced by src. Rows that would land past R are dropped.
 */
export const writeRows: OpDef<NoAttrs> = {
  arity: 3,
  attrNames: [],
  infer([dst, src, pos]) {
    const show = `write_rows(${formatShape(dst.shape)}, ${formatShape(src.shape)}, ${
      formatShape(pos.shape)
    })`;
    if (dst.shape.length < 1 || src.shape.length !== dst.shape.length) {
      throw new RangeError(`${show}: src must have the same rank as dst`);
    }
    if (src.shape.slice(1).some((d, i) => d !== dst.shape[i + 1])) {
      throw new RangeError(`${show}: row shapes differ`);
    }
    if (src.dtype !== dst.dtype) {
      throw new TypeError(`${show}: dtypes differ (${src.dtype} vs ${dst.dtype})`);
    }
    if (pos.dtype !== "u32" || pos.shape.length !== 1 || pos.shape[0] !== 1) {
      throw new TypeError(
        `${show}: pos must be u32 [1], got ${pos.dtype}${formatShape(pos.shape)}`,
      );
    }
    return [{ shape: dst.shape, dtype: dst.dtype }];
  },
  reference([dst, src, pos]) {
    const out = dst.data.slice();
    const row = numel(dst.shape.slice(1));
    const p = pos.data[0];
    const rows = Math.min(src.shape[0], Math.max(0, dst.shape[0] - p));
    for (let i = 0; i < rows * row; i++) out[p * row + i] = src.data[i];
    return [out];
  },
  lower: {
    kind: "kernel",
    prologue: [1],
    epilogue: false,
    inplace: [[0, 0]],
    emit(ctx) {
      const [dst, src] = ctx.inputs;
      const row = numel(dst.shape.slice(1));
      const total = numel(src.shape);
      const limit = numel(dst.shape);
      const io = new KernelIo();
      const v = io.load(1, "i");
      // In place: only the new rows are written, straight into the output (the
      // cache) when it is one binding.
      const write = ctx.outputs[0].direct ? `${io.out(0)}[at] = ${v};` : `${io.store(0, "at", v)};`;
      const body = `  let at = ${io.load(2, "0u")} * ${row}u + i;
  if (at < ${limit}u) { ${write} }`;
      return { kernels: [flatKernel("write_rows", total, ctx.caps, body, "", io)] };
    },
  },
};
