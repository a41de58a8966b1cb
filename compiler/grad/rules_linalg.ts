/**
 * Gradient rules of matmul and the normalisations.
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import { expandTo, sumTo } from "./broadcast.ts";
import type { GradTable } from "./types.ts";

/** Rows of `t` flattened to `[rows, last]`, for a weight gradient summed over every row. */
function rows(t: Tensor): Tensor {
  return t.shape.length === 2 ? t : t.reshape([-1, t.shape[t.shape.length - 1]]);
}

/** Σ over every leading axis, leaving the last: a norm weight's gradient. */
function sumRows(t: Tensor): Tensor {
  return sumTo(t, [t.shape[t.shape.length - 1]]);
}

/** Rules of matmul and the norms. */
export const LINALG_RULES: GradTable = {
  // C = op(A)·op(B): d op(A) = gC·op(B)ᵀ, d op(B) = op(A)ᵀ·gC, stored back in
  // each operand's layout. A shared 2-D weight against batched rows takes the
  // rows flattened, so its gradient is one GEMM rather than a batch summed.
  matmul: ({ inputs: [a, b], grads: [gc], attrs, needs }) => {
    const { transA, transB } = attrs;
    const gy = gc!;
    let da: Tensor | undefined, db: Tensor | undefined;
    if (needs[0]) {
      da = transA
        ? b.matmul(gy, { transA: transB, transB: true })
        : gy.matmul(b, { transB: !transB });
      da = sumTo(da, a.shape);
    }
    if (needs[1]) {
      const flat = b.shape.length === 2 && a.shape.length > 2 && !transA;
      const [aa, gg] = flat ? [rows(a), rows(gy)] : [a, gy];
      db = transB
        ? gg.matmul(aa, { transA: true, transB: transA })
        : aa.matmul(gg, { transA: !transA });
      db = sumTo(db, b.shape);
    }
    return [da, db];
  },
  // y = w·x·r, r = 1/√(mean x² + ε): dx = r·(gw − n·mean(gw·n)), gw = gy·w, n = x·r.
  rmsnorm: ({ inputs: [x, w], grads: [gy], attrs, needs }) => {
    const r = x.mul(x).mean(-1, true).add(attrs.eps).rsqrt();
    const n = x.mul(r);
    const gw = gy!.mul(w);
    const dx = needs[0]
      ? gw.sub(n.mul(expandTo(gw.mul(n).mean(-1, true), n.shape))).mul(r)
      : undefined;
    return [dx, needs[1] ? sumRows(gy!.mul(n)) : undefined];
  },
  // n = (x − μ)·r: dx = r·(gn − mean(gn) − n·mean(gn·n)), gn = gy·w.
  layernorm: ({ inputs: [x, w], grads: [gy], attrs, needs }) => {
    const xc = x.sub(x.mean(-1, true));
    const r = xc.mul(xc).mean(-1, true).add(attrs.eps).rsqrt();
    const n = xc.mul(r);
    const gn = gy!.mul(w);
    const dx = needs[0]
      ? gn.sub(gn.mean(-1, true)).sub(n.mul(gn.mul(n).mean(-1, true))).mul(r)
      : undefined;
    return [
      dx,
      needs[1] ? sumRows(gy!.mul(n)) : undefined,
      needs[2] ? sumRows(gy!) : undefined,
    ];
  },
};
