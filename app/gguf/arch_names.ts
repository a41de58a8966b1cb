/**
 * Which llama.cpp (GGUF) architecture each Kiln architecture is, and the
 * tensor table between the two checkpoint layouts: for a parsed config, every
 * GGUF tensor llama.cpp's `convert_hf_to_gguf.py` writes, its shape, the
 * Hugging Face tensors it holds and how their values were changed on the way.
 * Both directions — reading a GGUF as an HF checkpoint and writing a GGUF from
 * one — walk the same table, so a name or shape cannot drift between them.
 *
 * Facts taken from llama.cpp: tensor names from `gguf-py/gguf/constants.py`
 * (`TENSOR_NAMES`) and `tensor_mapping.py`; shapes from `src/models/*.cpp`
 * (`create_tensor` calls; ggml lists dimensions innermost first, the table
 * below lists them row-major, as the GGUF writer and PyTorch do); transforms
 * from `convert_hf_to_gguf.py` / `conversion/*.py` (`LlamaModel.permute` on
 * q/k for `llama`, `-torch.exp(A_log)` and the conv1d `squeeze()` for Mamba
 * and Jamba, experts stacked with `torch.stack(dim=0)`), and which tensors
 * stay f32 from `ModelBase.prepare_tensors` and `llama-quant.cpp`.
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import { expertWidth } from "../../models/config.ts";
import {
  expertTensor,
  layerPrefix,
  moePrefix,
  selectionBiasTensor,
  specOf,
} from "../../models/architectures/mod.ts";
import { routerHasBias } from "../../ops/moe/mod.ts";
import { nemotronFfnPlans } from "./arch_names_nemotron_h.ts";

export { permutedRowSource, permuteRows } from "./permute.ts";

/**
 * The GGUF `general.architecture` of each Kiln architecture that has one.
 *
 * @example
 * ```ts
 * import { GGUF_ARCH_OF } from "./arch_names.ts";
 * GGUF_ARCH_OF.MixtralForCausalLM; // "llama"
 * ```
 */
export const GGUF_ARCH_OF: Readonly<Record<string, string>> = {
  MixtralForCausalLM: "llama",
  MambaForCausalLM: "mamba",
  JambaForCausalLM: "jamba",
  Qwen2MoeForCausalLM: "qwen2moe",
  OlmoeForCausalLM: "olmoe",
  Qwen3MoeForCausalLM: "qwen3moe",
  FalconMambaForCausalLM: "mamba",
  Mamba2ForCausalLM: "mamba2",
  GraniteMoeHybridForCausalLM: "granitehybrid",
  // "nemotron_h_moe" when the config has routed-expert blocks (see ggufArchOf).
  NemotronHForCausalLM: "nemotron_h",
  GptOssForCausalLM: "gpt-oss",
  Glm4MoeForCausalLM: "glm4moe",
  // Read, not written (`arch_metadata.ts` refuses them).
  DeepseekV3ForCausalLM: "deepseek2",
  DeepseekV2ForCausalLM: "deepseek2",
  GraniteMoeForCausalLM: "granitemoe",
  GraniteMoeSharedForCausalLM: "granitemoe",
  Ernie4_5_MoeForCausalLM: "ernie4_5-moe",
  Ernie4_5ForCausalLM: "ernie4_5",
  Dots1ForCausalLM: "dots1",
  MiniMaxM2ForCausalLM: "minimax-m2",
  HunYuanMoEV1ForCausalLM: "hunyuan-moe",
  ExaoneMoeForCausalLM: "exaone-moe",
};

/**
 * Kiln architectures whose GGUF files Kiln reads but does not write (DeepSeek's
 * `deepseek2`: its converter splits `kv_b_proj` in ways Kiln has not written).
 *
 * @example
 * ```ts
 * import { GGUF_READ_ONLY } from "./arch_names.ts";
 * GGUF_READ_ONLY.has("DeepseekV3ForCausalLM"); // true
 * ```
 */
export const GGUF_READ_ONLY: ReadonlySet<string> = new Set([
  "DeepseekV3ForCausalLM",
  "DeepseekV2ForCausalLM",
]);

