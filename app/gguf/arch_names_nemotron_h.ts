/**
 * The feed-forward tensors of Nemotron-H's blocks as llama.cpp stores them
 * (`nemotron_h`, `nemotron_h_moe`; `load_arch_tensors` in llama-model.cpp,
 * `NemotronHModel.modify_tensors` in convert_hf_to_gguf.py): an MLP block's
 * ungated `ffn_up` / `ffn_down`; an expert block's router `ffn_gate_inp`, its
 * selection bias `exp_probs_b.bias` (HF `e_score_correction_bias`), the
 * stacked ungated experts `ffn_up_exps` `[E, ff, H]` and `ffn_down_exps`
 * `[E, H, ff]`, and the shared expert's `ffn_up_shexp` / `ffn_down_shexp`;
 * with latent experts (`moe_latent_size` X) `ffn_latent_down` `[X, H]` and
 * `ffn_latent_up` `[H, X]` around experts of width X.
 * Neither has an `ffn_norm`: the block's one norm is its `attn_norm`.
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";
import { expertInputWidth, expertWidth } from "../../models/config.ts";
import { expertTensor, layerPrefix, moePrefix, specOf } from "../../models/architectures/mod.ts";
import type { GgufTensorPlan } from "./arch_names.ts";

/**
 * Adds block `i`'s feed-forward plans (see the module notes) through `add`
 * (one HF tensor a GGUF tensor) and, for stacked experts, straight to `out`.
 *
 * @example
 * ```ts ignore
 * nemotronFfnPlans(cfg, 1, add, out); // blk.1.ffn_gate_inp.weight, blk.1.exp_probs_b.bias, …
 * ```
 */
export function nemotronFfnPlans(
  cfg: ModelConfig,
  i: number,
  add: (name: string, shape: number[], source: string) => void,
  out: GgufTensorPlan[],
): void {
  const lay = specOf(cfg).layout;
  const H = cfg.hidden, b = `blk.${i}`;
  const ffn = (prefix: string, up: string, down: string, ff: number) => {
    add(`${b}.${up}.weight`, [ff, H], `${prefix}.${lay.mlpNames.up}.weight`);
    add(`${b}.${down}.weight`, [H, ff], `${prefix}.${lay.mlpNames.down}.weight`);
  };
  if (cfg.pattern[i].ffn === "mlp") {
    return ffn(`${layerPrefix(cfg, i)}.${lay.mlp}`, "ffn_up", "ffn_down", cfg.intermediate);
  }
  const moe = cfg.moe!, E = moe.experts, ff = expertWidth(cfg), Mo = moePrefix(cfg, i);
  const X = expertInputWidth(cfg); // Nemotron 3 Super's latent width, else H
  add(`${b}.ffn_gate_inp.weight`, [E, H], `${Mo}.${lay.router}.weight`);
  if (moe.latent && lay.moeLatent) {
    add(`${b}.ffn_latent_down.weight`, [X, H], `${Mo}.${lay.moeLatent.down}.weight`);
    add(`${b}.ffn_latent_up.weight`, [H, X], `${Mo}.${lay.moeLatent.up}.weight`);
  }
  add(`${b}.exp_probs_b.bias`, [E], `${Mo}.${lay.router}.e_score_correction_bias`);
  const stack = (name: string, which: "w1" | "w2", each: number[]) =>
    out.push({
      name,
      shape: [E, ...each],
      sources: Array.from({ length: E }, (_, e) => expertTensor(cfg, i, e, which)),
      sourceShape: each,
      transform: { kind: "copy" },
      keepF32: false,
    });
  // Ungated: w1 holds the up projection.
  stack(`${b}.ffn_down_exps.weight`, "w2", [X, ff]);
  stack(`${b}.ffn_up_exps.weight`, "w1", [ff, X]);
  const S = `${layerPrefix(cfg, i)}.${lay.shared!.expert}`;
  ffn(S, "ffn_up_shexp", "ffn_down_shexp", moe.sharedExpert!.ff);
}
