/**
 * An independent float64 CPU forward pass of Hugging Face `MixtralForCausalLM`,
 * `MambaForCausalLM`, `JambaForCausalLM`, `Qwen2MoeForCausalLM` and
 * `OlmoeForCausalLM`, written from the semantics of
 * transformers' modeling files only: it shares no code with Kiln's compiler, ops,
 * runtime or models (the safetensors reader is used to read tensors, nothing
 * else). It is the oracle the GPU path's logits are compared with, so it favours
 * plain loops that read like the PyTorch code over speed.
 *
 * Semantics followed (transformers `modeling_mixtral.py`, `modeling_mamba.py`,
 * `modeling_jamba.py`):
 * - RMSNorm: w · x / √(mean(x²) + eps) (HF does this in f32; here in f64).
 * - Mixtral attention: RoPE with the half-split `rotate_half` convention and
 *   inv_freq = θ^(−2i/d); grouped-query heads (query head h reads KV head
 *   ⌊h / (heads / kv_heads)⌋); scores scaled by 1/√head_dim; causal; with
 *   `sliding_window` W a query at i sees keys j with i − W < j ≤ i.
 * - Mixtral MoE: p = softmax(x·Wgᵀ); top-k of p; weights renormalised to sum 1;
 *   y = Σ w·W2(silu(W1x) ⊙ W3x).
 * - Mamba mixer = `MambaMixer.slow_forward`: in_proj → (x, z); causal depthwise
 *   conv1d (+bias) and silu; x_proj → dt | B | C; Δ = softplus(dt_proj(dt));
 *   A = −exp(A_log); hₜ = exp(ΔA) ⊙ hₜ₋₁ + Δ·B·x; yₜ = hₜ·Cₜ + D·x; y ⊙ silu(z);
 *   out_proj. Block: x + mixer(norm(x)); model: embeddings → blocks → norm_f →
 *   lm_head tied to the embeddings.
 * - Jamba: layer i is attention iff i % attn_layer_period == attn_layer_offset,
 *   else a Mamba mixer whose dt, B and C pass through RMSNorms (eps =
 *   rms_norm_eps) before dt_proj / the scan; its FFN is the sparse MoE iff
 *   i % expert_layer_period == expert_layer_offset and num_experts > 1, else a
 *   SwiGLU MLP; the router keeps the raw top-k softmax probabilities (no
 *   renormalisation); attention has no rotary embedding; each layer is
 *   h = x + mixer(input_layernorm(x)); out = h + ffn(pre_ff_layernorm(h)).
 * - Qwen2-MoE (`modeling_qwen2_moe.py`): Llama attention with q/k/v biases
 *   (`qkv_bias`, always on in transformers 4); layer i is sparse iff i is not in
 *   `mlp_only_layers` and (i + 1) % decoder_sparse_step == 0, else a SwiGLU MLP of
 *   `intermediate_size`; the router renormalises only with `norm_topk_prob`;
 *   experts have `moe_intermediate_size`; a shared SwiGLU expert
 *   (`shared_expert_intermediate_size`) scaled by σ(shared_expert_gate·x) is added;
 *   `layer_types` (or, without it, use_sliding_window and layers ≥
 *   max_window_layers) picks sliding-window layers.
 * - OLMoE (`modeling_olmoe.py`): Llama attention whose q and k projections pass
 *   through RMSNorms over their full width (`q_norm`, `k_norm`) before RoPE, then
 *   q, k, v are clamped to ±clip_qkv when set; biases on q/k/v/o with
 *   `attention_bias`; every layer's FFN is the sparse MoE (renormalised only
 *   with `norm_topk_prob`).
 * - Falcon-Mamba (`modeling_falcon_mamba.py`): Mamba whose mixer passes Δ, B
 *   and C through RMSNorms without weights (eps `mixer_rms_eps`) before dt_proj
 *   and the scan.
 * - Qwen3-MoE (`modeling_qwen3_moe.py`): Llama attention whose q and k pass,
 *   head by head, through RMSNorms over `head_dim` (`q_norm`, `k_norm`, weights
 *   `[head_dim]`) before RoPE; biases on q/k/v/o with `attention_bias`; layers
 *   sparse as Qwen2-MoE's but with no shared expert; with `use_sliding_window`
 *   every layer attends within `sliding_window`.
 * - Granite 4.0 hybrids (`modeling_granitemoehybrid.py`) and Bamba (`modeling_bamba.py`):
 *   see `granite_reference.ts`.
 * - RoPE scaling (`modeling_rope_utils.py`): see `rope_reference.ts`.
 *
 * @example
 * ```ts
 * import { referenceLogits } from "./hf_reference.ts";
 * const logits = await referenceLogits("path/to/tiny-mixtral");
 * const out = logits([1, 17, 42]); // Float64Array [3 · vocab]
 * ```
 *
 * @module
 */

import { type Qwen3NextFamily, qwen3NextKinds } from "./qwen3_next_reference.ts";
import { lfm2Kinds } from "./lfm2_reference.ts";
import { join } from "node:path";
import { Checkpoint } from "../../app/safetensors/mod.ts";
import { type ReferenceRope, referenceRope } from "./rope_reference.ts";
import { type Mamba2Dims, mamba2Mixer, type Mamba2Weights } from "./mamba2_reference.ts";
import { hfActivation } from "./activation_reference.ts";

/** A config.json document. */
export type HfConfig = Record<string, unknown>;

/** The architectures the reference implements. */
export type ReferenceArchitecture =
  | "MixtralForCausalLM"
  | "MambaForCausalLM"
  | "JambaForCausalLM"
  | "Qwen2MoeForCausalLM"
  | "OlmoeForCausalLM"
  | "Qwen3MoeForCausalLM"
  | "FalconMambaForCausalLM"
  | "Mamba2ForCausalLM"
  | "GraniteMoeHybridForCausalLM"
  | "BambaForCausalLM"
  | "NemotronHForCausalLM"
  | "GptOssForCausalLM"
  | "Glm4MoeForCausalLM"
  | "DeepseekV3ForCausalLM"
  | "DeepseekV2ForCausalLM"
  | "GraniteMoeForCausalLM"
  | "GraniteMoeSharedForCausalLM"
  | "Ernie4_5_MoeForCausalLM"
  | "Ernie4_5ForCausalLM"
  | "FalconH1ForCausalLM"
  | "Dots1ForCausalLM"
  | "HunYuanMoEV1ForCausalLM"
  | "MiniMaxM2ForCausalLM"
  | "FlexOlmoForCausalLM"
  | "ExaoneMoeForCausalLM"
  | "Glm4MoeLiteForCausalLM"
  | Qwen3NextFamily
  | "Lfm2ForCausalLM"
  | "Lfm2MoeForCausalLM";

const REFERENCE_ARCHITECTURES: readonly ReferenceArchitecture[] = [
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
  "ExaoneMoeForCausalLM",
  "Glm4MoeLiteForCausalLM",
  "Qwen3NextForCausalLM",
  "Qwen3_5MoeForCausalLM",
  "Qwen3_5ForCausalLM",
  "Qwen3_5MoeForConditionalGeneration",
  "Qwen3_5ForConditionalGeneration",
  "Lfm2ForCausalLM",
  "Lfm2MoeForCausalLM",
];

/** What one decoder layer does. */
export interface LayerKind {
  /** Token mixer (`"none"`: a Nemotron-H MLP block). */
  mixer: "attention" | "mamba" | "none";
  /** Channel mixer after it (`"none"` for Mamba, whose block is the mixer alone). */
  ffn: "moe" | "mlp" | "none";
  /** Attention layers with a sliding window: keys a query may see (Qwen2-MoE per layer). */
  window?: number;
}

/** A loaded reference model. */
export interface ReferenceModel {
  /** `architectures[0]` of config.json. */
  readonly architecture: ReferenceArchitecture;
  /** config.json as read. */
  readonly config: HfConfig;
  /** Per-layer structure, derived from the config alone. */
  readonly layers: readonly LayerKind[];
  /** Rows of the embedding / columns of the logits. */
  readonly vocabSize: number;
  /** Logits for every position, `[T, vocab]` row-major, in float64. */
  forward(tokenIds: readonly number[]): Float64Array;
}

// ---------------------------------------------------------------------------
// Config

