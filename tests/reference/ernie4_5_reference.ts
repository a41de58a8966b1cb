/**
 * Float64 reference of ERNIE 4.5 (transformers 5's `Ernie4_5_MoeForCausalLM`
 * and `Ernie4_5ForCausalLM`), written from their modeling code: RMSNorm,
 * grouped-query attention whose RoPE turns adjacent pairs (cos and sin
 * `repeat_interleave`d, `rotate_half` on x[0::2], x[1::2]), biases on q/k/v/o
 * and on every MLP projection but the routed experts' (and the MoE class's
 * LM head) when `use_bias`; MoE
 * layers route by `softmax(logits)` (float32 in transformers) plus
 * `moe_statics.e_score_correction_bias` for the choice, weigh each chosen
 * expert by its unbiased probability over max(their sum, `moe_norm_min`),
 * and add the shared experts' SwiGLU of width `moe_intermediate_size ·
 * moe_num_shared_experts`.
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
  type ReferenceModel,
  rmsNorm,
  type Weights,
} from "./hf_reference.ts";
import { referenceRope } from "./rope_reference.ts";

interface Mlp {
  gate: Float64Array;
  up: Float64Array;
  down: Float64Array;
  gb?: Float64Array;
  ub?: Float64Array;
  db?: Float64Array;
}

/** down(silu(gate·x + gb) ⊙ (up·x + ub)) + db over `x` [T, d]. */
function mlp(x: Float64Array, T: number, d: number, ff: number, w: Mlp): Float64Array {
  const g = linear(x, T, d, w.gate, ff, w.gb);
  const u = linear(x, T, d, w.up, ff, w.ub);
  for (let i = 0; i < g.length; i++) g[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
  return linear(g, T, ff, w.down, d, w.db);
}

interface Layer {
  norm1: Float64Array;
  norm2: Float64Array;
  attn: AttentionWeights;
  mlp?: Mlp;
  router?: Float64Array;
  bias?: Float64Array;
  experts?: Mlp[];
  shared?: Mlp;
}

/** The ERNIE 4.5 reference model of a loaded checkpoint. */
export async function loadErnie(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const architecture = config.architectures instanceof Array
    ? config.architectures[0] as "Ernie4_5_MoeForCausalLM" | "Ernie4_5ForCausalLM"
    : "Ernie4_5_MoeForCausalLM";
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-5);
  const heads = intField(config, "num_attention_heads");
  const moeClass = architecture === "Ernie4_5_MoeForCausalLM";
  const kvHeads = intField(config, "num_key_value_heads", moeClass ? 4 : 2);
  // Ernie4_5Config: head_dim 128 unless given (null: hidden / heads); the MoE config has none.
  const headDim = config.head_dim === undefined && !moeClass
    ? 128
    : config.head_dim == null
    ? d / heads
    : intField(config, "head_dim");
  const bias = config.use_bias === true;
  const opt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope: referenceRope(config, headDim, 500000),
    interleave: true,
  };
  const E = intField(config, "moe_num_experts", 64);
  const k = intField(config, "moe_k", 6);
  const normMin = field(config, "moe_norm_min", 1e-12);
  const moeFf = intField(config, "moe_intermediate_size", 1536);
  const sharedFf = moeFf * intField(config, "moe_num_shared_experts", 2);
  const ff = intField(config, "intermediate_size");
  const mlpAt = async (p: string, width: number, biased: boolean): Promise<Mlp> => ({
    gate: await w.get(`${p}.gate_proj.weight`, [width, d]),
    up: await w.get(`${p}.up_proj.weight`, [width, d]),
    down: await w.get(`${p}.down_proj.weight`, [d, width]),
    gb: await w.maybe(`${p}.gate_proj.bias`, [width], biased),
    ub: await w.maybe(`${p}.up_proj.bias`, [width], biased),
    db: await w.maybe(`${p}.down_proj.bias`, [d], biased),
  });
  const layers: Layer[] = [];
  for (const [l, kind] of kinds.entries()) {
    const p = `model.layers.${l}`;
    const a = `${p}.self_attn`;
    const layer: Layer = {
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.post_attention_layernorm.weight`, [d]),
      attn: await readAttention(w, a, opt, { qkvBias: bias, outBias: bias, qkNorm: false }),
    };
    if (kind.ffn === "moe") {
      layer.router = await w.get(`${p}.mlp.gate.weight`, [E, d]);
      layer.bias = await w.get(`${p}.mlp.moe_statics.e_score_correction_bias`, [1, E]);
      layer.experts = [];
      for (let e = 0; e < E; e++) {
        layer.experts.push(await mlpAt(`${p}.mlp.experts.${e}`, moeFf, false));
      }
      if (sharedFf > 0) layer.shared = await mlpAt(`${p}.mlp.shared_experts`, sharedFf, bias);
    } else {
      layer.mlp = await mlpAt(`${p}.mlp`, ff, bias);
    }
    layers.push(layer);
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const norm = await w.get("model.norm.weight", [d]);
  const head = config.tie_word_embeddings === false
    ? await w.get("lm_head.weight", [vocab, d])
    : emb;
  // The MoE class's nn.Linear(hidden, vocab, bias=use_bias): its own bias even when the
  // weight is tied; the dense class's head has none.
  const headBias = await w.maybe("lm_head.bias", [vocab], bias && moeClass);

  const moe = (L: Layer, x: Float64Array, T: number): Float64Array => {
    const logits = linear(x, T, d, L.router!, E);
    const out = L.shared ? mlp(x, T, d, sharedFf, L.shared) : new Float64Array(T * d);
    for (let t = 0; t < T; t++) {
      const z = logits.subarray(t * E, (t + 1) * E);
      const mx = Math.max(...z);
      const ex = Array.from(z, (v) => Math.exp(v - mx));
      const sum = ex.reduce((a, b) => a + b, 0);
      const p = ex.map((v) => v / sum);
      const score = p.map((v, e) => v + L.bias![e]);
      const chosen = score.map((_, e) => e).sort((a, b) => score[b] - score[a] || a - b)
        .slice(0, k);
      const total = Math.max(chosen.reduce((acc, e) => acc + p[e], 0), normMin);
      const xt = x.subarray(t * d, (t + 1) * d);
      for (const e of chosen) {
        const y = mlp(xt, 1, d, moeFf, L.experts![e]);
        for (let i = 0; i < d; i++) out[t * d + i] += (p[e] / total) * y[i];
      }
    }
    return out;
  };

  return {
    architecture,
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      for (const L of layers) {
        const a = attention(rmsNorm(x, T, d, L.norm1, eps), T, L.attn, opt);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const n2 = rmsNorm(x, T, d, L.norm2, eps);
        const m = L.mlp ? mlp(n2, T, d, ff, L.mlp) : moe(L, n2, T);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      }
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab, headBias);
    },
  };
}
