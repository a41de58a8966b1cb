/**
 * The gradient rule of every differentiable op, gathered from the rule
 * families. An op missing here cannot be differentiated through; `grad`
 * names it when a path from a wanted tensor to the loss crosses it.
 *
 * @module
 */

import { ELEMENTWISE_RULES } from "./rules_elementwise.ts";
import { REDUCE_RULES } from "./rules_reduce.ts";
import { LAYOUT_RULES } from "./rules_layout.ts";
import { LINALG_RULES } from "./rules_linalg.ts";
import { S4_RULES } from "./rules_s4.ts";
import { ATTENTION_RULES } from "./rules_attention.ts";
import { SSM_RULES } from "./rules_ssm.ts";
import { XENT_RULES } from "./rules_xent.ts";
import { MOE_RULES } from "./rules_moe.ts";
import type { OpName } from "../../ops/registry.ts";
import type { GradTable } from "./types.ts";

/**
 * Gradient rules by op name.
 *
 * @example
 * ```ts ignore
 * import { GRAD_RULES } from "./table.ts";
 * "matmul" in GRAD_RULES; // true
 * ```
 */
export const GRAD_RULES: GradTable = {
  ...ELEMENTWISE_RULES,
  ...REDUCE_RULES,
  ...LAYOUT_RULES,
  ...LINALG_RULES,
  ...SSM_RULES,
  ...S4_RULES,
  ...ATTENTION_RULES,
  ...XENT_RULES,
  ...MOE_RULES,
};

/**
 * Why each op without a rule has none: `grad` quotes the reason when a path to
 * the loss crosses one, and a test holds every op to a rule or a reason here.
 *
 * @example
 * ```ts ignore
 * import { NO_GRADIENT } from "./table.ts";
 * NO_GRADIENT.sample; // "draws random tokens: no gradient exists"
 * ```
 */
export const NO_GRADIENT: { readonly [K in OpName]?: string } = {
  qmatmul: "block-quantized weights are frozen, and the activation gradient through them is not " +
    "written yet: train in f32 and quantize after",
  qgather: "block-quantized embeddings are frozen: train in f32 and quantize after",
  write_rows: "a decode-time cache write: train on whole sequences",
  conv_state_update: "a decode-time state shift: train on whole sequences",
  conv1d_step: "a decode-time step: train with conv1d_causal on whole sequences",
  ssm_step: "a decode-time step: train with selective_scan on whole sequences",
  sample: "draws random tokens: no gradient exists",
  gated_delta: "Gated DeltaNet's backward (a reverse chunked delta rule) is not written yet: " +
    "Qwen3-Next's linear-attention layers run for inference only",
  moe_grad: "a backward op: nothing differentiates a gradient twice",
  selective_scan_grad: "a backward op: nothing differentiates a gradient twice",
  conv1d_causal_grad: "a backward op: nothing differentiates a gradient twice",
  s4_kernel_grad: "a backward op: nothing differentiates a gradient twice",
  s4_state_grad: "a backward op: nothing differentiates a gradient twice",
  conv_grad_input: "a backward op: nothing differentiates a gradient twice",
  conv_grad_kernel: "a backward op: nothing differentiates a gradient twice",
  attention_lse: "a backward op: nothing differentiates a gradient twice",
  attention_dq: "a backward op: nothing differentiates a gradient twice",
  attention_dkv: "a backward op: nothing differentiates a gradient twice",
  lm_head_xent_grad: "a backward op: nothing differentiates a gradient twice",
};
