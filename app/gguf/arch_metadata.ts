/**
 * The GGUF metadata llama.cpp's `convert_hf_to_gguf.py` writes for a Hugging
 * Face config (the model's keys; the tokenizer's come from elsewhere), with
 * the value types its `GGUFWriter` uses: counts u32, floats f32, flags bool,
 * Jamba's per-layer KV head counts an i32 array.
 *
 * Keys written, per architecture:
 *
 * - all: `general.architecture`, `general.type` ("model"), `general.name`,
 *   `<arch>.vocab_size`, `.context_length`, `.embedding_length`,
 *   `.block_count`, `.attention.layer_norm_rms_epsilon`, `general.file_type`,
 *   `general.quantization_version` (2), and `tokenizer.ggml.bos_token_id` /
 *   `eos_token_id` / `padding_token_id` from config.json's ids (as gguf-py's
 *   `SpecialVocab` does; only the first of several eos ids fits);
 * - `llama` (Mixtral): `.feed_forward_length`, `.attention.head_count`,
 *   `.attention.head_count_kv`, `.rope.freq_base`, `.rope.dimension_count`,
 *   `.expert_count`, `.expert_used_count`, `.attention.key_length` /
 *   `.value_length` (when config.json gives head_dim), `.rope.scaling.*`
 *   (linear, yarn), and `.attention.sliding_window` when Mixtral slides (a
 *   key llama.cpp defines but does not read for `llama`; Kiln reads it back);
 * - `qwen2moe`: as llama without `rope.dimension_count`, plus
 *   `.expert_feed_forward_length` and `.expert_shared_feed_forward_length`; a
 *   config llama.cpp's qwen2moe cannot hold (`norm_topk_prob` true, dense layers,
 *   no shared expert) is refused;
 * - `qwen3moe`: as qwen2moe without the shared expert's width; a config
 *   llama.cpp's qwen3moe cannot hold (`norm_topk_prob` false, dense layers,
 *   attention biases) is refused;
 * - `olmoe`: as qwen2moe without its expert widths (`.feed_forward_length`
 *   is the experts'); a config llama.cpp's olmoe graph would compute
 *   differently (biases, `clip_qkv`, `norm_topk_prob`, GQA) is refused;
 * - `mamba`: `.context_length` 2^20, `.feed_forward_length` 0,
 *   `.attention.head_count` 0 (as the converter writes them), `.ssm.conv_kernel`,
 *   `.ssm.inner_size`, `.ssm.state_size`, `.ssm.time_step_rank`,
 *   `.ssm.dt_b_c_rms` (true for Falcon-Mamba), and for Falcon-Mamba Kiln's own
 *   `.ssm.dt_b_c_rms_eps` (`mixer_rms_eps`: llama.cpp has no key for it and runs
 *   those norms at the layers' epsilon; it ignores this one);
 * - `jamba`: the SSM keys, `.feed_forward_length`, `.attention.head_count`,
 *   `.attention.head_count_kv` (per layer, 0 for Mamba layers),
 *   `.expert_count`, `.expert_used_count`;
 * - `granitehybrid` (Granite 4.0 hybrids): as jamba with Mamba-2's SSM keys
 *   (`.ssm.group_count`), plus `.rope.freq_base`, `.rope.dimension_count`,
 *   `.attention.scale`, `.embedding_scale`, `.residual_scale`, `.logit_scale`,
 *   `.expert_shared_feed_forward_length` and `.rope.scaling.finetuned` (llama.cpp's
 *   switch for RoPE: true only when `position_embedding_type` is "rope", where the
 *   converter always writes false); `.feed_forward_length` is the experts' width,
 *   or the shared MLP's in a model without experts. A config llama.cpp's
 *   granitehybrid could not load (projection biases, `mamba_expand` ≠ 2, no Mamba
 *   layer) is refused;
 * - `gpt-oss` (GPT-OSS): see `arch_metadata_gpt_oss.ts`;
 * - `glm4moe` (GLM-4.5): the attention keys as qwen2moe, the rest in
 *   `arch_metadata_glm4_moe.ts` (partial RoPE, routing, no MTP blocks);
 * - `dots1` (dots.llm1): the attention keys as qwen2moe, the rest in
 *   `arch_dots1.ts` (routing, shared experts; GQA and biases refused);
 * - `minimax-m2` (MiniMax-M2): the attention keys as qwen2moe, the rest in
 *   `arch_minimax_m2.ts` (partial RoPE, routing; tied embeddings refused);
 * - `hunyuan-moe` (Hunyuan-A13B): the attention keys as qwen2moe (a `dynamic`
 *   RoPE of factor 1 — its NTK-alpha base — as the base alone), the rest in
 *   `arch_hunyuan.ts` (expert and shared widths; attention biases refused);
 * - `exaone-moe` (K-EXAONE): the attention keys as qwen2moe (its sliding window
 *   and pattern in `arch_exaone_moe.ts`, with its routing and shared experts).
 *
 * A missing `max_position_embeddings` takes the transformers class default
 * (Mixtral, GPT-OSS and GLM-4.5 131072, Qwen2-MoE and Qwen3-MoE 32768, OLMoE 4096, Jamba
 * 262144, dots.llm1, Hunyuan-A13B and K-EXAONE 2048, MiniMax-M2 196608), since llama.cpp requires a context length.
 *
 * @module
 */

