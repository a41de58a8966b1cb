/**
 * Gradient rules of the Mamba path: the selective scan and the causal conv1d.
 * Each hands the whole backward to one op with its own kernels
 * (`selective_scan_grad`, a reverse chunked scan recomputing the states from
 * checkpoints; `conv1d_causal_grad`), which returns a gradient per operand.
 *
 * @module
 */

import { filled } from "./broadcast.ts";
import type { GradTable } from "./types.ts";

/** Rules of `selective_scan` and `conv1d_causal`. */
export const SSM_RULES: GradTable = {
  // dy may be absent when only the final state reaches the loss: zeros, a
  // broadcast view the grad kernel reads through its prologue.
  selective_scan: ({ g, attrs, inputs, grads: [gy, ghF], needs }) => {
    if (attrs.last === true) {
      throw new TypeError(
        "grad: selective_scan with a `last` input (padded inference chunks) has no gradient rule; " +
          "train on unpadded sequences",
      );
    }
    const u = inputs[0];
    const dy = gy ?? filled(g, 0, u.shape, u.dtype);
    const outs = g.apply(
      "selective_scan_grad",
      ghF ? [...inputs, dy, ghF] : [...inputs, dy],
      { ...attrs, finalGrad: ghF !== undefined },
    );
    return outs.map((d, j) => (needs[j] ? d : undefined));
  },
  conv1d_causal: ({ g, attrs, inputs, grads: [gy], needs }) => {
    const outs = g.apply("conv1d_causal_grad", [...inputs, gy!], attrs);
    return outs.map((d, j) => (needs[j] ? d : undefined));
  },
};
