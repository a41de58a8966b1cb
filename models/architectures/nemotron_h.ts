/**
 * Nemotron-H (`NemotronHForCausalLM`, e.g. nvidia/NVIDIA-Nemotron-Nano-9B-v2):
 * a stack of single-purpose blocks, each x + mixer(RMSNorm(x)) with the mixer
 * a Mamba-2 layer, attention without RoPE, or an MLP `down(relu(up·x)²)`, as
 * `layers_block_type` (or the older `hybrid_override_pattern`, `M*-`) says.
 * Its Mamba-2 normalises each B/C group before out_proj and clamps Δ from below
 * at `time_step_min` in the prefill, as transformers computes it. Nemotron 3's
 * routed-expert blocks (`moe`, `E`; e.g. NVIDIA-Nemotron-3-Nano-30B-A3B) run
 * ungated `relu(up·x)²` experts chosen as DeepSeek-V3 chooses them (sigmoid
 * affinities plus `e_score_correction_bias`, `n_group` / `topk_group`,
 * `norm_topk_prob`, `routed_scaling_factor`) beside one ungated shared expert
 * of `moe_shared_expert_intermediate_size`, with Nemotron 3 Super's latent
 * projections around the experts when `moe_latent_size` is set.
 *
 * @module
 */

import type { LayerSpec, ModelConfig, MoeConfig } from "../config.ts";
import { attentionFields, baseFields, groupLimitFields, MAX_LAYERS, moeFields } from "./common.ts";
import { dtRange } from "./mamba.ts";
import { ConfigReader, MAX_CONFIG_INT, show } from "./reader.ts";
import type { ArchitectureSpec } from "./spec.ts";

const BLOCKS: Readonly<Record<string, LayerSpec>> = {
  linear_attention: { mixer: "mamba", ffn: "none" },
  full_attention: { mixer: "attention", ffn: "none" },
  mlp: { mixer: "none", ffn: "mlp" },
  moe: { mixer: "none", ffn: "moe" },
};
const PATTERN: Readonly<Record<string, string>> = {
  M: "linear_attention",
  "*": "full_attention",
  "-": "mlp",
  E: "moe",
};

/** The block kinds: `layers_block_type` / `layer_types`, else `hybrid_override_pattern`. */
function blockTypes(c: ConfigReader): string[] {
  const list = c.strList("layers_block_type") ?? c.strList("layer_types");
  if (list) return list;
  const raw = c.raw("hybrid_override_pattern");
  if (raw === undefined) {
    // NemotronHConfig's default holds a MoE block.
    return ["linear_attention", "moe", "full_attention", "mlp"];
  }
  if (typeof raw !== "string") {
    throw new TypeError(
      `${c.file}: field "hybrid_override_pattern" must be a string of M, *, - and E, got ${
        show(raw)
      }`,
    );
  }
  return [...raw].map((ch, i) => {
    const t = PATTERN[ch];
    if (!t) {
      throw new TypeError(
        `${c.file}: hybrid_override_pattern[${i}] ${show(ch)} is not one of M, *, - and E`,
      );
    }
    return t;
  });
}

function nemotronFields(c: ConfigReader): ModelConfig {
  const types = blockTypes(c);
  if (types.length === 0 || types.length > MAX_LAYERS) {
    throw new RangeError(`${c.file}: ${types.length} blocks; expected 1 to ${MAX_LAYERS}`);
  }
  const pattern = types.map((t, i) => {
    const spec = BLOCKS[t];
    if (!spec) {
      throw new TypeError(
        `${c.file}: block ${i} ${show(t)} is not one of linear_attention, full_attention, mlp, moe`,
      );
    }
    return spec;
  });
  // The layer count is the block list's (num_hidden_layers is deprecated there), and
  // attention's head size NemotronHConfig's head_dim (default 128).
  const cc = new ConfigReader(
    { ...c.json, num_hidden_layers: types.length, head_dim: c.json.head_dim ?? 128 },
    c.file,
    c.architecture,
  );
  const base = baseFields(cc, { bos: 1, eos: 2 });
  const mlpAct = c.str("mlp_hidden_act", "relu2");
  if (mlpAct !== "relu2") c.refuse("mlp_hidden_act", 'only "relu2" is implemented');
  const convAct = c.hiddenAct("mamba_hidden_act");
  c.absent("mlp_bias", "its MLPs have no biases in Kiln");
  const has = (kind: string) => pattern.some((p) => p.mixer === kind);
  const moe = pattern.some((p) => p.ffn === "moe") ? expertFields(c) : undefined;
  const heads = c.positive("mamba_num_heads", 128), headDim = c.positive("mamba_head_dim", 64);
  const inner = heads * headDim;
  if (inner > MAX_CONFIG_INT) {
    throw new RangeError(`${c.file}: mamba_num_heads × mamba_head_dim is ${inner}, too large`);
  }
  // transformers 4's names for the same fields (NemotronHConfig still reads them).
  const alias = (name: string, old: string, fb: number) =>
    c.has(old) ? c.positive(old) : c.positive(name, fb);
  const groups = alias("n_groups", "mamba_n_groups", 8);
  if (heads % groups !== 0) {
    throw new RangeError(
      `${c.file}: mamba_num_heads ${heads} must be a multiple of n_groups ${groups}`,
    );
  }
  // Kiln's own `kiln_dt_floor` (a GGUF file's: llama.cpp's scan has none) overrides the floor.
  const dtMin = c.has("kiln_dt_floor")
    ? c.nonNegative("kiln_dt_floor")
    : c.has("mamba_dt_min")
    ? c.num("mamba_dt_min")
    : c.num("time_step_min", 0.001);
  // NemotronHAttention: no RoPE, and no biases whatever attention_bias says.
  const attention = has("attention")
    ? attentionFields(cc, base.hidden, { ropeTheta: null, kvHeads: 8 })
    : undefined;
  return {
    architecture: "NemotronHForCausalLM",
    ...convAct,
    ...base,
    intermediate: c.positive("intermediate_size", 21504),
    mlpActivation: "relu2",
    ...(moe ? { moe } : {}),
    normEps: c.nonNegative("layer_norm_epsilon", 1e-5),
    // NemotronHForCausalLM ties nothing (`_tied_weights_keys = {}`), whatever the flag says.
    tieEmbeddings: false,
    pattern,
    attention,
    mamba: has("mamba")
      ? {
        stateSize: c.positive("ssm_state_size", 128),
        inner,
        convKernel: alias("conv_kernel", "mamba_d_conv", 4),
        dtRank: heads,
        projBias: c.bool("use_bias", false),
        convBias: c.has("mamba_conv_bias")
          ? c.bool("mamba_conv_bias", true)
          : c.bool("use_conv_bias", true),
        innerNorms: false,
        // Zamba2RMSNormGated with group_size I / n_groups; Δ ≥ time_step_min (prefill).
        ssd: { heads, headDim, groups, normGroups: groups, dtLimit: [dtMin, Infinity] },
        dtInit: { ...dtRange(c), scale: 1, scheme: "random" },
      }
      : undefined,
  };
}

