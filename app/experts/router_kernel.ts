/**
 * Where a MoE layer's router runs in a plan: the point before which the
 * scheduler copies that layer's experts in, and after which expert parallelism
 * hands the layer's tokens to other devices.
 *
 * @module
 */

import type { Plan } from "../../compiler/plan.ts";

/**
 * Index of the router kernel of MoE layer `prefix` in `plan`: the last kernel
 * binding the router weight before the first one binding the layer's slot
 * table (the router lookahead applies the same weight one layer earlier).
 *
 * @example
 * ```ts ignore
 * import { moeRouterKernel } from "./router_kernel.ts";
 * const at = moeRouterKernel(model.decode.lastPlan!, "model.layers.0.block_sparse_moe");
 * ```
 */
export function moeRouterKernel(plan: Plan, prefix: string): number {
  const binds = (name: string) => {
    const slot = plan.params.get(name)?.slot;
    return (k: Plan["kernels"][number]) =>
      slot !== undefined && k.bindings.some((b) => b.slot === slot);
  };
  const router = binds(`${prefix}.router`), table = binds(`${prefix}.slot_table`);
  const end = plan.kernels.findIndex(table);
  let at = -1;
  plan.kernels.forEach((k, i) => {
    if ((end < 0 || i < end) && router(k)) at = i;
  });
  if (at < 0) throw new Error(`internal: no router kernel of MoE layer ${prefix} in the plan`);
  return at;
}
