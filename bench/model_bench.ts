/**
 * Whole-model prefill and decode throughput (issue 5, item 10):
 *
 * ```sh
 * deno run -A bench/model_bench.ts            # contexts 512, 2048, 8192 (~4 min on lavapipe)
 * deno run -A bench/model_bench.ts --quick    # contexts 512, 2048, fewer decode tokens
 * ```
 *
 * Three ~20M-parameter models are written as Hugging Face checkpoints by the same
 * writer the tests use and loaded with `loadModel`, so what runs is exactly what a
 * user's folder would run:
 *
 * - a Mamba (`MambaForCausalLM`),
 * - a dense Transformer of about the same parameter count (`MixtralForCausalLM` with
 *   one expert, k = 1: attention + one SwiGLU FFN per layer),
 * - a Mixtral-style MoE (E = 8, k = 2) whose experts are half as wide as (b)'s FFN,
 *   so its active parameters per token equal (b)'s.
 *
 * What is measured (all three models stay loaded; each is prefilled in turn):
 *
 * - **prefill**: one prompt of max(contexts) tokens fed in 512-token chunks (the
 *   way llama.cpp batches a long prompt; every chunk reuses the T = 512 pipelines and
 *   the `[T, vocab]` logits buffer stays 16 MiB instead of 256 MiB at 8192). The
 *   wall time from the first chunk to the readback of the sampled token after the
 *   chunk that ends at C gives "prefill tok/s at C" = C / time. Attention chunks
 *   read every earlier row of the KV cache, so its per-token cost grows with C.
 * - **decode at C**: after the whole prompt is in the caches, N decode steps at
 *   positions C, C+1, …: attention reads C + i real cached rows; Mamba's state is
 *   O(1) whatever C is. Steps are queued on the device and the sampled ids read
 *   back every 16 tokens (the GPU-resident loop of `generate`). tok/s = N / time.
 *   The models take turns at each context, five rounds, median: the shared host's
 *   speed drifts, and the Mamba / dense ratio is only fair side by side.
 * - **readback**: `model.generateIds` on a 64-token prompt, 33 tokens, with
 *   `readEvery: 16` vs `readEvery: 1` (decode-loop time from `lastStats`), on these
 *   models and on the tiny test checkpoints ("small models").
 *
 * Prints markdown tables (paste into BENCHMARKS.md).
 *
 * @module
 */

import { loadModel, type Model } from "../app/model/mod.ts";
import { countParams } from "../compiler/params.ts";
import { type KilnDevice, requestDevice } from "../runtime/device.ts";
import {
  type TinyCheckpointOptions,
  writeTinyJamba,
  writeTinyMamba,
  writeTinyMixtral,
} from "../tests/fixtures/tiny_checkpoints.ts";
import { interleavedMedians } from "./_timing.ts";

const quick = Deno.args.includes("--quick");
const CONTEXTS = quick ? [512, 2048] : [512, 2048, 8192];
const CHUNK = 512;
const DECODE_TOKENS = quick ? 16 : 32;
const READ_EVERY = 16;
/** Rounds of the side-by-side decode measurement (median taken). */
const DECODE_ROUNDS = 5;
const VOCAB = 8192;

type Writer = typeof writeTinyMamba;
interface Spec {
  name: string;
  writer: Writer;
  config: Record<string, unknown>;
}

// Tied embeddings everywhere (Mamba's default), so the same 4.2M-parameter
// embedding sits in every model and the layers make the difference.
const MODELS: Spec[] = [
  {
    name: "Mamba (d 512, 10 layers, N 16)",
    writer: writeTinyMamba,
    config: {
      vocab_size: VOCAB,
      hidden_size: 512,
      num_hidden_layers: 10,
      state_size: 16,
      expand: 2,
    },
  },
  {
    name: "Dense Transformer (Mixtral E 1 k 1; d 512, 5 layers, 8 heads, ff 1408)",
    writer: writeTinyMixtral,
    config: {
      vocab_size: VOCAB,
      hidden_size: 512,
      num_hidden_layers: 5,
      num_attention_heads: 8,
      num_key_value_heads: 8,
      intermediate_size: 1408,
      num_local_experts: 1,
      num_experts_per_tok: 1,
      tie_word_embeddings: true,
    },
  },
  {
    name: "MoE (Mixtral E 8 k 2; d 512, 5 layers, 8 heads, ff 704)",
    writer: writeTinyMixtral,
    config: {
      vocab_size: VOCAB,
      hidden_size: 512,
      num_hidden_layers: 5,
      num_attention_heads: 8,
      num_key_value_heads: 8,
      intermediate_size: 704,
      num_local_experts: 8,
      num_experts_per_tok: 2,
      tie_word_embeddings: true,
    },
  },
];

