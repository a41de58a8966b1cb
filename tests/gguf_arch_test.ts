/**
 * GGUF ↔ Hugging Face mapping (app/gguf/arch.ts): for each architecture a
 * transformers-written checkpoint converted with `convertToGguf` at f32 and
 * opened with `openGgufModel` gives back every tensor (bit-exact; A_log through
 * −exp and log to within an ulp) and a config that parses to the same
 * ModelConfig; a GGUF built here by hand with llama.cpp's names and a q/k
 * permuted with convert_hf_to_gguf.py's formula maps back to HF rows (stacked
 * and per-expert layouts); q8_0 / q4_k tensors keep their bytes, with
 * llama.cpp's f32 exceptions and row-length fallbacks; and the errors name
 * what is wrong.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { mulberry32 } from "../core/random.ts";
import { quantize } from "../core/quant/codecs.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { openWeights } from "../app/model/source.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { encodeGguf, type GgufEntry, type GgufTensorSpec } from "../app/gguf/mod.ts";
import {
  convertToGguf,
  ggufArchMetadata,
  type GgufOutType,
  ggufTensorsFromHf,
  openGgufModel,
} from "../app/gguf/arch.ts";
import { rejectsWith, withTmp } from "./_util.ts";
import { writeTinyJamba } from "./fixtures/tiny_checkpoints.ts";

const FIXTURES = new URL("./fixtures/hf/", import.meta.url).pathname;

/** Converts the checkpoint in `dir` to `out` and returns its config and the open checkpoint. */
async function convert(dir: string, out: string, type: GgufOutType) {
  const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  // Through openWeights: Granite's fused input_linear tensors are read as their parts.
  const w = await openWeights(dir, { config: parseConfig(config) });
  const ckpt = {
    ...w,
    tensors: w.tensors,
    info: (n: string) => w.info(n),
    readRaw: (n: string) => w.readRaw(n),
    readF32: async (n: string) => await w.readAs(n, "f32") as Float32Array,
    close: () => w.close(),
  };
  await convertToGguf({ config, tensors: ckpt.tensors, readF32: ckpt.readF32 }, out, { type });
  return { config, ckpt };
}

const CASES: Array<[string, string]> = [
  ["mixtral_gqa_sw", "llama"],
  ["mixtral_hd_top3", "llama"],
  ["mamba_bias", "mamba"],
  ["jamba", "jamba"],
  ["qwen2_moe", "qwen2moe"],
  ["olmoe", "olmoe"],
  ["qwen3_moe", "qwen3moe"],
  ["falcon_mamba", "mamba"],
  ["mamba2", "mamba2"],
  ["granite_hybrid", "granitehybrid"],
];

