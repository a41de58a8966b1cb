/**
 * SGD with momentum and AdamW as graph-building update rules, with PyTorch's
 * semantics (`torch.optim.SGD`, `torch.optim.AdamW`): their moments are device
 * states, so an update is a few fused elementwise kernels per parameter and
 * nothing leaves the device.
 *
 * @module
 */

import type { ParamGrad, UpdateContext, UpdateResult } from "./types.ts";
import type { Optimizer } from "./types.ts";

/**
 * Settings of {@linkcode sgd} (PyTorch's `torch.optim.SGD` without `lr`, which
 * the schedule gives).
 *
 * @example
 * ```ts
 * import type { SgdOptions } from "@kiln/kiln";
 * const o: SgdOptions = { momentum: 0.9, nesterov: true };
 * ```
 */
export interface SgdOptions {
  /** Momentum factor (default 0: plain SGD, no state). */
  momentum?: number;
  /** Dampening of the momentum buffer's gradient term (default 0). */
  dampening?: number;
  /** L2 penalty added to the gradient (coupled, as SGD does; default 0). */
  weightDecay?: number;
  /** Nesterov momentum (default false). */
  nesterov?: boolean;
}

/**
 * Settings of {@linkcode adamw} (PyTorch's `torch.optim.AdamW` without `lr`).
 *
 * @example
 * ```ts
 * import type { AdamWOptions } from "@kiln/kiln";
 * const o: AdamWOptions = { beta2: 0.95, weightDecay: 0.1 };
 * ```
 */
export interface AdamWOptions {
  /** First-moment decay (default 0.9). */
  beta1?: number;
  /** Second-moment decay (default 0.999). */
  beta2?: number;
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay λ: p ← p·(1 − lr·λ) (default 0.01). */
  weightDecay?: number;
  /**
   * Which parameters decay (default: matrices, rank ≥ 2 — not norms, biases or
   * `D`, as Hugging Face's Trainer and nanoGPT group them).
   */
  decay?: (name: string, shape: readonly number[]) => boolean;
}

function checkRange(what: string, v: number, lo: number, hi: number): number {
  if (typeof v !== "number" || !(v >= lo && v <= hi)) {
    throw new RangeError(`${what} must be in [${lo}, ${hi}], got ${v}`);
  }
  return v;
}

/**
 * Stochastic gradient descent with optional momentum, dampening, Nesterov and
 * (coupled) weight decay, as `torch.optim.SGD`: `b ← μ·b + (1−τ)·g` (b = g on
 * the first update), `p ← p − lr·(g + μ·b or b)`. State: `optim.<p>.momentum_buffer`.
 *
 * @example
 * ```ts
 * import { sgd } from "@kiln/kiln";
 * const opt = sgd({ momentum: 0.9 });
 * opt.settings.momentum; // 0.9
 * ```
 */
export function sgd(options: SgdOptions = {}): Optimizer {
  const momentum = checkRange("sgd: momentum", options.momentum ?? 0, 0, 1);
  const dampening = checkRange("sgd: dampening", options.dampening ?? 0, 0, 1);
  const weightDecay = checkRange("sgd: weightDecay", options.weightDecay ?? 0, 0, Infinity);
  const nesterov = options.nesterov ?? false;
  if (nesterov && (momentum === 0 || dampening !== 0)) {
    throw new RangeError("sgd: Nesterov momentum needs momentum > 0 and dampening 0");
  }
  return {
    kind: "sgd",
    settings: { momentum, dampening, weightDecay, nesterov },
    update({ g, lr, step }: UpdateContext, { name, param, grad }: ParamGrad): UpdateResult {
      let d = weightDecay ? grad.add(param.mul(weightDecay)) : grad;
      if (momentum === 0) return { param: param.sub(d.mul(lr)), states: [] };
      const buf = g.state(`optim.${name}.momentum_buffer`, param.shape, param.dtype);
      // PyTorch starts the buffer at the first gradient itself, undamped.
      const next = d.where(step.equal(1), buf.mul(momentum).add(d.mul(1 - dampening)));
      d = nesterov ? d.add(next.mul(momentum)) : next;
      return { param: param.sub(d.mul(lr)), states: [{ state: buf, value: next }] };
    },
  };
}

/**
 * Adam with decoupled weight decay and bias correction, as
 * `torch.optim.AdamW`: `p ← p·(1 − lr·λ)`, `m ← β₁m + (1−β₁)g`,
 * `v ← β₂v + (1−β₂)g²`, `p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
 * States: `optim.<p>.exp_avg`, `optim.<p>.exp_avg_sq`.
 *
 * @example
 * ```ts
 * import { adamw } from "@kiln/kiln";
 * const opt = adamw({ beta2: 0.95, weightDecay: 0.1 });
 * opt.settings.beta2; // 0.95
 * ```
 */
export function adamw(options: AdamWOptions = {}): Optimizer {
  const beta1 = checkRange("adamw: beta1", options.beta1 ?? 0.9, 0, 0.999999);
  const beta2 = checkRange("adamw: beta2", options.beta2 ?? 0.999, 0, 0.999999);
  const eps = checkRange("adamw: eps", options.eps ?? 1e-8, 0, Infinity);
  const weightDecay = checkRange("adamw: weightDecay", options.weightDecay ?? 0.01, 0, Infinity);
  const decays = options.decay ?? ((_: string, shape: readonly number[]) => shape.length >= 2);
  return {
    kind: "adamw",
    settings: { beta1, beta2, eps, weightDecay },
    update({ g, lr, step }: UpdateContext, { name, param, grad }: ParamGrad): UpdateResult {
      const m = g.state(`optim.${name}.exp_avg`, param.shape, param.dtype);
      const v = g.state(`optim.${name}.exp_avg_sq`, param.shape, param.dtype);
      const decayed = weightDecay && decays(name, param.shape as number[])
        ? param.mul(lr.mul(-weightDecay).add(1))
        : param;
      const m2 = m.mul(beta1).add(grad.mul(1 - beta1));
      const v2 = v.mul(beta2).add(grad.mul(grad).mul(1 - beta2));
      const bc1 = g.constant(beta1).pow(step).neg().add(1); // 1 − β₁ᵗ
      const bc2 = g.constant(beta2).pow(step).neg().add(1);
      const denom = v2.sqrt().div(bc2.sqrt()).add(eps);
      const p2 = decayed.sub(m2.div(denom).mul(lr.div(bc1)));
      return { param: p2, states: [{ state: m, value: m2 }, { state: v, value: v2 }] };
    },
  };
}
