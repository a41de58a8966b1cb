/**
 * Config fields that several families share (sizes, token ids, attention,
 * routing), read the same way for each so one field means one thing.
 *
 * @module
 */

import type { AttentionConfig, LayerSpec, MoeConfig } from "../config.ts";
import { readRopeSettings } from "../rope_scaling.ts";
import { type ConfigReader, show } from "./reader.ts";
import type { CheckpointLayout } from "./spec.ts";

const NO_SWIGLU = { gate: "", up: "", down: "" } as const;

/**
 * The Llama-style decoder layout most families share (`model.layers.N` with
 * `input_layernorm`, `self_attn`, `post_attention_layernorm`; `model.norm`,
 * `lm_head`); each spec overrides what differs, e.g. where its MoE block sits.
 *
 * @example
 * ```ts
 * import { DECODER_LAYOUT } from "./common.ts";
 * const olmoe = { ...DECODER_LAYOUT, moe: "mlp", router: "gate" };
 * ```
 */
export const DECODER_LAYOUT: CheckpointLayout = {
  embed: "model.embed_tokens",
  finalNorm: "model.norm",
  lmHead: "lm_head",
  layers: "model.layers",
  mixerNorm: "input_layernorm",
  ffnNorm: "post_attention_layernorm",
  attention: "self_attn",
  mamba: "",
  mlp: "",
  mlpNames: NO_SWIGLU,
  moe: "",
  router: "",
  experts: "experts",
  expertNames: { gate: "gate_proj", up: "up_proj", down: "down_proj" },
};

/**
 * The Qwen MoE families' names: dense and sparse FFNs both under `mlp`
 * (`gate_proj`/`up_proj`/`down_proj`), the router `mlp.gate`.
 *
 * @example
 * ```ts
 * import { QWEN_MOE_LAYOUT } from "./common.ts";
 * QWEN_MOE_LAYOUT.router; // "gate"
 * ```
 */
export const QWEN_MOE_LAYOUT: CheckpointLayout = {
  ...DECODER_LAYOUT,
  mlp: "mlp",
  mlpNames: { gate: "gate_proj", up: "up_proj", down: "down_proj" },
  moe: "mlp",
  router: "gate",
};

/** Sizes and token ids every family has. */
export interface BaseFields {
  /** `vocab_size`. */
  vocabSize: number;
  /** `hidden_size`. */
  hidden: number;
  /** `num_hidden_layers`. */
  layers: number;
  /** `eos_token_id` (one or several). */
  eosTokenIds: number[];
  /** `bos_token_id`. */
  bosTokenId?: number;
  /** `max_position_embeddings`. */
  maxPositions?: number;
}

/**
 * Most layers a config may ask for: the layer pattern is built eagerly, so a
 * corrupt count must be refused before it is allocated (real models have < 200).
 *
 * @example
 * ```ts
 * import { MAX_LAYERS } from "./common.ts";
 * MAX_LAYERS; // 65536
 * ```
 */
export const MAX_LAYERS = 65536;

/**
 * A token id field: one id or a list of them (`eos_token_id`); null for none,
 * absent for the class's default (`fallback`), as a transformers config class
 * fills in the keys a config.json leaves out.
 */
function ids(c: ConfigReader, name: string, fallback?: number): number[] {
  if (!Object.hasOwn(c.json, name)) return fallback === undefined ? [] : [fallback];
  return tokenIdList(c.raw(name), c.file, name);
}

/**
 * A token id field's value (`eos_token_id` of config.json or
 * generation_config.json): one id or a list of them, null or undefined for
 * none; anything else a TypeError naming the file and field.
 *
 * @example
 * ```ts
 * import { tokenIdList } from "./common.ts";
 * tokenIdList([2, 7], "generation_config.json", "eos_token_id"); // [2, 7]
 * tokenIdList(null, "config.json", "eos_token_id"); // []
 * ```
 */
export function tokenIdList(v: unknown, file: string, name: string): number[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  // An id that is not a non-negative integer would never match a sampled token:
  // generation would silently run past the end of every answer.
  if (!list.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
    throw new TypeError(
      `${file}: field "${name}" must be a token id or a list of them, got ${show(v)}`,
    );
  }
  return list as number[];
}

