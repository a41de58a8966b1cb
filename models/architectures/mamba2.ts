/**
 * Mamba-2 (`Mamba2ForCausalLM`, e.g. mistralai/Mamba-Codestral-7B-v0.1,
 * state-spaces/mamba2-*): every layer is x + Mamba2Mixer(RMSNorm(x)), the SSD
 * layer with heads of scalar A, B and C shared per group, and a gated RMSNorm
 * before out_proj; laid out as Mamba's (`backbone.*`).
 *
 * @module
 */

import type { MambaConfig, MambaSsdConfig, ModelConfig } from "../config.ts";
import { baseFields, uniformLayers } from "./common.ts";
import { dtRange, mamba } from "./mamba.ts";
import { MAX_CONFIG_INT, show } from "./reader.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Mamba-2 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.Mamba2ForCausalLM.layout.mamba; // "mixer"
 * ```
 */
export const mamba2: ArchitectureSpec = {
  architecture: "Mamba2ForCausalLM",
  modelType: "mamba2",
  summary: "Mamba-2 (SSD) mixer in every layer: scalar A per head, B and C per group",
  layout: mamba.layout,
  parse: mamba2Fields,
};

/** A float of a config list: a number, or transformers 5's `{"__float__": "Infinity"}`. */
function floatOf(c: ConfigReader, name: string, v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "object" && v !== null && "__float__" in v) {
    const text = (v as { __float__: unknown }).__float__;
    if (text === "Infinity") return Infinity;
    if (text === "-Infinity") return -Infinity;
  }
  throw new TypeError(`${c.file}: field "${name}" must hold numbers, got ${show(c.raw(name))}`);
}

/**
 * Groups of the gated norm: transformers' 1, or (`kiln_norm_groups`, which a
 * GGUF file's config carries) llama.cpp's `n_groups`.
 */
function normGroupsField(c: ConfigReader, groups: number): number {
  const n = c.positive("kiln_norm_groups", 1);
  if (n !== 1 && n !== groups) {
    throw new RangeError(
      `${c.file}: field "kiln_norm_groups" must be 1 or n_groups ${groups}, got ${n}`,
    );
  }
  return n;
}

/**
 * `time_step_limit` ([min, max] that Δ is clamped to; absent: [0, ∞)), with
 * transformers 5's `{"__float__": "Infinity"}` read as ∞.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { timeStepLimit } from "./mamba2.ts";
 * timeStepLimit(new ConfigReader({ time_step_limit: [0, 2] }, "config.json", "x")); // [0, 2]
 * ```
 */
export function timeStepLimit(c: ConfigReader): [number, number] {
  const raw = c.raw("time_step_limit") ?? [0, Infinity];
  if (!Array.isArray(raw) || raw.length !== 2) {
    throw new TypeError(
      `${c.file}: field "time_step_limit" must be [min, max], got ${
        show(c.raw("time_step_limit"))
      }`,
    );
  }
  const lo = floatOf(c, "time_step_limit", raw[0]), hi = floatOf(c, "time_step_limit", raw[1]);
  // An infinite minimum would clamp every Δ to ∞ (only the maximum may be unbounded).
  if (!(Number.isFinite(lo) && lo >= 0 && hi >= lo)) {
    throw new RangeError(
      `${c.file}: field "time_step_limit" [${lo}, ${hi}] must satisfy 0 <= min <= max, ` +
        "min finite",
    );
  }
  return [lo, hi];
}

/**
 * The SSD settings of a Mamba-2 mixer of `heads` heads of `headDim` channels
 * and `groups` B/C groups: its gated norm's groups and Δ limit from the config.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { ssdFields } from "./mamba2.ts";
 * ssdFields(new ConfigReader({}, "config.json", "x"), 24, 64, 1).dtLimit; // [0, Infinity]
 * ```
 */
export function ssdFields(
  c: ConfigReader,
  heads: number,
  headDim: number,
  groups: number,
): MambaSsdConfig {
  return {
    heads,
    headDim,
    groups,
    normGroups: normGroupsField(c, groups),
    dtLimit: timeStepLimit(c),
  };
}

