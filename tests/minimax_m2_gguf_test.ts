/**
 * MiniMax-M2 as GGUF (llama.cpp's `minimax-m2`), against llama.cpp's own
 * converter: `fixtures/llama_cpp/minimax_m2/<name>/llama_cpp_f32.gguf` was
 * written by `convert_hf_to_gguf.py` (through `tools/llama_cpp_convert.py`)
 * from the transformers checkpoint beside it, whose logits transformers
 * computed (see `fixtures/llama_cpp/README.md`). One rotates half of each head
 * (`rotary_dim` 8 of 16) under GQA 2:1; the other whole heads of 12 under
 * linear RoPE, with one KV head and top-3 of 8 experts.
 *
 * Checked: the config Kiln derives from each file equals the folder's; every
 * tensor Kiln presents from the file equals the one it presents from the
 * folder; the file runs to transformers' logits; Kiln writes from the folder
 * the converter's tensors and model keys; what llama.cpp's minimax-m2 cannot
 * hold is refused by name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ggufArchMetadata } from "../app/gguf/arch.ts";
import {
  assertKeyRefused,
  converterFileTests,
  folderConfig,
} from "./fixtures/converter_compare.ts";

const DIR = new URL("./fixtures/llama_cpp/minimax_m2/", import.meta.url).pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
const gguf = (name: string) => join(DIR, name, "llama_cpp_f32.gguf");

converterFileTests(
  "minimax-m2 gguf",
  DIR,
  ["minimax_m2_conv", "minimax_m2_linear_conv"],
  "minimax-m2",
  12,
);

Deno.test("minimax-m2 gguf: what llama.cpp's minimax-m2 cannot hold is refused by name", async () => {
  const tied = await folderConfig(join(HF, "minimax_m2_tied_linear"));
  assert.throws(() => ggufArchMetadata(tied), /tie_word_embeddings has no GGUF form/);
  const config = await folderConfig(join(DIR, "minimax_m2_conv"));
  // 7 of 16 values a head: frequencies over 7, 8 values rotated (transformers' odd split).
  const rp = config.rope_parameters as Record<string, unknown>;
  const odd = { ...config, rotary_dim: 7, partial_rotary_factor: 7 / 16 };
  assert.throws(
    () => ggufArchMetadata({ ...odd, rope_parameters: { ...rp, partial_rotary_factor: 7 / 16 } }),
    /RoPE over an odd 7 values a head has no GGUF form/,
  );
  const file = gguf("minimax_m2_conv");
  const key = (k: string) => `minimax-m2.${k}`;
  await assertKeyRefused(file, key("expert_gating_func"), { type: "u32", value: 1 }, TypeError, [
    "is 1",
    "sigmoid",
  ]);
  await assertKeyRefused(
    file,
    key("expert_weights_scale"),
    { type: "f32", value: 2.5 },
    RangeError,
    [
      "2.5",
    ],
  );
  await assertKeyRefused(file, key("rope.dimension_count"), { type: "u32", value: 7 }, RangeError, [
    "7",
  ]);
});
