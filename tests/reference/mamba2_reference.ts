/**
 * The Mamba-2 mixer of transformers' `Mamba2Mixer` in float64, written from
 * the recurrence rather than the chunked SSD form transformers computes (the
 * two are equal): for head h of group g = ⌊h·G/H⌋ and each of its P channels,
 * hₜ = exp(Δₜ·A_h)·hₜ₋₁ + Δₜ·xₜ·Bₜ(g), yₜ = Cₜ(g)·hₜ + D_h·xₜ, with
 * Δₜ = clamp(softplus(dtₜ + dt_bias_h), time_step_limit); then
 * RMSNorm(y·silu(z)) over all I channels (transformers' `MambaRMSNormGated`
 * ignores n_groups; `normGroups` > 1 gives mamba_ssm's grouped norm) and out_proj.
 *
 * @module
 */

/** Weights of one Mamba-2 mixer (HF names in comments). */
export interface Mamba2Weights {
  /** in_proj.weight [2I + 2GN + H, hidden]: rows z, x·B·C, dt. */
  inProj: Float64Array;
  /** in_proj.bias (use_bias). */
  inProjBias?: Float64Array;
  /** conv1d.weight [I + 2GN, 1, k]. */
  conv: Float64Array;
  /** conv1d.bias (use_conv_bias). */
  convBias?: Float64Array;
  /** dt_bias [H]. */
  dtBias: Float64Array;
  /** A_log [H]. */
  aLog: Float64Array;
  /** D [H]. */
  d: Float64Array;
  /** norm.weight [I] (absent: Falcon-H1 without `mamba_rms_norm`). */
  norm?: Float64Array;
  /** out_proj.weight [hidden, I]. */
  outProj: Float64Array;
  /** out_proj.bias (use_bias). */
  outProjBias?: Float64Array;
}

/** Sizes of a Mamba-2 mixer. */
export interface Mamba2Dims {
  /** hidden_size. */
  hidden: number;
  /** num_heads. */
  heads: number;
  /** head_dim. */
  headDim: number;
  /** n_groups. */
  groups: number;
  /** state_size. */
  state: number;
  /** conv_kernel. */
  convKernel: number;
  /** time_step_limit. */
  dtLimit: [number, number];
  /**
   * Rows the limit applies to (default all): transformers clamps Δ in its
   * chunked prefill only, not in its one-token step, so a prompt of L rows
   * followed by generated tokens is clamped for t < L.
   */
  limitRows?: number;
  /** layer_norm_epsilon (the gated norm's). */
  eps: number;
  /** Groups of the gated norm (1: transformers). */
  normGroups: number;
  /** The conv's activation (`hidden_act`; default silu). The gated norm's gate is silu always. */
  act?: (v: number) => number;
  /** Falcon-H1's `ssm_in_multiplier`: x scaled before in_proj. */
  inScale?: number;
  /** Falcon-H1's `ssm_multipliers`: in_proj's z, x, B, C and dt rows scaled (its `mup_vector`). */
  projScale?: readonly number[];
  /**
   * The gate and the norm: `gate_first` (default, transformers' Mamba-2),
   * `norm_first` (Falcon-H1's `mamba_norm_before_gate`: RMSNorm, weight, then
   * ·silu(z)), `gate_only` (Falcon-H1 without `mamba_rms_norm`).
   */
  gate?: "gate_first" | "norm_first" | "gate_only";
}

const silu = (v: number) => v / (1 + Math.exp(-v));
const softplus = (v: number) => v > 20 ? v : Math.log1p(Math.exp(v));

/**
 * One Mamba-2 mixer over `x` [T, hidden]; returns [T, hidden].
 *
 * @example
 * ```ts ignore
 * mamba2Mixer(x, T, weights, dims);
 * ```
 */
export function mamba2Mixer(
  x: Float64Array,
  T: number,
  w: Mamba2Weights,
  dims: Mamba2Dims,
): Float64Array {
  const { hidden: D, heads: H, headDim: P, groups: G, state: N, convKernel: K } = dims;
  const I = H * P, convDim = I + 2 * G * N, rows = I + convDim + H;
  const xs = dims.inScale === undefined ? x : x.map((v) => v * dims.inScale!);
  const proj = linear(xs, T, D, w.inProj, rows, w.inProjBias);
  if (dims.projScale) {
    // compute_mup_vector: [z: I][x: I][B: GN][C: GN][dt: H].
    const ends = [I, 2 * I, 2 * I + G * N, 2 * I + 2 * G * N, rows];
    for (let t = 0; t < T; t++) {
      for (let r = 0; r < rows; r++) {
        proj[t * rows + r] *= dims.projScale[ends.findIndex((e) => r < e)];
      }
    }
  }
  const gate = dims.gate ?? "gate_first";
  // Causal depthwise conv over x·B·C (rows I … I + convDim), then silu.
  const xbc = new Float64Array(T * convDim);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < convDim; c++) {
      let s = w.convBias ? w.convBias[c] : 0;
      for (let j = 0; j < K; j++) {
        const src = t - (K - 1) + j;
        if (src >= 0) s += w.conv[c * K + j] * proj[src * rows + I + c];
      }
      xbc[t * convDim + c] = (dims.act ?? silu)(s);
    }
  }
  const [lo, hi] = dims.dtLimit;
  const y = new Float64Array(T * I);
  const h = new Float64Array(I * N);
  for (let t = 0; t < T; t++) {
    for (let hd = 0; hd < H; hd++) {
      const g = Math.floor(hd / (H / G));
      const sp = softplus(proj[t * rows + I + convDim + hd] + w.dtBias[hd]);
      const dt = t < (dims.limitRows ?? T) ? Math.min(Math.max(sp, lo), hi) : sp;
      const decay = Math.exp(dt * -Math.exp(w.aLog[hd]));
      for (let p = 0; p < P; p++) {
        const ch = hd * P + p, xv = xbc[t * convDim + ch];
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const b = xbc[t * convDim + I + g * N + n], c = xbc[t * convDim + I + G * N + g * N + n];
          h[ch * N + n] = decay * h[ch * N + n] + dt * xv * b;
          acc += c * h[ch * N + n];
        }
        const out = acc + w.d[hd] * xv;
        y[t * I + ch] = gate === "norm_first" ? out : out * silu(proj[t * rows + ch]);
      }
    }
  }
  if (gate === "gate_only") return linear(y, T, I, w.outProj, D, w.outProjBias);
  // RMSNorm over each norm group, times the weight (then the gate, norm first).
  const gs = I / dims.normGroups;
  for (let t = 0; t < T; t++) {
    for (let q = 0; q < dims.normGroups; q++) {
      let ss = 0;
      for (let i = 0; i < gs; i++) ss += y[t * I + q * gs + i] ** 2;
      const r = 1 / Math.sqrt(ss / gs + dims.eps);
      for (let i = 0; i < gs; i++) {
        y[t * I + q * gs + i] *= r * w.norm![q * gs + i];
        if (gate === "norm_first") y[t * I + q * gs + i] *= silu(proj[t * rows + q * gs + i]);
      }
    }
  }
  return linear(y, T, I, w.outProj, D, w.outProjBias);
}

/** nn.Linear over `x` [T, inDim] with W stored [outDim, inDim]. */
function linear(
  x: Float64Array,
  T: number,
  inDim: number,
  w: Float64Array,
  outDim: number,
  bias?: Float64Array,
): Float64Array {
  const y = new Float64Array(T * outDim);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < outDim; o++) {
      let s = bias ? bias[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[t * inDim + i] * w[o * inDim + i];
      y[t * outDim + o] = s;
    }
  }
  return y;
}