import type { MambaSsdConfig, ModelConfig } from "../../models/config.ts";
import { parseConfig } from "../../models/architectures/mod.ts";
import type { QuantizeChoice } from "../../core/quant/formats.ts";
import type { GgufMix } from "./quant_mix.ts";
import type { GgufEntry } from "./value.ts";
import { ggufArchOf, refuseUnwritten } from "./arch_names.ts";
import { nemotronHKeys } from "./arch_metadata_nemotron_h.ts";
import { ropeDivisors } from "../../models/rope_scaling.ts";
import { clampsDelta } from "../../models/mamba2.ts";
import { gptOssKeys } from "./arch_metadata_gpt_oss.ts";
import { glm4MoeKeys } from "./arch_metadata_glm4_moe.ts";
import { ernieKeys } from "./arch_metadata_ernie.ts";
import { dots1Keys } from "./arch_dots1.ts";
import { minimaxM2Keys } from "./arch_minimax_m2.ts";
import { hunyuanKeys } from "./arch_hunyuan.ts";
import { exaoneMoeKeys } from "./arch_exaone_moe.ts";

/**
 * The element types `convertToGguf` writes weights in: one type for every
 * matrix, `mxfp4_moe`, llama-quantize's MXFP4_MOE mix (MXFP4 experts, every
 * other matrix Q8_0), or one of llama-quantize's K-quant and IQ3 mixes
 * (`q4_k_m`…, see `quant_mix.ts`).
 *
 * @example
 * ```ts
 * import type { GgufOutType } from "./arch_metadata.ts";
 * const t: GgufOutType = "q8_0";
 * ```
 */
export type GgufOutType = "f32" | "f16" | QuantizeChoice | GgufMix;

/**
 * `general.file_type` (llama.cpp's `llama_ftype`) for each output type; a
 * uniform K-quant is the `_S` ("small", mostly that type) variant. (llama.cpp reads
 * it only to name the file's type.)
 *
 * @example
 * ```ts
 * import { GGUF_FILE_TYPES } from "./arch_metadata.ts";
 * GGUF_FILE_TYPES.q8_0; // 7
 * ```
 */
export const GGUF_FILE_TYPES: Readonly<Record<GgufOutType, number>> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  q2_k: 10,
  q3_k: 11,
  q4_k: 14,
  q5_k: 16,
  q6_k: 18,
  iq4_nl: 25,
  iq4_xs: 30,
  iq3_xxs: 23,
  iq3_s: 26,
  tq1_0: 36,
  tq2_0: 37,
  // llama.cpp names no all-MXFP4 file type: MXFP4_MOE (MXFP4 experts) is the nearest.
  mxfp4: 38,
  mxfp4_moe: 38,
  nvfp4: 39,
  q1_0: 40,
  q2_0: 41,
  q3_k_s: 11,
  q3_k_m: 12,
  q3_k_l: 13,
  q4_k_s: 14,
  q4_k_m: 15,
  q5_k_s: 16,
  q5_k_m: 17,
  iq3_xs: 22,
  iq3_m: 27,
  iq2_xxs: 19,
  iq2_xs: 20,
  iq2_s: 28,
  iq2_m: 29,
  iq1_s: 24,
  iq1_m: 31,
  q2_k_s: 21,
};