for (const [fixture, arch] of CASES) {
  Deno.test(`gguf arch: ${fixture} → GGUF (f32) → HF round trip`, async () => {
    await withTmp(async (tmp) => {
      const out = join(tmp, "model.gguf");
      const { config, ckpt } = await convert(join(FIXTURES, fixture), out, "f32");
      const model = await openGgufModel(out);
      try {
        assert.equal(model.architecture, arch);
        assert.deepEqual(parseConfig(model.config), parseConfig(config));
        if (config.model_type === "falcon_mamba") {
          assert.equal(model.file.bool("mamba.ssm.dt_b_c_rms"), true);
          // Kiln's own key for mixer_rms_eps; without it (llama.cpp's converter writes
          // none) the norms run at the layers' epsilon, as llama.cpp runs them.
          assert.ok(Math.abs(model.file.number("mamba.ssm.dt_b_c_rms_eps") - 1e-6) < 1e-12);
        }
        assert.deepEqual([...model.tensors.keys()].sort(), [...ckpt.tensors.keys()].sort());
        for (const [name, t] of model.tensors) {
          assert.deepEqual(t.shape, ckpt.info(name).shape, name);
          assert.equal(t.type.name, "f32", name);
          const got = await model.read(name);
          const want = await ckpt.readRaw(name);
          assert.equal(got.length, t.bytes, name);
          if (!name.endsWith(".A_log")) {
            assert.deepEqual(got, want, name);
            continue;
          }
          // −exp then log: f32 rounding in between, so within an ulp or so.
          const g = new Float32Array(got.buffer), w = new Float32Array(want.slice().buffer);
          for (let i = 0; i < w.length; i++) {
            assert.ok(Math.abs(g[i] - w[i]) <= 4e-7 * Math.max(1, Math.abs(w[i])), `${name}[${i}]`);
          }
        }
        // The stored layout is llama.cpp's.
        const f = model.file;
        const cfg = parseConfig(config);
        if (cfg.mamba?.ssd) {
          // llama.cpp's mamba2 layout and keys (convert_hf_to_gguf.py's Mamba2Model).
          const { inner: I, stateSize: N, convKernel, ssd } = cfg.mamba;
          const conv = I + 2 * ssd.groups * N;
          assert.deepEqual(f.info("blk.0.ssm_conv1d.weight").shape, [conv, convKernel]);
          assert.deepEqual(f.info("blk.0.ssm_a").shape, [ssd.heads, 1]);
          assert.deepEqual(f.info("blk.0.ssm_d").shape, [ssd.heads, 1]);
          assert.deepEqual(f.info("blk.0.ssm_dt.bias").shape, [ssd.heads]);
          assert.deepEqual(f.info("blk.0.ssm_norm.weight").shape, [ssd.groups, I / ssd.groups]);
          assert.equal(f.number(`${arch}.ssm.group_count`), ssd.groups);
          assert.equal(f.number(`${arch}.ssm.time_step_rank`), ssd.heads);
          assert.equal(f.number(`${arch}.ssm.inner_size`), I);
          if (arch === "mamba2") assert.equal(f.number("mamba2.attention.head_count"), 0);
          // Kiln's own key: transformers' norm over all channels (llama.cpp's is grouped).
          assert.equal(f.number(`${arch}.ssm.norm_group_count`), 1);
        } else if (cfg.mamba) {
          const { inner, convKernel } = cfg.mamba;
          assert.deepEqual(f.info("blk.0.ssm_conv1d.weight").shape, [inner, convKernel]);
          const a = await f.readF32("blk.0.ssm_a");
          assert.ok(a.every((x) => x < 0), "ssm_a holds −exp(A_log)");
        }
        if (arch === "granitehybrid") {
          // As llama.cpp's converter writes them (its GraniteHybridModel), but for RoPE:
          // llama.cpp's switch is on where transformers rotates (position_embedding_type).
          assert.deepEqual(f.array("granitehybrid.attention.head_count_kv").values, [0, 2, 0, 2]);
          assert.equal(f.bool("granitehybrid.rope.scaling.finetuned"), true);
          const scale = (k: string) => Math.fround(f.number(`granitehybrid.${k}`));
          assert.equal(scale("embedding_scale"), Math.fround(1.7));
          assert.equal(scale("residual_scale"), Math.fround(0.6));
          assert.equal(scale("attention.scale"), Math.fround(0.2));
          assert.equal(scale("logit_scale"), Math.fround(1.6));
          assert.equal(f.number("granitehybrid.feed_forward_length"), 16, "the experts' width");
          assert.equal(f.number("granitehybrid.expert_shared_feed_forward_length"), 24);
          assert.ok(f.tensors.has("blk.0.ffn_up_shexp.weight"));
          assert.ok(!f.tensors.has("blk.0.ffn_gate_inp_shexp.weight"), "an ungated shared MLP");
        }
        if (arch === "jamba") {
          const kv = f.array("jamba.attention.head_count_kv").values;
          assert.deepEqual(kv, [0, 2, 0, 0, 2, 0]);
          assert.ok(f.tensors.has("blk.1.ffn_gate_exps.weight"));
          assert.ok(f.tensors.has("blk.0.ffn_gate.weight"));
        }
        if (arch === "llama") {
          // convert_hf_to_gguf.py's q/k order, checked against its formula written out below.
          const a = cfg.attention!;
          for (const [w, heads] of [["q", a.heads], ["k", a.kvHeads]] as const) {
            const hf = await ckpt.readF32(`model.layers.0.self_attn.${w}_proj.weight`);
            const rows = heads * a.headDim;
            assert.deepEqual(
              await f.readF32(`blk.0.attn_${w}.weight`),
              llamaCppPermute(hf, rows, cfg.hidden, heads),
            );
          }
        }
        if (arch === "qwen3moe") {
          // Per-head QK-norm: weights as wide as one head.
          assert.deepEqual(f.info("blk.0.attn_q_norm.weight").shape, [cfg.attention!.headDim]);
          assert.equal(f.number("qwen3moe.expert_feed_forward_length"), cfg.moe!.ff);
        }
        if (arch === "llama" || arch === "qwen2moe" || arch === "qwen3moe") {
          const E = Number(config.num_local_experts ?? config.num_experts);
          assert.equal(f.info("blk.0.ffn_gate_exps.weight").shape[0], E);
          assert.equal(f.info("blk.0.ffn_gate_inp.weight").type.name, "f32");
        }
        assert.equal(f.tensors.has("output.weight"), !cfg.tieEmbeddings);
      } finally {
        model.close();
        ckpt.close();
      }
    });
  });
}

