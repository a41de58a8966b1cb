/**
 * Float64 reference of LFM2 and LFM2-MoE (transformers 5's `Lfm2ForCausalLM`,
 * `Lfm2MoeForCausalLM`), written from their modeling code:
 * - `Lfm2ShortConv`: `in_proj` → B, C, x (in that order); B·x through a causal
 *   depthwise conv of `conv_L_cache` taps (zero left padding, no activation);
 *   C times that; `out_proj` (biases on all three with `conv_bias`);
 * - `Lfm2Attention`: q/k/v, per-head RMSNorms `q_layernorm` / `k_layernorm`,
 *   RoPE on halves, causal softmax attention (GQA), `out_proj`;
 * - `operator_norm` before the mixer, `ffn_norm` before the feed-forward, a
 *   SwiGLU `w2(silu(w1 x)·w3 x)` (LFM2's width by `block_auto_adjust_ff_dim`)
 *   or, after `num_dense_layers`, experts chosen by sigmoid(logits) +
 *   `expert_bias`, weighted by the unbiased sigmoid, renormalised with
 *   `norm_topk_prob`, times `routed_scaling_factor`; `embedding_norm` last.
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
  readSwiglu,
  type ReferenceModel,
  rmsNorm,
  swiglu,
  type SwigluWeights,
  type Weights,
} from "./hf_reference.ts";
import { referenceRope } from "./rope_reference.ts";

const W123: [string, string, string] = ["w1", "w3", "w2"];
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** The layer kinds of an LFM2 config: `layer_types`, else `full_attn_idxs`. */
export function lfm2Kinds(config: HfConfig): LayerKind[] {
  const n = intField(config, "num_hidden_layers");
  const moe = (config.architectures as string[])[0] === "Lfm2MoeForCausalLM";
  const idx = (config.full_attn_idxs ?? Array.from({ length: n }, (_, i) => i)) as number[];
  const types = (config.layer_types ??
    Array.from({ length: n }, (_, i) => (idx.includes(i) ? "full_attention" : "conv"))) as string[];
  const dense = moe ? intField(config, "num_dense_layers", 2) : n;
  return types.map((t, i) => ({
    mixer: t === "conv" ? "mamba" : "attention",
    ffn: i < dense ? "mlp" : "moe",
  }));
}

interface Conv {
  inProj: Float64Array;
  inBias?: Float64Array;
  conv: Float64Array;
  convBias?: Float64Array;
  outProj: Float64Array;
  outBias?: Float64Array;
}

interface Layer {
  kind: LayerKind;
  opNorm: Float64Array;
  ffnNorm: Float64Array;
  attn?: AttentionWeights;
  conv?: Conv;
  mlp?: SwigluWeights;
  router?: Float64Array;
  bias?: Float64Array;
  experts?: SwigluWeights[];
}

