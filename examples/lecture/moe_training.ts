/**
 * What the MoE lecture experiments (3: MoE vs dense, 5: capacity factor)
 * share: how every model is trained (the same optimizer, schedule, clipping
 * and load-balancing loss, so runs differ only in the model), parameter
 * counts (total and active per token) and the load on the machine, which the
 * tables report beside every wall-clock figure.
 *
 * @module
 */

import type { TrainerOptions } from "../../app/train/trainer.ts";
import { countParams } from "../../compiler/params.ts";
import { parseConfig } from "../../models/architectures/mod.ts";
import { buildCausalLM } from "../../models/causal_lm.ts";

/** The settings every run of an experiment shares. */
export interface RunSettings {
  /** Sequences per update. */
  batch: number;
  /** Tokens per sequence. */
  seq: number;
  /** Updates. */
  steps: number;
  /** Seed of the initial weights. */
  seed: number;
  /** Peak learning rate. */
  peakLr: number;
}

/** The Switch Transformer's load-balancing coefficient (α = 0.01), per MoE layer. */
export const AUX_LOSS_COEF = 0.01;

/**
 * Trainer options for `config` under `s`: AdamW (β 0.9 / 0.95, weight decay
 * 0.1), linear warmup over the first 10% of updates then cosine to 10% of
 * the peak, gradient norm clipped at 1, the load-balancing loss on MoE layers
 * (a dense model's single expert makes it a constant: no gradient).
 */
export function trainerOptions(
  config: Record<string, unknown>,
  s: RunSettings,
  extra: Partial<TrainerOptions> = {},
): TrainerOptions {
  return {
    config,
    batch: s.batch,
    seq: s.seq,
    seed: s.seed,
    optimizer: { kind: "adamw", beta1: 0.9, beta2: 0.95, weightDecay: 0.1 },
    schedule: {
      peak: s.peakLr,
      warmup: Math.max(1, Math.round(s.steps / 10)),
      total: s.steps,
      decay: "cosine",
      minRatio: 0.1,
    },
    clipNorm: 1,
    logEvery: 1,
    auxLossCoef: AUX_LOSS_COEF,
    ...extra,
  };
}

/** Total parameters and those one token's forward pass uses (experts: k of E). */
export function paramCounts(config: Record<string, unknown>): { total: number; active: number } {
  const graph = buildCausalLM(parseConfig(config), { mode: "prefill", maxSeq: 1, maxNew: 1 });
  const c = countParams(graph);
  return { total: c.total, active: c.activePerToken };
}

/** A parameter count as text: `1.23M` or `456k`. */
export function formatCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : `${(n / 1e3).toFixed(0)}k`;
}

/** The 1-minute load average (Linux), for the record; NaN elsewhere. */
export function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/**
 * Held-out loss (nats) of a unigram model of the training tokens (counts +
 * ½) on the first `n` held-out targets — the level a language model reaches
 * when it has learnt token frequencies and nothing of context.
 */
export function unigramLoss(
  train: ArrayLike<number>,
  held: ArrayLike<number>,
  n: number,
  vocab: number,
): number {
  const c = new Float64Array(vocab).fill(0.5);
  for (let i = 0; i < train.length; i++) c[train[i]]++;
  const total = c.reduce((a, b) => a + b, 0);
  let loss = 0;
  for (let i = 1; i <= n; i++) loss -= Math.log(c[held[i]] / total);
  return loss / n;
}
