/**
 * Mamba layers built with the DSL: the SSM ops as functions on tensors, the HF
 * `MambaMixer` (prefill and decode) and the residual block `x + mixer(norm(x))`.
 *
 * Parameters are named like Hugging Face's under the given prefix, so a
 * `state-spaces/mamba-*-hf` checkpoint loads by name: `${name}.in_proj.weight`
 * [2I, H], `.conv1d.weight` [I, 1, k], `.conv1d.bias` [I], `.x_proj.weight`
 * [R + 2N, I], `.dt_proj.weight` [I, R], `.dt_proj.bias` [I], `.A_log` [I, N],
 * `.D` [I], `.out_proj.weight` [H, I]; the Jamba variant adds
 * `.dt_layernorm.weight` [R], `.b_layernorm.weight` [N], `.c_layernorm.weight` [N].
 * States are `${name}.conv_state` [B, I, k] and `${name}.ssm_state` [B, I, N] (f32).
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import { linear as linearLayer, type WeightFormats } from "./weights.ts";
import { applyHiddenAct, type HiddenAct } from "./activation.ts";
import { SCAN_ALGORITHMS, scanAttrs } from "../ops/ssm/mod.ts";

/**
 * Options of {@linkcode conv1dCausal}.
 *
 * @example
 * ```ts
 * import { conv1dCausal, type Conv1dOptions, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const options: Conv1dOptions = { bias: g.param("b", [8]), silu: true };
 * g.output("y", conv1dCausal(g.input("x", [1, "L", 8]), g.param("w", [8, 4]), options));
 * ```
 */
export interface Conv1dOptions {
  /** Bias `[I]`. */
  bias?: Tensor;
  /** Conv state `[B, I, S]`: the S inputs before t = 0 (oldest first). */
  state?: Tensor;
  /** Apply silu to the output. */
  silu?: boolean;
}

/**
 * Suffixes of a Mamba mixer's recurrent states (`${name}.conv_state`,
 * `${name}.ssm_state`): updated in place each decode step, so code that runs
 * steps speculatively (the expert cache) must keep and restore them.
 *
 * @example
 * ```ts
 * import { MAMBA_STATE_SUFFIXES } from "@kiln/kiln";
 * MAMBA_STATE_SUFFIXES.some((s) => "model.layers.0.mamba.ssm_state".endsWith(s)); // true
 * ```
 */
export const MAMBA_STATE_SUFFIXES: readonly string[] = [".conv_state", ".ssm_state"];

/**
 * Causal depthwise conv1d over `[B, L, I]` with weight `[I, 1, k]` (HF) or `[I, k]`.
 *
 * @example
 * ```ts
 * import { conv1dCausal, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "L", 8]);
 * const y = conv1dCausal(x, g.param("w", [8, 1, 4]), { bias: g.param("b", [8]), silu: true, state: g.state("s", [1, 8, 4]) });
 * g.output("y", y);
 * ```
 */
export function conv1dCausal(x: Tensor, weight: Tensor, options: Conv1dOptions = {}): Tensor {
  const inputs = [x, weight];
  if (options.bias) inputs.push(options.bias);
  if (options.state) inputs.push(options.state);
  return x.builder.apply("conv1d_causal", inputs, {
    bias: !!options.bias,
    state: !!options.state,
    silu: options.silu ?? false,
  })[0];
}

/**
 * The conv state after `x`: the last S inputs of (state ++ x), computed in place;
 * with `last` (u32 `[1]`), x's rows after row `last` are padding and left out.
 *
 * @example
 * ```ts
 * import { convStateUpdate, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "L", 8]);
 * const s = g.state("conv", [1, 8, 4]);
 * g.assign(s, convStateUpdate(s, x));
 * ```
 */
export function convStateUpdate(state: Tensor, x: Tensor, last?: Tensor): Tensor {
  return x.builder.apply("conv_state_update", last ? [state, x, last] : [state, x], {})[0];
}

