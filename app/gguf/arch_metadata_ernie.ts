/**
 * The GGUF model keys of ERNIE 4.5 (`ernie4_5`, `ernie4_5-moe`) beyond the
 * attention keys, as llama.cpp's converter writes them (`Ernie4_5MoeModel`):
 * expert counts and widths, the MoE step and the leading dense blocks. The
 * shared experts' width is written as their true width (the converter derives
 * it as intermediate_size / num_key_value_heads, which is that width in the
 * published models). What the format cannot say is refused: biases
 * (`use_bias`), MoE layers that stop before the last (`moe_layer_end_index`).
 *
 * @module
 */

import type { ModelConfig } from "../../models/config.ts";

/**
 * Writes ERNIE 4.5's own keys with `u32` (the `<arch>.` prefix added by it).
 *
 * @example
 * ```ts ignore
 * ernieKeys(cfg, (k, v) => put(`ernie4_5-moe.${k}`, "u32", v));
 * ```
 */
export function ernieKeys(cfg: ModelConfig, u32: (key: string, v: number) => void): void {
  if (cfg.mlpBias || cfg.attention?.qkvBias || cfg.attention?.outBias) {
    throw new TypeError(
      "config.json: an ERNIE 4.5 with use_bias has no GGUF form: llama.cpp's ERNIE has no " +
        "MLP or LM-head biases",
    );
  }
  const moe = cfg.moe;
  if (!moe) return;
  const layers = cfg.pattern.map((p, i) => (p.ffn === "moe" ? i : -1)).filter((i) => i >= 0);
  // llama.cpp's rule: layer i routes when i ≥ lead and (i + 1) % step == 0. The step is
  // the gap between MoE layers; the lead the smallest that gives these layers (the
  // converter writes moe_layer_start_index, the same number for the published models).
  const first = layers[0];
  const step = layers.length > 1 ? layers[1] - first : first + 1;
  const fits = (lead: number) =>
    cfg.pattern.every((p, i) => (i >= lead && (i + 1) % step === 0) === (p.ffn === "moe"));
  let lead = 0;
  while (lead < first && !fits(lead)) lead++;
  if (!fits(lead)) {
    throw new TypeError(
      "config.json: these MoE layers (" + layers.join(", ") + ") have no GGUF form: llama.cpp " +
        "routes every layer from leading_dense_block_count on whose (index + 1) is a multiple " +
        "of interleave_moe_layer_step, through the last",
    );
  }
  const ff = moe.ff ?? cfg.intermediate;
  u32("expert_count", moe.experts);
  u32("expert_used_count", moe.topK);
  u32("interleave_moe_layer_step", step);
  u32("leading_dense_block_count", lead);
  u32("expert_feed_forward_length", ff);
  const shared = moe.sharedExpert ? moe.sharedExpert.ff / ff : 0;
  u32("expert_shared_count", shared);
  if (shared > 0) u32("expert_shared_feed_forward_length", moe.sharedExpert!.ff);
}
