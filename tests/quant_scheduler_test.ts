/**
 * @file The expert scheduler with quantized experts: slot pools of word-padded
 * blocks, uploads counted in block bytes, every budget from the minimum up
 * bit-identical to the same model with every expert resident; and a
 * Q4_K_M-style file (one layer's `ffn_down` in Q6_K) whose experts are unified
 * to one format per pool as they load.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel, type Model } from "../app/model/mod.ts";
import { convertToGguf } from "../app/gguf/arch.ts";
import { writeQ6kMix } from "./fixtures/gguf_mixed.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { assertBitsEqual, gpu } from "./_util.ts";
import { moePrefix, parseConfig } from "../models/architectures/mod.ts";
import { unifyExpertFormats } from "../app/model/weights.ts";
import type { QuantFormat } from "../core/quant/formats.ts";

const PROMPT = [5, 17, 3, 99, 42, 7, 250, 11, 0, 64, 31, 8, 120];
const tmp = await Deno.makeTempDir({ prefix: "kiln_qsched_" });

async function gguf(
  config: Record<string, unknown>,
  name: string,
  type: "q8_0" | "q4_k",
): Promise<string> {
  const dir = join(tmp, name);
  await writeTinyMixtral(dir, { config, seed: 3 });
  const file = join(tmp, `${name}.${type}.gguf`);
  const cfg = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  using ckpt = await Checkpoint.open(dir);
  await convertToGguf(
    { config: cfg, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
    file,
    {
      type,
    },
  );
  return file;
}

const open = async (path: string, memoryBudget?: number | string, policy?: "lru" | "stream") =>
  await loadModel(path, {
    device: await gpu(),
    quiet: true,
    maxSeq: 64,
    memoryBudget,
    expertPolicy: policy,
  });

async function collect(model: Model, n: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of model.generateIds(PROMPT, { maxTokens: n, readEvery: 4 })) ids.push(id);
  return ids;
}

/** Budgets from the minimum to full give the all-resident logits and ids, bit for bit. */
async function checkBudgets(file: string, reference: string | number): Promise<void> {
  const ref = await open(file, reference);
  const refLogits = await ref.forward(PROMPT);
  const refIds = await collect(ref, 10);
  const plan0 = ref.expertPlan;
  ref.dispose();
  const probe = await open(file, "64GiB");
  const p0 = probe.expertPlan!;
  probe.dispose();
  assert.ok(p0.allResident);
  let streamed = false;
  for (const policy of ["lru", "stream"] as const) {
    for (let slots = p0.experts; slots < p0.layers * p0.experts; slots += 3) {
      const m = await open(file, p0.fixedBytes + slots * p0.expertBytes, policy);
      try {
        if (!m.expertPlan!.allResident) streamed = true;
        assertBitsEqual(await m.forward(PROMPT), refLogits, `${policy}, ${slots} slots: logits`);
        assert.deepEqual(await collect(m, 10), refIds, `${policy}, ${slots} slots: ids`);
        if (m.experts && !m.expertPlan!.allResident) {
          assert.ok(m.experts.stats.bytesUploaded > 0);
          assert.equal(
            m.experts.stats.bytesUploaded % p0.expertBytes,
            0,
            "whole experts of block bytes",
          );
        }
      } finally {
        m.dispose();
      }
    }
  }
  assert.ok(streamed, "some budget streams experts");
  void plan0;
}

Deno.test("scheduler with Q8_0 experts: budgets match all-resident bit for bit; slots hold block bytes", async () => {
  const file = await gguf({ num_local_experts: 8, num_hidden_layers: 3 }, "q8", "q8_0");
  const probe = await open(file, "64GiB");
  try {
    // One expert: w1, w3 [64, 32] and w2 [32, 64] in Q8_0 (34 bytes a 32-element block).
    assert.equal(probe.expertPlan!.expertBytes, 3 * 64 * 34);
  } finally {
    probe.dispose();
  }
  await checkBudgets(file, undefined as unknown as number);
});

