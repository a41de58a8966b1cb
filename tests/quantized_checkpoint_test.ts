/**
 * GPTQ, compressed-tensors (FP8 per channel and per block, INT8, packed INT4
 * with and without zero points) and ModelOpt FP8 checkpoints of a tiny
 * GLM-4.5-style MoE (`fixtures/llama_cpp/quantized_hf/`, written by
 * `tools/quantized_checkpoint.py`) against llama.cpp's converter, which
 * dequantized each folder to the f32 GGUF beside it on its own: every tensor
 * Kiln reads from the quantized folder equals the converter's, bit for bit,
 * and the model computes the same logits from either.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { openWeights, readModelConfig } from "../app/model/source.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { withDequantizedWeights } from "../app/model/dequant_source.ts";
import { gpu } from "./_util.ts";
import { type FixtureTensor, writeSafetensors } from "./fixtures/write_safetensors.ts";
import { dequantGptq, unpackCompressed } from "../app/model/dequant_formats.ts";

const DIR = new URL("./fixtures/llama_cpp/quantized_hf/", import.meta.url).pathname;
const FLOAT = new URL("./fixtures/llama_cpp/glm4_moe/glm4_moe_conv/", import.meta.url).pathname;

const VARIANTS: [string, string][] = [
  ["gptq4_actorder", "gptq"],
  ["gptq8_v2", "gptq"],
  ["ct_fp8_channel", "compressed-tensors"],
  ["ct_fp8_block", "compressed-tensors"],
  ["ct_int8_channel", "compressed-tensors"],
  ["ct_w4a16", "compressed-tensors"],
  ["ct_w4a16_zp", "compressed-tensors"],
  ["modelopt_fp8", "modelopt"],
];

for (const [variant, method] of VARIANTS) {
  Deno.test(`quantized checkpoint ${variant}: every tensor is llama.cpp's converter's, bit for bit`, async () => {
    const dir = join(DIR, variant);
    const cfg = await readModelConfig(dir);
    assert.equal(cfg.quantization?.method, method);
    const ours = await openWeights(dir, { config: cfg });
    const gguf = join(dir, "llama_cpp_f32.gguf");
    const theirs = await openWeights(gguf, { config: await readModelConfig(gguf) });
    const float = await openWeights(FLOAT, { config: await readModelConfig(FLOAT) });
    try {
      assert.deepEqual([...ours.tensors.keys()].sort(), [...theirs.tensors.keys()].sort());
      let quantized = 0;
      for (const name of theirs.tensors.keys()) {
        const a = await ours.readAs(name, "f32"), b = await theirs.readAs(name, "f32");
        assert.deepEqual(a, b, name);
        const f = await float.readAs(name, "f32");
        if (a.some((v, i) => v !== f[i])) quantized++;
      }
      // The comparison is not of float weights passed through: most were quantized.
      assert.ok(
        quantized >= 10,
        `${variant}: only ${quantized} tensors differ from the float source`,
      );
    } finally {
      ours.close();
      theirs.close();
      float.close();
    }
  });
}

for (const variant of ["gptq4_actorder", "ct_w4a16_zp"]) {
  Deno.test(`quantized checkpoint ${variant}: loadModel gives the logits of the converter's GGUF`, async () => {
    const device = await gpu();
    const ids = [17, 3, 250, 41, 99, 7, 128, 64];
    const a = await loadModel(join(DIR, variant), { device, quiet: true, maxSeq: 16 });
    const b = await loadModel(join(DIR, variant, "llama_cpp_f32.gguf"), {
      device,
      quiet: true,
      maxSeq: 16,
    });
    try {
      const x = await a.forward(ids), y = await b.forward(ids);
      const rms = Math.sqrt(y.reduce((s, v) => s + v * v, 0) / y.length);
      const err = x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0) / rms;
      assert.ok(err < 1e-5, `${variant}: off by ${err.toExponential(2)} of the logit rms`);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
}

async function withFolder(
  tensors: Record<string, FixtureTensor>,
  fn: (ckpt: Checkpoint) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_quantized_" });
  try {
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    using ckpt = await Checkpoint.open(dir);
    await fn(ckpt);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("GPTQ without g_idx: inputs in order, groups of group_size", async () => {
  // 16 inputs, 8 outputs, 4-bit, groups of 8: g_idx would be 0 × 8, 1 × 8.
  const qweight = Int32Array.from({ length: 2 * 8 }, (_, i) => (i * 0x13579bdf) | 0);
  const qzeros = Int32Array.from([0x76543210, 0x01234567]);
  const scales = Float32Array.from({ length: 16 }, (_, i) => 0.5 + i / 8);
  const gIdx = Int32Array.from({ length: 16 }, (_, i) => Math.floor(i / 8));
  const want = dequantGptq(qweight, qzeros, scales, gIdx, 16, 8, 4, false);
  await withFolder({
    "l.qweight": { dtype: "I32", shape: [2, 8], data: qweight },
    "l.qzeros": { dtype: "I32", shape: [2, 1], data: qzeros },
    "l.scales": { dtype: "F16", shape: [2, 8], data: Float16Array.from(scales) },
  }, async (ckpt) => {
    const v = await withDequantizedWeights(ckpt, {
      method: "gptq",
      bits: 4,
      groupSize: 8,
      v2: false,
    });
    assert.deepEqual([...v.tensors.keys()], ["l.weight"]);
    assert.deepEqual(v.info("l.weight").shape, [8, 16]);
    assert.deepEqual(await v.readAs("l.weight", "f32"), want);
  });
});

Deno.test("quantized checkpoints: parts that disagree are errors naming the tensors", async () => {
  await withFolder({
    "l.qweight": { dtype: "I32", shape: [2, 8], data: new Int32Array(16) },
    "l.qzeros": { dtype: "I32", shape: [3, 1], data: new Int32Array(3) },
    "l.scales": { dtype: "F16", shape: [2, 8], data: new Float16Array(16) },
  }, async (ckpt) => {
    await assert.rejects(
      () => withDequantizedWeights(ckpt, { method: "gptq", bits: 4, groupSize: 8, v2: false }),
      /GPTQ tensors of "l" disagree: qweight \[2, 8\], qzeros \[3, 1\], scales \[2, 8\]/,
    );
  });
  await withFolder({
    "l.weight_packed": { dtype: "I32", shape: [2, 1], data: new Int32Array(2) },
    "l.weight_shape": { dtype: "I64", shape: [2], data: BigInt64Array.from([2n, 8n]) },
  }, async (ckpt) => {
    await assert.rejects(
      () =>
        withDequantizedWeights(ckpt, {
          method: "compressed-tensors",
          format: "pack-quantized",
          bits: 4,
          groupSize: 4,
        }),
      /tensor "l\.weight_packed" is stored without "l\.weight_scale"/,
    );
  });
  await withFolder({
    "l.weight": { dtype: "I8", shape: [4, 6], data: new Int8Array(24) },
    "l.weight_scale": { dtype: "F32", shape: [3, 1], data: new Float32Array(3) },
  }, async (ckpt) => {
    await assert.rejects(
      () =>
        withDequantizedWeights(ckpt, {
          method: "compressed-tensors",
          format: "int-quantized",
          bits: 8,
        }),
      /scale tensor "l\.weight_scale" has shape \[3, 1\], but weight "l\.weight" of shape \[4, 6\] does not broadcast/,
    );
  });
});

Deno.test("pack-quantized: a row that ends in a part-filled word, and zero points packed by rows", () => {
  // 9 rows × 3 columns of 4-bit codes: one word a row (3 of 8 fields used); zero points for
  // 9 rows pack into 2 words a group column.
  const codes = Array.from({ length: 27 }, (_, i) => (i * 7) % 16);
  const packed = Int32Array.from(
    { length: 9 },
    (_, r) => codes.slice(r * 3, r * 3 + 3).reduce((w, c, k) => w | (c << (4 * k)), 0),
  );
  const zps = Array.from({ length: 9 }, (_, r) => (r * 5) % 16);
  const zp = Int32Array.from(
    [0, 1],
    (w) => zps.slice(w * 8, w * 8 + 8).reduce((acc, z, k) => acc | (z << (4 * k)), 0),
  );
  const scale = Float32Array.from({ length: 9 }, (_, r) => 1 + r);
  const got = unpackCompressed(packed, [9, 3], scale, 3, 4, zp);
  for (let r = 0; r < 9; r++) {
    for (let c = 0; c < 3; c++) {
      assert.equal(got[r * 3 + c], (codes[r * 3 + c] - zps[r]) * scale[r], `[${r}, ${c}]`);
    }
  }
});
