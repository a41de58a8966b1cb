/**
 * One training step as graph states and assigns: gradients of the loss with
 * respect to every trainable parameter, accumulated over micro-batches,
 * clipped by global norm, and applied by an optimizer at a learning rate the
 * schedule computes from the device's step counter. Every value a step needs
 * from the last (parameters, moments, counters, accumulators) is a state, so a
 * loop of `Executable.submit` calls trains without any readback; the loss
 * goes to a device log the host reads every N updates.
 *
 * @module
 */

import { atSite, callSite } from "../../core/errors.ts";
import { isFloat } from "../../core/dtype.ts";
import type { Tensor } from "../builder.ts";
import { clipByGlobalNorm, globalNorm } from "./clip.ts";
import { learningRate, type LrSchedule } from "./schedule.ts";
import type { TrainableBuilder } from "./trainable.ts";
import type { Optimizer } from "./types.ts";

/**
 * Names of the step's own states.
 *
 * @example
 * ```ts
 * import { TRAIN_STATES } from "@kiln/kiln";
 * TRAIN_STATES.losses; // "train.losses"
 * ```
 */
export const TRAIN_STATES = {
  /** u32 [1]: optimizer updates applied so far. */
  step: "train.step",
  /** u32 [1]: micro-batches into the current accumulation window (accumulate > 1). */
  micro: "train.micro",
  /** u32 [1]: whether the next micro-batch completes a window (accumulate > 1). */
  apply: "train.apply",
  /** f32 [1]: mean loss of the last update (over its micro-batches). */
  loss: "train.loss",
  /** f32 [1]: loss summed over the current window's micro-batches (accumulate > 1). */
  lossAcc: "train.loss_acc",
  /** f32 [logEvery]: the loss of update s at row s mod logEvery. */
  losses: "train.losses",
  /** f32 [1]: global gradient norm of the last update, before clipping. */
  gradNorm: "train.grad_norm",
  /** f32 [1]: learning rate of the last update. */
  lr: "train.lr",
} as const;

/**
 * Options of {@linkcode buildTrainStep}.
 *
 * @example
 * ```ts
 * import { adamw, type TrainStepOptions } from "@kiln/kiln";
 * const o: TrainStepOptions = {
 *   optimizer: adamw(), schedule: { peak: 1e-3, warmup: 10, total: 500 },
 *   clipNorm: 1, accumulate: 4, logEvery: 50,
 * };
 * ```
 */
export interface TrainStepOptions {
  /** The update rule (`sgd`, `adamw`). */
  optimizer: Optimizer;
  /** Learning rate by update. */
  schedule: LrSchedule;
  /** Clip the global gradient norm to this (default: no clipping). */
  clipNorm?: number;
  /** Micro-batches per update: gradients are averaged over them (default 1). */
  accumulate?: number;
  /** Rows of the device loss log `train.losses` (default 1). */
  logEvery?: number;
  /** Which parameters to train (default: every float trainable); the others stay as written. */
  params?: readonly string[];
  /**
   * Activation checkpointing: scopes whose forward is recomputed in the
   * backward instead of kept (see `GradOptions.checkpoint`; e.g. one segment per
   * layer).
   */
  checkpoint?: RegExp;
  /**
   * Auxiliary-loss-free load balancing (DeepSeek-V3): after each update every
   * `bias` (a state, not among `params`) moves by `rate · sign(mean(load) −
   * load)` — up for an under-loaded entry, down for an over-loaded one — with
   * `load` (`[n]`, e.g. a MoE layer's routed counts) summed over the update's
   * micro-batches.
   */
  balance?: readonly BalanceUpdate[];
}

/**
 * One sign-rule update of {@linkcode TrainStepOptions.balance}.
 *
 * @example
 * ```ts ignore
 * const b: BalanceUpdate = { bias: g.trainables.get("moe.bias")!, load: moeOut.counts, rate: 1e-3 };
 * ```
 */
