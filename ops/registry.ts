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
import { matmul, type MatmulAttrs } from "./matmul/mod.ts";
import { softmax, type SoftmaxAttrs } from "./softmax.ts";
import { layernorm, type NormAttrs, rmsnorm } from "./norm.ts";
import * as l from "./layout.ts";
import { gather } from "./gather.ts";
import { qgather, qmatmul, type QuantAttrs } from "./quant/mod.ts";
import { cumsum, type CumsumAttrs } from "./cumsum.ts";
import { topk, type TopkAttrs } from "./topk.ts";
import { moe, type MoeAttrs } from "./moe/mod.ts";
import { moeGrad, type MoeGradAttrs } from "./moe/grad.ts";
import { writeRows } from "./write_rows.ts";
import { type ConvAttrs, directConv, fft, type FftAttrs, fftConv } from "./fft/mod.ts";
import { s4, type S4Attrs, s4Kernel, type S4KernelAttrs, s4State } from "./s4/mod.ts";
import {
  convGradInput,
  type ConvGradInputAttrs,
  convGradKernel,
  type ConvGradKernelAttrs,
} from "./fft/conv_grad.ts";
import { s4KernelGrad, type S4KernelGradAttrs } from "./s4/grad.ts";
import { s4StateGrad, type S4StateGradAttrs } from "./s4/state_grad.ts";
import {
  type Conv1dAttrs,
  conv1dCausal,
  conv1dStep,
  type Conv1dStepAttrs,
  convStateUpdate,
  type ScanAttrs,
  selectiveScan,
  ssmStep,
} from "./ssm/mod.ts";
import { selectiveScanGrad } from "./ssm/scan_grad.ts";
import type { ScanGradAttrs } from "./ssm/scan_grad_reference.ts";
import { conv1dCausalGrad } from "./ssm/conv_grad.ts";
import { gatedDelta, type GatedDeltaAttrs } from "./delta/gated_delta.ts";
import { sample, type SampleAttrs } from "./sample.ts";
import { rope, type RopeAttrs } from "./rope.ts";
import { attention, type AttentionAttrs } from "./attention.ts";
import { attentionDkv, attentionDq, attentionLse } from "./attention_grad.ts";
import { expand, type ExpandAttrs } from "./expand.ts";
import { scatterAdd, type ScatterAddAttrs } from "./scatter_add.ts";
import { lmHeadXent, type LmHeadXentAttrs, lmHeadXentGrad } from "./xent/mod.ts";

/**
 * Every op Kiln knows, with its attribute type.
 *
 * @example
 * ```ts
 * import type { OpAttrMap } from "@kiln/kiln";
 * const softmax: OpAttrMap["softmax"] = { axis: -1 };
 * const topk: OpAttrMap["topk"] = { k: 2 };
 * ```
 */