const QUANT_CONFIG = {
  architectures: ["MixtralForCausalLM"],
  vocab_size: 40,
  hidden_size: 256,
  intermediate_size: 96, // experts' down rows are 96 long: no whole q4_k block
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_local_experts: 2,
  num_experts_per_tok: 2,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};

for (const type of ["q8_0", "q4_k"] as const) {
  Deno.test(`gguf arch: ${type} tensors keep their bytes; llama.cpp's f32 set and fallbacks`, async () => {
    await withTmp(async (tmp) => {
      await writeRandomCheckpoint(tmp, QUANT_CONFIG, { seed: 3 });
      const out = join(tmp, "model.gguf");
      const { config, ckpt } = await convert(tmp, out, type);
      const model = await openGgufModel(out);
      try {
        assert.equal(model.file.number("general.file_type"), type === "q8_0" ? 7 : 14);
        assert.deepEqual(parseConfig(model.config), parseConfig(config));
        for (const [name, t] of model.tensors) {
          const f32 = /norm\.weight$|\.gate\.weight$/.test(name);
          const want = f32 ? "f32" : type === "q4_k" && /\.w2\.weight$/.test(name)
            ? "q5_0" // llama-quantize's fallback for rows not whole super-blocks
            : type;
          assert.equal(t.type.name, want, name);
          const values = await ckpt.readF32(name);
          const expected = want === "f32"
            ? new Uint8Array(values.buffer)
            : quantize(want as "q8_0", values);
          // Rows are quantized independently, so undoing the q/k permutation on the
          // stored blocks gives exactly the blocks of the HF rows.
          assert.deepEqual(await model.read(name), expected, name);
        }
      } finally {
        model.close();
        ckpt.close();
      }
    });
  });
}

Deno.test("gguf arch: f16 converts weight matrices and keeps llama.cpp's f32 tensors", async () => {
  await withTmp(async (tmp) => {
    const out = join(tmp, "model.gguf");
    const { ckpt } = await convert(join(FIXTURES, "mamba_bias"), out, "f16");
    const model = await openGgufModel(out);
    try {
      assert.equal(model.file.number("general.file_type"), 1);
      for (const [name, t] of model.tensors) {
        const keep = /norm(_f)?\.weight$|\.bias$|conv1d\.weight$|\.A_log$|\.D$/.test(name);
        assert.equal(t.type.name, keep ? "f32" : "f16", name);
        if (keep) continue;
        const values = await ckpt.readF32(name);
        assert.deepEqual(await model.read(name), new Uint8Array(new Float16Array(values).buffer));
      }
    } finally {
      model.close();
      ckpt.close();
    }
  });
});

// ---------------------------------------------------------------------------
// A GGUF built by hand, with llama.cpp's names and layout.

const H = 8, FF = 16, E = 2, V = 10, NH = 2, NKV = 1, HD = 4;

/** convert_hf_to_gguf.py's LlamaModel.permute, written out as its reshape/swapaxes. */
function llamaCppPermute(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  // w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)
  const half = rows / nHead / 2;
  const out = new Float32Array(w.length);
  let o = 0;
  for (let h = 0; h < nHead; h++) {
    for (let b = 0; b < half; b++) {
      for (let a = 0; a < 2; a++) {
        const src = ((h * 2 + a) * half + b) * cols;
        out.set(w.subarray(src, src + cols), o);
        o += cols;
      }
    }
  }
  return out;
}

