/**
 * Gradient rules of the elementwise ops: unary math, binary arithmetic with
 * broadcasting (each operand's gradient summed back to its shape), `where`
 * and `cast`. Comparisons have no gradient.
 *
 * @module
 */

import type { NoAttrs } from "../../ops/unary.ts";
import type { Tensor } from "../tensor.ts";
import { sumTo } from "./broadcast.ts";
import type { GradRule, GradTable } from "./types.ts";

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** A unary rule from dy/dx as a function of x and y. */
function unary(dydx: (x: Tensor, y: Tensor) => Tensor): GradRule<NoAttrs> {
  return ({ inputs: [x], outputs: [y], grads: [gy] }) => [gy!.mul(dydx(x, y))];
}

/** The gradient flowing through a comparison-free mask: gy where `keep`, else 0. */
function masked(gy: Tensor, keep: Tensor): Tensor {
  return gy.where(keep, 0);
}

const noGrad: GradRule<NoAttrs> = () => [];

/** Rules of the elementwise ops. */
export const ELEMENTWISE_RULES: GradTable = {
  neg: ({ grads: [gy] }) => [gy!.neg()],
  abs: ({ inputs: [x], grads: [gy] }) => [
    masked(gy!, x.greater(0)).sub(masked(gy!, x.less(0))),
  ],
  exp: unary((_x, y) => y),
  log: ({ inputs: [x], grads: [gy] }) => [gy!.div(x)],
  sqrt: ({ outputs: [y], grads: [gy] }) => [gy!.mul(0.5).div(y)],
  rsqrt: unary((_x, y) => y.mul(y).mul(y).mul(-0.5)),
  tanh: unary((_x, y) => y.mul(y).neg().add(1)),
  sigmoid: unary((_x, y) => y.mul(y.neg().add(1))),
  silu: unary((x) => {
    const s = x.sigmoid();
    return s.mul(x.mul(s.neg().add(1)).add(1));
  }),
  gelu: unary((x) => {
    const x2 = x.mul(x);
    const t = x.add(x2.mul(x).mul(0.044715)).mul(SQRT_2_OVER_PI).tanh();
    const du = x2.mul(3 * 0.044715).add(1).mul(SQRT_2_OVER_PI);
    return t.add(1).mul(0.5).add(x.mul(0.5).mul(t.mul(t).neg().add(1)).mul(du));
  }),
  // d/dx x·Φ(x) = Φ(x) + x·φ(x), with Φ(x) = y / x (½ at 0).
  gelu_erf: unary((x, y) => {
    const phi = y.div(x).where(x.notEqual(0), 0.5);
    return phi.add(x.mul(x.mul(x).mul(-0.5).exp()).mul(INV_SQRT_2PI));
  }),
  // softplus'(x) = sigmoid(x); past PyTorch's threshold of 20 it is linear (1).
  softplus: unary((x) => x.sigmoid().where(x.lessEqual(20), 1)),
  relu: ({ inputs: [x], grads: [gy] }) => [masked(gy!, x.greater(0))],
  cast: ({ inputs: [x], grads: [gy] }) => [gy!.cast(x.dtype)],
  add: ({ inputs: [a, b], grads: [gy], needs }) => [
    needs[0] ? sumTo(gy!, a.shape) : undefined,
    needs[1] ? sumTo(gy!, b.shape) : undefined,
  ],
  sub: ({ inputs: [a, b], grads: [gy], needs }) => [
    needs[0] ? sumTo(gy!, a.shape) : undefined,
    needs[1] ? sumTo(gy!.neg(), b.shape) : undefined,
  ],
  mul: ({ inputs: [a, b], grads: [gy], needs }) => [
    needs[0] ? sumTo(gy!.mul(b), a.shape) : undefined,
    needs[1] ? sumTo(gy!.mul(a), b.shape) : undefined,
  ],
  div: ({ inputs: [a, b], outputs: [y], grads: [gy], needs }) => [
    needs[0] ? sumTo(gy!.div(b), a.shape) : undefined,
    needs[1] ? sumTo(gy!.mul(y).div(b).neg(), b.shape) : undefined,
  ],
  // d/da a^b = b·a^(b−1) = b·y/a (a^(b−1) directly where a = 0); d/db = y·ln a (0 where a ≤ 0).
  pow: ({ inputs: [a, b], outputs: [y], grads: [gy], needs }) => [
    needs[0] ? sumTo(gy!.mul(b).mul(a.pow(b.sub(1))), a.shape) : undefined,
    needs[1] ? sumTo(masked(gy!.mul(y).mul(a.log()), a.greater(0)), b.shape) : undefined,
  ],
  // Ties split the gradient evenly, as PyTorch does.
  maximum: ({ inputs: [a, b], grads: [gy], needs }) => {
    const half = masked(gy!, a.equal(b)).mul(0.5);
    return [
      needs[0] ? sumTo(masked(gy!, a.greater(b)).add(half), a.shape) : undefined,
      needs[1] ? sumTo(masked(gy!, b.greater(a)).add(half), b.shape) : undefined,
    ];
  },
  minimum: ({ inputs: [a, b], grads: [gy], needs }) => {
    const half = masked(gy!, a.equal(b)).mul(0.5);
    return [
      needs[0] ? sumTo(masked(gy!, a.less(b)).add(half), a.shape) : undefined,
      needs[1] ? sumTo(masked(gy!, b.less(a)).add(half), b.shape) : undefined,
    ];
  },
  where: ({ inputs: [c, a, b], grads: [gy], needs }) => [
    undefined,
    needs[1] ? sumTo(masked(gy!, c), a.shape) : undefined,
    needs[2] ? sumTo(gy!.where(c.equal(0), 0), b.shape) : undefined,
  ],
  equal: noGrad,
  not_equal: noGrad,
  less: noGrad,
  less_equal: noGrad,
  greater: noGrad,
  greater_equal: noGrad,
};