/**
 * The GGUF architectures Kiln reads, for messages.
 *
 * @example
 * ```ts
 * import { GGUF_ARCHITECTURES } from "./arch_names.ts";
 * GGUF_ARCHITECTURES.includes("jamba"); // true
 * ```
 */
export const GGUF_ARCHITECTURES: readonly string[] = [
  "llama",
  "mamba",
  "jamba",
  "qwen2moe",
  "olmoe",
  "qwen3moe",
  "mamba2",
  "granitehybrid",
  "granite",
  "gpt-oss",
  "glm4moe",
  "deepseek2",
  "granitemoe",
  "nemotron_h",
  "nemotron_h_moe",
  "ernie4_5",
  "ernie4_5-moe",
  "dots1",
  "minimax-m2",
  "hunyuan-moe",
  "exaone-moe",
];

/**
 * The GGUF `general.architecture` Kiln writes for a config: its
 * architecture's ({@linkcode GGUF_ARCH_OF}), except a Nemotron-H with routed
 * experts, which llama.cpp names `nemotron_h_moe`.
 *
 * @example
 * ```ts
 * import { parseConfig } from "../../models/architectures/mod.ts";
 * import { ggufArchOf } from "./arch_names.ts";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 1,
 * });
 * ggufArchOf(cfg); // "mamba"
 * ```
 */
export function ggufArchOf(cfg: ModelConfig): string {
  const arch = GGUF_ARCH_OF[cfg.architecture];
  return arch === "nemotron_h" && cfg.moe ? "nemotron_h_moe" : arch;
}

/**
 * How a GGUF tensor's values relate to the Hugging Face tensor(s) it holds:
 *
 * - `copy`: the same values in the same order (the shapes may differ only by
 *   axes of size 1: conv1d `[I, 1, k]` is stored `[I, k]`);
 * - `permute`: llama.cpp's RoPE row order for q/k (`LlamaModel.permute`):
 *   within each of `heads` heads, the rows of the two rotary halves are
 *   interleaved. Whole rows move, so it applies to any element type;
 * - `neg_exp`: GGUF holds A = −exp(A_log) (Mamba, Jamba), always f32.
 *
 * @example
 * ```ts
 * import type { GgufTransform } from "./arch_names.ts";
 * const q: GgufTransform = { kind: "permute", heads: 32 };
 * ```
 */
export type GgufTransform =
  | { readonly kind: "copy" }
  | { readonly kind: "permute"; readonly heads: number }
  | { readonly kind: "neg_exp" }
  | {
    /**
     * One half of latent attention's `kv_b_proj` `[heads·(nope + v), rank]`:
     * `attn_k_b` holds each head's first `nope` rows transposed
     * (`[heads, rank, nope]`), `attn_v_b` its last `v` rows (`[heads, v, rank]`).
     */
    readonly kind: "mla_kv_b";
    readonly part: "k" | "v";
    readonly heads: number;
    readonly nope: number;
    readonly v: number;
  };

/**
 * One GGUF tensor of a model and the Hugging Face tensors it holds.
 *
 * @example
 * ```ts
 * import type { GgufTensorPlan } from "./arch_names.ts";
 * const p: GgufTensorPlan = {
 *   name: "blk.0.ssm_a", shape: [64, 16], sources: ["backbone.layers.0.mixer.A_log"],
 *   sourceShape: [64, 16], transform: { kind: "neg_exp" }, keepF32: true,
 * };
 * ```
 */
export interface GgufTensorPlan {
  /** GGUF name (`blk.3.ffn_gate_exps.weight`). */
  readonly name: string;
  /** Row-major shape in the GGUF file (ggml's `ne` reversed). */
  readonly shape: readonly number[];
  /**
   * Hugging Face tensors it holds: one, or one per expert, stacked along a new
   * leading axis in this order (each a contiguous slice of the GGUF tensor).
   */
  readonly sources: readonly string[];
  /** Hugging Face shape of each source. */
  readonly sourceShape: readonly number[];
  /** How the values were changed on the way to GGUF. */
  readonly transform: GgufTransform;
  /** llama.cpp keeps it in f32 whatever the file type (norms, biases, routers, SSM A/D, conv1d). */
  readonly keepF32: boolean;
}

