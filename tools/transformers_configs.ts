/**
 * Random valid configs for the architectures Kiln loads from Hugging Face,
 * spanning the options transformers 5 honours (see `transformers_differential.ts`).
 * Sizes stay tiny (hidden ≤ 64, ≤ 4 layers, vocab ≤ 256) so that a case costs
 * seconds on a CPU WebGPU adapter.
 *
 * @module
 */

import { mulberry32 } from "../core/random.ts";

/**
 * The architectures with a generator.
 *
 * @example
 * ```ts
 * for (const arch of ARCHITECTURES) console.log(arch);
 * ```
 */
export const ARCHITECTURES = [
  "MixtralForCausalLM",
  "Qwen2MoeForCausalLM",
  "OlmoeForCausalLM",
  "JambaForCausalLM",
  "MambaForCausalLM",
  "Qwen3MoeForCausalLM",
  "FalconMambaForCausalLM",
  "Mamba2ForCausalLM",
  "GraniteMoeHybridForCausalLM",
  "BambaForCausalLM",
  "NemotronHForCausalLM",
  "GptOssForCausalLM",
  "Glm4MoeForCausalLM",
] as const;

/**
 * One of {@link ARCHITECTURES}.
 *
 * @example
 * ```ts
 * const arch: Architecture = "MambaForCausalLM";
 * ```
 */
export type Architecture = typeof ARCHITECTURES[number];

/**
 * One differential case: the class, the config overrides passed to its config
 * class, the seed of the weights and prompt, and the prompt length.
 *
 * @example
 * ```ts
 * const c: Case = { name: "c0", arch: "MambaForCausalLM", config: { hidden_size: 16 }, seed: 1, prompt_len: 9 };
 * ```
 */
export interface Case {
  name: string;
  arch: Architecture;
  config: Record<string, unknown>;
  seed: number;
  prompt_len: number;
  /** config.json keys removed after saving, so that transformers derives them on load. */
  drop_saved?: string[];
}

/** A seeded source of random choices. */
class Dice {
  readonly #r: () => number;
  constructor(seed: number) {
    this.#r = mulberry32(seed);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.#r() < p;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#r() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#r() * xs.length)];
  }
}

const divisors = (n: number) =>
  Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);

/** RoPE parameters, as transformers 5 writes them (base inside `rope_parameters`). */
function rope(d: Dice): Record<string, unknown> {
  // Small bases make position matter within a 40-token prompt, so a wrong
  // frequency shows in the logits rather than hiding below the tolerance.
  const rope_theta = d.pick([50, 300, 1e4, 1e6]);
  const type = d.pick([
    "default",
    "default",
    "linear",
    "yarn",
    "yarn",
    "yarn",
    "llama3",
    "llama3",
    "dynamic",
    "longrope",
  ]);
  const p: Record<string, unknown> = { rope_type: type, rope_theta };
  if (type === "linear" || type === "dynamic") p.factor = d.pick([1.5, 2, 4, 8]);
  if (type === "yarn") {
    // Without a factor transformers derives it from the two context lengths.
    p.factor = d.chance(0.15) ? null : d.pick([2, 4, 8, 16, 40]);
    p.original_max_position_embeddings = d.pick([16, 32, 64, 256, 4096]);
    if (d.chance(0.4)) p.beta_fast = d.pick([4, 8, 16, 64]);
    if (d.chance(0.4)) p.beta_slow = d.pick([0.25, 0.5, 2]);
    const scale = d.int(0, 3);
    if (scale === 1) p.attention_factor = d.pick([0.5, 0.9, 1.3]);
    if (scale === 2) {
      Object.assign(p, { mscale: d.pick([0.707, 1]), mscale_all_dim: d.pick([0.707, 1, 0.5]) });
    }
    if (scale === 3) p.mscale = d.pick([0.707, 1]);
    if (d.chance(0.35)) p.truncate = d.chance(0.5);
  }
  if (type === "llama3") {
    p.factor = d.pick([2, 8, 32]);
    p.low_freq_factor = d.pick([1, 1.5]);
    p.high_freq_factor = d.pick([2, 4]);
    // Short original contexts put a 4–8 frequency RoPE's bands on both sides of
    // the smoothing window; 8192 (Llama 3's own) leaves all of them untouched.
    p.original_max_position_embeddings = d.pick([8, 16, 32, 64, 8192]);
  }
  if (type === "longrope") {
    p.original_max_position_embeddings = 32;
    p.short_factor = [1];
    p.long_factor = [1];
  }
  return p;
}

