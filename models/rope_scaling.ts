/**
 * RoPE settings as Hugging Face configs write them, and the frequency table they
 * give. transformers 4 writes `rope_theta` and `rope_scaling` at the top level;
 * transformers 5 writes `rope_parameters: { rope_type, rope_theta, … }`. Both
 * are read here, into one {@linkcode RopeSettings}; what Kiln does not
 * implement (partial rotary dims, per-layer-type parameters) is refused with the
 * field and its value, never ignored. `dynamic` (NTK) scaling is the default
 * table up to `max_position_embeddings`, and `longrope` its short factors up to
 * `original_max_position_embeddings`, where transformers starts changing them
 * with the sequence length: Kiln runs them up to there ({@linkcode checkRopeLength}).
 *
 * The frequencies follow transformers' `modeling_rope_utils` (`default`,
 * `linear`, `yarn`, `llama3`, `longrope`), computed in float32 step by step as
 * PyTorch does, so the kernels rotate by the same angles as the reference model.
 * {@linkcode ropeDivisors} gives llama.cpp's form of the per-frequency ones
 * (`rope_freqs.weight`).
 *
 * @module
 */

import type { Tensor } from "../compiler/builder.ts";

/**
 * `[T, H, 2r]` with RoPE's pairs adjacent (x₀, x₁), (x₂, x₃), … laid out as
 * halves (x₀, x₂, …, x₁, x₃, …): rotating the halves (Kiln's `rope`) then
 * equals rotating the pairs (transformers' interleaved forms: ERNIE 4.5's
 * `rotate_half`, DeepSeek's `apply_rotary_pos_emb_interleave`; llama.cpp's
 * normal RoPE). Queries and keys take the same permutation, so their dot
 * products are those of the pairwise rotation.
 *
 * @example
 * ```ts
 * import { GraphBuilder, pairsToHalves } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const q = g.input("q", ["T", 2, 8]);
 * pairsToHalves(q).shape; // ["T", 2, 8]
 * ```
 */
export function pairsToHalves(x: Tensor): Tensor {
  const [T, H, R] = x.shape;
  return x.reshape([T, H, (R as number) / 2, 2]).transpose([0, 1, 3, 2]).reshape([T, H, R]);
}

/**
 * The RoPE variants Kiln implements.
 *
 * @example
 * ```ts
 * import type { RopeType } from "@kiln/kiln";
 * const t: RopeType = "yarn";
 * ```
 */
export type RopeType = "default" | "linear" | "yarn" | "llama3" | "dynamic" | "longrope";

/** The implemented variants, for messages. */
export const ROPE_TYPES: readonly RopeType[] = [
  "default",
  "linear",
  "yarn",
  "llama3",
  "dynamic",
  "longrope",
];

/**
 * RoPE settings of one model, as read from config.json.
 *
 * @example
 * ```ts
 * import type { RopeSettings } from "@kiln/kiln";
 * const longContext: RopeSettings = { type: "linear", theta: 1e4, factor: 4 };
 * ```
 */
export interface RopeSettings {
  /** Which variant (`rope_type`, or `type` in older configs). */
  readonly type: RopeType;
  /** Base θ (`rope_theta`). */
  readonly theta: number;
  /** Scaling factor (`factor`; 1 for `default`). */
  readonly factor: number;
  /**
   * `yarn`, `longrope`: scale of cos and sin (`attention_factor`; derived from the factor
   * when absent).
   */
  readonly attentionFactor?: number;
  /** `yarn`: rotations bounding the interpolation ramp (`beta_fast`, default 32). */
  readonly betaFast?: number;
  /** `yarn`: (`beta_slow`, default 1). */
  readonly betaSlow?: number;
  /** `yarn` (DeepSeek style): `mscale` and `mscale_all_dim` of the attention factor. */
  readonly mscale?: number;
  /** `yarn`: see `mscale`. */
  readonly mscaleAllDim?: number;
  /** `yarn`: round the ramp's ends outwards (`truncate`, default true). */
  readonly truncate?: boolean;
  /**
   * `yarn`, `llama3`, `longrope`: context length of pre-training
   * (`original_max_position_embeddings`); `dynamic`: `max_position_embeddings`, past
   * which transformers rescales the base.
   */
  readonly originalMaxPositions?: number;
  /**
   * `longrope`: per-frequency divisors up to `originalMaxPositions` (`short_factor`,
   * one per frequency, or one for all).
   */
  readonly shortFactor?: readonly number[];
  /** `longrope`: the divisors past it (`long_factor`). */
  readonly longFactor?: readonly number[];
  /** `llama3`: `low_freq_factor`. */
  readonly lowFreqFactor?: number;
  /** `llama3`: `high_freq_factor`. */
  readonly highFreqFactor?: number;
  /**
   * The share of each head that rotates (`partial_rotary_factor`, read only for
   * families that rotate part of a head); absent: all of it.
   */
  readonly partial?: number;
}

