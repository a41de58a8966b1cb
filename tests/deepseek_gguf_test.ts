/**
 * DeepSeek as GGUF (llama.cpp's `deepseek2`), read, against llama.cpp's own
 * converter: `fixtures/llama_cpp/deepseek/<name>/llama_cpp_f32.gguf` was written
 * by its `convert_hf_to_gguf.py` (through `tools/llama_cpp_convert.py`) from the
 * transformers checkpoint beside it, whose logits transformers computed. One is
 * a DeepSeek-V3 (query bottleneck, yarn with mscale_all_dim, 2 of 4 expert
 * groups, sigmoid routing with its selection bias), the other a V2-Lite shape
 * (a plain q_proj, softmax routing scaled ×2, two shared experts).
 *
 * Checked: the config Kiln derives from each file equals the folder's; every
 * tensor Kiln presents from the file equals the folder's (`kv_b_proj` rebuilt
 * from llama.cpp's `attn_k_b` / `attn_v_b` halves, and from an older file's one
 * `attn_kv_b`); the file runs to transformers' logits and ids; Kiln refuses to
 * write `deepseek2` and to read files whose routing it cannot follow.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { openWeights } from "../app/model/source.ts";
import { ggufArchMetadata, openGgufModel } from "../app/gguf/arch.ts";
import type { GgufEntry } from "../app/gguf/value.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import type { ModelConfig } from "../models/config.ts";
import { assertBitsEqual, rejectsWith, withTmp } from "./_util.ts";
import {
  assertRunsToTransformers,
  assertSameWeights,
  rewrite,
} from "./fixtures/converter_compare.ts";

const DIR = new URL("./fixtures/llama_cpp/deepseek/", import.meta.url).pathname;
const NAMES = ["deepseek_v3_conv", "deepseek_v2_lite_conv"];
const gguf = (name: string) => join(DIR, name, "llama_cpp_f32.gguf");

async function folderConfig(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
}

/** The config without its token ids (the converter takes those from its tokenizer). */
function comparable(c: ModelConfig): Partial<ModelConfig> {
  const { bosTokenId: _b, eosTokenIds: _e, ...rest } = c;
  return rest;
}

for (const name of NAMES) {
  const dir = join(DIR, name);

  Deno.test(`deepseek2 gguf: the config of llama.cpp's ${name} is the folder's`, async () => {
    using m = await openGgufModel(gguf(name));
    assert.equal(m.architecture, "deepseek2");
    const ours = parseConfig(m.config, gguf(name));
    const theirs = parseConfig(await folderConfig(dir));
    assert.deepEqual(ours.attention, theirs.attention);
    assert.deepEqual(ours.moe, theirs.moe);
    assert.deepEqual(comparable(ours), comparable(theirs));
  });

  Deno.test(`deepseek2 gguf: every tensor of llama.cpp's ${name} is the folder's`, async () => {
    await assertSameWeights(gguf(name), dir, parseConfig(await folderConfig(dir)));
  });

  Deno.test(`deepseek2 gguf: llama.cpp's ${name} gives transformers' logits and ids`, async () => {
    await assertRunsToTransformers(gguf(name), dir, name);
  });
}

const u32 = (value: number): GgufEntry => ({ type: "u32", value });

Deno.test("deepseek2 gguf: an older file's one attn_kv_b reads as the split halves do", async () => {
  const src = gguf("deepseek_v3_conv");
  const folder = join(DIR, "deepseek_v3_conv");
  const config = parseConfig(await folderConfig(folder));
  await withTmp(async (tmp) => {
    const kv = new Map<string, Float32Array>();
    const ref = await openWeights(folder, { config });
    for (let l = 0; l < 3; l++) {
      const t = `model.layers.${l}.self_attn.kv_b_proj.weight`;
      kv.set(`blk.${l}.attn_kv_b.weight`, (await ref.readAs(t, "f32")) as Float32Array);
    }
    ref.close();
    const legacy = await rewrite(src, join(tmp, "legacy.gguf"), (_, tensors) => {
      for (let l = 0; l < 3; l++) {
        tensors.delete(`blk.${l}.attn_k_b.weight`);
        tensors.delete(`blk.${l}.attn_v_b.weight`);
        const name = `blk.${l}.attn_kv_b.weight`;
        const v = kv.get(name)!;
        tensors.set(name, {
          name,
          shape: [4 * (8 + 12), 16],
          type: "f32",
          data: new Uint8Array(v.buffer),
        });
      }
    });
    const a = await openWeights(legacy, { config });
    const b = await openWeights(src, { config });
    try {
      for (let l = 0; l < 3; l++) {
        const t = `model.layers.${l}.self_attn.kv_b_proj.weight`;
        assertBitsEqual(
          (await a.readAs(t, "f32")) as Float32Array,
          (await b.readAs(t, "f32")) as Float32Array,
          t,
        );
      }
    } finally {
      a.close();
      b.close();
    }
  });
});

Deno.test("deepseek2 gguf: routing Kiln cannot follow is refused; writing is refused", async () => {
  const src = gguf("deepseek_v2_lite_conv");
  await withTmp(async (tmp) => {
    const groups = await rewrite(src, join(tmp, "groups.gguf"), (e) => {
      e.set("deepseek2.expert_group_count", u32(2));
      e.set("deepseek2.expert_group_used_count", u32(1));
    });
    await rejectsWith(openGgufModel(groups), TypeError, [
      'softmax routing with "deepseek2.expert_group_count" 2 is not DeepSeek-V2',
    ]);
    const sigmoid = await rewrite(src, join(tmp, "sigmoid.gguf"), (e) => {
      e.set("deepseek2.expert_gating_func", u32(2));
    });
    await rejectsWith(openGgufModel(sigmoid), RangeError, [
      'sigmoid routing (DeepSeek-V3) without the selection bias tensor "exp_probs_b"',
    ]);
  });
  const config = await folderConfig(join(DIR, "deepseek_v3_conv"));
  assert.throws(
    () => ggufArchMetadata(config),
    /DeepseekV3ForCausalLM has no llama\.cpp architecture to write \(Kiln reads deepseek2 files, but does not write them/,
  );
});
