/**
 * Gated DeltaNet, the linear-attention mixer of Qwen3-Next's
 * `linear_attention` layers (HF `Qwen3NextGatedDeltaNet`): in_proj_qkvz and
 * in_proj_ba project x; q, k and v go through a causal depthwise conv with its
 * activation; q and k are L2-normalised (q also scaled by 1/√dk); the gated
 * delta rule (`gated_delta`) runs with β = σ(b) and the log-decay
 * g = −exp(A_log)·softplus(a + dt_bias); its output is RMS-normed per head,
 * gated by silu(z) and projected back by out_proj.
 *
 * Parameters, as Hugging Face names them under the mixer's prefix (Qwen3.5's
 * `split` projections: `in_proj_qkv`, `in_proj_z`, `in_proj_b`, `in_proj_a`):
 * `in_proj_qkvz.weight` [2·Hk·dk + 2·Hv·dv, d] (per key head: its q, its k,
 * then the v and z rows of its r = Hv/Hk value heads), `in_proj_ba.weight`
 * [2·Hv, d] (per key head: the b rows of its value heads, then the a rows),
 * `conv1d.weight` [2·Hk·dk + Hv·dv, 1, k] (no bias), `dt_bias` [Hv],
 * `A_log` [Hv], `norm.weight` [dv], `out_proj.weight` [d, Hv·dv]. States, as
 * the Mamba mixers' (so caches, resets and prefix reuse treat them alike):
 * `conv_state` [B, 2·Hk·dk + Hv·dv, k] and `ssm_state` [B, Hv·dk, dv] (HF's
 * recurrent state [B, Hv, dk, dv], the same bytes).
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import type { HiddenAct } from "./activation.ts";
import { mixerConv, mixerMode } from "./mamba.ts";
import { linear as linearLayer, type WeightFormats } from "./weights.ts";

/**
 * Options of {@linkcode gatedDeltaNetMixer} (HF `Qwen3NextConfig` names in comments).
 *
 * @example
 * ```ts
 * import type { GatedDeltaNetOptions } from "@kiln/kiln";
 * const options: GatedDeltaNetOptions = {
 *   name: "model.layers.0.linear_attn", d: 32, keyHeads: 2, valueHeads: 4, keyDim: 8, valueDim: 8,
 * };
 * ```
 */
export interface GatedDeltaNetOptions {
  /** Parameter/state prefix, e.g. `model.layers.0.linear_attn`. */
  name: string;
  /** Model width d (`hidden_size`). */
  d: number;
  /** Key (and query) heads Hk (`linear_num_key_heads`). */
  keyHeads: number;
  /** Value heads Hv (`linear_num_value_heads`), a multiple of Hk. */
  valueHeads: number;
  /** Key head size dk (`linear_key_head_dim`). */
  keyDim: number;
  /** Value head size dv (`linear_value_head_dim`). */
  valueDim: number;
  /**
   * Qwen3.5's projections: `in_proj_qkv` (all q rows, all k, all v), `in_proj_z`,
   * `in_proj_b`, `in_proj_a`, instead of Qwen3-Next's `in_proj_qkvz` and
   * `in_proj_ba` grouped by key head.
   */
  split?: boolean;
  /** Causal conv width (`linear_conv_kernel_dim`, default 4). */
  convKernel?: number;
  /** The conv's activation (`hidden_act`, default silu); the output gate stays silu. */
  convAct?: HiddenAct;
  /** Epsilon of the gated RMSNorm (`rms_norm_eps`, default 1e-6). */
  eps?: number;
  /** `"prefill"` (default), `"decode"` or `"stateless"`, as `mambaMixer`'s. */
  mode?: "prefill" | "decode" | "stateless";
  /** Prefill only: u32 `[1]`, the last real row (later rows are padding). */
  last?: Tensor;
  /** Dtype of the parameters (default: x's). */
  paramDType?: DType;
  /** Projections stored block-quantized, by parameter name (see `linear`). */
  weightFormats?: WeightFormats;
}

/**
 * The gated delta rule over q, k `[B, T, Hk, dk]`, v `[B, T, Hv, dv]`, g and β
 * `[B, T, Hv]` (q and k normalised, q scaled, by the caller): `[y, state]`,
 * y `[B, T, Hv, dv]` and the final state `[B, Hv, dk, dv]` f32.
 *
 * @example
 * ```ts
 * import { gatedDeltaRule, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const q = g.input("q", [1, "T", 2, 8]), k = g.input("k", [1, "T", 2, 8]);
 * const v = g.input("v", [1, "T", 4, 8]);
 * const [y] = gatedDeltaRule(q, k, v, g.input("g", [1, "T", 4]), g.input("beta", [1, "T", 4]));
 * g.output("y", y);
 * ```
 */
export function gatedDeltaRule(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  decay: Tensor,
  beta: Tensor,
  options: { initialState?: Tensor; last?: Tensor } = {},
): [Tensor, Tensor] {
  const [Bsz, T, Hv] = v.shape;
  for (const [name, t] of [["g", decay], ["beta", beta]] as const) {
    if (t.rank !== 3 || t.shape[2] !== Hv) {
      throw new RangeError(`gatedDeltaRule: ${name} must be [B, T, ${Hv}] (v's heads), got ${t}`);
    }
  }
  const pair = (t: Tensor) => t.reshape([Bsz, T, Hv, 1]);
  const inputs = [q, k, v, q.builder.concat([pair(decay), pair(beta)], 3)];
  if (options.initialState) inputs.push(options.initialState);
  if (options.last) inputs.push(options.last);
  const [y, s] = q.builder.apply("gated_delta", inputs, {
    initialState: !!options.initialState,
    last: !!options.last,
  });
  return [y, s];
}

