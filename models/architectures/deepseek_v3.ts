/**
 * DeepSeek-V3 (`DeepseekV3ForCausalLM`: deepseek-ai/DeepSeek-V3 and -R1 in
 * float, moonshotai/Moonlight-16B-A3B, Kimi-K2): multi-head latent attention
 * (`mla`: queries through a low-rank bottleneck, keys and values expanded per
 * head from one shared latent beside a shared rotary key, RoPE on the last
 * `qk_rope_head_dim` values of each head, interleaved pairs by default, the
 * softmax scale `qk_head_dim^-½` times yarn's `mscale_all_dim` factor
 * squared), then the first `first_k_dense_replace` layers dense and the rest
 * DeepSeek's routed experts — sigmoid affinities plus a selection bias within
 * the best `topk_group` of `n_group` groups, the chosen affinities
 * renormalised (`norm_topk_prob`) and scaled by `routed_scaling_factor` —
 * beside `n_shared_experts` always-on experts in one SwiGLU. The
 * multi-token-prediction layers after the last layer are skipped, as
 * transformers skips them.
 *
 * @module
 */

import type { AttentionConfig, MlaConfig, ModelConfig } from "../config.ts";
import { attentionFields, baseFields, QWEN_MOE_LAYOUT, sigmoidMoeFields } from "./common.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/** yarn's `0.1·m·ln(factor) + 1` (1 for a factor ≤ 1), transformers' `yarn_get_mscale`. */
function mscale(factor: number, m: number): number {
  return factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1;
}

/**
 * A latent-attention config class's defaults (DeepseekV3Config's unless given).
 *
 * @example
 * ```ts
 * import type { MlaDefaults } from "./deepseek_v3.ts";
 * const glmLite: MlaDefaults = { qLoraRank: 768, nopeDim: 192, vDim: 256, heads: 20 };
 * ```
 */
export interface MlaDefaults {
  /** `q_lora_rank`. */
  qLoraRank: number;
  /** `qk_nope_head_dim`. */
  nopeDim: number;
  /** `v_head_dim`. */
  vDim: number;
  /** `num_attention_heads`. */
  heads: number;
}

const V3_DEFAULTS: MlaDefaults = { qLoraRank: 1536, nopeDim: 128, vDim: 128, heads: 128 };

function mlaFields(c: ConfigReader, d: MlaDefaults): MlaConfig {
  // null (DeepSeek-V2-Lite, Moonlight): a plain q_proj; absent: the class's default.
  const absent = !Object.hasOwn(c.json, "q_lora_rank");
  return {
    qLoraRank: absent ? d.qLoraRank : c.has("q_lora_rank") ? c.int("q_lora_rank") : 0,
    kvLoraRank: c.positive("kv_lora_rank", 512),
    nopeDim: c.positive("qk_nope_head_dim", d.nopeDim),
    ropeDim: c.positive("qk_rope_head_dim", 64),
    vDim: c.positive("v_head_dim", d.vDim),
    interleave: c.bool("rope_interleave", true),
  };
}

/**
 * The latent attention of a DeepSeek config (V2's and V3's
 * `DeepseekV3Attention`): heads, RoPE (read for `qk_rope_head_dim`, which the
 * classes set as `head_dim`), the softmax scale and the `mla` sizes;
 * `interleave` false makes RoPE pair adjacent values whatever the config
 * says (V2 rotates complex pairs).
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { mlaAttentionFields } from "./deepseek_v3.ts";
 * const c = new ConfigReader({ num_attention_heads: 2, kv_lora_rank: 8, q_lora_rank: null,
 *   qk_nope_head_dim: 4, qk_rope_head_dim: 4, v_head_dim: 4 }, "config.json", "x");
 * mlaAttentionFields(c, 16, true).headDim; // 8
 * ```
 */
export function mlaAttentionFields(
  c: ConfigReader,
  hidden: number,
  readInterleave: boolean,
  defaults: MlaDefaults = V3_DEFAULTS,
): AttentionConfig {
  const heads = c.positive("num_attention_heads", defaults.heads);
  const mla = mlaFields(c, defaults);
  const bias = c.bool("attention_bias", false);
  // DeepseekV3Config sets head_dim to qk_rope_head_dim: the rotary size RoPE's
  // frequencies are read for.
  const att = attentionFields(c, hidden, {
    ropeTheta: 1e4,
    outBias: bias,
    kvHeads: heads,
    headDim: mla.ropeDim,
  });
  if (att.kvHeads !== heads) {
    throw new RangeError(
      `${c.file}: num_key_value_heads ${att.kvHeads} must equal num_attention_heads ${heads}: ` +
        "latent attention expands keys and values for every query head",
    );
  }
  if (att.rotaryDim !== undefined || att.headDim !== mla.ropeDim) {
    throw new RangeError(
      `${c.file}: head_dim ${att.headDim} must be qk_rope_head_dim ${mla.ropeDim} with the ` +
        "whole of it rotated (DeepseekV3Config sets it so)",
    );
  }
  const qkDim = mla.nopeDim + mla.ropeDim;
  // DeepseekV3Attention: qk_head_dim^-½, times mscale(factor, mscale_all_dim)² for a
  // scaled RoPE that gives mscale_all_dim.
  const rope = att.rope;
  const all = rope?.mscaleAllDim ?? 0;
  const scale = qkDim ** -0.5 * (rope && all ? mscale(rope.factor, all) ** 2 : 1);
  return {
    ...att,
    headDim: qkDim,
    // RoPE's frequencies span the rotary part only (the block rotates it alone).
    rotaryDim: mla.ropeDim,
    scale,
    mla: readInterleave ? mla : { ...mla, interleave: true },
  };
}

function deepseekV3Fields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  const base = baseFields(c);
  const ffn = sigmoidMoeFields(c, base.layers, {
    experts: 256,
    topK: 8,
    dense: 3,
    ff: 2048,
    scaling: 2.5,
    groups: 8,
    kept: 4,
  });
  const attention = mlaAttentionFields(c, base.hidden, true);
  return {
    architecture: "DeepseekV3ForCausalLM",
    ...act,
    ...base,
    intermediate: c.positive("intermediate_size", 18432),
    normEps: c.nonNegative("rms_norm_eps", 1e-6),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    attention,
    ...ffn,
  };
}

/**
 * The DeepSeek-V3 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.DeepseekV3ForCausalLM.layout.shared?.expert; // "mlp.shared_experts"
 * ```
 */
export const deepseekV3: ArchitectureSpec = {
  architecture: "DeepseekV3ForCausalLM",
  modelType: "deepseek_v3",
  summary: "multi-head latent attention + DeepSeek routed experts (sigmoid, selection bias, " +
    "group-limited, scaling) beside shared experts; dense first layers",
  layout: { ...QWEN_MOE_LAYOUT, shared: { expert: "mlp.shared_experts", gate: "" } },
  parse: deepseekV3Fields,
};
