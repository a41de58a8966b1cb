/**
 * The recurrent mixers' part of a parsed config: Mamba's, Mamba-2's and Gated
 * DeltaNet's settings (`ModelConfig.mamba`), re-exported by `config.ts`.
 *
 * @module
 */

/**
 * Mamba mixer settings (Mamba, Jamba).
 *
 * @example
 * ```ts
 * import { type MambaConfig, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const m: MambaConfig = cfg.mamba!;
 * [m.stateSize, m.inner, m.convKernel]; // [4, 64, 4]
 * ```
 */
export interface MambaConfig {
  /** SSM state size N. */
  readonly stateSize: number;
  /** Inner width I = expand · hidden. */
  readonly inner: number;
  /** Causal conv kernel width. */
  readonly convKernel: number;
  /** Rank of Δ's projection. */
  readonly dtRank: number;
  /** in_proj/out_proj have biases. */
  readonly projBias: boolean;
  /** out_proj has a bias, when it differs from in_proj (Falcon-H1's `projectors_bias`). */
  readonly outProjBias?: boolean;
  /** conv1d has a bias. */
  readonly convBias: boolean;
  /** RMSNorms on Δ, B and C inside the mixer (Jamba; Falcon-Mamba's without weights). */
  readonly innerNorms: boolean;
  /** The inner norms have no weights, and this epsilon (Falcon-Mamba's `mixer_rms_eps`). */
  readonly weightlessNorms?: { readonly eps: number };
  /** A Mamba-2 (SSD) mixer: heads with one scalar A and Δ each, B and C per group. */
  readonly ssd?: MambaSsdConfig;
  /**
   * A Gated DeltaNet mixer instead (Qwen3-Next's `linear_attention` layers;
   * `stateSize`, `inner` and `dtRank` then describe its state: dk, Hv·dv, Hv).
   */
  readonly gatedDelta?: GatedDeltaConfig;
  /**
   * LFM2's short convolution instead (its `"conv"` layers: `stateSize` 1,
   * `inner` the model width; `bias` is `conv_bias`).
   */
  readonly shortConv?: { readonly bias: boolean };
  /**
   * How Δ's bias is initialised (`time_step_min`, `_max`, `_floor`, `_scale`,
   * `_init_scheme`): used by fresh initialisation only, never by a forward pass.
   */
  readonly dtInit?: {
    readonly min: number;
    readonly max: number;
    readonly floor: number;
    readonly scale: number;
    readonly scheme: "random" | "constant";
  };
}

/**
 * The Gated DeltaNet fields of a {@linkcode MambaConfig} (HF `Qwen3NextConfig`
 * names in comments).
 *
 * @example
 * ```ts
 * import type { GatedDeltaConfig } from "@kiln/kiln";
 * const qwen3Next: GatedDeltaConfig = { keyHeads: 16, valueHeads: 32, keyDim: 128, valueDim: 128 };
 * ```
 */
export interface GatedDeltaConfig {
  /** Query/key heads (`linear_num_key_heads`). */
  readonly keyHeads: number;
  /** Value heads (`linear_num_value_heads`), a multiple of `keyHeads`. */
  readonly valueHeads: number;
  /** Key head size (`linear_key_head_dim`). */
  readonly keyDim: number;
  /** Value head size (`linear_value_head_dim`). */
  readonly valueDim: number;
  /** Qwen3.5's separate `in_proj_qkv` / `in_proj_z` / `in_proj_b` / `in_proj_a`. */
  readonly split?: boolean;
}

/**
 * The Mamba-2 fields of a {@linkcode MambaConfig} (HF `Mamba2Config` names in comments).
 *
 * @example
 * ```ts
 * import { type MambaSsdConfig } from "@kiln/kiln";
 * const ssd: MambaSsdConfig = { heads: 24, headDim: 64, groups: 1, normGroups: 1, dtLimit: [0, Infinity] };
 * ```
 */
export interface MambaSsdConfig {
  /** Heads H (`num_heads`); the inner width is H·`headDim`. */
  readonly heads: number;
  /** Channels a head P (`head_dim`). */
  readonly headDim: number;
  /** Groups sharing B and C (`n_groups`). */
  readonly groups: number;
  /**
   * Groups of the gated RMSNorm before out_proj: 1 for a Hugging Face checkpoint
   * (transformers normalises all channels together), `groups` for a GGUF file
   * (llama.cpp and mamba_ssm normalise each group).
   */
  readonly normGroups: number;
  /** Δ clamped to [lo, hi] after the softplus (`time_step_limit`). */
  readonly dtLimit: readonly [number, number];
  /**
   * How the silu(z) gate and the RMSNorm before out_proj combine: absent or
   * `"gate_first"`, gate then norm (transformers' `MambaRMSNormGated`);
   * `"norm_first"`, norm then gate (Falcon-H1's `mamba_norm_before_gate`);
   * `"gate_only"`, no norm (Falcon-H1 without `mamba_rms_norm`).
   */
  readonly gatedNorm?: "gate_first" | "norm_first" | "gate_only";
  /** Factor on the mixer's input before in_proj (Falcon-H1's `ssm_in_multiplier`). */
  readonly inScale?: number;
  /**
   * Factors on in_proj's z, x, B, C and Δ outputs (Falcon-H1's μP
   * `ssm_multipliers`, in that order).
   */
  readonly projScale?: readonly [number, number, number, number, number];
}
