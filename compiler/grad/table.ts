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
