/**
 * What MoE layers add to a training step beyond the cross-entropy: the router
 * losses (load balancing, z) and DeepSeek-V3's loss-free balancing of a
 * `sigmoid_bias` router's selection bias.
 *
 * @module
 */

import type { BalanceUpdate } from "../../compiler/train/step.ts";
import type { TrainableBuilder } from "../../compiler/train/trainable.ts";
import { crossEntropy } from "../../compiler/cross_entropy.ts";
import type { ModelConfig } from "../../models/config.ts";
import type { MoeOutputs } from "../../models/moe.ts";
import { frozenParams, type TrainingLMOptions } from "../../models/causal_lm_train.ts";
import { routerHasBias } from "../../ops/moe/mod.ts";

/**
 * The options {@linkcode lossHooks} reads (`TrainerOptions`' fields).
 *
 * @example
 * ```ts
 * import type { LossOptions } from "./moe_terms.ts";
 * const o: LossOptions = { auxLossCoef: 0.01, zLossCoef: 0.001 };
 * ```
 */
export interface LossOptions {
  /** MoE load-balancing loss coefficient per layer (default 0). */
  auxLossCoef?: number;
  /** MoE router z-loss coefficient per layer (default 0). */
  zLossCoef?: number;
  /** The LM head's cross-entropy fused. */
  fusedCrossEntropy?: boolean;
  /** Loss hooks replacing the above. */
  losses?: Pick<TrainingLMOptions, "headLoss" | "moeLoss">;
}

/**
 * The selection-bias updates `biasUpdateRate` asks for: one per MoE layer, in
 * layer order (the order `buildTrainingLM` lists the layers' outputs);
 * undefined at rate 0.
 *
 * @example
 * ```ts ignore
 * const balance = balanceUpdates(cfg, g, lm.moe, 0.001);
 * ```
 */
export function balanceUpdates(
  cfg: ModelConfig,
  g: TrainableBuilder,
  moes: readonly MoeOutputs[],
  rate: number,
): BalanceUpdate[] | undefined {
  if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0) {
    throw new RangeError(`Trainer: biasUpdateRate must be a finite number ≥ 0, got ${rate}`);
  }
  if (rate === 0) return undefined;
  if (!routerHasBias(cfg.moe?.router ?? "softmax_topk")) {
    throw new TypeError(
      `Trainer: biasUpdateRate balances a router's selection bias (GLM-4.5, DeepSeek-V3, ` +
        `ERNIE 4.5); ${cfg.architecture} has none`,
    );
  }
  const biases = [...frozenParams(cfg)];
  return moes.map((m, i) => ({ bias: g.trainables.get(biases[i])!, load: m.counts, rate }));
}

/**
 * The loss hooks a trainer's options ask for: the fused cross-entropy, and
 * the MoE layers' load-balancing and z losses at their coefficients.
 *
 * @example
 * ```ts
 * import { lossHooks } from "./moe_terms.ts";
 * lossHooks({ auxLossCoef: 0.01 }).moeLoss !== undefined; // true
 * ```
 */
export function lossHooks(o: LossOptions): Pick<TrainingLMOptions, "headLoss" | "moeLoss"> {
  const aux = o.auxLossCoef ?? 0, z = o.zLossCoef ?? 0;
  for (const [what, v] of [["auxLossCoef", aux], ["zLossCoef", z]] as const) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      throw new RangeError(`Trainer: ${what} must be a finite number ≥ 0, got ${v}`);
    }
  }
  const routerLoss = aux > 0 || z > 0
    ? (moes: readonly MoeOutputs[]) =>
      moes.map((m) => m.auxLoss.mul(aux).add(m.zLoss.mul(z))).reduce((a, b) => a.add(b))
    : undefined;
  return {
    headLoss: o.losses?.headLoss ?? (o.fusedCrossEntropy ? crossEntropy : undefined),
    moeLoss: o.losses?.moeLoss ?? routerLoss,
  };
}
