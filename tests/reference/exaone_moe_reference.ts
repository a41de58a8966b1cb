/**
 * Float64 reference of K-EXAONE (transformers 5's `ExaoneMoeForCausalLM`),
 * written from its modeling code: attention without biases, q and k RMS-normed
 * per head, then RoPE only where `sliding_window` is None or the layer is a
 * `"sliding_attention"` one (whose keys the window limits); layers marked
 * `"dense"` in `mlp_layer_types` a SwiGLU MLP, the others GLM-4.5's frame
 * (`loadSigmoidMoe`): sigmoid + selection bias routing over groups, weights
 * renormalised and scaled, beside the shared experts' SwiGLU.
 *
 * @module
 */

import {
  attention,
  type AttentionOptions,
  field,
  type HfConfig,
  intField,
  type LayerKind,
  readAttention,
  type ReferenceModel,
  type Weights,
} from "./hf_reference.ts";
import { referenceRope } from "./rope_reference.ts";
import { loadSigmoidMoe } from "./glm4_moe_reference.ts";

/** The K-EXAONE reference model of a loaded checkpoint. */
export function loadExaoneMoe(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const heads = intField(config, "num_attention_heads");
  const base: AttentionOptions = {
    hidden: d,
    heads,
    kvHeads: intField(config, "num_key_value_heads", heads),
    headDim: config.head_dim == null ? d / heads : intField(config, "head_dim"),
    qkNormEps: field(config, "rms_norm_eps", 1e-5),
    qkNormPerHead: true,
  };
  const rope = referenceRope(config, base.headDim, 1e4);
  const windowed = config.sliding_window != null;
  const extras = { qkvBias: false, outBias: false, qkNorm: true };
  return loadSigmoidMoe(
    w,
    config,
    kinds,
    "ExaoneMoeForCausalLM",
    async (p) => {
      const window = kinds[Number(p.split(".").at(-1))].window;
      const a = await readAttention(w, `${p}.self_attn`, base, extras);
      const opt: AttentionOptions = {
        ...base,
        // ExaoneMoeAttention: "global NoPE for hybrid attention model".
        ...(!windowed || window !== undefined ? { rope } : {}),
        ...(window !== undefined ? { slidingWindow: window } : {}),
      };
      return (x, T) => attention(x, T, a, opt);
    },
    false,
    {
      experts: "num_experts",
      shared: "num_shared_experts",
      bias: "e_score_correction_bias",
      scale: 2.5,
    },
  );
}
