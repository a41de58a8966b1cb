/**
 * Random valid configs for the architectures Kiln loads from Hugging Face,
 * spanning the options transformers 5 honours (see `transformers_differential.ts`).
 * Sizes stay tiny (hidden ≤ 64, ≤ 4 layers, vocab ≤ 256) so that a case costs
 * seconds on a CPU WebGPU adapter.
 *
 * @module
 */

import { attention, common, Dice, moe, rope } from "./transformers_configs_parts.ts";
import {
  bamba,
  falconH1,
  falconMamba,
  graniteHybrid,
  jamba,
  lfm2,
  mamba,
  mamba2,
  nemotronH,
  qwen3_5,
  qwen3Next,
} from "./transformers_configs_ssm.ts";

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
  "DeepseekV3ForCausalLM",
  "DeepseekV2ForCausalLM",
  "GraniteMoeForCausalLM",
  "GraniteMoeSharedForCausalLM",
  "Ernie4_5_MoeForCausalLM",
  "Ernie4_5ForCausalLM",
  "FalconH1ForCausalLM",
  "Dots1ForCausalLM",
  "HunYuanMoEV1ForCausalLM",
  "MiniMaxM2ForCausalLM",
  "FlexOlmoForCausalLM",
  "Qwen3NextForCausalLM",
  "Qwen3_5MoeForCausalLM",
  "Qwen3_5ForCausalLM",
  "Lfm2ForCausalLM",
  "Lfm2MoeForCausalLM",
  "ExaoneMoeForCausalLM",
  "Glm4MoeLiteForCausalLM",
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

/**
 * The DeepSeek-style expert fields GLM-4.5 and DeepSeek-V3 share: experts in
 * groups (DeepSeek-V3's group-limited routing keeps topk_group of them; k fits
 * in the kept ones), shared experts, scaling, normalisation, dense first layers.
 */
