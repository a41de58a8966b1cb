/**
 * Bamba (`BambaForCausalLM`) beyond the logits of `hf_fixtures_test.ts`: which
 * layers attend, the partial RoPE's share of each head (BambaConfig's 0.5
 * default, an explicit factor, 1 included), and refusals by field.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../models/architectures/mod.ts";
import { ggufArchMetadata } from "../app/gguf/arch.ts";

/** Bamba-9B's shape, shrunk: 4 layers, attention at 1 and 3, heads of 16. */
const BASE = {
  architectures: ["BambaForCausalLM"],
  vocab_size: 128,
  hidden_size: 64,
  intermediate_size: 96,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  attn_layer_indices: [1, 3],
  mamba_n_heads: 8,
  mamba_d_state: 16,
};

Deno.test("bamba: layers, Mamba-2 mixers and the partial RoPE's share of a head", () => {
  const cfg = parseConfig(BASE);
  assert.deepEqual(cfg.pattern.map((l) => l.mixer), ["mamba", "attention", "mamba", "attention"]);
  assert.ok(cfg.pattern.every((l) => l.ffn === "mlp"));
  // BambaConfig sets partial_rotary_factor 0.5 where rope_parameters gives none.
  assert.equal(cfg.attention!.headDim, 16);
  assert.equal(cfg.attention!.rotaryDim, 8);
  assert.equal(cfg.attention!.kvHeads, 2);
  assert.deepEqual(cfg.mamba!.ssd, {
    heads: 8,
    headDim: 16,
    groups: 1,
    normGroups: 1,
    dtLimit: [0, Infinity],
  });
  assert.equal(cfg.paddingIdx, 0, "BambaConfig's pad_token_id 0");
  const quarter = parseConfig({
    ...BASE,
    rope_parameters: { rope_type: "default", rope_theta: 1e4, partial_rotary_factor: 0.25 },
  });
  assert.equal(quarter.attention!.rotaryDim, 4);
  // An explicit 1 is the whole head, not the class's 0.5.
  const whole = parseConfig({
    ...BASE,
    rope_parameters: { rope_type: "default", rope_theta: 1e4, partial_rotary_factor: 1 },
  });
  assert.equal(whole.attention!.rotaryDim, undefined);
  // transformers 4's layout: the factor at the top level.
  assert.equal(parseConfig({ ...BASE, partial_rotary_factor: 0.75 }).attention!.rotaryDim, 12);
  // No attention layer: no attention settings at all.
  assert.equal(parseConfig({ ...BASE, attn_layer_indices: [] }).attention, undefined);
});

Deno.test("bamba: configs it cannot run are refused by field", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ attn_layer_indices: "1,3" }, /"attn_layer_indices" must be a list of layer indices/],
    [{ partial_rotary_factor: 0.3 }, /rotates 4 values|rotates 4\.8/],
    [{ partial_rotary_factor: 0.05 }, /partial_rotary_factor 0\.05 of head_dim 16 rotates no/],
    [{ partial_rotary_factor: 1.5 }, /partial_rotary_factor must be in \(0, 1\], got 1\.5/],
    [{ mamba_n_heads: 7 }, /mamba_n_heads 7 × mamba_d_head 18 must equal/],
    [{ mlp_bias: true }, /mlp_bias true is not supported by BambaForCausalLM/],
    [{ hidden_act: "relu6" }, /hidden_act "relu6" is not supported/],
  ];
  for (const [edit, pattern] of cases) {
    if (edit.partial_rotary_factor === 0.3) {
      // int(16 · 0.3) = 4: transformers rotates 4 values, and so does Kiln.
      assert.equal(parseConfig({ ...BASE, ...edit }).attention!.rotaryDim, 4);
      // int(16 · 0.1) = 1: one frequency (θ⁰), on the 2 values cos and sin cover.
      const one = parseConfig({ ...BASE, partial_rotary_factor: 0.1 }).attention!;
      assert.deepEqual([one.rotaryDim, one.ropeFreqDim], [2, 1]);
      continue;
    }
    assert.throws(() => parseConfig({ ...BASE, ...edit }), pattern, JSON.stringify(edit));
  }
  // The other families still refuse a partial RoPE (their rotary code spans the head).
  assert.throws(
    () =>
      parseConfig({
        architectures: ["MixtralForCausalLM"],
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        num_key_value_heads: 4,
        partial_rotary_factor: 0.5,
      }),
    /partial_rotary_factor 0\.5 is not supported \(RoPE over the whole head only\)/,
  );
  // llama.cpp writes Bamba as granitehybrid with the whole head rotating unless
  // config.json names attn_rotary_emb: Kiln writes no GGUF for it.
  assert.throws(() => ggufArchMetadata(BASE), /BambaForCausalLM has no llama\.cpp architecture/);
});
