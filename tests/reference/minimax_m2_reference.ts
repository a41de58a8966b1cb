/**
 * Float64 reference of MiniMax-M2 (transformers 5's `MiniMaxM2ForCausalLM`),
 * written from its modeling code: RMSNorm before attention and before the
 * experts; attention without biases whose q and k projections each go through
 * one RMSNorm over the whole projection (`q_norm` `[heads·head_dim]`, `k_norm`
 * `[kv_heads·head_dim]`) before they are split into heads, then RoPE over the
 * first `int(head_dim · partial_rotary_factor)` values of each head
 * (MiniMaxM2Config sets the factor from `rotary_dim / head_dim` unless one is
 * given; default base 5e6); in every layer `block_sparse_moe`:
 * `sigmoid(gate · x)` plus `e_score_correction_bias` chooses the top
 * `num_experts_per_tok` experts (MiniMaxM2TopKRouter), weighted by their
 * unbiased sigmoid scores divided by their sum, each a SwiGLU (`w1` gate, `w3`
 * up, `w2` down). `head_dim` is 128 unless the config gives one.
 *
 * @module
 */

import { route } from "./glm4_moe_reference.ts";
import { hfActivation } from "./activation_reference.ts";
import {
  attention,
  type AttentionOptions,
  embed,
  field,
  type HfConfig,
  intField,
  type LayerKind,
  linear,
  readAttention,
  type ReferenceModel,
  rmsNorm,
  swiglu,
  type SwigluWeights,
  type Weights,
} from "./hf_reference.ts";
import { referenceRope } from "./rope_reference.ts";

interface Layer {
  norm1: Float64Array;
  norm2: Float64Array;
  attn: Awaited<ReturnType<typeof readAttention>>;
  router: Float64Array;
  bias: Float64Array;
  experts: SwigluWeights[];
}

/** The MiniMax-M2 reference model of a loaded checkpoint. */
export async function loadMiniMaxM2(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-6);
  const heads = intField(config, "num_attention_heads", 48);
  const kvHeads = intField(config, "num_key_value_heads", 8);
  const headDim = intField(config, "head_dim", 128);
  // MiniMaxM2Config.convert_rope_params_to_dict: rotary_dim / head_dim unless a
  // partial_rotary_factor is given (rope_parameters' first, then the top-level one).
  const rp = (config.rope_parameters ?? {}) as HfConfig;
  const partial = (rp.partial_rotary_factor ?? config.partial_rotary_factor ??
    (config.rotary_dim == null ? 1 : intField(config, "rotary_dim") / headDim)) as number;
  const R = Math.floor(headDim * partial);
  const opt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope: referenceRope(config, R, 5e6),
    // apply_rotary_pos_emb rotates the 2·⌈R/2⌉ values cos and sin cover.
    rotaryDim: 2 * Math.ceil(R / 2),
    qkNormEps: eps,
  };
  const E = intField(config, "num_local_experts", 256);
  const ff = intField(config, "intermediate_size", 1536);
  const k = intField(config, "num_experts_per_tok", 8);
  const act = hfActivation(config.hidden_act);
  const layers: Layer[] = [];
  for (const l of kinds.keys()) {
    const p = `model.layers.${l}`, m = `${p}.block_sparse_moe`;
    const experts: SwigluWeights[] = [];
    for (let e = 0; e < E; e++) {
      experts.push({
        gate: await w.get(`${m}.experts.${e}.w1.weight`, [ff, d]),
        up: await w.get(`${m}.experts.${e}.w3.weight`, [ff, d]),
        down: await w.get(`${m}.experts.${e}.w2.weight`, [d, ff]),
      });
    }
    layers.push({
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.post_attention_layernorm.weight`, [d]),
      attn: await readAttention(w, `${p}.self_attn`, opt, {
        qkvBias: false,
        outBias: false,
        qkNorm: true,
      }),
      router: await w.get(`${m}.gate.weight`, [E, d]),
      bias: await w.get(`${m}.e_score_correction_bias`, [E]),
      experts,
    });
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const norm = await w.get("model.norm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);
  // One group kept of one, no scaling: the router of GLM-4.5 reduced to MiniMax-M2's.
  const routing = { k, groups: 1, keep: 1, norm: true, scale: 1 };

  const moe = (L: Layer, x: Float64Array, T: number): Float64Array => {
    const logits = linear(x, T, d, L.router, E);
    const out = new Float64Array(T * d);
    for (let t = 0; t < T; t++) {
      const r = route(logits.subarray(t * E, (t + 1) * E), L.bias, routing);
      const xt = x.subarray(t * d, (t + 1) * d);
      r.experts.forEach((e, j) => {
        const y = swiglu(xt, 1, d, ff, L.experts[e], act);
        for (let i = 0; i < d; i++) out[t * d + i] += r.weights[j] * y[i];
      });
    }
    return out;
  };

  return {
    architecture: "MiniMaxM2ForCausalLM",
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      for (const L of layers) {
        const a = attention(rmsNorm(x, T, d, L.norm1, eps), T, L.attn, opt);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const m = moe(L, rmsNorm(x, T, d, L.norm2, eps), T);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      }
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab);
    },
  };
}