/** transformers' default `max_position_embeddings` per class. */
const DEFAULT_CONTEXT: Readonly<Record<string, number>> = {
  MixtralForCausalLM: 4096 * 32,
  Qwen2MoeForCausalLM: 32768,
  OlmoeForCausalLM: 4096,
  JambaForCausalLM: 262144,
  Qwen3MoeForCausalLM: 32768,
  GptOssForCausalLM: 131072,
  Glm4MoeForCausalLM: 131072,
  GraniteMoeForCausalLM: 2048,
  GraniteMoeSharedForCausalLM: 2048,
  Ernie4_5_MoeForCausalLM: 131072,
  Ernie4_5ForCausalLM: 131072,
  Dots1ForCausalLM: 2048,
  MiniMaxM2ForCausalLM: 196608,
  HunYuanMoEV1ForCausalLM: 2048,
  ExaoneMoeForCausalLM: 2048,
};

/**
 * Options of {@linkcode ggufArchMetadata}.
 *
 * @example
 * ```ts
 * import type { GgufArchMetadataOptions } from "./arch_metadata.ts";
 * const o: GgufArchMetadataOptions = { type: "q4_k", name: "Mixtral-8x7B" };
 * ```
 */
export interface GgufArchMetadataOptions {
  /** The weights' type, for `general.file_type` (default f32). */
  type?: GgufOutType;
  /** `general.name` (default: config.json's `_name_or_path`, else the architecture). */
  name?: string;
}

/**
 * The metadata pairs llama.cpp's converter writes for `config` (see the
 * module notes for the keys), in its order. Kiln-only settings with no GGUF
 * key (Qwen2-MoE sliding windows, llama3 RoPE, YaRN beyond factor and original
 * context) are refused rather than dropped.
 *
 * @example
 * ```ts
 * import { ggufArchMetadata } from "./arch_metadata.ts";
 * const meta = new Map(ggufArchMetadata({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * }));
 * meta.get("mamba.ssm.inner_size")?.value; // 64
 * ```
 */