type Json = Record<string, unknown>;

const present = (v: unknown) => v !== undefined && v !== null;
const isObject = (v: unknown): v is Json =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Reads RoPE settings from a config.json object, in either generation's layout.
 * `defaultTheta` is the architecture's default base; `maxPositions` its
 * `max_position_embeddings` (yarn's default original context). A
 * `partial_rotary_factor` below 1 is refused unless `options.partial` says the
 * family rotates part of a head.
 *
 * @example
 * ```ts
 * import { readRopeSettings } from "@kiln/kiln";
 * const v5 = readRopeSettings({ rope_parameters: { rope_type: "default", rope_theta: 1e4 } }, "config.json", 1e6);
 * const v4 = readRopeSettings({ rope_theta: 1e4 }, "config.json", 1e6);
 * v5.theta === v4.theta; // true
 * ```
 */
export function readRopeSettings(
  json: Record<string, unknown>,
  file: string,
  defaultTheta: number,
  options: { partial?: boolean } = {},
): RopeSettings {
  const params = json.rope_parameters;
  const scaling = json.rope_scaling;
  let source: Json;
  let where: string;
  // Both transformers 4 (which reads only `rope_scaling`) and 5 (`rope_scaling or
  // rope_parameters` in `convert_rope_params_to_dict`) let a non-empty
  // `rope_scaling` win over `rope_parameters`.
  const legacy = present(scaling) && !(isObject(scaling) && Object.keys(scaling).length === 0);
  if (legacy) {
    if (!isObject(scaling)) {
      throw new TypeError(`${file}: field "rope_scaling" must be an object, got ${show(scaling)}`);
    }
    source = scaling;
    where = "rope_scaling";
  } else if (present(params)) {
    if (!isObject(params)) {
      throw new TypeError(
        `${file}: field "rope_parameters" must be an object, got ${show(params)}`,
      );
    }
    source = params;
    where = "rope_parameters";
  } else {
    source = {};
    where = "rope_scaling";
  }
  // Per-layer-type parameters are objects keyed by layer type; lists (longrope's
  // short_factor / long_factor) are ordinary fields, refused below by rope_type.
  const nested = Object.entries(source).filter(([, v]) => isObject(v));
  if (nested.length > 0) {
    throw new TypeError(
      `${file}: ${where} per layer type (${
        nested.map(([k]) => show(k)).join(", ")
      }) is not supported`,
    );
  }
  const num = (name: string, obj: Json, at: string): number | undefined => {
    const v = obj[name];
    if (!present(v)) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new TypeError(`${file}: field "${at}" must be a number, got ${show(v)}`);
    }
    return v;
  };
  const positive = (name: string): number | undefined => {
    const v = num(name, source, `${where}.${name}`);
    if (v !== undefined && !(v > 0)) {
      throw new RangeError(`${file}: field "${where}.${name}" must be > 0, got ${v}`);
    }
    return v;
  };

  // The base: inside rope_parameters (v5), else top level (v4); both must agree.
  const inner = num("rope_theta", source, `${where}.rope_theta`);
  const outer = num("rope_theta", json, "rope_theta");
  if (inner !== undefined && outer !== undefined && inner !== outer) {
    throw new TypeError(
      `${file}: rope_theta ${outer} and ${where}.rope_theta ${inner} disagree; write one of them`,
    );
  }
  const theta = inner ?? outer ?? defaultTheta;
  if (!(theta > 1)) throw new RangeError(`${file}: rope_theta must be > 1, got ${theta}`);

  const partial = num("partial_rotary_factor", source, `${where}.partial_rotary_factor`) ??
    num("partial_rotary_factor", json, "partial_rotary_factor");
  if (partial !== undefined && partial !== 1 && !options.partial) {
    throw new TypeError(
      `${file}: partial_rotary_factor ${partial} is not supported (RoPE over the whole head only)`,
    );
  }
  if (partial !== undefined && !(partial > 0 && partial <= 1)) {
    throw new RangeError(`${file}: partial_rotary_factor must be in (0, 1], got ${partial}`);
  }

  // The variant's own fields (every return below is one of them).
  const typed = (): RopeSettings => {
    const rawType = source.rope_type ?? source.type ?? "default";
    if (typeof rawType !== "string") {
      throw new TypeError(
        `${file}: field "${where}.rope_type" must be a string, got ${show(rawType)}`,
      );
    }
    if (!(ROPE_TYPES as readonly string[]).includes(rawType)) {
      throw new TypeError(
        `${file}: ${where}.rope_type ${show(rawType)} is not supported (supported: ${
          ROPE_TYPES.join(", ")
        })`,
      );
    }
    const type = rawType as RopeType;
    if (type === "default") return { type, theta, factor: 1 };

    const factor = positive("factor");
    // transformers 5 (`standardize_rope_params`) lets a top-level
    // original_max_position_embeddings win, else keeps the dict's, else
    // max_position_embeddings: llama3 and yarn need no explicit one.
    const topOriginal = num(
      "original_max_position_embeddings",
      json,
      "original_max_position_embeddings",
    );
    if (topOriginal !== undefined && !(topOriginal > 0)) {
      throw new RangeError(
        `${file}: field "original_max_position_embeddings" must be > 0, got ${topOriginal}`,
      );
    }
    const maxPos = num("max_position_embeddings", json, "max_position_embeddings");
    const original = topOriginal ?? positive("original_max_position_embeddings") ??
      (maxPos !== undefined && maxPos > 0 ? maxPos : undefined);
    if (type === "linear") {
      if (factor === undefined) throw missing(file, `${where}.factor`, type);
      return { type, theta, factor };
    }
    if (type === "dynamic") {
      // _compute_dynamic_ntk_parameters: base·((factor·L/max) − (factor − 1))^(d/(d−2))
      // with L = max(seq_len, max_position_embeddings): the plain base up to there.
      if (factor === undefined) throw missing(file, `${where}.factor`, type);
      if (maxPos === undefined || !(maxPos > 0)) {
        throw missing(file, "max_position_embeddings", type);
      }
      return { type, theta, factor, originalMaxPositions: maxPos };
    }
    if (type === "longrope") {
      const list = (name: string): number[] => {
        const v = source[name];
        if (!present(v)) throw missing(file, `${where}.${name}`, type);
        if (
          !Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "number" && x > 0)
        ) {
          throw new TypeError(
            `${file}: field "${where}.${name}" must be a list of positive numbers, got ${show(v)}`,
          );
        }
        return v as number[];
      };
      const shortFactor = list("short_factor"), longFactor = list("long_factor");
      if (original === undefined) {
        throw missing(file, `${where}.original_max_position_embeddings`, type);
      }
      // _compute_longrope_parameters: without a factor, the ratio of the two lengths
      // (Phi-3's convention); it only sets the default attention factor.
      const f = factor ?? (maxPos !== undefined ? maxPos / original : 1);
      return {
        type,
        theta,
        factor: f,
        attentionFactor: positive("attention_factor"),
        originalMaxPositions: original,
        shortFactor,
        longFactor,
      };
    }
    if (type === "llama3") {
      const low = positive("low_freq_factor"), high = positive("high_freq_factor");
      for (
        const [k, v] of [["factor", factor], ["low_freq_factor", low], ["high_freq_factor", high], [
          "original_max_position_embeddings",
          original,
        ]] as const
      ) {
        if (v === undefined) throw missing(file, `${where}.${k}`, type);
      }
      if (high! <= low!) {
        throw new RangeError(
          `${file}: ${where}.high_freq_factor ${high} must exceed low_freq_factor ${low}`,
        );
      }
      return {
        type,
        theta,
        factor: factor!,
        lowFreqFactor: low,
        highFreqFactor: high,
        originalMaxPositions: original,
      };
    }
    // yarn: transformers 4.57 and 5 both take `factor` as given (original_max_
    // position_embeddings only places the ramp); only an explicit null factor falls
    // back to max_position_embeddings / original_max_position_embeddings (5's
    // `_compute_yarn_parameters`).
    let f = factor;
    if (
      f === undefined && source.factor === null && original !== undefined && maxPos !== undefined
    ) {
      f = maxPos / original;
    }
    if (f === undefined) throw missing(file, `${where}.factor`, type);
    const truncate = source.truncate;
    if (present(truncate) && typeof truncate !== "boolean") {
      throw new TypeError(
        `${file}: field "${where}.truncate" must be a boolean, got ${show(truncate)}`,
      );
    }
    return {
      type,
      theta,
      factor: f,
      attentionFactor: positive("attention_factor"),
      betaFast: positive("beta_fast"),
      betaSlow: positive("beta_slow"),
      mscale: positive("mscale"),
      mscaleAllDim: positive("mscale_all_dim"),
      truncate: present(truncate) ? truncate as boolean : undefined,
      originalMaxPositions: original,
    };
  };
  // Recorded (1 too) for the families that rotate part of a head: an explicit 1 overrides
  // their default share.
  return partial !== undefined && options.partial ? { ...typed(), partial } : typed();
}

