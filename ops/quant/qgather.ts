/**
 * `qgather`: rows of a block-quantized table by integer ids — the embedding
 * lookup of a quantized checkpoint, dequantizing only the rows it reads.
 *
 * @module
 */

import { allocHost } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { formatShape, numel } from "../../core/shape.ts";
import type { KernelEmission, OpDef } from "../types.ts";
import { flatKernel, KernelIo } from "../wgsl/mod.ts";
import { checkQuantWeight, dequantizeHost, type QuantAttrs } from "./qmatmul.ts";
import { QUANT_GROUP, quantReaders, quantRowBytes } from "./wgsl.ts";

function inferQgather([table, ids]: readonly TensorType[], attrs: QuantAttrs): TensorType[] {
  checkQuantWeight("qgather", table, attrs);
  if (ids.dtype !== "i32" && ids.dtype !== "u32") {
    throw new TypeError(
      `qgather: ids must be i32 or u32, got ${ids.dtype} ${formatShape(ids.shape)}`,
    );
  }
  return [{ shape: [...ids.shape, attrs.cols], dtype: "f32" }];
}

/**
 * `qgather(table u32[words], ids [...I]) → f32[...I, D]`: rows of the `[V, D]`
 * quantized table of the attributes; ids out of range read zeros (as `gather`).
 */
export const qgather: OpDef<QuantAttrs> = {
  arity: 2,
  attrNames: ["format", "rows", "cols"],
  infer: inferQgather,
  reference([table, ids], attrs) {
    const V = attrs.rows, D = attrs.cols;
    const T = dequantizeHost(table, attrs);
    const res = allocHost("f32", ids.data.length * D);
    for (let r = 0; r < ids.data.length; r++) {
      const id = ids.data[r];
      if (id >= 0 && id < V) res.set(T.subarray(id * D, (id + 1) * D), r * D);
    }
    return [res];
  },
  lower: {
    kind: "kernel",
    prologue: [1],
    epilogue: true,
    emit({ inputs, outputs, caps, attrs }): KernelEmission {
      // One thread per four outputs: the group's (scale, min) and four codes.
      const [table, ids] = inputs;
      const { format, rows: V, cols: D } = attrs;
      const G = QUANT_GROUP[format];
      const n = numel(outputs[0].shape) / 4;
      const io = new KernelIo();
      const word = (i: string) => table.direct ? `${io.in(0)}[${i}]` : io.load(0, i);
      const valid = ids.dtype === "i32" ? `id >= 0 && id < ${V}` : `id < ${V}u`;
      const body = `  let row = i / ${D / 4}u;
  let c4 = i % ${D / 4}u;
  let id = ${io.load(1, "row")};
  var v = vec4<f32>(0.0);
  if (${valid}) {
    let rb = u32(id) * ${quantRowBytes(format, D)}u;
    let g = c4 / ${G / 4}u;
    let sm = q_qg(rb, g);
    v = sm.x * q_qc(rb, g, c4 % ${G / 4}u) - sm.y;
  }
  ${[0, 1, 2, 3].map((e) => `${io.store(0, `i * 4u + ${e}u`, `v[${e}]`)};`).join("\n  ")}`;
      return {
        kernels: [
          flatKernel(
            `qgather_${format}`,
            n,
            caps,
            body,
            quantReaders(format, word, "q", (t) => io.table(t)),
            io,
          ),
        ],
      };
    },
  },
};
