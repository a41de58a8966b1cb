/**
 * GPT-OSS as GGUF (llama.cpp's `gpt-oss`), against llama.cpp's own converter:
 * `fixtures/llama_cpp/gpt_oss/<name>/llama_cpp_f32.gguf` was written by the
 * `convert_hf_to_gguf.py` of a llama.cpp with GptOssModel (through
 * `tools/llama_cpp_convert.py`) from the transformers checkpoint beside it, whose
 * logits transformers computed (see `fixtures/llama_cpp/README.md`). One is f32
 * with widths that are not multiples of 32; the other stores its experts as
 * MXFP4, which the converter repacks (`transform_nibble_layout`) and Kiln presents
 * from the HF blocks itself (`fused_source.ts`): their bytes must agree.
 *
 * Checked: the config Kiln derives from each file equals the folder's; every
 * tensor Kiln presents from the file equals the one it presents from the folder
 * (MXFP4 blocks bit for bit); the file runs to transformers' logits; Kiln writes
 * from the folder the converter's tensors and model keys; `kiln quantize` files
 * (f32, q8_0, mxfp4) read back; and bad files and configs are refused by name.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { openWeights, type WeightSource } from "../app/model/source.ts";
import { convertToGguf, ggufArchMetadata, openGgufModel } from "../app/gguf/arch.ts";
import { GgufFile } from "../app/gguf/file.ts";
import type { GgufEntry } from "../app/gguf/value.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import type { ModelConfig } from "../models/config.ts";
import { assertBitsEqual, gpu, rejectsWith, withTmp } from "./_util.ts";
import { kiln } from "./cli_util.ts";
import { assertGreedyMatches, readTransformersRef, relToRms } from "./fixtures/transformers_ref.ts";
import { assertWritesLikeConverter, rewrite } from "./fixtures/converter_compare.ts";

const DIR = new URL("./fixtures/llama_cpp/gpt_oss/", import.meta.url).pathname;
const HF = new URL("./fixtures/hf/", import.meta.url).pathname;
// f32, widths 32 and 24; MXFP4 experts, widths 64 and 32.
const NAMES = ["gpt_oss_conv", "gpt_oss_mxfp4_conv"];
const gguf = (name: string) => join(DIR, name, "llama_cpp_f32.gguf");

async function folderConfig(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
}

/** The config without its token ids: the converter takes those from the tokenizer it is given. */
function withoutIds(c: ModelConfig): Omit<ModelConfig, "bosTokenId" | "eosTokenIds"> {
  const { bosTokenId: _b, eosTokenIds: _e, ...rest } = c;
  return rest;
}

async function withSources<T>(
  paths: [string, string],
  config: ModelConfig,
  fn: (a: WeightSource, b: WeightSource) => Promise<T>,
): Promise<T> {
  const a = await openWeights(paths[0], { config });
  try {
    const b = await openWeights(paths[1], { config });
    try {
      return await fn(a, b);
    } finally {
      b.close();
    }
  } finally {
    a.close();
  }
}

/**
 * Every tensor of `a` and `b` (names, shapes, formats; MXFP4 blocks byte for
 * byte, floats bit for bit); returns how many were MXFP4.
 */
async function assertSameTensors(a: WeightSource, b: WeightSource): Promise<number> {
  assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
  let blocks = 0;
  for (const [name, info] of b.tensors) {
    const mine = a.info(name);
    assert.deepEqual(mine.shape, info.shape, name);
    assert.equal(mine.format, info.format, name);
    if (info.format) {
      assert.deepEqual(await a.readRaw(name), await b.readRaw(name), name);
      blocks++;
    } else {
      const [x, y] = [await a.readAs(name, "f32"), await b.readAs(name, "f32")];
      assertBitsEqual(x as Float32Array, y as Float32Array, name);
    }
  }
  return blocks;
}