/**
 * A config class's token ids when config.json leaves them out (transformers'
 * `bos_token_id` / `eos_token_id` defaults; none where the class has none).
 *
 * @example
 * ```ts
 * import type { TokenIdDefaults } from "./common.ts";
 * const mixtral: TokenIdDefaults = { bos: 1, eos: 2 };
 * ```
 */
export interface TokenIdDefaults {
  /** Default `bos_token_id`. */
  readonly bos?: number;
  /** Default `eos_token_id`. */
  readonly eos?: number;
}

/**
 * Reads the sizes and token ids every family has; an absent token id takes
 * the class's default from `tokenIds` (an explicit null: none).
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { baseFields } from "./common.ts";
 * const c = new ConfigReader({ vocab_size: 64, hidden_size: 32, num_hidden_layers: 2 }, "config.json", "x");
 * baseFields(c).hidden; // 32
 * ```
 */
export function baseFields(c: ConfigReader, tokenIds: TokenIdDefaults = {}): BaseFields {
  const hidden = c.int("hidden_size");
  const layers = c.int("num_hidden_layers");
  const vocabSize = c.int("vocab_size");
  if (hidden === 0 || layers === 0 || vocabSize === 0) {
    throw new RangeError(`${c.file}: hidden_size, num_hidden_layers and vocab_size must be > 0`);
  }
  if (layers > MAX_LAYERS) {
    throw new RangeError(
      `${c.file}: field "num_hidden_layers" is ${layers}, over the limit of ${MAX_LAYERS}`,
    );
  }
  const bos = c.has("bos_token_id")
    ? c.int("bos_token_id")
    : Object.hasOwn(c.json, "bos_token_id")
    ? undefined
    : tokenIds.bos;
  return {
    vocabSize,
    hidden,
    layers,
    eosTokenIds: ids(c, "eos_token_id", tokenIds.eos),
    bosTokenId: bos,
    maxPositions: c.has("max_position_embeddings") ? c.int("max_position_embeddings") : undefined,
  };
}

/**
 * The embedding's `padding_idx`: `pad_token_id` (absent: the config class's
 * default `classDefault`) when it names a row of the table (transformers
 * passes it to `nn.Embedding` in the Llama-style families).
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { paddingIdxField } from "./common.ts";
 * paddingIdxField(new ConfigReader({ pad_token_id: 0 }, "config.json", "x"), 32); // 0
 * ```
 */
export function paddingIdxField(
  c: ConfigReader,
  vocabSize: number,
  classDefault?: number,
): number | undefined {
  // Absent: the config class's default (Jamba 0, OLMoE 1); an explicit null: none.
  if (!Object.hasOwn(c.json, "pad_token_id")) {
    return classDefault !== undefined && classDefault < vocabSize ? classDefault : undefined;
  }
  const pad = c.raw("pad_token_id");
  if (typeof pad !== "number" || !Number.isSafeInteger(pad)) return undefined;
  // nn.Embedding counts a negative padding_idx from the end; out of range, it refuses
  // the model (transformers cannot build it): Kiln still runs it, with no padding row.
  if (pad < 0) return pad >= -vocabSize ? vocabSize + pad : undefined;
  return pad < vocabSize ? pad : undefined;
}

/** Options of {@linkcode attentionFields}. */
export interface AttentionFieldOptions {
  /** The family's default `rope_theta`, or `null` for no rotary embedding (Jamba). */
  ropeTheta: number | null;
  /** Sliding window for every layer (0: none). */
  slidingWindow?: number;
  /** q/k/v biases. */
  qkvBias?: boolean;
  /** o_proj bias. */
  outBias?: boolean;
  /** QK-norm: over the whole projections (OLMoE) or per head (Qwen3-MoE). */
  qkNorm?: boolean | "head";
  /** OLMoE's clip_qkv. */
  clipQkv?: number;
  /**
   * A family that rotates part of each head: its `partial_rotary_factor` when
   * the config gives none (Bamba 0.5). Absent: a factor below 1 is refused.
   */
  partialRotary?: number;
  /**
   * The class's `num_key_value_heads` when the field is absent (Mixtral and
   * Jamba 8, Qwen2-MoE 16); an explicit null, or a class without one (OLMoE),
   * means as many as the query heads, as transformers resolves them.
   */
  kvHeads?: number;
  /**
   * The class's `head_dim` when the field is absent (GPT-OSS 64); an explicit
   * null, or a family without one, means hidden / heads.
   */
  headDim?: number;
}

