/**
 * `expand`: a tensor broadcast to a larger shape (numpy rules) as a view — no
 * kernel of its own, so a gradient that fans a reduced value back out over
 * its rows costs only index arithmetic in the consumer's loads.
 *
 * @module
 */

import { allocHost } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { type Dim, formatShape, numel, stridesOf } from "../core/shape.ts";
import { remapExpr } from "./layout.ts";
import type { OpDef } from "./types.ts";

/**
 * Attributes of `expand`.
 *
 * @example
 * ```ts
 * import { type ExpandAttrs, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: ExpandAttrs = { shape: ["T", 8] };
 * g.output("y", g.apply("expand", [g.input("b", [1, 8]), ], attrs)[0]); // f32[T, 8]
 * ```
 */
export interface ExpandAttrs {
  /** The shape broadcast to. */
  readonly shape: readonly Dim[];
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: readonly Dim[];
}

/** Per output axis, the input's stride there (0 where the input broadcasts). */
function inputStrides(input: readonly number[], output: readonly number[]): number[] {
  const lead = output.length - input.length;
  const strides = stridesOf(input);
  return output.map((_, k) => (k < lead || input[k - lead] === 1 ? 0 : strides[k - lead]));
}

function inferExpand(x: TensorType, shape: readonly Dim[]): Dim[] {
  const lead = shape.length - x.shape.length;
  const ok = Array.isArray(shape) && lead >= 0 &&
    shape.every((
      d,
    ) => (typeof d === "number" ? Number.isInteger(d) && d >= 0 : typeof d === "string")) &&
    x.shape.every((d, k) => d === 1 || d === shape[k + lead]);
  if (!ok) {
    throw new RangeError(
      `expand: cannot broadcast ${formatShape(x.shape)} to ${
        Array.isArray(shape) ? formatShape(shape) : JSON.stringify(shape)
      }`,
    );
  }
  return [...shape];
}

/** expand(x) → x broadcast to `shape` (each dim of x equal to the target's or 1). */
export const expand: OpDef<ExpandAttrs> = {
  arity: 1,
  attrNames: ["shape"],
  infer([x], a) {
    return [{ shape: inferExpand(x, a.shape), dtype: x.dtype }];
  },
  reference([x], _a, [out]) {
    const n = numel(out.shape);
    const res = allocHost(out.dtype, n);
    const mul = inputStrides(x.shape, out.shape);
    const strides = stridesOf(out.shape);
    for (let i = 0; i < n; i++) {
      let j = 0;
      for (let k = 0; k < strides.length; k++) {
        j += Math.floor(i / strides[k]) % out.shape[k] * mul[k];
      }
      res[i] = x.data[j];
    }
    return [res];
  },
  lower: {
    kind: "view",
    index(i, input, output) {
      const e = remapExpr(i, output, inputStrides(input, output));
      return e === "0u" ? e : `(${e})`;
    },
  },
};
