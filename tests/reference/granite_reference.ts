/**
 * The float64 references of Hugging Face `GraniteMoeHybridForCausalLM` and
 * `BambaForCausalLM`, written from `modeling_granitemoehybrid.py` and
 * `modeling_bamba.py` (transformers 5.18) alone. Granite:
 * - embeddings × `embedding_multiplier`;
 * - each layer: h = x + residual_multiplier · mixer(input_layernorm(x)), the
 *   mixer a Mamba-2 (`BambaMixer`: the gated RMSNorm over all channels, Δ
 *   clamped to `time_step_limit` in the chunked prefill) or attention (no RoPE
 *   unless `position_embedding_type` is "rope"; q·k scaled by
 *   `attention_multiplier`; q/k/v/o biases with `attention_bias`);
 *   out = h + residual_multiplier · (moe(n) + shared_mlp(n)), n =
 *   post_attention_layernorm(h), the MoE absent when `num_local_experts` is 0;
 * - shared_mlp: `input_linear` [2S, d] whose first S rows are the gate, the
 *   last S the up projection (`chunk(2, dim=-1)`), `output_linear` [d, S];
 * - MoE: router `router.layer` [E, d]; top-k of the logits, softmax over those
 *   k; experts `input_linear` [E, 2I, d] (gate rows then up rows each) and
 *   `output_linear` [E, d, I];
 * - logits = lm_head(norm(x)) / `logits_scaling`.
 *
 * Bamba: the same Mamba-2 mixer (`BambaMixer`) where a layer is not in
 * `attn_layer_indices`; attention scaled by 1/√head_dim with a partial RoPE
 * (`apply_rotary_pos_emb` of GLM: the first int(head_dim ·
 * partial_rotary_factor) values of each head rotate as a head of that size,
 * the factor 0.5 where `rope_parameters` gives none); norms `input_layernorm`,
 * `pre_ff_layernorm`, `model.final_layernorm`; a SwiGLU `feed_forward` in every
 * layer; no multipliers.
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
  limitValue,
  linear,
  type ReferenceModel,
  rmsNorm,
  sparseMoe,
  swiglu,
  type SwigluWeights,
  type Weights,
} from "./hf_reference.ts";
import { type Mamba2Dims, mamba2Mixer, type Mamba2Weights } from "./mamba2_reference.ts";
import { referenceRope } from "./rope_reference.ts";
import { hfActivation } from "./activation_reference.ts";
import { route } from "./glm4_moe_reference.ts";

/** Rows `[k·rows, (k+1)·rows)` of a row-major matrix with `cols` columns. */
function rowsOf(m: Float64Array, k: number, rows: number, cols: number): Float64Array {
  return m.slice(k * rows * cols, (k + 1) * rows * cols);
}

/** The gate and up halves of a fused `input_linear` block of 2·ff rows. */
function swigluOf(gateUp: Float64Array, down: Float64Array, ff: number, d: number): SwigluWeights {
  return { gate: rowsOf(gateUp, 0, ff, d), up: rowsOf(gateUp, 1, ff, d), down };
}

/**
 * Loads a Granite hybrid's tensors from `w` and returns its reference forward.
 *
 * @example
 * ```ts ignore
 * const model = await loadGranite(weights, config, layerKinds(config));
 * ```
 */
