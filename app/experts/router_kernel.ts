/**
 * Where a MoE layer's router runs in a plan: the point before which the
 * scheduler copies that layer's experts in, and after which expert parallelism
 * hands the layer's tokens to other devices.
 *
 * @module
 */

import type { Plan } from "../../compiler/plan.ts";
import type { MoeRole } from "../../ops/moe/mod.ts";

const ROUTER: MoeRole = "router";

/**
 * Index of the router kernel of MoE layer `prefix` in `plan`: the kernel of
 * the `moe` op named `prefix` whose role is `"router"` (planned kernels carry
 * their op, role and the op's name; nothing is inferred from bindings).
 *
 * @example
 * ```ts ignore
 * import { moeRouterKernel } from "./router_kernel.ts";
 * const at = moeRouterKernel(model.decode.lastPlan!, "model.layers.0.block_sparse_moe");
 * ```
 */
export function moeRouterKernel(plan: Plan, prefix: string): number {
  const at = plan.kernels.findIndex((k) =>
    k.op === "moe" && k.role === ROUTER && k.name === prefix
  );
  if (at < 0) throw new Error(`internal: no router kernel of MoE layer ${prefix} in the plan`);
  return at;
}