export interface BalanceUpdate {
  /** The state moved (`[n]`, f32). */
  readonly bias: Tensor;
  /** What it balances (`[n]`, any numeric type: cast to f32). */
  readonly load: Tensor;
  /** Step size γ (> 0). */
  readonly rate: number;
}

/**
 * What {@linkcode buildTrainStep} made: the trained parameters and every
 * state a checkpoint must save to resume bit for bit.
 *
 * @example
 * ```ts ignore
 * const step = buildTrainStep(g, loss, options);
 * const saved = await exe.readStates([...step.optimizerStates, ...step.counterStates]);
 * ```
 */
export interface TrainStep {
  /** Trained parameter names (states), in declaration order. */
  readonly params: readonly string[];
  /** Optimizer moments and gradient accumulators. */
  readonly optimizerStates: readonly string[];
  /** The step's counters and logs (`TRAIN_STATES` present in this graph). */
  readonly counterStates: readonly string[];
  /** Micro-batches per update. */
  readonly accumulate: number;
  /** Rows of the loss log. */
  readonly logEvery: number;
}

function positiveInt(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`buildTrainStep: ${what} must be a positive integer, got ${v}`);
  }
  return v;
}

/**
 * Adds one training step for the scalar `loss` to `g`: every run consumes one
 * micro-batch; every `accumulate`-th run applies an update. Assigns the
 * parameters, the optimizer's states and `TRAIN_STATES`.
 *
 * @example
 * ```ts
 * import { buildTrainStep, sgd, TrainableBuilder } from "@kiln/kiln";
 * const g = new TrainableBuilder();
 * const w = g.param("w", [4]);
 * const x = g.input("x", [4]);
 * const loss = x.mul(w).sum(0).sub(1).pow(2); // (x·w − 1)²
 * buildTrainStep(g, loss, { optimizer: sgd({ momentum: 0.9 }), schedule: { peak: 0.1, decay: "constant" } });
 * const graph = g.build(); // run with exe.submit({ x }); read exe.readState("train.loss")
 * ```
 */
