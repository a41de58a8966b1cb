/**
 * Float64 reference of GLM-4.5 (transformers 5's `Glm4MoeForCausalLM`), written
 * from its modeling code: attention with optional q/k/v biases (no o_proj bias),
 * an optional per-head QK-norm before RoPE, RoPE over the first
 * `partial_rotary_factor` of each head (rope_parameters' factor, else the
 * top-level one, else 0.5); dense SwiGLU layers below `first_k_dense_replace`,
 * then routed experts picked by sigmoid(logits) + `e_score_correction_bias`
 * within the best `topk_group` of `n_group` groups (a group scored by its two
 * best biased affinities), weighted by their unbiased affinities renormalised
 * (`norm_topk_prob`, + 1e-20) times `routed_scaling_factor`, plus the shared
 * experts' SwiGLU on every token.
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

const SWIGLU: [string, string, string] = ["gate_proj", "up_proj", "down_proj"];

/** One layer's token mixer on its normed input `[T, d]`. */
export type Mixer = (x: Float64Array, T: number) => Float64Array;

interface Layer {
  norm1: Float64Array;
  norm2: Float64Array;
  attn: Mixer;
  mlp?: SwigluWeights;
  router?: Float64Array;
  bias?: Float64Array;
  experts?: SwigluWeights[];
  shared?: SwigluWeights;
}

/**
 * Experts chosen for one token and their weights, as Glm4MoeTopkRouter (and
 * DeepSeek-V3's and Nemotron-H's routers, the same lines) computes them.
 */
export function route(
  logits: Float64Array,
  bias: Float64Array,
  o: { k: number; groups: number; keep: number; norm: boolean; scale: number },
): { experts: number[]; weights: number[] } {
  const E = logits.length, per = E / o.groups;
  const s = Array.from(logits, (z) => 1 / (1 + Math.exp(-z)));
  const choice = s.map((v, e) => v + bias[e]);
  const groupScore = Array.from({ length: o.groups }, (_, g) => {
    const top = choice.slice(g * per, (g + 1) * per).sort((a, b) => b - a);
    return top[0] + top[1];
  });
  const kept = new Set(
    groupScore.map((_, g) => g).sort((a, b) => groupScore[b] - groupScore[a] || a - b)
      .slice(0, o.keep),
  );
  const experts = choice.map((_, e) => e)
    .filter((e) => kept.has(Math.floor(e / per)))
    .sort((a, b) => choice[b] - choice[a] || a - b)
    .slice(0, o.k);
  let weights = experts.map((e) => s[e]);
  if (o.norm) {
    const sum = weights.reduce((a, b) => a + b, 0) + 1e-20;
    weights = weights.map((w) => w / sum);
  }
  return { experts, weights: weights.map((w) => w * o.scale) };
}

/**
 * Experts chosen for one token and their weights, as DeepseekV2TopkRouter
 * computes them: softmax probabilities, the top k (within the groups of the
 * best single probability with `group_limited_greedy`), never renormalised,
 * times `routed_scaling_factor`.
 */
function routeV2(
  logits: Float64Array,
  config: HfConfig,
  o: { k: number; groups: number; keep: number; scale: number },
): { experts: number[]; weights: number[] } {
  const E = logits.length;
  const mx = Math.max(...logits);
  const ex = Array.from(logits, (z) => Math.exp(z - mx));
  const sum = ex.reduce((a, b) => a + b, 0);
  const p = ex.map((v) => v / sum);
  let allowed = (_: number) => true;
  if (config.topk_method === "group_limited_greedy") {
    const per = E / o.groups;
    const best = Array.from(
      { length: o.groups },
      (_, g) => Math.max(...p.slice(g * per, (g + 1) * per)),
    );
    const kept = new Set(
      best.map((_, g) => g).sort((a, b) => best[b] - best[a] || a - b).slice(0, o.keep),
    );
    allowed = (e) => kept.has(Math.floor(e / per));
  }
  const experts = p.map((_, e) => e).filter(allowed).sort((a, b) => p[b] - p[a] || a - b)
    .slice(0, o.k);
  return { experts, weights: experts.map((e) => p[e] * o.scale) };
}

/**
 * The GLM-4.5 reference model of a loaded checkpoint; dots.llm1's
 * (`Dots1ForCausalLM`) too: Qwen3's attention — RoPE over whole heads, the
 * per-head QK-norm always, `attention_bias` on all four projections, a window
 * on the layers `kinds` marks — in the same frame.
 */
