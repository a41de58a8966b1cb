/**
 * The model keys of a `nemotron_h` / `nemotron_h_moe` GGUF file, as llama.cpp's
 * converter (`NemotronHModel.set_gguf_parameters`) writes them and its loader
 * reads them: per-layer `feed_forward_length` (the MLP's or the experts' width
 * on feed-forward blocks, 0 elsewhere) and `attention.head_count_kv` (0 off
 * attention blocks), from which llama.cpp tells the block kinds; the Mamba-2
 * sizes; no RoPE (`rope.scaling.finetuned` false, context 2^20); the experts'
 * routing. The epsilon goes under both `attention.layer_norm_epsilon` (the
 * converter's) and `attention.layer_norm_rms_epsilon` (the loader's), and
 * Kiln's own `ssm.time_step_min` keeps transformers' floor on Δ, which
 * llama.cpp ignores.
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import type { GgufEntry } from "./value.ts";

type Put = (key: string, type: GgufEntry["type"], value: GgufEntry["value"]) => void;

/**
 * Refuses what llama.cpp's Nemotron-H graph cannot hold: a model without a
 * Mamba-2 block (its loader requires the SSM keys), Mamba projection biases
 * (it loads none), and a block pattern whose feed-forward blocks it would
 * misread (in a `nemotron_h_moe` file every feed-forward block is an expert
 * block). Routing that keeps every group is written as one group of all the
 * experts (llama.cpp's loader asserts fewer groups used than exist).
 */
function refuse(cfg: ModelConfig): void {
  const mixedFfn = cfg.moe && cfg.pattern.some((p) => p.ffn === "mlp");
  const extra = !cfg.mamba
    ? "no Mamba-2 block (llama.cpp's loader requires the SSM keys of one)"
    : cfg.mamba.projBias
    ? "use_bias true (llama.cpp's Mamba-2 projections have no biases)"
    : mixedFfn
    ? "both relu² MLP and routed-expert blocks (llama.cpp's nemotron_h_moe reads every " +
      "feed-forward block as experts)"
    : undefined;
  if (extra) throw new TypeError(`config.json: a Nemotron-H with ${extra} has no GGUF form`);
}

/**
 * Puts the keys (see the module notes) under `arch`.
 *
 * @example
 * ```ts ignore
 * nemotronHKeys(cfg, "nemotron_h_moe", put);
 * ```
 */
export function nemotronHKeys(cfg: ModelConfig, arch: string, put: Put): void {
  refuse(cfg);
  const u32 = (key: string, v: number) => put(`${arch}.${key}`, "u32", v);
  const f32 = (key: string, v: number) => put(`${arch}.${key}`, "f32", v);
  const arr = (key: string, values: number[]) =>
    put(`${arch}.${key}`, "array", { type: "i32", values });
  const moe = cfg.moe;
  const a = cfg.attention;
  u32("context_length", 2 ** 20);
  u32("embedding_length", cfg.hidden);
  u32("block_count", cfg.layers);
  arr(
    "feed_forward_length",
    cfg.pattern.map((p) =>
      p.ffn === "mlp" ? cfg.intermediate : p.ffn === "moe" ? moe!.ff ?? cfg.intermediate : 0
    ),
  );
  u32("attention.head_count", a?.heads ?? 0);
  arr(
    "attention.head_count_kv",
    cfg.pattern.map((p) => (p.mixer === "attention" ? a!.kvHeads : 0)),
  );
  f32("attention.layer_norm_epsilon", cfg.normEps);
  f32("attention.layer_norm_rms_epsilon", cfg.normEps);
  if (moe) {
    u32("expert_used_count", moe.topK);
    u32("expert_group_count", moe.groups?.count ?? 1);
    u32("expert_group_used_count", moe.groups?.kept ?? 1);
  }
  if (a) u32("rope.dimension_count", a.headDim);
  const m = cfg.mamba;
  if (m) {
    u32("ssm.conv_kernel", m.convKernel);
    u32("ssm.state_size", m.stateSize);
    u32("ssm.group_count", m.ssd!.groups);
    u32("ssm.inner_size", m.inner);
    u32("ssm.time_step_rank", m.ssd!.heads);
    if (m.ssd!.dtLimit[0] > 0) f32("ssm.time_step_min", m.ssd!.dtLimit[0]);
  }
  put(`${arch}.rope.scaling.finetuned`, "bool", false);
  if (a) {
    u32("attention.key_length", a.headDim);
    u32("attention.value_length", a.headDim);
  }
  if (moe) {
    u32("expert_feed_forward_length", moe.ff ?? cfg.intermediate);
    u32("expert_shared_feed_forward_length", moe.sharedExpert!.ff);
    u32("expert_count", moe.experts);
    u32("expert_shared_count", 1);
    put(`${arch}.expert_weights_norm`, "bool", moe.normTopk);
    f32("expert_weights_scale", moe.routedScaling ?? 1);
    if (moe.latent) u32("moe_latent_size", moe.latent);
  }
}
