/**
 * Nothing silently wrong: non-finite weights are refused by name at load,
 * sampling never returns an id outside the vocabulary (non-finite logits give
 * the documented sentinel on the GPU and the CPU reference, and generation
 * stops with an error naming the step), integer host data is range-checked,
 * wrong input lengths name the symbol, out-of-range ids read zero rows in a
 * kernel and are refused by the model, and configs whose weights cannot fit are
 * refused before anything is allocated.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice, type KilnDevice } from "../runtime/device.ts";
import { SAMPLE_NON_FINITE, sampleRow } from "../ops/sample.ts";
import { loadModel, type Model, planModelExperts } from "../app/model/mod.ts";
import { TINY_MIXTRAL_CONFIG, writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { gpu } from "./_util.ts";

// ---------------------------------------------------------------- checkpoints

/** Overwrites f32 elements of tensor `name` in a single-file F32 checkpoint. */
async function poison(dir: string, name: string, at: Record<number, number>): Promise<void> {
  const path = `${dir}/model.safetensors`;
  const bytes = await Deno.readFile(path);
  const view = new DataView(bytes.buffer);
  const len = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len)));
  const t = header[name];
  assert.ok(t && t.dtype === "F32", `${name} is an F32 tensor`);
  for (const [i, v] of Object.entries(at)) {
    view.setFloat32(8 + len + t.data_offsets[0] + 4 * Number(i), v, true);
  }
  await Deno.writeFile(path, bytes);
}

