/**
 * Kiln's training loss and gradients against PyTorch/transformers: for one
 * checkpoint of each architecture (tests/fixtures/hf/<name>/), the mean
 * next-token cross-entropy of a [2, 21] token batch and its gradient with
 * respect to every parameter, from `buildTrainingLM` + `g.grad` (what the
 * trainer's step differentiates), must equal what `model(input_ids=x,
 * labels=x)` and `loss.backward()` give in transformers in float64.
 *
 * The expected values are transformers' (grads.json, written by
 * `python tools/transformers_grads.py tests/fixtures/hf/<name> --out
 * tests/fixtures/hf/<name>/grads.json`, torch 2.13, transformers 5.18): the
 * loss, and per checkpoint tensor the gradient's norm, sum and 4 sampled
 * values. CI has no torch, so they are stored.
 *
 * The embedding's `padding_idx` row (`pad_token_id` in the Llama-style
 * families) gets no gradient from its lookups, as in PyTorch: the
 * `granite_hybrid_dense_nope` batch holds its pad token, and ties the head.
 *
 * For MoE models each layer's load-balancing loss is checked too: Kiln's
 * `auxLoss` times k is transformers' `load_balancing_loss_func` of that layer
 * alone (on the B·T trained positions), the documented convention difference
 * (transformers pools all layers into one loss instead), and the gradient of
 * coef · Σ_l aux_l matches transformers' gradient of the same sum.
 *
 * The float64 CPU interpreter runs Kiln's graph for every fixture (its math,
 * exactly); the device (f32 kernels) runs the Mamba one, the smallest to
 * compile on lavapipe.
 */

import assert from "node:assert/strict";
import {
  compareGrads,
  type GradReference,
  type KilnGrads,
  kilnGrads,
} from "../tools/transformers_grads.ts";
import { gpu } from "./_util.ts";

const ROOT = new URL("./fixtures/hf/", import.meta.url).pathname;

async function reference(name: string): Promise<GradReference> {
  return JSON.parse(await Deno.readTextFile(`${ROOT}${name}/grads.json`));
}

/**
 * Asserts agreement: `lossTol` relative on the losses, `tol` of each
 * gradient's RMS on its sampled values, its norm (relative) and its sum.
 */
function check(name: string, ref: GradReference, k: KilnGrads, lossTol: number, tol: number) {
  const rel = Math.abs(k.loss - ref.loss) / ref.loss;
  assert.ok(rel < lossTol, `${name}: loss ${k.loss}, transformers ${ref.loss} (rel ${rel})`);
  const rows = compareGrads(k.grads, ref.grads);
  // Every checkpoint tensor has a gradient, and no parameter is left out.
  assert.equal(rows.length, k.grads.size, `${name}: tensors ${[...k.grads.keys()]}`);
  for (const r of rows) {
    if (r.rms < 1e-12) {
      // Zero in exact arithmetic (a key bias shifts all of a query's scores alike, and
      // softmax ignores that): both sides hold rounding only, so compare absolutely.
      const got = k.grads.get(r.name)!;
      const rms = Math.sqrt(got.reduce((a, v) => a + v * v, 0) / got.length);
      assert.ok(rms < 1e-12, `${name}: d/d ${r.name} should be 0, Kiln's rms is ${rms}`);
      continue;
    }
    assert.ok(
      r.values < tol && r.norm < tol && r.sum < tol,
      `${name}: d/d ${r.name}: values ${r.values}, norm ${r.norm}, sum ${r.sum} (of rms ${r.rms})`,
    );
  }
  if (!ref.aux) {
    // No balancing loss: a model without experts, GLM-4.5's bias-balanced routing, or a
    // family transformers adds none for (Hunyuan-A13B, LFM2-MoE).
    if (!/^(glm4_moe|deepseek_v[23]|nemotron_h_moe|dots1|hunyuan|exaone|lfm2_moe)/.test(name)) {
      assert.equal(k.auxPerLayer.length, 0);
    }
    return;
  }
  if (/^minimax_m2/.test(name)) {
    // With output_router_logits MiniMaxM2ForCausalLM adds Mixtral's balance loss (softmax
    // of the router logits, their unbiased top k); Kiln's for a sigmoid_bias router is
    // DeepSeek-V3's (normalised sigmoid affinities, the experts the bias chose): another
    // loss, so transformers' is not compared (see README.md, MiniMax-M2).
    return;
  }
  assert.equal(k.auxPerLayer.length, ref.aux.per_layer.length, `${name}: MoE layers`);
  ref.aux.per_layer.forEach((want, l) => {
    const e = Math.abs(k.auxPerLayer[l] - want) / want;
    assert.ok(e < lossTol, `${name}: aux of MoE layer ${l}: ${k.auxPerLayer[l]}, want ${want}`);
  });
  for (const r of compareGrads(k.auxGrads!, ref.aux.grads)) {
    assert.ok(
      r.norm < tol && r.sum < tol,
      `${name}: aux d/d ${r.name}: norm ${r.norm}, sum ${r.sum} (of rms ${r.rms})`,
    );
  }
}

