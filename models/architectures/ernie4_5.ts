/**
 * Baidu's ERNIE 4.5 (`Ernie4_5_MoeForCausalLM`, baidu/ERNIE-4.5-21B-A3B-PT
 * and -300B-A47B-PT; the dense `Ernie4_5ForCausalLM`, ERNIE-4.5-0.3B-PT):
 * grouped-query attention whose RoPE rotates adjacent pairs of each head
 * (transformers' interleaved `rotate_half`), biases on every projection but
 * the routed experts' when `use_bias`; layers from `moe_layer_start_index` to
 * `moe_layer_end_index`, every `moe_layer_interval`-th, route each token to
 * `moe_k` of `moe_num_experts` experts — chosen by softmax probability plus a
 * selection bias (`mlp.moe_statics.e_score_correction_bias`), weighted by the
 * chosen probabilities renormalised — beside `moe_num_shared_experts` always-on
 * experts in one SwiGLU (`mlp.shared_experts`); the other layers have a dense
 * SwiGLU MLP. The multi-token-prediction tensors the published checkpoints
 * carry (`mtp_*`) are not read, as transformers skips them.
 *
 * @module
 */

import type { LayerSpec, ModelConfig, MoeConfig } from "../config.ts";
import { attentionFields, baseFields, paddingIdxField, QWEN_MOE_LAYOUT } from "./common.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec, CheckpointLayout } from "./spec.ts";

/** The original configs' switches whose other values mean another model. */
function refuseVariants(c: ConfigReader): void {
  if (c.bool("use_rmsnorm", true) !== true) c.refuse("use_rmsnorm", "its norms are RMSNorms");
  if (c.str("moe_gate", "topk") !== "topk") c.refuse("moe_gate", "it routes by top-k");
  c.absent("rope_3d", "the vision-language models' 3-D RoPE is not implemented");
  c.absent("mlp_bias", "its MLP biases follow use_bias");
}

/**
 * The fields both ERNIE 4.5 classes share; `moe`: the MoE class's defaults
 * (4 KV heads, heads of hidden / heads; with `use_bias` its LM head has a bias
 * too), else the dense class's (2 KV heads, heads of 128).
 */
function ernieBase(c: ConfigReader, moe: boolean) {
  refuseVariants(c);
  const act = c.hiddenAct();
  const base = baseFields(c, { bos: 1, eos: 2 });
  const bias = c.bool("use_bias", false);
  const attention = attentionFields(c, base.hidden, {
    ropeTheta: 500000,
    qkvBias: bias,
    outBias: bias,
    kvHeads: moe ? 4 : 2,
    // Ernie4_5Config's head_dim defaults to 128 (null: hidden / heads); the MoE class has none.
    ...(moe ? {} : { headDim: 128 }),
  });
  return {
    ...act,
    ...base,
    // nn.Embedding(vocab, hidden, pad_token_id): the config class's default pad is 0.
    paddingIdx: paddingIdxField(c, base.vocabSize, 0),
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", true),
    ...(bias ? { mlpBias: true, ...(moe ? { lmHeadBias: true } : {}) } : {}),
    attention: { ...attention, ropeInterleave: true },
  };
}

function ernieDenseFields(c: ConfigReader): ModelConfig {
  const e = ernieBase(c, false);
  return {
    architecture: "Ernie4_5ForCausalLM",
    ...e,
    intermediate: c.positive("intermediate_size", 3072),
    pattern: Array.from(
      { length: e.layers },
      (): LayerSpec => ({ mixer: "attention", ffn: "mlp" }),
    ),
  };
}