export function field(config: HfConfig, key: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(
      `config.json: "${key}" must be a number, got ${JSON.stringify(config[key])}`,
    );
  }
  return v;
}

export function intField(config: HfConfig, key: string, fallback?: number): number {
  const v = field(config, key, fallback);
  if (!Number.isInteger(v) || v < 0) {
    throw new RangeError(`config.json: "${key}" must be a non-negative integer, got ${v}`);
  }
  return v;
}

function rankField(config: HfConfig, key: string, hidden: number): number {
  // "auto" is resolved by the config classes as ceil(hidden_size / 16).
  return config[key] === "auto" || config[key] === undefined
    ? Math.ceil(hidden / 16)
    : intField(config, key);
}

/**
 * The layer structure a config describes. For Jamba this is JambaConfig's
 * `layers_block_type` and `layers_num_experts`: attention iff
 * i % attn_layer_period == attn_layer_offset; MoE iff
 * i % expert_layer_period == expert_layer_offset and num_experts > 1.
 *
 * @example
 * ```ts
 * import { layerKinds } from "./hf_reference.ts";
 * layerKinds({ architectures: ["JambaForCausalLM"], num_hidden_layers: 2, attn_layer_period: 2,
 *   attn_layer_offset: 1, expert_layer_period: 2, expert_layer_offset: 0, num_experts: 4 });
 * // [{ mixer: "mamba", ffn: "moe" }, { mixer: "attention", ffn: "mlp" }]
 * ```
 */
export function layerKinds(config: HfConfig): LayerKind[] {
  const arch = architectureOf(config);
  if (arch === "NemotronHForCausalLM") {
    // NemotronHConfig.layers_block_type: one block kind a layer.
    const types = config.layers_block_type as string[];
    return types.map((t) =>
      t === "linear_attention"
        ? { mixer: "mamba", ffn: "none" }
        : t === "full_attention"
        ? { mixer: "attention", ffn: "none" }
        : t === "moe"
        ? { mixer: "none", ffn: "moe" }
        : { mixer: "none", ffn: "mlp" }
    );
  }
  if (arch.startsWith("Qwen3Next") || arch.startsWith("Qwen3_5")) return qwen3NextKinds(config);
  if (arch.startsWith("Lfm2")) return lfm2Kinds(config);
  const n = intField(config, "num_hidden_layers");
  if (arch === "Ernie4_5_MoeForCausalLM" || arch === "Ernie4_5ForCausalLM") {
    // Ernie4_5_MoeDecoderLayer: experts where (i + 1) % interval == 0 and start <= i <= end.
    const moe = arch === "Ernie4_5_MoeForCausalLM";
    const start = intField(config, "moe_layer_start_index", 1);
    const endRaw = (config.moe_layer_end_index ?? -1) as number;
    const end = endRaw === -1 ? n - 1 : endRaw;
    const every = intField(config, "moe_layer_interval", 1);
    return Array.from({ length: n }, (_, i) => ({
      mixer: "attention",
      ffn: moe && (i + 1) % every === 0 && i >= start && i <= end ? "moe" : "mlp",
    }));
  }
  const out: LayerKind[] = [];
  if (arch === "BambaForCausalLM") {
    // BambaConfig.layers_block_type: attention at attn_layer_indices, Mamba-2 elsewhere.
    const attn = (config.attn_layer_indices ?? []) as number[];
    return Array.from({ length: n }, (_, i) => ({
      mixer: attn.includes(i) ? "attention" : "mamba",
      ffn: "mlp",
    }));
  }
  if (
    arch === "Glm4MoeForCausalLM" || arch === "DeepseekV3ForCausalLM" ||
    arch === "DeepseekV2ForCausalLM"
  ) {
    // Glm4MoeDecoderLayer / DeepseekV3DecoderLayer: a dense MLP below
    // first_k_dense_replace, experts above.
    const dense = intField(
      config,
      "first_k_dense_replace",
      arch === "Glm4MoeForCausalLM" ? 1 : arch === "DeepseekV3ForCausalLM" ? 3 : 0,
    );
    return Array.from({ length: n }, (_, i) => ({
      mixer: "attention",
      ffn: i >= dense ? "moe" : "mlp",
    }));
  }
  if (arch === "Dots1ForCausalLM") {
    // Dots1DecoderLayer: DeepSeek-V3's dense-then-experts; each layer's window from the
    // layer_types transformers writes (sliding from max_window_layers on).
    const dense = intField(config, "first_k_dense_replace", 0);
    const types = (config.layer_types ?? Array(n).fill("full_attention")) as string[];
    return types.map((t, i) => ({
      mixer: "attention",
      ffn: i >= dense ? "moe" : "mlp",
      ...(t === "sliding_attention" ? { window: intField(config, "sliding_window") } : {}),
    }));
  }
  if (arch === "Glm4MoeLiteForCausalLM") {
    // Glm4MoeLiteDecoderLayer: experts where mlp_layer_types says "sparse".
    return (config.mlp_layer_types as string[]).map((t) => ({
      mixer: "attention",
      ffn: t === "sparse" ? "moe" : "mlp",
    }));
  }
  if (arch === "ExaoneMoeForCausalLM") {
    // ExaoneMoeDecoderLayer: experts where mlp_layer_types says "sparse"; a window on the
    // "sliding_attention" layers (the reference reads both lists as transformers wrote them).
    const mlp = config.mlp_layer_types as string[];
    const types = config.layer_types as string[];
    return types.map((t, i) => ({
      mixer: "attention",
      ffn: mlp[i] === "sparse" ? "moe" : "mlp",
      ...(t === "sliding_attention" ? { window: intField(config, "sliding_window") } : {}),
    }));
  }
  if (arch === "GptOssForCausalLM") {
    // GptOssConfig.__post_init__: without layer_types, even layers slide.
    const types = (config.layer_types ??
      Array.from(
        { length: n },
        (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention"),
      )) as string[];
    return types.map((t) => ({
      mixer: "attention",
      ffn: "moe",
      ...(t === "sliding_attention" ? { window: intField(config, "sliding_window", 128) } : {}),
    }));
  }
  if (
    arch === "GraniteMoeForCausalLM" || arch === "GraniteMoeSharedForCausalLM" ||
    arch === "HunYuanMoEV1ForCausalLM" || arch === "FlexOlmoForCausalLM"
  ) {
    return Array.from({ length: n }, () => ({ mixer: "attention", ffn: "moe" }));
  }
  if (arch === "GraniteMoeHybridForCausalLM") {
    // GraniteMoeHybridConfig: layer_types (default all Mamba), legacy names remapped;
    // every layer has the shared MLP, and routed experts when num_local_experts > 0.
    const types = (config.layer_types ?? Array(n).fill("mamba")) as string[];
    const moe = intField(config, "num_local_experts", 8) > 0;
    return types.map((t) => ({
      mixer: t === "mamba" || t === "linear_attention" ? "mamba" : "attention",
      ffn: moe ? "moe" : "mlp",
    }));
  }
  for (let i = 0; i < n; i++) {
    if (
      arch === "MixtralForCausalLM" || arch === "OlmoeForCausalLM" ||
      arch === "MiniMaxM2ForCausalLM"
    ) {
      out.push({ mixer: "attention", ffn: "moe" });
    } else if (
      arch === "MambaForCausalLM" || arch === "FalconMambaForCausalLM" ||
      arch === "Mamba2ForCausalLM"
    ) {
      out.push({ mixer: "mamba", ffn: "none" });
    } else if (arch === "Qwen2MoeForCausalLM" || arch === "Qwen3MoeForCausalLM") {
      const mlpOnly = (config.mlp_only_layers ?? []) as number[];
      const step = intField(config, "decoder_sparse_step", 1);
      const sparse = !mlpOnly.includes(i) && expertCount(config, arch) > 0 &&
        (i + 1) % step === 0;
      if (arch === "Qwen3MoeForCausalLM") {
        const kind: LayerKind = { mixer: "attention", ffn: sparse ? "moe" : "mlp" };
        if (config.use_sliding_window === true && config.sliding_window != null) {
          kind.window = intField(config, "sliding_window");
        }
        out.push(kind);
        continue;
      }
      const types = config.layer_types as string[] | undefined;
      // Without layer_types, transformers 5's Qwen2MoeConfig.__post_init__ slides
      // the even layers below max_window_layers.
      const derived = config.use_sliding_window === true && i % 2 === 0 &&
        i < intField(config, "max_window_layers", 28);
      const sliding = types ? types[i] === "sliding_attention" : derived;
      const kind: LayerKind = { mixer: "attention", ffn: sparse ? "moe" : "mlp" };
      if (sliding) kind.window = intField(config, "sliding_window", 4096);
      out.push(kind);
    } else {
      const attnPeriod = intField(config, "attn_layer_period", 8);
      const attnOffset = intField(config, "attn_layer_offset", 4);
      const expertPeriod = intField(config, "expert_layer_period", 2);
      const expertOffset = intField(config, "expert_layer_offset", 1);
      if (attnPeriod === 0 || expertPeriod === 0) {
        throw new RangeError(
          "config.json: attn_layer_period and expert_layer_period must be positive",
        );
      }
      const experts = i % expertPeriod === expertOffset ? intField(config, "num_experts", 16) : 1;
      out.push({
        mixer: i % attnPeriod === attnOffset ? "attention" : "mamba",
        ffn: experts > 1 ? "moe" : "mlp",
      });
    }
  }
  return out;
}

/** Routed experts of a config (the field and default its class reads). */
function expertCount(config: HfConfig, arch: ReferenceArchitecture): number {
  if (arch === "Qwen3MoeForCausalLM") {
    // Qwen3MoeConfig writes num_experts as num_local_experts (its attribute_map).
    return intField(config, config.num_experts == null ? "num_local_experts" : "num_experts", 128);
  }
  return intField(
    config,
    arch === "MixtralForCausalLM" || arch.startsWith("GraniteMoe") ||
      arch === "MiniMaxM2ForCausalLM"
      ? "num_local_experts"
      : "num_experts",
    {
      MixtralForCausalLM: 8,
      JambaForCausalLM: 16,
      Qwen2MoeForCausalLM: 60,
      OlmoeForCausalLM: 64,
      MambaForCausalLM: 0,
      FalconMambaForCausalLM: 0,
      Mamba2ForCausalLM: 0,
      GraniteMoeHybridForCausalLM: 8,
      GraniteMoeForCausalLM: 8,
      GraniteMoeSharedForCausalLM: 8,
      BambaForCausalLM: 0,
      NemotronHForCausalLM: 0,
      GptOssForCausalLM: 128,
      Glm4MoeForCausalLM: 128,
      DeepseekV3ForCausalLM: 256,
      DeepseekV2ForCausalLM: 64,
      Ernie4_5_MoeForCausalLM: 64,
      Ernie4_5ForCausalLM: 0,
      FalconH1ForCausalLM: 0,
      Dots1ForCausalLM: 0,
      HunYuanMoEV1ForCausalLM: 1,
      MiniMaxM2ForCausalLM: 256,
      FlexOlmoForCausalLM: 7,
      ExaoneMoeForCausalLM: 64,
      Glm4MoeLiteForCausalLM: 64,
      Qwen3NextForCausalLM: 512,
      Qwen3_5MoeForCausalLM: 256,
      Qwen3_5ForCausalLM: 0,
      Qwen3_5MoeForConditionalGeneration: 256,
      Qwen3_5ForConditionalGeneration: 0,
      Lfm2ForCausalLM: 0,
      Lfm2MoeForCausalLM: 32,
    }[arch],
  );
}

function architectureOf(config: HfConfig): ReferenceArchitecture {
  const archs = config.architectures;
  const arch = Array.isArray(archs) ? archs[0] : undefined;
  if (REFERENCE_ARCHITECTURES.includes(arch)) return arch;
  throw new TypeError(
    `config.json: architectures ${JSON.stringify(archs)} is not one the reference implements ` +
      `(${REFERENCE_ARCHITECTURES.join(", ")})`,
  );
}

// ---------------------------------------------------------------------------
// Numerics (all row-major float64)

/** silu(v) = v · σ(v). */
function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

/** torch.nn.functional.softplus with its default threshold: linear above 20. */
function softplus(v: number): number {
  return v > 20 ? v : Math.log1p(Math.exp(v));
}

/** y[t, o] = Σᵢ x[t, i] · W[o, i] (+ b[o]): nn.Linear with W stored [out, in]. */
export function linear(
  x: Float64Array,
  rows: number,
  inDim: number,
  w: Float64Array,
  outDim: number,
  bias?: Float64Array,
): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let t = 0; t < rows; t++) {
    const xo = t * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i] * w[wo + i];
      y[t * outDim + o] = s;
    }
  }
  return y;
}

