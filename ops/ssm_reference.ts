/**
 * Sequential float64 CPU references for the Mamba (S6) selective scan, the
 * causal depthwise conv1d in front of it, and the single-token decode step.
 *
 * These are the oracles for the WGSL kernels in `ssm_kernels.ts`: they walk the
 * recurrence one step at a time in float64, so any disagreement with a GPU
 * kernel is the kernel's rounding or the kernel's bug, never the oracle's.
 *
 * Layouts (row-major): u, delta, z, y `[B, L, I]`; A `[I, N]`; Bm, Cm
 * `[B, L, N]`; D, dtBias `[I]`; h0, hFinal `[B, I, N]`; conv weight `[I, k]`,
 * conv bias `[I]`, conv state `[B, I, S]` (the last S pre-conv inputs, oldest
 * first, S >= k - 1).
 *
 * @module
 */

/** Anything indexable by number: typed arrays of any width, or plain arrays. */
export type NumArray = ArrayLike<number>;

/** Sizes of a selective scan. */
export interface ScanDims {
  /** Batch size B. */
  batch: number;
  /** Sequence length L. */
  length: number;
  /** Channels I (= expand · hidden). */
  channels: number;
  /** State size N per channel. */
  state: number;
}

/** Inputs of a selective scan (see the module doc for layouts). */
export interface ScanInputs {
  /** x after conv + silu, `[B, L, I]`. */
  u: NumArray;
  /** Step size, `[B, L, I]`: already softplus'ed unless `deltaSoftplus`. */
  delta: NumArray;
  /** A = −exp(A_log), `[I, N]`. */
  a: NumArray;
  /** Input matrix B, `[B, L, N]`. */
  bMat: NumArray;
  /** Output matrix C, `[B, L, N]`. */
  cMat: NumArray;
  /** Skip D, `[I]`. */
  d: NumArray;
  /** Optional gate z, `[B, L, I]`: y ← y · silu(z). */
  z?: NumArray;
  /** Optional dt bias, `[I]`, added before softplus when `deltaSoftplus`. */
  dtBias?: NumArray;
  /** Optional initial state, `[B, I, N]`. */
  h0?: NumArray;
  /** When true, delta is raw and the step is softplus(delta + dtBias). */
  deltaSoftplus?: boolean;
}

/** Outputs of a selective scan. */
export interface ScanOutputs {
  /** `[B, L, I]`. */
  y: Float64Array;
  /** Final state, `[B, I, N]`. */
  hFinal: Float64Array;
}

/**
 * softplus(x) = log(1 + eˣ), linear above 20 as in PyTorch (threshold 20).
 *
 * @example
 * ```ts
 * softplus(0); // ≈ 0.6931
 * ```
 */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/**
 * silu(x) = x · σ(x).
 *
 * @example
 * ```ts
 * silu(0); // 0
 * ```
 */
export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/**
 * Selective scan (Mamba S6), float64, one step at a time:
 * h = exp(Δ·A)·h + Δ·B·u; y = C·h + D·u; y ← y·silu(z).
 *
 * @example
 * ```ts
 * const dims = { batch: 1, length: 2, channels: 1, state: 1 };
 * const { y } = selectiveScanRef(dims, {
 *   u: [1, 1], delta: [1, 1], a: [-1], bMat: [1, 1], cMat: [1, 1], d: [0],
 * });
 * // y[0] = 1, y[1] = e⁻¹ + 1
 * ```
 */
export function selectiveScanRef(dims: ScanDims, inp: ScanInputs): ScanOutputs {
  const { batch: B, length: L, channels: I, state: N } = dims;
  const y = new Float64Array(B * L * I);
  const hFinal = new Float64Array(B * I * N);
  const h = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      for (let n = 0; n < N; n++) h[n] = inp.h0 ? inp.h0[(b * I + i) * N + n] : 0;
      const bias = inp.dtBias ? inp.dtBias[i] : 0;
      for (let t = 0; t < L; t++) {
        const r = b * L + t;
        const x = inp.u[r * I + i];
        let dt = inp.delta[r * I + i];
        if (inp.deltaSoftplus) dt = softplus(dt + bias);
        let acc = 0;
        for (let n = 0; n < N; n++) {
          h[n] = Math.exp(dt * inp.a[i * N + n]) * h[n] + dt * inp.bMat[r * N + n] * x;
          acc += h[n] * inp.cMat[r * N + n];
        }
        acc += inp.d[i] * x;
        if (inp.z) acc *= silu(inp.z[r * I + i]);
        y[r * I + i] = acc;
      }
      for (let n = 0; n < N; n++) hFinal[(b * I + i) * N + n] = h[n];
    }
  }
  return { y, hFinal };
}

/** Sizes of a causal depthwise conv1d. */
export interface ConvDims {
  /** Batch size B. */
  batch: number;
  /** Sequence length L. */
  length: number;
  /** Channels I. */
  channels: number;
  /** Kernel width k. */
  kernel: number;
}

/** Options of {@linkcode causalConv1dRef}. */
export interface ConvOptions {
  /** Previous inputs `[B, I, S]`, oldest first; the conv continues from them. */
  state?: NumArray;
  /** S, the conv state length (k − 1 or k); default k − 1. */
  stateLen?: number;
  /** Apply silu to the output. */
  silu?: boolean;
}