/**
 * One decode token through the causal conv: `[y, newState]`, the state shifted in place.
 *
 * @example
 * ```ts
 * import { conv1dStep, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const s = g.state("conv", [1, 8, 4]);
 * const [y, next] = conv1dStep(s, g.input("x", [1, 8]), g.param("w", [8, 1, 4]), { silu: true });
 * g.assign(s, next);
 * g.output("y", y);
 * ```
 */
export function conv1dStep(
  state: Tensor,
  x: Tensor,
  weight: Tensor,
  options: { bias?: Tensor; silu?: boolean } = {},
): [Tensor, Tensor] {
  const inputs = [state, x, weight];
  if (options.bias) inputs.push(options.bias);
  const [y, s] = x.builder.apply("conv1d_step", inputs, {
    bias: !!options.bias,
    silu: options.silu ?? false,
  });
  return [y, s];
}

/**
 * The checked mode of a mixer over x `[B, L, d]`: a TypeError for an unknown
 * mode, a RangeError for x of another shape or, in decode, more than one token.
 * Shared by the Mamba and Mamba-2 mixers (`fn` names the caller).
 *
 * @example
 * ```ts ignore
 * const mode = mixerMode("mambaMixer", "mixer", x, 64, options.mode); // "prefill"
 * ```
 */
export function mixerMode(
  fn: string,
  name: string,
  x: Tensor,
  d: number,
  mode: "prefill" | "decode" | "stateless" = "prefill",
): "prefill" | "decode" | "stateless" {
  if (!["prefill", "decode", "stateless"].includes(mode)) {
    throw new TypeError(
      `${fn}: mode must be "prefill", "decode" or "stateless", got ${JSON.stringify(mode)}`,
    );
  }
  if (x.rank !== 3 || x.shape[2] !== d) {
    throw new RangeError(`${fn} "${name}": x must be [B, L, ${d}], got ${x}`);
  }
  if (mode === "decode" && x.shape[1] !== 1) {
    throw new RangeError(`${fn} "${name}": decode takes one token, x [B, 1, ${d}], got ${x}`);
  }
  return mode;
}

/**
 * A mixer's causal conv + activation (silu unless `act` says otherwise) over
 * `xs` `[B, L, C]` (`conv1d.weight` [C, 1, k], `conv1d.bias` [C]) and,
 * unless stateless, its states: `conv_state`
 * `[B, C, k]`, updated here, and `ssm_state` `[B, I, N]`, returned for the scan
 * to read and update. Shared by the Mamba and Mamba-2 mixers.
 *
 * @example
 * ```ts ignore
 * const { u, ssmState } = mixerConv(g, xs, { name: "m", kernel: 4, mode: "prefill", ssm: [64, 16] });
 * ```
 */
export function mixerConv(
  g: GraphBuilder,
  xs: Tensor,
  o: {
    name: string;
    kernel: number;
    mode: "prefill" | "decode" | "stateless";
    /** The SSM state's `[I, N]`; absent: no SSM state (LFM2's short conv). */
    ssm?: readonly [number, number];
    convBias?: boolean;
    last?: Tensor;
    dtype?: DType;
    /** The conv's activation (default silu, fused into the conv op; `"none"`: none). */
    act?: HiddenAct | "none";
    /** The conv's module name under the mixer (default `conv1d`; LFM2's `conv`). */
    convName?: string;
  },
): { u: Tensor; ssmState?: Tensor } {
  const silu = (o.act ?? "silu") === "silu";
  const act = (t: Tensor) => (silu || o.act === "none" ? t : applyHiddenAct(t, o.act as HiddenAct));
  const r = mixerConvSilu(g, xs, { ...o, silu });
  return { ...r, u: act(r.u) };
}