/**
 * RMSNorm over the last axis of `x` [rows, dim]: w · x / √(mean(x²) + eps).
 *
 * @example
 * ```ts
 * import { rmsNorm } from "./hf_reference.ts";
 * rmsNorm(new Float64Array([3, 4]), 1, 2, new Float64Array([1, 1]), 0); // ≈ [0.8485, 1.1314]
 * ```
 */
export function rmsNorm(
  x: Float64Array,
  rows: number,
  dim: number,
  weight: Float64Array,
  eps: number,
): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let t = 0; t < rows; t++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[t * dim + i] ** 2;
    const r = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[t * dim + i] = weight[i] * (x[t * dim + i] * r);
  }
  return y;
}

function addInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

// ---------------------------------------------------------------------------
// Attention

/** Weights of one attention block ([out, in] projections). */
export interface AttentionWeights {
  /** q_proj.weight [heads·headDim, hidden]. */
  q: Float64Array;
  /** k_proj.weight [kvHeads·headDim, hidden]. */
  k: Float64Array;
  /** v_proj.weight [kvHeads·headDim, hidden]. */
  v: Float64Array;
  /** o_proj.weight [hidden, heads·headDim]. */
  o: Float64Array;
  /** Biases of q/k/v/o_proj, where the model has them. */
  qb?: Float64Array;
  /** k_proj.bias. */
  kb?: Float64Array;
  /** v_proj.bias. */
  vb?: Float64Array;
  /** o_proj.bias. */
  ob?: Float64Array;
  /** OLMoE: q_norm.weight [heads·headDim], over the whole projection. */
  qNorm?: Float64Array;
  /** OLMoE: k_norm.weight [kvHeads·headDim]. */
  kNorm?: Float64Array;
  /** GPT-OSS: sinks [heads], a logit per head in every softmax, without a value. */
  sinks?: Float64Array;
}

/** Shape and options of attention. */
export interface AttentionOptions {
  /** Model width. */
  hidden: number;
  /** Query heads. */
  heads: number;
  /** Key/value heads (divides `heads`). */
  kvHeads: number;
  /** Width of one head. */
  headDim: number;
  /** RoPE base θ, or `undefined` for no rotary embedding (Jamba). */
  ropeTheta?: number;
  /** Scaled RoPE (frequencies and factor on cos/sin); overrides `ropeTheta`'s frequencies. */
  rope?: ReferenceRope;
  /** Keys a query may see, itself included; `undefined` for unlimited. */
  slidingWindow?: number;
  /** Epsilon of the q/k RMSNorms (with `qNorm` / `kNorm` weights). */
  qkNormEps?: number;
  /** The q/k RMSNorms span one head (`[headDim]` weights, Qwen3-MoE). */
  qkNormPerHead?: boolean;
  /** Clamp q, k, v to ±clip after projection (and norm). */
  clip?: number;
  /** Scale of q·k (Granite's attention_multiplier); default 1/√headDim. */
  scale?: number;
  /** Partial RoPE (Bamba): only each head's first `rotaryDim` values rotate. */
  rotaryDim?: number;
  /**
   * ERNIE 4.5's RoPE: cos and sin repeat_interleave'd, rotate_half on adjacent
   * pairs ([−x₁, x₀, −x₃, x₂, …]), so pair (2i, 2i+1) turns by frequency i.
   */
  interleave?: boolean;
  /** Falcon-H1's `key_multiplier`: keys scaled after k_proj, before RoPE. */
  keyScale?: number;
  /** Hunyuan-A13B: the per-head q/k norms after RoPE, not before. */
  qkNormAfterRope?: boolean;
}