/** Heads, KV heads, head size, hidden size, RoPE and the norm ε of an attention model. */
function attention(d: Dice, explicitHeadDim: number): Record<string, unknown> {
  const heads = d.pick([1, 2, 4, 4, 6, 8]);
  const kv = d.pick(divisors(heads));
  const c: Record<string, unknown> = { num_attention_heads: heads, num_key_value_heads: kv };
  if (d.chance(explicitHeadDim)) {
    const hd = d.pick([4, 8, 12, 16, 24].filter((h) => h * heads <= 96));
    c.head_dim = hd;
    c.hidden_size = d.pick([16, 24, 32, 40, 48, 64]);
  } else {
    const hd = d.pick([4, 6, 8, 10, 12, 16].filter((h) => h * heads <= 64));
    c.hidden_size = hd * heads;
    // transformers' yarn and llama3 read `head_dim` with getattr and crash on a
    // null one, so checkpoints using them always state it.
    if (d.chance(0.5)) c.head_dim = hd;
  }
  c.rope_parameters = rope(d);
  const scaled = !["default", "linear"].includes(
    (c.rope_parameters as { rope_type: string }).rope_type,
  );
  if (scaled && c.head_dim === undefined) c.head_dim = (c.hidden_size as number) / heads;
  c.max_position_embeddings = d.pick([64, 128, 512, 4096]);
  return c;
}

/** Fields every architecture has. */
function common(d: Dice): Record<string, unknown> {
  const vocab = d.int(20, 256);
  const eos = d.int(0, vocab - 1);
  return {
    vocab_size: vocab,
    num_hidden_layers: d.int(1, 4),
    tie_word_embeddings: d.chance(0.3),
    eos_token_id: eos,
    bos_token_id: d.int(0, vocab - 1),
    pad_token_id: d.chance(0.5) ? null : eos,
  };
}

function moe(d: Dice, maxExperts: number): { experts: number; topk: number } {
  const experts = d.int(1, maxExperts);
  return { experts, topk: d.int(1, Math.min(experts, 4)) };
}

function mixtral(d: Dice, promptLen: number): Record<string, unknown> {
  const { experts, topk } = moe(d, 8);
  return {
    ...common(d),
    ...attention(d, 0.35),
    intermediate_size: d.int(4, 48) * 2,
    num_local_experts: experts,
    num_experts_per_tok: topk,
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
    // A window shorter than the prompt is what makes sliding matter. Not 1:
    // transformers' sliding cache keeps `[-window + 1:]` = `[-0:]` = every past
    // token then, so its generate() disagrees with its own full forward.
    sliding_window: d.chance(0.5) ? null : d.int(2, promptLen + 4),
    ...(d.chance(0.05) ? { hidden_act: d.pick(["gelu", "gelu_pytorch_tanh", "relu"]) } : {}),
  };
}

function gptOss(d: Dice, promptLen: number): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const { experts, topk } = moe(d, 8);
  const window = d.int(2, promptLen + 4);
  return {
    ...base,
    ...attention(d, 0.5),
    intermediate_size: d.int(2, 24) * 2,
    num_local_experts: experts,
    num_experts_per_tok: topk,
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
    sliding_window: window,
    // Absent: GptOssConfig slides the even layers.
    ...(d.chance(0.5)
      ? {
        layer_types: Array.from(
          { length: layers },
          () => (d.chance(0.5) ? "sliding_attention" : "full_attention"),
        ),
      }
      : {}),
    attention_bias: d.chance(0.8),
  };
}