export function buildTrainStep(
  g: TrainableBuilder,
  loss: Tensor,
  options: TrainStepOptions,
): TrainStep {
  const site = callSite();
  const accumulate = positiveInt("accumulate", options.accumulate ?? 1);
  const logEvery = positiveInt("logEvery", options.logEvery ?? 1);
  const wanted = options.params ?? [...g.trainables].filter(([, t]) => isFloat(t.dtype))
    .map(([n]) => n);
  const params = wanted.map((name) => {
    const t = g.trainables.get(name);
    if (!t) throw atSite(new TypeError(`buildTrainStep: no parameter "${name}"`), site);
    if (!isFloat(t.dtype)) {
      throw atSite(new TypeError(`buildTrainStep: parameter "${name}" is ${t.dtype}`), site);
    }
    return { name, param: t };
  });
  if (params.length === 0) throw atSite(new RangeError("buildTrainStep: nothing to train"), site);
  for (const b of options.balance ?? []) {
    const bad = !(b.rate > 0 && Number.isFinite(b.rate))
      ? `rate ${b.rate} (finite, > 0)`
      : b.bias.shape.length !== 1 || b.load.shape.length !== 1 ||
          b.bias.shape[0] !== b.load.shape[0]
      ? `bias ${JSON.stringify(b.bias.shape)} and load ${
        JSON.stringify(b.load.shape)
      } (one [n] each)`
      : params.some((p) => p.param === b.bias)
      ? "a bias that is also trained"
      : undefined;
    if (bad) throw atSite(new RangeError(`buildTrainStep: balance with ${bad}`), site);
  }
  if (!loss.shape.every((d) => d === 1)) {
    throw atSite(new TypeError("buildTrainStep: loss must be a scalar"), site);
  }
  // Gradients, accumulators and the update are not forward activations
  // (`Node.backward`): `CompileOptions.activationDtype` keeps them at f32.
  return g.backwardPhase((): TrainStep => {
    const loss1 = loss.cast("f32").reshape([1]);
    let grads = g.grad(loss, params.map((p) => p.param), { checkpoint: options.checkpoint });

    const optimizerStates: string[] = [];
    const counters: string[] = [TRAIN_STATES.step];
    const step = g.state(TRAIN_STATES.step, [1], "u32");
    // Whether this run applies an update, and the window's mean loss.
    let apply: Tensor | undefined;
    let lossMean = loss1;
    if (accumulate > 1) {
      const micro = g.state(TRAIN_STATES.micro, [1], "u32");
      const lossAcc = g.state(TRAIN_STATES.lossAcc, [1]);
      counters.push(TRAIN_STATES.micro, TRAIN_STATES.apply, TRAIN_STATES.lossAcc);
      // The flag is a state the previous run computed (0 at the start: accumulate ≥ 2):
      // a leaf, not an elementwise chain of `micro` that fusion would fold into
      // every gated update (and, with the norm's reduction, into a dependency cycle).
      apply = g.state(TRAIN_STATES.apply, [1], "u32");
      const zero = (t: Tensor) => g.constant(0, [], t.dtype).where(apply!, t); // 0 on an update
      const next = zero(micro.add(1));
      g.assign(micro, next);
      g.assign(apply, next.add(1).equal(accumulate));
      const lossSum = lossAcc.add(loss1);
      g.assign(lossAcc, zero(lossSum));
      lossMean = lossSum.div(accumulate);
      grads = grads.map((d, i) => {
        const acc = g.state(`grad_acc.${params[i].name}`, d.shape, d.dtype);
        optimizerStates.push(`grad_acc.${params[i].name}`);
        const sum = acc.add(d);
        g.assign(acc, zero(sum));
        return sum.div(accumulate);
      });
    }
    // Only an applied update's values reach a state; others keep their value.
    const gated = (state: Tensor, value: Tensor) =>
      g.assign(state, apply ? value.where(apply, state) : value);

    const norm = globalNorm(grads);
    if (options.clipNorm !== undefined) grads = clipByGlobalNorm(grads, options.clipNorm).grads;
    const stepF = step.cast("f32");
    const lr = learningRate(g, stepF, options.schedule);
    const ctx = { g, lr, step: stepF.add(1) };
    for (const [i, p] of params.entries()) {
      const r = options.optimizer.update(ctx, { ...p, grad: grads[i] });
      gated(p.param, r.param);
      for (const s of r.states) gated(s.state, s.value);
    }
    for (const [name] of g.peek().states) {
      if (name.startsWith("optim.")) optimizerStates.push(name);
    }
    (options.balance ?? []).forEach((b, i) => {
      let load = b.load.cast("f32");
      if (apply) {
        const acc = g.state(`balance_acc.${i}`, load.shape, "f32");
        optimizerStates.push(`balance_acc.${i}`);
        load = acc.add(load);
        g.assign(acc, g.constant(0, [], "f32").where(apply, load));
      }
      const gap = load.mean(-1, true).sub(load);
      const sign = gap.greater(0).cast("f32").sub(gap.less(0).cast("f32"));
      gated(b.bias, b.bias.add(sign.mul(b.rate)));
    });

    gated(step, step.add(1));
    const stLoss = g.state(TRAIN_STATES.loss, [1]);
    const stNorm = g.state(TRAIN_STATES.gradNorm, [1]);
    const stLr = g.state(TRAIN_STATES.lr, [1]);
    const log = g.state(TRAIN_STATES.losses, [logEvery]);
    counters.push(TRAIN_STATES.loss, TRAIN_STATES.gradNorm, TRAIN_STATES.lr, TRAIN_STATES.losses);
    gated(stLoss, lossMean);
    gated(stNorm, norm);
    gated(stLr, lr);
    const row = step.sub(step.div(logEvery).mul(logEvery)); // step mod logEvery, in u32
    gated(log, log.writeRows(lossMean, row));
    return {
      params: params.map((p) => p.name),
      optimizerStates,
      counterStates: counters,
      accumulate,
      logEvery,
    };
  });
}