/**
 * The routed experts of the `moe` blocks (NemotronHMoE): NemotronHConfig's
 * defaults, DeepSeek-V3's router, relu² experts (`mlp_hidden_act`, checked
 * above) and the shared expert's own width.
 */
function expertFields(c: ConfigReader): MoeConfig {
  const raw = c.raw("moe_latent_size");
  const latent = raw === undefined || raw === null ? 0 : c.positive("moe_latent_size");
  // NemotronHConfig maps num_local_experts onto n_routed_experts (its attribute_map).
  const field = !c.has("n_routed_experts") && c.has("num_local_experts")
    ? "num_local_experts"
    : "n_routed_experts";
  const experts = c.positive(field, 8);
  // NemotronHMLP takes `intermediate_size or config.intermediate_size`: 0 means the MLP width.
  const shared = c.int("moe_shared_expert_intermediate_size", 7688) ||
    c.positive("intermediate_size", 21504);
  return {
    // Balanced by its selection bias: transformers adds no load-balancing loss.
    ...moeFields(c, field, {
      normTopk: c.bool("norm_topk_prob", true),
      experts,
      topK: 2,
      auxLossCoef: 0,
    }),
    router: "sigmoid_bias",
    routedScaling: c.num("routed_scaling_factor", 1),
    ...groupLimitFields(c, experts, c.positive("n_group", 1), c.positive("topk_group", 1)),
    ff: c.positive("moe_intermediate_size", 7688),
    sharedExpert: { ff: shared, gated: false },
    activation: { kind: "relu2" },
    ...(latent > 0 ? { latent } : {}),
  };
}

/**
 * The Nemotron-H spec.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS } from "@kiln/kiln";
 * ARCHITECTURE_SPECS.NemotronHForCausalLM.layout.mlp; // "mixer"
 * ```
 */
export const nemotronH: ArchitectureSpec = {
  architecture: "NemotronHForCausalLM",
  modelType: "nemotron_h",
  summary: "blocks of one kind each: Mamba-2 (grouped gated norm), attention without RoPE, " +
    "a relu² MLP or relu² routed experts (DeepSeek-V3's router) with a shared expert, " +
    "by layers_block_type",
  layout: {
    embed: "backbone.embeddings",
    finalNorm: "backbone.norm_f",
    lmHead: "lm_head",
    layers: "backbone.layers",
    // One norm and one `mixer` module a block, whatever its kind.
    mixerNorm: "norm",
    ffnNorm: "norm",
    attention: "mixer",
    mamba: "mixer",
    mlp: "mixer",
    mlpNames: { gate: "", up: "up_proj", down: "down_proj" },
    moe: "mixer",
    router: "gate",
    experts: "experts",
    expertNames: { gate: "", up: "up_proj", down: "down_proj" },
    shared: { expert: "mixer.shared_experts", gate: "" },
    moeLatent: { down: "fc1_latent_proj", up: "fc2_latent_proj" },
  },
  parse: nemotronFields,
  // Multi-token-prediction layers (num_nextn_predict_layers > 0): transformers skips them too.
  ignoredTensors: /^mtp\./,
};
