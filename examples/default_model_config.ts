/**
 * The default model's config.json and training settings (used by
 * `examples/train_default_model.ts`, which writes `assets/default_model/`).
 *
 * @module
 */

import type { TrainerOptions } from "../app/train/trainer.ts";
import type { MoeOutputs } from "../models/moe.ts";

/**
 * Jamba's layout, scaled down: 4 layers, attention on layer 2, Mamba on the
 * others, MoE (4 experts, top-2) on layers 1 and 3, SwiGLU MLPs on 0 and 2.
 */
export const DEFAULT_MODEL_CONFIG = {
  architectures: ["JambaForCausalLM"],
  model_type: "jamba",
  vocab_size: 2048,
  hidden_size: 128,
  intermediate_size: 256,
  num_hidden_layers: 4,
  attn_layer_period: 4,
  attn_layer_offset: 2,
  expert_layer_period: 2,
  expert_layer_offset: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 4,
  num_experts_per_tok: 2,
  mamba_d_state: 16,
  mamba_d_conv: 4,
  mamba_expand: 2,
  mamba_dt_rank: 8,
  mamba_conv_bias: true,
  mamba_proj_bias: false,
  rms_norm_eps: 1e-6,
  router_aux_loss_coef: 0.01,
  tie_word_embeddings: false,
  bos_token_id: 0,
  eos_token_id: 0,
  pad_token_id: 0,
} as const;

/**
 * Training settings, sized so the run takes about 23 minutes on lavapipe (2
 * shared cores, ~400 tokens/s; longer while other work loads them).
 */
export const DEFAULT_MODEL_TRAINING = {
  seed: 1,
  batch: 8,
  seq: 128,
  steps: 560,
  warmup: 20,
  peakLr: 3e-3,
  logEvery: 10,
  checkpointEvery: 60,
  heldOutFraction: 0.05,
} as const;

/**
 * The Trainer options of the default model's run for any config (so its
 * baselines train exactly the same way): AdamW (β 0.9/0.95, weight decay
 * 0.1), warmup then cosine to 10% over `total` updates, gradient norm
 * clipped at 1, and the load-balancing loss on MoE layers, if any.
 */
export function defaultTrainerOptions(
  config: Record<string, unknown>,
  total: number,
  tokenizerJson?: string,
): TrainerOptions {
  const H = DEFAULT_MODEL_TRAINING;
  const auxCoef = DEFAULT_MODEL_CONFIG.router_aux_loss_coef;
  return {
    config: { ...config },
    batch: H.batch,
    seq: H.seq,
    seed: H.seed,
    optimizer: { kind: "adamw", beta1: 0.9, beta2: 0.95, weightDecay: 0.1 },
    schedule: {
      peak: H.peakLr,
      warmup: Math.min(H.warmup, total),
      total,
      decay: "cosine",
      minRatio: 0.1,
    },
    clipNorm: 1,
    logEvery: H.logEvery,
    tokenizerJson,
    losses: {
      // Switch-style load balancing keeps every expert in use (a router left alone
      // tends to send most tokens to one or two experts early on).
      moeLoss: (layers: readonly MoeOutputs[]) =>
        layers.length === 0
          ? undefined
          : layers.map((l) => l.auxLoss).reduce((a, b) => a.add(b)).mul(auxCoef),
    },
  };
}
