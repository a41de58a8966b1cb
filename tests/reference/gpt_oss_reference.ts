/**
 * Float64 reference of GPT-OSS (transformers 5's `GptOssForCausalLM`, eager
 * attention and experts), written from its modeling code: attention with
 * biases, sinks (`softmax([scores, sink])` with the sink's column dropped),
 * yarn RoPE and per-layer sliding windows; routed experts with a router bias,
 * softmax over the top-k logits, `gate_up_proj` `[E, d, 2I]` applied as
 * `x @ W + b` with gate = even columns and up = odd ones, the clamped SwiGLU,
 * and `down_proj` `[E, I, d]`. MXFP4 checkpoints (`*_blocks`, `*_scales`)
 * are dequantized as transformers' `convert_moe_packed_tensors` does: byte i
 * of a block holds values 2i (low nibble) and 2i + 1, times 2^(scale − 127).
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
  type ReferenceModel,
  rmsNorm,
  type Weights,
} from "./hf_reference.ts";
import { referenceRope } from "./rope_reference.ts";

/** FP4 (E2M1) values by code, as transformers' FP4_VALUES. */
const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/** `[groups, rows, cols]` from MXFP4 blocks `[groups, rows, cols/32, 16]` and scales. */
function dequantMxfp4(blocks: Uint8Array, scales: Uint8Array, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let b = 0; b < n / 32; b++) {
    const f = 2 ** (scales[b] - 127);
    for (let i = 0; i < 16; i++) {
      const byte = blocks[b * 16 + i];
      out[b * 32 + 2 * i] = FP4[byte & 15] * f;
      out[b * 32 + 2 * i + 1] = FP4[byte >> 4] * f;
    }
  }
  return out;
}

/** `[g, r, c]` → `[g, c, r]`. */
function transposeGroups(m: Float64Array, g: number, r: number, c: number): Float64Array {
  const out = new Float64Array(m.length);
  for (let k = 0; k < g; k++) {
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < c; j++) out[(k * c + j) * r + i] = m[(k * r + i) * c + j];
    }
  }
  return out;
}

/** An expert tensor in transformers' float layout, from floats or MXFP4 blocks. */
async function expertTensor(
  w: Weights,
  name: string,
  E: number,
  rows: number,
  cols: number,
): Promise<Float64Array> {
  if (w.has(name)) return await w.get(name, [E, rows, cols]);
  // Blocks are [E, cols, rows/32, 16]: dequantized to [E, cols, rows], then transposed.
  const blocks = await w.bytes(`${name}_blocks`, [E, cols, rows / 32, 16]);
  const scales = await w.bytes(`${name}_scales`, [E, cols, rows / 32]);
  return transposeGroups(dequantMxfp4(blocks, scales, E * rows * cols), E, cols, rows);
}

interface Layer {
  norm1: Float64Array;
  norm2: Float64Array;
  attn: AttentionWeights;
  opt: AttentionOptions;
  router: Float64Array;
  routerBias: Float64Array;
  gateUp: Float64Array;
  gateUpBias: Float64Array;
  down: Float64Array;
  downBias: Float64Array;
}

