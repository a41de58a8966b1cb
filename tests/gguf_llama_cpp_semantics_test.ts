/**
 * Kiln's GGUF support held to llama.cpp's own definitions, one test per discrepancy
 * found between them. Every expected value below comes from llama.cpp's source (cited
 * by file and function), never from Kiln's output:
 *
 * - `src/models/qwen2moe.cpp`: the graph passes norm_w = false to `build_moe_ffn`
 *   and never reads `expert_weights_norm`; `load_arch_tensors` requires a router, the
 *   routed experts, the gated shared expert and `output.weight` in every file;
 * - `src/models/olmoe.cpp` `load_arch_tensors`: `output.weight` is required too
 *   (llama, mamba and jamba fall back to `token_embd.weight`);
 * - `src/llama-model.cpp` `load_hparams`: a RoPE scaling factor of 0 (or none) is
 *   freq_scale 1, i.e. no scaling; the factor falls back to `rope.scale_linear`;
 * - `src/llama-vocab.cpp` `llama_vocab::impl::load`: a "gpt2" vocabulary's BOS and
 *   EOS default to id 11; each `tokenizer.ggml.pre` name it accepts selects the
 *   split regexes of `llm_tokenizer_bpe`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { GgufMetadata } from "../app/gguf/metadata.ts";
import type { GgufEntry, GgufValue } from "../app/gguf/value.ts";
import {
  convertToGguf,
  ggufArchMetadata,
  ggufTensorPlans,
  ggufTensorsFromHf,
  hfConfigFromGguf,
  openGgufModel,
} from "../app/gguf/arch.ts";
import { GGUF_PRE_TOKENIZERS, tokenizerFromGguf } from "../app/gguf/tokenizer.ts";

const u32 = (value: number): GgufEntry => ({ type: "u32", value });
const f32 = (value: number): GgufEntry => ({ type: "f32", value });

const QWEN2_MOE = {
  architectures: ["Qwen2MoeForCausalLM"],
  vocab_size: 64,
  hidden_size: 48,
  intermediate_size: 64,
  moe_intermediate_size: 40,
  shared_expert_intermediate_size: 56,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_experts: 6,
  num_experts_per_tok: 2,
  rms_norm_eps: 1e-6,
  max_position_embeddings: 128,
  norm_topk_prob: false,
  tie_word_embeddings: false,
};

const OLMOE = {
  architectures: ["OlmoeForCausalLM"],
  vocab_size: 64,
  hidden_size: 48,
  intermediate_size: 40,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  num_experts: 4,
  num_experts_per_tok: 2,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 128,
  tie_word_embeddings: true,
};

const MIXTRAL = {
  architectures: ["MixtralForCausalLM"],
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_local_experts: 3,
  num_experts_per_tok: 2,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 128,
  tie_word_embeddings: true,
};

/** The GGUF metadata of a Qwen2-MoE model as llama.cpp's converter writes it, plus `extra`. */
function qwen2MoeMetadata(extra: Array<[string, GgufEntry]> = []): GgufMetadata {
  return new GgufMetadata(
    "qwen.gguf",
    new Map<string, GgufEntry>([
      ["general.architecture", { type: "string", value: "qwen2moe" }],
      ["qwen2moe.block_count", u32(1)],
      ["qwen2moe.context_length", u32(128)],
      ["qwen2moe.embedding_length", u32(48)],
      ["qwen2moe.feed_forward_length", u32(64)],
      ["qwen2moe.attention.head_count", u32(4)],
      ["qwen2moe.attention.head_count_kv", u32(2)],
      ["qwen2moe.rope.freq_base", f32(10000)],
      ["qwen2moe.attention.layer_norm_rms_epsilon", f32(1e-6)],
      ["qwen2moe.expert_count", u32(6)],
      ["qwen2moe.expert_used_count", u32(2)],
      ["qwen2moe.expert_feed_forward_length", u32(40)],
      ["qwen2moe.expert_shared_feed_forward_length", u32(56)],
      ["qwen2moe.vocab_size", u32(64)],
      ...extra,
    ]),
  );
}