function random(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

const bytes = (x: Float32Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
const u32 = (value: number): GgufEntry => ({ type: "u32", value });

interface HandMade {
  metadata: Map<string, GgufEntry>;
  tensors: GgufTensorSpec[];
  hf: Map<string, Float32Array>;
}

/** A one-layer Mixtral as llama.cpp writes it; `perExpert` uses the older per-expert names. */
function handMadeMixtral(perExpert = false): HandMade {
  const metadata = new Map<string, GgufEntry>([
    ["general.architecture", { type: "string", value: "llama" }],
    ["llama.block_count", u32(1)],
    ["llama.context_length", u32(64)],
    ["llama.embedding_length", u32(H)],
    ["llama.feed_forward_length", u32(FF)],
    ["llama.attention.head_count", u32(NH)],
    ["llama.attention.head_count_kv", u32(NKV)],
    ["llama.rope.freq_base", { type: "f32", value: 1e6 }],
    ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
    ["llama.expert_count", u32(E)],
    ["llama.expert_used_count", u32(2)],
    ["llama.vocab_size", u32(V)],
    ["llama.rope.dimension_count", u32(HD)],
  ]);
  const hf = new Map<string, Float32Array>();
  const tensors: GgufTensorSpec[] = [];
  let seed = 1;
  const t = (name: string, shape: number[], data: Float32Array) =>
    tensors.push({ name, shape, type: "f32", data: bytes(data) });
  const plain = (name: string, hfName: string, shape: number[]) => {
    const x = random(shape.reduce((a, b) => a * b, 1), seed++);
    hf.set(hfName, x);
    t(name, shape, x);
  };
  const L = "model.layers.0";
  plain("token_embd.weight", "model.embed_tokens.weight", [V, H]);
  plain("blk.0.attn_norm.weight", `${L}.input_layernorm.weight`, [H]);
  const q = random(NH * HD * H, seed++), k = random(NKV * HD * H, seed++);
  hf.set(`${L}.self_attn.q_proj.weight`, q);
  hf.set(`${L}.self_attn.k_proj.weight`, k);
  t("blk.0.attn_q.weight", [NH * HD, H], llamaCppPermute(q, NH * HD, H, NH));
  t("blk.0.attn_k.weight", [NKV * HD, H], llamaCppPermute(k, NKV * HD, H, NKV));
  plain("blk.0.attn_v.weight", `${L}.self_attn.v_proj.weight`, [NKV * HD, H]);
  plain("blk.0.attn_output.weight", `${L}.self_attn.o_proj.weight`, [H, NH * HD]);
  plain("blk.0.ffn_norm.weight", `${L}.post_attention_layernorm.weight`, [H]);
  plain("blk.0.ffn_gate_inp.weight", `${L}.block_sparse_moe.gate.weight`, [E, H]);
  for (
    const [gg, w, shape] of [["gate", "w1", [FF, H]], ["down", "w2", [H, FF]], ["up", "w3", [
      FF,
      H,
    ]]] as const
  ) {
    const per = Array.from({ length: E }, () => random(shape[0] * shape[1], seed++));
    per.forEach((x, e) => hf.set(`${L}.block_sparse_moe.experts.${e}.${w}.weight`, x));
    if (perExpert) per.forEach((x, e) => t(`blk.0.ffn_${gg}.${e}.weight`, [...shape], x));
    else {
      const stacked = new Float32Array(E * shape[0] * shape[1]);
      per.forEach((x, e) => stacked.set(x, e * x.length));
      t(`blk.0.ffn_${gg}_exps.weight`, [E, ...shape], stacked);
    }
  }
  plain("output_norm.weight", "model.norm.weight", [H]);
  plain("output.weight", "lm_head.weight", [V, H]);
  return { metadata, tensors, hf };
}

async function writeHandMade(dir: string, m: HandMade): Promise<string> {
  const path = join(dir, "hand.gguf");
  await Deno.writeFile(path, encodeGguf({ metadata: m.metadata, tensors: m.tensors }));
  return path;
}

for (const perExpert of [false, true]) {
  Deno.test(`gguf arch: hand-made llama.cpp Mixtral (${perExpert ? "per-expert" : "stacked"} experts) maps back to HF`, async () => {
    await withTmp(async (tmp) => {
      const m = handMadeMixtral(perExpert);
      const model = await openGgufModel(await writeHandMade(tmp, m));
      try {
        const c = model.config;
        assert.deepEqual(
          [
            c.architectures,
            c.rope_theta,
            c.rms_norm_eps,
            c.tie_word_embeddings,
            c.num_local_experts,
          ],
          [["MixtralForCausalLM"], 1e6, 1e-5, false, E],
        );
        const cfg = parseConfig(c);
        assert.deepEqual([cfg.attention!.heads, cfg.attention!.kvHeads, cfg.attention!.headDim], [
          NH,
          NKV,
          HD,
        ]);
        assert.deepEqual([...model.tensors.keys()].sort(), [...m.hf.keys()].sort());
        for (const [name, x] of m.hf) {
          assert.deepEqual(await model.read(name), bytes(x), name);
        }
        const w2 = model.tensors.get("model.layers.0.block_sparse_moe.experts.1.w2.weight")!;
        assert.deepEqual(w2.shape, [H, FF]);
        assert.equal(
          w2.source,
          perExpert ? "blk.0.ffn_down.1.weight" : "blk.0.ffn_down_exps.weight",
        );
      } finally {
        model.close();
      }
    });
  });
}

Deno.test("gguf arch: errors name the architecture, key, tensor and expected shape", async () => {
  await withTmp(async (tmp) => {
    const open = async (edit: (m: HandMade) => void) => {
      const m = handMadeMixtral();
      edit(m);
      const path = await writeHandMade(tmp, m);
      return openGgufModel(path).then((model) => model.close());
    };
    await rejectsWith(
      open((m) => m.metadata.set("general.architecture", { type: "string", value: "gpt2" })),
      TypeError,
      [
        '"gpt2"',
        "llama, mamba, jamba, qwen2moe",
      ],
    );
    await rejectsWith(open((m) => m.metadata.delete("llama.expert_count")), TypeError, [
      '"llama"',
      "llama.expert_count",
      "dense Llama",
    ]);
    await rejectsWith(
      open((m) => m.metadata.delete("llama.attention.layer_norm_rms_epsilon")),
      RangeError,
      ["hand.gguf", "llama.attention.layer_norm_rms_epsilon", "missing"],
    );
    await rejectsWith(
      open((m) => {
        const i = m.tensors.findIndex((t) => t.name === "blk.0.attn_k.weight");
        m.tensors[i] = { ...m.tensors[i], shape: [H, H], data: new Uint8Array(H * H * 4) };
      }),
      RangeError,
      ["hand.gguf", '"blk.0.attn_k.weight"', "[8, 8]", "expected [4, 8]"],
    );
    await rejectsWith(
      open((m) => (m.tensors = m.tensors.filter((t) => t.name !== "blk.0.ffn_norm.weight"))),
      RangeError,
      ["hand.gguf", '"blk.0.ffn_norm.weight"', "missing", "post_attention_layernorm", "[8]"],
    );
    const extra = (name: string, values: number[]) =>
      open((m) =>
        m.tensors.push({
          name,
          shape: [values.length],
          type: "f32",
          data: new Uint8Array(Float32Array.from(values).buffer),
        })
      );
    await rejectsWith(extra("blk.0.attn_q.bias", [1, 2]), RangeError, [
      "hand.gguf",
      '"blk.0.attn_q.bias"',
      "not part of",
    ]);
    // llama3 RoPE as the converter writes it: one positive divisor per rotary pair.
    await rejectsWith(extra("rope_freqs.weight", [0, 1]), RangeError, [
      "hand.gguf",
      '"rope_freqs.weight"',
      "not > 0",
    ]);
    await rejectsWith(extra("rope_freqs.weight", [1, 2, 3, 4, 5, 6, 7]), RangeError, [
      "hand.gguf",
      '"rope_freqs.weight" has 7 factors, expected one per rotary pair',
    ]);
  });
});

Deno.test("gguf arch: HF side — metadata keys, missing and misshapen checkpoint tensors", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(FIXTURES, "jamba", "config.json")));
  const meta = new Map(ggufArchMetadata(config, { type: "q4_k" }));
  assert.equal(meta.get("general.architecture")?.value, "jamba");
  assert.equal(meta.get("general.file_type")?.value, 14);
  assert.deepEqual(meta.get("jamba.attention.head_count_kv"), {
    type: "array",
    value: { type: "i32", values: [0, 2, 0, 0, 2, 0] },
  });
  for (const k of ["ssm.conv_kernel", "ssm.inner_size", "ssm.state_size", "ssm.time_step_rank"]) {
    assert.ok(meta.has(`jamba.${k}`), k);
  }
  const ckpt = await Checkpoint.open(join(FIXTURES, "jamba"));
  try {
    const shapes = new Map([...ckpt.tensors].map(([n, t]) => [n, { shape: t.shape }]));
    const plans = ggufTensorsFromHf(config, shapes);
    assert.deepEqual(plans.find((p) => p.name === "blk.1.ffn_down_exps.weight")?.shape, [
      5,
      48,
      88,
    ]);
    const missing = new Map(shapes);
    missing.delete("model.layers.0.mamba.D");
    await rejectsWith(
      Promise.resolve().then(() => ggufTensorsFromHf(config, missing)),
      RangeError,
      [
        '"model.layers.0.mamba.D"',
        "missing",
        "[96]",
      ],
    );
    const wrong = new Map(shapes);
    wrong.set("model.layers.0.mamba.D", { shape: [95] });
    await rejectsWith(Promise.resolve().then(() => ggufTensorsFromHf(config, wrong)), RangeError, [
      '"model.layers.0.mamba.D"',
      "[95]",
      "expected [96]",
    ]);
  } finally {
    ckpt.close();
  }
});

