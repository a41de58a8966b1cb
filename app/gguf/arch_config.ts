/**
 * A GGUF file's metadata (and which tensors it holds) as the Hugging Face
 * `config.json` of the same model, for the architectures Kiln runs.
 *
 * Keys read, as llama.cpp's loader reads them (`src/llama-model.cpp`
 * `load_hparams`, `src/models/<arch>.cpp` `load_arch_hparams`):
 *
 * - every architecture: `<arch>.block_count`, `.embedding_length`,
 *   `.context_length`, `.attention.layer_norm_rms_epsilon` (required);
 *   `.vocab_size` (else the rows of `token_embd.weight`, else the length of
 *   `tokenizer.ggml.tokens`); `tokenizer.ggml.bos_token_id` / `eos_token_id`;
 *   `tokenizer.ggml.padding_token_id` (config.json's `pad_token_id`); no
 *   `output.weight` means tied embeddings;
 * - `llama` (read only as Mixtral: `.expert_count` > 0): `.feed_forward_length`,
 *   `.attention.head_count`, `.attention.head_count_kv` (default: head_count),
 *   `.attention.key_length` (head_dim), `.rope.dimension_count` (must equal the
 *   head size), `.rope.freq_base` (default 10000, llama.cpp's),
 *   `.rope.scaling.*` (linear, yarn), `.expert_count`, `.expert_used_count`,
 *   `.attention.sliding_window` (Kiln's own addition; llama.cpp ignores it);
 * - `qwen2moe`: as llama, plus `.expert_feed_forward_length` (default
 *   feed_forward_length / expert_used_count, llama.cpp's),
 *   `.expert_shared_feed_forward_length` (default feed_forward_length when the
 *   shared-expert tensors exist); `.expert_weights_norm` is ignored, as
 *   llama.cpp ignores it (its qwen2moe graph never renormalises); q/k/v biases and dense
 *   layers (`mlp_only_layers`) from the tensors present;
 * - `qwen3moe`: as qwen2moe without the shared expert; per-head QK-norm, no
 *   biases, top-k weights renormalised (llama.cpp's qwen3moe graph);
 * - `olmoe`: as llama (`.feed_forward_length` is the experts' width); QK-norm
 *   from `attn_q_norm`/`attn_k_norm`, no biases, no `clip_qkv`, top-k weights
 *   not renormalised (llama.cpp's olmoe graph);
 * - `mamba`: `.ssm.conv_kernel`, `.ssm.inner_size`, `.ssm.state_size`,
 *   `.ssm.time_step_rank` (required), `.ssm.dt_b_c_rms` (true: Falcon-Mamba,
 *   its inner norms at Kiln's `.ssm.dt_b_c_rms_eps`, else at the layers'
 *   epsilon, as llama.cpp computes them);
 *   biases from the tensors present;
 *   `.context_length` is ignored (the converter writes 2^20, "arbitrary");
 * - `granite` (Granite 3's dense models, `GraniteForCausalLM`): read as a
 *   granitehybrid file of attention layers only, without experts;
 * - `granitehybrid`: layer kinds from the per-layer `.attention.head_count_kv`
 *   (0: Mamba-2), the Mamba-2 keys as for mamba2, `.expert_count` (0: every
 *   FFN is the shared MLP, `.feed_forward_length` wide; else the experts'
 *   width, with `.expert_shared_feed_forward_length`), `.attention.scale`
 *   (absent or 0: 1/√head size, llama.cpp's), `.embedding_scale`,
 *   `.residual_scale`, `.logit_scale` (absent or 0: none), and RoPE only when
 *   `.rope.scaling.finetuned` is true or absent (llama.cpp's switch);
 * - `nemotron_h`, `nemotron_h_moe` (Nemotron-H, Nemotron 3): see
 *   `arch_config_nemotron_h.ts` (block kinds from the per-layer keys);
 * - `gpt-oss` (GPT-OSS): see `arch_config_gpt_oss.ts` (heads, the experts'
 *   width, the sliding-window pattern llama.cpp assumes, yarn as ggml computes it);
 * - `glm4moe` (GLM-4.5): heads and RoPE as llama, the rest in
 *   `arch_config_glm4_moe.ts` (partial RoPE, MTP blocks, sigmoid routing);
 * - `ernie4_5`, `ernie4_5-moe` (ERNIE 4.5): heads and RoPE as llama, the rest
 *   in `arch_config_ernie.ts` (MoE step and leading dense blocks, shared experts);
 * - `dots1` (dots.llm1): heads and RoPE as llama, the rest in `arch_dots1.ts`
 *   (sigmoid routing with groups, shared experts, leading dense blocks);
 * - `minimax-m2` (MiniMax-M2): heads and RoPE as llama, the rest in
 *   `arch_minimax_m2.ts` (partial RoPE, sigmoid routing);
 * - `hunyuan-moe` (Hunyuan-A13B): heads and RoPE as llama (the NTK-alpha base
 *   as the base), the rest in `arch_hunyuan.ts` (experts, shared MLP);
 * - `exaone-moe` (K-EXAONE): heads and RoPE as llama, the rest in
 *   `arch_exaone_moe.ts` (sliding pattern, grouped sigmoid routing, MTP blocks);
 * - `jamba`: the SSM keys, `.feed_forward_length`, `.attention.head_count`,
 *   `.attention.head_count_kv` (one value per layer, 0 for Mamba layers),
 *   `.expert_count`, `.expert_used_count`; `attn_layer_period/offset` and
 *   `expert_layer_period/offset` rebuilt from which layers have attention
 *   (head_count_kv > 0) and MoE (`ffn_gate_inp`) tensors.
 *
 * Fields GGUF does not carry take transformers' defaults for the class
 * (`hidden_act` silu, `router_aux_loss_coef`, Mamba's `time_step_*`
 * initialisation settings). f32 values are written back as the shortest
 * decimal that rounds to the same f32 (1e-5, not 9.99999974e-6).
 *
 * @module
 */

