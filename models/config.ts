/**
 * Hugging Face `config.json` for the architectures Kiln runs, parsed and checked
 * into one normalised shape. Each architecture's own rules live in its spec
 * (`models/architectures/`); this module holds the shape they all produce.
 * Errors name the file and the field.
 *
 * @module
 */

import type { RopeSettings } from "./rope_scaling.ts";
import type { MoeRouterKind } from "../ops/moe/mod.ts";
import type { HiddenAct } from "./activation.ts";
import type { MambaConfig } from "./config_ssm.ts";

export type { GatedDeltaConfig, MambaConfig, MambaSsdConfig } from "./config_ssm.ts";

/**
 * Architectures Kiln can build from a config.
 *
 * @example
 * ```ts
 * import { type Architecture, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const arch: Architecture = cfg.architecture; // "MambaForCausalLM"
 * ```
 */
export type Architecture = typeof ARCHITECTURES[number];

/** The architectures, for messages; {@linkcode Architecture} is one of them. */
export const ARCHITECTURES = [
  "MixtralForCausalLM",
  "MambaForCausalLM",
  "JambaForCausalLM",
  "Qwen2MoeForCausalLM",
  "OlmoeForCausalLM",
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
  "Qwen3_5MoeForConditionalGeneration",
  "Qwen3_5ForConditionalGeneration",
  "Lfm2ForCausalLM",
  "Lfm2MoeForCausalLM",
  "ExaoneMoeForCausalLM",
  "Glm4MoeLiteForCausalLM",
] as const;

/**
 * Mixer of one layer.
 *
 * @example
 * ```ts
 * import { type MixerKind, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const mixers: MixerKind[] = cfg.pattern.map((l) => l.mixer); // ["mamba", "mamba"]
 * ```
 */
export type MixerKind = "attention" | "mamba" | "parallel" | "none";

/**
 * Whether a layer runs attention (`"attention"`, or `"parallel"`: Falcon-H1's
 * attention beside a Mamba-2 on the same input).
 *
 * @example
 * ```ts
 * import { hasAttention } from "@kiln/kiln";
 * hasAttention({ mixer: "parallel" }); // true
 * ```
 */
export function hasAttention(layer: { readonly mixer: MixerKind }): boolean {
  return layer.mixer === "attention" || layer.mixer === "parallel";
}

/**
 * Whether a layer runs a Mamba mixer (`"mamba"`, or `"parallel"`).
 *
 * @example
 * ```ts
 * import { hasMamba } from "@kiln/kiln";
 * hasMamba({ mixer: "attention" }); // false
 * ```
 */
export function hasMamba(layer: { readonly mixer: MixerKind }): boolean {
  return layer.mixer === "mamba" || layer.mixer === "parallel";
}
/**
 * Feed-forward of one layer.
 *
 * @example
 * ```ts
 * import { type FfnKind, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const ffns: FfnKind[] = cfg.pattern.map((l) => l.ffn); // ["none", "none"]
 * ```
 */
export type FfnKind = "moe" | "mlp" | "none";

/**
 * One layer of the model.
 *
 * @example
 * ```ts
 * import type { LayerSpec } from "@kiln/kiln";
 * const jambaAttention: LayerSpec = { mixer: "attention", ffn: "moe", window: 0 };
 * ```
 */
export interface LayerSpec {
  /** Token mixer. */
  readonly mixer: MixerKind;
  /** Channel mixer. */
  readonly ffn: FfnKind;
  /**
   * Attention layers: sliding window in tokens, 0 for full causal attention.
   * Absent: {@linkcode AttentionConfig.slidingWindow}.
   */
  readonly window?: number;
  /** Attention layers: no rotary embedding in this layer (EXAONE's global layers). */
  readonly nope?: boolean;
}

/**
 * Attention settings (Mixtral, Jamba, Qwen2-MoE, OLMoE).
 *
 * @example
 * ```ts
 * import type { AttentionConfig } from "@kiln/kiln";
 * const mixtral: AttentionConfig = {
 *   heads: 32,
 *   kvHeads: 8,
 *   headDim: 128,
 *   ropeTheta: 1e6,
 *   slidingWindow: 0,
 * };
 * ```
 */
