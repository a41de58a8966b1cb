/**
 * RoPE frequencies for the float64 reference, written from transformers'
 * `modeling_rope_utils` (default, linear, yarn, llama3, longrope within its original
 * context) and its two config
 * layouts: transformers 5's `rope_parameters` and transformers 4's top-level
 * `rope_theta` + `rope_scaling` (`type` or `rope_type`). Shares no code with
 * Kiln's `models/rope_scaling.ts`; computed in float64.
 *
 * @example
 * ```ts
 * import { referenceRope } from "./rope_reference.ts";
 * const r = referenceRope({ rope_parameters: { rope_type: "linear", rope_theta: 1e4, factor: 2 } }, 4, 1e6);
 * [...r.invFreq]; // [0.5, 0.005]
 * ```
 *
 * @module
 */

type Json = Record<string, unknown>;

/** Inverse frequencies per rotary pair and the factor applied to cos and sin. */
export interface ReferenceRope {
  /** `headDim / 2` inverse frequencies. */
  invFreq: Float64Array;
  /** Factor on cos and sin (yarn's attention factor; 1 otherwise). */
  scale: number;
}

/** RoPE of a config, for heads of `headDim`; `defaultTheta` when the config gives no base. */
export function referenceRope(config: Json, headDim: number, defaultTheta: number): ReferenceRope {
  const p = (config.rope_parameters ?? config.rope_scaling ?? {}) as Json;
  const theta = (p.rope_theta ?? config.rope_theta ?? defaultTheta) as number;
  const type = (p.rope_type ?? p.type ?? "default") as string;
  // A partial RoPE's odd int(head_dim · factor) has ⌈dim/2⌉ frequencies (arange(0, dim, 2)).
  const half = Math.ceil(headDim / 2);
  const base = Float64Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / headDim));
  const n = (k: string) => p[k] as number | undefined;
  switch (type) {
    case "default":
      return { invFreq: base, scale: 1 };
    case "linear":
      return { invFreq: base.map((v) => v / n("factor")!), scale: 1 };
    case "llama3": {
      const factor = n("factor")!, lo = n("low_freq_factor")!, hi = n("high_freq_factor")!;
      const ctx = n("original_max_position_embeddings")!;
      const invFreq = base.map((v) => {
        const wavelength = (2 * Math.PI) / v;
        if (wavelength < ctx / hi) return v; // high frequencies: unchanged
        if (wavelength > ctx / lo) return v / factor; // low frequencies: interpolated
        const smooth = (ctx / wavelength - lo) / (hi - lo);
        return (1 - smooth) * (v / factor) + smooth * v;
      });
      return { invFreq, scale: 1 };
    }
    case "yarn": {
      const factor = n("factor")!;
      const ctx = n("original_max_position_embeddings") ??
        (config.max_position_embeddings as number);
      const m = (s: number, k = 1) => (s <= 1 ? 1 : 0.1 * k * Math.log(s) + 1);
      const scale = n("attention_factor") ??
        (n("mscale") && n("mscale_all_dim")
          ? m(factor, n("mscale")) / m(factor, n("mscale_all_dim"))
          : m(factor));
      // Dimension index at which a wavelength makes `rotations` turns over the context.
      const dimOf = (rotations: number) =>
        (headDim * Math.log(ctx / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
      let lo = dimOf(n("beta_fast") ?? 32), hi = dimOf(n("beta_slow") ?? 1);
      if (p.truncate !== false) [lo, hi] = [Math.floor(lo), Math.ceil(hi)];
      lo = Math.max(lo, 0);
      hi = Math.min(hi, headDim - 1);
      if (lo === hi) hi += 0.001;
      // torch ramps over headDim // 2 values, broadcast when that is 1 (an odd 3).
      const ramps = Math.floor(headDim / 2);
      const invFreq = base.map((v, i) => {
        const ramp = Math.min(1, Math.max(0, ((ramps === half ? i : 0) - lo) / (hi - lo)));
        // ramp 0: keep the original frequency (extrapolate); ramp 1: divide by factor.
        return (v / factor) * ramp + v * (1 - ramp);
      });
      return { invFreq, scale };
    }
    case "longrope": {
      // Sequences within the original context only: the short factors divide each
      // frequency; the factor (else max / original) sets the attention scale.
      const ctx = (config.original_max_position_embeddings ??
        n("original_max_position_embeddings")) as number;
      const short = p.short_factor as number[];
      const factor = n("factor") ?? (config.max_position_embeddings as number) / ctx;
      const scale = n("attention_factor") ??
        (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(ctx)));
      return { invFreq: base.map((v, i) => v / short[short.length === 1 ? 0 : i]), scale };
    }
    default:
      throw new RangeError(`reference: rope_type ${JSON.stringify(type)} is not implemented`);
  }
}