/**
 * Rotates one head vector in place for position `pos` (HF `apply_rotary_pos_emb`:
 * v·cos + rotate_half(v)·sin, rotate_half(v) = [−v₂, v₁], halves of the head).
 */
function rope(
  v: Float64Array,
  offset: number,
  headDim: number,
  pos: number,
  r: ReferenceRope,
): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const c = Math.cos(pos * r.invFreq[i]) * r.scale;
    const s = Math.sin(pos * r.invFreq[i]) * r.scale;
    const a = v[offset + i];
    const b = v[offset + i + half];
    v[offset + i] = a * c - b * s;
    v[offset + i + half] = b * c + a * s;
  }
}

/** {@linkcode rope} on adjacent pairs (ERNIE 4.5's `apply_rotary_pos_emb`). */
function ropePairs(
  v: Float64Array,
  offset: number,
  headDim: number,
  pos: number,
  r: ReferenceRope,
): void {
  for (let i = 0; i < headDim / 2; i++) {
    const c = Math.cos(pos * r.invFreq[i]) * r.scale;
    const s = Math.sin(pos * r.invFreq[i]) * r.scale;
    const a = v[offset + 2 * i];
    const b = v[offset + 2 * i + 1];
    v[offset + 2 * i] = a * c - b * s;
    v[offset + 2 * i + 1] = b * c + a * s;
  }
}

/**
 * Causal multi-head attention over `x` [T, hidden] (already normalised), with
 * grouped-query KV heads, optional RoPE and optional sliding window; returns
 * o_proj's output [T, hidden].
 *
 * @example
 * ```ts
 * import { attention } from "./hf_reference.ts";
 * const eye = new Float64Array([1, 0, 0, 1]);
 * attention(new Float64Array([1, 2]), 1, { q: eye, k: eye, v: eye, o: eye },
 *   { hidden: 2, heads: 1, kvHeads: 1, headDim: 2 }); // [1, 2]: one token attends to itself
 * ```
 */
export function attention(
  x: Float64Array,
  T: number,
  w: AttentionWeights,
  opt: AttentionOptions,
): Float64Array {
  const { hidden, heads, kvHeads, headDim } = opt;
  let q = linear(x, T, hidden, w.q, heads * headDim, w.qb);
  let k = linear(x, T, hidden, w.k, kvHeads * headDim, w.kb);
  if (opt.keyScale !== undefined) k = k.map((v) => v * opt.keyScale!);
  const v = linear(x, T, hidden, w.v, kvHeads * headDim, w.vb);
  if (w.qNorm && w.kNorm && opt.qkNormPerHead && !opt.qkNormAfterRope) {
    q = rmsNorm(q, T * heads, headDim, w.qNorm, opt.qkNormEps!);
    k = rmsNorm(k, T * kvHeads, headDim, w.kNorm, opt.qkNormEps!);
  } else if (w.qNorm && w.kNorm && !opt.qkNormPerHead) {
    q = rmsNorm(q, T, heads * headDim, w.qNorm, opt.qkNormEps!);
    k = rmsNorm(k, T, kvHeads * headDim, w.kNorm, opt.qkNormEps!);
  }
  if (opt.clip !== undefined) {
    for (const a of [q, k, v]) {
      for (let i = 0; i < a.length; i++) a[i] = Math.min(opt.clip, Math.max(-opt.clip, a[i]));
    }
  }
  const r = opt.rope ??
    (opt.ropeTheta === undefined
      ? undefined
      : { invFreq: referenceRope({ rope_theta: opt.ropeTheta }, headDim, 0).invFreq, scale: 1 });
  if (r) {
    for (let t = 0; t < T; t++) {
      // apply_rotary_pos_emb of GLM/Bamba: q[..., :R] rotated as a head of R, the rest kept.
      const R = opt.rotaryDim ?? headDim;
      const turn = opt.interleave ? ropePairs : rope;
      for (let h = 0; h < heads; h++) turn(q, (t * heads + h) * headDim, R, t, r);
      for (let h = 0; h < kvHeads; h++) turn(k, (t * kvHeads + h) * headDim, R, t, r);
    }
  }
  if (w.qNorm && w.kNorm && opt.qkNormAfterRope) {
    q = rmsNorm(q, T * heads, headDim, w.qNorm, opt.qkNormEps!);
    k = rmsNorm(k, T * kvHeads, headDim, w.kNorm, opt.qkNormEps!);
  }
  const group = heads / kvHeads;
  const scale = opt.scale ?? 1 / Math.sqrt(headDim);
  const ctx = new Float64Array(T * heads * headDim);
  const scores = new Float64Array(T);
  for (let h = 0; h < heads; h++) {
    const kh = Math.floor(h / group); // repeat_kv: each KV head serves `group` consecutive query heads
    for (let i = 0; i < T; i++) {
      const first = opt.slidingWindow === undefined ? 0 : Math.max(0, i - opt.slidingWindow + 1);
      // eager_attention_forward of GPT-OSS: the sink joins the softmax, then is dropped.
      const sink = w.sinks ? w.sinks[h] : -Infinity;
      let max = sink;
      for (let j = first; j <= i; j++) {
        let s = 0;
        for (let d = 0; d < headDim; d++) {
          s += q[(i * heads + h) * headDim + d] * k[(j * kvHeads + kh) * headDim + d];
        }
        scores[j] = s * scale;
        if (scores[j] > max) max = scores[j];
      }
      let sum = w.sinks ? Math.exp(sink - max) : 0;
      for (let j = first; j <= i; j++) {
        scores[j] = Math.exp(scores[j] - max);
        sum += scores[j];
      }
      for (let j = first; j <= i; j++) {
        const p = scores[j] / sum;
        for (let d = 0; d < headDim; d++) {
          ctx[(i * heads + h) * headDim + d] += p * v[(j * kvHeads + kh) * headDim + d];
        }
      }
    }
  }
  return linear(ctx, T, heads * headDim, w.o, hidden, w.ob);
}

// ---------------------------------------------------------------------------
// Feed-forward: SwiGLU and sparse MoE

/** A SwiGLU MLP: down(silu(gate·x) ⊙ up·x). Mixtral's w1 = gate, w3 = up, w2 = down. */
export interface SwigluWeights {
  /** [ff, hidden]: goes through silu. */
  gate: Float64Array;
  /** [ff, hidden]: multiplies the gate. */
  up: Float64Array;
  /** [hidden, ff]. */
  down: Float64Array;
}

/**
 * SwiGLU over `x` [T, hidden] with inner size `ff`.
 *
 * @example
 * ```ts
 * import { swiglu } from "./hf_reference.ts";
 * swiglu(new Float64Array([1]), 1, 1, 1, { gate: new Float64Array([1]), up: new Float64Array([2]), down: new Float64Array([1]) });
 * // [2 · silu(1)]
 * ```
 */
export function swiglu(
  x: Float64Array,
  T: number,
  hidden: number,
  ff: number,
  w: SwigluWeights,
  act: (v: number) => number = silu,
): Float64Array {
  const g = linear(x, T, hidden, w.gate, ff);
  const u = linear(x, T, hidden, w.up, ff);
  for (let i = 0; i < g.length; i++) g[i] = act(g[i]) * u[i];
  return linear(g, T, ff, w.down, hidden);
}

/** One token's routing decision. */
export interface Route {
  /** Chosen experts, highest probability first (ties: lower index first). */
  experts: number[];
  /** Their weights. */
  weights: number[];
}

/**
 * Routes one token: softmax over router logits, top-k, and (Mixtral) renormalise
 * the k weights to sum 1 or (Jamba) keep the raw probabilities.
 *
 * @example
 * ```ts
 * import { route } from "./hf_reference.ts";
 * route([0, Math.log(3), Math.log(6)], 2, true); // experts [2, 1], weights [2/3, 1/3]
 * route([0, Math.log(3), Math.log(6)], 2, false); // experts [2, 1], weights [0.6, 0.3]
 * ```
 */
export function route(logits: ArrayLike<number>, k: number, renormalize: boolean): Route {
  let max = -Infinity;
  for (let e = 0; e < logits.length; e++) max = Math.max(max, logits[e]);
  const p = Array.from(logits, (z) => Math.exp(z - max));
  const total = p.reduce((a, b) => a + b, 0);
  for (let e = 0; e < p.length; e++) p[e] /= total;
  const order = p.map((_, e) => e).sort((a, b) => p[b] - p[a] || a - b);
  const experts = order.slice(0, k);
  let weights = experts.map((e) => p[e]);
  if (renormalize) {
    const s = weights.reduce((a, b) => a + b, 0);
    weights = weights.map((w) => w / s);
  }
  return { experts, weights };
}