Deno.test("gguf arch: OLMoE's keys, and the OLMoE settings llama.cpp's olmoe graph cannot compute", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(FIXTURES, "olmoe", "config.json")));
  const meta = new Map(ggufArchMetadata(config));
  assert.equal(meta.get("general.architecture")?.value, "olmoe");
  assert.equal(meta.get("olmoe.feed_forward_length")?.value, 40); // the experts' width
  assert.equal(meta.get("olmoe.expert_count")?.value, 6);
  assert.equal(meta.get("olmoe.rope.dimension_count"), undefined); // NeoX RoPE, not permuted
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ norm_topk_prob: true }, "norm_topk_prob true"],
    [{ clip_qkv: 8 }, "clip_qkv 8"],
    [{ attention_bias: true }, "attention_bias true"],
    [{ num_key_value_heads: 2 }, "num_key_value_heads 2"],
  ];
  for (const [change, part] of cases) {
    await rejectsWith(
      Promise.resolve().then(() => ggufArchMetadata({ ...config, ...change })),
      TypeError,
      ["OLMoE with", part, "llama.cpp's olmoe graph"],
    );
  }
});

Deno.test("gguf arch: the Qwen3-MoE settings llama.cpp's qwen3moe model cannot hold are refused", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(FIXTURES, "qwen3_moe", "config.json")));
  assert.equal(new Map(ggufArchMetadata(config)).get("qwen3moe.rope.dimension_count"), undefined);
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ norm_topk_prob: false }, "norm_topk_prob false"],
    [{ mlp_only_layers: [1] }, "dense (non-MoE) layers 1"],
    [{ attention_bias: true }, "attention_bias true"],
  ];
  for (const [change, part] of cases) {
    await rejectsWith(
      Promise.resolve().then(() => ggufArchMetadata({ ...config, ...change })),
      TypeError,
      ["Qwen3-MoE with", part, "has no GGUF form"],
    );
  }
  const sliding = { ...config, use_sliding_window: true, sliding_window: 8 };
  await rejectsWith(
    Promise.resolve().then(() => ggufArchMetadata(sliding)),
    TypeError,
    ["Qwen3MoeForCausalLM with sliding-window layers has no GGUF form"],
  );
});

