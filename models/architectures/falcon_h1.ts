/**
 * TII's Falcon-H1 (`FalconH1ForCausalLM`, tiiuae/Falcon-H1-0.5B … -34B): every
 * layer runs grouped-query attention (RoPE) and a Mamba-2 mixer side by side
 * on one normed input and adds both to the residual, then a SwiGLU MLP. μP
 * constants scale the embeddings, the logits (`lm_head_multiplier`), each
 * mixer's input and output, the keys, the MLP's gate and output, and each
 * segment of the Mamba-2 in_proj (z, x, B, C, Δ: `ssm_multipliers`). The
 * Mamba-2's output is gated by silu(z) and, with `mamba_rms_norm`, normed per
 * B/C group — after the gate, or before it with `mamba_norm_before_gate`.
 *
 * @module
 */

import type { LayerSpec, ModelConfig } from "../config.ts";
import { MAX_CONFIG_INT, show } from "./reader.ts";
import { attentionFields, baseFields, paddingIdxField } from "./common.ts";
import { jamba } from "./jamba.ts";
import type { ConfigReader } from "./reader.ts";
import type { ArchitectureSpec, CheckpointLayout } from "./spec.ts";
import { timeStepLimit } from "./mamba2.ts";

/** A list of `n` finite numbers (`ssm_multipliers`, `mlp_multipliers`), or `fallback` when absent. */
function factors(c: ConfigReader, name: string, n: number): number[] {
  const v = c.raw(name) ?? new Array(n).fill(1);
  if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== "number" || !isFinite(x))) {
    throw new TypeError(
      `${c.file}: field "${name}" must be a list of ${n} numbers, got ${show(v)}`,
    );
  }
  return v as number[];
}

function falconH1Fields(c: ConfigReader): ModelConfig {
  const act = c.hiddenAct();
  const base = baseFields(c, { bos: 1, eos: 2 });
  const d = base.hidden;
  const heads = c.positive("mamba_n_heads", 128);
  // FalconH1Config's mamba_d_ssm defaults to 1024; only an explicit null means expand × hidden.
  const inner = Object.hasOwn(c.json, "mamba_d_ssm") && c.raw("mamba_d_ssm") === undefined
    ? Math.floor(c.num("mamba_expand", 2) * d)
    : c.positive("mamba_d_ssm", 1024);
  const rawHead = c.raw("mamba_d_head");
  const headDim = rawHead === undefined || rawHead === "auto"
    ? Math.floor(inner / heads)
    : c.positive("mamba_d_head");
  if (headDim * heads !== inner || inner > MAX_CONFIG_INT) {
    throw new RangeError(
      `${c.file}: mamba_n_heads ${heads} × mamba_d_head ${headDim} must equal the Mamba ` +
        `width mamba_d_ssm (or mamba_expand × hidden_size) ${inner}`,
    );
  }
  const groups = c.positive("mamba_n_groups", 1);
  if (heads % groups !== 0) {
    throw new RangeError(
      `${c.file}: mamba_n_heads ${heads} must be a multiple of mamba_n_groups ${groups}`,
    );
  }
  const rmsNorm = c.bool("mamba_rms_norm", false);
  const normFirst = c.bool("mamba_norm_before_gate", true);
  const [gate, down] = factors(c, "mlp_multipliers", 2);
  const lmHead = c.num("lm_head_multiplier", 1);
  if (lmHead === 0) c.refuse("lm_head_multiplier", "a factor of 0 leaves no logits");
  const attnBias = c.bool("attention_bias", false);
  return {
    architecture: "FalconH1ForCausalLM",
    ...act,
    ...base,
    paddingIdx: paddingIdxField(c, base.vocabSize, 0),
    intermediate: c.positive("intermediate_size", 14336),
    normEps: c.nonNegative("rms_norm_eps", 1e-5),
    tieEmbeddings: c.bool("tie_word_embeddings", false),
    ...(c.bool("mlp_bias", false) ? { mlpBias: true } : {}),
    pattern: Array.from({ length: base.layers }, (): LayerSpec => ({
      mixer: "parallel",
      ffn: "mlp",
    })),
    attention: {
      ...attentionFields(c, d, {
        ropeTheta: 1e4,
        qkvBias: attnBias,
        outBias: attnBias,
        kvHeads: 8,
      }),
      keyScale: c.num("key_multiplier", 1),
    },
    mamba: {
      stateSize: c.positive("mamba_d_state", 256),
      inner,
      convKernel: c.positive("mamba_d_conv", 4),
      dtRank: heads,
      projBias: c.bool("mamba_proj_bias", false),
      outProjBias: c.bool("projectors_bias", false),
      convBias: c.bool("mamba_conv_bias", true),
      innerNorms: false,
      ssd: {
        heads,
        headDim,
        groups,
        // FalconH1RMSNormGated normalises each B/C group's channels.
        normGroups: groups,
        dtLimit: timeStepLimit(c),
        gatedNorm: !rmsNorm ? "gate_only" : normFirst ? "norm_first" : "gate_first",
        inScale: c.num("ssm_in_multiplier", 1),
        projScale: factors(c, "ssm_multipliers", 5) as [number, number, number, number, number],
      },
    },
    scaling: {
      embedding: c.num("embedding_multiplier", 1),
      residual: 1,
      // Kiln divides the logits: by 1 / lm_head_multiplier.
      logits: 1 / lmHead,
      attentionIn: c.num("attention_in_multiplier", 1),
      attentionOut: c.num("attention_out_multiplier", 1),
      ssmOut: c.num("ssm_out_multiplier", 1),
      mlpGate: gate,
      mlpDown: down,
    },
  };
}

/**
 * Falcon-H1's names, Jamba's (the class it was adapted from) without experts:
 * the Mamba-2 under `mamba`, the MLP under `feed_forward`, `pre_ff_layernorm`
 * before it and `model.final_layernorm` last.
 *
 * @example
 * ```ts
 * import { FALCON_H1_LAYOUT } from "./falcon_h1.ts";
 * FALCON_H1_LAYOUT.mlp; // "feed_forward"
 * ```
 */
export const FALCON_H1_LAYOUT: CheckpointLayout = { ...jamba.layout, moe: "", router: "" };

/**
 * The Falcon-H1 spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.FalconH1ForCausalLM.layout.mamba; // "mamba"
 * ```
 */
export const falconH1: ArchitectureSpec = {
  architecture: "FalconH1ForCausalLM",
  modelType: "falcon_h1",
  summary: "parallel hybrid: attention (GQA, RoPE) and Mamba-2 side by side in every layer, " +
    "then a SwiGLU MLP; μP multipliers",
  layout: FALCON_H1_LAYOUT,
  parse: falconH1Fields,
};
