/**
 * Float64 reference of Qwen3-Next (transformers 5's `Qwen3NextForCausalLM`),
 * written from its modeling code:
 * - `Qwen3NextRMSNorm` scales by `1 + weight` (the layers' two norms, the
 *   final norm, the attention's per-head q/k norms);
 * - `Qwen3NextAttention`: q_proj yields per head its query then its gate;
 *   per-head QK-norm, RoPE on the first `rotary` values of each head (halves),
 *   causal softmax attention (GQA), then `· sigmoid(gate)` before o_proj;
 * - `Qwen3NextGatedDeltaNet`: in_proj_qkvz / in_proj_ba in per-key-head
 *   groups (`fix_query_key_value_ordering`), a causal depthwise conv1d (no
 *   bias) + silu over q·k·v, l2norm of q and k (ε 1e-6), q·1/√dk, β = σ(b),
 *   g = −exp(A_log)·softplus(a + dt_bias), the recurrent gated delta rule
 *   (`torch_recurrent_gated_delta_rule`), `Qwen3NextRMSNormGated`
 *   (weight·x̂·silu(z), per value head), out_proj;
 * - the feed-forward: Qwen2-MoE's sparse block (softmax top-k, renormalised
 *   with `norm_topk_prob`, plus σ(shared_expert_gate)·shared_expert) or a dense
 *   SwiGLU MLP.
 *
 * @module
 */

