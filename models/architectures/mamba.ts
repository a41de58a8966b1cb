/**
 * Mamba (`MambaForCausalLM`): every layer is x + MambaMixer(RMSNorm(x)), the
 * selective SSM with no attention and no feed-forward.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import { baseFields, DECODER_LAYOUT, dtRankField, uniformLayers } from "./common.ts";
import { MAX_CONFIG_INT } from "./reader.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/**
 * The Mamba spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.MambaForCausalLM.layout.embed; // "backbone.embeddings"
 * ```
 */
export const mamba: ArchitectureSpec = {
  architecture: "MambaForCausalLM",
  modelType: "mamba",
  summary: "selective SSM (S6) mixer in every layer, no attention, no feed-forward",
  layout: {
    ...DECODER_LAYOUT,
    embed: "backbone.embeddings",
    finalNorm: "backbone.norm_f",
    layers: "backbone.layers",
    mixerNorm: "norm",
    ffnNorm: "",
    attention: "",
    mamba: "mixer",
    experts: "",
  },

  parse: (c) => mambaFields(c, "MambaForCausalLM"),
};

/**
 * Where fresh initialisation draws Δ from (`time_step_min`, `_max`, `_floor`),
 * the same keys and defaults in MambaConfig and Mamba2Config.
 *
 * @example
 * ```ts ignore
 * import { dtRange } from "./mamba.ts";
 * dtRange(reader); // { min: 0.001, max: 0.1, floor: 0.0001 }
 * ```
 */
export function dtRange(c: ConfigReader): { min: number; max: number; floor: number } {
  const min = c.num("time_step_min", 0.001), max = c.num("time_step_max", 0.1);
  if (!(min > 0 && max >= min)) {
    throw new RangeError(
      `${c.file}: time_step_min ${min} and time_step_max ${max} must satisfy 0 < min <= max`,
    );
  }
  return { min, max, floor: c.num("time_step_floor", 1e-4) };
}

/**
 * The fields of MambaConfig and FalconMambaConfig (the same keys; Falcon-Mamba
 * adds `mixer_rms_eps`, the epsilon of its weightless RMSNorms on Δ, B and C).
 *
 * @example
 * ```ts ignore
 * import { mambaFields } from "./mamba.ts";
 * mambaFields(reader, "MambaForCausalLM").mamba?.stateSize; // 16
 * ```
 */
export function mambaFields(
  c: ConfigReader,
  architecture: "MambaForCausalLM" | "FalconMambaForCausalLM",
): ModelConfig {
  const act = c.hiddenAct();
  // MambaConfig's token id defaults.
  const base = baseFields(c, { bos: 0, eos: 0 });
  // HF stores intermediate_size = int(expand · hidden); prefer it when present.
  const expand = c.num("expand", 2);
  const inner = c.has("intermediate_size")
    ? c.positive("intermediate_size")
    : Math.floor(expand * base.hidden);
  if (!(inner >= 1 && inner <= MAX_CONFIG_INT)) {
    throw new RangeError(
      `${c.file}: expand ${expand} × hidden_size ${base.hidden} gives an inner width of ${inner}, ` +
        `not between 1 and ${MAX_CONFIG_INT}`,
    );
  }
  const scheme = c.str("time_step_init_scheme", "random");
  if (scheme !== "random" && scheme !== "constant") {
    c.refuse("time_step_init_scheme", 'only "random" and "constant" are defined');
  }
  return {
    architecture,
    ...act,
    ...base,
    intermediate: 0,
    normEps: c.nonNegative("layer_norm_epsilon", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", true),
    pattern: uniformLayers(base.layers, "mamba", "none"),
    mamba: {
      stateSize: c.positive("state_size", 16),
      inner,
      convKernel: c.positive("conv_kernel", 4),
      dtRank: dtRankField(c, "time_step_rank", base.hidden),
      projBias: c.bool("use_bias", false),
      convBias: c.bool("use_conv_bias", true),
      innerNorms: architecture === "FalconMambaForCausalLM",
      ...(architecture === "FalconMambaForCausalLM"
        ? { weightlessNorms: { eps: c.nonNegative("mixer_rms_eps", 1e-6) } }
        : {}),
      dtInit: {
        ...dtRange(c),
        scale: c.num("time_step_scale", 1),
        scheme: scheme as "random" | "constant",
      },
    },
  };
}