/**
 * Causal depthwise conv1d: y[b,t,i] = bias[i] + Σⱼ w[i,j]·x[b, t−(k−1)+j, i],
 * reading positions before 0 from `state` (or zeros). Also returns the new
 * conv state: the last S inputs of state ++ x.
 *
 * @example
 * ```ts
 * const { y } = causalConv1dRef(
 *   { batch: 1, length: 2, channels: 1, kernel: 2 }, [1, 2], [0.5, 1], [0],
 * );
 * // y = [1, 2.5]
 * ```
 */
export function causalConv1dRef(
  dims: ConvDims,
  x: NumArray,
  weight: NumArray,
  bias: NumArray,
  opts: ConvOptions = {},
): { y: Float64Array; state: Float64Array } {
  const { batch: B, length: L, channels: I, kernel: K } = dims;
  const S = opts.stateLen ?? K - 1;
  const y = new Float64Array(B * L * I);
  const state = new Float64Array(B * I * S);
  // Position p < 0 reads the old state's slot S + p (slot S − 1 is the newest).
  const at = (b: number, p: number, i: number): number =>
    p >= 0 ? x[(b * L + p) * I + i] : opts.state ? opts.state[(b * I + i) * S + S + p] : 0;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      for (let t = 0; t < L; t++) {
        let acc = bias[i];
        for (let j = 0; j < K; j++) acc += weight[i * K + j] * at(b, t - (K - 1) + j, i);
        y[(b * L + t) * I + i] = opts.silu ? silu(acc) : acc;
      }
      for (let s = 0; s < S; s++) {
        const p = L - S + s;
        state[(b * I + i) * S + s] = p >= -S ? at(b, p, i) : 0;
      }
    }
  }
  return { y, state };
}

/** Inputs of one decode step (one token per batch row). */
export interface DecodeInputs {
  /** Pre-conv input for this token, `[B, I]`. */
  x: NumArray;
  /** Step size, `[B, I]` (raw when `deltaSoftplus`). */
  delta: NumArray;
  /** `[B, N]`. */
  bMat: NumArray;
  /** `[B, N]`. */
  cMat: NumArray;
  /** Optional gate, `[B, I]`. */
  z?: NumArray;
  /** `[I, N]`. */
  a: NumArray;
  /** `[I]`. */
  d: NumArray;
  /** `[I]`, only with `deltaSoftplus`. */
  dtBias?: NumArray;
  /** Conv weight `[I, k]`. */
  convW: NumArray;
  /** Conv bias `[I]`. */
  convB: NumArray;
  /** Raw step size plus fused softplus(delta + dtBias). */
  deltaSoftplus?: boolean;
}

/**
 * One recurrent decode step, float64. Updates `convState` `[B, I, S]` and
 * `ssmState` `[B, I, N]` in place and returns y `[B, I]`. Costs O(I·(N + k))
 * whatever the context length.
 *
 * @example
 * ```ts
 * const convState = new Float64Array(3), ssmState = new Float64Array(1);
 * const y = decodeStepRef(
 *   { batch: 1, channels: 1, state: 1, kernel: 4, stateLen: 3 },
 *   { x: [1], delta: [1], bMat: [1], cMat: [1], a: [-1], d: [0],
 *     convW: [0, 0, 0, 1], convB: [0] },
 *   convState, ssmState,
 * );
 * ```
 */
export function decodeStepRef(
  dims: { batch: number; channels: number; state: number; kernel: number; stateLen: number },
  inp: DecodeInputs,
  convState: Float64Array,
  ssmState: Float64Array,
): Float64Array {
  const { batch: B, channels: I, state: N, kernel: K, stateLen: S } = dims;
  const y = new Float64Array(B * I);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < I; i++) {
      const row = (b * I + i) * S;
      const xt = inp.x[b * I + i];
      // The window is the old state's last k − 1 inputs plus this token, read
      // before the shift so that S = k − 1 works as well as S = k.
      let conv = inp.convB[i] + inp.convW[i * K + K - 1] * xt;
      for (let j = 0; j < K - 1; j++) {
        conv += inp.convW[i * K + j] * convState[row + S - (K - 1) + j];
      }
      for (let s = 0; s < S - 1; s++) convState[row + s] = convState[row + s + 1];
      convState[row + S - 1] = xt;
      const u = silu(conv);
      let dt = inp.delta[b * I + i];
      if (inp.deltaSoftplus) dt = softplus(dt + (inp.dtBias ? inp.dtBias[i] : 0));
      let acc = 0;
      for (let n = 0; n < N; n++) {
        const k = (b * I + i) * N + n;
        ssmState[k] = Math.exp(dt * inp.a[i * N + n]) * ssmState[k] + dt * inp.bMat[b * N + n] * u;
        acc += ssmState[k] * inp.cMat[b * N + n];
      }
      acc += inp.d[i] * u;
      if (inp.z) acc *= silu(inp.z[b * I + i]);
      y[b * I + i] = acc;
    }
  }
  return y;
}