const COPY: GgufTransform = { kind: "copy" };

/**
 * Whether llama.cpp keeps GGUF tensor `name` in f32 whatever the requested
 * type: `convert_hf_to_gguf.py` writes 1-D tensors, `*_norm.weight`, the MoE
 * router `ffn_gate_inp`, `ssm_conv1d` and every tensor not named `*.weight`
 * (biases, `ssm_a`, `ssm_d`) as f32, and `llama-quantize` skips tensors with
 * one non-trivial dimension (ggml_n_dims ≤ 1, e.g. Qwen2-MoE's
 * `ffn_gate_inp_shexp`, stored `[1, H]`).
 *
 * @example
 * ```ts
 * import { keepsF32 } from "./arch_names.ts";
 * keepsF32("blk.0.ffn_gate_inp.weight", [8, 4096]); // true
 * keepsF32("blk.0.attn_q.weight", [4096, 4096]); // false
 * ```
 */
export function keepsF32(name: string, shape: readonly number[]): boolean {
  if (!name.endsWith(".weight")) return true;
  if (shape.slice(0, -1).every((d) => d === 1)) return true;
  if (name.endsWith("_norm.weight")) return true;
  return /\.(ffn_gate_inp|ssm_conv1d)\.weight$/.test(name);
}

/**
 * A Mamba-2 mixer's GGUF tensors (llama.cpp's `mamba2`): A and D `[H, 1]`,
 * `dt_bias` as `ssm_dt.bias`, the gated norm's weight `[G, I/G]`, no
 * projection biases.
 */
function mamba2Plans(
  cfg: ModelConfig,
  M: string,
  b: string,
  add: (
    name: string,
    shape: number[],
    source: string,
    sourceShape?: number[],
    t?: GgufTransform,
  ) => void,
): void {
  const { inner: I, stateSize: N, convKernel: k, ssd } = cfg.mamba!;
  const { heads: Hh, groups: G } = ssd!;
  const conv = I + 2 * G * N;
  add(`${b}.ssm_in.weight`, [I + conv + Hh, cfg.hidden], `${M}.in_proj.weight`);
  // llama.cpp has no projection biases: the metadata refuses them; listed so the
  // refusal, not an unused-tensor error, is what a user reads.
  if (cfg.mamba!.projBias) add(`${b}.ssm_in.bias`, [I + conv + Hh], `${M}.in_proj.bias`);
  add(`${b}.ssm_conv1d.weight`, [conv, k], `${M}.conv1d.weight`, [conv, 1, k]);
  if (cfg.mamba!.convBias) add(`${b}.ssm_conv1d.bias`, [conv], `${M}.conv1d.bias`);
  add(`${b}.ssm_dt.bias`, [Hh], `${M}.dt_bias`);
  add(`${b}.ssm_a`, [Hh, 1], `${M}.A_log`, [Hh], { kind: "neg_exp" });
  add(`${b}.ssm_d`, [Hh, 1], `${M}.D`, [Hh]);
  add(`${b}.ssm_norm.weight`, [G, I / G], `${M}.norm.weight`, [I]);
  add(`${b}.ssm_out.weight`, [cfg.hidden, I], `${M}.out_proj.weight`);
  if (cfg.mamba!.projBias) add(`${b}.ssm_out.bias`, [cfg.hidden], `${M}.out_proj.bias`);
}

