/**
 * The Mamba-2 mixer (HF `Mamba2Mixer`) built from the Mamba ops: the SSD layer's
 * recurrence is Mamba's selective scan with one scalar A and one Δ per head of
 * P channels, and B and C shared by the heads of a group — so each group is one
 * `selective_scan` (or `ssm_step`) over its channels, with A and Δ broadcast
 * across each head's channels and states.
 *
 * Parameters, as Hugging Face names them under the mixer's prefix:
 * `in_proj.weight` [2I + 2GN + H, d] (rows z, then x·B·C, then Δ),
 * `conv1d.weight` [I + 2GN, 1, k] over x·B·C, `dt_bias` [H], `A_log` [H],
 * `D` [H], `norm.weight` [I], `out_proj.weight` [d, I]. States: `conv_state`
 * [B, I + 2GN, k] and `ssm_state` [B, I, N] (HF's [B, H, P, N], the same bytes).
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import type { HiddenAct } from "./activation.ts";
import { mixerConv, mixerMode, selectiveScan, ssmStep } from "./mamba.ts";
import { linear as linearLayer, type WeightFormats } from "./weights.ts";
import type { ModelConfig } from "./config.ts";

/**
 * Whether a model's decode step computes a prompt token as its prefill does,
 * so a short prompt may run through it (`coldPromptTokens`). Not for a
 * Mamba-2 whose `time_step_limit` clamps Δ: transformers (`Mamba2Mixer`'s
 * recurrent branch) and mamba_ssm (`Mamba2.step`) clamp in the chunked prefill
 * only, so a prompt must take the prefill and generated tokens the step.
 *
 * @example
 * ```ts
 * import { parseConfig, promptsThroughDecode } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["Mamba2ForCausalLM"], vocab_size: 64, hidden_size: 16, num_heads: 4,
 *   head_dim: 8, n_groups: 1, num_hidden_layers: 1, time_step_limit: [0.01, 0.5],
 * });
 * promptsThroughDecode(cfg); // false
 * ```
 */
export function promptsThroughDecode(cfg: ModelConfig): boolean {
  const limit = cfg.mamba?.ssd?.dtLimit;
  return !limit || !clampsDelta(limit);
}

/**
 * Whether a Mamba-2 `time_step_limit` changes Δ at all (the default [0, ∞]
 * does not: Δ is a softplus, never negative).
 *
 * @example
 * ```ts
 * import { clampsDelta } from "@kiln/kiln";
 * [clampsDelta([0, Infinity]), clampsDelta([0.01, 0.5])]; // [false, true]
 * ```
 */
export function clampsDelta([lo, hi]: readonly [number, number]): boolean {
  return lo > 0 || hi < Infinity;
}

/**
 * Options of {@linkcode mamba2Mixer} (HF `Mamba2Config` names in comments).
 *
 * @example
 * ```ts
 * import { type Mamba2MixerOptions } from "@kiln/kiln";
 * const options: Mamba2MixerOptions = {
 *   name: "backbone.layers.0.mixer", d: 32, heads: 4, headDim: 16, groups: 2, stateSize: 8,
 * };
 * ```
 */