export function ggufArchMetadata(
  config: Record<string, unknown>,
  options: GgufArchMetadataOptions = {},
): Array<[string, GgufEntry]> {
  const cfg = parseConfig(config);
  refuseUnwritten(cfg.architecture, cfg.hiddenAct);
  const arch = ggufArchOf(cfg);
  const out: Array<[string, GgufEntry]> = [];
  const put = (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) =>
    out.push([key, { type, value }]);
  const u32 = (key: string, v: number) => put(`${arch}.${key}`, "u32", v);
  const f32 = (key: string, v: number) => put(`${arch}.${key}`, "f32", v);
  const path = typeof config._name_or_path === "string" ? config._name_or_path : "";
  put("general.architecture", "string", arch);
  put("general.type", "string", "model");
  put("general.name", "string", options.name ?? (path.split("/").pop() || cfg.architecture));
  u32("vocab_size", cfg.vocabSize);
  if (arch.startsWith("nemotron_h")) {
    nemotronHKeys(cfg, arch, put);
    return [...out, ...fileKeys(cfg, config, options)];
  }
  const ssm = arch === "mamba" || arch === "mamba2";
  const granite = arch === "granitehybrid";
  const nope = granite && !cfg.attention?.ropeTheta;
  const ctx = ssm || nope ? 2 ** 20 : cfg.maxPositions ?? DEFAULT_CONTEXT[cfg.architecture];
  u32("context_length", ctx);
  u32("embedding_length", cfg.hidden);
  u32("block_count", cfg.layers);
  if (ssm) {
    u32("feed_forward_length", 0);
    u32("attention.head_count", 0);
  } else {
    // Granite's experts' width; a dense Granite's MLP is its shared MLP.
    const expertsWide = granite || arch === "granitemoe";
    u32("feed_forward_length", expertsWide ? cfg.moe?.ff ?? cfg.intermediate : cfg.intermediate);
    u32(
      "attention.head_count",
      cfg.attention?.heads ?? numberField(config, "num_attention_heads", 32),
    );
  }
  if (arch === "olmoe") refuseOlmoeExtras(cfg);
  if (arch === "qwen2moe") refuseQwen2MoeExtras(cfg);
  if (arch === "qwen3moe") refuseQwen3MoeExtras(cfg);
  if (arch === "mamba2") refuseMamba2Extras(cfg);
  if (granite) refuseGraniteExtras(cfg);
  const ernie = arch === "ernie4_5" || arch === "ernie4_5-moe";
  const attn = [
    "llama",
    "qwen2moe",
    "olmoe",
    "qwen3moe",
    "glm4moe",
    "granitemoe",
    "dots1",
    "minimax-m2",
    "hunyuan-moe",
    "exaone-moe",
  ];
  if (attn.includes(arch) || ernie) attentionKeys(cfg, config, arch, ctx, u32, f32, put);
  if (arch === "glm4moe") glm4MoeKeys(cfg, u32, f32, put);
  if (granite) graniteKeys(cfg, config, ctx, u32, f32, put);
  if (arch === "granitemoe") graniteScales(cfg, config, f32);
  if (arch === "gpt-oss") gptOssKeys(cfg, config, ctx, u32, f32, put);
  if (arch === "jamba") {
    const kv = cfg.pattern.map((p) => (p.mixer === "attention" ? cfg.attention!.kvHeads : 0));
    put(`${arch}.attention.head_count_kv`, "array", {
      type: "i32",
      values: kv,
    });
    if (cfg.attention && config.head_dim !== undefined && config.head_dim !== null) {
      u32("attention.key_length", cfg.attention.headDim);
      u32("attention.value_length", cfg.attention.headDim);
    }
  }
  if (cfg.mamba) {
    u32("ssm.conv_kernel", cfg.mamba.convKernel);
    u32("ssm.inner_size", cfg.mamba.inner);
    u32("ssm.state_size", cfg.mamba.stateSize);
    u32("ssm.time_step_rank", cfg.mamba.dtRank);
    if (cfg.mamba.ssd) mamba2Keys(arch, cfg.mamba.ssd, u32, put);
  } else if (arch === "jamba") {
    // A Jamba whose layers are all attention still carries the SSM keys: llama.cpp's
    // jamba loader (and Kiln's reader) require them. JambaConfig's defaults.
    const rank = config.mamba_dt_rank;
    u32("ssm.conv_kernel", numberField(config, "mamba_d_conv", 4));
    u32("ssm.inner_size", numberField(config, "mamba_expand", 2) * cfg.hidden);
    u32("ssm.state_size", numberField(config, "mamba_d_state", 16));
    u32("ssm.time_step_rank", typeof rank === "number" ? rank : Math.ceil(cfg.hidden / 16));
  }
  f32("attention.layer_norm_rms_epsilon", cfg.normEps);
  if (arch === "mamba") put(`${arch}.ssm.dt_b_c_rms`, "bool", !!cfg.mamba?.weightlessNorms);
  // Falcon-Mamba's mixer_rms_eps has no llama.cpp key (its graph runs the inner norms
  // at the layers' epsilon): Kiln's own key keeps it, which llama.cpp ignores.
  const weightless = cfg.mamba?.weightlessNorms;
  if (arch === "mamba" && weightless) f32("ssm.dt_b_c_rms_eps", weightless.eps);
  if (granite) {
    u32("expert_count", cfg.moe?.experts ?? 0);
    u32("expert_used_count", cfg.moe?.topK ?? numberField(config, "num_experts_per_tok", 2));
  } else if (ernie) {
    ernieKeys(cfg, u32);
  } else if (arch === "dots1") {
    dots1Keys(cfg, u32, f32, (key, v) => put(`${arch}.${key}`, "bool", v));
  } else if (arch === "minimax-m2") {
    minimaxM2Keys(cfg, u32);
  } else if (arch === "hunyuan-moe") {
    hunyuanKeys(cfg, u32);
  } else if (arch === "exaone-moe") {
    exaoneMoeKeys(
      cfg,
      u32,
      f32,
      (key, type, value) => put(`${arch}.${key}`, type, value as GgufEntry["value"]),
    );
  } else if (!ssm) {
    u32("expert_count", cfg.moe?.experts ?? numberField(config, "num_experts", 16));
    u32("expert_used_count", cfg.moe?.topK ?? numberField(config, "num_experts_per_tok", 2));
  }
  if (arch === "granitemoe" && cfg.moe?.sharedExpert) {
    u32("expert_shared_feed_forward_length", cfg.moe.sharedExpert.ff);
  }
  if ((arch === "qwen2moe" || arch === "qwen3moe") && cfg.moe) {
    u32("expert_feed_forward_length", cfg.moe.ff ?? cfg.intermediate);
    if (cfg.moe.sharedExpert) {
      u32("expert_shared_feed_forward_length", cfg.moe.sharedExpert.ff);
    }
  }
  return [...out, ...fileKeys(cfg, config, options)];
}

