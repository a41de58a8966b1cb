/**
 * @file GGUF interoperability with an independent implementation, Hugging
 * Face's `@huggingface/gguf` (the parser the Hub runs on uploaded files): it
 * reads the files Kiln writes (metadata values and types, tensor names, ggml
 * shapes, types and offsets), and Kiln reads a file whose header that library
 * rewrote.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildGgufHeader, gguf, GGUFValueType } from "@huggingface/gguf";
import { convertToGguf, type GgufOutType } from "../app/gguf/arch.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { ggufTokenizerMetadata } from "../app/gguf/tokenizer_export.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { loadModel } from "../app/model/mod.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { gpu } from "./_util.ts";

const tmp = await Deno.makeTempDir({ prefix: "kiln_gguf_interop_" });

async function writeFile(type: GgufOutType): Promise<string> {
  const dir = join(tmp, `model_${type}`);
  await writeTinyMixtral(dir, {
    config: { hidden_size: 256, intermediate_size: 256, vocab_size: 320 },
    tokenizer: "sentencepiece",
    seed: 5,
  });
  const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  const tokenizer = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json")));
  const file = join(tmp, `model.${type}.gguf`);
  using ckpt = await Checkpoint.open(dir);
  await convertToGguf({ config, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) }, file, {
    type,
    metadata: ggufTokenizerMetadata(tokenizer, { config }),
  });
  return file;
}

/** HF's value type names (GGUFValueType) in Kiln's spelling (GGUF_VALUE_TYPES). */
const HF_TYPE_NAMES: Record<string, string> = {
  UINT8: "u8",
  INT8: "i8",
  UINT16: "u16",
  INT16: "i16",
  UINT32: "u32",
  INT32: "i32",
  FLOAT32: "f32",
  BOOL: "bool",
  STRING: "string",
  ARRAY: "array",
  UINT64: "u64",
  INT64: "i64",
  FLOAT64: "f64",
};

/** A Kiln metadata value as the HF library reports it (bigints to numbers, arrays flat). */
function plain(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (v && typeof v === "object" && "values" in v) {
    return (v as { values: unknown[] }).values.map(plain);
  }
  return v;
}

Deno.test("@huggingface/gguf reads Kiln's GGUF files: metadata, tensor infos and offsets agree", async () => {
  for (const type of ["q8_0", "q4_k", "q3_k", "iq4_xs", "q5_1"] as const) {
    const path = await writeFile(type);
    using ours = await GgufFile.open(path);
    const theirs = await gguf(path, { allowLocalFile: true, typedMetadata: true });
    assert.equal(Number(theirs.metadata.version), ours.version);
    for (const [key, value] of ours.metadata) {
      const t = (theirs.metadata as Record<string, unknown>)[key];
      const want = plain(value);
      const got = Array.isArray(t) ? t.map(plain) : plain(t);
      if (typeof want === "number" && typeof got === "number" && !Number.isInteger(want)) {
        assert.ok(Math.abs(got - want) <= 1e-6 * Math.abs(want), `${type}: ${key}`);
      } else {
        assert.deepEqual(got, want, `${type}: metadata ${key}`);
      }
      // Stored types agree too (u32 stays u32, string arrays stay string arrays).
      const typed = theirs.typedMetadata[key] as { type: GGUFValueType };
      const stored = ours.entries.get(key)!.type;
      assert.equal(HF_TYPE_NAMES[GGUFValueType[typed.type]], stored, `${type}: ${key} type`);
    }
    assert.equal(theirs.tensorInfos.length, ours.tensors.size);
    for (const info of theirs.tensorInfos) {
      const t = ours.tensors.get(info.name)!;
      assert.ok(t, `${type}: tensor ${info.name}`);
      assert.deepEqual(info.shape.map(Number), [...t.dims], `${info.name} dims`);
      assert.equal(info.dtype, t.type.id, `${info.name} type`);
      assert.equal(Number(theirs.tensorDataOffset + info.offset), t.offset, `${info.name} offset`);
    }
  }
});

Deno.test("Kiln reads a GGUF whose header @huggingface/gguf rewrote, and runs it", async () => {
  const path = await writeFile("q8_0");
  const parsed = await gguf(path, { allowLocalFile: true, typedMetadata: true });
  const typed = { ...parsed.typedMetadata };
  typed["general.name"] = { type: GGUFValueType.STRING, value: "rewritten by @huggingface/gguf" };
  const blob = new Blob([await Deno.readFile(path)]);
  const header = await buildGgufHeader(blob, typed, {
    littleEndian: true,
    tensorInfoByteRange: parsed.tensorInfoByteRange,
  });
  // The new header, then the tensor data from the original file's data offset.
  using original = await GgufFile.open(path);
  const data = (await Deno.readFile(path)).subarray(original.dataOffset);
  const out = join(tmp, "rewritten.gguf");
  await Deno.writeFile(
    out,
    new Uint8Array([...new Uint8Array(await header.arrayBuffer()), ...data]),
  );
  using rewritten = await GgufFile.open(out);
  assert.equal(rewritten.string("general.name"), "rewritten by @huggingface/gguf");
  for (const name of original.tensors.keys()) {
    assert.deepEqual(await rewritten.read(name), await original.read(name), name);
  }
  const a = await loadModel(path, { device: await gpu(), quiet: true, maxSeq: 32 });
  const b = await loadModel(out, { device: await gpu(), quiet: true, maxSeq: 32 });
  try {
    const ids = [3, 14, 15, 92, 65];
    assert.deepEqual(Array.from(await b.forward(ids)), Array.from(await a.forward(ids)));
  } finally {
    a.dispose();
    b.dispose();
  }
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});