/**
 * Sparse MoE over `x` [T, hidden]: router [E, hidden], experts as SwiGLU.
 *
 * @example
 * ```ts
 * import { sparseMoe } from "./hf_reference.ts";
 * const one = { gate: new Float64Array([1]), up: new Float64Array([1]), down: new Float64Array([1]) };
 * sparseMoe(new Float64Array([1]), 1, 1, 1, new Float64Array([0]), [one], 1, true); // [silu(1)]
 * ```
 */
export function sparseMoe(
  x: Float64Array,
  T: number,
  hidden: number,
  ff: number,
  router: Float64Array,
  experts: readonly SwigluWeights[],
  k: number,
  renormalize: boolean,
  act: (v: number) => number = silu,
): Float64Array {
  const E = experts.length;
  const logits = linear(x, T, hidden, router, E);
  const out = new Float64Array(T * hidden);
  for (let t = 0; t < T; t++) {
    const r = route(logits.subarray(t * E, (t + 1) * E), k, renormalize);
    const xt = x.subarray(t * hidden, (t + 1) * hidden);
    r.experts.forEach((e, j) => {
      const y = swiglu(xt, 1, hidden, ff, experts[e], act);
      for (let i = 0; i < hidden; i++) out[t * hidden + i] += r.weights[j] * y[i];
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Mamba

/** Weights of one Mamba mixer (HF names in comments). */
export interface MambaWeights {
  /** in_proj.weight [2I, H]. */
  inProj: Float64Array;
  /** in_proj.bias [2I] (use_bias / mamba_proj_bias). */
  inProjBias?: Float64Array;
  /** conv1d.weight [I, 1, k]. */
  conv: Float64Array;
  /** conv1d.bias [I] (use_conv_bias / mamba_conv_bias). */
  convBias?: Float64Array;
  /** x_proj.weight [R + 2N, I]. */
  xProj: Float64Array;
  /** dt_proj.weight [I, R]. */
  dtProj: Float64Array;
  /** dt_proj.bias [I] (always present). */
  dtProjBias: Float64Array;
  /** A_log [I, N]. */
  aLog: Float64Array;
  /** D [I]. */
  d: Float64Array;
  /** out_proj.weight [H, I]. */
  outProj: Float64Array;
  /** out_proj.bias [H] (use_bias / mamba_proj_bias). */
  outProjBias?: Float64Array;
  /** Jamba only: dt_layernorm [R], b_layernorm [N], c_layernorm [N] weights and their eps. */
  innerNorms?: { dt: Float64Array; b: Float64Array; c: Float64Array; eps: number };
}

/** Sizes of a Mamba mixer. */
export interface MambaDims {
  /** Model width H. */
  hidden: number;
  /** Mixer channels I = expand · H. */
  inner: number;
  /** SSM state size N. */
  state: number;
  /** Depthwise conv kernel k. */
  convKernel: number;
  /** Δ projection rank R. */
  rank: number;
  /** The conv's activation (`hidden_act`; default silu). The gate is silu always. */
  act?: (v: number) => number;
}

/**
 * The selective scan of `MambaMixer.slow_forward`, one channel at a time:
 * hₜ = exp(Δₜ·A) ⊙ hₜ₋₁ + Δₜ·Bₜ·uₜ, yₜ = hₜ·Cₜ + D·uₜ, from h₋₁ = 0. Layouts:
 * u, delta [T, I]; A [I, N] (already −exp(A_log)); B, C [T, N]; D [I]. Returns y [T, I]
 * (before the silu(z) gate).
 *
 * @example
 * ```ts
 * import { selectiveScan } from "./hf_reference.ts";
 * // One channel, one state, A = −1, Δ = 1, B = C = 1, D = 0, u = [1, 0]:
 * selectiveScan(new Float64Array([1, 0]), new Float64Array([1, 1]), new Float64Array([-1]),
 *   new Float64Array([1, 1]), new Float64Array([1, 1]), new Float64Array([0]), 2, 1, 1); // [1, e⁻¹]
 * ```
 */
export function selectiveScan(
  u: Float64Array,
  delta: Float64Array,
  a: Float64Array,
  b: Float64Array,
  c: Float64Array,
  d: Float64Array,
  T: number,
  I: number,
  N: number,
): Float64Array {
  const y = new Float64Array(T * I);
  const h = new Float64Array(N);
  for (let ch = 0; ch < I; ch++) {
    h.fill(0);
    for (let t = 0; t < T; t++) {
      const dt = delta[t * I + ch];
      const x = u[t * I + ch];
      let acc = 0;
      for (let n = 0; n < N; n++) {
        h[n] = Math.exp(dt * a[ch * N + n]) * h[n] + dt * b[t * N + n] * x;
        acc += h[n] * c[t * N + n];
      }
      y[t * I + ch] = acc + d[ch] * x;
    }
  }
  return y;
}

/**
 * One Mamba mixer (`MambaMixer.slow_forward`, or `JambaMambaMixer.slow_forward`
 * when `w.innerNorms` is set) over `x` [T, hidden]; returns [T, hidden].
 *
 * @example
 * ```ts
 * import { mambaMixer, type MambaWeights } from "./hf_reference.ts";
 * declare const w: MambaWeights;
 * mambaMixer(new Float64Array(32 * 5), 5, w, { hidden: 32, inner: 64, state: 8, convKernel: 4, rank: 2 });
 * ```
 */
export function mambaMixer(
  x: Float64Array,
  T: number,
  w: MambaWeights,
  dims: MambaDims,
): Float64Array {
  const { hidden: H, inner: I, state: N, convKernel: K, rank: R } = dims;
  // 1. in_proj, split channel-wise into the SSM input (first I) and the gate z (last I).
  const proj = linear(x, T, H, w.inProj, 2 * I, w.inProjBias);
  const pre = new Float64Array(T * I);
  const gate = new Float64Array(T * I);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < I; c++) {
      pre[t * I + c] = proj[t * 2 * I + c];
      gate[t * I + c] = proj[t * 2 * I + I + c];
    }
  }
  // 2. Depthwise conv1d, padding k−1 and keeping the first T outputs = causal:
  // out[t] = bias + Σⱼ w[j] · x[t − (k−1) + j]; the last tap sees the current step.
  const u = new Float64Array(T * I);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < I; c++) {
      let s = w.convBias ? w.convBias[c] : 0;
      for (let j = 0; j < K; j++) {
        const src = t - (K - 1) + j;
        if (src >= 0) s += w.conv[c * K + j] * pre[src * I + c];
      }
      u[t * I + c] = (dims.act ?? silu)(s);
    }
  }
  // 3. x_proj → dt [R] | B [N] | C [N] (Jamba normalises each part).
  const P = R + 2 * N;
  const params = linear(u, T, I, w.xProj, P);
  let dt: Float64Array = new Float64Array(T * R);
  let bm: Float64Array = new Float64Array(T * N);
  let cm: Float64Array = new Float64Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < R; r++) dt[t * R + r] = params[t * P + r];
    for (let n = 0; n < N; n++) {
      bm[t * N + n] = params[t * P + R + n];
      cm[t * N + n] = params[t * P + R + N + n];
    }
  }
  if (w.innerNorms) {
    const { eps } = w.innerNorms;
    dt = rmsNorm(dt, T, R, w.innerNorms.dt, eps);
    bm = rmsNorm(bm, T, N, w.innerNorms.b, eps);
    cm = rmsNorm(cm, T, N, w.innerNorms.c, eps);
  }
  // 4. Δ = softplus(dt_proj(dt) + bias); A = −exp(A_log).
  const delta = linear(dt, T, R, w.dtProj, I, w.dtProjBias);
  for (let i = 0; i < delta.length; i++) delta[i] = softplus(delta[i]);
  const a = w.aLog.map((v) => -Math.exp(v));
  // 5. Scan with D skip, then the silu(z) gate.
  const y = selectiveScan(u, delta, a, bm, cm, w.d, T, I, N);
  for (let i = 0; i < y.length; i++) y[i] *= silu(gate[i]);
  // 6. out_proj.
  return linear(y, T, I, w.outProj, H, w.outProjBias);
}

