/**
 * Hunyuan-A13B (`HunYuanMoEV1ForCausalLM`, tencent/Hunyuan-A13B): grouped-query
 * attention with a QK-norm per head applied after RoPE (`query_layernorm`,
 * `key_layernorm`), `attention_bias` on all four projections, and in every
 * layer a routed SwiGLU MoE — softmax top-`moe_topk`, renormalised, router
 * `mlp.gate.wg` — beside an ungated shared MLP (`mlp.shared_mlp`); experts
 * and shared MLP are `intermediate_size` wide, as transformers 5 builds them.
 * RoPE `dynamic` with an `alpha` is HunYuan's NTK-alpha base,
 * θ·alpha^(d/(d−2)), up to `max_position_embeddings` (past it transformers
 * switches to other frequencies: refused there as every dynamic RoPE is).
 *
 * Fields of the published config that transformers 5 does not read are
 * checked against what it builds: per-layer lists (`moe_topk`,
 * `moe_intermediate_size`, `num_shared_expert`) must hold one value,
 * `moe_intermediate_size` must equal `intermediate_size` and
 * `num_shared_expert` be 1; cross-layer attention (`use_cla`), latent attention
 * (`use_mla`) and switching off what transformers always builds
 * (`use_qk_norm`, `use_mixed_mlp_moe`, `use_rotary_pos_emb`) are refused.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import { attentionFields, baseFields, QWEN_MOE_LAYOUT, uniformLayers } from "./common.ts";
import { type ConfigReader, show } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/** A field that is a number or a list of one repeated number, as that number. */
function uniform(c: ConfigReader, name: string, fallback: number): number {
  const v = c.raw(name);
  if (!Array.isArray(v)) return c.int(name, fallback);
  if (v.length === 0 || !v.every((x) => Number.isInteger(x) && x === v[0])) {
    throw new TypeError(
      `${c.file}: ${name} ${show(v)} differs between layers; Kiln (as transformers 5) ` +
        "runs one value in every layer",
    );
  }
  return v[0] as number;
}

/** The NTK-alpha base of `dynamic` RoPE with an `alpha`, else undefined. */
function alphaTheta(c: ConfigReader, headDim: number, theta: number): number | undefined {
  const source = (c.has("rope_scaling") ? c.raw("rope_scaling") : c.raw("rope_parameters")) as
    | Record<string, unknown>
    | undefined;
  const type = source?.rope_type ?? source?.type;
  const alpha = source?.alpha;
  if (type !== "dynamic" || alpha === undefined || alpha === null || alpha === 0) return undefined;
  if (typeof alpha !== "number" || !(alpha > 0)) {
    throw new RangeError(`${c.file}: RoPE alpha must be a positive number, got ${show(alpha)}`);
  }
  return theta * alpha ** (headDim / (headDim - 2));
}

function hunyuanFields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases");
  // The published config's switches for what transformers 5 always builds (or never).
  if (c.bool("use_cla", false)) c.refuse("use_cla", "cross-layer attention is not implemented");
  if (c.bool("use_mla", false)) {
    c.refuse("use_mla", "HunYuan's latent attention is not implemented");
  }
  for (const f of ["use_qk_norm", "use_mixed_mlp_moe", "use_rotary_pos_emb"]) {
    if (!c.bool(f, true)) c.refuse(f, "transformers 5 builds it in every layer");
  }
  if (c.str("norm_type", "rms") !== "rms") c.refuse("norm_type", "its norms are RMSNorms");
  const base = baseFields(c, { bos: 1, eos: 2 });
  const ff = c.positive("intermediate_size", 11008);
  if (c.has("moe_intermediate_size") && uniform(c, "moe_intermediate_size", ff) !== ff) {
    c.refuse("moe_intermediate_size", `transformers 5 builds experts of intermediate_size ${ff}`);
  }
  if (c.has("num_shared_expert") && uniform(c, "num_shared_expert", 1) !== 1) {
    c.refuse("num_shared_expert", "transformers 5 builds one shared MLP");
  }
  const experts = uniform(c, "num_experts", 1);
  const topK = uniform(c, "moe_topk", 1);
  if (topK < 1 || topK > experts) {
    throw new RangeError(
      `${c.file}: moe_topk ${topK} must be between 1 and num_experts ${experts}`,
    );
  }
  const bias = c.bool("attention_bias", false);
  const attention = attentionFields(c, base.hidden, {
    ropeTheta: 1e4,
    qkvBias: bias,
    outBias: bias,
    qkNorm: "head",
  });
  const theta = alphaTheta(c, attention.headDim, attention.ropeTheta);
  return {
    architecture: "HunYuanMoEV1ForCausalLM",
    ...act,
    ...base,
    intermediate: ff,
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern: uniformLayers(base.layers, "attention", "moe"),
    attention: {
      ...attention,
      qkNormAfterRope: true,
      ...(theta !== undefined
        ? { ropeTheta: theta, rope: { ...attention.rope!, theta, factor: 1 } }
        : {}),
    },
    moe: {
      experts,
      topK,
      normTopk: true,
      ff,
      sharedExpert: { ff, gated: false },
      // transformers adds no balancing loss for this family.
      auxLossCoef: 0,
    },
  };
}

/**
 * The Hunyuan-A13B spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.HunYuanMoEV1ForCausalLM.layout.router; // "gate.wg"
 * ```
 */
export const hunyuanMoe: ArchitectureSpec = {
  architecture: "HunYuanMoEV1ForCausalLM",
  modelType: "hunyuan_v1_moe",
  summary: "attention (GQA, RoPE with NTK alpha, per-head QK-norm after RoPE, optional biases) " +
    "+ softmax-routed SwiGLU experts beside a shared MLP in every layer",
  layout: {
    ...QWEN_MOE_LAYOUT,
    router: "gate.wg",
    shared: { expert: "mlp.shared_mlp", gate: "" },
    qkNorm: { q: "query_layernorm", k: "key_layernorm" },
  },
  parse: hunyuanFields,
};
