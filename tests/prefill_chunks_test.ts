/**
 * Prompts run as chunks of a few fixed lengths (app/model/prefill_chunks.ts):
 * the split itself, chunked logits equal to one whole-prompt run at awkward
 * lengths (attention, Mamba and MoE layers), a new prompt length compiling
 * nothing once its chunk lengths are compiled, and compile time kept out of
 * prefill and decode.
 */
import assert from "node:assert/strict";
import { prefillBuckets, splitPrompt } from "../app/model/prefill_chunks.ts";
import { planPrompt } from "../runtime/prompt_plan.ts";
import { loadModel, type Model } from "../app/model/mod.ts";
import { writeTinyJamba } from "./fixtures/tiny_checkpoints.ts";
import { gpu, relMaxError } from "./_util.ts";
import { type KilnDevice, requestDevice } from "../runtime/device.ts";

Deno.test("prefill buckets: powers of four up to the largest chunk, capped by maxSeq", () => {
  assert.deepEqual(prefillBuckets(4096), [1, 4, 16, 64, 256]);
  assert.deepEqual(prefillBuckets(100), [1, 4, 16, 64, 100]);
  assert.deepEqual(prefillBuckets(4096, 1), [1]);
  assert.deepEqual(prefillBuckets(4096, 50), [1, 4, 16, 50]);
  assert.throws(() => prefillBuckets(64, 0), RangeError);
  assert.throws(() => prefillBuckets(64, 2.5), /prefillChunk must be an integer/);
});

Deno.test("splitPrompt: chunks from the buckets, largest first, summing to the prompt", () => {
  const buckets = prefillBuckets(4096);
  for (let n = 1; n <= 1100; n++) {
    const parts = splitPrompt(n, buckets);
    assert.equal(parts.reduce((a, b) => a + b, 0), n);
    assert.ok(parts.every((p) => buckets.includes(p)), `${n}: ${parts}`);
    assert.deepEqual(parts, [...parts].sort((a, b) => b - a));
    // Below the largest bucket at most three chunks of each size.
    for (const b of buckets.slice(0, -1)) {
      assert.ok(parts.filter((p) => p === b).length <= 3, `${n}: ${parts}`);
    }
  }
  assert.deepEqual(splitPrompt(300, buckets), [256, 16, 16, 4, 4, 4]);
});

Deno.test("planPrompt: covers with compiled chunk lengths, pads only the last run, stays in maxSeq", () => {
  const buckets = prefillBuckets(4096);
  const readySets = [[], [4], [64], [256], [16, 64], [4, 16, 64, 256]];
  for (const singles of [true, false]) {
    for (const set of readySets) {
      for (const maxSeq of [300, 4096]) {
        for (let n = 1; n <= Math.min(maxSeq, 700); n += n < 80 ? 1 : 7) {
          const o = { buckets, ready: (b: number) => set.includes(b), maxSeq, singles };
          const runs = planPrompt(n, o);
          const what = `n ${n} ready [${set}] maxSeq ${maxSeq} singles ${singles}: ${
            JSON.stringify(runs)
          }`;
          assert.equal(runs.reduce((a, r) => a + r.tokens, 0), n, what);
          let at = 0;
          for (const [i, r] of runs.entries()) {
            assert.ok(buckets.includes(r.length) && r.tokens >= 1 && r.tokens <= r.length, what);
            if (r.tokens < r.length) {
              assert.equal(i, runs.length - 1, `${what}: padding before the last run`);
              assert.ok(at + r.length <= maxSeq, `${what}: padding past maxSeq`);
            }
            at += r.tokens;
          }
          const lengths = new Set(runs.map((r) => r.length).filter((l) => !singles || l !== 1));
          const usable = set.filter((b) => !(singles && b === 1));
          if (usable.length === 0) {
            assert.ok(lengths.size <= 1, `${what}: compiles more than one set`);
          } else if (![...lengths].every((l) => set.includes(l))) {
            // Only when the compiled lengths cannot cover the prompt inside maxSeq: the exact split.
            assert.deepEqual(runs.map((r) => r.length), splitPrompt(n, buckets), what);
          }
        }
      }
    }
  }
  const only64 = { buckets, ready: (b: number) => b === 64, maxSeq: 2048, singles: true };
  assert.deepEqual(planPrompt(100, only64), [{ length: 64, tokens: 64 }, {
    length: 64,
    tokens: 36,
  }]);
  // Two tokens cost less as decode steps than as a padded 64-token chunk.
  assert.deepEqual(planPrompt(66, only64).map((r) => r.length).sort(), [1, 1, 64]);
  // Padding past maxSeq is never planned: forward falls back to the exact split.
  const tight = { buckets, ready: (b: number) => b === 256, maxSeq: 300, singles: false };
  assert.deepEqual(planPrompt(290, tight).map((r) => r.length), [256, 16, 16, 1, 1]);
  assert.throws(() => planPrompt(0, only64), RangeError);
  const none = { buckets: [], ready: () => false, maxSeq: 64, singles: true };
  assert.deepEqual(planPrompt(37, none), [{ length: 37, tokens: 37 }]);
});