/** {@linkcode mixerConv} with silu fused into the conv op, or no activation (`silu` false). */
function mixerConvSilu(
  g: GraphBuilder,
  xs: Tensor,
  o: Parameters<typeof mixerConv>[2] & { silu: boolean },
): { u: Tensor; ssmState?: Tensor } {
  const B = xs.shape[0], C = Number(xs.shape[2]), k = o.kernel, silu = o.silu;
  const dtype = o.dtype ?? xs.dtype;
  const conv = `${o.name}.${o.convName ?? "conv1d"}`;
  const convW = g.param(`${conv}.weight`, [C, 1, k], dtype);
  const convB = o.convBias ?? true ? g.param(`${conv}.bias`, [C], dtype) : undefined;
  if (o.mode === "stateless") return { u: conv1dCausal(xs, convW, { bias: convB, silu }) };
  const [convName, ssmName] = MAMBA_STATE_SUFFIXES.map((s) => o.name + s);
  const convState = g.state(convName, [B, C, k]);
  const ssmState = o.ssm ? g.state(ssmName, [B, ...o.ssm]) : undefined;
  if (o.mode === "decode") {
    const [u, next] = conv1dStep(convState, xs, convW, { bias: convB, silu });
    g.assign(convState, next);
    return { u, ssmState };
  }
  const u = conv1dCausal(xs, convW, { bias: convB, state: convState, silu });
  g.assign(convState, convStateUpdate(convState, xs, o.last));
  return { u, ssmState };
}

/**
 * Options of {@linkcode selectiveScan} and {@linkcode ssmStep}.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type ScanOptions, selectiveScan } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const [B, L, I, N] = [1, "L", 16, 4];
 * const options: ScanOptions = {
 *   z: g.input("z", [B, L, I]),
 *   deltaBias: g.param("dt_bias", [I]),
 *   softplus: true,
 * };
 * const [y] = selectiveScan(g.input("u", [B, L, I]), g.input("dt", [B, L, I]), g.param("A", [I, N]),
 *   g.input("B", [B, L, N]), g.input("C", [B, L, N]), g.param("D", [I]), options);
 * g.output("y", y);
 * ```
 */
export interface ScanOptions {
  /** Gate `[B, L, I]`: y ← y·silu(z). */
  z?: Tensor;
  /** Δ bias `[I]` added before the softplus. */
  deltaBias?: Tensor;
  /** Δ ← softplus(Δ + bias), fused. */
  softplus?: boolean;
  /** Initial state `[B, I, N]` f32 (selectiveScan). */
  initialState?: Tensor;
  /** Also return the final state `[B, I, N]` f32 (selectiveScan). */
  finalState?: boolean;
  /**
   * `"auto"` (default: one pass or the chunked scan, whichever suits the device),
   * `"chunked"` (three passes, parallel over chunks) or `"sequential"` (one thread
   * per channel, the baseline).
   */
  algorithm?: "auto" | "chunked" | "sequential";
  /** Chunk length; 0 or absent picks one. */
  chunk?: number;
  /**
   * u32 `[1]` (selectiveScan): rows after row `last` are padding — their Δ is
   * taken as 0, so the final state is the state after row `last`; their y is
   * computed from that state.
   */
  last?: Tensor;
}

/**
 * Mamba's selective scan. Returns `[y]`, or `[y, finalState]` with `finalState: true`.
 *
 * @example
 * ```ts
 * import { selectiveScan, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const [B, L, I, N] = [1, "L", 16, 4];
 * const u = g.input("u", [B, L, I]), dt = g.input("dt", [B, L, I]);
 * const [y, h] = selectiveScan(u, dt, g.param("A", [I, N]), g.input("B", [B, L, N]),
 *   g.input("C", [B, L, N]), g.param("D", [I]), { finalState: true });
 * g.output("y", y);
 * g.output("h", h);
 * ```
 */
export function selectiveScan(
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  D: Tensor,
  options: ScanOptions = {},
): Tensor[] {
  const inputs = [u, delta, A, B, C, D];
  if (options.z) inputs.push(options.z);
  if (options.deltaBias) inputs.push(options.deltaBias);
  if (options.initialState) inputs.push(options.initialState);
  if (options.last) inputs.push(options.last);
  if (options.algorithm !== undefined && !SCAN_ALGORITHMS.includes(options.algorithm)) {
    throw new TypeError(
      `selectiveScan: algorithm must be "auto", "chunked" or "sequential", got ${
        JSON.stringify(options.algorithm)
      }`,
    );
  }
  return u.builder.apply(
    "selective_scan",
    inputs,
    {
      ...scanAttrs({
        gate: !!options.z,
        deltaBias: !!options.deltaBias,
        softplus: options.softplus ?? false,
        initialState: !!options.initialState,
        finalState: options.finalState ?? false,
        algorithm: options.algorithm ?? "auto",
        chunk: options.chunk ?? 0,
      }),
      ...(options.last ? { last: true } : {}),
    },
  );
}