/** The LFM2 / LFM2-MoE reference model of a loaded checkpoint. */
export async function loadLfm2(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const arch = (config.architectures as string[])[0] as "Lfm2ForCausalLM" | "Lfm2MoeForCausalLM";
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "norm_eps", 1e-5);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", 8);
  const hd = d / heads;
  const K = intField(config, "conv_L_cache", 3);
  const cb = config.conv_bias === true;
  let ff = intField(config, "intermediate_size");
  if (arch === "Lfm2ForCausalLM" && config.block_auto_adjust_ff_dim !== false) {
    // Lfm2MLP: int(2·ff/3), then the multiplier and rounding up to block_multiple_of.
    ff = Math.floor((2 * ff) / 3);
    if (config.block_ffn_dim_multiplier !== null) {
      const of = intField(config, "block_multiple_of", 256);
      ff = Math.floor(field(config, "block_ffn_dim_multiplier", 1) * ff);
      ff = of * Math.ceil(ff / of);
    }
  }
  const E = intField(config, "num_experts", 32);
  const topK = intField(config, "num_experts_per_tok", 4);
  const moeFf = intField(config, "moe_intermediate_size", 1792);
  const scale = field(config, "routed_scaling_factor", 1);
  const norm = config.norm_topk_prob !== false;
  const opt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim: hd,
    rope: referenceRope(config, hd, 1e6),
    qkNormEps: eps,
    qkNormPerHead: true,
  };
  const layers: Layer[] = [];
  for (let l = 0; l < kinds.length; l++) {
    const p = `model.layers.${l}`, kind = kinds[l];
    const L: Layer = {
      kind,
      opNorm: await w.get(`${p}.operator_norm.weight`, [d]),
      ffnNorm: await w.get(`${p}.ffn_norm.weight`, [d]),
    };
    if (kind.mixer === "attention") {
      const A = `${p}.self_attn`, KV = kvHeads * hd;
      L.attn = {
        q: await w.get(`${A}.q_proj.weight`, [d, d]),
        k: await w.get(`${A}.k_proj.weight`, [KV, d]),
        v: await w.get(`${A}.v_proj.weight`, [KV, d]),
        o: await w.get(`${A}.out_proj.weight`, [d, d]),
        qNorm: await w.get(`${A}.q_layernorm.weight`, [hd]),
        kNorm: await w.get(`${A}.k_layernorm.weight`, [hd]),
      };
    } else {
      const C = `${p}.conv`;
      L.conv = {
        inProj: await w.get(`${C}.in_proj.weight`, [3 * d, d]),
        inBias: await w.maybe(`${C}.in_proj.bias`, [3 * d], cb),
        conv: await w.get(`${C}.conv.weight`, [d, 1, K]),
        convBias: await w.maybe(`${C}.conv.bias`, [d], cb),
        outProj: await w.get(`${C}.out_proj.weight`, [d, d]),
        outBias: await w.maybe(`${C}.out_proj.bias`, [d], cb),
      };
    }
    const F = `${p}.feed_forward`;
    if (kind.ffn === "moe") {
      L.router = await w.get(`${F}.gate.weight`, [E, d]);
      L.bias = await w.get(`${F}.expert_bias`, [E]);
      L.experts = [];
      for (let e = 0; e < E; e++) {
        L.experts.push(await readSwiglu(w, `${F}.experts.${e}`, W123, d, moeFf));
      }
    } else {
      L.mlp = await readSwiglu(w, F, W123, d, ff);
    }
    layers.push(L);
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const finalNorm = await w.get("model.embedding_norm.weight", [d]);
  const head = config.tie_word_embeddings === false
    ? await w.get("lm_head.weight", [vocab, d])
    : emb;

  function shortConv(x: Float64Array, T: number, c: Conv): Float64Array {
    const bcx = linear(x, T, d, c.inProj, 3 * d, c.inBias);
    const y = new Float64Array(T * d);
    for (let t = 0; t < T; t++) {
      for (let ch = 0; ch < d; ch++) {
        let acc = c.convBias ? c.convBias[ch] : 0;
        for (let j = 0; j < K; j++) {
          const src = t - (K - 1) + j;
          if (src >= 0) {
            acc += c.conv[ch * K + j] * bcx[src * 3 * d + ch] * bcx[src * 3 * d + 2 * d + ch];
          }
        }
        y[t * d + ch] = bcx[t * 3 * d + d + ch] * acc;
      }
    }
    return linear(y, T, d, c.outProj, d, c.outBias);
  }

  function experts(L: Layer, x: Float64Array, T: number): Float64Array {
    const out = new Float64Array(T * d);
    const logits = linear(x, T, d, L.router!, E);
    for (let t = 0; t < T; t++) {
      const s = Array.from({ length: E }, (_, e) => sigmoid(logits[t * E + e]));
      const chosen = s.map((_, e) => e)
        .sort((a, b) => s[b] + L.bias![b] - (s[a] + L.bias![a]) || a - b)
        .slice(0, topK);
      const total = norm ? chosen.reduce((a, e) => a + s[e], 0) + 1e-6 : 1;
      const xt = x.subarray(t * d, (t + 1) * d);
      for (const e of chosen) {
        const y = swiglu(xt, 1, d, moeFf, L.experts![e]);
        for (let i = 0; i < d; i++) out[t * d + i] += (s[e] / total) * scale * y[i];
      }
    }
    return out;
  }

  return {
    architecture: arch,
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      for (const L of layers) {
        const h = rmsNorm(x, T, d, L.opNorm, eps);
        const a = L.attn ? attention(h, T, L.attn, opt) : shortConv(h, T, L.conv!);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const f = rmsNorm(x, T, d, L.ffnNorm, eps);
        const m = L.mlp ? swiglu(f, T, d, ff, L.mlp) : experts(L, f, T);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      }
      return linear(rmsNorm(x, T, d, finalNorm, eps), T, d, head, vocab);
    },
  };
}