/** Every HF tensor `config` needs, with its shape (from the shared tensor table). */
function hfShapes(config: Record<string, unknown>) {
  const m = new Map<string, { shape: readonly number[] }>();
  for (const p of ggufTensorPlans(parseConfig(config))) {
    for (const s of p.sources) m.set(s, { shape: p.sourceShape });
  }
  return m;
}

// ---------------------------------------------------------------------------------------
// Qwen2-MoE: top-k weights are never renormalised

Deno.test("llama.cpp semantics: qwen2moe ignores expert_weights_norm (norm_w is false)", () => {
  // src/models/qwen2moe.cpp: build_moe_ffn(..., LLM_FFN_SILU, /*norm_w*/ false, ...) and
  // load_arch_hparams reads no expert_weights_norm, so a file saying true means false.
  for (const norm of [undefined, false, true]) {
    const extra: Array<[string, GgufEntry]> = norm === undefined
      ? []
      : [["qwen2moe.expert_weights_norm", { type: "bool", value: norm }]];
    const { config } = hfConfigFromGguf(qwen2MoeMetadata(extra), new Map());
    assert.equal(config.norm_topk_prob, false, `expert_weights_norm ${norm}`);
  }
});

Deno.test("llama.cpp semantics: a Qwen2-MoE llama.cpp cannot hold is refused when writing", () => {
  // A file llama.cpp would compute differently (renormalised top-k), or would not load:
  // qwen2moe.cpp load_arch_tensors creates ffn_gate_inp and the *_shexp tensors with
  // flag 0 in every block.
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ norm_topk_prob: true }, /^config\.json: Qwen2-MoE with norm_topk_prob true/],
    [{ mlp_only_layers: [1] }, /^config\.json: Qwen2-MoE with dense \(non-MoE\) layers 1 /],
    [{ decoder_sparse_step: 2 }, /^config\.json: Qwen2-MoE with dense \(non-MoE\) layers 0 /],
    [{ shared_expert_intermediate_size: 0 }, /^config\.json: Qwen2-MoE with no shared expert/],
  ];
  for (const [change, re] of cases) {
    assert.throws(
      () => ggufArchMetadata({ ...QWEN2_MOE, ...change }),
      (e: unknown) => e instanceof TypeError && re.test(e.message),
      JSON.stringify(change),
    );
  }
  // The plain model is written, without a key llama.cpp would not read.
  const meta = new Map(ggufArchMetadata(QWEN2_MOE));
  assert.equal(meta.has("qwen2moe.expert_weights_norm"), false);
  assert.deepEqual(meta.get("qwen2moe.expert_shared_feed_forward_length"), u32(56));
});

// ---------------------------------------------------------------------------------------
// output.weight is required by qwen2moe and olmoe

Deno.test("llama.cpp semantics: tied Qwen2-MoE and OLMoE get an output.weight; llama does not", () => {
  // qwen2moe.cpp / olmoe.cpp load_arch_tensors: output = create_tensor(..., {n_embd,
  // n_vocab}, 0), required; llama's is TENSOR_NOT_REQUIRED with token_embd as fallback.
  for (const config of [{ ...QWEN2_MOE, tie_word_embeddings: true }, OLMOE]) {
    const plans = ggufTensorsFromHf(config, hfShapes(config));
    const out = plans.filter((p) => p.name === "output.weight");
    assert.equal(out.length, 1, config.architectures[0]);
    assert.deepEqual(out[0].sources, ["model.embed_tokens.weight"]);
    assert.deepEqual(out[0].shape, [64, config.hidden_size]);
    assert.equal(plans.at(-1)!.name, "output.weight");
  }
  const mixtral = ggufTensorsFromHf(MIXTRAL, hfShapes(MIXTRAL));
  assert.equal(mixtral.some((p) => p.name === "output.weight"), false);
});