/** The keys every file ends with: its type, and the token ids config.json names. */
function fileKeys(
  cfg: ModelConfig,
  config: Record<string, unknown>,
  options: GgufArchMetadataOptions,
): Array<[string, GgufEntry]> {
  const out: Array<[string, GgufEntry]> = [];
  const put = (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) =>
    out.push([key, { type, value }]);
  put("general.file_type", "u32", GGUF_FILE_TYPES[options.type ?? "f32"]);
  put("general.quantization_version", "u32", 2);
  if (cfg.bosTokenId !== undefined) put("tokenizer.ggml.bos_token_id", "u32", cfg.bosTokenId);
  if (cfg.eosTokenIds.length > 0) put("tokenizer.ggml.eos_token_id", "u32", cfg.eosTokenIds[0]);
  const pad = config.pad_token_id;
  if (typeof pad === "number" && Number.isSafeInteger(pad) && pad >= 0) {
    put("tokenizer.ggml.padding_token_id", "u32", pad);
  }
  return out;
}

/**
 * OLMoE settings llama.cpp's olmoe graph does not compute (it has no biases, no
 * clamp, no renormalised top-k, and q/k norms as wide as the hidden size): a
 * file written with them would run as a different model there.
 */
function refuseOlmoeExtras(cfg: ModelConfig): void {
  const a = cfg.attention!;
  const extra = cfg.moe?.normTopk
    ? "norm_topk_prob true"
    : a.clipQkv
    ? `clip_qkv ${a.clipQkv}`
    : a.qkvBias || a.outBias
    ? "attention_bias true"
    : a.kvHeads !== a.heads
    ? `num_key_value_heads ${a.kvHeads} (≠ num_attention_heads ${a.heads})`
    : undefined;
  if (extra) {
    throw new TypeError(
      `config.json: OLMoE with ${extra} has no GGUF form: llama.cpp's olmoe graph computes ` +
        "without it (no biases, no clip_qkv, top-k weights not renormalised, q/k norms as " +
        "wide as the hidden size)",
    );
  }
}

/**
 * Qwen2-MoE settings llama.cpp's qwen2moe model cannot hold (`src/models/qwen2moe.cpp`):
 * `load_arch_tensors` creates a router, routed experts and a gated shared expert in
 * every block (none optional), and the graph passes norm_w = false to
 * `build_moe_ffn` without reading `expert_weights_norm`. A file with dense blocks or
 * no shared expert would not load there; one with renormalised top-k weights would
 * load and compute a different model.
 */
function refuseQwen2MoeExtras(cfg: ModelConfig): void {
  const dense = cfg.pattern.map((p, i) => (p.ffn === "moe" ? -1 : i)).filter((i) => i >= 0);
  const extra = cfg.moe?.normTopk
    ? "norm_topk_prob true (llama.cpp's qwen2moe graph never renormalises the top-k weights)"
    : dense.length > 0
    ? `dense (non-MoE) layers ${dense.join(", ")} (mlp_only_layers / decoder_sparse_step; ` +
      "llama.cpp's qwen2moe needs a router in every block)"
    : !cfg.moe?.sharedExpert
    ? "no shared expert (shared_expert_intermediate_size 0; llama.cpp's qwen2moe needs one " +
      "in every block)"
    : undefined;
  if (extra) {
    throw new TypeError(`config.json: Qwen2-MoE with ${extra} has no GGUF form`);
  }
}

/**
 * Qwen3-MoE settings llama.cpp's qwen3moe model cannot hold
 * (`src/models/qwen3moe.cpp`): a router and routed experts in every block, no
 * attention biases, and a graph that always renormalises the top-k weights
 * (norm_w = true). A file written otherwise would not load there, or would
 * compute a different model.
 */