function ernieMoeFields(c: ConfigReader): ModelConfig {
  const e = ernieBase(c, true);
  const L = e.layers;
  // Ernie4_5_MoeConfig's attribute_map: num_experts and num_experts_per_tok are aliases.
  const alias = (name: string, other: string) => !c.has(name) && c.has(other) ? other : name;
  const expertsField = alias("moe_num_experts", "num_experts");
  const topKField = alias("moe_k", "num_experts_per_tok");
  const experts = c.int(expertsField, 64);
  const topK = c.int(topKField, 6);
  const start = c.int("moe_layer_start_index", 1);
  const endRaw = c.raw("moe_layer_end_index") ?? -1;
  const end = endRaw === -1 ? L - 1 : c.int("moe_layer_end_index");
  const every = c.positive("moe_layer_interval", 1);
  const pattern: LayerSpec[] = Array.from({ length: L }, (_, i) => ({
    mixer: "attention",
    ffn: experts > 0 && (i + 1) % every === 0 && i >= start && i <= end ? "moe" : "mlp",
  }));
  let moe: MoeConfig | undefined;
  if (pattern.some((p) => p.ffn === "moe")) {
    if (topK < 1 || topK > experts) {
      throw new RangeError(
        `${c.file}: ${topKField} ${topK} must be between 1 and ${expertsField} ${experts}`,
      );
    }
    // The chosen probabilities are divided by max(their sum, moe_norm_min); k of E
    // probabilities sum to at least k/E, so a floor up to that never acts.
    const normMin = c.nonNegative("moe_norm_min", 1e-12);
    if (normMin > topK / experts) {
      c.refuse("moe_norm_min", `a floor above ${topK}/${experts} on the weights' sum`);
    }
    const ff = c.positive("moe_intermediate_size", 1536);
    const shared = c.int("moe_num_shared_experts", 2);
    moe = {
      experts,
      topK,
      normTopk: true,
      router: "softmax_bias",
      ff,
      auxLossCoef: c.num("router_aux_loss_coef", 0.001),
      ...(shared > 0 ? { sharedExpert: { ff: ff * shared, gated: false } } : {}),
    };
  }
  return {
    architecture: "Ernie4_5_MoeForCausalLM",
    ...e,
    intermediate: c.positive("intermediate_size", 12288),
    pattern,
    ...(moe ? { moe } : {}),
  };
}

/**
 * ERNIE 4.5's names: the Qwen MoE layout, shared experts in
 * `mlp.shared_experts`, the selection bias in `mlp.moe_statics`.
 *
 * @example
 * ```ts
 * import { ERNIE_LAYOUT } from "./ernie4_5.ts";
 * ERNIE_LAYOUT.selectionBias?.name; // "moe_statics.e_score_correction_bias"
 * ```
 */
export const ERNIE_LAYOUT: CheckpointLayout = {
  ...QWEN_MOE_LAYOUT,
  shared: { expert: "mlp.shared_experts", gate: "" },
  selectionBias: { name: "moe_statics.e_score_correction_bias", row: true },
};

/**
 * The ERNIE 4.5 MoE spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Ernie4_5_MoeForCausalLM.modelType; // "ernie4_5_moe"
 * ```
 */
export const ernie4_5Moe: ArchitectureSpec = {
  architecture: "Ernie4_5_MoeForCausalLM",
  modelType: "ernie4_5_moe",
  summary: "attention (GQA, RoPE on adjacent pairs) + routed experts chosen by softmax " +
    "probability plus a selection bias, beside shared experts; dense first layers",
  layout: ERNIE_LAYOUT,
  parse: ernieMoeFields,
  ignoredTensors: /mtp/,
};

/**
 * The dense ERNIE 4.5 spec (ERNIE-4.5-0.3B).
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Ernie4_5ForCausalLM.modelType; // "ernie4_5"
 * ```
 */
export const ernie4_5: ArchitectureSpec = {
  architecture: "Ernie4_5ForCausalLM",
  modelType: "ernie4_5",
  summary: "dense attention (GQA, RoPE on adjacent pairs) + SwiGLU MLPs",
  layout: ERNIE_LAYOUT,
  parse: ernieDenseFields,
};
