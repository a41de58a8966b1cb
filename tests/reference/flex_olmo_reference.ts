/**
 * Float64 reference of FlexOlmo (transformers 5's `FlexOlmoForCausalLM`),
 * written from its modeling code: OLMo 2's decoder layer — the attention on the
 * raw residual stream, its output RMS-normed (`post_attention_layernorm`)
 * before the residual add, then the experts likewise
 * (`post_feedforward_layernorm`) — with a QK-norm over the whole q and k
 * projections before RoPE, optional biases on q/k/v/o, and routed experts:
 * softmax over `mlp.gate`, the top `num_experts_per_tok`, renormalised with
 * `norm_topk_prob`.
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
  type SwigluWeights,
  type Weights,
} from "./hf_reference.ts";
import { referenceRope } from "./rope_reference.ts";
import { softmaxTopkExperts } from "./moe_reference.ts";

const SWIGLU: [string, string, string] = ["gate_proj", "up_proj", "down_proj"];

interface Layer {
  postAttn: Float64Array;
  postFfn: Float64Array;
  attn: AttentionWeights;
  router: Float64Array;
  experts: SwigluWeights[];
}

/** The FlexOlmo reference model of a loaded checkpoint. */
export async function loadFlexOlmo(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-6);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", heads);
  const headDim = config.head_dim == null ? d / heads : intField(config, "head_dim");
  const ff = intField(config, "intermediate_size");
  const E = intField(config, "num_experts");
  const k = intField(config, "num_experts_per_tok");
  const norm = config.norm_topk_prob === true;
  const opt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope: referenceRope(config, headDim, 5e5),
    qkNormEps: eps,
  };
  const bias = config.attention_bias === true;
  const layers: Layer[] = [];
  for (let l = 0; l < kinds.length; l++) {
    const p = `model.layers.${l}`, A = `${p}.self_attn`;
    const experts: SwigluWeights[] = [];
    for (let e = 0; e < E; e++) {
      experts.push(await readSwiglu(w, `${p}.mlp.experts.${e}`, SWIGLU, d, ff));
    }
    layers.push({
      postAttn: await w.get(`${p}.post_attention_layernorm.weight`, [d]),
      postFfn: await w.get(`${p}.post_feedforward_layernorm.weight`, [d]),
      attn: await readAttention(w, A, opt, { qkvBias: bias, outBias: bias, qkNorm: true }),
      router: await w.get(`${p}.mlp.gate.weight`, [E, d]),
      experts,
    });
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const finalNorm = await w.get("model.norm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);

  const moe = (L: Layer, x: Float64Array, T: number) =>
    softmaxTopkExperts(x, T, d, ff, L.router, L.experts, k, norm);

  return {
    architecture: "FlexOlmoForCausalLM",
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      for (const L of layers) {
        const a = rmsNorm(attention(x, T, L.attn, opt), T, d, L.postAttn, eps);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const m = rmsNorm(moe(L, x, T), T, d, L.postFfn, eps);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      }
      return linear(rmsNorm(x, T, d, finalNorm, eps), T, d, head, vocab);
    },
  };
}
