/**
 * What Kiln knows about one model family, in one place: how its config.json is
 * read and checked, and where its tensors sit in a Hugging Face checkpoint. The
 * graph builder, the loader, the expert scheduler and the CLI ask the spec;
 * nothing else branches on the architecture's name.
 *
 * @module
 */

import type { Architecture, ModelConfig } from "../config.ts";
import type { ConfigReader } from "./reader.ts";

/** The projections of a SwiGLU block, as the checkpoint names them. */
export interface SwigluNames {
  /** Goes through silu (Mixtral `w1`, others `gate_proj`). */
  readonly gate: string;
  /** Multiplies the gate (Mixtral `w3`, others `up_proj`). */
  readonly up: string;
  /** Back to the model width (Mixtral `w2`, others `down_proj`). */
  readonly down: string;
}

/**
 * Where a family's tensors sit in its Hugging Face checkpoint. Names are
 * relative to `layers.N` unless they say otherwise; every weight is
 * `<name>.weight` (and `<name>.bias` where the config asks for biases).
 *
 * @example
 * ```ts
 * import type { CheckpointLayout } from "@kiln/kiln";
 * const mixtral: CheckpointLayout = {
 *   embed: "model.embed_tokens", finalNorm: "model.norm", lmHead: "lm_head",
 *   layers: "model.layers", mixerNorm: "input_layernorm", ffnNorm: "post_attention_layernorm",
 *   attention: "self_attn", mamba: "", mlp: "", mlpNames: { gate: "w1", up: "w3", down: "w2" },
 *   moe: "block_sparse_moe", router: "gate", experts: "experts",
 *   expertNames: { gate: "w1", up: "w3", down: "w2" },
 * };
 * ```
 */
export interface CheckpointLayout {
  /** Token embedding (absolute). */
  readonly embed: string;
  /** Final RMSNorm (absolute). */
  readonly finalNorm: string;
  /** Output projection when not tied (absolute). */
  readonly lmHead: string;
  /** Prefix of the layer list (absolute): layer i is `${layers}.${i}`. */
  readonly layers: string;
  /** RMSNorm before the mixer. */
  readonly mixerNorm: string;
  /** RMSNorm before the feed-forward ("" for families without one). */
  readonly ffnNorm: string;
  /** Attention block. */
  readonly attention: string;
  /** Mamba mixer. */
  readonly mamba: string;
  /** Dense SwiGLU MLP. */
  readonly mlp: string;
  /** Projections of the dense MLP. */
  readonly mlpNames: SwigluNames;
  /** Sparse MoE block. */
  readonly moe: string;
  /** The router's Linear inside the MoE block. */
  readonly router: string;
  /** The expert list inside the MoE block: expert e is `${experts}.${e}`. */
  readonly experts: string;
  /** Projections of one expert. */
  readonly expertNames: SwigluNames;
  /**
   * The shared expert (relative to the layer, as the dense MLP) and, when the
   * config gates it, its sigmoid gate (Qwen2-MoE `mlp.shared_expert`,
   * `mlp.shared_expert_gate`; Granite's ungated `shared_mlp`).
   */
  readonly shared?: { readonly expert: string; readonly gate: string };
  /**
   * The experts' biases, each one tensor `[E, width]` inside the expert list
   * (GPT-OSS: the gate and up halves of `gate_up_proj_bias`, `down_proj_bias`).
   */
  readonly expertBiases?: SwigluNames;
  /**
   * The Linear layers (inside the MoE block) around the experts of a config
   * with latent experts (Nemotron 3's `fc1_latent_proj`, `fc2_latent_proj`):
   * `down` to the experts' width, `up` back to the model's.
   */
  readonly moeLatent?: { readonly down: string; readonly up: string };
  /**
   * The expert selection bias inside the MoE block, for routers with one, and
   * how it is stored: `[E]`, or `[1, E]` (`row`). Absent:
   * `${router}.e_score_correction_bias`, `[E]` (DeepSeek-V3, GLM-4.5). ERNIE
   * 4.5: `moe_statics.e_score_correction_bias`, `[1, E]`.
   */
  readonly selectionBias?: { readonly name: string; readonly row: boolean };
  /**
   * The QK-norm weights inside the attention block (absent: `q_norm`,
   * `k_norm`; Hunyuan-A13B: `query_layernorm`, `key_layernorm`).
   */
  readonly qkNorm?: { readonly q: string; readonly k: string };
  /** The attention's output projection inside the block (absent: `o_proj`; LFM2: `out_proj`). */
  readonly attentionOut?: string;
}

