/**
 * The op table. `OpAttrMap` names every op and its attributes; `OPS` must hold a
 * complete `OpDef` (shape rule, CPU reference, lowering) for each, so adding an op
 * without all three fails to type-check.
 *
 * @module
 */

import type { OpAttrs, OpDef } from "./types.ts";
import * as u from "./unary.ts";
import * as b from "./binary.ts";
import * as r from "./reduce.ts";
import { matmul, type MatmulAttrs } from "./matmul.ts";
import { softmax, type SoftmaxAttrs } from "./softmax.ts";
import { layernorm, type NormAttrs, rmsnorm } from "./norm.ts";
import * as l from "./layout.ts";
import { gather } from "./gather.ts";
import { cumsum, type CumsumAttrs } from "./cumsum.ts";
import { topk, type TopkAttrs } from "./topk.ts";

type N = u.NoAttrs;

/** Every op Kiln knows, with its attribute type. */
export interface OpAttrMap {
  neg: N;
  abs: N;
  exp: N;
  log: N;
  sqrt: N;
  rsqrt: N;
  tanh: N;
  sigmoid: N;
  silu: N;
  gelu: N;
  gelu_erf: N;
  softplus: N;
  relu: N;
  cast: u.CastAttrs;
  add: N;
  sub: N;
  mul: N;
  div: N;
  pow: N;
  maximum: N;
  minimum: N;
  equal: N;
  not_equal: N;
  less: N;
  less_equal: N;
  greater: N;
  greater_equal: N;
  where: N;
  sum: r.ReduceAttrs;
  mean: r.ReduceAttrs;
  max: r.ReduceAttrs;
  min: r.ReduceAttrs;
  argmax: r.ReduceAttrs;
  logsumexp: r.ReduceAttrs;
  matmul: MatmulAttrs;
  softmax: SoftmaxAttrs;
  rmsnorm: NormAttrs;
  layernorm: NormAttrs;
  reshape: l.ReshapeAttrs;
  transpose: l.TransposeAttrs;
  slice: l.SliceAttrs;
  concat: l.ConcatAttrs;
  gather: N;
  cumsum: CumsumAttrs;
  topk: TopkAttrs;
}

/** Name of a registered op. */
export type OpName = keyof OpAttrMap;

/** The registry: one complete declaration per op. */
export const OPS: { readonly [K in OpName]: OpDef<OpAttrMap[K]> } = {
  neg: u.neg,
  abs: u.abs,
  exp: u.exp,
  log: u.log,
  sqrt: u.sqrt,
  rsqrt: u.rsqrt,
  tanh: u.tanh,
  sigmoid: u.sigmoidOp,
  silu: u.silu,
  gelu: u.geluTanh,
  gelu_erf: u.geluErf,
  softplus: u.softplus,
  relu: u.relu,
  cast: u.cast,
  add: b.add,
  sub: b.sub,
  mul: b.mul,
  div: b.div,
  pow: b.pow,
  maximum: b.maximum,
  minimum: b.minimum,
  equal: b.equal,
  not_equal: b.notEqual,
  less: b.less,
  less_equal: b.lessEqual,
  greater: b.greater,
  greater_equal: b.greaterEqual,
  where: b.where,
  sum: r.sum,
  mean: r.mean,
  max: r.max,
  min: r.min,
  argmax: r.argmax,
  logsumexp: r.logsumexp,
  matmul,
  softmax,
  rmsnorm,
  layernorm,
  reshape: l.reshape,
  transpose: l.transpose,
  slice: l.slice,
  concat: l.concat,
  gather,
  cumsum,
  topk,
};

/** Looks an op up by name; throws a TypeError naming unknown ops. */
export function opDef(name: string): OpDef<OpAttrs> {
  const def = (OPS as unknown as Record<string, OpDef<OpAttrs>>)[name];
  if (!def) throw new TypeError(`Unknown op "${name}"`);
  return def;
}

/** True when `name` is a registered op. */
export function isOp(name: string): name is OpName {
  return Object.hasOwn(OPS, name);
}