async function withJamba(
  device: KilnDevice,
  fn: (chunked: Model, whole: Model) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_chunks_" });
  try {
    await writeTinyJamba(dir, { seed: 3 });
    const chunked = await loadModel(dir, { device, quiet: true, maxSeq: 160 });
    const whole = await loadModel(dir, { device, quiet: true, maxSeq: 160, prefillChunk: false });
    try {
      await fn(chunked, whole);
    } finally {
      chunked.dispose();
      whole.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A prefill run's inputs for one chunk of `n` tokens at position 0 (to ask `compiled`). */
const chunkOf = (n: number) => ({
  ids: new Uint32Array(n),
  pos: [0],
  last: [n - 1],
  seed: [0],
  step: [0],
});

const promptOf = (n: number, vocab: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + 3) % vocab);

Deno.test("chunked prefill equals one whole-prompt run (Jamba: attention, Mamba, MoE)", async () => {
  await withJamba(await gpu(), async (chunked, whole) => {
    assert.deepEqual(chunked.prefillBuckets, [1, 4, 16, 64, 160]);
    assert.deepEqual(whole.prefillBuckets, []);
    const vocab = chunked.config.vocabSize;
    for (const n of [1, 2, 3, 63, 64, 65, 150]) {
      const ids = promptOf(n, vocab);
      const got = await chunked.forward(ids);
      const want = await whole.forward(ids);
      assert.equal(got.length, n * vocab);
      const e = relMaxError(got, want);
      assert.ok(e <= 1e-4, `T ${n}: max error ${e.toExponential(2)} of logit scale`);
      // Greedy continuations agree too (the first token comes from the last chunk).
      const a: number[] = [], b: number[] = [];
      for await (const id of chunked.generateIds(ids, { maxTokens: 3 })) a.push(id);
      for await (const id of whole.generateIds(ids, { maxTokens: 3 })) b.push(id);
      assert.deepEqual(a, b, `T ${n}`);
    }
  });
});

Deno.test("a new prompt length compiles nothing once its chunk lengths are compiled; compile is not prefill", async () => {
  // A device of its own: nothing compiled by earlier tests.
  const device = await requestDevice();
  await withJamba(device, async (chunked) => {
    const vocab = chunked.config.vocabSize;
    const events: string[] = [];
    chunked.onCompile = (done, total) => events.push(`compile ${done}/${total}`);
    // 85 = 64 + 16 + 4 + 1: every bucket below 256 is compiled here.
    for await (const _ of chunked.generateIds(promptOf(85, vocab), { maxTokens: 2 })) {
      events.push("token");
    }
    const first = chunked.lastStats!;
    assert.ok(events.some((e) => e.startsWith("compile")), events.join());
    assert.ok(first.compileMs > 0);
    // Every compile came before the first token: none inside prefill or decode.
    assert.ok(
      events.findLastIndex((e) => e.startsWith("compile")) < events.indexOf("token"),
      events.join(),
    );
    const pipelines = device.pipelines.size;
    events.length = 0;
    for (const n of [7, 33, 50, 21]) {
      for await (const _ of chunked.generateIds(promptOf(n, vocab), { maxTokens: 2 })) {
        assert.equal(device.pipelines.size, pipelines, `T ${n}: compiled during the run`);
      }
    }
    assert.deepEqual(events, [], "no compile for new lengths made of compiled chunks");
    assert.equal(device.pipelines.size, pipelines);
  });
  device.destroy();
});

Deno.test("warmUp compiles every chunk length generation runs: no prompt compiles after it", async () => {
  const device = await requestDevice();
  await withJamba(device, async (chunked) => {
    const vocab = chunked.config.vocabSize;
    let compiles = 0;
    chunked.onCompile = () => compiles++;
    await chunked.warmUp();
    assert.ok(compiles > 0);
    const pipelines = device.pipelines.size;
    compiles = 0;
    for (const n of [1, 2, 5, 17, 64, 100, 159]) {
      for await (const _ of chunked.generateIds(promptOf(n, vocab), { maxTokens: 1 })) { /* run */ }
      assert.equal(chunked.lastStats!.promptTokens, n);
    }
    assert.equal(compiles, 0);
    assert.equal(device.pipelines.size, pipelines);
    // Not the 1-token chunk: generation runs those through the decode step.
    const single = chunkOf(1);
    assert.equal(chunked.prefill.compiled(single), false);
  });
  device.destroy();
});

Deno.test("a short prompt whose prefill is not compiled runs through the decode step, to the same ids", async () => {
  // A device of its own: nothing compiled by earlier tests.
  const device = await requestDevice();
  await withJamba(device, async (chunked, whole) => {
    const vocab = chunked.config.vocabSize;
    const run = async (m: Model, n: number, sampling = {}) => {
      const out: number[] = [];
      const options = { maxTokens: 4, ...sampling };
      for await (const id of m.generateIds(promptOf(n, vocab), options)) out.push(id);
      return { ids: out, via: m.lastStats!.promptRun };
    };
    whole.coldPromptTokens = 0;
    // Greedy, and sampled: the last prompt token samples at step 0 with the seed, as the prefill does.
    const nucleus = { temperature: 0.9, topK: 20, topP: 0.95, seed: 11 };
    // (Not 1: a 1-token prompt takes the decode step on both models.)
    for (const [n, sampling] of [[2, {}], [3, {}], [50, {}], [50, nucleus]] as const) {
      const cold = await run(chunked, n, sampling);
      assert.equal(cold.via, "decode", `T ${n}`);
      const ref = await run(whole, n, sampling);
      assert.equal(ref.via, "prefill");
      assert.deepEqual(cold.ids, ref.ids, `T ${n} ${JSON.stringify(sampling)}`);
    }
    // Nothing of the chunked model's prefill was compiled by those runs.
    const chunk = chunkOf(64);
    assert.equal(chunked.prefill.compiled(chunk), false);
    // Over the limit the prefill runs and compiles its chunks (65 = 64 + 1): short
    // prompts then use it, padded up to 64 where that beats decode steps.
    assert.equal((await run(chunked, 65)).via, "prefill");
    assert.equal(chunked.prefill.compiled(chunk), true);
    assert.equal((await run(chunked, 64)).via, "prefill");
    assert.equal((await run(chunked, 17)).via, "prefill");
    assert.equal((await run(chunked, 1)).via, "decode");
  });
  device.destroy();
});

Deno.test("coldPromptTokens must be an integer >= 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_cold_" });
  try {
    await writeTinyJamba(dir, { seed: 3 });
    await assert.rejects(
      loadModel(dir, { quiet: true, coldPromptTokens: -1 }),
      /coldPromptTokens must be an integer >= 0, got -1/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generation never compiles the 1-token prefill: single chunks take the decode step", async () => {
  const device = await requestDevice();
  await withJamba(device, async (chunked, whole) => {
    const vocab = chunked.config.vocabSize;
    chunked.coldPromptTokens = 0; // the prefill runs the prompt's other chunks
    const single = chunkOf(1);
    for (const n of [65, 67, 83]) { // 64 + 1, 64 + 1 + 1 + 1, 64 + 16 + 1 + 1 + 1
      const ids = promptOf(n, vocab);
      const a: number[] = [], b: number[] = [];
      for await (const id of chunked.generateIds(ids, { maxTokens: 3 })) a.push(id);
      assert.equal(chunked.lastStats!.promptRun, "prefill");
      for await (const id of whole.generateIds(ids, { maxTokens: 3 })) b.push(id);
      assert.deepEqual(a, b, `T ${n}`);
    }
    assert.equal(chunked.prefill.compiled(single), false, "the T = 1 prefill was compiled");
    // forward runs every row through the prefill (all positions' logits): 65 = 64 +
    // 1 padded up to 64, not a 1-token chunk.
    const ids = promptOf(65, vocab);
    const got = await chunked.forward(ids);
    assert.ok(relMaxError(got, await whole.forward(ids)) < 1e-4);
    assert.equal(chunked.prefill.compiled(single), false);
  });
  device.destroy();
});

Deno.test("after a first prompt, prompts of any length compile nothing: padded chunks, same ids", async () => {
  const device = await requestDevice();
  await withJamba(device, async (chunked, whole) => {
    const vocab = chunked.config.vocabSize;
    chunked.coldPromptTokens = 0; // the first prompt takes the prefill
    let compiles = 0;
    chunked.onCompile = () => compiles++;
    const gen = async (m: Model, n: number) => {
      const out: number[] = [];
      for await (const id of m.generateIds(promptOf(n, vocab), { maxTokens: 6 })) out.push(id);
      return out;
    };
    // 100 tokens: the 64-token chunk's pipelines, and a second chunk padded 36 → 64.
    assert.deepEqual(await gen(chunked, 100), await gen(whole, 100));
    assert.ok(compiles > 0);
    assert.equal(chunked.prefill.compiled(chunkOf(64)), true);
    compiles = 0;
    // The Mamba states after a padded chunk carry into the decode steps: same ids.
    for (const n of [150, 77, 33, 2, 3, 63, 65, 127, 154]) {
      assert.deepEqual(await gen(chunked, n), await gen(whole, n), `T ${n}`);
    }
    // (The whole-prompt model shares the device and compiles every length: not counted.)
    assert.equal(compiles, 0, "a later prompt compiled pipelines");
    for (const b of [4, 16, 160]) assert.equal(chunked.prefill.compiled(chunkOf(b)), false);
    // All positions' logits through padded chunks equal one whole-prompt run.
    for (const n of [2, 63, 65, 100, 150]) {
      const ids = promptOf(n, vocab);
      const err = relMaxError(await chunked.forward(ids), await whole.forward(ids));
      assert.ok(err < 1e-4, `T ${n}: ${err}`);
    }
  });
  device.destroy();
});

Deno.test("loadModel compiles the decode step while the weights load: a first short prompt compiles nothing", async () => {
  const device = await requestDevice();
  await withJamba(device, async (chunked) => {
    const decodeInputs = { pos: [0], seed: [0], step: [1] };
    assert.equal(chunked.decode.compiled(decodeInputs), true);
    let compiles = 0;
    chunked.onCompile = () => compiles++;
    const out: number[] = [];
    for await (const id of chunked.generateIds(promptOf(5, 60), { maxTokens: 3 })) out.push(id);
    assert.equal(out.length, 3);
    assert.equal(chunked.lastStats!.promptRun, "decode");
    assert.equal(compiles, 0);
  });
  device.destroy();
  // compileDecode: false leaves it for the first run that needs it.
  const fresh = await requestDevice();
  const dir = await Deno.makeTempDir({ prefix: "kiln_no_ahead_" });
  try {
    await writeTinyJamba(dir, { seed: 3 });
    const m = await loadModel(dir, { device: fresh, quiet: true, compileDecode: false });
    assert.equal(m.decode.compiled({ pos: [0], seed: [0], step: [1] }), false);
    m.dispose();
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      loadModel(dir, { quiet: true, compileDecode: "yes" as any }),
      /compileDecode must be a boolean, got "yes"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    fresh.destroy();
  }
});

Deno.test("padded chunks in f16: padding rows stay finite, ids equal whole-prompt runs", async () => {
  const device = await requestDevice();
  if (!device.caps.f16) return device.destroy();
  const dir = await Deno.makeTempDir({ prefix: "kiln_chunks_f16_" });
  try {
    await writeTinyJamba(dir, { seed: 5 });
    const o = { device, quiet: true, maxSeq: 160, dtype: "f16" } as const;
    const chunked = await loadModel(dir, { ...o, coldPromptTokens: 0 });
    const whole = await loadModel(dir, { ...o, prefillChunk: false });
    const gen = async (m: Model, n: number) => {
      const out: number[] = [];
      const prompt = Array.from({ length: n }, (_, i) => (i * 13 + 1) % 60);
      for await (const id of m.generateIds(prompt, { maxTokens: 4 })) out.push(id);
      return out;
    };
    try {
      // The first prompt picks the 64-token chunk; the rest pad into it.
      for (const n of [100, 3, 33, 77, 130]) {
        assert.deepEqual(await gen(chunked, n), await gen(whole, n), `T ${n}`);
      }
    } finally {
      chunked.dispose();
      whole.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    device.destroy();
  }
});

Deno.test("padded chunks equal whole-prompt runs at long lengths: 511, 513 and maxSeq", async () => {
  const device = await gpu();
  const dir = await Deno.makeTempDir({ prefix: "kiln_chunks_long_" });
  try {
    await writeTinyJamba(dir, { seed: 7 });
    const o = { device, quiet: true, maxSeq: 1024 };
    const chunked = await loadModel(dir, o);
    const whole = await loadModel(dir, { ...o, prefillChunk: false });
    try {
      const vocab = chunked.config.vocabSize;
      // 511 compiles the 256-token chunk (256 + 255/256); 513 ends in a 1-row chunk
      // padded to 256 rows at position 512; 1024 fills the cache exactly.
      for (const n of [511, 513, 1024]) {
        const ids = promptOf(n, vocab);
        const err = relMaxError(await chunked.forward(ids), await whole.forward(ids));
        assert.ok(err < 1e-4, `T ${n}: ${err}`);
      }
      for (const b of [1, 4, 16, 64]) assert.equal(chunked.prefill.compiled(chunkOf(b)), false);
    } finally {
      chunked.dispose();
      whole.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