function missing(file: string, field: string, type: string): TypeError {
  return new TypeError(`${file}: rope_type "${type}" needs the field "${field}"`);
}

/** A value for messages, cut to 100 characters (a huge or deeply nested value must not make a huge message). */
function show(v: unknown): string {
  if (typeof v === "number") return String(v);
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    return "a deeply nested value";
  }
  return text.length <= 100 ? text : `${text.slice(0, 100)}… (${text.length} characters)`;
}

/**
 * The inverse frequencies (`⌈headDim / 2⌉` values, f32 as PyTorch computes
 * them) and the factor on cos and sin for a head size (or a partial RoPE's
 * rotated size, odd when transformers' `int(head_dim · factor)` is) and RoPE
 * settings.
 *
 * @example
 * ```ts
 * import { ropeFrequencies } from "@kiln/kiln";
 * const { invFreq, attentionFactor } = ropeFrequencies(4, { type: "linear", theta: 1e4, factor: 2 });
 * [...invFreq]; // [0.5, 0.005]
 * attentionFactor; // 1
 * ```
 */
export function ropeFrequencies(
  headDim: number,
  s: RopeSettings,
): { invFreq: Float32Array; attentionFactor: number } {
  if (!Number.isInteger(headDim) || headDim < 1) {
    throw new RangeError(`ropeFrequencies: headDim must be a positive integer, got ${headDim}`);
  }
  const f32 = Math.fround;
  // An odd dim (a partial RoPE's int(head_dim · factor)) still has ⌈dim/2⌉ frequencies.
  const half = Math.ceil(headDim / 2);
  // base ** (arange(0, dim, 2) / dim), all in float32.
  const posFreq = Float32Array.from(
    { length: half },
    (_, i) => f32(s.theta ** f32((2 * i) / headDim)),
  );
  const base = Float32Array.from(posFreq, (p) => f32(1 / p));
  switch (s.type) {
    case "default":
    case "dynamic": // the same table up to max_position_embeddings (checkRopeLength)
      return { invFreq: base, attentionFactor: 1 };
    case "linear":
      return { invFreq: base.map((v) => f32(v / s.factor)), attentionFactor: 1 };
    case "longrope": {
      // _compute_longrope_parameters: 1 / (ext · base^(2i/d)), ext the short factors
      // (a sequence past originalMaxPositions is refused, checkRopeLength); one
      // factor broadcasts over every frequency, as torch does.
      const ext = s.shortFactor!;
      if (ext.length !== 1 && ext.length !== half) {
        throw new RangeError(
          `ropeFrequencies: longrope short_factor has ${ext.length} values, expected ${half} ` +
            `(head size ${headDim} / 2) or 1`,
        );
      }
      const orig = s.originalMaxPositions!;
      const attentionFactor = s.attentionFactor ??
        (s.factor <= 1 ? 1 : Math.sqrt(1 + Math.log(s.factor) / Math.log(orig)));
      const invFreq = posFreq.map((p, i) => f32(1 / f32(f32(ext[ext.length === 1 ? 0 : i]) * p)));
      return { invFreq, attentionFactor };
    }
    case "llama3": {
      const old = s.originalMaxPositions!, lo = s.lowFreqFactor!, hi = s.highFreqFactor!;
      const loWave = old / lo, hiWave = old / hi;
      const out = base.map((v) => {
        const wave = f32(f32(2 * Math.PI) / v);
        const scaled = wave > loWave ? f32(v / s.factor) : v;
        if (wave < hiWave || wave > loWave) return scaled;
        const smooth = f32(f32(f32(old / wave) - lo) / (hi - lo));
        return f32(f32(f32(1 - smooth) * f32(scaled / s.factor)) + f32(smooth * scaled));
      });
      return { invFreq: out, attentionFactor: 1 };
    }
    case "yarn": {
      const mscale = (scale: number, m = 1) => scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
      const attentionFactor = s.attentionFactor ??
        (s.mscale && s.mscaleAllDim
          ? mscale(s.factor, s.mscale) / mscale(s.factor, s.mscaleAllDim)
          : mscale(s.factor));
      const dim = headDim, orig = s.originalMaxPositions!;
      const corr = (rot: number) =>
        (dim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(s.theta));
      let low = corr(s.betaFast ?? 32), high = corr(s.betaSlow ?? 1);
      if (s.truncate ?? true) {
        low = Math.floor(low);
        high = Math.ceil(high);
      }
      low = Math.max(low, 0);
      high = Math.min(high, dim - 1);
      if (low === high) high += 0.001;
      // transformers ramps over dim // 2 frequencies: for an odd dim one fewer than there
      // are, which torch broadcasts only when it is 1 (dim 3: ramp(0) for both).
      const ramps = Math.floor(dim / 2);
      if (ramps !== half && ramps !== 1) {
        throw new RangeError(
          `ropeFrequencies: yarn over an odd ${dim} rotated values: transformers' ramp of ` +
            `${ramps} values does not broadcast over its ${half} frequencies`,
        );
      }
      const out = new Float32Array(half);
      for (let i = 0; i < half; i++) {
        const at = ramps === half ? i : 0;
        const ramp = Math.min(1, Math.max(0, f32(f32(at - low) / f32(high - low))));
        const extra = f32(1 - ramp); // weight of the unscaled (extrapolated) frequency
        const interp = f32(1 / f32(s.factor * posFreq[i]));
        out[i] = f32(f32(interp * f32(1 - extra)) + f32(base[i] * extra));
      }
      return { invFreq: out, attentionFactor };
    }
  }
}