export interface AttentionConfig {
  /** Query heads. */
  readonly heads: number;
  /** Key/value heads (grouped-query attention). */
  readonly kvHeads: number;
  /** Size of one head. */
  readonly headDim: number;
  /** RoPE base, or 0 for no rotary embedding (Jamba). */
  readonly ropeTheta: number;
  /** Sliding window length, or 0 for none (layers may override it: {@linkcode LayerSpec.window}). */
  readonly slidingWindow: number;
  /** RoPE variant and its parameters; absent means plain RoPE with `ropeTheta`. */
  readonly rope?: RopeSettings;
  /** q/k/v projections have biases (Qwen2-MoE `qkv_bias`, OLMoE `attention_bias`). */
  readonly qkvBias?: boolean;
  /** o_proj has a bias (OLMoE `attention_bias`). */
  readonly outBias?: boolean;
  /** RMSNorm over the whole q and k projections before RoPE (OLMoE `q_norm` / `k_norm`). */
  readonly qkNorm?: boolean;
  /** With `qkNorm`: each norm spans one head, weights `[headDim]` (Qwen3-MoE). */
  readonly qkNormPerHead?: boolean;
  /** With `qkNormPerHead`: the norms follow RoPE instead of preceding it (Hunyuan-A13B). */
  readonly qkNormAfterRope?: boolean;
  /** Clamp q, k and v to ±this after projection (OLMoE `clip_qkv`); 0 for none. */
  readonly clipQkv?: number;
  /**
   * q_proj yields each head's query and then its gate (`2·headDim` rows a head);
   * the attention output is multiplied by σ(gate) before o_proj (Qwen3-Next).
   */
  readonly outputGate?: boolean;
  /** Scale of q·k (Granite's `attention_multiplier`); absent: 1/√headDim. */
  readonly scale?: number;
  /** Factor on the keys after k_proj, before RoPE (Falcon-H1's `key_multiplier`). */
  readonly keyScale?: number;
  /** Partial RoPE (Bamba): each head's first `rotaryDim` values rotate; absent: all. */
  readonly rotaryDim?: number;
  /**
   * RoPE rotates adjacent pairs (x₀, x₁), (x₂, x₃), … of each head instead of
   * its two halves (ERNIE 4.5; llama.cpp's "normal" RoPE): whole heads only.
   */
  readonly ropeInterleave?: boolean;
  /**
   * An odd `int(head_dim · partial_rotary_factor)`: RoPE's frequencies are
   * θ^(−2i/ropeFreqDim), and `rotaryDim` is one more (transformers rotates the
   * values its cos and sin cover). Absent: `rotaryDim`.
   */
  readonly ropeFreqDim?: number;
  /**
   * A learned logit per query head joins every row's softmax and takes its share
   * of the probability without a value (GPT-OSS `self_attn.sinks` `[heads]`).
   */
  readonly sinks?: boolean;
  /**
   * Multi-head latent attention (DeepSeek-V3): keys and values come from one
   * shared latent per token; `headDim` is then the query/key head size
   * (`nopeDim + ropeDim`) and `kvHeads` equals `heads`.
   */
  readonly mla?: MlaConfig;
}

/**
 * DeepSeek-V3's multi-head latent attention (`DeepseekV3Attention`): queries
 * through a rank-`qLoraRank` bottleneck (`q_a_proj`, RMSNorm, `q_b_proj`; or
 * one `q_proj` without it), keys and values expanded per head (`kv_b_proj`)
 * from a rank-`kvLoraRank` latent (`kv_a_proj_with_mqa`, RMSNorm) beside one
 * rotary key of `ropeDim` values shared by all heads.
 *
 * @example
 * ```ts
 * import type { MlaConfig } from "@kiln/kiln";
 * const v3: MlaConfig = { qLoraRank: 1536, kvLoraRank: 512, nopeDim: 128, ropeDim: 64, vDim: 128, interleave: true };
 * ```
 */