/**
 * Every GGUF tensor llama.cpp's converter writes for `cfg`, in layer order
 * (token_embd, each block, output_norm, output), with the Hugging Face tensors
 * each holds (names from the architecture's checkpoint layout).
 *
 * Notes on the less obvious entries: `llama` (Mixtral) q/k rows are in
 * llama.cpp's RoPE order (`permute` with the query heads for q, the KV heads for
 * k; biases too, should a config have them); stacked experts are `[E, ff, H]`
 * for gate/up and `[E, H, ff]` for down; conv1d is `[I, k]` (HF `[I, 1, k]`);
 * `ssm_a` and `ssm_d` have no `.weight` suffix; `output.weight` is absent when
 * the embeddings are tied. GPT-OSS (`gpt-oss`, NeoX RoPE: no permutation) adds
 * `attn_sinks.weight` `[heads]`, the router's `ffn_gate_inp.bias` `[E]` and the
 * experts' biases `ffn_{gate,up}_exps.bias` `[E, ff]` and `ffn_down_exps.bias`
 * `[E, H]` (each one HF tensor, as its checkpoint layout names them), and names
 * the norm before the experts `post_attention_norm`, not `ffn_norm`. GLM-4.5
 * (`glm4moe`, NeoX RoPE) names that norm the same way and adds the selection
 * bias `exp_probs_b.bias` `[E]` (HF `mlp.gate.e_score_correction_bias`).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../../models/architectures/mod.ts";
 * import { ggufTensorPlans } from "./arch_names.ts";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 1,
 * });
 * ggufTensorPlans(cfg).map((p) => p.name).includes("blk.0.ssm_conv1d.weight"); // true
 * ```
 */