/** Whether a longrope's short and long factors are one list: no switch with length. */
function sameLongropeFactors(s: RopeSettings): boolean {
  const a = s.shortFactor!, b = s.longFactor!;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Refuses a context longer than RoPE settings give fixed frequencies for:
 * `dynamic` scaling rescales its base once a sequence passes
 * `max_position_embeddings` (and back for shorter ones), and `longrope` switches
 * from its short to its long factors past `original_max_position_embeddings`
 * (unless they are equal), which one compiled frequency table cannot follow. A RangeError naming `what` (e.g. the file and
 * the option) and both lengths.
 *
 * @example
 * ```ts
 * import { checkRopeLength } from "@kiln/kiln";
 * checkRopeLength({ type: "dynamic", theta: 1e4, factor: 2, originalMaxPositions: 4096 }, 2048, "maxSeq");
 * ```
 */
export function checkRopeLength(s: RopeSettings | undefined, length: number, what: string): void {
  if (s?.type === "longrope") {
    if (sameLongropeFactors(s) || length <= s.originalMaxPositions!) return;
    throw new RangeError(
      `${what} ${length} is past original_max_position_embeddings ${s.originalMaxPositions} of ` +
        'a "longrope" RoPE, where transformers switches from short_factor to long_factor ' +
        `with the sequence length; Kiln runs it up to ${s.originalMaxPositions} tokens`,
    );
  }
  if (s?.type !== "dynamic" || length <= s.originalMaxPositions!) return;
  throw new RangeError(
    `${what} ${length} is past max_position_embeddings ${s.originalMaxPositions} of a ` +
      '"dynamic" RoPE, which transformers rescales there with the sequence length; ' +
      `Kiln runs it up to ${s.originalMaxPositions} tokens`,
  );
}

/**
 * The per-frequency divisors llama.cpp's llama graph applies (`rope_freqs.weight`),
 * for RoPE settings that are exactly such divisors: `llama3` (computed as llama.cpp's
 * converter computes them, from these settings' own original context) and `longrope`
 * with equal short and long factors and no attention factor; undefined otherwise.
 *
 * @example
 * ```ts
 * import { ropeDivisors } from "@kiln/kiln";
 * ropeDivisors(4, { type: "default", theta: 1e4, factor: 1 }); // undefined
 * ```
 */
export function ropeDivisors(headDim: number, s: RopeSettings): Float32Array | undefined {
  const half = headDim / 2;
  if (s.type === "longrope") {
    const unscaled = ropeFrequencies(headDim, s).attentionFactor === 1;
    if (!sameLongropeFactors(s) || !unscaled) return undefined;
    const f = s.shortFactor!;
    return Float32Array.from({ length: half }, (_, i) => f[f.length === 1 ? 0 : i]);
  }
  if (s.type !== "llama3") return undefined;
  // convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors, with the settings'
  // original context (the converter reads only a top-level one, else 8192).
  const old = s.originalMaxPositions!, lo = s.lowFreqFactor!, hi = s.highFreqFactor!;
  const f32 = Math.fround;
  return Float32Array.from({ length: half }, (_, i) => {
    const freq = f32(1 / f32(s.theta ** f32((2 * i) / headDim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < old / hi) return 1;
    if (wavelen > old / lo) return s.factor;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return 1 / ((1 - smooth) / s.factor + smooth);
  });
}
