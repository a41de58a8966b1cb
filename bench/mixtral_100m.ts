/**
 * The ~100M-parameter Mixtral-style model of issue 15's decode targets (d 512,
 * 4 layers, 8 experts of width 1536, top-2, vocab 32000: 93M parameters),
 * shared by `quant_model_bench.ts` and `decode_profile_bench.ts`.
 *
 * @module
 */

/**
 * Its config.json.
 *
 * @example
 * ```ts ignore
 * await writeRandomCheckpoint(dir, MIXTRAL_100M, { seed: 1 });
 * ```
 */
export const MIXTRAL_100M = {
  architectures: ["MixtralForCausalLM"],
  vocab_size: 32000,
  hidden_size: 512,
  intermediate_size: 1536,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 1e6,
  max_position_embeddings: 1024,
  tie_word_embeddings: false,
};