export function ggufTensorPlans(cfg: ModelConfig): GgufTensorPlan[] {
  const lay = specOf(cfg).layout;
  const H = cfg.hidden;
  const out: GgufTensorPlan[] = [];
  const add = (
    name: string,
    shape: number[],
    source: string,
    sourceShape: number[] = shape,
    transform: GgufTransform = COPY,
  ) =>
    out.push({
      name,
      shape,
      sources: [source],
      sourceShape,
      transform,
      keepF32: keepsF32(name, shape),
    });

  add("token_embd.weight", [cfg.vocabSize, H], `${lay.embed}.weight`);
  // Nemotron-H: every block's one norm is attn_norm; its MLP and expert blocks have no mixer.
  const nemotron = cfg.architecture === "NemotronHForCausalLM";
  cfg.pattern.forEach((layer, i) => {
    const b = `blk.${i}`;
    const P = `${lay.layers}.${i}`;
    if (layer.mixer !== "none" || nemotron) {
      add(`${b}.attn_norm.weight`, [H], `${P}.${lay.mixerNorm}.weight`);
    }
    if (layer.mixer === "none") {
      // Nemotron-H's MLP and expert blocks: their tensors come with the FFN below.
    } else if (layer.mixer === "attention" && cfg.attention!.mla) {
      mlaPlans(cfg, `${P}.${lay.attention}`, b, add, out);
    } else if (layer.mixer === "attention") {
      const a = cfg.attention!;
      const A = `${P}.${lay.attention}`;
      const q = a.heads * a.headDim, kv = a.kvHeads * a.headDim;
      // Only llama.cpp's `llama`, `granitehybrid` and `nemotron_h` (their converter's
      // undo_permute, RoPE or not) permute (Jamba has no RoPE; Qwen2-MoE and OLMoE use NeoX RoPE).
      const llama = cfg.architecture === "MixtralForCausalLM" ||
        cfg.architecture.startsWith("GraniteMoe") || nemotron;
      const qT: GgufTransform = llama ? { kind: "permute", heads: a.heads } : COPY;
      const kT: GgufTransform = llama ? { kind: "permute", heads: a.kvHeads } : COPY;
      add(`${b}.attn_q.weight`, [q, H], `${A}.q_proj.weight`, [q, H], qT);
      add(`${b}.attn_k.weight`, [kv, H], `${A}.k_proj.weight`, [kv, H], kT);
      add(`${b}.attn_v.weight`, [kv, H], `${A}.v_proj.weight`);
      add(`${b}.attn_output.weight`, [H, q], `${A}.o_proj.weight`);
      if (a.qkvBias) {
        add(`${b}.attn_q.bias`, [q], `${A}.q_proj.bias`, [q], qT);
        add(`${b}.attn_k.bias`, [kv], `${A}.k_proj.bias`, [kv], kT);
        add(`${b}.attn_v.bias`, [kv], `${A}.v_proj.bias`);
      }
      if (a.outBias) add(`${b}.attn_output.bias`, [H], `${A}.o_proj.bias`);
      // GPT-OSS: one sink logit per query head (gpt-oss `attn_sinks`).
      if (a.sinks) add(`${b}.attn_sinks.weight`, [a.heads], `${A}.sinks`);
      if (a.qkNorm) {
        // OLMoE: RMSNorm over the whole q and k projections (llama.cpp's olmoe graph);
        // Qwen3-MoE: over each head.
        const d = a.qkNormPerHead ? a.headDim : 0;
        add(`${b}.attn_q_norm.weight`, [d || q], `${A}.${lay.qkNorm?.q ?? "q_norm"}.weight`);
        add(`${b}.attn_k_norm.weight`, [d || kv], `${A}.${lay.qkNorm?.k ?? "k_norm"}.weight`);
      }
    } else if (cfg.mamba?.ssd) {
      mamba2Plans(cfg, `${P}.${lay.mamba}`, b, add);
    } else {
      const m = cfg.mamba!;
      const M = `${P}.${lay.mamba}`;
      const { inner: I, stateSize: N, convKernel: k, dtRank: R } = m;
      add(`${b}.ssm_in.weight`, [2 * I, H], `${M}.in_proj.weight`);
      if (m.projBias) add(`${b}.ssm_in.bias`, [2 * I], `${M}.in_proj.bias`);
      add(`${b}.ssm_conv1d.weight`, [I, k], `${M}.conv1d.weight`, [I, 1, k]);
      if (m.convBias) add(`${b}.ssm_conv1d.bias`, [I], `${M}.conv1d.bias`);
      add(`${b}.ssm_x.weight`, [R + 2 * N, I], `${M}.x_proj.weight`);
      if (m.innerNorms && !m.weightlessNorms) {
        add(`${b}.ssm_dt_norm.weight`, [R], `${M}.dt_layernorm.weight`);
        add(`${b}.ssm_b_norm.weight`, [N], `${M}.b_layernorm.weight`);
        add(`${b}.ssm_c_norm.weight`, [N], `${M}.c_layernorm.weight`);
      }
      add(`${b}.ssm_dt.weight`, [I, R], `${M}.dt_proj.weight`);
      add(`${b}.ssm_dt.bias`, [I], `${M}.dt_proj.bias`);
      add(`${b}.ssm_a`, [I, N], `${M}.A_log`, [I, N], { kind: "neg_exp" });
      add(`${b}.ssm_d`, [I], `${M}.D`);
      add(`${b}.ssm_out.weight`, [H, I], `${M}.out_proj.weight`);
      if (m.projBias) add(`${b}.ssm_out.bias`, [H], `${M}.out_proj.bias`);
    }
    if (layer.ffn === "none") return;
    if (nemotron) return nemotronFfnPlans(cfg, i, add, out);
    // llama.cpp's gpt-oss and glm4moe name the norm before the FFN after the attention.
    const ffnArch = GGUF_ARCH_OF[cfg.architecture];
    const ffnNorm = ffnArch === "gpt-oss" || ffnArch === "glm4moe"
      ? "post_attention_norm"
      : "ffn_norm";
    add(`${b}.${ffnNorm}.weight`, [H], `${P}.${lay.ffnNorm}.weight`);
    if (layer.ffn === "mlp") {
      const F = `${P}.${lay.mlp}`, ff = cfg.intermediate;
      add(`${b}.ffn_gate.weight`, [ff, H], `${F}.${lay.mlpNames.gate}.weight`);
      add(`${b}.ffn_up.weight`, [ff, H], `${F}.${lay.mlpNames.up}.weight`);
      add(`${b}.ffn_down.weight`, [H, ff], `${F}.${lay.mlpNames.down}.weight`);
      return;
    }
    const moe = cfg.moe!;
    const E = moe.experts, ff = expertWidth(cfg), Mo = moePrefix(cfg, i);
    add(`${b}.ffn_gate_inp.weight`, [E, H], `${Mo}.${lay.router}.weight`);
    if (moe.routerBias) add(`${b}.ffn_gate_inp.bias`, [E], `${Mo}.${lay.router}.bias`);
    if (routerHasBias(moe.router ?? "softmax_topk")) {
      // GLM-4.5's and ERNIE 4.5's ([1, E]) selection bias (llama.cpp's LLM_TENSOR_FFN_EXP_PROBS_B).
      const shape = lay.selectionBias?.row ? [1, E] : [E];
      add(`${b}.exp_probs_b.bias`, shape, selectionBiasTensor(cfg, i));
    }
    const stack = (name: string, which: "w1" | "w3" | "w2", each: number[]) =>
      out.push({
        name,
        shape: [E, ...each],
        sources: Array.from({ length: E }, (_, e) => expertTensor(cfg, i, e, which)),
        sourceShape: each,
        transform: COPY,
        keepF32: false,
      });
    stack(`${b}.ffn_gate_exps.weight`, "w1", [ff, H]);
    stack(`${b}.ffn_down_exps.weight`, "w2", [H, ff]);
    stack(`${b}.ffn_up_exps.weight`, "w3", [ff, H]);
    const bias = lay.expertBiases;
    if (moe.expertBias && bias) {
      // GPT-OSS: each layer's experts' biases, one [E, width] tensor per projection.
      const X = `${Mo}.${lay.experts}`;
      add(`${b}.ffn_gate_exps.bias`, [E, ff], `${X}.${bias.gate}`);
      add(`${b}.ffn_down_exps.bias`, [E, H], `${X}.${bias.down}`);
      add(`${b}.ffn_up_exps.bias`, [E, ff], `${X}.${bias.up}`);
    }
    if (moe.sharedExpert && lay.shared) {
      const S = `${layerPrefix(cfg, i)}.${lay.shared.expert}`, sff = moe.sharedExpert.ff;
      if (moe.sharedExpert.gated) {
        add(
          `${b}.ffn_gate_inp_shexp.weight`,
          [1, H],
          `${layerPrefix(cfg, i)}.${lay.shared.gate}.weight`,
        );
      }
      add(`${b}.ffn_gate_shexp.weight`, [sff, H], `${S}.${lay.mlpNames.gate}.weight`);
      add(`${b}.ffn_up_shexp.weight`, [sff, H], `${S}.${lay.mlpNames.up}.weight`);
      add(`${b}.ffn_down_shexp.weight`, [H, sff], `${S}.${lay.mlpNames.down}.weight`);
    }
  });
  add("output_norm.weight", [H], `${lay.finalNorm}.weight`);
  if (!cfg.tieEmbeddings) add("output.weight", [cfg.vocabSize, H], `${lay.lmHead}.weight`);
  return out;
}