export interface OpAttrMap {
  /** Attributes of `neg`. */
  neg: u.NoAttrs;
  /** Attributes of `abs`. */
  abs: u.NoAttrs;
  /** Attributes of `exp`. */
  exp: u.NoAttrs;
  /** Attributes of `log`. */
  log: u.NoAttrs;
  /** Attributes of `sqrt`. */
  sqrt: u.NoAttrs;
  /** Attributes of `rsqrt`. */
  rsqrt: u.NoAttrs;
  /** Attributes of `tanh`. */
  tanh: u.NoAttrs;
  /** Attributes of `sigmoid`. */
  sigmoid: u.NoAttrs;
  /** Attributes of `silu`. */
  silu: u.NoAttrs;
  /** Attributes of `gelu`. */
  gelu: u.NoAttrs;
  /** Attributes of `gelu_erf`. */
  gelu_erf: u.NoAttrs;
  /** Attributes of `softplus`. */
  softplus: u.NoAttrs;
  /** Attributes of `relu`. */
  relu: u.NoAttrs;
  /** Attributes of `cast`. */
  cast: u.CastAttrs;
  /** Attributes of `add`. */
  add: u.NoAttrs;
  /** Attributes of `sub`. */
  sub: u.NoAttrs;
  /** Attributes of `mul`. */
  mul: u.NoAttrs;
  /** Attributes of `div`. */
  div: u.NoAttrs;
  /** Attributes of `pow`. */
  pow: u.NoAttrs;
  /** Attributes of `maximum`. */
  maximum: u.NoAttrs;
  /** Attributes of `minimum`. */
  minimum: u.NoAttrs;
  /** Attributes of `equal`. */
  equal: u.NoAttrs;
  /** Attributes of `not_equal`. */
  not_equal: u.NoAttrs;
  /** Attributes of `less`. */
  less: u.NoAttrs;
  /** Attributes of `less_equal`. */
  less_equal: u.NoAttrs;
  /** Attributes of `greater`. */
  greater: u.NoAttrs;
  /** Attributes of `greater_equal`. */
  greater_equal: u.NoAttrs;
  /** Attributes of `where`. */
  where: u.NoAttrs;
  /** Attributes of `sum`. */
  sum: r.ReduceAttrs;
  /** Attributes of `mean`. */
  mean: r.ReduceAttrs;
  /** Attributes of `max`. */
  max: r.ReduceAttrs;
  /** Attributes of `min`. */
  min: r.ReduceAttrs;
  /** Attributes of `argmax`. */
  argmax: r.ReduceAttrs;
  /** Attributes of `logsumexp`. */
  logsumexp: r.ReduceAttrs;
  /** Attributes of `matmul`. */
  matmul: MatmulAttrs;
  /** Attributes of `qmatmul` (a block-quantized weight's format and logical shape). */
  qmatmul: QuantAttrs;
  /** Attributes of `qgather`. */
  qgather: QuantAttrs;
  /** Attributes of `softmax`. */
  softmax: SoftmaxAttrs;
  /** Attributes of `rmsnorm`. */
  rmsnorm: NormAttrs;
  /** Attributes of `layernorm`. */
  layernorm: NormAttrs;
  /** Attributes of `reshape`. */
  reshape: l.ReshapeAttrs;
  /** `stop_gradient` has none. */
  stop_gradient: u.NoAttrs;
  /** Attributes of `transpose`. */
  transpose: l.TransposeAttrs;
  /** Attributes of `slice`. */
  slice: l.SliceAttrs;
  /** Attributes of `concat`. */
  concat: l.ConcatAttrs;
  /** Attributes of `gather`. */
  gather: u.NoAttrs;
  /** Attributes of `cumsum`. */
  cumsum: CumsumAttrs;
  /** Attributes of `topk`. */
  topk: TopkAttrs;
  /** Attributes of `moe`. */
  moe: MoeAttrs;
  /** Attributes of `moe_grad` (moe's backward). */
  moe_grad: MoeGradAttrs;
  /** Attributes of `write_rows`. */
  write_rows: u.NoAttrs;
  /** Attributes of `fft`. */
  fft: FftAttrs;
  /** Attributes of `fft_conv`. */
  fft_conv: ConvAttrs;
  /** Attributes of `direct_conv`. */
  direct_conv: ConvAttrs;
  /** Attributes of `s4_kernel`. */
  s4_kernel: S4KernelAttrs;
  /** Attributes of `s4`. */
  s4: S4Attrs;
  /** Attributes of `s4_state`. */
  s4_state: S4Attrs;
  /** Attributes of `s4_kernel_grad`. */
  s4_kernel_grad: S4KernelGradAttrs;
  /** Attributes of `s4_state_grad`. */
  s4_state_grad: S4StateGradAttrs;
  /** Attributes of `conv_grad_input`. */
  conv_grad_input: ConvGradInputAttrs;
  /** Attributes of `conv_grad_kernel`. */
  conv_grad_kernel: ConvGradKernelAttrs;
  /** Attributes of `conv1d_causal`. */
  conv1d_causal: Conv1dAttrs;
  /** Attributes of `conv_state_update`. */
  conv_state_update: u.NoAttrs;
  /** Attributes of `conv1d_step`. */
  conv1d_step: Conv1dStepAttrs;
  /** Attributes of `selective_scan`. */
  selective_scan: ScanAttrs;
  /** Attributes of `ssm_step`. */
  ssm_step: ScanAttrs;
  /** Attributes of `gated_delta` (Gated DeltaNet's recurrence). */
  gated_delta: GatedDeltaAttrs;
  /** Attributes of `selective_scan_grad` (the scan's backward). */
  selective_scan_grad: ScanGradAttrs;
  /** Attributes of `conv1d_causal_grad` (the conv's backward). */
  conv1d_causal_grad: Conv1dAttrs;
  /** Attributes of `sample`. */
  sample: SampleAttrs;
  /** Attributes of `rope`. */
  rope: RopeAttrs;
  /** Attributes of `attention`. */
  attention: AttentionAttrs;
  /** Attributes of `attention_lse` (attention's backward: each query row's log-sum-exp). */
  attention_lse: AttentionAttrs;
  /** Attributes of `attention_dq` (attention's backward: dQ per query block). */
  attention_dq: AttentionAttrs;
  /** Attributes of `attention_dkv` (attention's backward: dK, dV per key block). */
  attention_dkv: AttentionAttrs;
  /** Attributes of `expand`. */
  expand: ExpandAttrs;
  /** Attributes of `scatter_add`. */
  scatter_add: ScatterAddAttrs;
  /** Attributes of `lm_head_xent` (cross-entropy fused with the LM head). */
  lm_head_xent: LmHeadXentAttrs;
  /** Attributes of `lm_head_xent_grad` (its backward). */
  lm_head_xent_grad: LmHeadXentAttrs;
}

/**
 * Name of a registered op.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type OpName } from "@kiln/kiln";
 * const op: OpName = "silu";
 * const g = new GraphBuilder();
 * g.output("y", g.apply(op, [g.input("x", [4])], {})[0]);
 * ```
 */
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
  qmatmul,
  qgather,
  softmax,
  rmsnorm,
  layernorm,
  reshape: l.reshape,
  stop_gradient: l.stopGradient,
  transpose: l.transpose,
  slice: l.slice,
  concat: l.concat,
  gather,
  cumsum,
  topk,
  moe,
  moe_grad: moeGrad,
  write_rows: writeRows,
  fft,
  fft_conv: fftConv,
  direct_conv: directConv,
  s4_kernel: s4Kernel,
  s4,
  s4_state: s4State,
  s4_kernel_grad: s4KernelGrad,
  s4_state_grad: s4StateGrad,
  conv_grad_input: convGradInput,
  conv_grad_kernel: convGradKernel,
  conv1d_causal: conv1dCausal,
  conv_state_update: convStateUpdate,
  conv1d_step: conv1dStep,
  selective_scan: selectiveScan,
  ssm_step: ssmStep,
  selective_scan_grad: selectiveScanGrad,
  gated_delta: gatedDelta,
  conv1d_causal_grad: conv1dCausalGrad,
  sample,
  rope,
  attention,
  attention_lse: attentionLse,
  attention_dq: attentionDq,
  attention_dkv: attentionDkv,
  expand,
  scatter_add: scatterAdd,
  lm_head_xent: lmHeadXent,
  lm_head_xent_grad: lmHeadXentGrad,
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