async function withCheckpoint(
  fn: (dir: string) => Promise<void>,
  config?: Record<string, unknown>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_reliability_" });
  try {
    const written = await writeTinyMixtral(dir, {});
    if (config) {
      await Deno.writeTextFile(
        `${dir}/config.json`,
        JSON.stringify({ ...written.config, ...config }),
      );
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function open(dir: string, extra: Record<string, unknown> = {}): Promise<Model> {
  return await loadModel(dir, { device: await gpu(), quiet: true, maxSeq: 32, ...extra });
}

async function collect(model: Model, prompt: number[], n: number, readEvery = 8) {
  const ids: number[] = [];
  let error: Error | undefined;
  try {
    for await (const id of model.generateIds(prompt, { maxTokens: n, readEvery })) ids.push(id);
  } catch (e) {
    error = e as Error;
  }
  return { ids, error };
}

Deno.test("non-finite weights are refused at load, naming the tensor, the count and the first index", async () => {
  await withCheckpoint(async (dir) => {
    const gate = "model.layers.0.block_sparse_moe.gate.weight";
    await poison(dir, gate, { 17: NaN, 40: Infinity, 41: -Infinity });
    await assert.rejects(open(dir), (e: Error) => {
      assert.ok(e instanceof RangeError, String(e));
      assert.equal(
        e.message,
        `${dir}/model.safetensors: tensor "${gate}" has 3 non-finite values (NaN or ±Inf), ` +
          "first at index 17",
      );
      return true;
    });
    // Expert weights too, when the scheduler loads them (pinned and host tiers).
    const expert = "model.layers.1.block_sparse_moe.experts.2.w2.weight";
    await poison(dir, gate, { 17: 0, 40: 0, 41: 0 });
    await poison(dir, expert, { 5: NaN });
    await assert.rejects(open(dir), new RegExp(`tensor "${expert}" has 1 non-finite value `));
    await assert.rejects(
      open(dir, { memoryBudget: "1GiB" }),
      new RegExp(`tensor "${expert}" has 1 non-finite value `),
    );
    // checkFinite: false skips the scan.
    (await open(dir, { checkFinite: false })).dispose();
  });
});

Deno.test("generation stops with an error naming the step when the logits stop being finite", async () => {
  await withCheckpoint(async (dir) => {
    const prompt = [1, 2, 3];
    const clean = await open(dir);
    const { ids: want } = await collect(clean, prompt, 8);
    clean.dispose();
    // Poison the embedding row of a generated token that was not fed before:
    // every step up to it is clean, the step that reads it is not.
    const j = want.findIndex((t, i) =>
      i >= 1 && !prompt.includes(t) && !want.slice(0, i).includes(t)
    );
    assert.ok(j >= 1, `a fresh token among ${want}`);
    const hidden = TINY_MIXTRAL_CONFIG.hidden_size as number;
    await poison(dir, "model.embed_tokens.weight", { [want[j] * hidden]: NaN });
    const model = await open(dir, { checkFinite: false });
    try {
      for (const readEvery of [1, 8]) {
        const { ids, error } = await collect(model, prompt, 8, readEvery);
        assert.deepEqual(
          ids,
          want.slice(0, j + 1),
          `readEvery ${readEvery}: ids before the bad step`,
        );
        assert.ok(error instanceof RangeError, `readEvery ${readEvery}: ${error}`);
        assert.equal(
          error.message,
          `generation step ${j + 1}: the logits are not finite (NaN or ±Inf); ` +
            "the model's weights or inputs are broken",
        );
        assert.ok(!ids.includes(SAMPLE_NON_FINITE));
      }
    } finally {
      model.dispose();
    }
    // NaN in the final norm makes every logit NaN: the text path stops at step 0
    // instead of handing the tokenizer an id outside the vocabulary.
    await poison(dir, "model.norm.weight", { 0: NaN });
    const broken = await open(dir, { checkFinite: false });
    try {
      await assert.rejects(async () => {
        for await (const _ of broken.generate("hi", { maxTokens: 4 })) { /* */ }
      }, /^RangeError: generation step 0: the logits are not finite/);
    } finally {
      broken.dispose();
    }
  });
});

Deno.test("forward and step refuse logits that overflowed, naming the model, the token and the id", async () => {
  await withCheckpoint(async (dir) => {
    const hidden = TINY_MIXTRAL_CONFIG.hidden_size as number;
    // Finite weights that pass the load-time scan, but the final norm's gain of
    // 3.4e38 takes every normalized value above 1 past f32's largest: the
    // logits overflow (as the GGUF fuzzer's extreme-weight cases did).
    const gains: Record<number, number> = {};
    for (let i = 0; i < hidden; i++) gains[i] = 3.4e38;
    await poison(dir, "model.norm.weight", gains);
    const model = await open(dir);
    try {
      const pattern = (call: string) =>
        new RegExp(
          `^${dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: ${call}: the logits are not finite: ` +
            `(NaN|-?Infinity) at token \\d+ of \\d+, vocabulary id \\d+ \\(\\d+ of \\d+ values\\); ` +
            "a layer overflowed f32",
        );
      await assert.rejects(model.forward([1, 2, 3]), (e: Error) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match(e.message, pattern("forward"));
        assert.match(e.message, / of 3, /, "counts the prompt's tokens");
        return true;
      });
      await assert.rejects(model.step(1, 0), (e: Error) => {
        assert.ok(e instanceof RangeError, String(e));
        assert.match(e.message, pattern("step at position 0"));
        return true;
      });
    } finally {
      model.dispose();
    }
  });
});

// ---------------------------------------------------------------- sampling

function sampleGraph(V: number, dtype: "f32" | "f16", temperature: number) {
  const g = new GraphBuilder();
  const logits = g.input("logits", ["R", V], dtype);
  const seed = g.input("seed", [1], "u32");
  const step = g.input("step", [1], "u32");
  g.output("ids", logits.sample(seed, step, { temperature, topK: temperature ? 5 : 0 }));
  return g.build();
}

Deno.test("sample: NaN or +Inf logits, or no finite logit, give the sentinel on GPU and CPU; -Inf masks", async () => {
  const V = 300; // more than one element per thread
  const rows: number[][] = [];
  const base = () => Array.from({ length: V }, (_, i) => Math.sin(i) * 3);
  rows.push(base()); // 0: fine
  rows.push(Object.assign(base(), { 7: NaN })); // 1: one NaN
  rows.push(Object.assign(base(), { 299: Infinity })); // 2: +Inf
  rows.push(new Array(V).fill(NaN)); // 3: all NaN
  rows.push(new Array(V).fill(-Infinity)); // 4: nothing can be drawn
  const masked = base().map((v, i) => (i % 3 === 0 ? v : -Infinity)); // 5: -Inf is a mask
  rows.push(masked);
  rows.push(new Array(V).fill(-Infinity)); // 6: one very negative finite logit (set below)
  const want = [
    undefined,
    SAMPLE_NON_FINITE,
    SAMPLE_NON_FINITE,
    SAMPLE_NON_FINITE,
    SAMPLE_NON_FINITE,
  ];
  for (const dtype of ["f32", "f16"] as const) {
    for (const temperature of [0, 0.8]) {
      // Greedy: below the kernel's old -3.4e38 floor (f32), the most negative f16.
      // Sampling: one that 1/temperature does not scale past the f32 range.
      rows[6][123] = temperature > 0 ? -6e4 : dtype === "f32" ? -3.4e38 * 1.0000001 : -65504;
      const data = dtype === "f32" ? new Float32Array(rows.flat()) : new Float16Array(rows.flat());
      const graph = sampleGraph(V, dtype, temperature);
      const inputs = { logits: data, seed: [3], step: [1] };
      for (const dev of [await gpu(), cpuDevice()] as KilnDevice[]) {
        const what = `${dev.kind} ${dtype} temperature ${temperature}`;
        const exe = compile(graph, dev);
        const { ids } = await exe.run(inputs);
        exe.dispose();
        const got = [...ids.data];
        want.forEach((w, r) => w !== undefined && assert.equal(got[r], w, `${what} row ${r}`));
        assert.ok(got[0] < V, `${what}: row 0 draws a token`);
        assert.ok(got[5] < V && got[5] % 3 === 0, `${what}: masked tokens are never drawn`);
        assert.equal(got[6], 123, `${what}: the one finite logit`);
        if (temperature === 0) {
          let arg = 0;
          for (let i = 0; i < V; i++) if (rows[0][i] > rows[0][arg]) arg = i;
          assert.equal(got[0], arg, `${what}: argmax`);
        }
      }
    }
  }
  assert.equal(sampleRow([1, NaN], { temperature: 0, topK: 0, topP: 1 }, 0), SAMPLE_NON_FINITE);
});

// ---------------------------------------------------------------- host data

Deno.test("integer host data out of range or fractional is a RangeError naming input, element and bound", async () => {
  for (const dev of [await gpu(), cpuDevice()] as KilnDevice[]) {
    const g = new GraphBuilder();
    const ids = g.input("ids", [5], "u32");
    const k = g.input("k", [2], "i32");
    const s = g.state("tok", [1], "u32");
    g.assign(s, s.add(1));
    g.output("y", ids.add(1));
    g.output("z", k.add(1));
    const exe = compile(g.build(), dev);
    const ok = { ids: [0, 1, 2, 3, 4294967295], k: [-2147483648, 2147483647] };
    assert.equal((await exe.run(ok)).y.data[4], 0);
    const bad: [Record<string, unknown>, RegExp][] = [
      [
        { ids: [0, 1, 2, 3, 1e10] },
        /^Input "ids": element 4 is 10000000000, outside u32 \[0, 4294967295\]$/,
      ],
      [{ ids: [0, -1, 2, 3, 4] }, /^Input "ids": element 1 is -1, outside u32 \[0, 4294967295\]$/],
      [{ ids: [2.7, 1, 2, 3, 4] }, /^Input "ids": element 0 is 2.7, not an integer$/],
      [{ ids: [0, 1, NaN, 3, 4] }, /^Input "ids": element 2 is NaN, not an integer$/],
      [{ ids: Int32Array.from([0, 1, 2, -5, 4]) }, /^Input "ids": element 3 is -5, outside u32/],
      [
        { k: [0, 2147483648] },
        /^Input "k": element 1 is 2147483648, outside i32 \[-2147483648, 2147483647\]$/,
      ],
      [
        { k: Uint32Array.from([0, 4294967295]) },
        /^Input "k": element 1 is 4294967295, outside i32/,
      ],
    ];
    for (const [patch, re] of bad) {
      await assert.rejects(
        exe.run({ ...ok, ...patch } as never),
        (e: Error) => e instanceof RangeError && re.test(e.message),
        `${dev.kind} ${JSON.stringify(patch)}`,
      );
    }
    assert.throws(
      () => exe.writeState("tok", [-1]),
      /^RangeError: State "tok": element 0 is -1, outside u32/,
    );
    exe.dispose();
  }
});

Deno.test("an input whose length fits no value of its symbol says which multiple it expects", async () => {
  const g = new GraphBuilder();
  g.output("y", g.input("x", ["T", 64]).exp());
  const exe = compile(g.build(), await gpu());
  await assert.rejects(
    exe.run({ x: new Float32Array(193) }),
    (e: Error) =>
      e instanceof RangeError &&
      e.message === 'Input "x" [T, 64] expects a multiple of 64 values (T unknown), got 193',
  );
  // Bound by another input or by dims: the exact count.
  await assert.rejects(
    exe.run({ x: new Float32Array(193) }, { dims: { T: 3 } }),
    (e: Error) => e.message === 'Input "x" [T, 64] expects 192 values (T = 3), got 193',
  );
  exe.dispose();
});

// ---------------------------------------------------------------- ids

Deno.test("gather: ids far past the end (up to 0xffffffff) read zero rows on GPU and CPU, prologue included", async () => {
  const V = 1000, D = 6;
  const g = new GraphBuilder();
  const table = g.input("table", [V, D]);
  const ids = g.input("ids", [6], "u32");
  g.output("y", table.mul(2).gather(ids));
  const graph = g.build();
  const inputs = {
    table: Float32Array.from({ length: V * D }, (_, i) => i + 1),
    ids: Uint32Array.from([999, 1000, 1001, 0x7fffffff, 0x80000000, 0xffffffff]),
  };
  for (const dev of [await gpu(), cpuDevice()] as KilnDevice[]) {
    const exe = compile(graph, dev);
    const { y } = await exe.run(inputs);
    exe.dispose();
    assert.deepEqual(
      [...y.data.subarray(0, D)],
      [...inputs.table.subarray(999 * D)].map((v) => 2 * v),
    );
    assert.ok(y.data.subarray(D).every((v) => v === 0), `${dev.kind}: zero rows`);
  }
});

Deno.test("the model refuses ids outside the vocabulary and bad positions up front", async () => {
  await withCheckpoint(async (dir) => {
    const model = await open(dir);
    try {
      const V = model.config.vocabSize;
      const re = new RegExp(`token 1 = ${V} is outside the vocabulary \\[0, ${V}\\)`);
      await assert.rejects(model.forward([1, V]), re);
      await assert.rejects(
        collect(model, [1, V], 2).then((r) => {
          throw r.error;
        }),
        re,
      );
      await assert.rejects(model.step(0xffffffff, 0), /token 0 = 4294967295 is outside/);
      await assert.rejects(
        model.step(1, -1),
        /^RangeError: step: position -1 is outside \[0, 32\)$/,
      );
      await assert.rejects(model.step(1, 2.5), /step: position 2.5 is outside/);
    } finally {
      model.dispose();
    }
  });
});

// ---------------------------------------------------------------- capacity

Deno.test("configs whose weights cannot fit are refused before anything is allocated", async () => {
  const dev = await gpu();
  const maxBuffer = dev.device.limits.maxBufferSize;
  // A total beyond any host: hidden 1e9.
  await withCheckpoint(async (dir) => {
    await assert.rejects(open(dir), (e: Error) => {
      assert.ok(e instanceof RangeError, String(e));
      assert.match(e.message, /^the model needs [\d.]+ [KMGT]iB of weights \(f32\); /);
      assert.match(e.message, /this device allows one buffer of at most [\d.]+ [KMGT]i?B/);
      assert.match(e.message, /tensor "[^"]+" needs [\d.]+ [KMGT]iB/);
      assert.match(e.message, /the host has [\d.]+ GiB/);
      return true;
    });
    // The planning path of `kiln inspect --gpu-memory` refuses it the same way.
    await assert.rejects(
      planModelExperts(dir, { device: dev, memoryBudget: "1GiB" }),
      /^RangeError: the model needs/,
    );
  }, { hidden_size: 1e9, intermediate_size: 64 });
  // One tensor over the device's largest buffer, the rest small: it is named.
  const vocab = Math.ceil(maxBuffer / 4 / 32) + 1024;
  await withCheckpoint(async (dir) => {
    await assert.rejects(
      open(dir),
      new RegExp(`tensor "model\\.embed_tokens\\.weight" needs [\\d.]+ GiB`),
    );
  }, { vocab_size: vocab });
});
