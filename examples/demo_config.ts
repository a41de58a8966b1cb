/**
 * The demo's model: a small Jamba-style hybrid config.json (also used by the
 * benchmarks that measure the demo's model).
 *
 * @module
 */

/**
 * Jamba's layout at small scale: attention on every 4th layer (2 of 8), MoE
 * (8 experts, top-2) on every 2nd, Mamba and dense MLPs elsewhere. No EOS token:
 * with random weights greedy decoding could hit it and end a timed run early.
 */
export const DEMO_CONFIG = {
  architectures: ["JambaForCausalLM"],
  model_type: "jamba",
  vocab_size: 4096,
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 8,
  attn_layer_period: 4,
  attn_layer_offset: 2,
  expert_layer_period: 2,
  expert_layer_offset: 1,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  num_experts: 8,
  num_experts_per_tok: 2,
  mamba_d_state: 16,
  mamba_d_conv: 4,
  mamba_expand: 2,
  mamba_dt_rank: 16,
  mamba_conv_bias: true,
  mamba_proj_bias: false,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
} as const;