function glm4Moe(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const att = attention(d, 0.5);
  const groups = d.pick([1, 1, 2]);
  const experts = groups * d.int(2, 4);
  const rp = att.rope_parameters as Record<string, unknown>;
  // Absent, Glm4MoeConfig sets 0.5.
  if (d.chance(0.7)) rp.partial_rotary_factor = d.pick([0.25, 0.5, 0.5, 1]);
  return {
    ...base,
    ...att,
    intermediate_size: d.int(2, 24) * 2,
    moe_intermediate_size: d.int(2, 12) * 2,
    n_routed_experts: experts,
    num_experts_per_tok: d.int(1, Math.min(experts, 4)),
    // transformers builds the shared experts whatever their count (0 divides by zero).
    n_shared_experts: d.pick([1, 1, 2]),
    n_group: groups,
    topk_group: d.chance(0.85) ? groups : 1,
    // Non-integral: JSON writes 1.0 as 1, which Glm4MoeConfig refuses as not a float.
    routed_scaling_factor: d.pick([1.5, 2.5, 0.5]),
    norm_topk_prob: d.chance(0.9),
    first_k_dense_replace: d.int(0, layers),
    attention_bias: d.chance(0.5),
    use_qk_norm: d.chance(0.5),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

function qwen2Moe(d: Dice, promptLen: number): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const { experts, topk } = moe(d, 8);
  const c: Record<string, unknown> = {
    ...base,
    ...attention(d, 0.15),
    intermediate_size: d.int(4, 48) * 2,
    moe_intermediate_size: d.int(4, 32) * 2,
    shared_expert_intermediate_size: d.int(4, 32) * 2,
    num_experts: experts,
    num_experts_per_tok: topk,
    norm_topk_prob: d.chance(0.5),
    decoder_sparse_step: d.int(1, 3),
    qkv_bias: d.chance(0.7),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
  };
  if (d.chance(0.4)) {
    c.mlp_only_layers = Array.from({ length: layers }, (_, i) => i).filter(() => d.chance(0.4));
  }
  if (d.chance(0.6)) {
    c.use_sliding_window = true;
    c.sliding_window = d.int(2, promptLen + 4);
    c.max_window_layers = d.int(0, layers + 1);
    if (d.chance(0.4)) {
      c.layer_types = Array.from(
        { length: layers },
        () => d.chance(0.5) ? "sliding_attention" : "full_attention",
      );
    }
  } else if (d.chance(0.3)) {
    // A window that is present but switched off must not be applied.
    c.use_sliding_window = false;
    c.sliding_window = d.int(1, promptLen);
  }
  return c;
}

function qwen3Moe(d: Dice, promptLen: number): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const { experts, topk } = moe(d, 8);
  const c: Record<string, unknown> = {
    ...base,
    // The QK-norm spans one head, so any head_dim builds.
    ...attention(d, 0.35),
    intermediate_size: d.int(4, 48) * 2,
    moe_intermediate_size: d.int(4, 32) * 2,
    num_experts: experts,
    num_experts_per_tok: topk,
    norm_topk_prob: d.chance(0.6),
    decoder_sparse_step: d.int(1, 3),
    attention_bias: d.chance(0.3),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
  };
  if (d.chance(0.3)) {
    c.mlp_only_layers = Array.from({ length: layers }, (_, i) => i).filter(() => d.chance(0.4));
  }
  if (d.chance(0.4)) {
    c.use_sliding_window = true;
    c.sliding_window = d.int(2, promptLen + 4);
  } else if (d.chance(0.3)) {
    // A window that is present but switched off must not be applied.
    c.use_sliding_window = false;
    c.sliding_window = d.int(1, promptLen);
  }
  if (d.chance(0.05)) c.hidden_act = d.pick(["gelu", "relu"]);
  return c;
}

function olmoe(d: Dice): Record<string, unknown> {
  const { experts, topk } = moe(d, 8);
  return {
    ...common(d),
    // OLMoE's q_norm spans hidden_size, so transformers crashes on a head_dim
    // with heads · head_dim ≠ hidden_size: only the implied one is written.
    ...attention(d, 0),
    intermediate_size: d.int(4, 48) * 2,
    num_experts: experts,
    num_experts_per_tok: topk,
    norm_topk_prob: d.chance(0.5),
    // Activations are O(1) with these weights: clips of 0.3–4 actually clip.
    clip_qkv: d.chance(0.5) ? d.pick([0.3, 0.7, 1.5, 3.5]) : null, // floats: transformers rejects an int
    attention_bias: d.chance(0.5),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
  };
}

