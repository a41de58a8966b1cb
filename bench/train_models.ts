/**
 * The training benchmark models: a Mamba, a dense Transformer
 * (Mixtral with one expert, k = 1) and a MoE (E = 8, k = 2, each expert half
 * the dense width: the same active expert parameters), as config.json records.
 * `small` is ~1M parameters for a quick look on lavapipe; `20m` the ~20M ones.
 */

/** config.json records by model name, for a preset. */
export function trainModels(preset: "small" | "20m"): Record<string, Record<string, unknown>> {
  const big = preset === "20m";
  const [d, layers, vocab, ff] = big ? [384, 8, 8192, 1024] : [96, 2, 512, 256];
  const attn = { num_attention_heads: big ? 6 : 4, num_key_value_heads: 2 };
  return {
    mamba: {
      architectures: ["MambaForCausalLM"],
      vocab_size: vocab,
      hidden_size: big ? 512 : d,
      state_size: 16,
      num_hidden_layers: layers,
    },
    dense: {
      architectures: ["MixtralForCausalLM"],
      vocab_size: vocab,
      hidden_size: d,
      intermediate_size: ff,
      num_hidden_layers: layers,
      ...attn,
      num_local_experts: 1,
      num_experts_per_tok: 1,
    },
    moe: {
      architectures: ["MixtralForCausalLM"],
      vocab_size: vocab,
      hidden_size: d,
      intermediate_size: ff / 2,
      num_hidden_layers: layers,
      ...attn,
      num_local_experts: 8,
      num_experts_per_tok: 2,
    },
  };
}
