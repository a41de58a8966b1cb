/**
 * The Hugging Face attention block (Mistral/Mixtral `MistralAttention`, Jamba's
 * `JambaAttention` without RoPE, Qwen2-MoE's with q/k/v biases, OLMoE's with
 * QK-norm and `clip_qkv`) built from Kiln ops: q/k/v projections, rotary
 * embedding (optionally scaled), a KV cache kept in device state and appended in
 * place, fused grouped-query attention, and the output projection.
 *
 * Parameters, under the block's `name` (HF Linear layout `[out, in]`):
 * `${name}.q_proj.weight` `[heads·headDim, hidden]`, `${name}.k_proj.weight` and
 * `${name}.v_proj.weight` `[kvHeads·headDim, hidden]`, `${name}.o_proj.weight`
 * `[hidden, heads·headDim]`; with `qkvBias` / `outBias` the matching `.bias`
 * vectors; with `qkNorm` `${name}.q_norm.weight` `[heads·headDim]` and
 * `${name}.k_norm.weight` `[kvHeads·headDim]` (per head: both `[headDim]`). States (with a cache):
 * `${name}.k_cache` and `${name}.v_cache` `[maxSeq, kvHeads, headDim]`.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import { atSite, callSite } from "../core/errors.ts";
import type { DType } from "../core/dtype.ts";
import { linear, type WeightFormats } from "./weights.ts";
import type { MlaConfig } from "./config.ts";
import { mlaBlock } from "./mla.ts";
import { pairsToHalves } from "./rope_scaling.ts";

/**
 * Options of {@linkcode attentionBlock}.
 *
 * @example
 * ```ts
 * import { attentionBlock, type AttentionBlockOptions, GraphBuilder } from "@kiln/kiln";
 * const opts: AttentionBlockOptions = {
 *   name: "model.layers.0.self_attn",
 *   heads: 8,
 *   kvHeads: 2,
 *   ropeTheta: 1e6,
 *   maxSeq: 256,
 * };
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * g.output("y", attentionBlock(g, x, g.input("pos", [1], "u32"), opts));
 * ```
 */
export interface AttentionBlockOptions {
  /** Name prefix, e.g. `"model.layers.0.self_attn"`. */
  name: string;
  /** Query heads (`num_attention_heads`). */
  heads: number;
  /** Key/value heads (`num_key_value_heads`); default `heads`. */
  kvHeads?: number;
  /** Head dimension; default hidden / heads. */
  headDim?: number;
  /** RoPE base (`rope_theta`); `null` for no rotary embedding (Jamba). Default 10000. */
  ropeTheta?: number | null;
  /** Sliding window (`sliding_window`); absent/0/null = full causal attention. */
  slidingWindow?: number | null;
  /**
   * KV-cache capacity in tokens. With it, k/v are appended to states at `pos` and
   * attention reads the cache; without it, attention sees only this run's tokens.
   */
  maxSeq?: number;
  /** Dtype of weights and cache (default: x's dtype). */
  dtype?: DType;
  /** RoPE scaling: the inverse frequencies and the factor on cos/sin (`ropeFrequencies`). */
  ropeScaling?: { invFreq: ArrayLike<number>; scale: number };
  /** q, k and v projections have biases (Qwen2-MoE). */
  qkvBias?: boolean;
  /** o_proj has a bias (OLMoE with `attention_bias`). */
  outBias?: boolean;
  /** RMSNorm over the whole q and k projections before RoPE, with this epsilon (OLMoE). */
  qkNormEps?: number;
  /** The q/k RMSNorms span one head (weights `[headDim]`, Qwen3-MoE), not the projection. */
  qkNormPerHead?: boolean;
  /** The per-head q/k RMSNorms follow RoPE instead of preceding it (Hunyuan-A13B). */
  qkNormAfterRope?: boolean;
  /** The output projection's name inside the block (default `o_proj`; LFM2's `out_proj`). */
  outName?: string;
  /** The q/k RMSNorms' weight names inside the block (default `q_norm`, `k_norm`). */
  qkNormNames?: { q: string; k: string };
  /** The q/k RMSNorm weights are stored as offsets from this (Qwen3-Next's `1 + weight`). */
  qkNormOffset?: number;
  /**
   * q_proj also yields a gate: each head's `2·headDim` rows are its query, then
   * its gate, and the attention output is multiplied by σ(gate) before o_proj
   * (Qwen3-Next).
   */
  outputGate?: boolean;
  /** Clamp q, k and v to ±clipQkv after projection (OLMoE `clip_qkv`). */
  clipQkv?: number;
  /** Projections stored block-quantized, by parameter name (see `linear`). */
  weightFormats?: WeightFormats;
  /** Scale of q·k before the softmax (Granite's `attention_multiplier`); default 1/√headDim. */
  scale?: number;
  /** Partial RoPE: only each head's first `rotaryDim` values rotate (default all). */
  rotaryDim?: number;
  /** Factor on the keys after k_proj, before RoPE (Falcon-H1's `key_multiplier`). */
  keyScale?: number;
  /**
   * RoPE rotates adjacent pairs of each head (ERNIE 4.5) rather than its halves:
   * q and k are permuted alike into halves first, which leaves q·k unchanged.
   */
  ropeInterleave?: boolean;
  /**
   * A learned logit per query head, `${name}.sinks` `[heads]` f32, joins each
   * row's softmax without a value (GPT-OSS's attention sinks).
   */
  sinks?: boolean;
  /**
   * DeepSeek-V3's multi-head latent attention instead of q/k/v projections
   * (`./mla.ts`; `headDim` is then the query/key head size, `outBias` covers
   * its projections' biases, `rotaryDim` and the QK-norm options do not apply).
   */
  mla?: MlaConfig;
}