for (const name of NAMES) {
  const dir = join(DIR, name);

  Deno.test(`gpt-oss gguf: the config of llama.cpp's ${name} is the folder's`, async () => {
    using m = await openGgufModel(gguf(name));
    assert.equal(m.architecture, "gpt-oss");
    const ours = parseConfig(m.config, gguf(name));
    const theirs = parseConfig(await folderConfig(dir));
    assert.deepEqual(withoutIds(ours), withoutIds(theirs));
    // Checked field by field too, so a change in ModelConfig cannot hide one.
    assert.deepEqual(ours.pattern.map((p) => p.window), theirs.pattern.map((p) => p.window));
    assert.deepEqual(ours.attention!.rope, theirs.attention!.rope);
    assert.equal(ours.attention!.sinks, true);
    assert.deepEqual(ours.moe, theirs.moe);
  });

  Deno.test(`gpt-oss gguf: every tensor of llama.cpp's ${name} is the folder's`, async () => {
    const config = parseConfig(await folderConfig(dir));
    const mxfp4 = await withSources([gguf(name), dir], config, assertSameTensors);
    // Each layer's gate, up and down of every expert: the HF nibble repacking and
    // llama.cpp's transform_nibble_layout give the same ggml blocks.
    assert.equal(mxfp4, name.includes("mxfp4") ? 2 * 5 * 3 : 0);
  });

  Deno.test(`gpt-oss gguf: llama.cpp's ${name} gives transformers' logits and ids`, async () => {
    const { ref, logits } = await readTransformersRef(
      join(dir, "ref.json"),
      join(dir, "logits.f32"),
    );
    const model = await loadModel(gguf(name), { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      assert.equal(model.config.architecture, "GptOssForCausalLM");
      const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e < 1e-4, `${name}: max error ${e.toExponential(2)} of the logit rms`);
      await assertGreedyMatches(model, ref, name);
    } finally {
      model.dispose();
    }
  });

  Deno.test(`gpt-oss gguf: Kiln writes ${name} as llama.cpp's converter does`, async () => {
    await assertWritesLikeConverter(dir, gguf(name), "gpt-oss.", 19);
  });
}

