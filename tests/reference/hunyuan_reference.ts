/**
 * Float64 reference of Hunyuan-A13B (transformers 5's
 * `HunYuanMoEV1ForCausalLM`), written from its modeling code: attention with
 * optional biases on q/k/v/o, RoPE (with `dynamic` + `alpha`: the base
 * θ·alpha^(d/(d−2)), HunYuanMoEV1RotaryEmbedding's branch), then RMSNorms per
 * head on q and k (`query_layernorm`, `key_layernorm`); in every layer a shared
 * SwiGLU MLP plus routed experts: softmax over `mlp.gate.wg`, the top
 * `moe_topk`, renormalised; experts and shared MLP `intermediate_size` wide.
 *
 * @module
 */

import {
  attention,
  type AttentionOptions,
  type AttentionWeights,
  embed,
  field,
  type HfConfig,
  intField,
  type LayerKind,
  linear,
  readAttention,
  readSwiglu,
  type ReferenceModel,
  rmsNorm,
  swiglu,
  type SwigluWeights,
  type Weights,
} from "./hf_reference.ts";
import { referenceRope } from "./rope_reference.ts";
import { softmaxTopkExperts } from "./moe_reference.ts";

const SWIGLU: [string, string, string] = ["gate_proj", "up_proj", "down_proj"];

interface Layer {
  norm1: Float64Array;
  norm2: Float64Array;
  attn: AttentionWeights;
  router: Float64Array;
  experts: SwigluWeights[];
  shared: SwigluWeights;
}

/** `moe_topk` as HunYuanMoEV1Gate reads it: an int, or layer i's entry of a list. */
function topkOf(config: HfConfig, layer: number): number {
  const v = config.moe_topk;
  return Array.isArray(v) ? v[layer] as number : intField(config, "moe_topk", 1);
}

/** The Hunyuan-A13B reference model of a loaded checkpoint. */
export async function loadHunyuan(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-5);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", heads);
  const headDim = config.head_dim == null ? d / heads : intField(config, "head_dim");
  const ff = intField(config, "intermediate_size");
  const E = intField(config, "num_experts");
  const rp = (config.rope_parameters ?? {}) as HfConfig;
  const alpha = rp.rope_type === "dynamic" ? rp.alpha as number | undefined : undefined;
  const rope = alpha
    ? (() => {
      const base = (rp.rope_theta as number) * alpha ** (headDim / (headDim - 2));
      const invFreq = Float64Array.from(
        { length: headDim / 2 },
        (_, i) => 1 / base ** ((2 * i) / headDim),
      );
      return { invFreq, scale: 1 };
    })()
    : referenceRope(config, headDim, 1e4);
  const opt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope,
    qkNormEps: eps,
    qkNormPerHead: true,
    qkNormAfterRope: true,
  };
  const bias = config.attention_bias === true;
  const swigluAt = (p: string) => readSwiglu(w, p, SWIGLU, d, ff);
  const layers: Layer[] = [];
  for (let l = 0; l < kinds.length; l++) {
    const p = `model.layers.${l}`, A = `${p}.self_attn`;
    const experts: SwigluWeights[] = [];
    for (let e = 0; e < E; e++) experts.push(await swigluAt(`${p}.mlp.experts.${e}`));
    layers.push({
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.post_attention_layernorm.weight`, [d]),
      attn: await readAttention(w, A, opt, {
        qkvBias: bias,
        outBias: bias,
        qkNorm: true,
        normNames: ["query_layernorm", "key_layernorm"],
      }),
      router: await w.get(`${p}.mlp.gate.wg.weight`, [E, d]),
      experts,
      shared: await swigluAt(`${p}.mlp.shared_mlp`),
    });
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const norm = await w.get("model.norm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);

  const moe = (L: Layer, l: number, x: Float64Array, T: number): Float64Array => {
    const out = softmaxTopkExperts(x, T, d, ff, L.router, L.experts, topkOf(config, l), true);
    const shared = swiglu(x, T, d, ff, L.shared);
    for (let i = 0; i < out.length; i++) out[i] += shared[i];
    return out;
  };

  return {
    architecture: "HunYuanMoEV1ForCausalLM",
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      layers.forEach((L, l) => {
        const a = attention(rmsNorm(x, T, d, L.norm1, eps), T, L.attn, opt);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const m = moe(L, l, rmsNorm(x, T, d, L.norm2, eps), T);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      });
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab);
    },
  };
}