export function loadGlm4Moe(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const dots = (config.architectures as string[] | undefined)?.[0] === "Dots1ForCausalLM";
  const d = intField(config, "hidden_size");
  const eps = field(config, "rms_norm_eps", dots ? 1e-6 : 1e-5);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", dots ? heads : 8);
  const headDim = config.head_dim == null ? d / heads : intField(config, "head_dim");
  const rp = (config.rope_parameters ?? {}) as HfConfig;
  const partial = dots
    ? 1
    : (rp.partial_rotary_factor ?? config.partial_rotary_factor ?? 0.5) as number;
  const R = Math.floor(headDim * partial);
  const opt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope: referenceRope(config, R, 1e4),
    // cos and sin cover 2·⌈R/2⌉ values: one more than an odd R.
    rotaryDim: 2 * Math.ceil(R / 2),
    qkNormEps: eps,
    qkNormPerHead: true,
  };
  const qkvBias = config.attention_bias === true, qkNorm = dots || config.use_qk_norm === true;
  const Q = heads * headDim, KV = kvHeads * headDim;
  const arch = dots ? "Dots1ForCausalLM" : "Glm4MoeForCausalLM";
  return loadSigmoidMoe(w, config, kinds, arch, async (p) => {
    const a: AttentionWeights = {
      q: await w.get(`${p}.self_attn.q_proj.weight`, [Q, d]),
      k: await w.get(`${p}.self_attn.k_proj.weight`, [KV, d]),
      v: await w.get(`${p}.self_attn.v_proj.weight`, [KV, d]),
      o: await w.get(`${p}.self_attn.o_proj.weight`, [d, Q]),
      qb: await w.maybe(`${p}.self_attn.q_proj.bias`, [Q], qkvBias),
      kb: await w.maybe(`${p}.self_attn.k_proj.bias`, [KV], qkvBias),
      vb: await w.maybe(`${p}.self_attn.v_proj.bias`, [KV], qkvBias),
      ob: await w.maybe(`${p}.self_attn.o_proj.bias`, [d], dots && qkvBias),
      qNorm: await w.maybe(`${p}.self_attn.q_norm.weight`, [headDim], qkNorm),
      kNorm: await w.maybe(`${p}.self_attn.k_norm.weight`, [headDim], qkNorm),
    };
    const window = kinds[Number(p.split(".").at(-1))].window;
    const layerOpt = window === undefined ? opt : { ...opt, slidingWindow: window };
    return (x, T) => attention(x, T, a, layerOpt);
  });
}

/**
 * Where a family's config and checkpoint differ from DeepSeek-V3's names
 * (K-EXAONE: `num_experts`, `num_shared_experts`, `mlp.e_score_correction_bias`).
 */
export interface SigmoidMoeNames {
  /** The experts' count field (default `n_routed_experts`, else `num_local_experts`). */
  experts?: string;
  /** The shared experts' count field (default `n_shared_experts`). */
  shared?: string;
  /** The selection bias inside `mlp` (default `gate.e_score_correction_bias`). */
  bias?: string;
  /** `routed_scaling_factor` when the config has none (default 1). */
  scale?: number;
}

/**
 * A decoder of `mixerAt(layer prefix)` blocks, each followed by a dense SwiGLU
 * (the layers `kinds` marks `mlp`) or DeepSeek-style
 * routed experts (sigmoid + selection bias, groups, scaling) beside shared
 * experts above: GLM-4.5's and DeepSeek-V3's shared frame.
 */
export async function loadSigmoidMoe(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
  architecture: ReferenceModel["architecture"],
  mixerAt: (prefix: string) => Promise<Mixer>,
  v2 = false,
  names: SigmoidMoeNames = {},
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-5);
  const E = intField(
    config,
    names.experts ?? (config.n_routed_experts == null ? "num_local_experts" : "n_routed_experts"),
  );
  const moeFf = intField(config, "moe_intermediate_size");
  const sharedFf = moeFf * intField(config, names.shared ?? "n_shared_experts", 1);
  const routing = {
    k: intField(config, "num_experts_per_tok"),
    groups: intField(config, "n_group", 1),
    keep: intField(config, "topk_group", 1),
    norm: config.norm_topk_prob !== false,
    scale: field(config, "routed_scaling_factor", names.scale ?? 1),
  };
  const swigluAt = (p: string, ff: number) => readSwiglu(w, p, SWIGLU, d, ff);
  const layers: Layer[] = [];
  for (const [l, kind] of kinds.entries()) {
    const p = `model.layers.${l}`;
    const layer: Layer = {
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.post_attention_layernorm.weight`, [d]),
      attn: await mixerAt(p),
    };
    if (kind.ffn === "moe") {
      layer.router = await w.get(`${p}.mlp.gate.weight`, [E, d]);
      const bias = names.bias ?? "gate.e_score_correction_bias";
      if (!v2) layer.bias = await w.get(`${p}.mlp.${bias}`, [E]);
      layer.experts = [];
      for (let e = 0; e < E; e++) {
        layer.experts.push(await swigluAt(`${p}.mlp.experts.${e}`, moeFf));
      }
      layer.shared = await swigluAt(`${p}.mlp.shared_experts`, sharedFf);
    } else {
      layer.mlp = await swigluAt(`${p}.mlp`, intField(config, "intermediate_size"));
    }
    layers.push(layer);
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const norm = await w.get("model.norm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);

  const moe = (L: Layer, x: Float64Array, T: number): Float64Array => {
    const logits = linear(x, T, d, L.router!, E);
    const out = swiglu(x, T, d, sharedFf, L.shared!);
    for (let t = 0; t < T; t++) {
      const z = logits.subarray(t * E, (t + 1) * E);
      const r = v2 ? routeV2(z, config, routing) : route(z, L.bias!, routing);
      const xt = x.subarray(t * d, (t + 1) * d);
      r.experts.forEach((e, j) => {
        const y = swiglu(xt, 1, d, moeFf, L.experts![e]);
        for (let i = 0; i < d; i++) out[t * d + i] += r.weights[j] * y[i];
      });
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
        const a = L.attn(rmsNorm(x, T, d, L.norm1, eps), T);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const n2 = rmsNorm(x, T, d, L.norm2, eps);
        const m = L.mlp
          ? swiglu(n2, T, d, intField(config, "intermediate_size"), L.mlp)
          : moe(L, n2, T);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      }
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab);
    },
  };
}