import {
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
import { softmaxTopkExperts } from "./moe_reference.ts";

const SWIGLU: [string, string, string] = ["gate_proj", "up_proj", "down_proj"];
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
const softplus = (v: number) => (v > 20 ? v : Math.log1p(Math.exp(v)));
const plusOne = (w: Float64Array) => w.map((v) => 1 + v);

interface Attn {
  q: Float64Array;
  qb?: Float64Array;
  k: Float64Array;
  kb?: Float64Array;
  v: Float64Array;
  vb?: Float64Array;
  o: Float64Array;
  ob?: Float64Array;
  qNorm: Float64Array;
  kNorm: Float64Array;
}

interface DeltaNet {
  /** Qwen3-Next's projections, grouped by key head. */
  qkvz?: Float64Array;
  ba?: Float64Array;
  /** Qwen3.5's split projections. */
  qkv?: Float64Array;
  z?: Float64Array;
  b?: Float64Array;
  a?: Float64Array;
  conv: Float64Array;
  dtBias: Float64Array;
  aLog: Float64Array;
  norm: Float64Array;
  out: Float64Array;
}

interface Layer {
  kind: LayerKind;
  inNorm: Float64Array;
  postNorm: Float64Array;
  attn?: Attn;
  delta?: DeltaNet;
  mlp?: SwigluWeights;
  router?: Float64Array;
  experts?: SwigluWeights[];
  shared?: SwigluWeights;
  sharedGate?: Float64Array;
}

/** The architectures this reference implements. */
export type Qwen3NextFamily =
  | "Qwen3NextForCausalLM"
  | "Qwen3_5MoeForCausalLM"
  | "Qwen3_5ForCausalLM"
  | "Qwen3_5MoeForConditionalGeneration"
  | "Qwen3_5ForConditionalGeneration";

const archOf = (config: HfConfig) => (config.architectures as string[])[0] as Qwen3NextFamily;

/**
 * The language model's config: a vision-language class's `text_config`, with
 * its own `tie_word_embeddings` winning.
 */
export function textConfig(config: HfConfig): HfConfig {
  if (!archOf(config).endsWith("ForConditionalGeneration")) return config;
  const text = { ...(config.text_config as HfConfig) };
  if (config.tie_word_embeddings !== undefined) {
    text.tie_word_embeddings = config.tie_word_embeddings;
  }
  return text;
}

/** The layer kinds of a Qwen3-Next or Qwen3.5 config (`layer_types`, else the interval). */
export function qwen3NextKinds(full: HfConfig): LayerKind[] {
  const arch = archOf(full), config = textConfig(full);
  const n = intField(config, "num_hidden_layers");
  const every = intField(config, "full_attention_interval", 4);
  const types = (config.layer_types ??
    Array.from(
      { length: n },
      (_, i) => ((i + 1) % every ? "linear_attention" : "full_attention"),
    )) as string[];
  const step = intField(config, "decoder_sparse_step", 1);
  const only = new Set((config.mlp_only_layers ?? []) as number[]);
  const E = intField(config, "num_experts", 512);
  // Qwen3.5: experts in every layer (MoE classes) or none (dense).
  const sparse = (i: number) =>
    arch === "Qwen3NextForCausalLM"
      ? !only.has(i) && E > 0 && (i + 1) % step === 0
      : arch.startsWith("Qwen3_5Moe");
  return types.map((t, i) => ({
    mixer: t === "full_attention" ? "attention" : "mamba",
    ffn: sparse(i) ? "moe" : "mlp",
  }));
}

/** The Qwen3-Next reference model of a loaded checkpoint. */
export async function loadQwen3Next(
  w: Weights,
  full: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const arch = archOf(full), config = textConfig(full);
  const split = arch !== "Qwen3NextForCausalLM";
  const root = arch.endsWith("ForConditionalGeneration") ? "model.language_model" : "model";
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-6);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", 2);
  const hd = intField(config, "head_dim", 256);
  const rp = (config.rope_parameters ?? {}) as HfConfig;
  const partial = (rp.partial_rotary_factor ?? config.partial_rotary_factor ?? 0.25) as number;
  const rotary = Math.floor(hd * partial);
  const rope = referenceRope(config, rotary, 1e4);
  const Hk = intField(config, "linear_num_key_heads", 16);
  const Hv = intField(config, "linear_num_value_heads", 32);
  const dk = intField(config, "linear_key_head_dim", 128);
  const dv = intField(config, "linear_value_head_dim", 128);
  const K = intField(config, "linear_conv_kernel_dim", 4);
  const r = Hv / Hk, convDim = 2 * Hk * dk + Hv * dv;
  const E = intField(config, "num_experts", 512);
  const topK = intField(config, "num_experts_per_tok", 10);
  const moeFf = intField(config, "moe_intermediate_size", 512);
  const sharedFf = intField(config, "shared_expert_intermediate_size", 512);
  const ff = intField(config, "intermediate_size", 5632);
  // Qwen3.5's router renormalises whatever the config says.
  const norm = split || config.norm_topk_prob !== false;
  const bias = config.attention_bias === true;

  const layers: Layer[] = [];
  for (let l = 0; l < kinds.length; l++) {
    const p = `${root}.layers.${l}`, kind = kinds[l];
    const L: Layer = {
      kind,
      inNorm: plusOne(await w.get(`${p}.input_layernorm.weight`, [d])),
      postNorm: plusOne(await w.get(`${p}.post_attention_layernorm.weight`, [d])),
    };
    if (kind.mixer === "attention") {
      const A = `${p}.self_attn`, Q = heads * hd, KV = kvHeads * hd;
      L.attn = {
        q: await w.get(`${A}.q_proj.weight`, [2 * Q, d]),
        qb: await w.maybe(`${A}.q_proj.bias`, [2 * Q], bias),
        k: await w.get(`${A}.k_proj.weight`, [KV, d]),
        kb: await w.maybe(`${A}.k_proj.bias`, [KV], bias),
        v: await w.get(`${A}.v_proj.weight`, [KV, d]),
        vb: await w.maybe(`${A}.v_proj.bias`, [KV], bias),
        o: await w.get(`${A}.o_proj.weight`, [d, Q]),
        ob: await w.maybe(`${A}.o_proj.bias`, [d], bias),
        qNorm: plusOne(await w.get(`${A}.q_norm.weight`, [hd])),
        kNorm: plusOne(await w.get(`${A}.k_norm.weight`, [hd])),
      };
    } else {
      const M = `${p}.linear_attn`;
      L.delta = {
        ...(split
          ? {
            qkv: await w.get(`${M}.in_proj_qkv.weight`, [convDim, d]),
            z: await w.get(`${M}.in_proj_z.weight`, [Hv * dv, d]),
            b: await w.get(`${M}.in_proj_b.weight`, [Hv, d]),
            a: await w.get(`${M}.in_proj_a.weight`, [Hv, d]),
          }
          : {
            qkvz: await w.get(`${M}.in_proj_qkvz.weight`, [2 * Hk * dk + 2 * Hv * dv, d]),
            ba: await w.get(`${M}.in_proj_ba.weight`, [2 * Hv, d]),
          }),
        conv: await w.get(`${M}.conv1d.weight`, [convDim, 1, K]),
        dtBias: await w.get(`${M}.dt_bias`, [Hv]),
        aLog: await w.get(`${M}.A_log`, [Hv]),
        norm: await w.get(`${M}.norm.weight`, [dv]),
        out: await w.get(`${M}.out_proj.weight`, [d, Hv * dv]),
      };
    }
    if (kind.ffn === "moe") {
      L.router = await w.get(`${p}.mlp.gate.weight`, [E, d]);
      L.experts = [];
      for (let e = 0; e < E; e++) {
        L.experts.push(await readSwiglu(w, `${p}.mlp.experts.${e}`, SWIGLU, d, moeFf));
      }
      L.shared = await readSwiglu(w, `${p}.mlp.shared_expert`, SWIGLU, d, sharedFf);
      L.sharedGate = await w.get(`${p}.mlp.shared_expert_gate.weight`, [1, d]);
    } else {
      L.mlp = await readSwiglu(w, `${p}.mlp`, SWIGLU, d, ff);
    }
    layers.push(L);
  }
  const emb = await w.get(`${root}.embed_tokens.weight`, [vocab, d]);
  const finalNorm = plusOne(await w.get(`${root}.norm.weight`, [d]));
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);

  function attention(x: Float64Array, T: number, a: Attn): Float64Array {
    const Q = heads * hd, KV = kvHeads * hd;
    const qg = linear(x, T, d, a.q, 2 * Q, a.qb);
    const q = new Float64Array(T * Q), gate = new Float64Array(T * Q);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) {
        const src = (t * heads + h) * 2 * hd, dst = (t * heads + h) * hd;
        q.set(qg.subarray(src, src + hd), dst);
        gate.set(qg.subarray(src + hd, src + 2 * hd), dst);
      }
    }
    const qn = rmsNorm(q, T * heads, hd, a.qNorm, eps);
    const kn = rmsNorm(linear(x, T, d, a.k, KV, a.kb), T * kvHeads, hd, a.kNorm, eps);
    const v = linear(x, T, d, a.v, KV, a.vb);
    // apply_rotary_pos_emb on the values cos and sin cover — 2·⌈rotary/2⌉, frequencies
    // θ^(−2i/rotary) — as x·cos + rotate_half(x)·sin.
    const turn = (buf: Float64Array, at: number, t: number) => {
      const half = Math.ceil(rotary / 2);
      for (let i = 0; i < half; i++) {
        const ang = t * rope.invFreq[i];
        const c = Math.cos(ang) * rope.scale, s = Math.sin(ang) * rope.scale;
        const x1 = buf[at + i], x2 = buf[at + i + half];
        buf[at + i] = x1 * c - x2 * s;
        buf[at + i + half] = x2 * c + x1 * s;
      }
    };
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) turn(qn, (t * heads + h) * hd, t);
      for (let h = 0; h < kvHeads; h++) turn(kn, (t * kvHeads + h) * hd, t);
    }
    const ctx = new Float64Array(T * Q), group = heads / kvHeads, scale = 1 / Math.sqrt(hd);
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      for (let i = 0; i < T; i++) {
        const s = new Float64Array(i + 1);
        for (let j = 0; j <= i; j++) {
          let acc = 0;
          for (let e = 0; e < hd; e++) {
            acc += qn[(i * heads + h) * hd + e] * kn[(j * kvHeads + kh) * hd + e];
          }
          s[j] = acc * scale;
        }
        const mx = Math.max(...s);
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += s[j] = Math.exp(s[j] - mx);
        for (let j = 0; j <= i; j++) {
          for (let e = 0; e < hd; e++) {
            ctx[(i * heads + h) * hd + e] += (s[j] / sum) * v[(j * kvHeads + kh) * hd + e];
          }
        }
      }
    }
    for (let i = 0; i < ctx.length; i++) ctx[i] *= sigmoid(gate[i]);
    return linear(ctx, T, Q, a.o, d, a.ob);
  }

  /** Qwen3-Next's fix_query_key_value_ordering, or Qwen3.5's four projections. */
  function project(x: Float64Array, T: number, m: DeltaNet) {
    if (m.qkv) {
      return {
        mixed: linear(x, T, d, m.qkv, convDim),
        z: linear(x, T, d, m.z!, Hv * dv),
        b: linear(x, T, d, m.b!, Hv),
        a: linear(x, T, d, m.a!, Hv),
      };
    }
    const W = 2 * dk + 2 * r * dv;
    const qkvz = linear(x, T, d, m.qkvz!, Hk * W);
    const ba = linear(x, T, d, m.ba!, 2 * Hv);
    // Per key head [q, k, v (r heads), z (r heads)], [b (r), a (r)].
    const mixed = new Float64Array(T * convDim), z = new Float64Array(T * Hv * dv);
    const b = new Float64Array(T * Hv), a = new Float64Array(T * Hv);
    for (let t = 0; t < T; t++) {
      for (let g = 0; g < Hk; g++) {
        const src = (t * Hk + g) * W;
        for (let i = 0; i < dk; i++) {
          mixed[t * convDim + g * dk + i] = qkvz[src + i];
          mixed[t * convDim + Hk * dk + g * dk + i] = qkvz[src + dk + i];
        }
        for (let i = 0; i < r * dv; i++) {
          mixed[t * convDim + 2 * Hk * dk + g * r * dv + i] = qkvz[src + 2 * dk + i];
          z[t * Hv * dv + g * r * dv + i] = qkvz[src + 2 * dk + r * dv + i];
        }
        for (let i = 0; i < r; i++) {
          b[t * Hv + g * r + i] = ba[(t * Hk + g) * 2 * r + i];
          a[t * Hv + g * r + i] = ba[(t * Hk + g) * 2 * r + r + i];
        }
      }
    }
    return { mixed, z, b, a };
  }

  function deltaNet(x: Float64Array, T: number, m: DeltaNet): Float64Array {
    const { mixed, z, b, a } = project(x, T, m);
    // Causal depthwise conv (zero left padding), then silu.
    const u = new Float64Array(T * convDim);
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < convDim; c++) {
        let acc = 0;
        for (let j = 0; j < K; j++) {
          const src = t - (K - 1) + j;
          if (src >= 0) acc += m.conv[c * K + j] * mixed[src * convDim + c];
        }
        u[t * convDim + c] = acc * sigmoid(acc);
      }
    }
    const l2 = (at: number) => {
      let ss = 0;
      for (let i = 0; i < dk; i++) ss += u[at + i] ** 2;
      return 1 / Math.sqrt(ss + 1e-6);
    };
    const S = new Float64Array(Hv * dk * dv);
    const y = new Float64Array(T * Hv * dv);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < Hv; h++) {
        const g = Math.floor(h / r); // repeat_interleave of q and k
        const qa = t * convDim + g * dk, ka = t * convDim + Hk * dk + g * dk;
        const qs = l2(qa) / Math.sqrt(dk), ks = l2(ka);
        const decay = Math.exp(-Math.exp(m.aLog[h]) * softplus(a[t * Hv + h] + m.dtBias[h]));
        const beta = sigmoid(b[t * Hv + h]);
        const s = S.subarray(h * dk * dv, (h + 1) * dk * dv);
        for (let i = 0; i < s.length; i++) s[i] *= decay;
        for (let c = 0; c < dv; c++) {
          let mem = 0;
          for (let i = 0; i < dk; i++) mem += s[i * dv + c] * u[ka + i] * ks;
          const delta = (u[t * convDim + 2 * Hk * dk + h * dv + c] - mem) * beta;
          let o = 0;
          for (let i = 0; i < dk; i++) {
            s[i * dv + c] += u[ka + i] * ks * delta;
            o += s[i * dv + c] * u[qa + i] * qs;
          }
          y[(t * Hv + h) * dv + c] = o;
        }
      }
    }
    const normed = rmsNorm(y, T * Hv, dv, m.norm, eps);
    for (let i = 0; i < normed.length; i++) normed[i] *= z[i] * sigmoid(z[i]);
    return linear(normed, T, Hv * dv, m.out, d);
  }

  function ffn(L: Layer, x: Float64Array, T: number): Float64Array {
    if (L.mlp) return swiglu(x, T, d, ff, L.mlp);
    const y = softmaxTopkExperts(x, T, d, moeFf, L.router!, L.experts!, topK, norm);
    const s = swiglu(x, T, d, sharedFf, L.shared!);
    const gate = linear(x, T, d, L.sharedGate!, 1);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < d; i++) y[t * d + i] += sigmoid(gate[t]) * s[t * d + i];
    }
    return y;
  }

  return {
    architecture: arch,
    config: full,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      for (const L of layers) {
        const h = rmsNorm(x, T, d, L.inNorm, eps);
        const a = L.attn ? attention(h, T, L.attn) : deltaNet(h, T, L.delta!);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const m = ffn(L, rmsNorm(x, T, d, L.postNorm, eps), T);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      }
      return linear(rmsNorm(x, T, d, finalNorm, eps), T, d, head, vocab);
    },
  };
}
