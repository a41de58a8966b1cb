/**
 * ERNIE 4.5 as GGUF (llama.cpp's `ernie4_5` and `ernie4_5-moe`), against
 * llama.cpp's own converter: `fixtures/llama_cpp/ernie4_5/<name>/llama_cpp_f32.gguf`
 * was written by `convert_hf_to_gguf.py` (through `tools/llama_cpp_convert.py`)
 * from the transformers checkpoint beside it, whose logits transformers
 * computed (see `fixtures/llama_cpp/README.md`). One has a dense first layer,
 * two shared experts and head_dim 16 ≠ hidden / heads; the second routes every
 * second layer, without shared experts, under linear RoPE, tied; the third is
 * the dense class (head_dim 128, its class default, as written).
 *
 * Checked: the config Kiln derives from each file equals the folder's; every
 * tensor Kiln presents from the file equals the one it presents from the
 * folder; the file runs to transformers' logits; Kiln writes from the folder
 * the converter's tensors and model keys; what the format cannot hold is
 * refused by name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ggufArchMetadata, openGgufModel } from "../app/gguf/arch.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { rejectsWith, withTmp } from "./_util.ts";
import {
  assertRunsToTransformers,
  assertSameWeights,
  assertWritesLikeConverter,
  comparable,
  folderConfig,
  rewrite,
} from "./fixtures/converter_compare.ts";

const DIR = new URL("./fixtures/llama_cpp/ernie4_5/", import.meta.url).pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
const CASES: [string, string][] = [
  ["ernie4_5_moe_conv", "ernie4_5-moe"],
  ["ernie4_5_moe_step_conv", "ernie4_5-moe"],
  ["ernie4_5_dense_conv", "ernie4_5"],
];
const gguf = (name: string) => join(DIR, name, "llama_cpp_f32.gguf");

for (const [name, arch] of CASES) {
  const dir = join(DIR, name);

  Deno.test(`ernie gguf: the config of llama.cpp's ${name} is the folder's`, async () => {
    using m = await openGgufModel(gguf(name));
    assert.equal(m.architecture, arch);
    const ours = parseConfig(m.config, gguf(name));
    const theirs = parseConfig(await folderConfig(dir));
    assert.deepEqual(comparable(ours), comparable(theirs));
    assert.deepEqual(ours.pattern, theirs.pattern);
    assert.deepEqual(ours.attention, theirs.attention);
    assert.deepEqual(ours.moe, theirs.moe);
  });

  Deno.test(`ernie gguf: every tensor of llama.cpp's ${name} is the folder's`, async () => {
    await assertSameWeights(gguf(name), dir, parseConfig(await folderConfig(dir)));
  });

  Deno.test(`ernie gguf: llama.cpp's ${name} gives transformers' logits and ids`, async () => {
    await assertRunsToTransformers(gguf(name), dir, name);
  });

  Deno.test(`ernie gguf: Kiln writes ${name} as llama.cpp's converter does`, async () => {
    await assertWritesLikeConverter(dir, gguf(name), `${arch}.`, arch === "ernie4_5" ? 9 : 16);
  });
}

Deno.test("ernie gguf: what llama.cpp's ERNIE cannot hold is refused by name", async () => {
  // use_bias: biases on the MLPs and the MoE class's LM head too.
  const biased = await folderConfig(join(HF, "ernie4_5_moe"));
  assert.throws(() => ggufArchMetadata(biased), /use_bias has no GGUF form/);
  // MoE layers that end before the last one.
  const config = await folderConfig(join(DIR, "ernie4_5_moe_conv"));
  assert.throws(
    () => ggufArchMetadata({ ...config, num_hidden_layers: 4, moe_layer_end_index: 2 }),
    /MoE layers \(1, 2\) have no GGUF form/,
  );
  // One that ends early but fits llama.cpp's rule is written by that rule: layer 1 of 3
  // routes as "every second layer".
  const one = new Map(ggufArchMetadata({ ...config, moe_layer_end_index: 1 }));
  assert.equal(one.get("ernie4_5-moe.interleave_moe_layer_step")?.value, 2);
  assert.equal(one.get("ernie4_5-moe.leading_dense_block_count")?.value, 0);
  await withTmp(async (tmp) => {
    const name = "ernie4_5_moe_conv";
    const noBias = await rewrite(gguf(name), join(tmp, "nobias.gguf"), (_, t) => {
      t.delete("blk.2.exp_probs_b.bias");
    });
    await rejectsWith(openGgufModel(noBias), TypeError, [
      "MoE block 2",
      '"blk.2.exp_probs_b.bias"',
    ]);
    const shared = await rewrite(gguf(name), join(tmp, "shared.gguf"), (e) => {
      e.set("ernie4_5-moe.expert_shared_feed_forward_length", { type: "u32", value: 20 });
    });
    await rejectsWith(openGgufModel(shared), RangeError, [
      "expert_shared_feed_forward_length",
      "20",
      "not a whole number",
    ]);
  });
});
