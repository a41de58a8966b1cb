/**
 * Granite 3 MoE as GGUF (llama.cpp's `granitemoe`), read, against llama.cpp's
 * own converter: `fixtures/llama_cpp/granite_moe/<name>/llama_cpp_f32.gguf`
 * was written by its `convert_hf_to_gguf.py` (`GraniteMoeModel`, through
 * `tools/llama_cpp_convert.py`) from the transformers checkpoint beside it —
 * a GraniteMoe and a GraniteMoeShared (shared MLP, attention biases, linear
 * RoPE). Checked: the config Kiln derives from each file equals the folder's;
 * every tensor Kiln presents from the file (q and k un-permuted, the experts'
 * gate and up stacks as the fused `input_linear`'s parts) equals the folder's;
 * the file runs to transformers' logits and ids; Kiln writes from each folder
 * the converter's tensors and model keys.
 * llama.cpp's answers for both files are in `llama_cpp_reference_test.ts`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ggufArchMetadata, openGgufModel } from "../app/gguf/arch.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import {
  assertRunsToTransformers,
  assertSameWeights,
  assertWritesLikeConverter,
} from "./fixtures/converter_compare.ts";
import type { ModelConfig } from "../models/config.ts";

const DIR = new URL("./fixtures/llama_cpp/granite_moe/", import.meta.url).pathname;
const gguf = (name: string) => join(DIR, name, "llama_cpp_f32.gguf");

async function folderConfig(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
}

/** The config without its token ids (the converter takes those from its tokenizer). */
function comparable(c: ModelConfig): Partial<ModelConfig> {
  const { bosTokenId: _b, eosTokenIds: _e, paddingIdx: _p, ...rest } = c;
  return rest;
}

for (const name of ["granite_moe_conv", "granite_moe_shared_conv"]) {
  const dir = join(DIR, name);

  Deno.test(`granitemoe gguf: llama.cpp's ${name}: config and tensors are the folder's`, async () => {
    const theirs = parseConfig(await folderConfig(dir));
    {
      using m = await openGgufModel(gguf(name));
      assert.equal(m.architecture, "granitemoe");
      assert.deepEqual(comparable(parseConfig(m.config, gguf(name))), comparable(theirs));
    }
    await assertSameWeights(gguf(name), dir, theirs);
  });

  Deno.test(`granitemoe gguf: llama.cpp's ${name} gives transformers' logits and ids`, async () => {
    await assertRunsToTransformers(gguf(name), dir, name);
  });
}

for (const name of ["granite_moe_conv", "granite_moe_shared_conv"]) {
  Deno.test(`granitemoe gguf: Kiln writes ${name} as llama.cpp's converter does`, async () => {
    await assertWritesLikeConverter(join(DIR, name), gguf(name), "granitemoe.", 16);
  });
}

Deno.test("granitemoe gguf: a GraniteMoeShared's metadata carries its shared MLP's width", async () => {
  const dir = join(DIR, "granite_moe_shared_conv");
  const meta = new Map(ggufArchMetadata(await folderConfig(dir)));
  assert.equal(meta.get("general.architecture")?.value, "granitemoe");
  assert.equal(meta.get("granitemoe.expert_shared_feed_forward_length")?.value, 20);
});