function checkDims(o: GatedDeltaNetOptions): void {
  const sizes = [
    ["d", o.d],
    ["keyHeads", o.keyHeads],
    ["valueHeads", o.valueHeads],
    ["keyDim", o.keyDim],
    ["valueDim", o.valueDim],
    ["convKernel", o.convKernel ?? 4],
  ] as const;
  for (const [name, v] of sizes) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(
        `gatedDeltaNetMixer "${o.name}": ${name} must be a positive integer, got ${v}`,
      );
    }
  }
  if (o.valueHeads % o.keyHeads !== 0) {
    throw new RangeError(
      `gatedDeltaNetMixer "${o.name}": valueHeads ${o.valueHeads} must be a multiple of ` +
        `keyHeads ${o.keyHeads}`,
    );
  }
}

/**
 * HF `Qwen3NextGatedDeltaNet` on x `[B, L, d]` (decode: `[B, 1, d]`).
 *
 * @example
 * ```ts
 * import { gatedDeltaNetMixer, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "L", 32]);
 * g.output("y", gatedDeltaNetMixer(g, x, {
 *   name: "linear_attn", d: 32, keyHeads: 2, valueHeads: 4, keyDim: 8, valueDim: 8,
 * }));
 * ```
 */
export function gatedDeltaNetMixer(
  g: GraphBuilder,
  x: Tensor,
  options: GatedDeltaNetOptions,
): Tensor {
  checkDims(options);
  const { d, keyHeads: Hk, valueHeads: Hv, keyDim: dk, valueDim: dv } = options;
  const r = Hv / Hk, K = Hk * dk, V = Hv * dv, convDim = 2 * K + V;
  const mode = mixerMode("gatedDeltaNetMixer", options.name, x, d, options.mode);
  const pdt = options.paramDType ?? x.dtype;
  const p = (suffix: string, shape: number[]) => g.param(`${options.name}.${suffix}`, shape, pdt);
  const linear = (t: Tensor, w: string, rows: number, cols: number) =>
    linearLayer(g, t, `${options.name}.${w}`, rows, cols, pdt, options.weightFormats ?? {});
  const Bsz = x.shape[0], L = x.shape[1];

  let qkv: Tensor, z: Tensor, b: Tensor, a: Tensor;
  if (options.split) {
    qkv = linear(x, "in_proj_qkv.weight", convDim, d);
    z = linear(x, "in_proj_z.weight", V, d).reshape([Bsz, L, Hv, dv]);
    b = linear(x, "in_proj_b.weight", Hv, d);
    a = linear(x, "in_proj_a.weight", Hv, d);
  } else {
    // Rows grouped by key head: [q | k | v of its r heads | z of its r heads].
    const width = 2 * dk + 2 * r * dv;
    const qkvz = linear(x, "in_proj_qkvz.weight", Hk * width, d).reshape([Bsz, L, Hk, width]);
    const part = (t: Tensor, a0: number, a1: number, n: number) =>
      t.slice(3, a0, a1).reshape([Bsz, L, n]);
    qkv = g.concat([
      part(qkvz, 0, dk, K),
      part(qkvz, dk, 2 * dk, K),
      part(qkvz, 2 * dk, 2 * dk + r * dv, V),
    ], 2);
    z = qkvz.slice(3, 2 * dk + r * dv, width).reshape([Bsz, L, Hv, dv]);
    const ba = linear(x, "in_proj_ba.weight", 2 * Hv, d).reshape([Bsz, L, Hk, 2 * r]);
    [b, a] = [part(ba, 0, r, Hv), part(ba, r, 2 * r, Hv)];
  }

  const { u, ssmState } = mixerConv(g, qkv, {
    name: options.name,
    kernel: options.convKernel ?? 4,
    mode,
    ssm: [Hv * dk, dv],
    convBias: false,
    last: options.last,
    dtype: pdt,
    act: options.convAct,
  });
  // L2 norm over each head (ε 1e-6 on the sum of squares) as an RMSNorm whose ε is
  // divided by dk; its weight folds in 1/√dk for k and, with q's scale, 1/dk for q.
  const ones = (f: number) => g.constant(new Array(dk).fill(f), [dk], u.dtype);
  const heads = (a0: number, a1: number) => u.slice(2, a0, a1).reshape([Bsz, L, Hk, dk]);
  const q = heads(0, K).rmsnorm(ones(1 / dk), 1e-6 / dk);
  const k = heads(K, 2 * K).rmsnorm(ones(1 / Math.sqrt(dk)), 1e-6 / dk);
  const v = u.slice(2, 2 * K, convDim).reshape([Bsz, L, Hv, dv]);

  const beta = b.sigmoid();
  const decay = a.add(p("dt_bias", [Hv])).softplus().mul(p("A_log", [Hv]).exp().neg());
  const state = ssmState?.reshape([Bsz, Hv, dk, dv]);
  const [y, next] = gatedDeltaRule(q, k, v, decay, beta, {
    initialState: state,
    last: mode === "prefill" ? options.last : undefined,
  });
  if (ssmState) g.assign(ssmState, next.reshape([Bsz, Hv * dk, dv]));

  // Qwen3NextRMSNormGated: each head's output normed (weight [dv]), then ·silu(z).
  const normed = y.rmsnorm(p("norm.weight", [dv]), options.eps ?? 1e-6).mul(z.silu());
  return linear(normed.reshape([Bsz, L, V]), "out_proj.weight", d, V);
}