export interface MlaConfig {
  /** Query bottleneck rank (`q_lora_rank`); 0: a plain `q_proj`. */
  readonly qLoraRank: number;
  /** Key/value latent rank (`kv_lora_rank`). */
  readonly kvLoraRank: number;
  /** Query/key values per head without RoPE (`qk_nope_head_dim`). */
  readonly nopeDim: number;
  /** Query/key values per head with RoPE (`qk_rope_head_dim`). */
  readonly ropeDim: number;
  /** Value size per head (`v_head_dim`). */
  readonly vDim: number;
  /** RoPE pairs adjacent values (`rope_interleave`), not the two halves. */
  readonly interleave: boolean;
}

/**
 * MoE settings (Mixtral, Jamba, Qwen2-MoE, OLMoE).
 *
 * @example
 * ```ts
 * import type { MoeConfig } from "@kiln/kiln";
 * const mixtral: MoeConfig = { experts: 8, topK: 2, normTopk: true };
 * ```
 */
export interface MoeConfig {
  /** Experts E. */
  readonly experts: number;
  /** Experts per token k. */
  readonly topK: number;
  /** Renormalise the top-k probabilities or affinities (Mixtral yes, Jamba no, Qwen2-MoE, OLMoE and GLM-4.5 by config). */
  readonly normTopk: boolean;
  /** How tokens are routed; absent: `"softmax_topk"` (softmax, then top-k). */
  readonly router?: MoeRouterKind;
  /** Hidden width of one expert; absent: {@linkcode ModelConfig.intermediate}. */
  readonly ff?: number;
  /** A shared expert beside the routed ones (Qwen2-MoE: sigmoid-gated; Granite: ungated). */
  readonly sharedExpert?: { readonly ff: number; readonly gated: boolean };
  /** `router_aux_loss_coef`: weight of the load-balancing loss in training. */
  readonly auxLossCoef?: number;
  /**
   * `sigmoid_bias` routers: factor on the renormalised weights (DeepSeek-V3's and
   * GLM-4.5's `routed_scaling_factor`); absent: 1.
   */
  readonly routedScaling?: number;
  /**
   * `sigmoid_bias` routers: group-limited routing (DeepSeek-V3's and GLM-4.5's
   * `n_group` / `topk_group`); absent: every group kept.
   */
  readonly groups?: { readonly count: number; readonly kept: number };
  /** The router's Linear has a bias (GPT-OSS `mlp.router.bias`). */
  readonly routerBias?: boolean;
  /** Each expert's gate, up and down projections have biases (GPT-OSS). */
  readonly expertBias?: boolean;
  /**
   * Nemotron 3's `moe_latent_size`: the experts run at this width between two
   * Linear layers (the model's width down to it, and back up); the router and
   * the shared expert see the layer's input. Absent: the model's width.
   */
  readonly latent?: number;
  /**
   * The experts' activation: absent, SwiGLU `silu(gate) ⊙ up` (or the gate of
   * `hiddenAct`); GPT-OSS's clamped form `(clamp(up, ±limit) + 1) ⊙
   * g·σ(alpha·g)`, g = min(gate, limit); Nemotron-H's ungated `relu(up)²`.
   */
  readonly activation?: {
    readonly kind: "swiglu_oai";
    readonly alpha: number;
    readonly limit: number;
  } | {
    /** Nemotron-H: ungated `down(relu(up·x)²)`; the up projection is `w1`, there is no `w3`. */
    readonly kind: "relu2";
  };
}

/**
 * A normalised model config.
 *
 * @example
 * ```ts
 * import { type ModelConfig, parseConfig } from "@kiln/kiln";
 * const cfg: ModelConfig = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * [cfg.hidden, cfg.layers, cfg.vocabSize]; // [32, 2, 64]
 * ```
 */