import { MAX_LAYERS } from "../../models/architectures/common.ts";
import { quote } from "../safetensors/header.ts";
import type { GgufMetadata } from "./metadata.ts";
import type { GgufTensorInfo } from "./types.ts";
import { GGUF_ARCHITECTURES } from "./arch_names.ts";
import { attentionLayers, Keys } from "./arch_keys.ts";
export { f32Decimal } from "./arch_keys.ts";
import { graniteConfig, graniteMoeConfig } from "./arch_config_granite.ts";
import { nemotronHConfig } from "./arch_config_nemotron_h.ts";
import { gptOssConfig } from "./arch_config_gpt_oss.ts";
import { glm4MoeConfig } from "./arch_config_glm4_moe.ts";
import { deepseek2Config } from "./arch_config_deepseek2.ts";
import { ernieConfig } from "./arch_config_ernie.ts";
import { dots1Config } from "./arch_dots1.ts";
import { minimaxM2Config } from "./arch_minimax_m2.ts";
import { hunyuanConfig } from "./arch_hunyuan.ts";
import { exaoneMoeConfig } from "./arch_exaone_moe.ts";

type Json = Record<string, unknown>;

/**
 * The Hugging Face architecture and `config.json` object of GGUF metadata `m`
 * (with its tensor table, from which biases, tied embeddings and layer kinds
 * are read). A missing required key is a `RangeError` naming it; an
 * architecture Kiln does not run a `TypeError` naming it and those it runs.
 *
 * @example
 * ```ts
 * import { GgufMetadata } from "./metadata.ts";
 * import type { GgufEntry } from "./value.ts";
 * import { hfConfigFromGguf } from "./arch_config.ts";
 * const u32 = (value: number): GgufEntry => ({ type: "u32", value });
 * const m = new GgufMetadata("m.gguf", new Map<string, GgufEntry>([
 *   ["general.architecture", { type: "string", value: "mamba" }],
 *   ["mamba.block_count", u32(2)], ["mamba.embedding_length", u32(32)],
 *   ["mamba.context_length", u32(1048576)], ["mamba.vocab_size", u32(64)],
 *   ["mamba.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
 *   ["mamba.ssm.conv_kernel", u32(4)], ["mamba.ssm.inner_size", u32(64)],
 *   ["mamba.ssm.state_size", u32(16)], ["mamba.ssm.time_step_rank", u32(2)],
 * ]));
 * hfConfigFromGguf(m, new Map()).config.state_size; // 16
 * ```
 */