/** `kiln quantize dir --type type`, read back: the config, and the open model. */
async function quantized(dir: string, type: string, out: string) {
  const r = await kiln("quantize", dir, "--type", type, "-o", out, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  using m = await openGgufModel(out);
  return parseConfig(m.config, out);
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

/**
 * A quantized file's logits against those of its own weights dequantized to an
 * f32 file: the blocks run as what they hold. (Against transformers, 8-bit
 * weights already move this fixture's logits by up to 0.3 of their rms, and
 * flip an expert at one position.)
 */
async function quantizedRunsAsDequantized(path: string, dir: string): Promise<number> {
  const f32 = path.replace(/\.gguf$/, ".f32.gguf");
  const r = await kiln("quantize", path, "--type", "f32", "-o", f32, "--quiet");
  assert.equal(r.code, 0, r.stderr);
  const { ref } = await readTransformersRef(join(dir, "ref.json"), join(dir, "logits.f32"));
  const model = await loadModel(f32, { device: await gpu(), quiet: true, maxSeq: 64 });
  let want: Float32Array;
  try {
    want = await model.forward(ref.ids);
  } finally {
    model.dispose();
  }
  return await logitError(path, dir, want);
}

Deno.test("gpt-oss gguf: kiln quantize f32 keeps yarn's truncate false and reads back", async () => {
  // openai/gpt-oss's yarn does not round its ramp's ends; llama.cpp always does.
  // Kiln's own key keeps the config's choice, which llama.cpp ignores.
  await withTmp(async (tmp) => {
    const dir = join(HF, "gpt_oss");
    const out = join(tmp, "f32.gguf");
    const cfg = await quantized(dir, "f32", out);
    assert.deepEqual(cfg, parseConfig(await folderConfig(dir)));
    using f = await GgufFile.open(out);
    assert.equal(f.metadata.get("gpt-oss.rope.scaling.yarn_truncate"), false);
    assert.equal(f.metadata.get("gpt-oss.attention.sliding_window_pattern"), undefined);
    assert.equal(f.tensors.get("blk.0.ffn_down_exps.bias")?.type.name, "f32");
    const e = await logitError(out, dir);
    assert.ok(e < 1e-4, `max error ${e.toExponential(2)} of the logit rms`);
  });
});

Deno.test("gpt-oss gguf: kiln quantize q8_0 and mxfp4 read back; MXFP4 experts are copied", async () => {
  await withTmp(async (tmp) => {
    const f32 = join(DIR, "gpt_oss_conv");
    const q8 = join(tmp, "q8_0.gguf");
    assert.deepEqual(await quantized(f32, "q8_0", q8), parseConfig(await folderConfig(f32)));
    using fq = await GgufFile.open(q8);
    // Rows of 32 are q8_0 blocks; the experts' down rows of 24 fall back to f16.
    assert.equal(fq.tensors.get("blk.0.attn_q.weight")?.type.name, "q8_0");
    assert.equal(fq.tensors.get("blk.0.ffn_down_exps.weight")?.type.name, "f16");
    assert.equal(fq.tensors.get("blk.0.attn_sinks.weight")?.type.name, "f32");
    assert.equal(fq.tensors.get("blk.0.ffn_gate_inp.weight")?.type.name, "f32");
    const e8 = await quantizedRunsAsDequantized(q8, f32);
    assert.ok(e8 < 1e-4, `q8_0: max error ${e8.toExponential(2)} of the logit rms`);

    const dir = join(DIR, "gpt_oss_mxfp4_conv");
    const mx = join(tmp, "mxfp4.gguf");
    const config = parseConfig(await folderConfig(dir));
    assert.deepEqual(await quantized(dir, "mxfp4", mx), config);
    using fm = await GgufFile.open(mx);
    assert.equal(fm.metadata.get("general.file_type"), 38);
    for (const t of ["gate", "up", "down"]) {
      assert.equal(fm.tensors.get(`blk.1.ffn_${t}_exps.weight`)?.type.name, "mxfp4", t);
    }
    // The experts' blocks are the checkpoint's, copied: never read as values.
    await withSources([mx, dir], config, async (a, b) => {
      const asValues = new Set<string>();
      const source = {
        config: await folderConfig(dir),
        tensors: b.tensors,
        readF32: async (n: string) => (asValues.add(n), await b.readAs(n, "f32") as Float32Array),
        readRaw: (n: string) => b.readRaw(n),
      };
      await convertToGguf(source, join(tmp, "direct.gguf"), { type: "mxfp4" });
      for (const [name, info] of b.tensors) {
        if (!info.format) continue;
        assert.ok(!asValues.has(name), `${name} was dequantized`);
        assert.deepEqual(await a.readRaw(name), await b.readRaw(name), name);
      }
    });
    const em = await quantizedRunsAsDequantized(mx, dir);
    assert.ok(em < 1e-4, `mxfp4: max error ${em.toExponential(2)} of the logit rms`);
  });
});

Deno.test("gpt-oss gguf: a file without sinks, with a misshapen expert or no window is refused", async () => {
  await withTmp(async (tmp) => {
    const src = gguf("gpt_oss_conv");
    const noSinks = await rewrite(src, join(tmp, "sinks.gguf"), (_, t) => {
      t.delete("blk.1.attn_sinks.weight");
    });
    await rejectsWith(openGgufModel(noSinks), RangeError, [
      noSinks,
      'tensor "blk.1.attn_sinks.weight" is missing (it holds "model.layers.1.self_attn.sinks"; ' +
      "expected shape [4])",
    ]);
    const narrow = await rewrite(src, join(tmp, "up.gguf"), (_, t) => {
      const up = t.get("blk.0.ffn_up_exps.weight")!;
      const data = (up.data as Uint8Array).subarray(0, 4 * 16 * 32 * 4);
      t.set(up.name, { ...up, shape: [4, 16, 32], data });
    });
    await rejectsWith(openGgufModel(narrow), RangeError, [
      narrow,
      'tensor "blk.0.ffn_up_exps.weight" has shape [4, 16, 32], expected [4, 24, 32]',
    ]);
    const mx = await rewrite(gguf("gpt_oss_mxfp4_conv"), join(tmp, "mx.gguf"), (_, t) => {
      const down = t.get("blk.1.ffn_down_exps.weight")!;
      t.set(down.name, { ...down, shape: [5, 32, 64] });
    });
    await rejectsWith(openGgufModel(mx), RangeError, [
      'tensor "blk.1.ffn_down_exps.weight" has shape [5, 32, 64], expected [5, 64, 32]',
    ]);
    const noWindow = await rewrite(src, join(tmp, "window.gguf"), (e) => {
      e.delete("gpt-oss.attention.sliding_window");
    });
    await rejectsWith(openGgufModel(noWindow), RangeError, [
      noWindow,
      '"gpt-oss.attention.sliding_window"',
    ]);
  });
});

Deno.test("gpt-oss gguf: the sliding layers follow llama.cpp's period, both ways", async () => {
  await withTmp(async (tmp) => {
    const u32 = (value: number): GgufEntry => ({ type: "u32", value });
    const kinds = async (edit: (e: Map<string, GgufEntry>) => void, tag: string) => {
      const p = await rewrite(gguf("gpt_oss_conv"), join(tmp, `${tag}.gguf`), edit);
      using m = await openGgufModel(p);
      return (m.config.layer_types as string[]).map((t) => t[0]).join("");
    };
    // set_swa_pattern(p): layer i slides when p is 0 or i % p < p − 1; an array is skipped.
    assert.equal(await kinds(() => {}, "default"), "sfs");
    const key = "gpt-oss.attention.sliding_window_pattern";
    assert.equal(await kinds((e) => e.set(key, u32(1)), "p1"), "fff");
    assert.equal(await kinds((e) => e.set(key, u32(0)), "p0"), "sss");
    assert.equal(await kinds((e) => e.set(key, u32(3)), "p3"), "ssf");
    const array: GgufEntry = { type: "array", value: { type: "u32", values: [1, 1, 1] } };
    assert.equal(await kinds((e) => e.set(key, array), "arr"), "sfs");
  });
  const config = await folderConfig(join(DIR, "gpt_oss_conv"));
  const pattern = (types: string[]) =>
    new Map(ggufArchMetadata({ ...config, layer_types: types })).get(
      "gpt-oss.attention.sliding_window_pattern",
    )?.value;
  const [s, f] = ["sliding_attention", "full_attention"];
  assert.equal(pattern([s, f, s]), undefined);
  assert.equal(pattern([f, f, f]), 1);
  assert.equal(pattern([s, s, f]), 3);
  assert.throws(
    () => pattern([f, s, f]),
    /GPT-OSS with layer_types \[full_attention, sliding_attention, full_attention\] has no GGUF form/,
  );
});

Deno.test("gpt-oss gguf: configs llama.cpp's gpt-oss would compute differently are refused", async () => {
  const config = await folderConfig(join(HF, "gpt_oss_mxfp4"));
  // β fast 16: llama.cpp's gpt-oss runs yarn with 32 whatever the file says.
  assert.throws(
    () => ggufArchMetadata(config),
    /GPT-OSS with yarn attention_factor, mscale, or beta_fast \/ beta_slow other than 32 \/ 1 .* has no GGUF form/,
  );
  const rope = { ...(config.rope_parameters as Record<string, unknown>), beta_fast: 32 };
  // Layer 0 full, layer 1 sliding: no period of set_swa_pattern gives it.
  assert.throws(
    () => ggufArchMetadata({ ...config, rope_parameters: rope }),
    /layer_types \[full_attention, sliding_attention\] has no GGUF form/,
  );
  const plain = { ...config, rope_parameters: rope, layer_types: undefined };
  assert.ok(ggufArchMetadata(plain).length > 20);
  assert.throws(
    () => ggufArchMetadata({ ...plain, swiglu_limit: 5 }),
    /swiglu_limit 5 \(llama\.cpp's gpt-oss clamps at its constant 7\) has no GGUF form/,
  );
  assert.throws(
    () => ggufArchMetadata({ ...plain, attention_bias: false }),
    /attention_bias false \(llama\.cpp's gpt-oss needs q, k, v and o biases\)/,
  );
});
