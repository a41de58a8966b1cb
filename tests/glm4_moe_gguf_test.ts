/**
 * GLM-4.5 as GGUF (llama.cpp's `glm4moe`), against llama.cpp's own converter:
 * `fixtures/llama_cpp/glm4_moe/<name>/llama_cpp_f32.gguf` was written by the
 * `convert_hf_to_gguf.py` of a llama.cpp with Glm4MoeModel (through
 * `tools/llama_cpp_convert.py`) from the transformers checkpoint beside it, whose
 * logits transformers computed (see `fixtures/llama_cpp/README.md`). One has half
 * of each head rotated, q/k/v biases, QK-norm, a dense first layer and two shared
 * experts; the second rotates whole heads under linear scaling, has no biases or
 * norms, only MoE layers and tied embeddings; the third routes within 2 of 4
 * expert groups and does not renormalise the chosen weights.
 *
 * Checked: the config Kiln derives from each file equals the folder's; every
 * tensor Kiln presents from the file equals the one it presents from the folder;
 * the file runs to transformers' logits; Kiln writes from the folder the
 * converter's tensors and model keys; `kiln quantize` files (f32, q8_0) read
 * back; multi-token-prediction blocks are skipped; and bad files and configs are
 * refused by name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { openWeights, type WeightSource } from "../app/model/source.ts";
import { ggufArchMetadata, openGgufModel } from "../app/gguf/arch.ts";
import { GgufFile } from "../app/gguf/file.ts";
import type { GgufEntry } from "../app/gguf/value.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import type { ModelConfig } from "../models/config.ts";
import { assertBitsEqual, gpu, rejectsWith, withTmp } from "./_util.ts";
import { kiln } from "./cli_util.ts";
import { assertGreedyMatches, readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";
import { assertWritesLikeConverter, rewrite } from "./fixtures/converter_compare.ts";

const DIR = new URL("./fixtures/llama_cpp/glm4_moe/", import.meta.url).pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
const NAMES = ["glm4_moe_conv", "glm4_moe_full_rope_conv", "glm4_moe_group_conv"];
const gguf = (name: string) => join(DIR, name, "llama_cpp_f32.gguf");

async function folderConfig(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
}

/**
 * The config without its token ids (the converter takes those from the
 * tokenizer it is given) and, with `mtp` false, without the count of
 * multi-token-prediction layers (Kiln writes none of them).
 */
function comparable(c: ModelConfig, mtp = true): Partial<ModelConfig> {
  const { bosTokenId: _b, eosTokenIds: _e, extraLayers, ...rest } = c;
  return mtp ? { ...rest, extraLayers } : rest;
}

/** Every tensor of `a` and `b`: names, shapes, formats, f32 values bit for bit. */
async function assertSameTensors(a: WeightSource, b: WeightSource): Promise<void> {
  assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
  for (const [name, info] of b.tensors) {
    const mine = a.info(name);
    assert.deepEqual(mine.shape, info.shape, name);
    assert.equal(mine.format, info.format, name);
    const [x, y] = [await a.readAs(name, "f32"), await b.readAs(name, "f32")];
    assertBitsEqual(x as Float32Array, y as Float32Array, name);
  }
}

async function withSources(paths: [string, string], config: ModelConfig): Promise<void> {
  const a = await openWeights(paths[0], { config });
  try {
    const b = await openWeights(paths[1], { config });
    try {
      await assertSameTensors(a, b);
    } finally {
      b.close();
    }
  } finally {
    a.close();
  }
}

/** max |logits of `path` − `want`| over the fixture's prompt, relative to its logit rms. */
async function logitError(path: string, dir: string, want?: Float32Array): Promise<number> {
  const { ref, logits } = await readTransformersRef(join(dir, "ref.json"), join(dir, "logits.f32"));
  const model = await loadModel(path, { device: await gpu(), quiet: true, maxSeq: 64 });
  try {
    return relToRms(await model.forward(ref.ids), want ?? logits, ref.logit_rms);
  } finally {
    model.dispose();
  }
}

for (const name of NAMES) {
  const dir = join(DIR, name);

  Deno.test(`glm4moe gguf: the config of llama.cpp's ${name} is the folder's`, async () => {
    using m = await openGgufModel(gguf(name));
    assert.equal(m.architecture, "glm4moe");
    const ours = parseConfig(m.config, gguf(name));
    const theirs = parseConfig(await folderConfig(dir));
    assert.deepEqual(comparable(ours), comparable(theirs));
    // Checked field by field too, so a change in ModelConfig cannot hide one.
    assert.deepEqual(ours.pattern, theirs.pattern);
    assert.equal(ours.attention!.rotaryDim, theirs.attention!.rotaryDim);
    assert.deepEqual(ours.attention!.rope, theirs.attention!.rope);
    assert.deepEqual(ours.moe, theirs.moe);
  });

  Deno.test(`glm4moe gguf: every tensor of llama.cpp's ${name} is the folder's`, async () => {
    await withSources([gguf(name), dir], parseConfig(await folderConfig(dir)));
  });

  Deno.test(`glm4moe gguf: llama.cpp's ${name} gives transformers' logits and ids`, async () => {
    const { ref, logits } = await readTransformersRef(
      join(dir, "ref.json"),
      join(dir, "logits.f32"),
    );
    const model = await loadModel(gguf(name), { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      assert.equal(model.config.architecture, "Glm4MoeForCausalLM");
      const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e < 1e-4, `${name}: max error ${e.toExponential(2)} of the logit rms`);
      await assertGreedyMatches(model, ref, name);
    } finally {
      model.dispose();
    }
  });

  Deno.test(`glm4moe gguf: Kiln writes ${name} as llama.cpp's converter does`, async () => {
    await assertWritesLikeConverter(dir, gguf(name), "glm4moe.", 20);
  });
}