/** The GPT-OSS reference model of a loaded checkpoint. */
export async function loadGptOss(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const vocab = intField(config, "vocab_size");
  const eps = field(config, "rms_norm_eps", 1e-5);
  const ff = intField(config, "intermediate_size");
  const E = intField(config, "num_local_experts");
  const k = intField(config, "num_experts_per_tok");
  const heads = intField(config, "num_attention_heads");
  const kvHeads = intField(config, "num_key_value_heads");
  // GptOssConfig's head_dim defaults to 64; an explicit null means hidden / heads.
  const headDim = config.head_dim === null ? d / heads : intField(config, "head_dim", 64);
  const rope = referenceRope(config, headDim, 150000);
  // GptOssExperts hard-codes alpha 1.702 and limit 7.0.
  const alpha = 1.702, limit = 7;
  const bias = config.attention_bias !== false;
  const layers: Layer[] = [];
  for (const [l, kind] of kinds.entries()) {
    const p = `model.layers.${l}`;
    const Q = heads * headDim, KV = kvHeads * headDim;
    layers.push({
      norm1: await w.get(`${p}.input_layernorm.weight`, [d]),
      norm2: await w.get(`${p}.post_attention_layernorm.weight`, [d]),
      attn: {
        q: await w.get(`${p}.self_attn.q_proj.weight`, [Q, d]),
        k: await w.get(`${p}.self_attn.k_proj.weight`, [KV, d]),
        v: await w.get(`${p}.self_attn.v_proj.weight`, [KV, d]),
        o: await w.get(`${p}.self_attn.o_proj.weight`, [d, Q]),
        qb: await w.maybe(`${p}.self_attn.q_proj.bias`, [Q], bias),
        kb: await w.maybe(`${p}.self_attn.k_proj.bias`, [KV], bias),
        vb: await w.maybe(`${p}.self_attn.v_proj.bias`, [KV], bias),
        ob: await w.maybe(`${p}.self_attn.o_proj.bias`, [d], bias),
        sinks: await w.get(`${p}.self_attn.sinks`, [heads]),
      },
      opt: { hidden: d, heads, kvHeads, headDim, rope, slidingWindow: kind.window },
      router: await w.get(`${p}.mlp.router.weight`, [E, d]),
      routerBias: await w.get(`${p}.mlp.router.bias`, [E]),
      gateUp: await expertTensor(w, `${p}.mlp.experts.gate_up_proj`, E, d, 2 * ff),
      gateUpBias: await w.get(`${p}.mlp.experts.gate_up_proj_bias`, [E, 2 * ff]),
      down: await expertTensor(w, `${p}.mlp.experts.down_proj`, E, ff, d),
      downBias: await w.get(`${p}.mlp.experts.down_proj_bias`, [E, d]),
    });
  }
  const emb = await w.get("model.embed_tokens.weight", [vocab, d]);
  const norm = await w.get("model.norm.weight", [d]);
  const head = config.tie_word_embeddings === true
    ? emb
    : await w.get("lm_head.weight", [vocab, d]);

  const experts = (L: Layer, x: Float64Array, T: number): Float64Array => {
    const logits = linear(x, T, d, L.router, E, L.routerBias);
    const out = new Float64Array(T * d);
    const h = new Float64Array(ff);
    for (let t = 0; t < T; t++) {
      const z = Array.from(logits.subarray(t * E, (t + 1) * E));
      // torch.topk: largest first; softmax over the chosen logits.
      const chosen = z.map((_, e) => e).sort((a, b) => z[b] - z[a] || a - b).slice(0, k);
      const mx = z[chosen[0]];
      const ex = chosen.map((e) => Math.exp(z[e] - mx));
      const sum = ex.reduce((a, b) => a + b, 0);
      chosen.forEach((e, j) => {
        const wgt = ex[j] / sum;
        for (let c = 0; c < ff; c++) {
          let g = L.gateUpBias[e * 2 * ff + 2 * c], u = L.gateUpBias[e * 2 * ff + 2 * c + 1];
          for (let i = 0; i < d; i++) {
            const xi = x[t * d + i];
            g += xi * L.gateUp[(e * d + i) * 2 * ff + 2 * c];
            u += xi * L.gateUp[(e * d + i) * 2 * ff + 2 * c + 1];
          }
          g = Math.min(g, limit);
          u = Math.min(Math.max(u, -limit), limit);
          h[c] = (u + 1) * g / (1 + Math.exp(-alpha * g));
        }
        for (let o = 0; o < d; o++) {
          let y = L.downBias[e * d + o];
          for (let c = 0; c < ff; c++) y += h[c] * L.down[(e * ff + c) * d + o];
          out[t * d + o] += wgt * y;
        }
      });
    }
    return out;
  };

  return {
    architecture: "GptOssForCausalLM",
    config,
    layers: kinds,
    vocabSize: vocab,
    forward(ids) {
      const T = ids.length;
      const x = embed(ids, emb, vocab, d);
      for (const L of layers) {
        const a = attention(rmsNorm(x, T, d, L.norm1, eps), T, L.attn, L.opt);
        for (let i = 0; i < x.length; i++) x[i] += a[i];
        const m = experts(L, rmsNorm(x, T, d, L.norm2, eps), T);
        for (let i = 0; i < x.length; i++) x[i] += m[i];
      }
      return linear(rmsNorm(x, T, d, norm, eps), T, d, head, vocab);
    },
  };
}
