/**
 * Float64 reference of Falcon-H1 (transformers 5's `FalconH1ForCausalLM`),
 * written from its modeling code: the embeddings times `embedding_multiplier`;
 * each layer's `input_layernorm` output feeds the Mamba-2 mixer (x times
 * `ssm_in_multiplier`, in_proj's rows times the μP vector of
 * `ssm_multipliers`, the gated RMSNorm per B/C group as `mamba_rms_norm` and
 * `mamba_norm_before_gate` say, or y·silu(z) alone) times `ssm_out_multiplier`
 * and attention (input times `attention_in_multiplier`, keys times
 * `key_multiplier`) times `attention_out_multiplier`, both added to the
 * residual; then `pre_ff_layernorm` and the MLP (gate times
 * `mlp_multipliers[0]` before silu, output times `mlp_multipliers[1]`); the
 * logits times `lm_head_multiplier`.
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
  readAttention,
  type ReferenceModel,
  rmsNorm,
  type Weights,
} from "./hf_reference.ts";
import { type Mamba2Dims, mamba2Mixer, type Mamba2Weights } from "./mamba2_reference.ts";
import { referenceRope } from "./rope_reference.ts";

interface Layer {
  norm1: Float64Array;
  norm2: Float64Array;
  attn: AttentionWeights;
  mamba: Mamba2Weights;
  mlp: { gate: Float64Array; up: Float64Array; down: Float64Array; b?: Float64Array[] };
}

const silu = (v: number) => v / (1 + Math.exp(-v));
const scaled = (a: Float64Array, m: number) => a.map((v) => v * m);

/** The Falcon-H1 reference model of a loaded checkpoint. */
export async function loadFalconH1(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-5);
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads", 8);
  const headDim = config.head_dim == null ? d / heads : intField(config, "head_dim");
  const ff = intField(config, "intermediate_size");
  const num = (k: string, dflt: number) => (config[k] ?? dflt) as number;
  const mh = intField(config, "mamba_n_heads", 128);
  // FalconH1Config: mamba_d_ssm 1024 unless given; null means mamba_expand × hidden_size.
  const inner = config.mamba_d_ssm === null
    ? Math.floor(num("mamba_expand", 2) * d)
    : intField(config, "mamba_d_ssm", 1024);
  const groups = intField(config, "mamba_n_groups", 1);
  const limit = (config.time_step_limit ?? [0, Infinity]) as unknown[];
  const rms = config.mamba_rms_norm === true;
  const m2: Mamba2Dims = {
    hidden: d,
    heads: mh,
    headDim: inner / mh,
    groups,
    state: intField(config, "mamba_d_state", 256),
    convKernel: intField(config, "mamba_d_conv", 4),
    dtLimit: [limitValue(limit[0]), limitValue(limit[1])],
    eps,
    normGroups: groups,
    inScale: num("ssm_in_multiplier", 1),
    projScale: (config.ssm_multipliers ?? [1, 1, 1, 1, 1]) as number[],
    gate: !rms
      ? "gate_only"
      : config.mamba_norm_before_gate === false
      ? "gate_first"
      : "norm_first",
  };
  const opt: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads,
    headDim,
    rope: referenceRope(config, headDim, 1e4),
    keyScale: num("key_multiplier", 1),
  };
  const attnBias = config.attention_bias === true, mlpBias = config.mlp_bias === true;
  const projBias = config.mamba_proj_bias === true, outBias = config.projectors_bias === true;
  const convBias = config.mamba_conv_bias !== false;
  const convDim = inner + 2 * groups * m2.state, rows = inner + convDim + mh;
  const layers: Layer[] = [];
  for (let l = 0; l < kinds.length; l++) {
    const p = `model.layers.${l}`, a = `${p}.self_attn`, m = `${p}.mamba`, f = `${p}.feed_forward`;
    layers.push({
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.pre_ff_layernorm.weight`, [d]),
      attn: await readAttention(w, a, opt, { qkvBias: attnBias, outBias: attnBias, qkNorm: false }),
      mamba: {
        inProj: await w.get(`${m}.in_proj.weight`, [rows, d]),
        inProjBias: await w.maybe(`${m}.in_proj.bias`, [rows], projBias),
        conv: await w.get(`${m}.conv1d.weight`, [convDim, 1, m2.convKernel]),
        convBias: await w.maybe(`${m}.conv1d.bias`, [convDim], convBias),
        dtBias: await w.get(`${m}.dt_bias`, [mh]),
        aLog: await w.get(`${m}.A_log`, [mh]),
        d: await w.get(`${m}.D`, [mh]),
        norm: await w.maybe(`${m}.norm.weight`, [inner], rms),
        outProj: await w.get(`${m}.out_proj.weight`, [d, inner]),
        outProjBias: await w.maybe(`${m}.out_proj.bias`, [d], outBias),
      },
      mlp: {
        gate: await w.get(`${f}.gate_proj.weight`, [ff, d]),
        up: await w.get(`${f}.up_proj.weight`, [ff, d]),
        down: await w.get(`${f}.down_proj.weight`, [d, ff]),
        b: mlpBias
          ? [
            (await w.maybe(`${f}.gate_proj.bias`, [ff], true))!,
            (await w.maybe(`${f}.up_proj.bias`, [ff], true))!,
            (await w.maybe(`${f}.down_proj.bias`, [d], true))!,
          ]
          : undefined,
      },
    });
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const norm = await w.get("model.final_layernorm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);
  const [gm, dm] = (config.mlp_multipliers ?? [1, 1]) as number[];

  return {
    architecture: "FalconH1ForCausalLM",
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = scaled(embed(ids, emb, vocab, d), num("embedding_multiplier", 1));
      for (const L of layers) {
        const n1 = rmsNorm(x, T, d, L.norm1, eps);
        const ssm = scaled(mamba2Mixer(n1, T, L.mamba, m2), num("ssm_out_multiplier", 1));
        const at = attention(scaled(n1, num("attention_in_multiplier", 1)), T, L.attn, opt);
        const am = num("attention_out_multiplier", 1);
        for (let i = 0; i < x.length; i++) x[i] += ssm[i] + at[i] * am;
        const n2 = rmsNorm(x, T, d, L.norm2, eps);
        const b = L.mlp.b;
        const g = linear(n2, T, d, L.mlp.gate, ff, b?.[0]);
        const u = linear(n2, T, d, L.mlp.up, ff, b?.[1]);
        for (let i = 0; i < g.length; i++) g[i] = u[i] * silu(g[i] * gm);
        const y = linear(g, T, ff, L.mlp.down, d, b?.[2]);
        for (let i = 0; i < x.length; i++) x[i] += y[i] * dm;
      }
      const logits = linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab);
      return scaled(logits, num("lm_head_multiplier", 1));
    },
  };
}
