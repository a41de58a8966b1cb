/**
 * Fine-grained FP8 checkpoints (`quantization_config.quant_method: "fp8"`, as
 * DeepSeek-V3 and the Qwen3 "-FP8" releases ship): the weights dequantized
 * as they load match transformers' own `FineGrainedFP8Config(dequantize=True)`
 * on checkpoints `tools/fp8_checkpoint.py` wrote, and the block grid, scale
 * formats and errors follow the format's definition on awkward shapes.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { openWeights } from "../app/model/source.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { gpu } from "./_util.ts";
import { readTransformersRef, relToRms, tieFreeGreedy } from "./fixtures/transformers_ref.ts";
import { DEEPSEEK_V3_CONFIG } from "./fixtures/published_configs.ts";
import { type FixtureTensor, writeSafetensors } from "./fixtures/write_safetensors.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { withDequantizedWeights } from "../app/model/dequant_source.ts";
import { kiln } from "./fixtures/kiln_cli.ts";
import { Trainer } from "../app/train/trainer.ts";

const HF = new URL("./fixtures/hf/", import.meta.url).pathname;

for (const name of ["qwen3_moe_fp8", "deepseek_v3_fp8"]) {
  Deno.test(`FP8 checkpoint ${name}: logits and greedy ids match transformers' dequantization`, async () => {
    const { ref, logits } = await readTransformersRef(
      join(HF, name, "ref.json"),
      join(HF, name, "logits.f32"),
    );
    const model = await loadModel(join(HF, name), { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      assert.equal(model.config.quantization?.method, "fp8");
      const e = relToRms(await model.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e < 1e-4, `${name}: max error ${e.toExponential(2)} of the logit rms`);
      const want = tieFreeGreedy(ref);
      const ids: number[] = [];
      for await (const id of model.generateIds(ref.ids, { maxTokens: ref.greedy.length })) {
        ids.push(id);
      }
      assert.deepEqual(ids.slice(0, want.length), want);
    } finally {
      model.dispose();
    }
  });
}

Deno.test("FP8 checkpoint: the float source's logits differ (the oracle is not the float model)", async () => {
  // tools/fp8_checkpoint.py asserts this too; here Kiln's own two loads must disagree.
  const device = await gpu();
  const ids = [3, 14, 15, 92, 65, 35];
  const fp8 = await loadModel(join(HF, "qwen3_moe_fp8"), { device, quiet: true, maxSeq: 16 });
  const f32 = await loadModel(join(HF, "qwen3_moe"), { device, quiet: true, maxSeq: 16 });
  try {
    const a = await fp8.forward(ids), b = await f32.forward(ids);
    const diff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    assert.ok(diff > 1e-3, `FP8 and float logits equal (${diff})`);
  } finally {
    fp8.dispose();
    f32.dispose();
  }
});

/** E4M3 (FN: no infinities, 0x7f/0xff NaN) decoded from its definition. */
function e4m3(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf, m = b & 7;
  if (e === 0xf && m === 7) return NaN;
  return sign * (e === 0 ? (m / 8) * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7));
}

function randomCodes(n: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    const b = (s >>> 16) & 0xff;
    return (b & 0x7f) === 0x7f ? b & 0xf0 : b; // no NaN codes in weights
  });
}