export interface Mamba2MixerOptions {
  /** Parameter/state prefix, e.g. `backbone.layers.0.mixer`. */
  name: string;
  /** Model width d (`hidden_size`). */
  d: number;
  /** Heads H (`num_heads`). */
  heads: number;
  /** Channels a head P (`head_dim`); the inner width is I = H·P. */
  headDim: number;
  /** Groups G sharing B and C (`n_groups`); H must be a multiple. */
  groups: number;
  /** SSM state size N (`state_size`). */
  stateSize: number;
  /** Causal conv kernel width k (`conv_kernel`, default 4). */
  convKernel?: number;
  /** Bias on in_proj and out_proj (`use_bias`, default false). */
  useBias?: boolean;
  /** Bias on conv1d (`use_conv_bias`, default true). */
  useConvBias?: boolean;
  /** The conv's activation (HF `hidden_act`, default silu); the gated norm's gate stays silu. */
  convAct?: HiddenAct;
  /**
   * Δ clamped to [lo, hi] after the softplus (`time_step_limit`, default [0, ∞]:
   * none) — in prefill and stateless mode only: transformers' and mamba_ssm's
   * one-token step ignores the limit, so the decode step does too (see
   * {@linkcode promptsThroughDecode}).
   */
  dtLimit?: readonly [number, number];
  /**
   * Groups of the gated RMSNorm before out_proj: 1 (default) normalises all I
   * channels together, as transformers' `MambaRMSNormGated` does; G normalises
   * each group's channels, as mamba_ssm and llama.cpp do.
   */
  normGroups?: number;
  /** Epsilon of the gated RMSNorm (`layer_norm_epsilon`, default 1e-5). */
  eps?: number;
  /** `"prefill"` (default), `"decode"` or `"stateless"`, as `mambaMixer`'s. */
  mode?: "prefill" | "decode" | "stateless";
  /** Prefill only: u32 `[1]`, the last real row (later rows are padding), as `mambaMixer`'s. */
  last?: Tensor;
  /** Scan algorithm for prefill (default "auto"). */
  algorithm?: "auto" | "chunked" | "sequential";
  /** Dtype of the parameters (default: x's). */
  paramDType?: DType;
  /** Projections stored block-quantized, by parameter name (see `linear`). */
  weightFormats?: WeightFormats;
  /** Bias on out_proj (default `useBias`; Falcon-H1's `projectors_bias`). */
  outBias?: boolean;
  /** Factor on x before in_proj (Falcon-H1's `ssm_in_multiplier`, default 1). */
  inScale?: number;
  /** Factors on in_proj's z, x, B, C and Δ outputs (Falcon-H1's `ssm_multipliers`). */
  projScale?: readonly [number, number, number, number, number];
  /**
   * The gate and norm before out_proj: `"gate_first"` (default: y·silu(z),
   * then the RMSNorm), `"norm_first"` (the RMSNorm of y, then ·silu(z)) or
   * `"gate_only"` (y·silu(z), no norm and no `norm.weight`).
   */
  gatedNorm?: "gate_first" | "norm_first" | "gate_only";
}

function checkDims(o: Mamba2MixerOptions): void {
  const sizes = [
    ["d", o.d],
    ["heads", o.heads],
    ["headDim", o.headDim],
    ["groups", o.groups],
    ["stateSize", o.stateSize],
    ["convKernel", o.convKernel ?? 4],
    ["normGroups", o.normGroups ?? 1],
  ] as const;
  for (const [name, v] of sizes) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`mamba2Mixer "${o.name}": ${name} must be a positive integer, got ${v}`);
    }
  }
  if (o.heads % o.groups !== 0) {
    throw new RangeError(
      `mamba2Mixer "${o.name}": heads ${o.heads} must be a multiple of groups ${o.groups}`,
    );
  }
  const I = o.heads * o.headDim, ng = o.normGroups ?? 1;
  if (I % ng !== 0) {
    throw new RangeError(
      `mamba2Mixer "${o.name}": the inner width ${I} must be a multiple of normGroups ${ng}`,
    );
  }
  const [lo, hi] = o.dtLimit ?? [0, Infinity];
  if (!(lo >= 0 && hi >= lo)) {
    throw new RangeError(
      `mamba2Mixer "${o.name}": dtLimit must satisfy 0 <= lo <= hi, got [${lo}, ${hi}]`,
    );
  }
}

/**
 * HF `Mamba2Mixer`: in_proj → (z, x·B·C, Δ); causal conv1d + silu over x·B·C;
 * per group a selective scan with D and the silu(z) gate; the gated output's
 * RMSNorm; out_proj. x is `[B, L, d]` (decode: `[B, 1, d]`).
 *
 * @example
 * ```ts
 * import { GraphBuilder, mamba2Mixer } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "L", 32]);
 * g.output("y", mamba2Mixer(g, x, { name: "mixer", d: 32, heads: 4, headDim: 16, groups: 2, stateSize: 8 }));
 * ```
 */