function refuseQwen3MoeExtras(cfg: ModelConfig): void {
  const a = cfg.attention!;
  const dense = cfg.pattern.map((p, i) => (p.ffn === "moe" ? -1 : i)).filter((i) => i >= 0);
  const extra = !cfg.moe?.normTopk
    ? "norm_topk_prob false (llama.cpp's qwen3moe graph always renormalises the top-k weights)"
    : dense.length > 0
    ? `dense (non-MoE) layers ${dense.join(", ")} (mlp_only_layers / decoder_sparse_step; ` +
      "llama.cpp's qwen3moe needs a router in every block)"
    : a.qkvBias || a.outBias
    ? "attention_bias true (llama.cpp's qwen3moe projections have no biases)"
    : undefined;
  if (extra) {
    throw new TypeError(`config.json: Qwen3-MoE with ${extra} has no GGUF form`);
  }
}

/**
 * Mamba-2 configs whose GGUF form llama.cpp could not load: its `mamba2`
 * projections have no biases and its conv always has one.
 */
function refuseMamba2Extras(cfg: ModelConfig): void {
  const m = cfg.mamba!;
  const extra = m.projBias
    ? "use_bias true (llama.cpp's mamba2 projections have no biases)"
    : !m.convBias
    ? "use_conv_bias false (llama.cpp's mamba2 needs ssm_conv1d.bias)"
    : undefined;
  if (extra) throw new TypeError(`config.json: Mamba-2 with ${extra} has no GGUF form`);
}

/**
 * `ssm.group_count`, and Kiln's own keys (llama.cpp ignores them) for what
 * transformers computes and llama.cpp does not: the gated norm over all
 * channels (`ssm.norm_group_count`: llama.cpp normalises each B/C group) and
 * a Δ limit (`ssm.time_step_limit`).
 */
function mamba2Keys(
  arch: string,
  ssd: MambaSsdConfig,
  u32: (key: string, v: number) => void,
  put: (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) => void,
): void {
  u32("ssm.group_count", ssd.groups);
  if (ssd.normGroups !== ssd.groups) u32("ssm.norm_group_count", ssd.normGroups);
  if (clampsDelta(ssd.dtLimit)) {
    put(`${arch}.ssm.time_step_limit`, "array", { type: "f32", values: [...ssd.dtLimit] });
  }
}

/**
 * Granite hybrids llama.cpp's granitehybrid could not load
 * (`src/llama-model.cpp`): its Mamba-2 layers have no projection biases and
 * an inner width of exactly twice the model's; a model without Mamba layers is
 * what its converter writes as `granite` / `granitemoe` from Granite 3's own
 * classes (Kiln writes `granitemoe` for `GraniteMoeForCausalLM` and
 * `GraniteMoeSharedForCausalLM` configs, not for a hybrid's).
 */
function refuseGraniteExtras(cfg: ModelConfig): void {
  const m = cfg.mamba;
  const extra = !m
    ? "no Mamba layer (llama.cpp's converter writes it as granite or granitemoe)"
    : m.projBias
    ? "mamba_proj_bias true (llama.cpp's granitehybrid projections have no biases)"
    : m.inner !== 2 * cfg.hidden
    ? `mamba_expand ${m.inner / cfg.hidden} (llama.cpp's granitehybrid needs 2)`
    : undefined;
  if (extra) throw new TypeError(`config.json: a Granite hybrid with ${extra} has no GGUF form`);
}

/** Attention (per-layer KV heads, RoPE or none), μP scales and the shared MLP of `granitehybrid`. */
function graniteKeys(
  cfg: ModelConfig,
  config: Record<string, unknown>,
  ctx: number,
  u32: (key: string, v: number) => void,
  f32: (key: string, v: number) => void,
  put: (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) => void,
): void {
  const a = cfg.attention;
  const kv = cfg.pattern.map((p) => (p.mixer === "attention" ? a!.kvHeads : 0));
  if (a) attentionKeys(cfg, config, "granitehybrid", ctx, u32, f32, put, kv);
  else put("granitehybrid.attention.head_count_kv", "array", { type: "i32", values: kv });
  graniteScales(cfg, config, f32);
  u32("expert_shared_feed_forward_length", cfg.moe?.sharedExpert?.ff ?? cfg.intermediate);
  put("granitehybrid.rope.scaling.finetuned", "bool", !!a?.ropeTheta);
}