export async function loadGranite(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
  arch:
    | "GraniteMoeHybridForCausalLM"
    | "GraniteMoeForCausalLM"
    | "GraniteMoeSharedForCausalLM" = "GraniteMoeHybridForCausalLM",
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-6);
  // Granite 3 MoE: no shared MLP; GraniteMoeShared: one when shared_intermediate_size > 0.
  const hybrid = arch === "GraniteMoeHybridForCausalLM";
  const S = arch === "GraniteMoeForCausalLM"
    ? 0
    : intField(config, "shared_intermediate_size", hybrid ? 1024 : 0);
  const ff = intField(config, "intermediate_size");
  const E = intField(config, "num_local_experts", 8);
  const k = intField(config, "num_experts_per_tok", 2);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", heads);
  const headDim = d / heads;
  const bias = config.attention_bias === true;
  const attnOpt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope: !hybrid || config.position_embedding_type === "rope"
      ? referenceRope(config, headDim, 1e4)
      : undefined,
    scale: field(config, "attention_multiplier", 1),
  };
  const m2 = bambaMixerDims(config, d, eps);
  const act = hfActivation(config.hidden_act);
  const projBias = config.mamba_proj_bias === true;
  const convBias = config.mamba_conv_bias !== false;
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  type Layer = {
    norm1: Float64Array;
    norm2: Float64Array;
    attn?: AttentionWeights;
    mamba?: Mamba2Weights;
    shared?: SwigluWeights;
    router?: Float64Array;
    experts?: SwigluWeights[];
  };
  const layers: Layer[] = [];
  for (const [l, kind] of kinds.entries()) {
    const p = `model.layers.${l}`;
    const layer: Layer = {
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.post_attention_layernorm.weight`, [d]),
      shared: S > 0
        ? swigluOf(
          await w.get(`${p}.shared_mlp.input_linear.weight`, [2 * S, d]),
          await w.get(`${p}.shared_mlp.output_linear.weight`, [d, S]),
          S,
          d,
        )
        : undefined,
    };
    if (kind.mixer === "attention") {
      layer.attn = await readAttention(w, `${p}.self_attn`, attnOpt, bias);
    } else {
      layer.mamba = await readBambaMixer(w, `${p}.mamba`, m2, projBias, convBias);
    }
    if (kind.ffn === "moe") {
      const moe = `${p}.block_sparse_moe`;
      layer.router = await w.get(`${moe}.router.layer.weight`, [E, d]);
      const gateUp = await w.get(`${moe}.input_linear.weight`, [E, 2 * ff, d]);
      const down = await w.get(`${moe}.output_linear.weight`, [E, d, ff]);
      layer.experts = Array.from(
        { length: E },
        (_, e) => swigluOf(rowsOf(gateUp, e, 2 * ff, d), rowsOf(down, e, d, ff), ff, d),
      );
    }
    layers.push(layer);
  }
  const norm = await w.get("model.norm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);
  const em = field(config, "embedding_multiplier", 1);
  const rm = field(config, "residual_multiplier", 1);
  const ls = field(config, "logits_scaling", 1);
  return {
    architecture: arch,
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d).map((v) => v * em);
      const addScaled = (y: Float64Array) => {
        for (let i = 0; i < x.length; i++) x[i] += rm * y[i];
      };
      for (const layer of layers) {
        const n1 = rmsNorm(x, T, d, layer.norm1, eps);
        addScaled(
          layer.attn ? attention(n1, T, layer.attn, attnOpt) : mamba2Mixer(n1, T, layer.mamba!, m2),
        );
        const n2 = rmsNorm(x, T, d, layer.norm2, eps);
        const y = layer.shared ? swiglu(n2, T, d, S, layer.shared, act) : new Float64Array(T * d);
        if (layer.experts) {
          // Softmax over the top-k logits = the top-k softmax probabilities renormalised.
          const r = sparseMoe(n2, T, d, ff, layer.router!, layer.experts, k, true, act);
          for (let i = 0; i < y.length; i++) y[i] += r[i];
        }
        addScaled(y);
      }
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab).map((v) => v / ls);
    },
  };
}

/** The sizes of a `BambaMixer` (Bamba's and Granite's Mamba-2) from the config. */
function bambaMixerDims(config: HfConfig, d: number, eps: number): Mamba2Dims {
  const mHeads = intField(config, "mamba_n_heads", 128);
  const inner = field(config, "mamba_expand", 2) * d;
  const limit = (config.time_step_limit ?? [0, Infinity]) as unknown[];
  return {
    hidden: d,
    heads: mHeads,
    headDim: config.mamba_d_head == null || config.mamba_d_head === "auto"
      ? inner / mHeads
      : intField(config, "mamba_d_head"),
    groups: intField(config, "mamba_n_groups", 1),
    state: intField(config, "mamba_d_state", 256),
    convKernel: intField(config, "mamba_d_conv", 4),
    dtLimit: [limitValue(limit[0]), limitValue(limit[1])],
    eps,
    normGroups: 1,
    act: hfActivation(config.hidden_act),
  };
}

/** A `BambaMixer`'s tensors under `m` (`model.layers.N.mamba`). */
async function readBambaMixer(
  w: Weights,
  m: string,
  m2: Mamba2Dims,
  projBias: boolean,
  convBias: boolean,
): Promise<Mamba2Weights> {
  const I = m2.heads * m2.headDim, conv = I + 2 * m2.groups * m2.state;
  const rows = I + conv + m2.heads;
  return {
    inProj: await w.get(`${m}.in_proj.weight`, [rows, m2.hidden]),
    inProjBias: await w.maybe(`${m}.in_proj.bias`, [rows], projBias),
    conv: await w.get(`${m}.conv1d.weight`, [conv, 1, m2.convKernel]),
    convBias: await w.maybe(`${m}.conv1d.bias`, [conv], convBias),
    dtBias: await w.get(`${m}.dt_bias`, [m2.heads]),
    aLog: await w.get(`${m}.A_log`, [m2.heads]),
    d: await w.get(`${m}.D`, [m2.heads]),
    norm: await w.get(`${m}.norm.weight`, [I]),
    outProj: await w.get(`${m}.out_proj.weight`, [m2.hidden, I]),
    outProjBias: await w.maybe(`${m}.out_proj.bias`, [m2.hidden], projBias),
  };
}

/** q/k/v/o under `a`, with biases when `bias`. */
async function readAttention(
  w: Weights,
  a: string,
  o: AttentionOptions,
  bias: boolean,
): Promise<AttentionWeights> {
  const { hidden: d, heads, kvHeads, headDim } = o;
  const Q = heads * headDim, KV = kvHeads * headDim;
  return {
    q: await w.get(`${a}.q_proj.weight`, [Q, d]),
    k: await w.get(`${a}.k_proj.weight`, [KV, d]),
    v: await w.get(`${a}.v_proj.weight`, [KV, d]),
    o: await w.get(`${a}.o_proj.weight`, [d, Q]),
    qb: await w.maybe(`${a}.q_proj.bias`, [Q], bias),
    kb: await w.maybe(`${a}.k_proj.bias`, [KV], bias),
    vb: await w.maybe(`${a}.v_proj.bias`, [KV], bias),
    ob: await w.maybe(`${a}.o_proj.bias`, [d], bias),
  };
}

/** A layer's token mixer: attention at `attn`, or a `BambaMixer` at `mamba` (neither: none). */
async function readMixer(
  w: Weights,
  kind: LayerKind,
  at: { attn: string; mamba: string },
  attnOpt: AttentionOptions,
  attnBias: boolean,
  m2: Mamba2Dims,
  biases: { proj: boolean; conv: boolean },
): Promise<{ attn?: AttentionWeights; mamba?: Mamba2Weights }> {
  if (kind.mixer === "attention") {
    return { attn: await readAttention(w, at.attn, attnOpt, attnBias) };
  }
  if (kind.mixer === "mamba") {
    return { mamba: await readBambaMixer(w, at.mamba, m2, biases.proj, biases.conv) };
  }
  return {};
}

/**
 * Loads a Bamba's tensors from `w` and returns its reference forward.
 *
 * @example
 * ```ts ignore
 * const model = await loadBamba(weights, config, layerKinds(config));
 * ```
 */
export async function loadBamba(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-5);
  const ff = intField(config, "intermediate_size");
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", 8);
  const headDim = config.head_dim == null ? d / heads : intField(config, "head_dim");
  const rp = (config.rope_parameters ?? {}) as HfConfig;
  const partial = (rp.partial_rotary_factor ?? 0.5) as number;
  const R = Math.floor(headDim * partial);
  const attnOpt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope: referenceRope(config, R, 1e4),
    rotaryDim: R,
  };
  const m2 = bambaMixerDims(config, d, eps);
  const act = hfActivation(config.hidden_act);
  const bias = config.attention_bias === true;
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const layers: {
    norm1: Float64Array;
    norm2: Float64Array;
    attn?: AttentionWeights;
    mamba?: Mamba2Weights;
    mlp: SwigluWeights;
  }[] = [];
  for (const [l, kind] of kinds.entries()) {
    const p = `model.layers.${l}`;
    layers.push({
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.pre_ff_layernorm.weight`, [d]),
      ...await readMixer(
        w,
        kind,
        { attn: `${p}.self_attn`, mamba: `${p}.mamba` },
        attnOpt,
        bias,
        m2,
        {
          proj: config.mamba_proj_bias === true,
          conv: config.mamba_conv_bias !== false,
        },
      ),
      mlp: {
        gate: await w.get(`${p}.feed_forward.gate_proj.weight`, [ff, d]),
        up: await w.get(`${p}.feed_forward.up_proj.weight`, [ff, d]),
        down: await w.get(`${p}.feed_forward.down_proj.weight`, [d, ff]),
      },
    });
  }
  const norm = await w.get("model.final_layernorm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);
  return {
    architecture: "BambaForCausalLM",
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      const add = (y: Float64Array) => {
        for (let i = 0; i < x.length; i++) x[i] += y[i];
      };
      for (const layer of layers) {
        const n1 = rmsNorm(x, T, d, layer.norm1, eps);
        add(
          layer.attn ? attention(n1, T, layer.attn, attnOpt) : mamba2Mixer(n1, T, layer.mamba!, m2),
        );
        add(swiglu(rmsNorm(x, T, d, layer.norm2, eps), T, d, ff, layer.mlp, act));
      }
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab);
    },
  };
}

