/**
 * A tiny Mixtral (attention, RoPE, MoE), Mamba (selective scan, causal conv),
 * Jamba (both, interleaved) and GPT-OSS (attention sinks, biases, experts with
 * biases and the clamped swiglu_oai) each overfit one batch through the
 * training API: fresh Hugging Face init, AdamW, the whole step on the device.
 */

import { OVERFIT_BATCH, TINY_TRAIN_CONFIGS } from "./fixtures/train_configs.ts";
import assert from "node:assert/strict";
import { Trainer } from "../app/train/trainer.ts";
import { gpu } from "./_util.ts";

for (const [name, config] of Object.entries(TINY_TRAIN_CONFIGS)) {
  Deno.test(`train: a tiny ${name} overfits one batch (loss < 0.05 nats in 60 updates)`, async () => {
    const { tokens, ...batch } = OVERFIT_BATCH;
    const trainer = await Trainer.create({ config, ...batch, logEvery: 20, device: await gpu() });
    const history = await trainer.train(tokens, { steps: 60 });
    trainer.dispose();
    assert.ok(history[0].loss > 3, `${name}: initial loss ${history[0].loss}`);
    const last = history.at(-1)!.loss;
    assert.ok(last < 0.05, `${name}: loss after 60 updates ${last} nats`);
  });
}