export function mamba2Mixer(g: GraphBuilder, x: Tensor, options: Mamba2MixerOptions): Tensor {
  checkDims(options);
  const { d, heads: H, headDim: P, groups: G, stateSize: N } = options;
  const k = options.convKernel ?? 4, I = H * P, convDim = I + 2 * G * N;
  const mode = mixerMode("mamba2Mixer", options.name, x, d, options.mode);
  const pdt = options.paramDType ?? x.dtype;
  const p = (suffix: string, shape: number[]) => g.param(`${options.name}.${suffix}`, shape, pdt);
  const useBias = options.useBias ?? false;
  const linear = (t: Tensor, w: string, rows: number, cols: number, bias?: string) => {
    const y = linearLayer(
      g,
      t,
      `${options.name}.${w}`,
      rows,
      cols,
      pdt,
      options.weightFormats ?? {},
    );
    return bias ? y.add(p(bias, [rows])) : y;
  };
  const Bsz = x.shape[0], L = x.shape[1];

  const inScale = options.inScale ?? 1;
  let proj = linear(
    inScale === 1 ? x : x.mul(inScale),
    "in_proj.weight",
    I + convDim + H,
    d,
    useBias ? "in_proj.bias" : undefined,
  );
  if (options.projScale) {
    // Falcon-H1's μP vector: one factor per segment of in_proj's output (z, x, B, C, Δ).
    const [mz, mx, mb, mc, mdt] = options.projScale;
    const GN = G * N;
    const segs: [number, number][] = [[I, mz], [I, mx], [GN, mb], [GN, mc], [H, mdt]];
    const v = segs.flatMap(([n, m]) => new Array(n).fill(m));
    proj = proj.mul(g.constant(v, [v.length], proj.dtype));
  }
  const z = proj.slice(2, 0, I);
  const xbc = proj.slice(2, I, I + convDim);
  const dtRaw = proj.slice(2, I + convDim, I + convDim + H);
  const { u: conv, ssmState } = mixerConv(g, xbc, {
    name: options.name,
    kernel: k,
    mode,
    ssm: [I, N],
    convBias: options.useConvBias,
    last: options.last,
    dtype: pdt,
    act: options.convAct,
  });

  // Per-head values broadcast over the head's P channels (and A over N states).
  const perChannel = (t: Tensor, lead: readonly (number | string)[]) =>
    t.reshape([...lead, H, 1]).mul(g.constant(new Array(P).fill(1), [P], t.dtype))
      .reshape([...lead, I]);
  const A = perChannel(p("A_log", [H]).exp().neg(), []).reshape([I, 1])
    .mul(g.constant(new Array(N).fill(1), [1, N], pdt));
  const D = perChannel(p("D", [H]), []);
  const [lo, hi] = options.dtLimit ?? [0, Infinity];
  const limited = mode !== "decode" && clampsDelta([lo, hi]);
  // Without a limit, Δ's bias and softplus fuse into the scan; with one, the
  // clamp must follow the softplus, so Δ is computed first.
  const dtBias = p("dt_bias", [H]);
  let delta = dtRaw, deltaBias: Tensor | undefined = perChannel(dtBias, []);
  if (limited) {
    delta = dtRaw.add(dtBias).softplus().maximum(lo).minimum(hi);
    deltaBias = undefined;
  }
  delta = perChannel(delta, [Bsz, L]);

  const cols = I / G;
  const gating = options.gatedNorm ?? "gate_first";
  const ys: Tensor[] = [], states: Tensor[] = [];
  for (let gi = 0; gi < G; gi++) {
    const c0 = gi * cols, c1 = c0 + cols;
    const u = conv.slice(2, c0, c1);
    const Bm = conv.slice(2, I + gi * N, I + (gi + 1) * N);
    const Cm = conv.slice(2, I + G * N + gi * N, I + G * N + (gi + 1) * N);
    const scan = {
      // Norm first: the gate waits until after the norm.
      ...(gating === "norm_first" ? {} : { z: z.slice(2, c0, c1) }),
      deltaBias: deltaBias?.slice(0, c0, c1),
      softplus: !limited,
    };
    const args = [
      u,
      delta.slice(2, c0, c1),
      A.slice(0, c0, c1),
      Bm,
      Cm,
      D.slice(0, c0, c1),
    ] as const;
    const part = G === 1 ? ssmState : ssmState?.slice(1, c0, c1);
    if (mode === "decode") {
      const [y, next] = ssmStep(part!, ...args, scan);
      ys.push(y);
      states.push(next);
    } else {
      const outs = selectiveScan(...args, {
        ...scan,
        initialState: part,
        finalState: !!part,
        algorithm: options.algorithm,
        last: part ? options.last : undefined,
      });
      ys.push(outs[0]);
      if (part) states.push(outs[1]);
    }
  }
  if (ssmState) g.assign(ssmState, G === 1 ? states[0] : g.concat(states, 1));
  const y = G === 1 ? ys[0] : g.concat(ys, 2);

  const outBias = (options.outBias ?? useBias) ? "out_proj.bias" : undefined;
  // Gate only: the scan applied it, and there is no norm.
  if (gating === "gate_only") return linear(y, "out_proj.weight", d, I, outBias);
  // Gate first, the scan applied it: what remains is RMSNorm over each norm group.
  const ng = options.normGroups ?? 1, eps = options.eps ?? 1e-5;
  const normW = p("norm.weight", [I]);
  let normed = ng === 1 ? y.rmsnorm(normW, eps) : y.reshape([Bsz, L, ng, I / ng])
    .rmsnorm(g.constant(new Array(I / ng).fill(1), [I / ng], y.dtype), eps)
    .reshape([Bsz, L, I]).mul(normW);
  if (gating === "norm_first") normed = normed.mul(z.silu());
  return linear(normed, "out_proj.weight", d, I, outBias);
}