/**
 * One decode token of the selective SSM: `[y, newState]`, the state `[B, I, N]`
 * updated in place (no copy when it is a `g.state` assigned the result).
 *
 * @example
 * ```ts
 * import { ssmStep, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const h = g.state("h", [1, 16, 4]);
 * const [y, next] = ssmStep(h, g.input("u", [1, 16]), g.input("dt", [1, 16]),
 *   g.param("A", [16, 4]), g.input("B", [1, 4]), g.input("C", [1, 4]), g.param("D", [16]));
 * g.assign(h, next);
 * g.output("y", y);
 * ```
 */
export function ssmStep(
  state: Tensor,
  u: Tensor,
  delta: Tensor,
  A: Tensor,
  B: Tensor,
  C: Tensor,
  D: Tensor,
  options: SsmStepOptions = {},
): [Tensor, Tensor] {
  const inputs = [state, u, delta, A, B, C, D];
  if (options.z) inputs.push(options.z);
  if (options.deltaBias) inputs.push(options.deltaBias);
  if (options.deltaProj) inputs.push(options.deltaProj);
  const [y, s] = u.builder.apply("ssm_step", inputs, {
    ...scanAttrs({
      gate: !!options.z,
      deltaBias: !!options.deltaBias,
      softplus: options.softplus ?? false,
    }),
    deltaRank: options.deltaProj ? Number(options.deltaProj.shape[1]) : 0,
  });
  return [y, s];
}

/**
 * Options of {@linkcode ssmStep}.
 *
 * @example
 * ```ts
 * import { GraphBuilder, ssmStep, type SsmStepOptions } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const h = g.state("h", [1, 16, 4]);
 * // Mamba's low-rank Δ: dt [1, 2] through dt_proj [16, 2] inside the step kernel.
 * const options: SsmStepOptions = { deltaProj: g.param("dt_proj", [16, 2]), softplus: true };
 * const [y, next] = ssmStep(h, g.input("u", [1, 16]), g.input("dt", [1, 2]),
 *   g.param("A", [16, 4]), g.input("B", [1, 4]), g.input("C", [1, 4]), g.param("D", [16]), options);
 * g.assign(h, next);
 * g.output("y", y);
 * ```
 */
export interface SsmStepOptions extends Pick<ScanOptions, "z" | "deltaBias" | "softplus"> {
  /**
   * dt_proj's weight `[I, R]`: `delta` is then the low-rank `[B, R]` and the step
   * kernel projects it (Δ = delta·Wᵀ), saving the GEMV dispatch per layer.
   */
  deltaProj?: Tensor;
}

/**
 * Options of {@linkcode mambaMixer} (HF `MambaConfig` names in comments).
 *
 * @example
 * ```ts
 * import { GraphBuilder, mambaMixer, type MambaMixerOptions } from "@kiln/kiln";
 * const options: MambaMixerOptions = { name: "mixer", d: 64, stateSize: 16, mode: "stateless" };
 * const g = new GraphBuilder();
 * g.output("y", mambaMixer(g, g.input("x", [1, "L", 64]), options));
 * ```
 */
