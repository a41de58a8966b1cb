/**
 * The default model's config.json and training settings (used by
 * `examples/train_default_model.ts`, which writes `assets/default_model/`).
 *
 * @module
 */

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