export interface ModelConfig {
  /** Which architecture. */
  readonly architecture: Architecture;
  /** Vocabulary size. */
  readonly vocabSize: number;
  /** Model width. */
  readonly hidden: number;
  /** Width of dense MLPs (and of experts unless {@linkcode MoeConfig.ff} says otherwise). */
  readonly intermediate: number;
  /** Number of layers. */
  readonly layers: number;
  /** RMSNorm epsilon. */
  readonly normEps: number;
  /** lm_head shares the embedding matrix. */
  readonly tieEmbeddings: boolean;
  /** Per layer: mixer and feed-forward kinds. */
  readonly pattern: readonly LayerSpec[];
  /** Attention settings, when any layer uses attention. */
  readonly attention?: AttentionConfig;
  /** Mamba settings, when any layer uses Mamba. */
  readonly mamba?: MambaConfig;
  /** MoE settings, when any layer uses MoE. */
  readonly moe?: MoeConfig;
  /** End-of-sequence token id(s) from the config, if given. */
  readonly eosTokenIds: readonly number[];
  /** Beginning-of-sequence token id, if given. */
  readonly bosTokenId?: number;
  /** `max_position_embeddings`, when the config gives it. */
  readonly maxPositions?: number;
  /**
   * The embedding row PyTorch's `padding_idx` names (`pad_token_id`, in the
   * families whose HF embedding takes it; none in Mamba's): its lookups send
   * no gradient back in training, and fresh weights zero it.
   */
  readonly paddingIdx?: number;
  /**
   * The dense MLP's form: absent, SwiGLU (`down(silu(gate·x) ⊙ up·x)`);
   * `"relu2"`, Nemotron-H's `down(relu(up·x)²)` without a gate.
   */
  readonly mlpActivation?: "relu2";
  /**
   * The dense MLPs and shared experts have biases on their gate, up and down
   * projections (ERNIE 4.5 `use_bias`; the routed experts never do).
   */
  readonly mlpBias?: boolean;
  /**
   * The layer norms follow each sublayer instead of preceding it (OLMo 2's
   * placement, FlexOlmo): `h + norm(mixer(h))`, then `h + norm(ffn(h))`, with
   * the layout's `mixerNorm` and `ffnNorm` weights.
   */
  readonly postNorm?: boolean;
  /**
   * The decoder's RMSNorm weights (each layer's two, the final norm's and the
   * attention's QK-norms) are stored as offsets from this value: Qwen3-Next's
   * norms compute `x̂·(1 + w)`. Absent: 0.
   */
  readonly normOffset?: number;
  /** The LM head has a bias `[vocab]` (ERNIE 4.5 `use_bias`; `lm_head.bias`, tied or not). */
  readonly lmHeadBias?: boolean;
  /**
   * HF `hidden_act` (Nemotron-H: `mamba_hidden_act`), when it is not silu:
   * the gate activation of the gated MLPs, the shared and routed experts
   * (unless {@linkcode MoeConfig.activation} says otherwise) and of the Mamba
   * and Mamba-2 mixers' causal conv (their output gates stay silu, as in
   * transformers).
   */
  readonly hiddenAct?: Exclude<HiddenAct, "silu">;
  /** Constant factors on the residual stream (Granite's μP multipliers); absent: all 1. */
  readonly scaling?: ModelScaling;
  /**
   * Layers a checkpoint holds past the last one the model runs, whose tensors are
   * not read (GLM-4.5's multi-token-prediction layers, `num_nextn_predict_layers`).
   */
  readonly extraLayers?: number;
  /**
   * How the checkpoint stores its linear weights when not in float
   * (`quantization_config`): they are dequantized as they load.
   */
  readonly quantization?: CheckpointQuantization;
}

