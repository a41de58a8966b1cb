/**
 * K-EXAONE as GGUF (llama.cpp's `exaone-moe`), against llama.cpp's own
 * converter: `fixtures/llama_cpp/exaone_moe/exaone_moe_conv/llama_cpp_f32.gguf`
 * was written by `convert_hf_to_gguf.py` (through `tools/llama_cpp_convert.py`)
 * from the transformers checkpoint beside it (its config as released:
 * `ExaoneMoEForCausalLM`, `scoring_func`), whose logits transformers computed:
 * window 7 on three of every four layers, the fourth global without RoPE, a
 * dense first layer, a shared expert, weights scaled ×2.5.
 *
 * Checked: the config Kiln derives from the file is the folder's; every tensor
 * is the folder's; the file runs to transformers' logits; Kiln writes the
 * converter's tensors and keys; what llama.cpp's exaone-moe cannot hold is
 * refused by name.
 */

import assert from "node:assert/strict";
import { ggufArchMetadata } from "../app/gguf/arch.ts";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import {
  assertKeyRefused,
  converterFileTests,
  folderConfig,
} from "./fixtures/converter_compare.ts";

const DIR = new URL("./fixtures/llama_cpp/exaone_moe/", import.meta.url).pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;

converterFileTests("exaone-moe gguf", DIR, ["exaone_moe_conv"], "exaone-moe", 16);

Deno.test("exaone-moe gguf: the released class name reads as ExaoneMoeForCausalLM", async () => {
  const config = await folderConfig(join(DIR, "exaone_moe_conv"));
  assert.deepEqual(config.architectures, ["ExaoneMoEForCausalLM"]);
  assert.equal(parseConfig(config).architecture, "ExaoneMoeForCausalLM");
});

Deno.test("exaone-moe gguf: what llama.cpp's exaone-moe cannot hold is refused by name", async () => {
  const tied = await folderConfig(join(HF, "exaone_moe_global_groups"));
  assert.throws(() => ggufArchMetadata(tied), /tie_word_embeddings has no GGUF form/);
  const config = await folderConfig(join(DIR, "exaone_moe_conv"));
  assert.throws(
    () => ggufArchMetadata({ ...config, mlp_layer_types: ["sparse", "dense", "sparse", "sparse"] }),
    /dense layers have a GGUF form only as the leading ones/,
  );
  const file = join(DIR, "exaone_moe_conv", "llama_cpp_f32.gguf");
  await assertKeyRefused(
    file,
    "exaone-moe.expert_gating_func",
    { type: "u32", value: 1 },
    TypeError,
    [
      "is 1",
      "sigmoid",
    ],
  );
  await assertKeyRefused(
    file,
    "exaone-moe.expert_shared_feed_forward_length",
    { type: "u32", value: 30 },
    RangeError,
    ["is 30", "(1 × 12)"],
  );
});