// ---------------------------------------------------------------------------
// Loading

/** Reads tensors by name with their expected shapes, remembering which were used. */
/** Tensors of a checkpoint in float64, each checked for its exact shape; records what was read. */
export class Weights {
  readonly used = new Set<string>();
  constructor(private ckpt: Checkpoint, private dir: string) {}

  has(name: string): boolean {
    return this.ckpt.has(name);
  }

  async get(name: string, shape: number[]): Promise<Float64Array> {
    if (!this.ckpt.has(name)) {
      throw new RangeError(
        `${this.dir}: missing tensor "${name}" (expected shape [${shape.join(", ")}])`,
      );
    }
    const found = this.ckpt.info(name).shape;
    if (found.length !== shape.length || found.some((d, i) => d !== shape[i])) {
      throw new RangeError(
        `${this.dir}: tensor "${name}" has shape [${found.join(", ")}], expected [${
          shape.join(", ")
        }]`,
      );
    }
    this.used.add(name);
    return Float64Array.from(await this.ckpt.readF32(name));
  }

  /** A U8 tensor's bytes (MXFP4 blocks and scales), shape checked as `get` does. */
  async bytes(name: string, shape: number[]): Promise<Uint8Array> {
    if (!this.ckpt.has(name)) {
      throw new RangeError(`${this.dir}: missing tensor "${name}"`);
    }
    const info = this.ckpt.info(name);
    if (info.dtype !== "U8" || info.shape.join() !== shape.join()) {
      throw new RangeError(
        `${this.dir}: tensor "${name}" is ${info.dtype} [${info.shape.join(", ")}], expected U8 [${
          shape.join(", ")
        }]`,
      );
    }
    this.used.add(name);
    return await this.ckpt.readRaw(name);
  }

  async maybe(name: string, shape: number[], present: boolean): Promise<Float64Array | undefined> {
    return present ? await this.get(name, shape) : undefined;
  }
}

type Layer = {
  kind: LayerKind;
  norm1: Float64Array;
  norm2?: Float64Array;
  attn?: AttentionWeights;
  attnOpt?: AttentionOptions;
  shared?: SwigluWeights;
  sharedGate?: Float64Array;
  mamba?: MambaWeights;
  mamba2?: Mamba2Weights;
  router?: Float64Array;
  experts?: SwigluWeights[];
  mlp?: SwigluWeights;
};

/**
 * A SwiGLU's gate / up / down weights under `prefix` (`names`: the three
 * Linear layers' names), `ff` wide on a model `hidden` wide.
 *
 * @example
 * ```ts ignore
 * await readSwiglu(w, "model.layers.0.mlp", ["gate_proj", "up_proj", "down_proj"], 48, 16);
 * ```
 */
export async function readSwiglu(
  w: Weights,
  prefix: string,
  names: [string, string, string],
  hidden: number,
  ff: number,
): Promise<SwigluWeights> {
  return {
    gate: await w.get(`${prefix}.${names[0]}.weight`, [ff, hidden]),
    up: await w.get(`${prefix}.${names[1]}.weight`, [ff, hidden]),
    down: await w.get(`${prefix}.${names[2]}.weight`, [hidden, ff]),
  };
}

/**
 * q/k/v/o_proj (and their biases and QK-norms, as `extras` says; the norms
 * `q_norm` / `k_norm` unless `normNames` says otherwise) of the attention at
 * `prefix`.
 */
export async function readAttention(
  w: Weights,
  prefix: string,
  opt: AttentionOptions,
  extras: { qkvBias: boolean; outBias: boolean; qkNorm: boolean; normNames?: [string, string] },
): Promise<AttentionWeights> {
  const [qn, kn] = extras.normNames ?? ["q_norm", "k_norm"];
  const { hidden, heads, kvHeads, headDim } = opt;
  const Q = heads * headDim, KV = kvHeads * headDim;
  return {
    q: await w.get(`${prefix}.q_proj.weight`, [Q, hidden]),
    k: await w.get(`${prefix}.k_proj.weight`, [KV, hidden]),
    v: await w.get(`${prefix}.v_proj.weight`, [KV, hidden]),
    o: await w.get(`${prefix}.o_proj.weight`, [hidden, Q]),
    qb: await w.maybe(`${prefix}.q_proj.bias`, [Q], extras.qkvBias),
    kb: await w.maybe(`${prefix}.k_proj.bias`, [KV], extras.qkvBias),
    vb: await w.maybe(`${prefix}.v_proj.bias`, [KV], extras.qkvBias),
    ob: await w.maybe(`${prefix}.o_proj.bias`, [hidden], extras.outBias),
    qNorm: await w.maybe(
      `${prefix}.${qn}.weight`,
      [opt.qkNormPerHead ? headDim : Q],
      extras.qkNorm,
    ),
    kNorm: await w.maybe(
      `${prefix}.${kn}.weight`,
      [opt.qkNormPerHead ? headDim : KV],
      extras.qkNorm,
    ),
  };
}

async function readMamba(
  w: Weights,
  prefix: string,
  d: MambaDims,
  projBias: boolean,
  convBias: boolean,
  innerNormEps?: number,
): Promise<MambaWeights> {
  const { hidden: H, inner: I, state: N, convKernel: K, rank: R } = d;
  const m: MambaWeights = {
    inProj: await w.get(`${prefix}.in_proj.weight`, [2 * I, H]),
    inProjBias: await w.maybe(`${prefix}.in_proj.bias`, [2 * I], projBias),
    conv: await w.get(`${prefix}.conv1d.weight`, [I, 1, K]),
    convBias: await w.maybe(`${prefix}.conv1d.bias`, [I], convBias),
    xProj: await w.get(`${prefix}.x_proj.weight`, [R + 2 * N, I]),
    dtProj: await w.get(`${prefix}.dt_proj.weight`, [I, R]),
    dtProjBias: await w.get(`${prefix}.dt_proj.bias`, [I]),
    aLog: await w.get(`${prefix}.A_log`, [I, N]),
    d: await w.get(`${prefix}.D`, [I]),
    outProj: await w.get(`${prefix}.out_proj.weight`, [H, I]),
    outProjBias: await w.maybe(`${prefix}.out_proj.bias`, [H], projBias),
  };
  if (innerNormEps !== undefined) {
    m.innerNorms = {
      dt: await w.get(`${prefix}.dt_layernorm.weight`, [R]),
      b: await w.get(`${prefix}.b_layernorm.weight`, [N]),
      c: await w.get(`${prefix}.c_layernorm.weight`, [N]),
      eps: innerNormEps,
    };
  }
  return m;
}

/**
 * Loads a Hugging Face model folder (config.json + model.safetensors or an index
 * and shards) into float64 and returns its reference forward. Every tensor the
 * architecture needs is checked for presence and exact shape, and a tensor the
 * architecture does not use is an error too (it means the writer and the
 * reference disagree about the layout).
 *
 * @example
 * ```ts
 * import { loadReference } from "./hf_reference.ts";
 * const ref = await loadReference("path/to/tiny-jamba");
 * ref.layers; // [{ mixer: "mamba", ffn: "mlp" }, { mixer: "attention", ffn: "moe" }, …]
 * const logits = ref.forward([1, 2, 3]);
 * ```
 */