/**
 * One attention block on x `[T, hidden]`; row t sits at position `pos[0] + t`
 * (`pos`: u32 [1]). Returns `[T, hidden]` (before the residual add).
 *
 * @example
 * ```ts
 * import { attentionBlock, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * const pos = g.input("pos", [1], "u32");
 * const y = attentionBlock(g, x, pos, {
 *   name: "model.layers.0.self_attn", heads: 4, kvHeads: 2, ropeTheta: 1e6, maxSeq: 256,
 * });
 * g.output("y", y);
 * ```
 */
export function attentionBlock(
  g: GraphBuilder,
  x: Tensor,
  pos: Tensor,
  options: AttentionBlockOptions,
): Tensor {
  const site = callSite();
  const fail = (msg: string): never => {
    throw atSite(new RangeError(`attentionBlock "${options.name}": ${msg}`), site);
  };
  if (x.shape.length !== 2 || typeof x.shape[1] !== "number") {
    fail(`x must be [T, hidden] with a concrete hidden size, got [${x.shape.join(", ")}]`);
  }
  const hidden = x.shape[1] as number;
  const H = options.heads;
  const Hkv = options.kvHeads ?? H;
  if (!Number.isInteger(H) || H < 1) fail(`heads must be a positive integer, got ${H}`);
  if (!Number.isInteger(Hkv) || Hkv < 1 || H % Hkv !== 0) {
    fail(`heads (${H}) must be a multiple of kvHeads (${Hkv})`);
  }
  const D = options.headDim ?? hidden / H;
  if (!Number.isInteger(D) || D < 1) {
    fail(`headDim must be a positive integer (hidden ${hidden} / heads ${H} = ${D})`);
  }
  if (options.maxSeq !== undefined && (!Number.isInteger(options.maxSeq) || options.maxSeq < 1)) {
    fail(`maxSeq must be a positive integer, got ${options.maxSeq}`);
  }
  if (options.mla) return mlaBlock(g, x, pos, { ...options, mla: options.mla });
  const dt = options.dtype ?? x.dtype;
  const n = options.name;
  const T = x.shape[0];
  const formats = options.weightFormats ?? {};
  const proj = (w: string, rows: number, bias: boolean | undefined) => {
    const y = linear(g, x, `${n}.${w}.weight`, rows, hidden, dt, formats);
    return bias ? y.add(g.param(`${n}.${w}.bias`, [rows], dt)) : y;
  };
  let qf = proj("q_proj", (options.outputGate ? 2 : 1) * H * D, options.qkvBias);
  let gate: Tensor | undefined;
  if (options.outputGate) {
    const both = qf.reshape([T, H, 2 * D]);
    gate = both.slice(2, D, 2 * D).reshape([T, H * D]);
    qf = both.slice(2, 0, D).reshape([T, H * D]);
  }
  let kf = proj("k_proj", Hkv * D, options.qkvBias);
  if (options.keyScale !== undefined && options.keyScale !== 1) kf = kf.mul(options.keyScale);
  let vf = proj("v_proj", Hkv * D, options.qkvBias);
  const qkEps = options.qkNormEps;
  const off = options.qkNormOffset ?? 0;
  const normW = (name: string, size: number) => {
    const w = g.param(name, [size], dt);
    return off === 0 ? w : w.add(off);
  };
  const qn = `${n}.${options.qkNormNames?.q ?? "q_norm"}.weight`;
  const kn = `${n}.${options.qkNormNames?.k ?? "k_norm"}.weight`;
  if (qkEps !== undefined && !options.qkNormPerHead) {
    qf = qf.rmsnorm(normW(qn, H * D), qkEps);
    kf = kf.rmsnorm(normW(kn, Hkv * D), qkEps);
  }
  const clip = options.clipQkv ?? 0;
  if (clip > 0) {
    const c = (t: Tensor) => t.maximum(-clip).minimum(clip);
    [qf, kf, vf] = [c(qf), c(kf), c(vf)];
  }
  let q = qf.reshape([T, H, D]);
  let k = kf.reshape([T, Hkv, D]);
  let v = vf.reshape([T, Hkv, D]);
  const headNorms = () => {
    q = q.rmsnorm(normW(qn, D), qkEps!);
    k = k.rmsnorm(normW(kn, D), qkEps!);
  };
  const perHead = qkEps !== undefined && options.qkNormPerHead;
  if (perHead && !options.qkNormAfterRope) headNorms();
  const theta = options.ropeTheta === undefined ? 10000 : options.ropeTheta;
  if (theta !== null) {
    if (options.ropeInterleave) {
      if (options.rotaryDim !== undefined && options.rotaryDim !== D) {
        throw new RangeError(
          `${n}: interleaved RoPE rotates whole heads, not ${options.rotaryDim}`,
        );
      }
      [q, k] = [pairsToHalves(q), pairsToHalves(k)];
    }
    q = q.rope(pos, theta, options.ropeScaling, options.rotaryDim);
    k = k.rope(pos, theta, options.ropeScaling, options.rotaryDim);
  }
  if (perHead && options.qkNormAfterRope) headNorms();
  if (options.maxSeq !== undefined) {
    // Append in place: the new cache value is the state's own buffer, so a decode
    // step writes one row per head and attention reads the whole cache.
    const kc = g.state(`${n}.k_cache`, [options.maxSeq, Hkv, D], dt);
    const vc = g.state(`${n}.v_cache`, [options.maxSeq, Hkv, D], dt);
    k = kc.writeRows(k, pos);
    v = vc.writeRows(v, pos);
    g.assign(kc, k);
    g.assign(vc, v);
  }
  const attrs = {
    causal: true,
    window: options.slidingWindow ?? 0,
    scale: options.scale ?? 1 / Math.sqrt(D),
  };
  const at = options.maxSeq !== undefined ? pos : undefined;
  const o = options.sinks
    ? withSinks(g, q, k, v, at, attrs, `${n}.sinks`)
    : g.attention(q, k, v, at, attrs);
  const flat = o.reshape([T, H * D]);
  const gated = gate ? flat.mul(gate.sigmoid()) : flat;
  const oName = `${n}.${options.outName ?? "o_proj"}`;
  const out = linear(g, gated, `${oName}.weight`, hidden, H * D, dt, formats);
  return options.outBias ? out.add(g.param(`${oName}.bias`, [hidden], dt)) : out;
}

/**
 * Attention whose softmax also holds a sink logit sₕ per head: with the row's
 * log-sum-exp L over its visible keys, the keys' probabilities shrink by
 * e^L / (e^L + e^sₕ) = σ(L − sₕ), so the output is the plain attention's
 * times σ(L − sₕ) — the fused kernel's second result, no extra pass over the
 * keys. A row that sees no key (L is `LSE_NONE`, 1e30) stays 0, as it does
 * in transformers, where the sink then takes all of the probability.
 */
function withSinks(
  g: GraphBuilder,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  pos: Tensor | undefined,
  attrs: { causal: boolean; window: number; scale: number },
  name: string,
): Tensor {
  const [T, H] = q.shape;
  const p = pos ?? g.constant([0], [1], "u32");
  const [o, lse] = g.apply("attention", [q, k, v, p], { ...attrs, splits: 0, lse: true });
  const keep = lse.sub(g.param(name, [H as number], "f32")).sigmoid().reshape([T, H, 1]);
  return o.mul(o.dtype === "f32" ? keep : keep.cast(o.dtype));
}