Deno.test("llama.cpp semantics: a tied OLMoE written by Kiln opens with output = embeddings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_gguf_llama_cpp_" });
  try {
    await writeRandomCheckpoint(dir, OLMOE, { seed: 7 });
    const ckpt = await Checkpoint.open(dir);
    const out = join(dir, "olmoe.gguf");
    try {
      await convertToGguf(
        { config: OLMOE, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
        out,
        { type: "f32" },
      );
    } finally {
      ckpt.close();
    }
    using model = await openGgufModel(out);
    const f = model.file;
    assert.deepEqual(f.info("output.weight").shape, [64, 48]);
    assert.deepEqual(await f.readF32("output.weight"), await f.readF32("token_embd.weight"));
    assert.equal(model.config.tie_word_embeddings, false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------
// RoPE scaling factor 0

Deno.test("llama.cpp semantics: rope scaling factor 0 is no scaling; rope.scale_linear is read", () => {
  // llama-model.cpp load_hparams: rope_freq_scale_train = ropescale == 0.0f ? 1.0f :
  // 1.0f/ropescale, the factor read from rope.scaling.factor else rope.scale_linear, and
  // the scaling type defaulting to "linear".
  const rope = (extra: Array<[string, GgufEntry]>) =>
    hfConfigFromGguf(qwen2MoeMetadata(extra), new Map()).config.rope_scaling;
  const linear = { type: "string", value: "linear" } as const;
  assert.equal(rope([["qwen2moe.rope.scaling.factor", f32(0)]]), undefined);
  assert.equal(
    rope([["qwen2moe.rope.scaling.type", linear], ["qwen2moe.rope.scaling.factor", f32(0)]]),
    undefined,
  );
  assert.equal(rope([["qwen2moe.rope.scaling.type", linear]]), undefined);
  assert.deepEqual(rope([["qwen2moe.rope.scale_linear", f32(2)]]), {
    rope_type: "linear",
    factor: 2,
  });
  assert.deepEqual(
    rope([["qwen2moe.rope.scaling.type", linear], ["qwen2moe.rope.scaling.factor", f32(4)]]),
    { rope_type: "linear", factor: 4 },
  );
});

// ---------------------------------------------------------------------------------------
// "gpt2" vocabularies: default special ids and pre-tokenizer names

const K = "tokenizer.ggml.";
const strings = (values: string[]): GgufValue => ({ type: "string", values });

/** A byte-level vocabulary: "0".."9" (ids 0-9), "a" "b" "c" (10-12), then one token per merge. */
function bpe(pre: string | undefined, merges: string[], extra: Array<[string, GgufValue]> = []) {
  const base = [..."0123456789abc"];
  const made = merges.map((m) => m.replace(" ", ""));
  const meta = new Map<string, GgufValue>([
    [K + "model", "gpt2"],
    [K + "tokens", strings([...base, ...made])],
    [K + "merges", strings(merges)],
    ...extra,
  ]);
  if (pre !== undefined) meta.set(K + "pre", pre);
  return meta;
}

Deno.test("llama.cpp semantics: a gpt2 vocabulary's BOS and EOS default to id 11", () => {
  // llama-vocab.cpp load: for tokenizer_model "gpt2", special_bos_id = special_eos_id = 11
  // until tokenizer.ggml.bos_token_id / eos_token_id say otherwise.
  const tok = tokenizerFromGguf(bpe("gpt-2", []), "neox.gguf");
  assert.equal(tok.bosId, 11);
  assert.equal(tok.eosId, 11);
  // add_bos_token true with no id: llama.cpp prepends token 11.
  const withBos = tokenizerFromGguf(
    bpe("gpt-2", [], [[K + "add_bos_token", true]]),
    "neox.gguf",
  );
  assert.deepEqual(withBos.encode("ac", { addSpecialTokens: true }), [11, 10, 12]);
  const keyed = tokenizerFromGguf(
    bpe("gpt-2", [], [[K + "bos_token_id", 3], [K + "eos_token_id", 4]]),
    "neox.gguf",
  );
  assert.equal(keyed.bosId, 3);
  assert.equal(keyed.eosId, 4);
});

Deno.test("llama.cpp semantics: the pre-tokenizer names llama.cpp accepts and their regexes", () => {
  // llama-vocab.cpp load maps each name to a pre type; llm_tokenizer_bpe gives its
  // regex_exprs. "1 2" merges only if no regex separates the digits.
  const digits = (pre: string) =>
    tokenizerFromGguf(bpe(pre, ["1 2", "12 3", "123 4"]), `${pre}.gguf`).encode("1234");
  // GPT-2's ` ?\p{N}+` keeps the digits together (gpt2, mpt, olmo, jais, jina-*, roberta-bpe).
  for (const pre of ["gpt-2", "jina-v2-code", "roberta-bpe", "gigachat", "jais"]) {
    assert.deepEqual(digits(pre), [15], pre);
  }
  // STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL, EXAONE, MINERVA: "\p{N}" first.
  for (const pre of ["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone"]) {
    assert.deepEqual(digits(pre), [1, 2, 3, 4], pre);
  }
  // FALCON: GPT-2's regex, then "[0-9][0-9][0-9]" splits "1234" into "123", "4".
  assert.deepEqual(digits("falcon"), [14, 4]);
  // CHATGLM4 uses Llama 3's regex: "\p{N}{1,3}" gives "123", "4".
  assert.deepEqual(digits("chatglm-bpe"), [14, 4]);
  // DEEPSEEK_CODER ends with "\p{N}": one digit each.
  assert.deepEqual(digits("deepseek-coder"), [1, 2, 3, 4]);
  // BLOOM, PORO, GPT3_FINNISH: " ?[^(\s|.,!?…。，、।۔،)]+" keeps the run; VIKING adds "\p{N}".
  for (const pre of ["bloom", "poro-chat", "gpt3-finnish"]) assert.deepEqual(digits(pre), [15]);
  assert.deepEqual(digits("viking"), [1, 2, 3, 4]);
  for (const pre of ["falcon", "starcoder", "bloom", "viking", "chatglm-bpe"]) {
    assert.ok(GGUF_PRE_TOKENIZERS.includes(pre), pre);
  }
  // A name llama.cpp does not know stays a TypeError naming the key.
  assert.throws(
    () => tokenizerFromGguf(bpe("no-such-pre", []), "x.gguf"),
    /^TypeError: x\.gguf: tokenizer\.ggml\.pre "no-such-pre" is not supported/,
  );
});

Deno.test("llama.cpp semantics: Falcon-Mamba's inner norms run at the layers' epsilon unless Kiln's key says", () => {
  // llama.cpp's mamba graph applies ggml_rms_norm(·, norm_rms_eps) to Δ, B and C when
  // ssm.dt_b_c_rms is set; its converter writes no mixer_rms_eps.
  const u32 = (v: number): GgufEntry => ({ type: "u32", value: v });
  const entries: Array<[string, GgufEntry]> = [
    ["general.architecture", { type: "string", value: "mamba" }],
    ["mamba.block_count", u32(2)],
    ["mamba.embedding_length", u32(32)],
    ["mamba.context_length", u32(1048576)],
    ["mamba.vocab_size", u32(64)],
    ["mamba.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
    ["mamba.ssm.conv_kernel", u32(4)],
    ["mamba.ssm.inner_size", u32(64)],
    ["mamba.ssm.state_size", u32(16)],
    ["mamba.ssm.time_step_rank", u32(2)],
    ["mamba.ssm.dt_b_c_rms", { type: "bool", value: true }],
  ];
  const read = (extra: Array<[string, GgufEntry]>) =>
    parseConfig(
      hfConfigFromGguf(new GgufMetadata("f.gguf", new Map([...entries, ...extra])), new Map())
        .config,
    );
  const llama = read([]);
  assert.equal(llama.architecture, "FalconMambaForCausalLM");
  assert.ok(Math.abs(llama.mamba!.weightlessNorms!.eps - 1e-5) < 1e-12);
  const kiln = read([["mamba.ssm.dt_b_c_rms_eps", { type: "f32", value: 1e-6 }]]);
  assert.ok(Math.abs(kiln.mamba!.weightlessNorms!.eps - 1e-6) < 1e-12);
});