function jamba(d: Dice): Record<string, unknown> {
  const heads = d.pick([1, 2, 4]);
  const { experts, topk } = moe(d, 6);
  const attnPeriod = d.int(1, 4), expertPeriod = d.int(1, 4);
  return {
    ...common(d),
    hidden_size: heads * d.pick([4, 8, 12, 16]),
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    intermediate_size: d.int(4, 48) * 2,
    num_experts: experts,
    num_experts_per_tok: topk,
    attn_layer_period: attnPeriod,
    attn_layer_offset: d.int(0, attnPeriod - 1),
    expert_layer_period: expertPeriod,
    expert_layer_offset: d.int(0, expertPeriod - 1),
    mamba_d_state: d.pick([2, 4, 8, 16]),
    mamba_d_conv: d.pick([2, 3, 4]),
    mamba_expand: d.pick([1, 2, 3]),
    mamba_dt_rank: d.chance(0.5) ? "auto" : d.int(1, 8),
    mamba_conv_bias: d.chance(0.6),
    mamba_proj_bias: d.chance(0.4),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
    use_mamba_kernels: false,
  };
}

function mamba(d: Dice): Record<string, unknown> {
  const c = common(d);
  return {
    ...c,
    hidden_size: d.int(2, 16) * 4,
    state_size: d.pick([1, 2, 4, 8, 16]),
    conv_kernel: d.pick([1, 2, 3, 4, 5]),
    expand: d.pick([1, 2, 3]),
    time_step_rank: d.chance(0.5) ? "auto" : d.int(1, 8),
    use_bias: d.chance(0.5),
    use_conv_bias: d.chance(0.6),
    layer_norm_epsilon: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
    residual_in_fp32: d.chance(0.5),
    tie_word_embeddings: d.chance(0.6),
    ...(d.chance(0.05) ? { hidden_act: d.pick(["gelu", "relu"]) } : {}),
  };
}

function falconMamba(d: Dice): Record<string, unknown> {
  return { ...mamba(d), mixer_rms_eps: d.pick([1e-6, 1e-5, 1e-3, 0.1]) };
}

function mamba2(d: Dice): Record<string, unknown> {
  const c = common(d);
  const hidden = d.int(2, 16) * 4, expand = d.pick([1, 2, 3]);
  const inner = hidden * expand;
  const headDim = d.pick([2, 4, 8].filter((p) => inner % p === 0));
  const heads = inner / headDim;
  return {
    ...c,
    hidden_size: hidden,
    expand,
    head_dim: headDim,
    num_heads: heads,
    n_groups: d.pick([1, 2, 3, 4].filter((g) => heads % g === 0)),
    state_size: d.pick([1, 2, 4, 8, 16]),
    conv_kernel: d.pick([1, 2, 3, 4, 5]),
    chunk_size: d.pick([4, 8, 16, 256]),
    use_bias: d.chance(0.5),
    use_conv_bias: d.chance(0.6),
    layer_norm_epsilon: d.pick([1e-6, 1e-5, 1e-3, 0.1]),
    residual_in_fp32: d.chance(0.5),
    tie_word_embeddings: d.chance(0.4),
    ...(d.chance(0.4)
      ? { time_step_limit: [d.pick([0.001, 0.01, 0.05]), d.pick([0.2, 1.5, 5.5])] }
      : {}),
    ...(d.chance(0.05) ? { hidden_act: d.pick(["gelu", "relu"]) } : {}),
  };
}

/** The `BambaMixer` fields (Bamba, Granite 4.0) of a model `hidden` wide. */
function bambaMixer(d: Dice, hidden: number): Record<string, unknown> {
  const expand = d.pick([1, 2]);
  const inner = hidden * expand;
  const mHeads = d.pick(divisors(inner).filter((h) => h <= 16 && inner / h <= 16));
  return {
    mamba_expand: expand,
    mamba_n_heads: mHeads,
    ...(d.chance(0.5) ? { mamba_d_head: inner / mHeads } : {}),
    mamba_n_groups: d.pick(divisors(mHeads).filter((g) => g <= 4)),
    mamba_d_state: d.pick([1, 2, 4, 8, 16]),
    mamba_d_conv: d.pick([2, 3, 4]),
    mamba_chunk_size: d.pick([4, 8, 256]),
    mamba_conv_bias: d.chance(0.6),
    mamba_proj_bias: d.chance(0.4),
    ...(d.chance(0.3)
      ? { time_step_limit: [d.pick([0.001, 0.01, 0.05]), d.pick([0.2, 1.5, 5.5])] }
      : {}),
  };
}

