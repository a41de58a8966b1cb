/**
 * Random valid configs for the architectures Kiln loads from Hugging Face,
 * spanning the options transformers 5 honours (see `transformers_differential.ts`).
 * Sizes stay tiny (hidden ≤ 64, ≤ 4 layers, vocab ≤ 256) so that a case costs
 * seconds on a CPU WebGPU adapter.
 *
 * @module
 */

import { attention, common, Dice, moe } from "./transformers_configs_parts.ts";
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
import {
  deepseekV2,
  deepseekV3,
  dots1,
  exaoneMoe,
  flexOlmo,
  glm4Moe,
  glm4MoeLite,
  graniteMoe,
  hunyuanMoe,
  minimaxM2,
} from "./transformers_configs_routed.ts";

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