/**
 * GGUF architectures whose llama.cpp loader requires `output.weight`
 * (`load_arch_tensors` of `src/models/qwen2moe.cpp`, `olmoe.cpp` and
 * `openai-moe.cpp` create it with flag 0, where llama, mamba and jamba fall back
 * to `token_embd.weight`).
 */
const OUTPUT_REQUIRED: ReadonlySet<string> = new Set(["qwen2moe", "olmoe", "qwen3moe", "gpt-oss"]);

/**
 * The tensors `kiln quantize` writes for `cfg`: {@linkcode ggufTensorPlans},
 * and for a tied Qwen2-MoE, OLMoE, Qwen3-MoE or GPT-OSS an `output.weight`
 * holding the embeddings a second time (llama.cpp requires one for those
 * architectures, where llama, mamba and jamba fall back to `token_embd.weight`).
 *
 * @example
 * ```ts
 * import { parseConfig } from "../../models/architectures/mod.ts";
 * import { ggufWrittenPlans } from "./arch_names.ts";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 1,
 * });
 * ggufWrittenPlans(cfg).some((p) => p.name === "output.weight"); // false: tied, and mamba falls back
 * ```
 */
export function ggufWrittenPlans(cfg: ModelConfig): GgufTensorPlan[] {
  const plans = ggufTensorPlans(cfg);
  if (cfg.tieEmbeddings && OUTPUT_REQUIRED.has(GGUF_ARCH_OF[cfg.architecture])) {
    plans.push({ ...plans[0], name: "output.weight" });
  }
  return plans;
}

