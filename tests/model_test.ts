/**
 * End-to-end: tiny Hugging Face checkpoints (exact layout) loaded by `loadModel`,
 * logits on the GPU compared with the independent float64 reference at every
 * position; incremental decoding equals the full forward; generation and errors.
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "../app/model/mod.ts";
import { referenceLogits } from "./reference/hf_reference.ts";
import { writeTinyJamba, writeTinyMamba, writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { assertDecodeMatchesForward, gpu, relMaxError, withTinyModel } from "./_util.ts";

const WRITERS = { mixtral: writeTinyMixtral, mamba: writeTinyMamba, jamba: writeTinyJamba };

function withModel(
  arch: keyof typeof WRITERS,
  opts: Parameters<typeof writeTinyMixtral>[1],
  fn: (model: Model, dir: string) => Promise<void>,
): Promise<void> {
  return withTinyModel(WRITERS[arch], opts, fn);
}

const PROMPT = [5, 17, 3, 99, 42, 7, 250, 11, 0, 64, 31, 8, 120];

for (const arch of ["mixtral", "mamba", "jamba"] as const) {
  Deno.test(`${arch}: GPU logits match the float64 reference at every position (f32, ≤ 1e-3 of scale)`, async () => {
    await withModel(arch, {}, async (model, dir) => {
      const ref = await referenceLogits(dir);
      const got = await model.forward(PROMPT);
      const want = ref(PROMPT);
      const e = relMaxError(got, want);
      assert.ok(e <= 1e-3, `${arch}: max error ${e.toExponential(2)} of logit scale`);
    });
  });

  Deno.test(`${arch}: prefill then decode equals the full forward`, async () => {
    await withModel(arch, {}, (model) => assertDecodeMatchesForward(model, PROMPT, 9));
  });
}

Deno.test("sharded BF16 checkpoints load and match their own reference", async () => {
  await withModel("mixtral", { shards: 3, dtype: "BF16" }, async (model, dir) => {
    const ref = await referenceLogits(dir);
    const e = relMaxError(await model.forward(PROMPT), ref(PROMPT));
    assert.ok(e <= 1e-3, `error ${e}`);
  });
});

Deno.test("greedy generation on the device equals argmax of the reference, read back every few tokens", async () => {
  await withModel("mamba", {}, async (model, dir) => {
    const ref = await referenceLogits(dir);
    const V = model.config.vocabSize;
    const ids = PROMPT.slice(0, 5);
    const got: number[] = [];
    for await (const id of model.generateIds(ids, { maxTokens: 10, readEvery: 4 })) got.push(id);
    // Independent greedy loop on the reference.
    const seq = [...ids];
    const want: number[] = [];
    for (let i = 0; i < 10; i++) {
      const logits = ref(seq);
      const row = logits.subarray((seq.length - 1) * V, seq.length * V);
      let best = 0;
      for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
      want.push(best);
      seq.push(best);
    }
    assert.deepEqual(got, want);
    assert.equal(model.lastStats!.readbacks, 4); // the first token at once, then 9 read 4 at a time
  });
});

Deno.test("generate streams text through the tokenizer and stops at a stop string", async () => {
  await withModel("mixtral", {}, async (model) => {
    let text = "";
    for await (
      const piece of model.generate("hello", { maxTokens: 12, temperature: 0.8, topK: 20, seed: 3 })
    ) {
      // Random weights emit stray byte tokens; they may decode to U+FFFD, but a piece
      // never splits a character (no lone surrogates).
      assert.ok(piece.isWellFormed());
      text += piece;
    }
    assert.ok(model.lastStats!.generatedTokens >= 1);
    // Sampling is seeded: the same call gives the same text.
    let again = "";
    for await (
      const piece of model.generate("hello", { maxTokens: 12, temperature: 0.8, topK: 20, seed: 3 })
    ) again += piece;
    assert.equal(again, text);
    if (text.length > 2) {
      const stop = text.slice(1, 2);
      let cut = "";
      for await (
        const piece of model.generate("hello", {
          maxTokens: 12,
          temperature: 0.8,
          topK: 20,
          seed: 3,
          stop: [stop],
        })
      ) cut += piece;
      assert.equal(cut, text.slice(0, text.indexOf(stop)));
    }
  });
});

Deno.test("a folder without tokenizer.json still runs on token ids", async () => {
  await withModel("mamba", { tokenizer: "none" }, async (model) => {
    assert.equal(model.tokenizer, undefined);
    const logits = await model.forward([1, 2, 3]);
    assert.equal(logits.length, 3 * model.config.vocabSize);
    await assert.rejects(async () => {
      for await (const _ of model.generate("hi")) { /* */ }
    }, /no tokenizer.json/);
  });
});

Deno.test("bad token ids and malformed checkpoints raise clear errors", async () => {
  await withModel("mixtral", {}, async (model) => {
    await assert.rejects(model.forward([]), /tokenIds is empty/);
    await assert.rejects(model.forward([1, 1e6]), /token 1 = 1000000 is outside the vocabulary/);
  });
  const dir = await Deno.makeTempDir();
  try {
    await writeTinyMamba(dir);
    // Truncate the safetensors file: the header now points past the end.
    const f = `${dir}/model.safetensors`;
    const bytes = await Deno.readFile(f);
    await Deno.writeFile(f, bytes.subarray(0, bytes.length - 100));
    await assert.rejects(
      loadModel(dir, { device: await gpu(), quiet: true }),
      (e: Error) => e instanceof RangeError && /model\.safetensors/.test(e.message),
    );
    // Unknown architecture.
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ architectures: ["BertModel"] }),
    );
    await assert.rejects(
      loadModel(dir, { device: await gpu(), quiet: true }),
      /BertModel.*not supported/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const arch of ["mixtral", "mamba", "jamba"] as const) {
  Deno.test(`${arch}: f16 compute stays within 3% of the logit scale of f32`, async () => {
    const dir = await Deno.makeTempDir();
    try {
      await WRITERS[arch](dir, {});
      const dev = await gpu();
      const a = await loadModel(dir, { device: dev, quiet: true, maxSeq: 64 });
      const b = await loadModel(dir, { device: dev, quiet: true, maxSeq: 64, dtype: "f16" });
      try {
        const [x, y] = [await a.forward(PROMPT), await b.forward(PROMPT)];
        let err = 0, scale = 0;
        for (let i = 0; i < x.length; i++) {
          err = Math.max(err, Math.abs(x[i] - y[i]));
          scale = Math.max(scale, Math.abs(x[i]));
        }
        assert.ok(err / scale < 0.03, `${arch} f16: ${(err / scale).toExponential(2)}`);
      } finally {
        a.dispose();
        b.dispose();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
