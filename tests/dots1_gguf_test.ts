/**
 * dots.llm1 as GGUF (llama.cpp's `dots1`), against llama.cpp's own converter:
 * `fixtures/llama_cpp/dots1/<name>/llama_cpp_f32.gguf` was written by
 * `convert_hf_to_gguf.py` (through `tools/llama_cpp_convert.py`) from the
 * transformers checkpoint beside it, whose logits transformers computed (see
 * `fixtures/llama_cpp/README.md`). One has a dense first layer, two shared
 * experts, renormalised weights scaled ×2.5 and head_dim 16 ≠ hidden / heads;
 * the other routes within the best of two expert groups, unnormalised, under
 * linear RoPE, with no dense layer.
 *
 * Checked: the config Kiln derives from each file equals the folder's; every
 * tensor Kiln presents from the file equals the one it presents from the
 * folder; the file runs to transformers' logits; Kiln writes from the folder
 * the converter's tensors and model keys; what llama.cpp's dots1 cannot hold
 * is refused by name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ggufArchMetadata } from "../app/gguf/arch.ts";
import {
  assertKeyRefused,
  converterFileTests,
  folderConfig,
} from "./fixtures/converter_compare.ts";

const DIR = new URL("./fixtures/llama_cpp/dots1/", import.meta.url).pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
const gguf = (name: string) => join(DIR, name, "llama_cpp_f32.gguf");

converterFileTests("dots1 gguf", DIR, ["dots1_conv", "dots1_group_conv"], "dots1", 16);

Deno.test("dots1 gguf: what llama.cpp's dots1 cannot hold is refused by name", async () => {
  // The transformers fixtures: GQA (k and v narrower than q) and attention biases.
  const gqa = await folderConfig(join(HF, "dots1"));
  assert.throws(() => ggufArchMetadata(gqa), /2 key\/value heads for 4 query heads has no GGUF/);
  const config = await folderConfig(join(DIR, "dots1_conv"));
  assert.throws(
    () => ggufArchMetadata({ ...config, attention_bias: true }),
    /attention_bias has no GGUF form: llama.cpp's dots1 has no attn_output.bias/,
  );
  assert.throws(
    () =>
      ggufArchMetadata({
        ...config,
        sliding_window: 8,
        layer_types: ["full_attention", "sliding_attention", "sliding_attention"],
      }),
    /Dots1ForCausalLM with sliding-window layers has no GGUF form/,
  );
  // Keeping both of two groups limits nothing: written as one group, as llama.cpp needs.
  const all = new Map(ggufArchMetadata({ ...config, n_group: 2, topk_group: 2 }));
  assert.equal(all.get("dots1.expert_group_count")?.value, 1);
  const u32 = (value: number) => ({ type: "u32" as const, value });
  const key = (k: string) => `dots1.${k}`;
  await assertKeyRefused(gguf("dots1_conv"), key("expert_gating_func"), u32(1), TypeError, [
    "is 1",
    "sigmoid",
  ]);
  await assertKeyRefused(
    gguf("dots1_group_conv"),
    key("expert_group_used_count"),
    u32(3),
    RangeError,
    [
      "is 3",
      "1 to the 2 groups",
    ],
  );
});