/** `kiln quantize dir --type type`, read back as a parsed config. */
async function quantized(dir: string, type: string, out: string): Promise<ModelConfig> {
  const r = await kiln("quantize", dir, "--type", type, "-o", out, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  using m = await openGgufModel(out);
  return parseConfig(m.config, out);
}

Deno.test("glm4moe gguf: kiln quantize f32 and q8_0 of transformers' GLM-4.5 read back", async () => {
  await withTmp(async (tmp) => {
    // transformers' own save: its config counts one MTP layer it holds no tensors of.
    const dir = join(HF, "glm4_moe");
    const config = parseConfig(await folderConfig(dir));
    const f32 = join(tmp, "f32.gguf");
    const back = await quantized(dir, "f32", f32);
    assert.deepEqual(comparable(back, false), comparable(config, false));
    assert.equal(back.extraLayers, 0);
    using f = await GgufFile.open(f32);
    assert.equal(f.metadata.get("glm4moe.block_count"), 3);
    assert.equal(f.metadata.get("glm4moe.nextn_predict_layers"), 0);
    assert.equal(f.metadata.get("glm4moe.rope.dimension_count"), 8);
    assert.equal(f.tensors.get("blk.1.exp_probs_b.bias")?.type.name, "f32");
    const e = await logitError(f32, dir);
    assert.ok(e < 1e-4, `f32: max error ${e.toExponential(2)} of the logit rms`);

    const q8 = join(tmp, "q8_0.gguf");
    assert.deepEqual(
      comparable(await quantized(dir, "q8_0", q8), false),
      comparable(config, false),
    );
    using fq = await GgufFile.open(q8);
    // Rows of 64 (o_proj) are q8_0 blocks; rows of 48 (hidden) fall back to f16.
    assert.equal(fq.tensors.get("blk.0.attn_output.weight")?.type.name, "q8_0");
    assert.equal(fq.tensors.get("blk.0.attn_q.weight")?.type.name, "f16");
    assert.equal(fq.tensors.get("blk.1.ffn_gate_inp.weight")?.type.name, "f32");
    assert.equal(fq.tensors.get("blk.1.attn_q_norm.weight")?.type.name, "f32");
    // The q8_0 file runs as its own weights dequantized to f32.
    const deq = join(tmp, "deq.gguf");
    const r = await kiln("quantize", q8, "--type", "f32", "-o", deq, "--quiet");
    assert.equal(r.code, 0, r.stderr);
    const { ref } = await readTransformersRef(join(dir, "ref.json"), join(dir, "logits.f32"));
    const model = await loadModel(deq, { device: await gpu(), quiet: true, maxSeq: 64 });
    let want: Float32Array;
    try {
      want = await model.forward(ref.ids);
    } finally {
      model.dispose();
    }
    const e8 = await logitError(q8, dir, want);
    assert.ok(e8 < 1e-4, `q8_0: max error ${e8.toExponential(2)} of the logit rms`);
  });
});

const u32 = (value: number): GgufEntry => ({ type: "u32", value });

Deno.test("glm4moe gguf: multi-token-prediction blocks are skipped, as llama.cpp skips them", async () => {
  await withTmp(async (tmp) => {
    const name = "glm4_moe_conv";
    // A fourth block, as the converter writes GLM-4.5-Air's MTP layer: a MoE block
    // plus the nextn tensors (shapes from llama.cpp's glm4moe loader).
    const mtp = await rewrite(gguf(name), join(tmp, "mtp.gguf"), (e, t) => {
      e.set("glm4moe.block_count", u32(4));
      e.set("glm4moe.nextn_predict_layers", u32(1));
      for (const [n, s] of [...t]) {
        const to = n.replace("blk.2.", "blk.3.");
        if (to !== n) t.set(to, { ...s, name: to });
      }
      const f32 = (n: string, shape: number[]) =>
        t.set(n, {
          name: n,
          shape,
          type: "f32",
          data: new Uint8Array(4 * shape[0] * (shape[1] ?? 1)),
        });
      f32("blk.3.nextn.eh_proj.weight", [32, 64]);
      f32("blk.3.nextn.enorm.weight", [32]);
      f32("blk.3.nextn.hnorm.weight", [32]);
      f32("blk.3.nextn.shared_head_norm.weight", [32]);
    });
    using m = await openGgufModel(mtp);
    assert.equal(m.config.num_hidden_layers, 3);
    assert.equal(m.config.num_nextn_predict_layers, 1);
    const cfg = parseConfig(m.config, mtp);
    assert.equal(cfg.extraLayers, 1);
    assert.ok(![...m.tensors.values()].some((t) => t.source.startsWith("blk.3.")));
    await withSources([mtp, join(DIR, name)], cfg);
    const bad = await rewrite(gguf(name), join(tmp, "nextn.gguf"), (e) => {
      e.set("glm4moe.nextn_predict_layers", u32(3));
    });
    await rejectsWith(openGgufModel(bad), RangeError, [
      '"glm4moe.nextn_predict_layers" is 3, expected fewer than the 3 blocks',
    ]);
  });
});

Deno.test("glm4moe gguf: a file without exp_probs_b, misshapen, or routing otherwise is refused", async () => {
  await withTmp(async (tmp) => {
    const src = gguf("glm4_moe_conv");
    const noBias = await rewrite(src, join(tmp, "bias.gguf"), (_, t) => {
      t.delete("blk.2.exp_probs_b.bias");
    });
    await rejectsWith(openGgufModel(noBias), RangeError, [
      noBias,
      'tensor "blk.2.exp_probs_b.bias" is missing (it holds ' +
      '"model.layers.2.mlp.gate.e_score_correction_bias"; expected shape [6])',
    ]);
    const short = await rewrite(src, join(tmp, "short.gguf"), (_, t) => {
      const b = t.get("blk.1.exp_probs_b.bias")!;
      t.set(b.name, { ...b, shape: [5], data: (b.data as Uint8Array).subarray(0, 20) });
    });
    await rejectsWith(openGgufModel(short), RangeError, [
      short,
      'tensor "blk.1.exp_probs_b.bias" has shape [5], expected [6]',
    ]);
    const shexp = await rewrite(src, join(tmp, "shexp.gguf"), (e) => {
      e.set("glm4moe.expert_shared_count", u32(1));
    });
    await rejectsWith(openGgufModel(shexp), RangeError, [
      'tensor "blk.1.ffn_gate_shexp.weight" has shape [24, 32], expected [12, 32]',
    ]);
    const softmax = await rewrite(src, join(tmp, "softmax.gguf"), (e) => {
      e.set("glm4moe.expert_gating_func", u32(1));
    });
    await rejectsWith(openGgufModel(softmax), TypeError, [
      '"glm4moe.expert_gating_func" is 1; Kiln\'s GLM-4.5 routes by sigmoid (2)',
    ]);
    const groups = await rewrite(src, join(tmp, "groups.gguf"), (e) => {
      e.set("glm4moe.expert_group_count", u32(2));
      e.set("glm4moe.expert_group_used_count", u32(3));
    });
    await rejectsWith(openGgufModel(groups), RangeError, [
      '"glm4moe.expert_group_used_count" is 3, expected 1 to the 2 groups',
    ]);
    // Absent, llama.cpp does not renormalise: neither does Kiln.
    const noNorm = await rewrite(src, join(tmp, "norm.gguf"), (e) => {
      e.delete("glm4moe.expert_weights_norm");
    });
    using m = await openGgufModel(noNorm);
    assert.equal(parseConfig(m.config, noNorm).moe!.normTopk, false);
    const noShared = await rewrite(src, join(tmp, "shared.gguf"), (e) => {
      e.delete("glm4moe.expert_shared_count");
    });
    await rejectsWith(openGgufModel(noShared), RangeError, ['"glm4moe.expert_shared_count"']);
  });
});

Deno.test("glm4moe gguf: configs llama.cpp's glm4moe cannot hold are refused", async () => {
  const config = await folderConfig(join(DIR, "glm4_moe_conv"));
  assert.ok(ggufArchMetadata(config).length > 20);
  assert.throws(
    () => ggufArchMetadata({ ...config, first_k_dense_replace: 3 }),
    /GLM-4\.5 without MoE layers .* has no GGUF form: llama\.cpp's glm4moe needs expert_count > 0/,
  );
  const rp = config.rope_parameters as Record<string, unknown>;
  assert.throws(
    () =>
      ggufArchMetadata({ ...config, rope_parameters: { ...rp, partial_rotary_factor: 0.3125 } }),
    /a partial RoPE over an odd 5 values a head has no GGUF form/,
  );
  // Routing that keeps every group limits nothing: written as one group, which
  // llama.cpp reads (it refuses a file that keeps all of several groups).
  const all = new Map(ggufArchMetadata({ ...config, n_group: 2, topk_group: 2 }));
  assert.deepEqual(
    [
      all.get("glm4moe.expert_group_count")?.value,
      all.get("glm4moe.expert_group_used_count")?.value,
    ],
    [1, 1],
  );
});