Deno.test("gguf arch: Mamba-2 — llama.cpp's files run its grouped norm, Kiln's keep transformers'; what llama.cpp cannot hold is refused", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(FIXTURES, "mamba2", "config.json")));
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ use_bias: true }, "use_bias true"],
    [{ use_conv_bias: false }, "use_conv_bias false"],
  ];
  for (const [change, part] of cases) {
    await rejectsWith(
      Promise.resolve().then(() => ggufArchMetadata({ ...config, ...change })),
      TypeError,
      ["Mamba-2 with", part, "has no GGUF form"],
    );
  }
  // A limit on Δ travels in Kiln's own key.
  const limited = new Map(ggufArchMetadata({ ...config, time_step_limit: [0.01, 0.5] }));
  const limit = limited.get("mamba2.ssm.time_step_limit")!.value as { values: readonly unknown[] };
  assert.deepEqual(limit.values, [0.01, 0.5]);
  // Written as llama.cpp's converter writes it (no norm_group_count key): grouped.
  const grouped = { ...config, kiln_norm_groups: config.n_groups };
  const keys = new Map(ggufArchMetadata(grouped));
  assert.equal(keys.has("mamba2.ssm.norm_group_count"), false);
  await withTmp(async (tmp) => {
    const ckpt = await Checkpoint.open(join(FIXTURES, "mamba2"));
    const out = join(tmp, "m.gguf");
    try {
      await convertToGguf(
        { config: grouped, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
        out,
        { type: "f32" },
      );
    } finally {
      ckpt.close();
    }
    const model = await openGgufModel(out);
    try {
      assert.equal(parseConfig(model.config).mamba!.ssd!.normGroups, config.n_groups);
    } finally {
      model.close();
    }
  });
});

