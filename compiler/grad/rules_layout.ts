/**
 * Gradient rules of the layout ops (reshape, transpose, slice, concat,
 * expand) and of `gather`, whose gradient scatters rows back (`scatter_add`).
 *
 * @module
 */

import { formatShape, normAxis } from "../../core/shape.ts";
import { filled, sumTo } from "./broadcast.ts";
import type { GradTable } from "./types.ts";

/** Rules of the layout ops. */
export const LAYOUT_RULES: GradTable = {
  reshape: ({ inputs: [x], grads: [gy] }) => [gy!.reshape(x.shape)],
  transpose: ({ grads: [gy], attrs }) => {
    const inv = new Array<number>(attrs.perm.length);
    attrs.perm.forEach((p, i) => (inv[p] = i));
    return [gy!.transpose(inv)];
  },
  // The slice's gradient, with zeros around it where the rest of the axis was.
  slice: ({ g, inputs: [x], grads: [gy], attrs }) => {
    const axis = normAxis(attrs.axis, x.shape.length, "slice");
    const d = x.shape[axis];
    if (typeof d !== "number") {
      throw new TypeError(
        `slice's gradient needs a fixed axis length, got ${formatShape(x.shape)} (axis ${axis})`,
      );
    }
    const parts = [];
    const zeros = (n: number) => {
      const shape = [...x.shape];
      shape[axis] = n;
      return filled(g, 0, shape, x.dtype);
    };
    if (attrs.start > 0) parts.push(zeros(attrs.start));
    parts.push(gy!);
    if (attrs.end < d) parts.push(zeros(d - attrs.end));
    return [parts.length === 1 ? gy! : g.concat(parts, axis)];
  },
  concat: ({ inputs, grads: [gy], attrs, needs }) => {
    const axis = normAxis(attrs.axis, gy!.shape.length, "concat");
    let at = 0;
    return inputs.map((x, i) => {
      const n = x.shape[axis];
      if (typeof n !== "number") {
        throw new TypeError(
          `concat's gradient needs fixed lengths along the axis, got ${formatShape(x.shape)}`,
        );
      }
      const part = needs[i] ? gy!.slice(axis, at, at + n) : undefined;
      at += n;
      return part;
    });
  },
  expand: ({ inputs: [x], grads: [gy] }) => [sumTo(gy!, x.shape)],
  // The point of the op: nothing flows back.
  stop_gradient: () => [undefined],
  // scatter_add's rows come back by gathering the gradient (out-of-range ids add
  // nothing forward and read zeros back).
  scatter_add: ({ inputs: [, ids], grads: [gy] }) => [gy!.gather(ids), undefined],
  gather: ({ inputs: [table, ids], grads: [gy] }) => {
    const rows = table.shape[0];
    if (typeof rows !== "number") {
      throw new TypeError(`gather's gradient needs a fixed table length, got ${rows}`);
    }
    return [table.builder.apply("scatter_add", [gy!, ids], { rows })[0], undefined];
  },
};