export function hfConfigFromGguf(
  m: GgufMetadata,
  tensors: ReadonlyMap<string, GgufTensorInfo>,
  ropeFreqs?: Float32Array,
): { architecture: string; config: Json } {
  const arch = m.string("general.architecture");
  if (!GGUF_ARCHITECTURES.includes(arch)) {
    throw new TypeError(
      `${m.path}: general.architecture ${quote(arch)} is not supported (Kiln reads ` +
        `${GGUF_ARCHITECTURES.join(", ")}; "llama" only with experts, as Mixtral)`,
    );
  }
  const k = new Keys(m, arch, tensors);
  const L = k.num("block_count");
  // Checked before anything loops over the layers (a u32 block count can ask for 2^32).
  if (!Number.isInteger(L) || L < 1 || L > MAX_LAYERS) {
    throw new RangeError(
      `${m.path}: metadata ${quote(k.key("block_count"))} is ${L}, expected a number of ` +
        `layers from 1 to ${MAX_LAYERS}`,
    );
  }
  const H = k.num("embedding_length");
  const ctx = k.num("context_length");
  // llama.cpp's converter writes Nemotron-H's epsilon as layer_norm_epsilon (its loader
  // reads the rms key, which Kiln writes beside it).
  const rmsEps = "attention.layer_norm_rms_epsilon";
  const eps = arch.startsWith("nemotron_h") && k.opt(rmsEps) === undefined
    ? k.num("attention.layer_norm_epsilon")
    : k.num(rmsEps);
  const vocab = k.opt("vocab_size") ?? tensors.get("token_embd.weight")?.shape[0] ??
    m.optionalArray("tokenizer.ggml.tokens")?.values.length;
  if (vocab === undefined) {
    throw new RangeError(
      `${m.path}: no vocabulary size: metadata ${quote(k.key("vocab_size"))}, tensor ` +
        `"token_embd.weight" and "tokenizer.ggml.tokens" are all missing`,
    );
  }
  const common: Json = {
    vocab_size: vocab,
    hidden_size: H,
    num_hidden_layers: L,
    hidden_act: "silu",
    tie_word_embeddings: !tensors.has("output.weight"),
  };
  // An absent id is null here, not left out: a config class's defaults (Mixtral's
  // eos 2) mean nothing for a GGUF vocabulary; its tokenizer has llama.cpp's own.
  for (const id of ["bos", "eos"]) {
    common[`${id}_token_id`] = m.optionalNumber(`tokenizer.ggml.${id}_token_id`) ?? null;
  }
  // The embedding's padding_idx in training (no gradient to its row) is the pad id.
  common.pad_token_id = m.optionalNumber("tokenizer.ggml.padding_token_id") ?? null;
  let config: Json;
  if (arch === "mamba") config = mambaConfig(k, common, H, eps);
  else if (arch.startsWith("nemotron_h")) config = nemotronHConfig(k, L, H, common, eps);
  else if (arch === "mamba2") config = mamba2Config(k, common, H, eps);
  else if (arch === "jamba") config = { ...jambaConfig(k, common, L, H), rms_norm_eps: eps };
  else if (arch === "gpt-oss") {
    config = { ...gptOssConfig(k, L, H, ctx), ...common, rms_norm_eps: eps };
  } else if (arch === "glm4moe") {
    const headDim = k.opt("attention.key_length") ?? H / k.num("attention.head_count");
    config = {
      ...attentionConfig(k, H, undefined, true),
      ...common,
      // After common: its layer count leaves out the multi-token-prediction blocks.
      ...glm4MoeConfig(k, L, headDim),
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "ernie4_5" || arch === "ernie4_5-moe") {
    config = {
      ...ernieConfig(k, attentionConfig(k, H, ropeFreqs), L, H),
      ...common,
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "dots1") {
    config = {
      ...attentionConfig(k, H, ropeFreqs),
      ...common,
      ...dots1Config(k),
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "minimax-m2") {
    const headDim = k.opt("attention.key_length") ?? H / k.num("attention.head_count");
    config = {
      ...attentionConfig(k, H, ropeFreqs, true),
      ...common,
      ...minimaxM2Config(k, headDim),
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "hunyuan-moe") {
    const headDim = k.opt("attention.key_length") ?? H / k.num("attention.head_count");
    config = {
      ...attentionConfig(k, H, ropeFreqs),
      ...common,
      ...hunyuanConfig(k, headDim),
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "exaone-moe") {
    config = {
      ...attentionConfig(k, H, ropeFreqs),
      ...common,
      // After common: its layer count leaves out the multi-token-prediction blocks.
      ...exaoneMoeConfig(k, L),
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "deepseek2") {
    const nextn = k.opt("nextn_predict_layers") ?? 0;
    config = {
      ...deepseek2Config(k, attentionConfig(k, H, undefined, true)),
      ...common,
      // Multi-token-prediction blocks, where a converter writes them, follow the model's.
      num_hidden_layers: L - nextn,
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "granitemoe") {
    config = {
      ...graniteMoeConfig(k, attentionConfig(k, H, ropeFreqs)),
      ...common,
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  } else if (arch === "granitehybrid" || arch === "granite") {
    // llama.cpp's switch for RoPE (absent: on); without it the base and context mean nothing.
    const rope = k.m.optionalBool(k.key("rope.scaling.finetuned")) !== false;
    config = {
      ...(rope ? { ...attentionConfig(k, H, ropeFreqs), max_position_embeddings: ctx } : {}),
      ...graniteConfig(k, L, H, rope),
      ...common,
      rms_norm_eps: eps,
    };
  } else {
    const family = arch === "llama"
      ? mixtralConfig(k)
      : arch === "olmoe"
      ? olmoeConfig(k)
      : arch === "qwen3moe"
      ? qwen3MoeConfig(k, L)
      : qwen2MoeConfig(k, L);
    config = {
      ...family,
      ...attentionConfig(k, H, ropeFreqs),
      ...common,
      max_position_embeddings: ctx,
      rms_norm_eps: eps,
    };
  }
  if (arch === "jamba") config.max_position_embeddings = ctx;
  const groups = k.opt("expert_group_count") ?? 0;
  // The architectures whose transformers classes limit routing to the best groups.
  const grouped = ["glm4moe", "deepseek2", "nemotron_h_moe", "dots1", "exaone-moe"];
  if (!grouped.includes(arch) && groups > 1) {
    // llama.cpp's build_moe_ffn limits any architecture's routing to the best groups.
    throw new TypeError(
      `${m.path}: metadata ${quote(k.key("expert_group_count"))} is ${groups}: ` +
        `group-limited routing is implemented for ${grouped.join(", ")}, not ${arch}`,
    );
  }
  return { architecture: arch, config };
}

/**
 * Heads, head size and RoPE of `llama`, `qwen2moe`, `olmoe` and `glm4moe`
 * (`partial`: a rotary count below the head size is the family's to read).
 */
function attentionConfig(k: Keys, H: number, ropeFreqs?: Float32Array, partial = false): Json {
  const heads = k.num("attention.head_count");
  // Per-layer counts (hybrids) are read by the family's own reader.
  const perLayer = k.m.type(k.key("attention.head_count_kv")) === "array";
  const kv = perLayer ? heads : k.opt("attention.head_count_kv") ?? heads;
  const keyLength = k.opt("attention.key_length");
  const headDim = keyLength ?? H / heads;
  const rot = k.opt("rope.dimension_count");
  if (!partial && rot !== undefined && rot !== headDim) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("rope.dimension_count"))} is ${rot} but the head ` +
        `size is ${headDim}: partial rotary embeddings are not supported`,
    );
  }
  const out: Json = {
    num_attention_heads: heads,
    num_key_value_heads: kv,
    rope_theta: k.opt("rope.freq_base") ?? 10000,
  };
  if (keyLength !== undefined) out.head_dim = keyLength;
  const scaling = k.m.optionalString(k.key("rope.scaling.type"));
  if (ropeFreqs) {
    // llama.cpp divides frequency i by rope_freqs[i] (its converter's form of llama3
    // scaling): longrope's formula with one list for every length and no attention
    // factor. llama.cpp would also apply a linear factor; no converter writes both.
    if (ropeFreqs.length !== headDim / 2) {
      throw new RangeError(
        `${k.m.path}: tensor "rope_freqs.weight" has ${ropeFreqs.length} factors, expected ` +
          `one per rotary pair (${headDim / 2})`,
      );
    }
    if (scaling !== undefined && scaling !== "none") {
      throw new TypeError(
        `${k.m.path}: tensor "rope_freqs.weight" together with metadata ` +
          `${quote(k.key("rope.scaling.type"))} ${quote(scaling)} is not supported`,
      );
    }
    const factors = Array.from(ropeFreqs);
    out.rope_scaling = {
      rope_type: "longrope",
      short_factor: factors,
      long_factor: factors,
      attention_factor: 1,
      original_max_position_embeddings: k.num("context_length"),
    };
    return out;
  }
  // llama.cpp (`load_hparams`) reads the factor from `rope.scaling.factor`, else the
  // older `rope.scale_linear`, and takes 0 (or no key) as "no scaling": freq_scale 1.
  const raw = k.opt("rope.scaling.factor") ?? k.opt("rope.scale_linear");
  const factor = raw === 0 ? undefined : raw;
  if (scaling === "linear" && (factor === undefined || factor === 1)) {
    // Linear scaling by 1 is no scaling at all.
  } else if (
    scaling === "linear" || (scaling === undefined && factor !== undefined && factor !== 1)
  ) {
    out.rope_scaling = { rope_type: "linear", factor };
  } else if (scaling === "yarn") {
    // An original context equal to context_length is transformers' default for yarn.
    const original = k.num("rope.scaling.original_context_length");
    out.rope_scaling = {
      rope_type: "yarn",
      factor: k.num("rope.scaling.factor"),
      ...(original !== k.num("context_length")
        ? { original_max_position_embeddings: original }
        : {}),
    };
  } else if (scaling !== undefined && scaling !== "none") {
    throw new TypeError(
      `${k.m.path}: metadata ${quote(k.key("rope.scaling.type"))} is ${quote(scaling)}; ` +
        'Kiln reads "none", "linear" and "yarn"',
    );
  }
  return out;
}

/** `llama` with experts: Mixtral. */
function mixtralConfig(k: Keys): Json {
  const experts = k.opt("expert_count") ?? 0;
  if (!(experts > 0)) {
    throw new TypeError(
      `${k.m.path}: general.architecture "llama" without experts (${
        quote(k.key("expert_count"))
      } is ${k.m.has(k.key("expert_count")) ? experts : "missing"}) is a dense Llama, which ` +
        'Kiln does not run; a "llama" GGUF is read only as Mixtral (expert_count > 0)',
    );
  }
  const window = k.opt("attention.sliding_window");
  return {
    architectures: ["MixtralForCausalLM"],
    model_type: "mixtral",
    intermediate_size: k.num("feed_forward_length"),
    num_local_experts: experts,
    num_experts_per_tok: k.num("expert_used_count"),
    sliding_window: window && window > 0 ? window : null,
  };
}

/** `qwen2moe`: Qwen2-MoE; dense layers are those without a router. */
function qwen2MoeConfig(k: Keys, L: number): Json {
  const ff = k.num("feed_forward_length");
  const used = k.num("expert_used_count");
  const sparse = new Set(k.moeLayers(L));
  const dense = Array.from({ length: L }, (_, i) => i).filter((i) => !sparse.has(i));
  const first = sparse.size > 0 ? [...sparse][0] : 0;
  const hasShared = k.has(`blk.${first}.ffn_gate_shexp.weight`);
  return {
    architectures: ["Qwen2MoeForCausalLM"],
    model_type: "qwen2_moe",
    intermediate_size: ff,
    num_experts: k.num("expert_count"),
    num_experts_per_tok: used,
    moe_intermediate_size: k.opt("expert_feed_forward_length") ?? Math.floor(ff / used),
    shared_expert_intermediate_size: k.opt("expert_shared_feed_forward_length") ??
      (hasShared ? ff : 0),
    // llama.cpp's qwen2moe graph never renormalises the top-k weights (its
    // build_moe_ffn call passes norm_w = false) and never reads
    // `qwen2moe.expert_weights_norm`, so the file means false whatever that key says.
    norm_topk_prob: false,
    qkv_bias: k.has("blk.0.attn_q.bias"),
    decoder_sparse_step: 1,
    mlp_only_layers: dense,
    use_sliding_window: false,
  };
}

/**
 * `qwen3moe`: Qwen3-MoE. llama.cpp's qwen3moe graph has per-head QK-norm, no
 * biases, and always renormalises the top-k weights; dense layers are those
 * without a router (which llama.cpp itself would not load).
 */
function qwen3MoeConfig(k: Keys, L: number): Json {
  const ff = k.num("feed_forward_length");
  const used = k.num("expert_used_count");
  const sparse = new Set(k.moeLayers(L));
  return {
    architectures: ["Qwen3MoeForCausalLM"],
    model_type: "qwen3_moe",
    intermediate_size: ff,
    num_experts: k.num("expert_count"),
    num_experts_per_tok: used,
    moe_intermediate_size: k.opt("expert_feed_forward_length") ?? Math.floor(ff / used),
    norm_topk_prob: true,
    attention_bias: false,
    decoder_sparse_step: 1,
    mlp_only_layers: Array.from({ length: L }, (_, i) => i).filter((i) => !sparse.has(i)),
    use_sliding_window: false,
  };
}

/**
 * `olmoe`: OLMoE. llama.cpp's olmoe graph has QK-norm, no biases, no clip_qkv
 * and never renormalises the top-k weights, so those are what the file means.
 */
function olmoeConfig(k: Keys): Json {
  return {
    architectures: ["OlmoeForCausalLM"],
    model_type: "olmoe",
    intermediate_size: k.num("feed_forward_length"),
    num_experts: k.num("expert_count"),
    num_experts_per_tok: k.num("expert_used_count"),
    norm_topk_prob: false,
    clip_qkv: null,
    attention_bias: false,
  };
}

/**
 * `mamba`: Mamba 1, or with `.ssm.dt_b_c_rms` Falcon-Mamba, whose weightless
 * norms on Δ, B and C llama.cpp computes with the layers' epsilon (its graph has
 * no other): that is the file's `mixer_rms_eps`, unless Kiln's own
 * `.ssm.dt_b_c_rms_eps` (written by `kiln quantize`) keeps the model's.
 */
function mambaConfig(k: Keys, common: Json, H: number, eps: number): Json {
  const falcon = k.m.optionalBool(k.key("ssm.dt_b_c_rms")) === true;
  const inner = k.num("ssm.inner_size");
  const out: Json = {
    architectures: [falcon ? "FalconMambaForCausalLM" : "MambaForCausalLM"],
    model_type: falcon ? "falcon_mamba" : "mamba",
    ...(falcon ? { mixer_rms_eps: k.opt("ssm.dt_b_c_rms_eps") ?? eps } : {}),
    ...common,
    intermediate_size: inner,
    state_size: k.num("ssm.state_size"),
    conv_kernel: k.num("ssm.conv_kernel"),
    time_step_rank: k.num("ssm.time_step_rank"),
    layer_norm_epsilon: eps,
    use_bias: k.has("blk.0.ssm_in.bias"),
    use_conv_bias: k.has("blk.0.ssm_conv1d.bias"),
  };
  if (Number.isInteger(inner / H)) out.expand = inner / H;
  return out;
}

/**
 * `mamba2`: heads from `ssm.time_step_rank`. The gated norm spans
 * `ssm.group_count` groups, as llama.cpp computes it, unless Kiln's own
 * `ssm.norm_group_count` says otherwise (files Kiln wrote from a transformers
 * checkpoint: 1); Kiln's `ssm.time_step_limit` restores a Δ limit.
 */
function mamba2Config(k: Keys, common: Json, H: number, eps: number): Json {
  const inner = k.num("ssm.inner_size"), heads = k.num("ssm.time_step_rank");
  const groups = k.num("ssm.group_count");
  if (!(heads >= 1) || !Number.isInteger(inner / heads)) {
    throw new RangeError(
      `${k.m.path}: metadata ${quote(k.key("ssm.inner_size"))} ${inner} is not a multiple of ` +
        `${quote(k.key("ssm.time_step_rank"))} ${heads} (Mamba-2's heads)`,
    );
  }
  const limit = k.m.optionalArray(k.key("ssm.time_step_limit"))?.values;
  return {
    architectures: ["Mamba2ForCausalLM"],
    model_type: "mamba2",
    ...common,
    num_heads: heads,
    head_dim: inner / heads,
    n_groups: groups,
    expand: inner / H,
    state_size: k.num("ssm.state_size"),
    conv_kernel: k.num("ssm.conv_kernel"),
    layer_norm_epsilon: eps,
    use_bias: k.has("blk.0.ssm_in.bias"),
    use_conv_bias: k.has("blk.0.ssm_conv1d.bias"),
    kiln_norm_groups: k.opt("ssm.norm_group_count") ?? groups,
    ...(limit ? { time_step_limit: limit } : {}),
  };
}

/** `jamba`: layer kinds from head_count_kv and the routers present. */
function jambaConfig(k: Keys, common: Json, L: number, H: number): Json {
  const heads = k.num("attention.head_count");
  // One value per layer says which layers attend (0: Mamba); a single value (or
  // none) says nothing about that, and the tensors do.
  const { attn, kv } = attentionLayers(k, L);
  const moe = k.moeLayers(L);
  const inner = k.num("ssm.inner_size");
  if (!Number.isInteger(inner / H)) {
    throw new RangeError(
      `${k.m.path}: ${k.key("ssm.inner_size")} ${inner} is not a multiple of ` +
        `${k.key("embedding_length")} ${H} (Jamba's mamba_expand is an integer)`,
    );
  }
  const [attnPeriod, attnOffset] = periodic(k, attn, L, [8, 4], "attention layers");
  const [expertPeriod, expertOffset] = periodic(k, moe, L, [2, 1], "MoE layers");
  const mamba = Array.from({ length: L }, (_, i) => i).find((i) => !attn.includes(i)) ?? 0;
  const out: Json = {
    architectures: ["JambaForCausalLM"],
    model_type: "jamba",
    ...common,
    intermediate_size: k.num("feed_forward_length"),
    num_attention_heads: heads,
    num_key_value_heads: kv,
    attn_layer_period: attnPeriod,
    attn_layer_offset: attnOffset,
    expert_layer_period: expertPeriod,
    expert_layer_offset: expertOffset,
    num_experts: moe.length > 0 ? k.num("expert_count") : k.opt("expert_count") ?? 16,
    num_experts_per_tok: moe.length > 0
      ? k.num("expert_used_count")
      : k.opt("expert_used_count") ?? 2,
    mamba_d_state: k.num("ssm.state_size"),
    mamba_d_conv: k.num("ssm.conv_kernel"),
    mamba_dt_rank: k.num("ssm.time_step_rank"),
    mamba_expand: inner / H,
    mamba_conv_bias: k.has(`blk.${mamba}.ssm_conv1d.bias`),
    mamba_proj_bias: k.has(`blk.${mamba}.ssm_in.bias`),
    use_mamba_kernels: false,
  };
  const keyLength = k.opt("attention.key_length");
  if (keyLength !== undefined) out.head_dim = keyLength;
  return out;
}

/**
 * `[period, offset]` with HF Jamba's rule (layer i is of the kind iff
 * i % period == offset) giving exactly `layers`: the class default when it
 * does, else the first layer and the gap to the next.
 */
function periodic(
  k: Keys,
  layers: number[],
  L: number,
  fallback: [number, number],
  what: string,
): [number, number] {
  const set = new Set(layers);
  const fits = ([p, o]: [number, number]) =>
    Array.from({ length: L }, (_, i) => i).every((i) => (i % p === o) === set.has(i));
  if (fits(fallback)) return fallback;
  if (layers.length === 0) return [L + 1, L];
  const guess: [number, number] = [layers.length > 1 ? layers[1] - layers[0] : L, layers[0]];
  if (guess[0] > guess[1] && fits(guess)) return guess;
  throw new RangeError(
    `${k.m.path}: the ${what} (${layers.join(", ")} of ${L}) do not follow Jamba's pattern ` +
      "(layer i where i % period == offset), which its config.json cannot express",
  );
}