Deno.test("gguf arch: a Jamba with attention in every layer still carries the SSM keys and reads back", async () => {
  // llama.cpp's jamba loader requires ssm.conv_kernel / inner_size / state_size /
  // time_step_rank whatever the layers; a writer that left them out wrote a file
  // neither it nor Kiln's reader accepted (found by tools/transformers_differential.ts
  // --via-gguf). JambaConfig's defaults: d_conv 4, expand 2, d_state 16, rank ⌈h/16⌉.
  await withTmp(async (dir) => {
    const src = join(dir, "hf");
    await writeTinyJamba(src, {
      config: { num_hidden_layers: 2, attn_layer_period: 1, attn_layer_offset: 0 },
    });
    const { config, ckpt } = await convert(src, join(dir, "all_attention.gguf"), "f32");
    try {
      assert.ok(parseConfig(config).pattern.every((p) => p.mixer === "attention"));
      const meta = new Map(ggufArchMetadata(config, { type: "f32" }));
      const hidden = config.hidden_size as number;
      const rank = config.mamba_dt_rank;
      assert.deepEqual(
        ["ssm.conv_kernel", "ssm.inner_size", "ssm.state_size", "ssm.time_step_rank"].map((k) =>
          meta.get(`jamba.${k}`)?.value
        ),
        [
          config.mamba_d_conv ?? 4,
          (config.mamba_expand ?? 2) * hidden,
          config.mamba_d_state ?? 16,
          typeof rank === "number" ? rank : Math.ceil(hidden / 16),
        ],
      );
      const model = await openGgufModel(join(dir, "all_attention.gguf"));
      try {
        assert.deepEqual(parseConfig(model.config).pattern, parseConfig(config).pattern);
      } finally {
        model.close();
      }
    } finally {
      ckpt.close();
    }
  }, "kiln_gguf_jamba_");
});

Deno.test("gguf: a hidden_act other than silu is refused by name, not written as silu", async () => {
  for (const name of ["mixtral_gelu", "jamba_gelu_tanh", "mamba_gelu_new"]) {
    const config = JSON.parse(await Deno.readTextFile(join(FIXTURES, name, "config.json")));
    const want =
      /config\.json: hidden_act gelu(_tanh)? cannot be written to GGUF: llama\.cpp's (llama|jamba|mamba) applies silu/;
    assert.throws(() => ggufArchMetadata(config), TypeError);
    assert.throws(() => ggufArchMetadata(config), want);
    assert.throws(() => ggufTensorsFromHf(config, new Map()), want);
  }
});
