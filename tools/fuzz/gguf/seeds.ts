/**
 * The seeds of the GGUF fuzzer (`../gguf_loaders.ts`): tiny Mixtral, Mamba,
 * Jamba and Qwen2-MoE checkpoints (`tests/fixtures/tiny_checkpoints.ts`)
 * converted with Kiln's own `convertToGguf` at f32, f16, q8_0 and q4_k, with
 * the `tokenizer.ggml.*` metadata of their tokenizer.json, and hand-made files
 * (`encodeGguf`) holding every metadata value type and every tensor type Kiln
 * reads.
 *
 * @module
 */

import { join } from "node:path";
import { convertToGguf, type GgufOutType } from "../../../app/gguf/arch.ts";
import { ggufTokenizerMetadata } from "../../../app/gguf/tokenizer_export.ts";
import type { GgufEntry, GgufValueType } from "../../../app/gguf/value.ts";
import { encodeGguf } from "../../../app/gguf/writer.ts";
import type { GgufTensorSpec } from "../../../app/gguf/layout.ts";
import { Checkpoint } from "../../../app/safetensors/mod.ts";
import type { GgmlTypeName } from "../../../core/quant/formats.ts";
import { mulberry32 } from "../../../core/random.ts";
import {
  writeTinyJamba,
  writeTinyMamba,
  writeTinyMixtral,
  writeTinyQwen2Moe,
} from "../../../tests/fixtures/tiny_checkpoints.ts";
import { encodeValues } from "./codec.ts";

/** A seed file on disk: `model` when it is a whole model (not a hand-made header test). */
export interface GgufSeed {
  /** Short name, for case descriptions. */
  name: string;
  /** Its path. */
  path: string;
  /** Whether it is a model Kiln runs (its cases go through the whole pipeline). */
  model: boolean;
}

type Writer = typeof writeTinyMixtral;

const MODEL_SEEDS: readonly {
  name: string;
  write: Writer;
  config?: Record<string, unknown>;
  tokenizer?: "byte_level" | "sentencepiece" | "none";
  types: readonly GgufOutType[];
}[] = [
  { name: "mixtral", write: writeTinyMixtral, types: ["f32", "q8_0"] },
  {
    name: "mixtral-256",
    write: writeTinyMixtral,
    config: { hidden_size: 256, intermediate_size: 256, num_hidden_layers: 1 },
    types: ["q4_k"],
  },
  {
    // Expert rows of 64: gate/up are q4_k, down falls back to q5_0 (as llama.cpp's does).
    name: "mixtral-256x64",
    write: writeTinyMixtral,
    config: { hidden_size: 256, intermediate_size: 64, num_hidden_layers: 1 },
    types: ["q4_k"],
  },
  {
    name: "mixtral-bytelevel",
    write: writeTinyMixtral,
    tokenizer: "byte_level",
    config: { num_hidden_layers: 1, tie_word_embeddings: true },
    types: ["f32"],
  },
  {
    name: "mixtral-notok",
    write: writeTinyMixtral,
    tokenizer: "none",
    config: { vocab_size: 64, num_hidden_layers: 1 },
    types: ["f32"],
  },
  { name: "mamba", write: writeTinyMamba, types: ["f32", "f16", "q8_0"] },
  {
    name: "mamba-256",
    write: writeTinyMamba,
    config: { hidden_size: 256, num_hidden_layers: 1 },
    types: ["q4_k"],
  },
  { name: "jamba", write: writeTinyJamba, types: ["f32", "q8_0"] },
  { name: "qwen2moe", write: writeTinyQwen2Moe, types: ["f32", "q8_0"] },
  {
    name: "qwen2moe-256",
    write: writeTinyQwen2Moe,
    config: {
      hidden_size: 256,
      intermediate_size: 256,
      moe_intermediate_size: 256,
      shared_expert_intermediate_size: 256,
      // Every layer sparse: llama.cpp's qwen2moe has no dense layers, so Kiln
      // refuses to write them.
      num_hidden_layers: 2,
    },
    types: ["q4_k"],
  },
];