export async function loadReference(dir: string): Promise<ReferenceModel> {
  const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json"))) as HfConfig;
  const arch = architectureOf(config);
  const kinds = layerKinds(config);
  const ckpt = await Checkpoint.open(dir);
  try {
    const w = new Weights(ckpt, dir);
    const model = arch === "GraniteMoeHybridForCausalLM" || arch === "GraniteMoeForCausalLM" ||
        arch === "GraniteMoeSharedForCausalLM"
      ? await (await import("./granite_reference.ts")).loadGranite(w, config, kinds, arch)
      : arch === "BambaForCausalLM"
      ? await (await import("./granite_reference.ts")).loadBamba(w, config, kinds)
      : arch === "NemotronHForCausalLM"
      ? await (await import("./granite_reference.ts")).loadNemotronH(w, config, kinds)
      : arch === "HunYuanMoEV1ForCausalLM"
      ? await (await import("./hunyuan_reference.ts")).loadHunyuan(w, config, kinds)
      : arch === "FlexOlmoForCausalLM"
      ? await (await import("./flex_olmo_reference.ts")).loadFlexOlmo(w, config, kinds)
      : arch.startsWith("Lfm2")
      ? await (await import("./lfm2_reference.ts")).loadLfm2(w, config, kinds)
      : arch.startsWith("Qwen3Next") || arch.startsWith("Qwen3_5")
      ? await (await import("./qwen3_next_reference.ts")).loadQwen3Next(w, config, kinds)
      : arch === "ExaoneMoeForCausalLM"
      ? await (await import("./exaone_moe_reference.ts")).loadExaoneMoe(w, config, kinds)
      : arch === "Glm4MoeForCausalLM" || arch === "Dots1ForCausalLM"
      ? await (await import("./glm4_moe_reference.ts")).loadGlm4Moe(w, config, kinds)
      : arch === "Ernie4_5_MoeForCausalLM" || arch === "Ernie4_5ForCausalLM"
      ? await (await import("./ernie4_5_reference.ts")).loadErnie(w, config, kinds)
      : arch === "FalconH1ForCausalLM"
      ? await (await import("./falcon_h1_reference.ts")).loadFalconH1(w, config, kinds)
      : arch === "MiniMaxM2ForCausalLM"
      ? await (await import("./minimax_m2_reference.ts")).loadMiniMaxM2(w, config, kinds)
      : arch === "DeepseekV3ForCausalLM" || arch === "DeepseekV2ForCausalLM" ||
          arch === "Glm4MoeLiteForCausalLM"
      ? await (await import("./deepseek_v3_reference.ts")).loadDeepseekV3(
        w,
        config,
        kinds,
        arch === "DeepseekV2ForCausalLM",
      )
      : arch === "GptOssForCausalLM"
      ? await (await import("./gpt_oss_reference.ts")).loadGptOss(w, config, kinds)
      : arch === "MambaForCausalLM" || arch === "FalconMambaForCausalLM" ||
          arch === "Mamba2ForCausalLM"
      ? await loadMamba(w, config, kinds, arch)
      : await loadTransformer(w, config, kinds, arch);
    // A vision-language checkpoint's vision tower is not the language model's.
    const skipped = (n: string) =>
      arch.endsWith("ForConditionalGeneration") && n.startsWith("model.visual.");
    const unused = [...ckpt.tensors.keys()].filter((n) => !w.used.has(n) && !skipped(n));
    if (unused.length) {
      throw new RangeError(
        `${dir}: ${unused.length} tensor(s) not used by ${arch}: ${unused.slice(0, 5).join(", ")}` +
          (unused.length > 5 ? ", …" : ""),
      );
    }
    return model;
  } finally {
    ckpt.close();
  }
}

/**
 * The reference forward of the model in `dir`: token ids → logits `[T, vocab]`
 * (row-major Float64Array) at every position.
 *
 * @example
 * ```ts
 * import { referenceLogits } from "./hf_reference.ts";
 * const f = await referenceLogits("path/to/tiny-mamba");
 * f([0, 5, 9]).length; // 3 · vocab_size
 * ```
 */
export async function referenceLogits(
  dir: string,
): Promise<(tokenIds: readonly number[]) => Float64Array> {
  const model = await loadReference(dir);
  return (ids) => model.forward(ids);
}

export function embed(
  ids: readonly number[],
  table: Float64Array,
  vocab: number,
  hidden: number,
): Float64Array {
  const x = new Float64Array(ids.length * hidden);
  ids.forEach((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new RangeError(
        `token id ${id} at position ${t} is outside the vocabulary [0, ${vocab})`,
      );
    }
    x.set(table.subarray(id * hidden, (id + 1) * hidden), t * hidden);
  });
  return x;
}

async function loadMamba(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
  arch: "MambaForCausalLM" | "FalconMambaForCausalLM" | "Mamba2ForCausalLM",
): Promise<ReferenceModel> {
  const falcon = arch === "FalconMambaForCausalLM";
  const H = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "layer_norm_epsilon", 1e-5);
  const dims: MambaDims = {
    hidden: H,
    inner: config.intermediate_size === undefined
      ? Math.trunc(field(config, "expand", 2) * H)
      : intField(config, "intermediate_size"),
    state: intField(config, "state_size", 16),
    convKernel: intField(config, "conv_kernel", 4),
    rank: rankField(config, "time_step_rank", H),
    act: hfActivation(config.hidden_act),
  };
  // Original mamba_ssm checkpoints say "embedding"; MambaModel's load hook renames it.
  const embName = w.has("backbone.embeddings.weight")
    ? "backbone.embeddings.weight"
    : "backbone.embedding.weight";
  const emb = await w.get(embName, [vocab, H]);
  const layers: Layer[] = [];
  for (let l = 0; l < kinds.length; l++) {
    const p = `backbone.layers.${l}`;
    if (arch === "Mamba2ForCausalLM") {
      layers.push({
        kind: kinds[l],
        norm1: await w.get(`${p}.norm.weight`, [H]),
        mamba2: await readMamba2(
          w,
          `${p}.mixer`,
          mamba2Dims(config),
          config.use_bias === true,
          config.use_conv_bias !== false,
        ),
      });
      continue;
    }
    layers.push({
      kind: kinds[l],
      norm1: await w.get(`${p}.norm.weight`, [H]),
      mamba: await readMamba(
        w,
        `${p}.mixer`,
        dims,
        config.use_bias === true,
        config.use_conv_bias !== false,
      ),
    });
    if (falcon) {
      // FalconMambaWeightlessRMSNorm: weights of one, not in the checkpoint.
      const { rank: R, state: N } = dims;
      layers[l].mamba!.innerNorms = {
        dt: new Float64Array(R).fill(1),
        b: new Float64Array(N).fill(1),
        c: new Float64Array(N).fill(1),
        eps: field(config, "mixer_rms_eps", 1e-6),
      };
    }
  }
  const normF = await w.get("backbone.norm_f.weight", [H]);
  // Mamba2Config does not tie by default; MambaConfig does.
  const tied = config.tie_word_embeddings ?? arch !== "Mamba2ForCausalLM";
  const head = tied === false ? await w.get("lm_head.weight", [vocab, H]) : emb;
  const m2 = arch === "Mamba2ForCausalLM" ? mamba2Dims(config) : undefined;
  return {
    architecture: arch,
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, H);
      for (const layer of layers) {
        const normed = rmsNorm(x, T, H, layer.norm1, eps);
        addInPlace(
          x,
          m2
            ? mamba2Mixer(normed, T, layer.mamba2!, m2)
            : mambaMixer(normed, T, layer.mamba!, dims),
        );
      }
      return linear(rmsNorm(x, T, H, normF, eps), T, H, head, vocab);
    },
  };
}

/** A float of time_step_limit: a number or transformers 5's `{"__float__": "Infinity"}`. */
export function limitValue(v: unknown): number {
  if (typeof v === "number") return v;
  const f = (v as { __float__?: string } | null)?.__float__;
  if (f === "Infinity") return Infinity;
  throw new TypeError(`config.json: time_step_limit holds ${JSON.stringify(v)}`);
}

function mamba2Dims(config: HfConfig): Mamba2Dims {
  const limit = (config.time_step_limit ?? [0, Infinity]) as unknown[];
  return {
    hidden: intField(config, "hidden_size"),
    heads: intField(config, "num_heads", 128),
    headDim: intField(config, "head_dim", 64),
    groups: intField(config, "n_groups", 8),
    state: intField(config, "state_size", 128),
    convKernel: intField(config, "conv_kernel", 4),
    dtLimit: [limitValue(limit[0]), limitValue(limit[1])],
    eps: field(config, "layer_norm_epsilon", 1e-5),
    normGroups: 1,
    act: hfActivation(config.hidden_act),
  };
}