/**
 * A quantized checkpoint's layout, as `quantization_config` describes it:
 *
 * - `fp8` (transformers' fine-grained FP8: DeepSeek-V3, Qwen3 "-FP8"): each
 *   weight `W` in E4M3 with `W_scale_inv` (for `X.weight`:
 *   `X.weight_scale_inv`), one factor per `block` of `[rows, cols]` (the grid
 *   rounded up at the edges) or one per tensor; the weight is `e4m3 · scale`.
 * - `compressed-tensors` (llm-compressor's checkpoints, "FP8-dynamic",
 *   "W8A8", "W4A16"): `float-quantized` / `int-quantized` / `naive-quantized`
 *   weights times `X.weight_scale` (per tensor, per output channel or per
 *   `block`); `pack-quantized`: `bits`-bit integers packed in int32
 *   (`X.weight_packed`, `X.weight_shape`), minus their zero point (or
 *   2^(bits−1)), times a scale per `groupSize` inputs.
 * - `gptq` (AutoGPTQ / GPTQModel): `X.qweight` `bits`-bit integers packed in
 *   int32 along the input, `X.qzeros`, `X.scales` per group, `X.g_idx` (the
 *   group of each input); `v2` zero points are stored as they are (v1: minus 1).
 * - `modelopt` (NVIDIA ModelOpt FP8): E4M3 weights times one `X.weight_scale`.
 *
 * @example
 * ```ts
 * import type { CheckpointQuantization } from "@kiln/kiln";
 * const deepseekV3: CheckpointQuantization = { method: "fp8", block: [128, 128], scaleFmt: "float" };
 * ```
 */
export type CheckpointQuantization =
  | {
    readonly method: "fp8";
    readonly block?: readonly [number, number];
    readonly scaleFmt: "float" | "ue8m0";
  }
  | {
    readonly method: "compressed-tensors";
    readonly format: "float-quantized" | "int-quantized" | "naive-quantized" | "pack-quantized";
    readonly bits: number;
    readonly block?: readonly [number, number];
    readonly groupSize?: number;
  }
  | {
    readonly method: "gptq";
    readonly bits: 2 | 4 | 8;
    readonly groupSize: number;
    readonly v2: boolean;
  }
  | { readonly method: "modelopt" };

/**
 * Granite's constant factors (HF names in comments): the embeddings are
 * multiplied by `embedding`, each mixer's and feed-forward's output by
 * `residual` before its residual add, and the logits divided by `logits`.
 *
 * @example
 * ```ts
 * import type { ModelScaling } from "@kiln/kiln";
 * const granite4Tiny: ModelScaling = { embedding: 12, residual: 0.22, logits: 6 };
 * ```
 */
export interface ModelScaling {
  /** `embedding_multiplier`. */
  readonly embedding: number;
  /** `residual_multiplier`. */
  readonly residual: number;
  /** `logits_scaling` (a divisor). */
  readonly logits: number;
  /** Falcon-H1's parallel layers: factor on attention's input (`attention_in_multiplier`). */
  readonly attentionIn?: number;
  /** Falcon-H1: factor on attention's output (`attention_out_multiplier`). */
  readonly attentionOut?: number;
  /** Falcon-H1: factor on the Mamba-2 mixer's output (`ssm_out_multiplier`). */
  readonly ssmOut?: number;
  /** Falcon-H1's `mlp_multipliers[0]`: factor on the MLPs' gate projection, before the activation. */
  readonly mlpGate?: number;
  /** Falcon-H1's `mlp_multipliers[1]`: factor on the MLPs' output. */
  readonly mlpDown?: number;
}

/**
 * Width of one routed expert.
 *
 * @example
 * ```ts
 * import { expertWidth, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["Qwen2MoeForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 1,
 *   num_attention_heads: 4, intermediate_size: 64, moe_intermediate_size: 16, num_experts: 4,
 *   num_experts_per_tok: 2, shared_expert_intermediate_size: 32,
 * });
 * expertWidth(cfg); // 16
 * ```
 */
export function expertWidth(cfg: ModelConfig): number {
  return cfg.moe?.ff ?? cfg.intermediate;
}

/**
 * Width of the routed experts' input and output: Nemotron 3's latent size
 * ({@linkcode MoeConfig.latent}), else the model's.
 *
 * @example
 * ```ts
 * import { expertInputWidth, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MixtralForCausalLM"], vocab_size: 64, hidden_size: 32, num_hidden_layers: 1,
 *   intermediate_size: 64, num_attention_heads: 4, num_local_experts: 4, num_experts_per_tok: 2,
 * });
 * expertInputWidth(cfg); // 32
 * ```
 */
export function expertInputWidth(cfg: ModelConfig): number {
  return cfg.moe?.latent ?? cfg.hidden;
}