/** Granite's μP constants (`granitehybrid`, `granitemoe`). */
function graniteScales(
  cfg: ModelConfig,
  config: Record<string, unknown>,
  f32: (key: string, v: number) => void,
): void {
  const s = cfg.scaling ?? { embedding: 1, residual: 1, logits: 1 };
  f32("attention.scale", cfg.attention?.scale ?? numberField(config, "attention_multiplier", 1));
  f32("embedding_scale", s.embedding);
  f32("residual_scale", s.residual);
  f32("logit_scale", s.logits);
}

function numberField(config: Record<string, unknown>, name: string, fallback: number): number {
  const v = config[name];
  return typeof v === "number" ? v : fallback;
}

/**
 * Heads, head size, RoPE and sliding window of `llama`, `qwen2moe`, `olmoe` and
 * `granitehybrid` (whose KV heads are per layer: `kvPerLayer`).
 */
function attentionKeys(
  cfg: ModelConfig,
  config: Record<string, unknown>,
  arch: string,
  ctx: number,
  u32: (key: string, v: number) => void,
  f32: (key: string, v: number) => void,
  put: (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) => void,
  kvPerLayer?: number[],
): void {
  const a = cfg.attention!;
  if (kvPerLayer) {
    put(`${arch}.attention.head_count_kv`, "array", { type: "i32", values: kvPerLayer });
  } else u32("attention.head_count_kv", a.kvHeads);
  // A Granite without RoPE still carries llama's base (10000), as its converter writes.
  f32("rope.freq_base", a.ropeTheta || 10000);
  if (arch === "llama" || arch === "granitehybrid" || arch === "granitemoe") {
    u32("rope.dimension_count", a.headDim);
  }
  if (
    (config.head_dim !== undefined && config.head_dim !== null) ||
    a.headDim * a.heads !== cfg.hidden
  ) {
    u32("attention.key_length", a.headDim);
    u32("attention.value_length", a.headDim);
  }
  // Hunyuan-A13B's NTK-alpha RoPE is its base up to the context (llama.cpp's converter
  // writes it so); other dynamic RoPEs, rescaled past the context, are refused below.
  const ntkAlpha = arch === "hunyuan-moe" && a.rope?.type === "dynamic" && a.rope.factor === 1;
  const rope = ntkAlpha ? undefined : a.rope;
  if (rope) {
    const extra = rope.attentionFactor ?? rope.betaFast ?? rope.betaSlow ?? rope.mscale ??
      rope.mscaleAllDim;
    if (arch === "llama" && ropeDivisors(a.headDim, rope) !== undefined) {
      // llama3, or per-frequency divisors: the rope_freqs.weight tensor carries them.
    } else if (rope.type === "linear") {
      put(`${arch}.rope.scaling.type`, "string", "linear");
      f32("rope.scaling.factor", rope.factor);
    } else if (rope.type === "yarn" && extra === undefined && rope.truncate !== false) {
      put(`${arch}.rope.scaling.type`, "string", "yarn");
      f32("rope.scaling.factor", rope.factor);
      u32("rope.scaling.original_context_length", rope.originalMaxPositions ?? ctx);
    } else {
      throw new TypeError(
        `config.json: ${rope.type} RoPE scaling${
          extra !== undefined ? " with these parameters" : ""
        } ` +
          "has no GGUF form Kiln writes (linear, and yarn with only factor and " +
          "original_max_position_embeddings)",
      );
    }
  }
  const windows = cfg.pattern.map((p) => p.window ?? a.slidingWindow);
  // K-EXAONE's window and pattern are its own keys (arch_exaone_moe.ts).
  if (windows.some((w) => w > 0) && arch !== "exaone-moe") {
    if (arch !== "llama" || windows.some((w) => w !== windows[0])) {
      throw new TypeError(
        `config.json: ${cfg.architecture} with sliding-window layers has no GGUF form ` +
          `(llama.cpp's ${arch} attends over the whole context)`,
      );
    }
    u32("attention.sliding_window", windows[0]);
  }
}