/**
 * The GGUF name of expert `e` of a stacked expert tensor in llama.cpp's older
 * per-expert layout (`blk.N.ffn_gate.E.weight`, read by llama.cpp for
 * backward compatibility), or undefined for a tensor that is not stacked.
 *
 * @example
 * ```ts
 * import { perExpertName } from "./arch_names.ts";
 * perExpertName("blk.3.ffn_down_exps.weight", 5); // "blk.3.ffn_down.5.weight"
 * ```
 */
export function perExpertName(stacked: string, e: number): string | undefined {
  const m = /^(blk\.\d+\.ffn_(?:gate|up|down))_exps\.weight$/.exec(stacked);
  return m ? `${m[1]}.${e}.weight` : undefined;
}

/**
 * Refuses to write a GGUF file for `architecture` when Kiln has no llama.cpp
 * architecture for it, or reads its files only: a TypeError naming both lists;
 * and for a `hidden_act` other than silu, which no GGUF key carries (llama.cpp
 * applies silu to these architectures' gates whatever the source said).
 *
 * @example
 * ```ts
 * import { refuseUnwritten } from "./arch_names.ts";
 * refuseUnwritten("MixtralForCausalLM"); // no error
 * ```
 */
export function refuseUnwritten(architecture: string, hiddenAct?: string): void {
  if (hiddenAct !== undefined && hiddenAct !== "silu") {
    throw new TypeError(
      `config.json: hidden_act ${hiddenAct} cannot be written to GGUF: llama.cpp's ` +
        `${
          GGUF_ARCH_OF[architecture] ?? architecture
        } applies silu, and no GGUF key says otherwise`,
    );
  }
  const arch = GGUF_ARCH_OF[architecture];
  if (arch && !GGUF_READ_ONLY.has(architecture)) return;
  const written = Object.keys(GGUF_ARCH_OF).filter((a) => !GGUF_READ_ONLY.has(a));
  throw new TypeError(
    `config.json: ${architecture} has no llama.cpp architecture to write ` +
      (arch ? `(Kiln reads ${arch} files, but does not write them; ` : "(") +
      `Kiln writes ${written.join(", ")})`,
  );
}

/**
 * DeepSeek's latent attention as llama.cpp's `deepseek2` stores it: the query
 * bottleneck (`attn_q_a`, `attn_q_a_norm`, `attn_q_b`) or one `attn_q`, the
 * latent projection `attn_kv_a_mqa` and its norm, `kv_b_proj` split per head
 * into `attn_k_b` (transposed) and `attn_v_b`, and `attn_output`.
 */
function mlaPlans(
  cfg: ModelConfig,
  A: string,
  b: string,
  add: (name: string, shape: number[], source: string, sourceShape?: number[]) => void,
  out: GgufTensorPlan[],
): void {
  const a = cfg.attention!, m = a.mla!, H = cfg.hidden, h = a.heads;
  const [C, R, N, V, Q] = [m.kvLoraRank, m.ropeDim, m.nopeDim, m.vDim, m.qLoraRank];
  if (Q > 0) {
    add(`${b}.attn_q_a.weight`, [Q, H], `${A}.q_a_proj.weight`);
    add(`${b}.attn_q_a_norm.weight`, [Q], `${A}.q_a_layernorm.weight`);
    add(`${b}.attn_q_b.weight`, [h * (N + R), Q], `${A}.q_b_proj.weight`);
  } else {
    add(`${b}.attn_q.weight`, [h * (N + R), H], `${A}.q_proj.weight`);
  }
  add(`${b}.attn_kv_a_mqa.weight`, [C + R, H], `${A}.kv_a_proj_with_mqa.weight`);
  add(`${b}.attn_kv_a_norm.weight`, [C], `${A}.kv_a_layernorm.weight`);
  for (const part of ["k", "v"] as const) {
    out.push({
      name: `${b}.attn_${part}_b.weight`,
      shape: part === "k" ? [h, C, N] : [h, V, C],
      sources: [`${A}.kv_b_proj.weight`],
      sourceShape: [h * (N + V), C],
      transform: { kind: "mla_kv_b", part, heads: h, nope: N, v: V },
      keepF32: false,
    });
  }
  add(`${b}.attn_output.weight`, [H, h * V], `${A}.o_proj.weight`);
}
