/**
 * Hunyuan-A13B as GGUF (llama.cpp's `hunyuan-moe`). llama.cpp's converter
 * needs HunYuan's own tokenizer code, so the file here is Kiln's: written from
 * the transformers fixture `fixtures/hf/hunyuan_moe` (NTK-alpha RoPE, per-head
 * norms after RoPE, a shared MLP), whose logits llama.cpp 9725a313 computes to
 * transformers' (`llama_cpp_reference_test.ts`, `hf_hunyuan_moe_f32`).
 *
 * Checked: the file Kiln writes reads back to the folder's model (the NTK-alpha
 * base as the base itself), runs to transformers' logits and greedy ids, holds
 * llama.cpp's keys; what llama.cpp's hunyuan-moe cannot hold is refused by name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { convertToGguf, ggufArchMetadata, openGgufModel } from "../app/gguf/arch.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { withTmp } from "./_util.ts";
import { syntheticVocab } from "./fixtures/llama_cpp/recipes.ts";
import {
  assertKeyRefused,
  assertRunsToTransformers,
  folderConfig,
} from "./fixtures/converter_compare.ts";

const HF = new URL("./fixtures/hf/", import.meta.url).pathname;

/** The folder `name` of `fixtures/hf/` written as f32 GGUF into `tmp`. */
async function written(tmp: string, name: string): Promise<string> {
  const src = join(HF, name);
  const config = await folderConfig(src);
  const out = join(tmp, `${name}.gguf`);
  using ckpt = await Checkpoint.open(src);
  await convertToGguf(
    { config, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
    out,
    { type: "f32", metadata: syntheticVocab(config.vocab_size as number), name },
  );
  return out;
}

Deno.test("hunyuan gguf: Kiln's hunyuan-moe file reads back to the folder's model", async () => {
  await withTmp(async (tmp) => {
    const path = await written(tmp, "hunyuan_moe");
    using m = await openGgufModel(path);
    assert.equal(m.architecture, "hunyuan-moe");
    const ours = parseConfig(m.config, path);
    const theirs = parseConfig(await folderConfig(join(HF, "hunyuan_moe")));
    // The NTK-alpha base is the file's base (an f32, as GGUF keeps it); the rest is the
    // folder's.
    assert.equal(Math.fround(ours.attention!.ropeTheta), Math.fround(theirs.attention!.ropeTheta));
    assert.equal(ours.attention!.rope, undefined);
    const rest = (a: typeof ours.attention) => ({ ...a, rope: undefined, ropeTheta: 0 });
    assert.deepEqual(rest(ours.attention), rest(theirs.attention));
    assert.deepEqual(ours.moe, theirs.moe);
    assert.deepEqual(ours.pattern, theirs.pattern);
    const keys = m.file.entries;
    assert.equal(keys.get("hunyuan-moe.expert_shared_feed_forward_length")?.value, 16);
    assert.equal(keys.get("hunyuan-moe.rope.scaling.type"), undefined);
    await assertRunsToTransformers(path, join(HF, "hunyuan_moe"), "hunyuan_moe");
  });
});

Deno.test("hunyuan gguf: what llama.cpp's hunyuan-moe cannot hold is refused by name", async () => {
  const biased = await folderConfig(join(HF, "hunyuan_moe_bias_lists"));
  assert.throws(() => ggufArchMetadata(biased), /attention_bias has no GGUF form/);
  await withTmp(async (tmp) => {
    const path = await written(tmp, "hunyuan_moe");
    await assertKeyRefused(
      path,
      "hunyuan-moe.expert_shared_feed_forward_length",
      { type: "u32", value: 32 },
      RangeError,
      ["is 32", "one width"],
    );
  });
});