/**
 * A checkpoint tensor that holds several of the tensors Kiln reads, one after
 * the other: its bytes are the parts' bytes in order, each part `partShape`
 * (Granite's `input_linear` holds each expert's gate rows then up rows).
 *
 * @example
 * ```ts
 * import type { FusedTensor } from "@kiln/kiln";
 * const sharedMlp: FusedTensor = {
 *   name: "model.layers.0.shared_mlp.input_linear.weight", shape: [2048, 1536],
 *   parts: ["model.layers.0.shared_mlp.gate_proj.weight", "model.layers.0.shared_mlp.up_proj.weight"],
 *   partShape: [1024, 1536],
 * };
 * ```
 */
export interface FusedTensor {
  /** The stored tensor's name. */
  readonly name: string;
  /** Its shape. */
  readonly shape: readonly number[];
  /** The names Kiln reads its parts by, in storage order. */
  readonly parts: readonly string[];
  /** The shape of every part. */
  readonly partShape: readonly number[];
  /** How the parts sit in it; absent: one after another. */
  readonly packing?: FusedPacking;
}

/**
 * Parts of a fused tensor that are not contiguous: the stored tensor is
 * `groups` blocks `[R, C·every]`; in each, part p is the `[R, C]` of columns
 * p, p + every, …, stored transposed when `transposed` (the part is then
 * `[C, R]`). Parts are listed group by group. GPT-OSS's experts: `gate_up_proj`
 * `[E, d, 2I]` is `{ groups: E, every: 2, transposed: true }`, parts gate₀,
 * up₀, gate₁, … each `[I, d]`.
 *
 * @example
 * ```ts
 * import type { FusedPacking } from "@kiln/kiln";
 * const gateUp: FusedPacking = { groups: 32, every: 2, transposed: true };
 * ```
 */
export interface FusedPacking {
  /** Blocks along the first axis (experts). */
  readonly groups: number;
  /** Parts interleaved column by column within a block. */
  readonly every: number;
  /** Each part is stored transposed. */
  readonly transposed: boolean;
}

/**
 * One model family: config parsing and checkpoint layout.
 *
 * @example
 * ```ts
 * import { ARCHITECTURE_SPECS, type ArchitectureSpec } from "@kiln/kiln";
 * const spec: ArchitectureSpec = ARCHITECTURE_SPECS.MambaForCausalLM;
 * spec.modelType; // "mamba"
 * ```
 */
export interface ArchitectureSpec {
  /** The class name config.json lists under `architectures`. */
  readonly architecture: Architecture;
  /** config.json's `model_type`. */
  readonly modelType: string;
  /** One line on what the family is. */
  readonly summary: string;
  /** Tensor names. */
  readonly layout: CheckpointLayout;
  /**
   * Reads and validates a config.json of this family (both transformers 4 and
   * 5 layouts), refusing settings Kiln does not implement.
   */
  parse(c: ConfigReader): ModelConfig;
  /**
   * The checkpoint tensors this config stores fused (absent: none). Readers
   * present their parts instead, and writers join the parts back.
   */
  fused?(cfg: ModelConfig): FusedTensor[];
  /**
   * Checkpoint tensors the family's transformers class skips when it loads
   * (`_keys_to_ignore_on_load_unexpected`: Nemotron 3's multi-token-prediction
   * `mtp.*`): present in a checkpoint, never read. Absent: none.
   */
  readonly ignoredTensors?: RegExp;
  /**
   * Class names the family's published configs use for the same model where
   * they differ from transformers' (K-EXAONE's `ExaoneMoEForCausalLM`).
   */
  readonly aliases?: readonly string[];
}