/**
 * Loads a Nemotron-H's tensors from `w` and returns its reference forward
 * (`modeling_nemotron_h.py`): each block x + mixer(norm(x)), the mixer a
 * Mamba-2 (`backbone.layers.N.mixer`, its gated RMSNorm per B/C group, Δ clamped
 * from below at `time_step_min` in the prompt's chunked scan), attention without
 * RoPE or biases, an MLP down(relu(up·x)²), or routed relu² experts
 * (NemotronHMoE: sigmoid affinities plus the selection bias, groups, scaling)
 * beside a shared one; `backbone.embeddings`, `backbone.norm_f`.
 *
 * @example
 * ```ts ignore
 * const model = await loadNemotronH(weights, config, layerKinds(config));
 * ```
 */
export async function loadNemotronH(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "layer_norm_epsilon", 1e-5);
  const ff = intField(config, "intermediate_size");
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", 8);
  const attnOpt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim: intField(config, "head_dim", 128),
  };
  const mHeads = intField(config, "mamba_num_heads", 128);
  const groups = intField(config, "n_groups", 8);
  const m2: Mamba2Dims = {
    hidden: d,
    heads: mHeads,
    headDim: intField(config, "mamba_head_dim", 64),
    groups,
    state: intField(config, "ssm_state_size", 128),
    convKernel: intField(config, "conv_kernel", 4),
    dtLimit: [field(config, "time_step_min", 0.001), Infinity],
    eps,
    normGroups: groups,
    act: hfActivation(config.mamba_hidden_act),
  };
  const emb = await w.get("backbone.embeddings.weight", [vocab, d]);
  type Relu2 = { up: Float64Array; down: Float64Array };
  // Nemotron 3 Super: the experts run at moe_latent_size between fc1/fc2_latent_proj.
  const latent = config.moe_latent_size == null ? 0 : intField(config, "moe_latent_size");
  const X = latent || d;
  const relu2At = async (p: string, width: number, io = d): Promise<Relu2> => ({
    up: await w.get(`${p}.up_proj.weight`, [width, io]),
    down: await w.get(`${p}.down_proj.weight`, [io, width]),
  });
  // down(relu(up·x)²): the MLP blocks, each routed expert and the shared expert.
  const relu2 = (x: Float64Array, T: number, m: Relu2, width: number, io = d) =>
    linear(linear(x, T, io, m.up, width).map((v) => Math.max(v, 0) ** 2), T, width, m.down, io);
  // NemotronHMoE: DeepSeek-V3's router (NemotronHTopkRouter), relu² experts, a shared expert.
  const E = intField(config, "n_routed_experts", 8);
  const moeFf = intField(config, "moe_intermediate_size", 7688);
  // NemotronHMLP: `intermediate_size or config.intermediate_size`.
  const sharedFf = intField(config, "moe_shared_expert_intermediate_size", 7688) || ff;
  const routing = {
    k: intField(config, "num_experts_per_tok", 2),
    groups: intField(config, "n_group", 1),
    keep: intField(config, "topk_group", 1),
    norm: config.norm_topk_prob !== false,
    scale: field(config, "routed_scaling_factor", 1),
  };
  type Experts = {
    router: Float64Array;
    bias: Float64Array;
    experts: Relu2[];
    shared: Relu2;
    fc1?: Float64Array;
    fc2?: Float64Array;
  };
  const blocks: {
    norm: Float64Array;
    attn?: AttentionWeights;
    mamba?: Mamba2Weights;
    mlp?: Relu2;
    moe?: Experts;
  }[] = [];
  for (const [l, kind] of kinds.entries()) {
    const p = `backbone.layers.${l}`;
    let moe: Experts | undefined;
    if (kind.ffn === "moe") {
      const experts: Relu2[] = [];
      for (let e = 0; e < E; e++) experts.push(await relu2At(`${p}.mixer.experts.${e}`, moeFf, X));
      moe = {
        router: await w.get(`${p}.mixer.gate.weight`, [E, d]),
        bias: await w.get(`${p}.mixer.gate.e_score_correction_bias`, [E]),
        experts,
        shared: await relu2At(`${p}.mixer.shared_experts`, sharedFf),
        ...(latent
          ? {
            fc1: await w.get(`${p}.mixer.fc1_latent_proj.weight`, [X, d]),
            fc2: await w.get(`${p}.mixer.fc2_latent_proj.weight`, [d, X]),
          }
          : {}),
      };
    }
    blocks.push({
      norm: await w.get(`${p}.norm.weight`, [d]),
      ...await readMixer(w, kind, { attn: `${p}.mixer`, mamba: `${p}.mixer` }, attnOpt, false, m2, {
        proj: config.use_bias === true,
        conv: config.use_conv_bias !== false,
      }),
      mlp: kind.ffn === "mlp" ? await relu2At(`${p}.mixer`, ff) : undefined,
      moe,
    });
  }
  const routed = (m: Experts, x: Float64Array, T: number): Float64Array => {
    const logits = linear(x, T, d, m.router, E);
    const xl = m.fc1 ? linear(x, T, d, m.fc1, X) : x;
    const routed = new Float64Array(T * X);
    for (let t = 0; t < T; t++) {
      const r = route(logits.subarray(t * E, (t + 1) * E), m.bias, routing);
      const xt = xl.subarray(t * X, (t + 1) * X);
      r.experts.forEach((e, j) => {
        const y = relu2(xt, 1, m.experts[e], moeFf, X);
        for (let i = 0; i < X; i++) routed[t * X + i] += r.weights[j] * y[i];
      });
    }
    const out = m.fc2 ? linear(routed, T, X, m.fc2, d) : routed;
    const shared = relu2(x, T, m.shared, sharedFf);
    for (let i = 0; i < out.length; i++) out[i] += shared[i];
    return out;
  };
  const norm = await w.get("backbone.norm_f.weight", [d]);
  // NemotronHForCausalLM ties nothing (`_tied_weights_keys = {}`).
  const head = await w.get("lm_head.weight", [vocab, d]);
  return {
    architecture: "NemotronHForCausalLM",
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      for (const b of blocks) {
        const n = rmsNorm(x, T, d, b.norm, eps);
        let y: Float64Array;
        if (b.attn) y = attention(n, T, b.attn, attnOpt);
        else if (b.mamba) y = mamba2Mixer(n, T, b.mamba, m2);
        else if (b.moe) y = routed(b.moe, n, T);
        else y = relu2(n, T, b.mlp!, ff);
        for (let i = 0; i < x.length; i++) x[i] += y[i];
      }
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab);
    },
  };
}
