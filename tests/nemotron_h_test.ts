/**
 * Nemotron-H (`NemotronHForCausalLM`) beyond the logits of `hf_fixtures_test.ts`:
 * its block list in both config forms, the transformers-4 field names, what
 * transformers ignores (tying, attention biases), and refusals by field.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../models/architectures/mod.ts";
import { promptsThroughDecode } from "../models/mamba2.ts";
import { ggufArchMetadata } from "../app/gguf/arch.ts";

/** Nemotron-Nano-9B-v2's shape, shrunk: M - * - M. */
const BASE = {
  architectures: ["NemotronHForCausalLM"],
  vocab_size: 128,
  hidden_size: 64,
  layers_block_type: ["linear_attention", "mlp", "full_attention", "mlp", "linear_attention"],
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  intermediate_size: 96,
  mamba_num_heads: 8,
  mamba_head_dim: 16,
  n_groups: 4,
  ssm_state_size: 16,
};

Deno.test("nemotron-h: blocks of one kind each, in both config forms", () => {
  const cfg = parseConfig(BASE);
  assert.deepEqual(cfg.pattern.map((l) => `${l.mixer}/${l.ffn}`), [
    "mamba/none",
    "none/mlp",
    "attention/none",
    "none/mlp",
    "mamba/none",
  ]);
  assert.equal(cfg.layers, 5);
  assert.equal(cfg.mlpActivation, "relu2");
  assert.equal(cfg.attention!.ropeTheta, 0, "no RoPE");
  assert.equal(cfg.attention!.headDim, 16);
  assert.deepEqual(cfg.mamba!.ssd, {
    heads: 8,
    headDim: 16,
    groups: 4,
    normGroups: 4,
    dtLimit: [0.001, Infinity],
  });
  assert.equal(cfg.mamba!.inner, 128, "heads × head_dim, not expand × hidden");
  // The Δ floor applies in the prefill only: prompts never take the decode step.
  assert.equal(promptsThroughDecode(cfg), false);
  // transformers 4's pattern string and field names say the same.
  const { layers_block_type: _, n_groups: __, ...rest } = BASE;
  const old = parseConfig({
    ...rest,
    hybrid_override_pattern: "M-*-M",
    num_hidden_layers: 5,
    mamba_n_groups: 4,
    mamba_dt_min: 0.001,
  });
  assert.deepEqual(old.pattern, cfg.pattern);
  assert.deepEqual(old.mamba, cfg.mamba);
  // What transformers' classes ignore: tying (NemotronHForCausalLM ties nothing),
  // attention biases (its projections have none); head_dim defaults to 128.
  const ignored = parseConfig({ ...BASE, tie_word_embeddings: true, attention_bias: true });
  assert.equal(ignored.tieEmbeddings, false);
  assert.equal(ignored.attention!.qkvBias, false);
  const { head_dim: ___, ...noHead } = BASE;
  assert.equal(parseConfig(noHead).attention!.headDim, 128);
});

Deno.test("nemotron-h: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { layers_block_type: ["linear_attention", "moe"], moe_latent_size: 0 },
      /field "moe_latent_size" must be > 0, got 0/,
    ],
    [
      { layers_block_type: ["moe"], n_routed_experts: 6, n_group: 4, topk_group: 2 },
      /"n_group" \(4\) must split the 6 experts/,
    ],
    [
      { layers_block_type: ["moe"], n_routed_experts: 4, num_experts_per_tok: 5 },
      /num_experts_per_tok 5 must be between 1 and n_routed_experts 4/,
    ],
    [{ layers_block_type: ["mamba2"] }, /block 0 "mamba2" is not one of/],
    [{ layers_block_type: undefined, hybrid_override_pattern: "M-X" }, /\[2\] "X" is not one of M/],
    [{ mlp_hidden_act: "silu" }, /mlp_hidden_act "silu" is not supported .*only "relu2"/],
    [{ mamba_hidden_act: "relu6" }, /mamba_hidden_act "relu6" is not supported/],
    [{ mlp_bias: true }, /mlp_bias true is not supported/],
    [{ n_groups: 3 }, /mamba_num_heads 8 must be a multiple of n_groups 3/],
  ];
  for (const [edit, pattern] of cases) {
    assert.throws(() => parseConfig({ ...BASE, ...edit }), pattern, JSON.stringify(edit));
  }
  // NemotronHConfig's default block list holds a MoE block, with the class's defaults.
  const { layers_block_type: _, ...none } = BASE;
  const moe = parseConfig(none).moe!;
  assert.deepEqual(
    [moe.experts, moe.topK, moe.ff, moe.sharedExpert, moe.router, moe.normTopk, moe.activation],
    [8, 2, 7688, { ff: 7688, gated: false }, "sigmoid_bias", true, { kind: "relu2" }],
  );
  assert.equal(moe.groups, undefined); // n_group 1: every group kept
  assert.equal(moe.auxLossCoef, 0); // balanced by its selection bias, as transformers trains it
  // NemotronHMLP takes `intermediate_size or config.intermediate_size`: a 0 width is the MLP's.
  const zero = parseConfig({ ...none, moe_shared_expert_intermediate_size: 0 }).moe!;
  assert.deepEqual(zero.sharedExpert, { ff: BASE.intermediate_size, gated: false });
  // GGUF: llama.cpp's nemotron_h_moe reads every feed-forward block as experts.
  assert.throws(
    () => ggufArchMetadata({ ...BASE, layers_block_type: ["linear_attention", "mlp", "moe"] }),
    /both relu² MLP and routed-expert blocks .* has no GGUF form/,
  );
});