async function withFolder(
  tensors: Record<string, FixtureTensor>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_fp8_" });
  try {
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("FP8 weights: ceil block grids, stacked experts, per-tensor and E8M0 scales", async () => {
  // 5×7 in blocks of 2×3: a 3×3 grid whose last row and column cover 1 row / 1 column.
  const w = randomCodes(35, 1), s = Float32Array.from({ length: 9 }, (_, i) => 0.5 + i * 0.25);
  // Two experts of 4×6 in blocks of 2×3, scales as E8M0 bytes (2^(b − 127)).
  const ex = randomCodes(48, 2), es = Uint8Array.from([120, 127, 130, 125, 126, 131, 129, 128]);
  const pt = randomCodes(6, 3);
  const tensors: Record<string, FixtureTensor> = {
    "a.weight": { dtype: "F8_E4M3", shape: [5, 7], data: w },
    "a.weight_scale_inv": { dtype: "F32", shape: [3, 3], data: s },
    "a.activation_scale": { dtype: "F32", shape: [], data: new Float32Array([2]) },
    "experts.gate_up_proj": { dtype: "F8_E4M3", shape: [2, 4, 6], data: ex },
    "experts.gate_up_proj_scale_inv": { dtype: "F8_E8M0", shape: [2, 2, 2], data: es },
    "b.weight": { dtype: "F8_E4M3", shape: [2, 3], data: pt },
    "b.weight_scale_inv": { dtype: "F32", shape: [], data: new Float32Array([0.125]) },
    "norm.weight": { dtype: "F32", shape: [3], data: new Float32Array([1, 2, 3]) },
  };
  await withFolder(tensors, async (dir) => {
    using ckpt = await Checkpoint.open(dir);
    const v = await withDequantizedWeights(ckpt, {
      method: "fp8",
      block: [2, 3],
      scaleFmt: "float",
    });
    assert.deepEqual([...v.tensors.keys()].sort(), [
      "a.weight",
      "b.weight",
      "experts.gate_up_proj",
      "norm.weight",
    ]);
    assert.equal(v.info("a.weight").dtype, "F32");
    const a = await v.readAs("a.weight", "f32");
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 7; j++) {
        const want = Math.fround(e4m3(w[i * 7 + j]) * s[Math.floor(i / 2) * 3 + Math.floor(j / 3)]);
        assert.equal(a[i * 7 + j], want, `a[${i}, ${j}]`);
      }
    }
    const e = await v.readAs("experts.gate_up_proj", "f32");
    for (let x = 0; x < 2; x++) {
      for (let i = 0; i < 4; i++) {
        for (let j = 0; j < 6; j++) {
          const k = (x * 4 + i) * 6 + j;
          const f = 2 ** (es[x * 4 + Math.floor(i / 2) * 2 + Math.floor(j / 3)] - 127);
          assert.equal(e[k], e4m3(ex[k]) * f, `expert ${x} [${i}, ${j}]`);
        }
      }
    }
    assert.deepEqual([...await v.readAs("b.weight", "f32")], [...pt].map((c) => e4m3(c) / 8));
    // Ranges of a dequantized tensor are its f32 bytes (fused parts read so).
    const part = await v.readRange!("experts.gate_up_proj", 24 * 4, 24 * 4);
    assert.deepEqual(new Float32Array(part.slice().buffer), e.subarray(24));
    // f16 reads round the f32 product.
    assert.deepEqual([...await v.readAs("a.weight", "f16")], [...new Float16Array(a)]);
    assert.throws(() => v.info("a.weight_scale_inv"), /part of a quantized weight, read with it/);
  });
});

Deno.test("FP8 weights: a scale grid that does not fit the weight is a RangeError naming both", async () => {
  const tensors: Record<string, FixtureTensor> = {
    "q.weight": { dtype: "F8_E4M3", shape: [5, 7], data: randomCodes(35, 4) },
    "q.weight_scale_inv": { dtype: "F32", shape: [2, 3], data: new Float32Array(6) },
  };
  await withFolder(tensors, async (dir) => {
    using ckpt = await Checkpoint.open(dir);
    await assert.rejects(
      () => withDequantizedWeights(ckpt, { method: "fp8", block: [2, 3], scaleFmt: "float" }),
      (e: Error) =>
        e instanceof RangeError && /"q\.weight_scale_inv" has shape \[2, 3\]/.test(e.message) &&
        /"q\.weight" of shape \[5, 7\] in blocks of \[2, 3\] needs \[3, 3\]/.test(e.message),
    );
    // Without weight_block_size the block follows from the grid, which must divide the weight.
    await assert.rejects(
      () => withDequantizedWeights(ckpt, { method: "fp8", scaleFmt: "float" }),
      /does not divide into that grid/,
    );
  });
});