export interface MambaMixerOptions {
  /** Parameter/state prefix, e.g. `backbone.layers.0.mixer`. */
  name: string;
  /** Hidden size H (`hidden_size`). */
  d: number;
  /** I = expand·H (`expand`, default 2). */
  expand?: number;
  /** N (`state_size`, default 16). */
  stateSize?: number;
  /** k (`conv_kernel`, default 4). */
  convKernel?: number;
  /** R (`time_step_rank`, default "auto" = ceil(H / 16)). */
  dtRank?: number | "auto";
  /**
   * `"prefill"` (default): reads the states (zeros on a fresh executable, so
   * a prompt may also be fed in pieces) and assigns the new ones; L may be
   * symbolic. `"decode"`: one token per row, x `[B, 1, H]`, states updated in
   * place. `"stateless"`: a plain forward pass without states.
   */
  mode?: "prefill" | "decode" | "stateless";
  /** Bias on in_proj and out_proj (`use_bias`, default false). */
  useBias?: boolean;
  /** Bias on conv1d (`use_conv_bias`, default true). */
  useConvBias?: boolean;
  /**
   * The conv's activation (HF `hidden_act`, default silu, fused into the
   * conv); the output gate stays silu(z), as in transformers.
   */
  convAct?: HiddenAct;
  /** Jamba's mixer: RMSNorms on dt, B and C. */
  jamba?: boolean;
  /** Falcon-Mamba's mixer: the same RMSNorms without weights (no parameters). */
  weightlessNorms?: boolean;
  /** Epsilon of the dt/B/C RMSNorms (default 1e-6). */
  eps?: number;
  /** Scan algorithm for prefill (default "auto": the compiler picks for the device). */
  algorithm?: "auto" | "chunked" | "sequential";
  /** Scan chunk length (default: picked per length). */
  chunk?: number;
  /**
   * Prefill only: u32 `[1]`, the last real row of x — later rows are padding (a
   * prompt padded to a compiled chunk length) and leave the states as row
   * `last` left them. Their outputs are computed (finite) and meaningless.
   */
  last?: Tensor;
  /** Dtype of the parameters (default: x's). */
  paramDType?: DType;
  /** Projections stored block-quantized, by parameter name (see `linear`). */
  weightFormats?: WeightFormats;
}

/** Shapes derived from the options. */
function mixerDims(o: MambaMixerOptions) {
  const H = o.d;
  const I = (o.expand ?? 2) * H;
  const N = o.stateSize ?? 16;
  const k = o.convKernel ?? 4;
  const R = o.dtRank === undefined || o.dtRank === "auto" ? Math.ceil(H / 16) : o.dtRank;
  for (
    const [name, v] of [["d", H], ["expand·d", I], ["stateSize", N], ["convKernel", k], [
      "dtRank",
      R,
    ]] as const
  ) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`mambaMixer: ${name} must be a positive integer, got ${v}`);
    }
  }
  return { H, I, N, k, R };
}

/**
 * HF `MambaMixer`: in_proj → causal conv1d → silu → x_proj → dt_proj + softplus →
 * selective scan with D and the silu(z) gate → out_proj. x is `[B, L, H]`.
 *
 * @example
 * ```ts
 * import { mambaMixer, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "L", 64]);
 * g.output("y", mambaMixer(g, x, { name: "mixer", d: 64 }));
 * ```
 */
