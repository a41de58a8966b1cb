/**
 * Ground truth from Hugging Face transformers 5.18 itself: tiny checkpoints its
 * own classes wrote with `save_pretrained`, with the logits and greedy ids
 * transformers computed for them (float64 forward, see
 * `fixtures/hf/README.md`). Every architecture loads with `loadModel` and
 * matches to well under 1e-4 of the logit scale, with the same greedy
 * continuation; the same checkpoint with its config rewritten the way
 * transformers 4 writes it gives identical logits.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { promptsThroughDecode } from "../models/mamba2.ts";
import { gpu } from "./_util.ts";
import { toV4Config } from "./fixtures/config_generations.ts";
import { referenceLogits } from "./reference/hf_reference.ts";
import { readTransformersRef, relToRms, tieFreeGreedy } from "./fixtures/transformers_ref.ts";

const HF = new URL("./fixtures/hf/", import.meta.url).pathname;

const FIXTURES = [
  "mixtral_gqa_sw",
  "mixtral_hd_top3",
  "mamba_bias",
  "jamba",
  "qwen2_moe",
  "olmoe",
  // Written by tools/transformers_reference.py from fixtures/hf/cases.json.
  "mixtral_yarn",
  "olmoe_llama3_clip",
  "qwen2_moe_sliding_dense",
  "jamba_periods",
  "mamba_nobias_rank",
  "mixtral_longrope",
  "qwen3_moe",
  "qwen3_moe_sliding_bias",
  "falcon_mamba",
  "mamba2",
  "mamba2_bias_limit",
  "granite_hybrid",
  "granite_hybrid_dense_nope",
  "bamba",
  "bamba_quarter_rope_bias",
  "nemotron_h",
  "nemotron_h_pattern_bias",
  "gpt_oss",
  // Its experts as MXFP4 blocks (tools/gpt_oss_mxfp4.py), read without dequantizing.
  "gpt_oss_mxfp4",
  "glm4_moe",
  "glm4_moe_full_rope_groups",
  "glm4_moe_group_limit",
  "glm4_moe_odd_rope",
  "deepseek_v3",
  "deepseek_v3_no_q_lora",
  "deepseek_v2_lite",
  "deepseek_v2_groups",
  "granite_moe",
  "granite_moe_shared",
  // hidden_act other than silu (fixtures/hf/hidden_act_cases.json).
  "mixtral_gelu",
  "qwen2_moe_relu",
  "jamba_gelu_tanh",
  "mamba_gelu_new",
  "mamba2_relu",
  "granite_hybrid_gelu",
  "nemotron_h_gelu",
  // hidden_act quick_gelu, x·σ(1.702·x) (fixtures/hf/quick_gelu_cases.json).
  "mixtral_quick_gelu",
  "granite_hybrid_quick_gelu",
  "mamba_quick_gelu",
  // Nemotron 3's routed relu² experts (fixtures/hf/nemotron_h_moe_cases.json).
  "nemotron_h_moe",
  "nemotron_h_moe_pattern",
  "nemotron_h_moe_latent",
  // ERNIE 4.5: RoPE on adjacent pairs, softmax + selection bias (fixtures/hf/ernie4_5_cases.json).
  "ernie4_5_moe",
  "ernie4_5_moe_interval",
  "ernie4_5_dense_bias",
  // Falcon-H1: attention and Mamba-2 side by side, μP multipliers (fixtures/hf/falcon_h1_cases.json).
  "falcon_h1",
  "falcon_h1_norm_bias",
  // dots.llm1: Qwen3's attention over DeepSeek-V3's experts (fixtures/hf/dots1_cases.json).
  "dots1",
  "dots1_sliding_bias",
  // Hunyuan-A13B: QK-norm after RoPE, NTK-alpha RoPE, a shared MLP beside softmax-routed
  // experts (fixtures/hf/hunyuan_moe_cases.json).
  "hunyuan_moe",
  "hunyuan_moe_bias_lists",
  // MiniMax-M2: QK-norm over whole projections, partial RoPE by rotary_dim, sigmoid +
  // selection-bias experts in Mixtral's layout (fixtures/hf/minimax_m2_cases.json).
  "minimax_m2",
  "minimax_m2_tied_linear",
  // FlexOlmo: OLMo 2's post-norm layers over OLMoE's experts (fixtures/hf/flex_olmo_cases.json).
  "flex_olmo",
  "flex_olmo_bias_norm",
  // K-EXAONE: sliding layers with RoPE, global layers without, DeepSeek-style experts
  // (fixtures/hf/exaone_moe_cases.json).
  "exaone_moe",
  "exaone_moe_global_groups",
  // GLM-4.7-Flash: DeepSeek-V3's layer with dense layers by mlp_layer_types
  // (fixtures/hf/glm4_moe_lite_cases.json).
  "glm4_moe_lite",
  "glm4_moe_lite_groups",
  // Qwen3-Next: Gated DeltaNet and gated attention layers over Qwen2-MoE's experts
  // (fixtures/hf/qwen3_next_cases.json).
  "qwen3_next",
  "qwen3_next_bias_dense",
  // Qwen3.5: Qwen3-Next's hybrid with split DeltaNet projections, the MoE text class and
  // the vision-language checkpoints read as their language model (fixtures/hf/qwen3_5_cases.json).
  "qwen3_5_moe",
  "qwen3_5_moe_vl",
  "qwen3_5_dense_vl",
  // LFM2 and LFM2-MoE: gated short convolutions beside attention, sigmoid + bias experts
  // (fixtures/hf/lfm2_cases.json).
  "lfm2_moe",
  "lfm2_bias_untied",
];

const readRef = (name: string) =>
  readTransformersRef(join(HF, name, "ref.json"), join(HF, name, "logits.f32"));

/** A copy of fixture `name` whose config.json is `edit(config)`. */
async function withCopy<T>(
  name: string,
  edit: (config: Record<string, unknown>) => Record<string, unknown>,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: `kiln_hf_${name}_` });
  try {
    for (const f of ["model.safetensors", "generation_config.json"]) {
      await Deno.copyFile(join(HF, name, f), join(dir, f));
    }
    const config = JSON.parse(await Deno.readTextFile(join(HF, name, "config.json")));
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(edit(config), null, 2));
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const name of FIXTURES) {
  Deno.test(`the float64 reference reproduces transformers on ${name}`, async () => {
    // The reference is the oracle of the writer-made checkpoints elsewhere: first
    // it must itself agree with transformers' own float64 forward.
    const { ref, logits } = await readRef(name);
    const e = relToRms((await referenceLogits(join(HF, name)))(ref.ids), logits, ref.logit_rms);
    assert.ok(e < 1e-5, `${name}: reference off by ${e.toExponential(2)} of the logit rms`);
  });

  Deno.test(`transformers 5 checkpoint ${name}: logits and greedy ids match transformers`, async () => {
    const { ref, logits } = await readRef(name);
    const model = await loadModel(join(HF, name), { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      assert.equal(model.config.architecture, ref.arch);
      // Greedy continuation: equal up to the first near-tie (a margin f32 rounding may
      // flip). First from a fresh model, whose short prompt runs through the decode
      // step; then through the prefill, once forward has compiled its chunks.
      const want = tieFreeGreedy(ref);
      const n = want.length;
      assert.ok(n >= Math.min(4, ref.greedy.length), `${name}: near-tie at step ${n}`);
      const greedy = async (via: "decode" | "prefill") => {
        const ids: number[] = [];
        for await (const id of model.generateIds(ref.ids, { maxTokens: ref.greedy.length })) {
          ids.push(id);
        }
        // A Mamba-2 with a Δ limit never runs a prompt through the decode step.
        assert.equal(
          model.lastStats!.promptRun,
          promptsThroughDecode(model.config) ? via : "prefill",
        );
        assert.deepEqual(ids.slice(0, n), want, `${name}, prompt via ${via}`);
      };
      await greedy("decode");
      const got = await model.forward(ref.ids);
      const e = relToRms(got, logits, ref.logit_rms);
      assert.ok(e < 1e-4, `${name}: max error ${e.toExponential(2)} of the logit rms`);
      await greedy("prefill");
    } finally {
      model.dispose();
    }
  });

  Deno.test(`${name}: the config written transformers-4-style gives identical logits`, async () => {
    const { ref } = await readRef(name);
    const device = await gpu();
    const v5 = await loadModel(join(HF, name), { device, quiet: true, maxSeq: 64 });
    const want = await v5.forward(ref.ids);
    v5.dispose();
    await withCopy(name, toV4Config, async (dir) => {
      const v4 = await loadModel(dir, { device, quiet: true, maxSeq: 64 });
      try {
        assert.deepEqual(await v4.forward(ref.ids), want);
      } finally {
        v4.dispose();
      }
    });
  });
}

Deno.test("a RoPE base given only in rope_parameters is used (not the architecture default)", async () => {
  // The defect transformers 5 checkpoints exposed: Mixtral's default base is 1e6, this
  // checkpoint's is 1e4 and appears only inside rope_parameters.
  const { ref, logits } = await readRef("mixtral_gqa_sw");
  await withCopy("mixtral_gqa_sw", (c) => ({
    ...c,
    rope_parameters: { rope_type: "default", rope_theta: 1e6 },
  }), async (dir) => {
    const wrong = await loadModel(dir, { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      const e = relToRms(await wrong.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e > 1e-2, `a different base must change the logits (error ${e})`);
    } finally {
      wrong.dispose();
    }
  });
});

Deno.test("dynamic RoPE within max_position_embeddings gives transformers' logits", async () => {
  // _compute_dynamic_ntk_parameters rescales the base by
  // ((factor·L/max) − (factor − 1))^(d/(d−2)) with L = max(seq_len, max): 1 up to max,
  // so this checkpoint's transformers logits (default RoPE) are the dynamic model's too.
  const { ref, logits } = await readRef("mixtral_gqa_sw");
  await withCopy("mixtral_gqa_sw", (c) => ({
    ...c,
    rope_parameters: { rope_type: "dynamic", rope_theta: 1e4, factor: 4 },
  }), async (dir) => {
    const model = await loadModel(dir, { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e < 1e-4, `dynamic RoPE within max_position_embeddings: error ${e}`);
    } finally {
      model.dispose();
    }
  });
});

Deno.test("the options the newer fixtures exist for do change their logits", async () => {
  // Each edit switches one feature off; if the logits stayed within tolerance the
  // fixture would not be testing that feature at all.
  const edits: [string, string, (c: Record<string, unknown>) => Record<string, unknown>][] = [
    [
      "mixtral_yarn",
      "yarn RoPE",
      (c) => ({ ...c, rope_parameters: { rope_type: "default", rope_theta: 500 } }),
    ],
    ["mixtral_yarn", "the sliding window", (c) => ({ ...c, sliding_window: null })],
    ["olmoe_llama3_clip", "clip_qkv", (c) => ({ ...c, clip_qkv: null })],
    [
      "olmoe_llama3_clip",
      "llama3 RoPE",
      (c) => ({ ...c, rope_parameters: { rope_type: "default", rope_theta: 300 } }),
    ],
    [
      "qwen2_moe_sliding_dense",
      "the sliding layers",
      (c) => ({ ...c, layer_types: (c.layer_types as string[]).map(() => "full_attention") }),
    ],
    ["qwen3_moe_sliding_bias", "the sliding window", (c) => ({ ...c, use_sliding_window: false })],
    ["falcon_mamba", "the inner norms' epsilon", (c) => ({ ...c, mixer_rms_eps: 1 })],
    ["mamba2_bias_limit", "time_step_limit", (c) => ({ ...c, time_step_limit: [0, 1e9] })],
    ["granite_hybrid", "the embedding multiplier", (c) => ({ ...c, embedding_multiplier: 1 })],
    ["granite_hybrid", "the residual multiplier", (c) => ({ ...c, residual_multiplier: 1 })],
    ["granite_hybrid", "the attention multiplier", (c) => ({ ...c, attention_multiplier: 1 })],
    ["granite_hybrid", "the logit divisor", (c) => ({ ...c, logits_scaling: 1 })],
    ["granite_hybrid", "RoPE", (c) => ({ ...c, position_embedding_type: "nope" })],
    [
      "bamba_quarter_rope_bias",
      "the partial RoPE's factor",
      (c) => ({
        ...c,
        rope_parameters: { ...(c.rope_parameters as object), partial_rotary_factor: 0.5 },
      }),
    ],
    ["gpt_oss", "the sliding window", (c) => ({ ...c, sliding_window: 4096 })],
    ["glm4_moe", "the routed scaling factor", (c) => ({ ...c, routed_scaling_factor: 1 })],
    ["glm4_moe_group_limit", "the group limit", (c) => ({ ...c, topk_group: 4 })],
    ["deepseek_v3", "interleaved RoPE pairs", (c) => ({ ...c, rope_interleave: false })],
    ["deepseek_v2_groups", "the group limit", (c) => ({ ...c, topk_method: "greedy" })],
    ["deepseek_v2_lite", "the routed scaling", (c) => ({ ...c, routed_scaling_factor: 1 })],
    [
      "deepseek_v3",
      "yarn's softmax scale",
      (c) => ({
        ...c,
        rope_parameters: { ...(c.rope_parameters as object), mscale: 2, mscale_all_dim: 2 },
      }),
    ],
    ["glm4_moe_group_limit", "unnormalised weights", (c) => ({ ...c, norm_topk_prob: true })],
    [
      "glm4_moe",
      "the partial RoPE",
      (c) => ({
        ...c,
        rope_parameters: { ...(c.rope_parameters as object), partial_rotary_factor: 1 },
      }),
    ],
    ["mixtral_gelu", "the GELU experts", (c) => ({ ...c, hidden_act: "silu" })],
    ["qwen2_moe_relu", "the ReLU gates", (c) => ({ ...c, hidden_act: "silu" })],
    ["jamba_gelu_tanh", "tanh-GELU", (c) => ({ ...c, hidden_act: "silu" })],
    ["mamba_gelu_new", "the conv's tanh-GELU", (c) => ({ ...c, hidden_act: "silu" })],
    ["mamba2_relu", "the conv's ReLU", (c) => ({ ...c, hidden_act: "silu" })],
    ["granite_hybrid_gelu", "GELU", (c) => ({ ...c, hidden_act: "silu" })],
    ["nemotron_h_gelu", "the conv's GELU", (c) => ({ ...c, mamba_hidden_act: "silu" })],
    ["mixtral_quick_gelu", "the quick-GELU experts", (c) => ({ ...c, hidden_act: "silu" })],
    ["granite_hybrid_quick_gelu", "quick GELU", (c) => ({ ...c, hidden_act: "silu" })],
    ["mamba_quick_gelu", "the conv's quick GELU", (c) => ({ ...c, hidden_act: "silu" })],
    [
      "gpt_oss",
      "yarn RoPE",
      (c) => ({ ...c, rope_parameters: { rope_type: "default", rope_theta: 150000 } }),
    ],
  ];
  const device = await gpu();
  for (const [name, what, edit] of edits) {
    const { ref, logits } = await readRef(name);
    await withCopy(name, edit, async (dir) => {
      const model = await loadModel(dir, { device, quiet: true, maxSeq: 64 });
      try {
        const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
        assert.ok(e > 1e-2, `${name}: without ${what} the logits moved only ${e.toExponential(2)}`);
      } finally {
        model.dispose();
      }
    });
  }
});

Deno.test("loadModel refuses a config that does not describe its checkpoint, or asks for unimplemented math", async () => {
  const device = await gpu();
  const cases: [string, (c: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
    // The biases are in the file, the config says there are none.
    [
      "qwen2_moe",
      (c) => ({ ...c, qkv_bias: false }),
      /6 tensor\(s\) that Qwen2MoeForCausalLM as configured does not use \("model\.layers\.0\.self_attn\.k_proj\.bias"/,
    ],
    [
      // Past max_position_embeddings transformers rescales a dynamic RoPE per sequence.
      "mixtral_gqa_sw",
      (c) => ({
        ...c,
        max_position_embeddings: 48,
        rope_parameters: { rope_type: "dynamic", rope_theta: 1e4, factor: 2 },
      }),
      /maxSeq 64 is past max_position_embeddings 48 of a "dynamic" RoPE/,
    ],
    [
      // Past its original context transformers switches longrope to the long factors
      // per call. (Its factor lists once read as per-layer-type parameters.)
      "mixtral_yarn",
      (c) => ({
        ...c,
        rope_parameters: {
          rope_type: "longrope",
          rope_theta: 500,
          original_max_position_embeddings: 32,
          short_factor: [1, 1, 1, 1, 1, 1],
          long_factor: [2, 2, 2, 2, 2, 2],
        },
      }),
      /maxSeq 64 is past original_max_position_embeddings 32 of a "longrope" RoPE/,
    ],
    [
      "olmoe",
      (c) => ({ ...c, hidden_act: "relu6" }),
      /config\.json: hidden_act "relu6" is not supported by OlmoeForCausalLM/,
    ],
  ];
  for (const [name, edit, pattern] of cases) {
    await withCopy(name, edit, async (dir) => {
      await assert.rejects(loadModel(dir, { device, quiet: true, maxSeq: 64 }), pattern);
    });
  }
});