function sigmoidExperts(d: Dice, layers: number): Record<string, unknown> {
  const groups = d.pick([1, 1, 2, 4]);
  const experts = groups * d.int(2, 4);
  const kept = d.chance(0.5) ? groups : d.int(1, groups);
  return {
    intermediate_size: d.int(2, 24) * 2,
    moe_intermediate_size: d.int(2, 12) * 2,
    n_routed_experts: experts,
    num_experts_per_tok: d.int(1, Math.min(kept * (experts / groups), 4)),
    // transformers builds the shared experts whatever their count (0 divides by zero).
    n_shared_experts: d.pick([1, 1, 2]),
    n_group: groups,
    topk_group: kept,
    // Non-integral: JSON writes 1.0 as 1, which the config classes refuse as not a float.
    routed_scaling_factor: d.pick([1.5, 2.5, 0.5]),
    norm_topk_prob: d.chance(0.7),
    first_k_dense_replace: d.int(0, layers),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

function deepseekV3(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const heads = d.pick([1, 2, 4]);
  const rp = rope(d);
  // llama3 and longrope read head_dim-sized factor lists and ranges; keep to the rest.
  if (rp.rope_type === "llama3" || rp.rope_type === "longrope") {
    for (const k of Object.keys(rp)) if (k !== "rope_theta") delete rp[k];
    rp.rope_type = "default";
  }
  return {
    ...base,
    hidden_size: d.pick([16, 24, 32, 48]),
    num_attention_heads: heads,
    num_key_value_heads: heads,
    q_lora_rank: d.chance(0.3) ? null : d.pick([8, 12, 16, 24]),
    kv_lora_rank: d.pick([4, 8, 12, 16]),
    qk_nope_head_dim: d.pick([2, 4, 6, 8]),
    qk_rope_head_dim: d.pick([2, 4, 8]),
    v_head_dim: d.pick([2, 4, 6, 10]),
    rope_interleave: d.chance(0.6),
    attention_bias: d.chance(0.3),
    rope_parameters: rp,
    max_position_embeddings: d.pick([64, 128, 512]),
    ...sigmoidExperts(d, layers),
    num_nextn_predict_layers: 0,
  };
}

/**
 * DeepSeek-V2: V3's latent attention (no `rope_interleave`: complex pairs
 * always) and experts with its softmax router, greedy or group-limited.
 */
function deepseekV2(d: Dice): Record<string, unknown> {
  const { rope_interleave: _, ...v3 } = deepseekV3(d);
  const limited = d.chance(0.5);
  const experts = v3.n_routed_experts as number, groups = v3.n_group as number;
  return {
    ...v3,
    // transformers checks hidden_size % num_attention_heads.
    hidden_size: (v3.num_attention_heads as number) * d.pick([4, 8, 12]),
    topk_method: limited ? "group_limited_greedy" : "greedy",
    ...(limited ? {} : { n_group: d.pick([null, groups]), topk_group: null }),
    routed_scaling_factor: d.pick([1.5, 2.5, 16.5]),
    n_routed_experts: experts,
  };
}

/**
 * Granite 3 MoE (and its shared-MLP variant): attention with RoPE in every
 * layer and routed experts, under the hybrids' μP multipliers.
 */
function graniteMoe(d: Dice, shared: boolean): Record<string, unknown> {
  const base = common(d);
  const att = attention(d, 0);
  const { experts, topk } = moe(d, 8);
  return {
    ...base,
    ...att,
    intermediate_size: d.int(2, 24) * 2,
    ...(shared ? { shared_intermediate_size: d.pick([0, 8, 24]) } : {}),
    num_local_experts: experts,
    num_experts_per_tok: topk,
    attention_bias: d.chance(0.3),
    embedding_multiplier: d.pick([1, 0.5, 2, 12]),
    residual_multiplier: d.pick([1, 0.22, 0.6]),
    attention_multiplier: d.pick([0.0078125, 0.1, 0.5, 1]),
    logits_scaling: d.pick([1, 2.5, 6, 16]),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

function glm4Moe(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const att = attention(d, 0.5);
  const rp = att.rope_parameters as Record<string, unknown>;
  // Absent, Glm4MoeConfig sets 0.5.
  if (d.chance(0.7)) rp.partial_rotary_factor = d.pick([0.25, 0.5, 0.5, 1]);
  return {
    ...base,
    ...att,
    ...sigmoidExperts(d, layers),
    attention_bias: d.chance(0.5),
    use_qk_norm: d.chance(0.5),
  };
}

/**
 * dots.llm1: Qwen3's attention (per-head QK-norm, biases on all four
 * projections or none) over DeepSeek-V3's experts; sliding layers from
 * `max_window_layers` on, or none.
 */
function dots1(d: Dice, promptLen: number): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const c: Record<string, unknown> = {
    ...base,
    ...attention(d, 0.5),
    ...sigmoidExperts(d, layers),
    attention_bias: d.chance(0.4),
    sliding_window: null,
  };
  if (d.chance(0.5)) {
    c.sliding_window = d.int(2, promptLen);
    c.max_window_layers = d.int(0, layers);
  }
  return c;
}

/**
 * Hunyuan-A13B: per-head QK-norm after RoPE, now and then the NTK-alpha base
 * (`dynamic` with `alpha`), biases on all four projections or none, softmax
 * top-k (an int, or a list of one value per layer) beside a shared MLP.
 */
function hunyuanMoe(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const { experts, topk } = moe(d, 8);
  const att = attention(d, 0.5);
  if (d.chance(0.4)) {
    const rp = att.rope_parameters as Record<string, unknown>;
    att.rope_parameters = {
      rope_type: "dynamic",
      rope_theta: rp.rope_theta,
      factor: 1.0,
      alpha: d.pick([2.5, 8.0, 1000.0]),
    };
  }
  // HunYuanMoEV1Attention reads config.head_dim as it is (None unless given), so
  // transformers builds no HunYuan without one.
  att.head_dim ??= (att.hidden_size as number) / (att.num_attention_heads as number);
  return {
    ...base,
    ...att,
    intermediate_size: d.int(2, 16) * 2,
    num_experts: experts,
    moe_topk: d.chance(0.5) ? topk : Array(layers).fill(topk),
    attention_bias: d.chance(0.4),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

/**
 * MiniMax-M2: attention with RMSNorms over the whole q and k projections (any
 * head_dim: they span heads · head_dim), RoPE over part of each head by the
 * hub's `rotary_dim` or by `partial_rotary_factor` (or the whole head), and
 * sigmoid + selection-bias experts, renormalised, in every layer; now and then
 * the hub config's fields that restate what the class does.
 */
function minimaxM2(d: Dice): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const att = attention(d, 0.5);
  // Absent, MiniMaxM2Config's head_dim is 128.
  const hd = (att.head_dim as number | undefined) ?? 128;
  const rp = att.rope_parameters as Record<string, unknown>;
  const partial = d.int(0, 2);
  // An odd rotary_dim too (int(head_dim · factor) frequencies, one value more rotated),
  // under plain or linear RoPE: transformers' other types fail on an odd one.
  const odd = ["default", "linear"].includes(rp.rope_type as string);
  const rotary = odd ? d.int(1, hd) : 2 * d.int(1, hd / 2);
  const { experts, topk } = moe(d, 8);
  return {
    ...base,
    ...att,
    ...(partial === 1 ? { rotary_dim: rotary } : {}),
    ...(partial === 2
      ? { rope_parameters: { ...rp, partial_rotary_factor: d.pick([0.25, 0.5, 1]) } }
      : {}),
    intermediate_size: d.int(2, 24) * 2,
    num_local_experts: experts,
    num_experts_per_tok: topk,
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
    ...(d.chance(0.4)
      ? {
        use_qk_norm: true,
        qk_norm_type: "per_layer",
        scoring_func: "sigmoid",
        use_routing_bias: true,
        shared_intermediate_size: 0,
        attn_type_list: Array(layers).fill(1),
        use_mtp: true,
        num_mtp_modules: 3,
        mtp_transformer_layers: 1,
      }
      : {}),
  };
}

/**
 * FlexOlmo: OLMo 2's post-norm layers (QK-norm over whole projections, biases or
 * none) over OLMoE's softmax top-k experts, renormalised or not.
 */
function flexOlmo(d: Dice): Record<string, unknown> {
  const { experts, topk } = moe(d, 8);
  return {
    ...common(d),
    ...attention(d, 0.3),
    intermediate_size: d.int(2, 16) * 2,
    num_experts: experts,
    num_experts_per_tok: topk,
    norm_topk_prob: d.chance(0.5),
    attention_bias: d.chance(0.4),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
}

/**
 * K-EXAONE: a window on the sliding layers (from `sliding_window_pattern` or
 * `layer_types`), the global layers without RoPE, per-head QK-norm, and
 * DeepSeek-style experts on the layers `mlp_layer_types` or
 * `first_k_dense_replace` leaves sparse.
 */
function exaoneMoe(d: Dice, promptLen: number): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const { n_routed_experts, n_shared_experts, ...experts } = sigmoidExperts(d, layers);
  const c: Record<string, unknown> = {
    ...base,
    ...attention(d, 0.5),
    ...experts,
    num_experts: n_routed_experts,
    num_shared_experts: n_shared_experts,
    sliding_window: d.int(2, promptLen),
  };
  if (d.chance(0.5)) {
    c.layer_types = Array.from(
      { length: layers },
      () => (d.chance(0.6) ? "sliding_attention" : "full_attention"),
    );
  } else c.sliding_window_pattern = d.int(1, 4);
  if (d.chance(0.4)) {
    c.mlp_layer_types = Array.from({ length: layers }, () => (d.chance(0.7) ? "sparse" : "dense"));
  }
  return c;
}

/**
 * GLM-4.7-Flash: DeepSeek-V3's random configs, the dense layers by
 * `mlp_layer_types` (or Glm4MoeLiteConfig's first-layer default, whatever
 * `first_k_dense_replace` says).
 */
function glm4MoeLite(d: Dice): Record<string, unknown> {
  const c = deepseekV3(d);
  const layers = c.num_hidden_layers as number;
  if (d.chance(0.6)) {
    c.mlp_layer_types = Array.from({ length: layers }, () => (d.chance(0.7) ? "sparse" : "dense"));
  }
  return c;
}

/**
 * ERNIE 4.5: RoPE on adjacent pairs, `use_bias` on every projection (and the
 * MoE class's LM head); MoE layers by start, end and interval, softmax plus a
 * selection bias (the checkpoint's `moe_statics`, drawn at random), shared
 * experts or none.
 */
function ernie(d: Dice, moeClass: boolean): Record<string, unknown> {
  const base = common(d);
  const layers = base.num_hidden_layers as number;
  const c: Record<string, unknown> = {
    ...base,
    ...attention(d, 0.3),
    intermediate_size: d.int(2, 24) * 2,
    use_bias: d.chance(0.4),
    rms_norm_eps: d.pick([1e-6, 1e-5, 1e-3]),
  };
  if (!moeClass) return c;
  const { experts, topk } = moe(d, 8);
  return {
    ...c,
    moe_num_experts: experts,
    moe_k: topk,
    moe_intermediate_size: d.int(2, 16) * 2,
    moe_num_shared_experts: d.pick([0, 1, 2]),
    moe_layer_start_index: d.int(0, layers - 1),
    moe_layer_end_index: d.chance(0.5) ? -1 : d.int(0, layers - 1),
    moe_layer_interval: d.pick([1, 1, 2]),
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

/** `hidden_act` values drawn: transformers' names Kiln implements, and relu6, which it refuses. */
const HIDDEN_ACTS = [
  "gelu",
  "gelu_new",
  "gelu_pytorch_tanh",
  "gelu_fast",
  "relu",
  "quick_gelu",
  "relu6",
];

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
      : arch === "DeepseekV3ForCausalLM"
      ? deepseekV3(d)
      : arch === "DeepseekV2ForCausalLM"
      ? deepseekV2(d)
      : arch === "GraniteMoeForCausalLM" || arch === "GraniteMoeSharedForCausalLM"
      ? graniteMoe(d, arch === "GraniteMoeSharedForCausalLM")
      : arch === "JambaForCausalLM"
      ? jamba(d)
      : arch === "Ernie4_5_MoeForCausalLM" || arch === "Ernie4_5ForCausalLM"
      ? ernie(d, arch === "Ernie4_5_MoeForCausalLM")
      : arch === "FalconH1ForCausalLM"
      ? falconH1(d)
      : arch === "Dots1ForCausalLM"
      ? dots1(d, prompt_len)
      : arch === "HunYuanMoEV1ForCausalLM"
      ? hunyuanMoe(d)
      : arch === "MiniMaxM2ForCausalLM"
      ? minimaxM2(d)
      : arch === "FlexOlmoForCausalLM"
      ? flexOlmo(d)
      : arch === "ExaoneMoeForCausalLM"
      ? exaoneMoe(d, prompt_len)
      : arch === "Glm4MoeLiteForCausalLM"
      ? glm4MoeLite(d)
      : arch === "Qwen3NextForCausalLM"
      ? qwen3Next(d)
      : arch === "Qwen3_5MoeForCausalLM" || arch === "Qwen3_5ForCausalLM"
      ? qwen3_5(d, arch === "Qwen3_5MoeForCausalLM")
      : arch === "Lfm2ForCausalLM" || arch === "Lfm2MoeForCausalLM"
      ? lfm2(d, arch === "Lfm2MoeForCausalLM")
      : mamba(d);
    // hidden_act (Nemotron-H: mamba_hidden_act) beside silu, now and then one
    // Kiln does not implement; GPT-OSS's experts ignore it.
    if (arch !== "GptOssForCausalLM" && d.chance(0.15)) {
      const key = arch === "NemotronHForCausalLM" ? "mamba_hidden_act" : "hidden_act";
      config[key] = d.pick(HIDDEN_ACTS);
    }
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