/**
 * Reads heads, head size and RoPE (both config generations) into an
 * {@linkcode AttentionConfig}.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { attentionFields } from "./common.ts";
 * const c = new ConfigReader({ num_attention_heads: 4, rope_parameters: { rope_theta: 1e4 } }, "config.json", "x");
 * attentionFields(c, 32, { ropeTheta: 1e6 }).ropeTheta; // 10000
 * ```
 */
export function attentionFields(
  c: ConfigReader,
  hidden: number,
  o: AttentionFieldOptions,
): AttentionConfig {
  const heads = c.int("num_attention_heads");
  const absent = !Object.hasOwn(c.json, "num_key_value_heads");
  const kvHeads = c.int("num_key_value_heads", absent ? o.kvHeads ?? heads : heads);
  if (heads === 0) throw new RangeError(`${c.file}: num_attention_heads must be > 0`);
  if (kvHeads === 0 || heads % kvHeads !== 0) {
    throw new RangeError(
      `${c.file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
    );
  }
  let headDim: number;
  if (c.has("head_dim")) {
    headDim = c.positive("head_dim");
  } else if (o.headDim !== undefined && !Object.hasOwn(c.json, "head_dim")) {
    headDim = o.headDim;
  } else if (hidden % heads !== 0) {
    throw new RangeError(
      `${c.file}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`,
    );
  } else {
    headDim = hidden / heads;
  }
  const rope = o.ropeTheta === null
    ? undefined
    : readRopeSettings(c.json, c.file, o.ropeTheta, { partial: o.partialRotary !== undefined });
  if (rope && headDim % 2 !== 0) {
    throw new RangeError(`${c.file}: RoPE needs an even head size, got head_dim ${headDim}`);
  }
  // transformers spreads the frequencies over dim = int(head_dim · partial_rotary_factor)
  // (θ^(−2i/dim), i < ⌈dim/2⌉) and rotates the 2·⌈dim/2⌉ values cos and sin cover.
  const dim = rope && Math.floor(headDim * (rope.partial ?? o.partialRotary ?? 1));
  if (dim !== undefined && dim < 1) {
    throw new RangeError(
      `${c.file}: partial_rotary_factor ${rope!.partial ?? o.partialRotary} of head_dim ` +
        `${headDim} rotates no values`,
    );
  }
  const rotaryDim = dim && 2 * Math.ceil(dim / 2);
  return {
    heads,
    kvHeads,
    headDim,
    ropeTheta: rope?.theta ?? 0,
    slidingWindow: o.slidingWindow ?? 0,
    ...(rope && rope.type !== "default" ? { rope } : {}),
    qkvBias: o.qkvBias ?? false,
    outBias: o.outBias ?? false,
    qkNorm: o.qkNorm !== undefined && o.qkNorm !== false,
    ...(o.qkNorm === "head" ? { qkNormPerHead: true } : {}),
    clipQkv: o.clipQkv ?? 0,
    ...(rotaryDim !== undefined && rotaryDim !== headDim ? { rotaryDim } : {}),
    ...(dim !== undefined && dim % 2 !== 0 ? { ropeFreqDim: dim } : {}),
  };
}

/**
 * Refuses attention features a family's spec does not have, should a config
 * ask for them (a fine-tune's config with extra switches means another model).
 *
 * @example
 * ```ts ignore
 * refuseAttentionExtras(c, { bias: "Mixtral's projections have no biases" });
 * ```
 */
export function refuseAttentionExtras(c: ConfigReader, why: { bias: string }): void {
  c.absent("attention_bias", why.bias);
  c.absent("mlp_bias", "its MLPs have no biases");
  for (const f of ["qk_norm", "use_qk_norm", "qk_layernorm"]) c.absent(f, "it has no QK-norm");
  c.absent("attn_logit_softcapping", "attention logits are not soft-capped");
  c.absent("final_logit_softcapping", "logits are not soft-capped");
}

/**
 * Sliding window from `sliding_window` (null, 0 or absent: none).
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { slidingWindowField } from "./common.ts";
 * slidingWindowField(new ConfigReader({ sliding_window: null }, "config.json", "x")); // 0
 * ```
 */
export function slidingWindowField(c: ConfigReader): number {
  return c.has("sliding_window") ? c.int("sliding_window") : 0;
}

/**
 * Per-layer sliding windows from transformers 5's `layer_types`
 * (`"full_attention"` / `"sliding_attention"`), checked against the layer count.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { layerWindows } from "./common.ts";
 * const c = new ConfigReader({ layer_types: ["full_attention", "sliding_attention"] }, "config.json", "x");
 * layerWindows(c, 2, 16); // [0, 16]
 * ```
 */
export function layerWindows(
  c: ConfigReader,
  layers: number,
  window: number,
): number[] | undefined {
  const types = c.strList("layer_types");
  if (!types) return undefined;
  if (types.length !== layers) {
    throw new RangeError(
      `${c.file}: layer_types has ${types.length} entries, num_hidden_layers is ${layers}`,
    );
  }
  return types.map((t, i) => {
    // transformers 5's remap_legacy_layer_types reads "attention" as "full_attention".
    if (t === "full_attention" || t === "attention") return 0;
    if (t === "sliding_attention") {
      if (window <= 0) {
        throw new RangeError(
          `${c.file}: layer_types[${i}] is "sliding_attention" but sliding_window is not set`,
        );
      }
      return window;
    }
    throw new TypeError(
      `${c.file}: layer_types[${i}] ${show(t)} is not supported by ${c.architecture} ` +
        '(only "full_attention" and "sliding_attention")',
    );
  });
}

/**
 * Experts, top-k and routing options; `router_aux_loss_coef` defaults to the
 * class's value (`auxLossCoef`, 0.001 unless given).
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { moeFields } from "./common.ts";
 * const c = new ConfigReader({ num_local_experts: 8, num_experts_per_tok: 2 }, "config.json", "x");
 * moeFields(c, "num_local_experts", { normTopk: true }).topK; // 2
 * ```
 */
export function moeFields(
  c: ConfigReader,
  expertsField: string,
  o: { normTopk: boolean; experts?: number; topK?: number; auxLossCoef?: number },
): MoeConfig {
  const experts = c.int(expertsField, o.experts);
  const topK = c.int("num_experts_per_tok", o.topK);
  if (topK < 1 || topK > experts) {
    throw new RangeError(
      `${c.file}: num_experts_per_tok ${topK} must be between 1 and ${expertsField} ${experts}`,
    );
  }
  return {
    experts,
    topK,
    normTopk: o.normTopk,
    auxLossCoef: c.num("router_aux_loss_coef", o.auxLossCoef ?? 0.001),
  };
}

/**
 * Δ's projection rank: `"auto"` (or absent) is ⌈hidden / 16⌉, as the Mamba and
 * Jamba config classes resolve it.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { dtRankField } from "./common.ts";
 * dtRankField(new ConfigReader({ time_step_rank: "auto" }, "config.json", "x"), "time_step_rank", 768); // 48
 * ```
 */
export function dtRankField(c: ConfigReader, name: string, hidden: number): number {
  const v = c.raw(name);
  if (v === undefined || v === "auto") return Math.ceil(hidden / 16);
  return c.positive(name);
}

/**
 * Layers that all have the same mixer and feed-forward.
 *
 * @example
 * ```ts
 * import { uniformLayers } from "./common.ts";
 * uniformLayers(2, "attention", "moe"); // [{ mixer: "attention", ffn: "moe" }, …]
 * ```
 */
export function uniformLayers(
  n: number,
  mixer: LayerSpec["mixer"],
  ffn: LayerSpec["ffn"],
): LayerSpec[] {
  return Array.from({ length: n }, () => ({ mixer, ffn }));
}

/**
 * `n_group` / `topk_group` (DeepSeek's group-limited routing) checked
 * against the experts and `num_experts_per_tok` (groups of at least `least`
 * experts: 2 for V3's two-best group score, 1 for V2's best): the `groups`
 * field of the MoE config, absent when every group is kept.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { groupLimitFields } from "./common.ts";
 * const c = new ConfigReader({ num_experts_per_tok: 4 }, "config.json", "x");
 * groupLimitFields(c, 16, 4, 2).groups; // { count: 4, kept: 2 }
 * ```
 */
export function groupLimitFields(
  c: ConfigReader,
  experts: number,
  groups: number,
  kept: number,
  least = 2,
): { groups?: { count: number; kept: number } } {
  if (kept > groups) {
    throw new RangeError(`${c.file}: field "topk_group" (${kept}) exceeds "n_group" (${groups})`);
  }
  if (kept === groups) return {};
  if (experts % groups !== 0 || experts / groups < least) {
    throw new RangeError(
      `${c.file}: field "n_group" (${groups}) must split the ${experts} experts into equal ` +
        (least > 1 ? "groups of at least 2 (a group is scored by its two best experts)" : "groups"),
    );
  }
  const topK = c.int("num_experts_per_tok", 8);
  if (topK > kept * (experts / groups)) {
    throw new RangeError(
      `${c.file}: field "num_experts_per_tok" (${topK}) exceeds the ${
        kept * (experts / groups)
      } experts of the ${kept} groups kept ("topk_group")`,
    );
  }
  return { groups: { count: groups, kept } };
}

/**
 * The layer pattern and experts of a DeepSeek-style MoE family (GLM-4.5,
 * DeepSeek-V3; V2 with `softmax`: softmax probabilities, unnormalised, no
 * bias, groups scored by their best): dense SwiGLU layers below
 * `first_k_dense_replace`, then routed experts chosen by sigmoid affinity
 * plus a selection bias, within the
 * best `topk_group` of `n_group` groups, renormalised by `norm_topk_prob` and
 * scaled by `routed_scaling_factor`, beside `n_shared_experts` always-on
 * experts in one SwiGLU; the multi-token-prediction layers a checkpoint holds
 * after the last layer (`num_nextn_predict_layers`) are counted, not run.
 * `o` holds the config class's defaults.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { sigmoidMoeFields } from "./common.ts";
 * const c = new ConfigReader({ n_routed_experts: 8, num_experts_per_tok: 2 }, "config.json", "x");
 * const o = { experts: 128, topK: 8, dense: 1, ff: 1408, scaling: 1, groups: 1, kept: 1 };
 * sigmoidMoeFields(c, 3, o).pattern.map((p) => p.ffn); // ["mlp", "moe", "moe"]
 * ```
 */
export function sigmoidMoeFields(
  c: ConfigReader,
  layers: number,
  o: {
    experts: number;
    topK: number;
    dense: number;
    ff: number;
    scaling: number;
    groups: number;
    kept: number;
    /** DeepSeek-V2: softmax routing, never renormalised, no selection bias. */
    softmax?: boolean;
    /** Shared experts when the config gives none (default 1). */
    shared?: number;
    /** Read `n_group` / `topk_group` (default true; false: `groups` and `kept` as given). */
    readGroups?: boolean;
    /** `norm_topk_prob` when the config gives none (default true). */
    normTopk?: boolean;
  },
): { pattern: LayerSpec[]; moe: MoeConfig | undefined; extraLayers: number } {
  // Both classes map num_local_experts onto n_routed_experts (their attribute_map).
  const field = !c.has("n_routed_experts") && c.has("num_local_experts")
    ? "num_local_experts"
    : "n_routed_experts";
  const experts = c.int(field, o.experts);
  const dense = c.int("first_k_dense_replace", o.dense);
  const pattern: LayerSpec[] = Array.from({ length: layers }, (_, i) => ({
    mixer: "attention",
    ffn: i >= dense && experts > 0 ? "moe" : "mlp",
  }));
  // DeepSeek-V2's "greedy" routing ignores the group fields a config may hold.
  const read = o.readGroups ?? true;
  const groups = read ? c.positive("n_group", o.groups) : o.groups;
  const kept = read ? c.positive("topk_group", o.kept) : o.kept;
  const ff = c.positive("moe_intermediate_size", o.ff);
  const shared = c.int("n_shared_experts", o.shared ?? 1);
  return {
    pattern,
    moe: pattern.some((p) => p.ffn === "moe")
      ? {
        // Balanced by its selection bias (V3), or by losses transformers does not add (V2).
        ...moeFields(c, field, {
          normTopk: o.softmax ? false : c.bool("norm_topk_prob", o.normTopk ?? true),
          experts: o.experts,
          topK: o.topK,
          auxLossCoef: 0,
        }),
        router: o.softmax ? "softmax_topk" : "sigmoid_bias",
        routedScaling: c.num("routed_scaling_factor", o.scaling),
        ...groupLimitFields(c, experts, groups, kept, o.softmax ? 1 : 2),
        ff,
        ...(shared > 0 ? { sharedExpert: { ff: ff * shared, gated: false } } : {}),
      }
      : undefined,
    extraLayers: c.int("num_nextn_predict_layers", c.int("num_mtp_layers", 1)),
  };
}