Deno.test("FP8 configs: the published DeepSeek-V3 config reads, other methods are refused by name", () => {
  const cfg = parseConfig(DEEPSEEK_V3_CONFIG);
  assert.deepEqual(cfg.quantization, { method: "fp8", block: [128, 128], scaleFmt: "float" });
  const mixtral = JSON.parse(Deno.readTextFileSync(join(HF, "mixtral_gqa_sw", "config.json")));
  const cases: [unknown, RegExp][] = [
    [{ quant_method: "awq", bits: 4 }, /quantization_config .*not "awq"; a GGUF file/],
    [{ quant_method: "mxfp4" }, /not "mxfp4"/],
    [{ quant_method: "gptq", bits: 3 }, /"quantization_config\.bits" is 3/],
    [{ quant_method: "modelopt", quant_algo: "NVFP4" }, /quant_algo" is "NVFP4"/],
    [
      { quant_method: "compressed-tensors", format: "float-quantized", config_groups: {} },
      /config_groups" is \{\}; Kiln reads one config group/,
    ],
    [{ quant_method: "fp8", fmt: "e5m2" }, /"quantization_config\.fmt" is "e5m2"/],
    [
      { quant_method: "fp8", weight_block_size: [128] },
      /weight_block_size" is \[128\]; Kiln reads two/,
    ],
    [{ quant_method: "fp8", scale_fmt: "e4m3" }, /scale_fmt" must be "float" or "ue8m0"/],
    ["fp8", /expected an object/],
  ];
  for (const [q, pattern] of cases) {
    assert.throws(() => parseConfig({ ...mixtral, quantization_config: q }), pattern);
  }
  assert.deepEqual(
    parseConfig({ ...mixtral, quantization_config: { quant_method: "fp8", scale_fmt: "ue8m0" } })
      .quantization,
    { method: "fp8", scaleFmt: "ue8m0" },
  );
  // MiniMax-M2's config names the same E4M3 format by torch's dtype.
  assert.deepEqual(
    parseConfig({ ...mixtral, quantization_config: { quant_method: "fp8", fmt: "float8_e4m3fn" } })
      .quantization,
    { method: "fp8", scaleFmt: "float" },
  );
});

Deno.test("kiln quantize reads an FP8 folder: its f32 GGUF gives transformers' logits", async () => {
  // As llama.cpp's convert_hf_to_gguf.py does with FP8 folders: dequantized, then written.
  const dir = await Deno.makeTempDir({ prefix: "kiln_fp8_gguf_" });
  const src = join(HF, "qwen3_moe_fp8");
  try {
    const out = join(dir, "m.gguf");
    const r = await kiln("quantize", src, "--type", "f32", "-o", out, "--quiet");
    assert.equal(r.code, 0, r.stderr);
    const { ref, logits } = await readTransformersRef(
      join(src, "ref.json"),
      join(src, "logits.f32"),
    );
    const device = await gpu();
    const m = await loadModel(out, { device, quiet: true, maxSeq: 64 });
    try {
      const e = relToRms(await m.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(
        e < 1e-4,
        `the GGUF of the FP8 model off by ${e.toExponential(2)} of the logit rms`,
      );
    } finally {
      m.dispose();
    }
    const config = parseConfig(JSON.parse(await Deno.readTextFile(join(src, "config.json"))));
    const w = await openWeights(src, { config });
    assert.ok(![...w.tensors.keys()].some((n) => n.endsWith("_scale_inv")));
    w.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fine-tuning an FP8 checkpoint starts from its dequantized weights and saves floats", async () => {
  const src = join(HF, "qwen3_moe_fp8");
  const { ref, logits } = await readTransformersRef(join(src, "ref.json"), join(src, "logits.f32"));
  const dir = await Deno.makeTempDir({ prefix: "kiln_fp8_tune_" });
  const device = await gpu();
  const t = await Trainer.create({
    from: src,
    batch: 1,
    seq: 16,
    device,
    schedule: { peak: 1e-3, warmup: 1, decay: "constant" },
  });
  try {
    const e = relToRms(await t.logits(ref.ids), logits, ref.logit_rms);
    assert.ok(e < 1e-4, `fine-tuning starts off by ${e.toExponential(2)} of the logit rms`);
    await t.save(dir);
    const saved = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    assert.equal(saved.quantization_config, undefined);
    const m = await loadModel(dir, { device, quiet: true, maxSeq: 64 });
    try {
      assert.equal(m.config.quantization, undefined);
      const e2 = relToRms(await m.forward(ref.ids), logits, ref.logit_rms);
      assert.ok(e2 < 1e-4, `the saved checkpoint off by ${e2.toExponential(2)}`);
    } finally {
      m.dispose();
    }
  } finally {
    t.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FP8 checkpoint under the expert scheduler: disk-tier experts dequantize as they are read", async () => {
  const src = join(HF, "qwen3_moe_fp8");
  const ids = [5, 17, 60, 2, 44, 91, 33, 8];
  const device = await gpu();
  const all = await loadModel(src, { device, quiet: true, maxSeq: 32, memoryBudget: "64GiB" });
  const want = await all.forward(ids);
  const { fixedBytes, expertBytes } = all.expertPlan!;
  all.dispose();
  const m = await loadModel(src, {
    device,
    quiet: true,
    maxSeq: 32,
    memoryBudget: fixedBytes + 5 * expertBytes,
    hostMemoryBudget: 2 * expertBytes,
  });
  try {
    assert.deepEqual(await m.forward(ids), want);
    assert.ok(m.experts!.stats.diskBytesRead > 0, "experts were read from disk");
  } finally {
    m.dispose();
  }
});
