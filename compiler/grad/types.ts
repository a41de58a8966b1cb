/**
 * The contract of a gradient rule: given an op's operands, results and the
 * gradients flowing into its results, build (in the same graph) the gradients
 * of its operands.
 *
 * Rules live a floor above the ops (here, in the compiler) because they build
 * graphs with the tensor DSL; the table has the shape of the kernel target
 * tables (`ops/targets.ts`): one typed entry per op name.
 *
 * @module
 */

import type { OpAttrMap, OpName } from "../../ops/registry.ts";
import type { GraphBuilder } from "../builder.ts";
import type { Tensor } from "../tensor.ts";

/**
 * What a gradient rule gets.
 *
 * @example
 * ```ts ignore
 * const rule: GradRule<NoAttrs> = ({ inputs: [x], grads: [gy] }) => [gy!.mul(x.cos())];
 * ```
 */
export interface GradContext<A> {
  /** The graph being built. */
  readonly g: GraphBuilder;
  /** The node's attributes. */
  readonly attrs: A;
  /** The node's operands (forward values). */
  readonly inputs: readonly Tensor[];
  /** The node's results (forward values). */
  readonly outputs: readonly Tensor[];
  /** dL/d result, per result; undefined where no gradient flows into it. */
  readonly grads: readonly (Tensor | undefined)[];
  /** Per operand: whether its gradient is wanted (rules may skip the others). */
  readonly needs: readonly boolean[];
}

/**
 * A gradient rule: the gradient of each operand, same shape and dtype as the
 * operand, or undefined where none flows (integer operands, masks).
 *
 * @example
 * ```ts ignore
 * const expRule: GradRule<NoAttrs> = ({ outputs: [y], grads: [gy] }) => [gy!.mul(y)];
 * ```
 */
export type GradRule<A> = (ctx: GradContext<A>) => readonly (Tensor | undefined)[];

/**
 * The gradient rules by op: a missing entry makes differentiating through
 * that op an error naming it.
 *
 * @example
 * ```ts ignore
 * const table: GradTable = { exp: ({ outputs: [y], grads: [gy] }) => [gy!.mul(y)] };
 * ```
 */
export type GradTable = { readonly [K in OpName]?: GradRule<OpAttrMap[K]> };
