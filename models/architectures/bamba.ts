/**
 * Bamba (`BambaForCausalLM`, e.g. ibm-ai-platform/Bamba-9B-v2): a hybrid of
 * Mamba-2 mixers (`BambaMixer`, Granite 4.0's too) and attention at the layers
 * `attn_layer_indices` names, with a partial RoPE (half of each head unless
 * `rope_parameters.partial_rotary_factor` says otherwise); every layer's
 * feed-forward a SwiGLU MLP.
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import { attentionFields, baseFields, paddingIdxField } from "./common.ts";
import { jamba } from "./jamba.ts";
import { bambaMixerFields } from "./mamba2.ts";
import { show } from "./reader.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

/** Layers named by `attn_layer_indices` attend; the rest run the Mamba-2 mixer. */
function pattern(c: ConfigReader, layers: number): LayerSpec[] {
  const raw = c.raw("attn_layer_indices");
  if (raw !== undefined && (!Array.isArray(raw) || raw.some((i) => !Number.isInteger(i)))) {
    throw new TypeError(
      `${c.file}: field "attn_layer_indices" must be a list of layer indices, got ${show(raw)}`,
    );
  }
  const attn = new Set((raw ?? []) as number[]);
  // BambaConfig's layers_block_type asks only `i in attn_layer_indices`: an index past
  // the last layer names no layer.
  return Array.from({ length: layers }, (_, i) => ({
    mixer: attn.has(i) ? "attention" : "mamba",
    ffn: "mlp",
  }));
}

function bambaFields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  c.absent("mlp_bias", "its MLPs have no biases in Kiln");
  // BambaConfig's token id defaults.
  const base = baseFields(c, { bos: 1, eos: 2 });
  const layers = pattern(c, base.layers);
  const bias = c.bool("attention_bias", false);
  return {
    architecture: "BambaForCausalLM",
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize, 0),
    intermediate: c.positive("intermediate_size", 14336),
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    pattern: layers,
    attention: layers.some((l) => l.mixer === "attention")
      ? attentionFields(c, base.hidden, {
        ropeTheta: 1e4,
        qkvBias: bias,
        outBias: bias,
        kvHeads: 8,
        // BambaConfig.__post_init__ sets 0.5 where rope_parameters gives no factor.
        partialRotary: 0.5,
      })
      : undefined,
    mamba: layers.some((l) => l.mixer === "mamba") ? bambaMixerFields(c, base.hidden) : undefined,
  };
}

/**
 * The Bamba spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.BambaForCausalLM.layout.ffnNorm; // "pre_ff_layernorm"
 * ```
 */
export const bamba: ArchitectureSpec = {
  architecture: "BambaForCausalLM",
  modelType: "bamba",
  summary: "hybrid: Mamba-2 mixers, attention with a partial RoPE at attn_layer_indices, " +
    "a SwiGLU MLP in every layer",
  // Jamba's module names (final_layernorm, pre_ff_layernorm, mamba, feed_forward); Bamba
  // has no MoE block, so Jamba's MoE names name nothing here.
  layout: jamba.layout,
  parse: bambaFields,
};