// One per architecture; between them: Mamba with biases, Mixtral with yarn RoPE and a
// sliding window shorter than the sequence, a Jamba of attention, Mamba, dense and MoE
// layers, Qwen2-MoE's shared expert with sliding and dense layers, OLMoE's q/k norms
// with clip_qkv and llama3 RoPE, Qwen3-MoE's per-head q/k norms with biases, a window
// and dense layers, Falcon-Mamba's weightless norms on Δ, B and C, Mamba-2 with two B/C
// groups, and with biases, tied embeddings and Δ clamped by time_step_limit, and Granite
// 4.0 hybrids: Mamba-2, RoPE attention and experts with a shared MLP, μP multipliers and
// fused gate/up tensors; and NoPE attention with biases and dense layers; Bamba's
// partial RoPE (half and a quarter of each head, the latter linearly scaled); Nemotron-H's
// single-purpose blocks (a relu² MLP block, a per-group gated norm, a Δ floor); GPT-OSS's
// attention sinks, q/k/v/o and router biases, and experts with biases and the clamped
// swiglu_oai activation (the clamps bite on about a tenth of this batch's values), its
// interleaved gate_up_proj compared as stored; DeepSeek-V3's latent attention (query
// bottleneck, interleaved RoPE, yarn's softmax scale) run absorbed, against transformers'
// expanded form; DeepSeek-V2's softmax router, scaled and group-limited; hidden_act
// gelu (Mixtral's experts), relu (Qwen2-MoE's experts, shared expert and dense layer)
// and gelu_pytorch_tanh (Jamba's conv, MLPs and experts), gelu in a Granite hybrid (Mamba-2's
// conv, the shared MLP and experts).
const FIXTURES = [
  "mamba_bias",
  "mixtral_yarn",
  "jamba_periods",
  "qwen2_moe_sliding_dense",
  "olmoe_llama3_clip",
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
  "glm4_moe",
  "deepseek_v3",
  "deepseek_v2_groups",
  "mixtral_gelu",
  "qwen2_moe_relu",
  "jamba_gelu_tanh",
  "granite_hybrid_gelu",
  // Nemotron 3's relu² experts (DeepSeek-V3's router) and Super's latent projections;
  // quick_gelu experts.
  "nemotron_h_moe",
  "nemotron_h_moe_latent",
  "mixtral_quick_gelu",
  // ERNIE 4.5: RoPE on adjacent pairs, softmax + selection bias routing, biases on the
  // MLPs, shared experts and the LM head.
  "ernie4_5_moe",
  "ernie4_5_dense_bias",
  // Falcon-H1: parallel attention and Mamba-2 under μP multipliers; gate only, and norm
  // before the gate with biases everywhere and a Δ limit.
  "falcon_h1",
  "falcon_h1_norm_bias",
  // dots.llm1: per-head QK-norm with biases on all four projections, sliding layers, a
  // selection-biased sigmoid router over two groups, unnormalised and scaled.
  "dots1",
  "dots1_sliding_bias",
  // Hunyuan-A13B: per-head norms after RoPE, NTK-alpha RoPE, a shared MLP, biases.
  "hunyuan_moe",
  "hunyuan_moe_bias_lists",
  // MiniMax-M2: RMSNorms over the whole q and k projections, partial RoPE, sigmoid +
  // selection-bias routing renormalised; tied with a single KV head and linear RoPE.
  "minimax_m2",
  "minimax_m2_tied_linear",
  // FlexOlmo: norms after each sublayer, QK-norm over whole projections, softmax top-k with
  // and without renormalisation, biases, and OLMoE's balance loss per layer.
  "flex_olmo",
  "flex_olmo_bias_norm",
  // K-EXAONE: global layers without RoPE beside sliding ones, grouped sigmoid routing.
  "exaone_moe",
  "exaone_moe_global_groups",
  // GLM-4.7-Flash: latent attention (interleaved or halves RoPE, with and without the
  // query bottleneck), grouped sigmoid routing, dense layers by mlp_layer_types.
  "glm4_moe_lite",
  "glm4_moe_lite_groups",
  // LFM2-MoE and LFM2: short convolutions (the conv's gradient through B·x and the C gate),
  // per-head QK-norm, sigmoid + bias routing scaled ×1.5; conv biases, untied.
  "lfm2_moe",
  "lfm2_bias_untied",
];

for (const name of FIXTURES) {
  Deno.test(`hf grads: ${name}: Kiln's float64 loss and gradients are transformers'`, async () => {
    const ref = await reference(name);
    const k = await kilnGrads(`${ROOT}${name}`, ref.tokens, { auxCoef: ref.aux?.coef, cpu: true });
    // The summaries hold 7 significant digits: that, not the math, bounds the agreement.
    check(name, ref, k, 1e-7, 2e-5);
  });
}

Deno.test("hf grads: mamba_bias: the device's f32 loss and gradients are transformers'", async () => {
  const ref = await reference("mamba_bias");
  const k = await kilnGrads(`${ROOT}mamba_bias`, ref.tokens, { device: await gpu() });
  check("mamba_bias (device)", ref, k, 1e-5, 1e-4);
});
