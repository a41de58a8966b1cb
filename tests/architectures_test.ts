/**
 * The newer architecture specs (Qwen2-MoE, OLMoE) and the config features that
 * change the math (RoPE scaling, biases, QK-norm, clip_qkv, per-layer sliding
 * windows, sparse-step layouts), end to end: tiny checkpoints in the exact
 * Hugging Face layout, loaded by `loadModel`, against the independent float64
 * reference (itself checked against transformers in `hf_fixtures_test.ts`).
 */

import assert from "node:assert/strict";
import type { Model } from "../app/model/mod.ts";
import { referenceLogits } from "./reference/hf_reference.ts";
import {
  type TinyCheckpointOptions,
  writeTinyMixtral,
  writeTinyOlmoe,
  writeTinyQwen2Moe,
} from "./fixtures/tiny_checkpoints.ts";
import { toV5Config } from "./fixtures/config_generations.ts";
import { assertDecodeMatchesForward, relMaxError, withTinyModel } from "./_util.ts";

const WRITERS = { mixtral: writeTinyMixtral, qwen2_moe: writeTinyQwen2Moe, olmoe: writeTinyOlmoe };
const PROMPT = [5, 17, 3, 99, 42, 7, 250, 11, 0, 64, 31, 8, 120];

function withModel(
  arch: keyof typeof WRITERS,
  opts: TinyCheckpointOptions,
  fn: (model: Model, dir: string) => Promise<void>,
  v5 = false,
): Promise<void> {
  return withTinyModel(WRITERS[arch], opts, fn, v5 ? toV5Config : undefined);
}

const CASES: [string, keyof typeof WRITERS, TinyCheckpointOptions, boolean][] = [
  ["Qwen2-MoE: q/k/v biases, shared expert, raw top-k", "qwen2_moe", {}, false],
  [
    "Qwen2-MoE: decoder_sparse_step 2, mlp_only_layers, renormalised top-k, sliding layers",
    "qwen2_moe",
    {
      config: {
        num_hidden_layers: 4,
        decoder_sparse_step: 2,
        mlp_only_layers: [3],
        norm_topk_prob: true,
        use_sliding_window: true,
        sliding_window: 5,
        max_window_layers: 1,
      },
    },
    false,
  ],
  ["OLMoE: QK-norm, top-3 of 8 without renormalisation", "olmoe", {}, false],
  [
    "OLMoE: attention_bias, clip_qkv, norm_topk_prob",
    "olmoe",
    {
      config: { attention_bias: true, clip_qkv: 0.4, norm_topk_prob: true, num_key_value_heads: 2 },
    },
    true,
  ],
  [
    "Mixtral: linear RoPE scaling (transformers 4 `type`)",
    "mixtral",
    { config: { rope_theta: 1e4, rope_scaling: { type: "linear", factor: 4 } } },
    false,
  ],
  [
    "Mixtral: yarn RoPE scaling (transformers 5 rope_parameters)",
    "mixtral",
    { config: { rope_theta: 1e4, rope_scaling: { rope_type: "yarn", factor: 4 } } },
    true,
  ],
  [
    "Mixtral: llama3 RoPE scaling",
    "mixtral",
    {
      config: {
        rope_theta: 5e5,
        rope_scaling: {
          rope_type: "llama3",
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 64,
        },
      },
    },
    false,
  ],
];

for (const [name, arch, opts, v5] of CASES) {
  Deno.test(`${name}: GPU logits match the float64 reference (≤ 1e-4 of scale)`, async () => {
    await withModel(arch, opts, async (model, dir) => {
      const ref = await referenceLogits(dir);
      const e = relMaxError(await model.forward(PROMPT), ref(PROMPT));
      assert.ok(e <= 1e-4, `${name}: max error ${e.toExponential(2)} of logit scale`);
    }, v5);
  });
}

Deno.test("Qwen2-MoE and OLMoE: prefill then decode equals the full forward", async () => {
  for (const [arch, opts] of [["qwen2_moe", CASES[1][2]], ["olmoe", CASES[3][2]]] as const) {
    await withModel(arch, opts, (model) => assertDecodeMatchesForward(model, PROMPT, 7));
  }
});

Deno.test("a rope_scaling factor changes the logits (the scaling is not dropped)", async () => {
  let plain: Float32Array | undefined;
  await withModel("mixtral", { config: { rope_theta: 1e4 } }, async (m) => {
    plain = await m.forward(PROMPT);
  });
  await withModel(
    "mixtral",
    { config: { rope_theta: 1e4, rope_scaling: { type: "linear", factor: 4 } } },
    async (m) => {
      const scaled = await m.forward(PROMPT);
      let diff = 0;
      for (let i = 0; i < scaled.length; i++) {
        diff = Math.max(diff, Math.abs(scaled[i] - plain![i]));
      }
      assert.ok(diff > 1e-3, `linear scaling left the logits unchanged (${diff})`);
    },
  );
});