/** Hand-made files: every value type, every tensor type Kiln reads, empty sections. */
function handMadeSeeds(): { name: string; bytes: Uint8Array }[] {
  const r = mulberry32(77);
  const e = (type: GgufValueType, value: GgufEntry["value"]): GgufEntry => ({ type, value });
  const values: [string, GgufEntry][] = [
    ["general.architecture", e("string", "fuzz")],
    ["k.u8", e("u8", 255)],
    ["k.i8", e("i8", -128)],
    ["k.u16", e("u16", 65535)],
    ["k.i16", e("i16", -1)],
    ["k.u32", e("u32", 2 ** 32 - 1)],
    ["k.i32", e("i32", -(2 ** 31))],
    ["k.f32", e("f32", 1.5)],
    ["k.bool.t", e("bool", true)],
    ["k.bool.f", e("bool", false)],
    ["k.string", e("string", "héllo 🦩 日本")],
    ["k.empty", e("string", "")],
    ["k.u64", e("u64", 2n ** 64n - 1n)],
    ["k.i64", e("i64", -1n)],
    ["k.f64", e("f64", Math.PI)],
    ["k.arr.u8", e("array", { type: "u8", values: [1, 2, 3] })],
    ["k.arr.str", e("array", { type: "string", values: ["a", "", "é"] })],
    ["k.arr.bool", e("array", { type: "bool", values: [true, false] })],
    ["k.arr.f32", e("array", { type: "f32", values: [0.5, -2] })],
    ["k.arr.i64", e("array", { type: "i64", values: [1n, -1n] })],
    ["k.arr.empty", e("array", { type: "i32", values: [] })],
    [
      "k.arr.nested",
      e("array", {
        type: "array",
        values: [{ type: "u8", values: [1] }, { type: "string", values: ["x", "y"] }, {
          type: "array",
          values: [{ type: "f64", values: [1] }],
        }],
      }),
    ],
  ];
  const floats = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  const tensor = (name: string, shape: number[], type: GgmlTypeName): GgufTensorSpec => ({
    name,
    shape,
    type,
    data: encodeValues(type, floats(shape.reduce((a, b) => a * b, 1))),
  });
  const tensors: GgufTensorSpec[] = [
    tensor("t.f32", [3], "f32"),
    tensor("t.f16", [2, 3], "f16"),
    tensor("t.bf16", [5], "bf16"),
    tensor("t.q8_0", [2, 32], "q8_0"),
    tensor("t.q4_0", [32], "q4_0"),
    tensor("t.q4_k", [256], "q4_k"),
    tensor("t.q5_k", [1, 256], "q5_k"),
    tensor("t.q6_k", [256], "q6_k"),
    tensor("t.4d", [1, 2, 1, 3], "f32"),
  ];
  return [
    { name: "values+tensors", bytes: encodeGguf({ metadata: values, tensors }) },
    {
      name: "v2-align64",
      bytes: encodeGguf({
        metadata: values.slice(0, 8),
        tensors: tensors.slice(0, 4),
        alignment: 64,
        version: 2,
      }),
    },
    { name: "metadata-only", bytes: encodeGguf({ metadata: values, tensors: [] }) },
    { name: "tensors-only", bytes: encodeGguf({ metadata: [], tensors: tensors.slice(3) }) },
    { name: "empty", bytes: encodeGguf({ metadata: [], tensors: [] }) },
  ];
}

const LLAMA_CPP_FIXTURES = new URL("../../../tests/fixtures/llama_cpp/", import.meta.url);

/** Converter-written files of `tests/fixtures/llama_cpp/` (folder/case). */
const CONVERTED = [
  "glm4_moe/glm4_moe_group_conv",
  "ernie4_5/ernie4_5_moe_conv",
  "gpt_oss/gpt_oss_conv",
  "dots1/dots1_group_conv",
  "minimax_m2/minimax_m2_conv",
];

/** Writes every seed into `dir` (about 2 s: tiny checkpoints converted at several types). */
export async function writeGgufSeeds(dir: string): Promise<GgufSeed[]> {
  const seeds: GgufSeed[] = [];
  for (const s of MODEL_SEEDS) {
    const ckptDir = join(dir, `${s.name}-checkpoint`);
    await s.write(ckptDir, { config: s.config, tokenizer: s.tokenizer, tokenizerMerges: 8 });
    const config = JSON.parse(await Deno.readTextFile(join(ckptDir, "config.json")));
    let tokenizer: unknown;
    try {
      tokenizer = JSON.parse(await Deno.readTextFile(join(ckptDir, "tokenizer.json")));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    using ckpt = await Checkpoint.open(ckptDir);
    for (const type of s.types) {
      const path = join(dir, `${s.name}-${type}.gguf`);
      await convertToGguf(
        { config, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
        path,
        {
          type,
          metadata: tokenizer === undefined ? undefined : ggufTokenizerMetadata(tokenizer, {
            config,
          }),
        },
      );
      seeds.push({ name: `${s.name}-${type}`, path, model: true });
    }
    await Deno.remove(ckptDir, { recursive: true });
  }
  // Files llama.cpp's converter wrote for the families with their own GGUF readers.
  for (const f of CONVERTED) {
    const path = join(dir, `${f.replace("/", "-")}.gguf`);
    await Deno.copyFile(new URL(`${f}/llama_cpp_f32.gguf`, LLAMA_CPP_FIXTURES), path);
    seeds.push({ name: f, path, model: true });
  }
  for (const h of handMadeSeeds()) {
    const path = join(dir, `${h.name}.gguf`);
    await Deno.writeFile(path, h.bytes);
    seeds.push({ name: h.name, path, model: false });
  }
  return seeds;
}