Deno.test("scheduler with a Q4_K_M-style file: one layer's ffn_down in Q6_K is unified as it loads", async () => {
  const config = {
    num_local_experts: 4,
    num_hidden_layers: 2,
    hidden_size: 256,
    intermediate_size: 256,
    vocab_size: 300,
  };
  const base = await gguf(config, "mixed", "q4_k");
  // Rewrite blk.1.ffn_down_exps in Q6_K, as llama.cpp's Q4_K_M does for some layers.
  const mixed = join(tmp, "mixed.q4_k_m.gguf");
  await writeQ6kMix(base, mixed, (name) => name === "blk.1.ffn_down_exps.weight");
  // Without a budget the layers keep their own formats; with one, a pool per weight.
  const own = await open(mixed);
  const unified = await open(mixed, "64GiB");
  try {
    const a = await own.forward(PROMPT), b = await unified.forward(PROMPT);
    let diff = 0, rms = 0;
    for (let i = 0; i < a.length; i++) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      rms += a[i] * a[i];
    }
    rms = Math.sqrt(rms / a.length);
    assert.ok(diff > 0, "layer 1's down projection was requantized");
    assert.ok(
      diff < 0.2 * rms,
      `requantizing one matrix moves the logits little: ${diff} vs ${rms}`,
    );
  } finally {
    own.dispose();
    unified.dispose();
  }
  await checkBudgets(mixed, "64GiB");
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* gone */ }
});

Deno.test("expert pools of lattice files: one format a weight, Q2_K for IQ1/IQ2 when layers differ", () => {
  const cfg = parseConfig({
    architectures: ["MixtralForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_local_experts: 4,
    num_experts_per_tok: 2,
  });
  const formats = (w1: QuantFormat[], w2: QuantFormat[]) =>
    Object.fromEntries(
      [0, 1, 2].flatMap((i) => [
        [`${moePrefix(cfg, i)}.w1`, w1[i]],
        [`${moePrefix(cfg, i)}.w3`, w1[i]],
        [`${moePrefix(cfg, i)}.w2`, w2[i]],
      ]),
    );
  const pick = (f: Record<string, QuantFormat>) =>
    [0, 1, 2].map((i) => `${f[`${moePrefix(cfg, i)}.w1`]}/${f[`${moePrefix(cfg, i)}.w2`]}`);
  // All layers alike: kept as stored, lattice formats included.
  const same = unifyExpertFormats(cfg, formats(Array(3).fill("iq1_s"), Array(3).fill("iq2_xxs")));
  assert.deepEqual(pick(same), Array(3).fill("iq1_s/iq2_xxs"));
  // A layer in another format: Kiln cannot requantize to IQ1/IQ2, so the pool takes
  // Q2_K and every layer is requantized to it; IQ3_XXS and IQ3_S it writes, so kept.
  const mixed = unifyExpertFormats(
    cfg,
    formats(["iq2_xxs", "iq2_xxs", "q2_k"], ["iq3_xxs", "q4_k", "iq3_xxs"]),
  );
  assert.deepEqual(pick(mixed), Array(3).fill("q2_k/iq3_xxs"));
  const iq1 = unifyExpertFormats(cfg, formats(Array(3).fill("q4_k"), ["iq1_m", "q4_k", "iq1_m"]));
  assert.deepEqual(pick(iq1), Array(3).fill("q4_k/q2_k"));
  // w3 shares w1's pool: an up projection stored otherwise makes the gate's pool Q2_K.
  const w3 = formats(Array(3).fill("iq2_xs"), Array(3).fill("iq2_xs"));
  w3[`${moePrefix(cfg, 1)}.w3`] = "q4_k";
  assert.deepEqual(pick(unifyExpertFormats(cfg, w3)), Array(3).fill("q2_k/iq2_xs"));
  // A majority the pool can hold is kept.
  const q4 = unifyExpertFormats(cfg, formats(["q4_k", "q4_k", "iq2_xs"], Array(3).fill("q6_k")));
  assert.deepEqual(pick(q4), Array(3).fill("q4_k/q6_k"));
  // Formats Kiln writes keep the majority, the low-bit ones included (MXFP4_MOE files).
  const low = unifyExpertFormats(
    cfg,
    formats(["mxfp4", "mxfp4", "q8_0"], ["tq1_0", "q2_0", "tq1_0"]),
  );
  assert.deepEqual(pick(low), Array(3).fill("mxfp4/tq1_0"));
});
