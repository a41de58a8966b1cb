/**
 * The contract between a training step and an optimizer: the step hands the
 * optimizer each parameter with its (accumulated, clipped) gradient and the
 * step's learning rate; the optimizer builds the new value and the new values
 * of its own states. The step decides when they are written (every
 * micro-batch, or only on the last of an accumulation window), so optimizers
 * never see accumulation.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../builder.ts";

/**
 * One parameter as the optimizer sees it.
 *
 * @example
 * ```ts ignore
 * const p: ParamGrad = { name: "w", param: w, grad: dw };
 * ```
 */
export interface ParamGrad {
  /** The parameter's (state) name. */
  readonly name: string;
  /** Its value at the start of the step (f32). */
  readonly param: Tensor;
  /** dLoss/dparam for this update, same shape. */
  readonly grad: Tensor;
}

/**
 * What every parameter's update shares.
 *
 * @example
 * ```ts ignore
 * const ctx: UpdateContext = { g, lr, step };
 * ```
 */
export interface UpdateContext {
  /** The graph being built. */
  readonly g: GraphBuilder;
  /** Learning rate of this update, f32 `[1]`. */
  readonly lr: Tensor;
  /** 1-based index of this update, f32 `[1]` (Adam's bias correction, SGD's first step). */
  readonly step: Tensor;
}

/**
 * A state and the value it takes when the update is applied.
 *
 * @example
 * ```ts ignore
 * const u: StateUpdate = { state: m, value: m.mul(0.9).add(grad.mul(0.1)) };
 * ```
 */
export interface StateUpdate {
  /** A state tensor of the graph. */
  readonly state: Tensor;
  /** Its new value (same shape and dtype). */
  readonly value: Tensor;
}

/**
 * What an optimizer builds for one parameter.
 *
 * @example
 * ```ts ignore
 * const r: UpdateResult = { param: w.sub(grad.mul(lr)), states: [] };
 * ```
 */
export interface UpdateResult {
  /** The parameter's new value. */
  readonly param: Tensor;
  /** The optimizer's own states and their new values. */
  readonly states: readonly StateUpdate[];
}

/**
 * An optimizer: a graph-building update rule with its settings. Its states are
 * named `optim.<param>.<slot>` (PyTorch's slot names: `exp_avg`,
 * `exp_avg_sq`, `momentum_buffer`), so a checkpoint can save them by name.
 *
 * @example
 * ```ts ignore
 * import { adamw } from "@kiln/kiln";
 * const opt: Optimizer = adamw({ weightDecay: 0.1 });
 * opt.kind; // "adamw"
 * ```
 */
export interface Optimizer {
  /** `"sgd"` or `"adamw"`. */
  readonly kind: string;
  /** Settings, as saved in a checkpoint's trainer state. */
  readonly settings: Readonly<Record<string, number | boolean>>;
  /** Builds one parameter's update. */
  update(ctx: UpdateContext, p: ParamGrad): UpdateResult;
}