/**
 * The Mamba-2 mixer of the hybrids built on transformers' `BambaMixer` (Bamba,
 * Granite 4.0): `mamba_n_heads`, `mamba_d_head` ("auto": the inner width over
 * the heads), `mamba_expand`, `mamba_n_groups`, `mamba_d_state`, `mamba_d_conv`
 * and the biases, with their config classes' defaults and checks.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { bambaMixerFields } from "./mamba2.ts";
 * const c = new ConfigReader({ mamba_n_heads: 8 }, "config.json", "x");
 * bambaMixerFields(c, 32).ssd!.headDim; // 8
 * ```
 */
export function bambaMixerFields(c: ConfigReader, hidden: number): MambaConfig {
  const heads = c.positive("mamba_n_heads", 128);
  const expand = c.positive("mamba_expand", 2);
  const inner = Math.floor(expand * hidden);
  const rawHead = c.raw("mamba_d_head");
  const headDim = rawHead === undefined || rawHead === "auto"
    ? Math.floor(inner / heads)
    : c.positive("mamba_d_head");
  // The config classes' validate_architecture refuses both.
  if (inner % heads !== 0 || headDim * heads !== inner) {
    throw new RangeError(
      `${c.file}: mamba_n_heads ${heads} × mamba_d_head ${headDim} must equal mamba_expand ` +
        `${expand} × hidden_size ${hidden} (${inner})`,
    );
  }
  if (inner > MAX_CONFIG_INT) {
    throw new RangeError(
      `${c.file}: mamba_expand × hidden_size is ${inner}, over ${MAX_CONFIG_INT}`,
    );
  }
  const groups = c.positive("mamba_n_groups", 1);
  if (heads % groups !== 0) {
    throw new RangeError(
      `${c.file}: mamba_n_heads ${heads} must be a multiple of mamba_n_groups ${groups}`,
    );
  }
  return {
    stateSize: c.positive("mamba_d_state", 256),
    inner,
    convKernel: c.positive("mamba_d_conv", 4),
    dtRank: heads,
    projBias: c.bool("mamba_proj_bias", false),
    convBias: c.bool("mamba_conv_bias", true),
    innerNorms: false,
    // transformers normalises all channels together before out_proj (a GGUF file's
    // config says llama.cpp's groups in kiln_norm_groups).
    ssd: ssdFields(c, heads, headDim, groups),
  };
}

function mamba2Fields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  // Mamba2Config's token id defaults.
  const base = baseFields(c, { bos: 0, eos: 0 });
  const heads = c.positive("num_heads", 128), headDim = c.positive("head_dim", 64);
  const groups = c.positive("n_groups", 8);
  const inner = heads * headDim;
  const expand = c.num("expand", 2);
  // Mamba2Config refuses the same disagreement.
  if (Math.floor(expand * base.hidden) !== inner) {
    throw new RangeError(
      `${c.file}: expand ${expand} × hidden_size ${base.hidden} must equal num_heads ${heads} × ` +
        `head_dim ${headDim} (${inner})`,
    );
  }
  if (inner > MAX_CONFIG_INT) {
    throw new RangeError(`${c.file}: num_heads × head_dim is ${inner}, over ${MAX_CONFIG_INT}`);
  }
  if (heads % groups !== 0) {
    throw new RangeError(`${c.file}: num_heads ${heads} must be a multiple of n_groups ${groups}`);
  }
  return {
    architecture: "Mamba2ForCausalLM",
    ...act,
    ...base,
    intermediate: 0,
    normEps: c.nonNegative("layer_norm_epsilon", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern: uniformLayers(base.layers, "mamba", "none"),
    mamba: {
      stateSize: c.positive("state_size", 128),
      inner,
      convKernel: c.positive("conv_kernel", 4),
      // Mamba-2's Δ is one value a head, straight from in_proj.
      dtRank: heads,
      projBias: c.bool("use_bias", false),
      convBias: c.bool("use_conv_bias", true),
      innerNorms: false,
      ssd: ssdFields(c, heads, headDim, groups),
      dtInit: { ...dtRange(c), scale: 1, scheme: "random" },
    },
  };
}