export function mambaMixer(g: GraphBuilder, x: Tensor, options: MambaMixerOptions): Tensor {
  const { H, I, N, k, R } = mixerDims(options);
  const mode = mixerMode("mambaMixer", options.name, x, H, options.mode);
  const p = (suffix: string, shape: number[], dtype = options.paramDType ?? x.dtype) =>
    g.param(`${options.name}.${suffix}`, shape, dtype);
  const useBias = options.useBias ?? false;

  const formats = options.weightFormats ?? {};
  const pdt = options.paramDType ?? x.dtype;
  const linear = (t: Tensor, w: string, rows: number, cols: number, b?: Tensor) => {
    const y = linearLayer(g, t, `${options.name}.${w}`, rows, cols, pdt, formats);
    return b ? y.add(b) : y;
  };
  const xz = linear(
    x,
    "in_proj.weight",
    2 * I,
    H,
    useBias ? p("in_proj.bias", [2 * I]) : undefined,
  );
  const xs = xz.slice(2, 0, I);
  const z = xz.slice(2, I, 2 * I);
  const { u, ssmState } = mixerConv(g, xs, {
    name: options.name,
    kernel: k,
    mode,
    ssm: [I, N],
    convBias: options.useConvBias,
    last: options.last,
    dtype: options.paramDType,
    act: options.convAct,
  });

  const proj = linear(u, "x_proj.weight", R + 2 * N, I);
  let dt = proj.slice(2, 0, R);
  let Bm = proj.slice(2, R, R + N);
  let Cm = proj.slice(2, R + N, R + 2 * N);
  if (options.jamba || options.weightlessNorms) {
    const eps = options.eps ?? 1e-6;
    // Falcon-Mamba's norms have no weights: a constant 1 keeps one RMSNorm op.
    const w = (name: string, n: number) =>
      options.weightlessNorms ? g.constant(new Array(n).fill(1), [n], pdt) : p(name, [n]);
    dt = dt.rmsnorm(w("dt_layernorm.weight", R), eps);
    Bm = Bm.rmsnorm(w("b_layernorm.weight", N), eps);
    Cm = Cm.rmsnorm(w("c_layernorm.weight", N), eps);
  }
  // dt_proj's bias and the softplus are fused into the scan; in decode dt_proj itself
  // is fused into the step kernel too.
  // A quantized dt_proj is its own qmatmul; a dense one fuses into the decode step.
  const dtQuant = formats[`${options.name}.dt_proj.weight`] !== undefined;
  const dtW = dtQuant ? undefined : p("dt_proj.weight", [I, R]);
  const dtBias = p("dt_proj.bias", [I]);
  const A = p("A_log", [I, N]).exp().neg();
  const D = p("D", [I]);

  let y: Tensor;
  if (mode === "decode") {
    const delta = dtW ? dt : linear(dt, "dt_proj.weight", I, R);
    const [out, next] = ssmStep(ssmState!, u, delta, A, Bm, Cm, D, {
      z,
      deltaBias: dtBias,
      softplus: true,
      deltaProj: dtW,
    });
    g.assign(ssmState!, next);
    y = out;
  } else {
    const delta = dtW ? dt.matmul(dtW, { transB: true }) : linear(dt, "dt_proj.weight", I, R);
    const outs = selectiveScan(u, delta, A, Bm, Cm, D, {
      z,
      deltaBias: dtBias,
      softplus: true,
      initialState: ssmState,
      finalState: !!ssmState,
      algorithm: options.algorithm,
      chunk: options.chunk,
      last: ssmState ? options.last : undefined,
    });
    if (ssmState) g.assign(ssmState, outs[1]);
    y = outs[0];
  }
  return linear(y, "out_proj.weight", H, I, useBias ? p("out_proj.bias", [H]) : undefined);
}

/**
 * Options of {@linkcode mambaBlock}.
 *
 * @example
 * ```ts
 * import { GraphBuilder, mambaBlock, type MambaBlockOptions } from "@kiln/kiln";
 * const options: MambaBlockOptions = { name: "backbone.layers.0", d: 64, normEps: 1e-5 };
 * const g = new GraphBuilder();
 * g.output("h", mambaBlock(g, g.input("x", [1, "L", 64]), options));
 * ```
 */
export interface MambaBlockOptions extends Omit<MambaMixerOptions, "name"> {
  /** Layer prefix, e.g. `backbone.layers.0`: params `.norm.weight` and `.mixer.*`. */
  name: string;
  /** RMSNorm epsilon (`layer_norm_epsilon`, default 1e-5). */
  normEps?: number;
}

/**
 * One Mamba layer: `x + mixer(RMSNorm(x))`, stackable.
 *
 * @example
 * ```ts
 * import { mambaBlock, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * let h = g.input("x", [1, "L", 64]);
 * for (let i = 0; i < 2; i++) h = mambaBlock(g, h, { name: `backbone.layers.${i}`, d: 64 });
 * g.output("h", h);
 * ```
 */
export function mambaBlock(g: GraphBuilder, x: Tensor, options: MambaBlockOptions): Tensor {
  const norm = x.rmsnorm(
    g.param(`${options.name}.norm.weight`, [options.d], options.paramDType ?? x.dtype),
    options.normEps ?? 1e-5,
  );
  return x.add(mambaMixer(g, norm, { ...options, name: `${options.name}.mixer` }));
}