async function readMamba2(
  w: Weights,
  prefix: string,
  d: Mamba2Dims,
  projBias: boolean,
  convBias: boolean,
): Promise<Mamba2Weights> {
  const I = d.heads * d.headDim, convDim = I + 2 * d.groups * d.state;
  const rows = I + convDim + d.heads;
  return {
    inProj: await w.get(`${prefix}.in_proj.weight`, [rows, d.hidden]),
    inProjBias: await w.maybe(`${prefix}.in_proj.bias`, [rows], projBias),
    conv: await w.get(`${prefix}.conv1d.weight`, [convDim, 1, d.convKernel]),
    convBias: await w.maybe(`${prefix}.conv1d.bias`, [convDim], convBias),
    dtBias: await w.get(`${prefix}.dt_bias`, [d.heads]),
    aLog: await w.get(`${prefix}.A_log`, [d.heads]),
    d: await w.get(`${prefix}.D`, [d.heads]),
    norm: await w.get(`${prefix}.norm.weight`, [I]),
    outProj: await w.get(`${prefix}.out_proj.weight`, [d.hidden, I]),
    outProjBias: await w.maybe(`${prefix}.out_proj.bias`, [d.hidden], projBias),
  };
}

async function loadTransformer(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
  arch: Exclude<
    ReferenceArchitecture,
    | "MambaForCausalLM"
    | "FalconMambaForCausalLM"
    | "Mamba2ForCausalLM"
    | "GraniteMoeHybridForCausalLM"
    | "GraniteMoeForCausalLM"
    | "GraniteMoeSharedForCausalLM"
    | "BambaForCausalLM"
    | "NemotronHForCausalLM"
  >,
): Promise<ReferenceModel> {
  const jamba = arch === "JambaForCausalLM";
  const qwen = arch === "Qwen2MoeForCausalLM";
  const olmoe = arch === "OlmoeForCausalLM";
  const qwen3 = arch === "Qwen3MoeForCausalLM";
  const H = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const ff = intField(config, "intermediate_size");
  const ffExpert = qwen || qwen3 ? intField(config, "moe_intermediate_size") : ff;
  const eps = field(config, "rms_norm_eps", jamba || qwen || qwen3 ? 1e-6 : 1e-5);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", heads);
  const headDim = config.head_dim == null ? H / heads : intField(config, "head_dim");
  if (!Number.isInteger(headDim) || heads % kvHeads !== 0) {
    throw new RangeError(
      `config.json: hidden_size ${H}, num_attention_heads ${heads}, num_key_value_heads ${kvHeads} do not divide`,
    );
  }
  const act = hfActivation(config.hidden_act);
  let slidingWindow: number | undefined;
  if (config.sliding_window != null && (arch === "MixtralForCausalLM")) {
    slidingWindow = intField(config, "sliding_window");
    if (slidingWindow < 1) slidingWindow = undefined;
  } else if (config.sliding_window != null && jamba) {
    // Only HF's flash-attention path applies Jamba's sliding_window (eager and SDPA
    // ignore it), so there is no single meaning to reproduce.
    throw new RangeError("config.json: Jamba with sliding_window set is ambiguous in transformers");
  }
  const defaultTheta = arch === "MixtralForCausalLM" ? 1e6 : 1e4;
  const clip = olmoe && config.clip_qkv != null ? field(config, "clip_qkv") : undefined;
  const attnOpt: AttentionOptions = {
    hidden: H,
    heads,
    kvHeads,
    headDim,
    rope: jamba ? undefined : referenceRope(config, headDim, defaultTheta),
    slidingWindow,
    qkNormEps: olmoe || qwen3 ? eps : undefined,
    qkNormPerHead: qwen3,
    clip,
  };
  const extras = {
    qkvBias: qwen ? config.qkv_bias !== false : (olmoe || qwen3) && config.attention_bias === true,
    outBias: (olmoe || qwen3) && config.attention_bias === true,
    qkNorm: olmoe || qwen3,
  };
  const E = expertCount(config, arch);
  const k = intField(config, "num_experts_per_tok", qwen ? 4 : olmoe || qwen3 ? 8 : 2);
  if (kinds.some((l) => l.ffn === "moe") && (k < 1 || k > E)) {
    throw new RangeError(`config.json: num_experts_per_tok ${k} must be in 1..${E}`);
  }
  // Mixtral always renormalises the top-k weights, Jamba never; the others by config.
  const renormalize = arch === "MixtralForCausalLM" ||
    ((qwen || olmoe || qwen3) && config.norm_topk_prob === true);
  const sharedFf = qwen ? intField(config, "shared_expert_intermediate_size", 0) : 0;
  const mambaDims: MambaDims = {
    hidden: H,
    inner: intField(config, "mamba_expand", 2) * H,
    state: intField(config, "mamba_d_state", 16),
    convKernel: intField(config, "mamba_d_conv", 4),
    rank: rankField(config, "mamba_dt_rank", H),
    act,
  };
  const moeName = { MixtralForCausalLM: "block_sparse_moe", JambaForCausalLM: "feed_forward" }[
    arch as string
  ] ?? "mlp";
  const mlpName = jamba ? "feed_forward" : "mlp";
  const expertParts: [string, string, string] = arch === "MixtralForCausalLM"
    ? ["w1", "w3", "w2"]
    : ["gate_proj", "up_proj", "down_proj"];
  const emb = await w.get("model.embed_tokens.weight", [vocab, H]);
  const layers: Layer[] = [];
  for (let l = 0; l < kinds.length; l++) {
    const p = `model.layers.${l}`;
    const kind = kinds[l];
    const layer: Layer = {
      kind,
      norm1: await w.get(`${p}.input_layernorm.weight`, [H]),
      norm2: await w.get(`${p}.${jamba ? "pre_ff_layernorm" : "post_attention_layernorm"}.weight`, [
        H,
      ]),
    };
    if (kind.mixer === "attention") {
      layer.attnOpt = kind.window === undefined
        ? attnOpt
        : { ...attnOpt, slidingWindow: kind.window };
      layer.attn = await readAttention(w, `${p}.self_attn`, attnOpt, extras);
    } else {
      layer.mamba = await readMamba(
        w,
        `${p}.mamba`,
        mambaDims,
        config.mamba_proj_bias === true,
        config.mamba_conv_bias !== false,
        eps,
      );
    }
    if (kind.ffn === "moe") {
      const moe = `${p}.${moeName}`;
      layer.router = await w.get(`${moe}.${jamba ? "router" : "gate"}.weight`, [E, H]);
      layer.experts = [];
      for (let e = 0; e < E; e++) {
        layer.experts.push(await readSwiglu(w, `${moe}.experts.${e}`, expertParts, H, ffExpert));
      }
      if (sharedFf > 0) {
        layer.shared = await readSwiglu(
          w,
          `${moe}.shared_expert`,
          ["gate_proj", "up_proj", "down_proj"],
          H,
          sharedFf,
        );
        layer.sharedGate = await w.get(`${moe}.shared_expert_gate.weight`, [1, H]);
      }
    } else {
      layer.mlp = await readSwiglu(
        w,
        `${p}.${mlpName}`,
        ["gate_proj", "up_proj", "down_proj"],
        H,
        ff,
      );
    }
    layers.push(layer);
  }
  const norm = await w.get(jamba ? "model.final_layernorm.weight" : "model.norm.weight", [H]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, H]);
  return {
    architecture: arch,
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, H);
      for (const layer of layers) {
        const n1 = rmsNorm(x, T, H, layer.norm1, eps);
        addInPlace(
          x,
          layer.attn
            ? attention(n1, T, layer.attn, layer.attnOpt!)
            : mambaMixer(n1, T, layer.mamba!, mambaDims),
        );
        const n2 = rmsNorm(x, T, H, layer.norm2!, eps);
        addInPlace(
          x,
          layer.experts
            ? sparseMoe(n2, T, H, ffExpert, layer.router!, layer.experts, k, renormalize, act)
            : swiglu(n2, T, H, ff, layer.mlp!, act),
        );
        if (layer.shared) {
          const y = swiglu(n2, T, H, sharedFf, layer.shared, act);
          const g = linear(n2, T, H, layer.sharedGate!, 1);
          for (let t = 0; t < T; t++) {
            const s = 1 / (1 + Math.exp(-g[t]));
            for (let i = 0; i < H; i++) x[t * H + i] += s * y[t * H + i];
          }
        }
      }
      return linear(rmsNorm(x, T, H, norm, eps), T, H, head, vocab);
    },
  };
}