const M = (n: number) => n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(1)}K`;
const f1 = (n: number) => n.toFixed(1);

function promptIds(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + 1) % vocab);
}

/** Queues `n` decode steps at positions pos0, pos0+1, … reading ids back every `every`; ms. */
async function decodeRun(model: Model, pos0: number, n: number, every: number): Promise<number> {
  const d = model.decode;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await d.submit({ pos: [pos0 + i], seed: [0], step: [i + 1] });
    if ((i + 1) % every === 0 || i === n - 1) await d.readState("generated");
  }
  return performance.now() - t0;
}

/** Decode-loop tok/s of `generateIds` with the given readEvery (prefill excluded). */
async function generateRate(model: Model, readEvery: number): Promise<number> {
  const ids = promptIds(64, model.config.vocabSize);
  let n = 0;
  for await (const _ of model.generateIds(ids, { maxTokens: 33, readEvery })) n++;
  const s = model.lastStats!;
  // The first token comes from the prefill; the decode loop produced the other n − 1.
  return (n - 1) / (s.decodeMs / 1000);
}

interface Result {
  name: string;
  total: number;
  active: number;
  prefill: Map<number, number>;
  decode: Map<number, number>;
  resident: number;
  perToken: number;
}

/** A loaded model with its whole prompt in the caches. */
interface Loaded {
  spec: Spec;
  dir: string;
  model: Model;
  result: Result;
}

/** Writes, loads and compiles one model, then times its prefill (the caches end full). */
async function prepareModel(spec: Spec, device: KilnDevice): Promise<Loaded> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_bench_" });
  const t0 = performance.now();
  await spec.writer(dir, { config: spec.config, tokenizer: "none" });
  const maxC = CONTEXTS[CONTEXTS.length - 1];
  const model = await loadModel(dir, { device, quiet: true, maxSeq: maxC + DECODE_TOKENS + 8 });
  const count = countParams(model.prefill.graph);
  const ids = promptIds(maxC, model.config.vocabSize);
  const chunk = (p: number) => ({
    ids: ids.slice(p, p + CHUNK),
    pos: [p],
    last: [CHUNK - 1],
    seed: [0],
    step: [0],
  });
  // Warm-up: compile the T = 512 prefill and the decode pipelines (seconds on lavapipe).
  model.prefill.resetStates();
  await model.prefill.submit(chunk(0));
  await model.prefill.readState("generated");
  await decodeRun(model, CHUNK, 2, 1);
  console.error(
    `  ${spec.name}: written, loaded and compiled in ${f1((performance.now() - t0) / 1000)} s`,
  );
  const prefill = new Map<number, number>();
  model.prefill.resetStates();
  const tp = performance.now();
  for (let p = 0; p < maxC; p += CHUNK) {
    await model.prefill.submit(chunk(p));
    const end = p + CHUNK;
    if (CONTEXTS.includes(end)) {
      await model.prefill.readState("generated");
      prefill.set(end, end / ((performance.now() - tp) / 1000));
    }
  }
  const result: Result = {
    name: spec.name,
    total: count.total,
    active: count.activePerToken,
    prefill,
    decode: new Map(),
    resident: 0,
    perToken: 0,
  };
  return { spec, dir, model, result };
}

/**
 * Decode tok/s of every model at every context, the models taking turns round after
 * round (median of DECODE_ROUNDS): the shared host's speed drifts by tens of percent
 * over minutes, so a ratio of two models is only fair if they ran side by side.
 */
async function decodeSideBySide(loaded: Loaded[]): Promise<void> {
  for (const C of CONTEXTS) {
    const ms = await interleavedMedians(
      loaded.map((l) => () => decodeRun(l.model, C, DECODE_TOKENS, READ_EVERY)),
      DECODE_ROUNDS,
    );
    loaded.forEach((l, i) => l.result.decode.set(C, DECODE_TOKENS / (ms[i] / 1000)));
  }
}

async function tinyReadback(
  name: string,
  writer: Writer,
  device: KilnDevice,
  options: TinyCheckpointOptions = {},
): Promise<[string, number, number, number]> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_bench_" });
  try {
    await writer(dir, { ...options, tokenizer: "none" });
    const model = await loadModel(dir, { device, quiet: true, maxSeq: 128 });
    const params = countParams(model.prefill.graph).total;
    await generateRate(model, READ_EVERY); // compile
    const resident = await generateRate(model, READ_EVERY);
    const perToken = await generateRate(model, 1);
    model.dispose();
    return [name, params, resident, perToken];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const device = await requestDevice();
// The machines are shared: the load before and after says how noisy a run was.
const uptime = async () =>
  new TextDecoder().decode(
    (await new Deno.Command("uptime", { stdout: "piped" }).output()).stdout,
  ).trim();
const load = await uptime();
console.log(`Adapter: ${device.adapterName}; ${new Date().toISOString().slice(0, 10)}; ${load}`);
console.log(
  `Contexts ${CONTEXTS.join(", ")}; prefill in ${CHUNK}-token chunks; decode ${DECODE_TOKENS} ` +
    `tokens per context, read back every ${READ_EVERY}; vocab ${VOCAB}, f32.\n`,
);

const loaded: Loaded[] = [];
for (const spec of MODELS) loaded.push(await prepareModel(spec, device));
await decodeSideBySide(loaded);
for (const l of loaded) {
  l.result.resident = await generateRate(l.model, READ_EVERY);
  l.result.perToken = await generateRate(l.model, 1);
  l.model.dispose();
  await Deno.remove(l.dir, { recursive: true });
}
const results = loaded.map((l) => l.result);

const cols = CONTEXTS.map((c) => `${c}`);
console.log(
  `| model | params total | active / token | ${
    cols.map((c) => `prefill tok/s @ ${c}`).join(" | ")
  } | ${cols.map((c) => `decode tok/s @ ${c}`).join(" | ")} |`,
);
console.log(`|${" --- |".repeat(3 + 2 * CONTEXTS.length)}`);
for (const r of results) {
  console.log(
    `| ${r.name} | ${M(r.total)} | ${M(r.active)} | ${
      CONTEXTS.map((c) => f1(r.prefill.get(c)!)).join(" | ")
    } | ${CONTEXTS.map((c) => f1(r.decode.get(c)!)).join(" | ")} |`,
  );
}

const [mamba, dense] = results;
console.log(`\n| context | Mamba / dense decode | Mamba / dense prefill |`);
console.log(`| --- | --- | --- |`);
for (const c of CONTEXTS) {
  console.log(
    `| ${c} | ${(mamba.decode.get(c)! / dense.decode.get(c)!).toFixed(2)}× | ${
      (mamba.prefill.get(c)! / dense.prefill.get(c)!).toFixed(2)
    }× |`,
  );
}

const tiny: [string, number, number, number][] = [];
for (
  const [name, writer] of [
    ["tiny Mamba (test default)", writeTinyMamba],
    ["tiny Mixtral (test default)", writeTinyMixtral],
    ["tiny Jamba (test default)", writeTinyJamba],
  ] as const
) tiny.push(await tinyReadback(name, writer, device));
console.log(
  `\n| model (64-token prompt, 32 decode steps) | params | tok/s readEvery ${READ_EVERY} ` +
    `(GPU-resident) | tok/s readEvery 1 | ratio |`,
);
console.log(`| --- | --- | --- | --- | --- |`);
for (const [name, params, res, per] of tiny) {
  console.log(`| ${name} | ${M(params)} | ${f1(res)} | ${f1(per)} | ${(res / per).toFixed(2)}× |`);
}
for (const r of results) {
  console.log(
    `| ${r.name} | ${M(r.total)} | ${f1(r.resident)} | ${f1(r.perToken)} | ${
      (r.resident / r.perToken).toFixed(2)
    }× |`,
  );
}
console.log(`\nfinished: ${await uptime()}`);
device.destroy();