function graniteHybrid(d: Dice): Record<string, unknown> {
  const c = common(d);
  const heads = d.pick([1, 2, 4]);
  const hidden = heads * d.pick([4, 8, 12, 16]);
  const experts = d.pick([0, 0, 1, 3, 4, 6]);
  const names = d.chance(0.5) ? ["mamba", "attention"] : ["linear_attention", "full_attention"];
  const layers = c.num_hidden_layers as number;
  const ropeOn = d.chance(0.4);
  const rp = ropeOn ? rope(d) : undefined;
  const scaled = rp && !["default", "linear"].includes(rp.rope_type as string);
  return {
    ...c,
    hidden_size: hidden,
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    ...(scaled ? { head_dim: hidden / heads } : {}),
    layer_types: Array.from({ length: layers }, () => names[d.chance(0.6) ? 0 : 1]),
    intermediate_size: d.int(2, 24) * 2,
    shared_intermediate_size: d.int(2, 24) * 2,
    num_local_experts: experts,
    num_experts_per_tok: experts > 0 ? d.int(1, Math.min(experts, 3)) : 2,
    ...bambaMixer(d, hidden),
    attention_bias: d.chance(0.3),
    position_embedding_type: ropeOn ? "rope" : d.pick(["nope", null]),
    ...(rp ? { rope_parameters: rp, max_position_embeddings: d.pick([64, 512, 4096]) } : {}),
    embedding_multiplier: d.pick([1, 0.5, 2, 12]),
    residual_multiplier: d.pick([1, 0.22, 0.6]),
    attention_multiplier: d.pick([0.0078125, 0.1, 0.5, 1]),
    logits_scaling: d.pick([1, 2.5, 6, 16]),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

function bamba(d: Dice): Record<string, unknown> {
  const c = common(d);
  const heads = d.pick([1, 2, 4]);
  const headDim = d.pick([4, 8, 12, 16]);
  const hidden = heads * headDim;
  const layers = c.num_hidden_layers as number;
  const rp = rope(d);
  // A factor whose share of the head is even (transformers rotates int(d · factor)).
  const partial = d.pick([0.25, 0.5, 0.5, 1].filter((f) => (headDim * f) % 2 === 0));
  if (d.chance(0.7)) rp.partial_rotary_factor = partial;
  const scaled = !["default", "linear"].includes(rp.rope_type as string);
  return {
    ...c,
    hidden_size: hidden,
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    ...(scaled ? { head_dim: headDim } : {}),
    attn_layer_indices: Array.from({ length: layers }, (_, i) => i).filter(() => d.chance(0.4)),
    intermediate_size: d.int(2, 24) * 2,
    ...bambaMixer(d, hidden),
    attention_bias: d.chance(0.3),
    rope_parameters: rp,
    max_position_embeddings: d.pick([64, 512, 4096]),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

function nemotronH(d: Dice): Record<string, unknown> {
  const c = common(d);
  const heads = d.pick([1, 2, 4]);
  const mHeads = d.pick([2, 4, 6, 8]);
  const layers = d.int(1, 6);
  const kinds = ["linear_attention", "full_attention", "mlp"];
  const types = Array.from({ length: layers }, () => d.pick(kinds));
  const pattern = types.map((t) => (t === "linear_attention" ? "M" : t === "mlp" ? "-" : "*"));
  const { num_hidden_layers: _, ...rest } = c;
  return {
    ...rest,
    hidden_size: d.pick([8, 16, 24, 32]),
    // Either form: the list transformers 5 writes, or the pattern of earlier configs.
    ...(d.chance(0.5)
      ? { layers_block_type: types }
      : { hybrid_override_pattern: pattern.join("") }),
    num_attention_heads: heads,
    num_key_value_heads: d.pick(divisors(heads)),
    head_dim: d.pick([4, 8, 12]),
    intermediate_size: d.int(2, 24) * 2,
    mamba_num_heads: mHeads,
    mamba_head_dim: d.pick([2, 4, 8]),
    n_groups: d.pick(divisors(mHeads).filter((g) => g <= 4)),
    ssm_state_size: d.pick([1, 2, 4, 8, 16]),
    conv_kernel: d.pick([2, 3, 4]),
    chunk_size: d.pick([4, 8, 256]),
    use_conv_bias: d.chance(0.6),
    use_bias: d.chance(0.4),
    time_step_min: d.pick([0.001, 0.01, 0.3]),
    time_step_max: d.pick([0.5, 1.5]),
    layer_norm_epsilon: d.pick([1e-6, 1e-5, 1e-3]),
    use_mamba_kernels: false,
  };
}

/**
 * `n` random cases, round-robin over `archs`, reproducible from `seed`.
 *
 * @example
 * ```ts
 * const cases = randomCases(10, 1);
 * console.log(cases[0].arch, cases[0].config);
 * ```
 */
export function randomCases(
  n: number,
  seed: number,
  archs: readonly Architecture[] = ARCHITECTURES,
  promptLengths: readonly [number, number] = [4, 40],
): Case[] {
  const out: Case[] = [];
  for (let i = 0; i < n; i++) {
    const arch = archs[i % archs.length];
    const caseSeed = seed * 1000 + i;
    const d = new Dice(caseSeed);
    const prompt_len = d.int(promptLengths[0], promptLengths[1]);
    const config = arch === "MixtralForCausalLM"
      ? mixtral(d, prompt_len)
      : arch === "Qwen2MoeForCausalLM"
      ? qwen2Moe(d, prompt_len)
      : arch === "OlmoeForCausalLM"
      ? olmoe(d)
      : arch === "Qwen3MoeForCausalLM"
      ? qwen3Moe(d, prompt_len)
      : arch === "FalconMambaForCausalLM"
      ? falconMamba(d)
      : arch === "Mamba2ForCausalLM"
      ? mamba2(d)
      : arch === "GraniteMoeHybridForCausalLM"
      ? graniteHybrid(d)
      : arch === "BambaForCausalLM"
      ? bamba(d)
      : arch === "NemotronHForCausalLM"
      ? nemotronH(d)
      : arch === "GptOssForCausalLM"
      ? gptOss(d, prompt_len)
      : arch === "Glm4MoeForCausalLM"
      ? glm4Moe(d)
      : arch === "JambaForCausalLM"
      ? jamba(d)
      : mamba(d);
    // Configs from before transformers 5 have no layer_types: both sides must
    // derive the same sliding layers from use_sliding_window / max_window_layers.
    const drop = arch === "Qwen2MoeForCausalLM" && config.layer_types === undefined &&
      d.chance(0.5);
    out.push({
      ...(drop ? { drop_saved: ["layer_types"] } : {}),
      name: `c${seed}_${i}_${arch.replace("ForCausalLM", "").toLowerCase()}`,
      arch,
      config,
      seed: caseSeed,
      prompt_len,
    });
  }
  return out;
}

/**
 * The one-step simplifications of a case: each optional field dropped (back to
 * transformers' default) or RoPE made plain. A failure that survives a
 * simplification does not need the dropped field; one that vanishes names it.
 *
 * @example
 * ```ts
 * for (const v of simplifications(randomCases(1, 1)[0])) console.log(v.name);
 * ```
 */
export function simplifications(c: Case): { dropped: string; case: Case }[] {
  const keep = new Set([
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "use_mamba_kernels",
  ]);
  const out: { dropped: string; case: Case }[] = [];
  for (const key of Object.keys(c.config)) {
    if (keep.has(key)) continue;
    const config = { ...c.config };
    if (key === "rope_parameters") {
      config.rope_parameters = {
        rope_type: "default",
        rope_theta: (c.config.rope_parameters as { rope_theta: number }).rope_theta,
      };
    } else {
      delete config[key];
    }
    if (key === "head_dim") {
      config.hidden_size = (c.config.head_dim as number) * (c.config.num_attention_heads as number);
    }
    out.push({ dropped: key, case: { ...c, name: `${c.name}_no_${key}`, config } });
  }
  return out;
}
