/**
 * Ahead-of-time model modules (`kiln build DIR`): tiny Mixtral, Mamba and
 * Jamba checkpoints built ahead of time give the same logits (`forward`) and
 * greedy ids (`generateIds`) as `loadModel` on the same device, bit for bit;
 * a prebuilt sampling variant samples as `loadModel` does, and a next turn
 * reuses the cached prefix as `loadModel` does; the emitted source
 * passes `deno check`; at run time it imports the runtime alone. Modules of
 * the Qwen2-MoE and OLMoE checkpoints transformers itself wrote generate
 * transformers' greedy ids.
 */

import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import { runtimeSpecifier } from "../app/build/build.ts";
import { buildModelModule, writeModelModule } from "../app/build/build_model.ts";
import type {
  PrebuiltGenerateOptions,
  PrebuiltModel,
  SamplingSettings,
} from "../runtime/prebuilt_model.ts";
import type { GpuDevice } from "../runtime/device.ts";
import type { Model } from "../app/model/model.ts";
import {
  type TinyCheckpointOptions,
  writeTinyJamba,
  writeTinyMamba,
  writeTinyMixtral,
} from "./fixtures/tiny_checkpoints.ts";
import { assertBitsEqual, gpu, MOE_PROMPT, openTiny } from "./_util.ts";
import { runtimeImports } from "./fixtures/import_graph.ts";
import { tieFreeGreedy } from "./fixtures/transformers_ref.ts";
import { requestDevice } from "../runtime/device.ts";

const NUCLEUS = { temperature: 0.8, topK: 12, topP: 0.9 };

async function ids(
  m: Model | PrebuiltModel,
  prompt: readonly number[],
  options: PrebuiltGenerateOptions = {},
): Promise<number[]> {
  const out: number[] = [];
  for await (const id of m.generateIds(prompt, { maxTokens: 10, readEvery: 4, ...options })) {
    out.push(id);
  }
  return out;
}

/** Builds checkpoint `src` into module `out` (maxSeq 64) for `dev`, writes and imports it. */
async function buildModule(
  src: string,
  out: string,
  dev: GpuDevice,
  sampling: SamplingSettings[],
  check: boolean,
) {
  const name = basename(out, ".aot.ts");
  const runtime = runtimeSpecifier(out);
  const built = await buildModelModule(src, {
    name,
    caps: dev.caps,
    maxSeq: 64,
    runtime,
    sampling,
  });
  await writeModelModule(out, built, { check });
  return { built, mod: await import(pathToFileURL(out).href) };
}

const CASES: [string, (dir: string, o: TinyCheckpointOptions) => Promise<unknown>][] = [
  ["mixtral", writeTinyMixtral],
  ["mamba", writeTinyMamba],
  ["jamba", writeTinyJamba],
];

for (const [name, write] of CASES) {
  const jamba = name === "jamba";
  Deno.test(`an AOT model module of tiny ${name} runs like loadModel`, async (t) => {
    const dir = await Deno.makeTempDir({ prefix: `kiln_aot_${name}_` });
    const dev = await gpu();
    let aot: PrebuiltModel | undefined;
    let ref: Model | undefined;
    try {
      const ckpt = join(dir, "ckpt");
      await Deno.mkdir(ckpt);
      await write(ckpt, { seed: 3 });
      const out = join(dir, `${name}.aot.ts`);
      // One variant besides greedy, on one model: its plans cost a build. Type-checked
      // once (the largest module): the emitter is the same for all.
      const { built, mod } = await buildModule(ckpt, out, dev, jamba ? [NUCLEUS] : [], jamba);
      assert.deepEqual(built.data.prefillBuckets, [1, 4, 16, 64]);
      assert.equal(built.data.variants[0].prefill.plans.length, 4);
      assert.equal(built.data.variants[0].decode.plans.length, 1);
      aot = (await mod.load({ device: dev })) as PrebuiltModel;
      ref = await openTiny(ckpt);
      const long = Array.from({ length: 37 }, (_, i) => (i * 7 + 3) % 60);
      await t.step("same logits as loadModel (one chunk, several chunks)", async () => {
        for (const prompt of [MOE_PROMPT.slice(0, 4), MOE_PROMPT, long]) {
          assertBitsEqual(await aot!.forward(prompt), await ref!.forward(prompt), `forward`);
        }
        await aot!.forward(MOE_PROMPT);
        await ref!.forward(MOE_PROMPT);
        const at = MOE_PROMPT.length;
        assertBitsEqual(await aot!.step(9, at), await ref!.step(9, at), "step");
      });
      await t.step("same greedy ids as loadModel", async () => {
        for (const prompt of [MOE_PROMPT, long, [1]]) {
          assert.deepEqual(await ids(aot!, prompt), await ids(ref!, prompt));
        }
        assert.equal(aot!.lastStats!.promptTokens, 1);
      });
      await t.step(
        "reusePrefix: a next turn runs only what is new, as loadModel does",
        async () => {
          const first = await ids(aot!, long);
          await ids(ref!, long);
          const next = [...long, ...first, 5, 6];
          const got = await ids(aot!, next, { reusePrefix: true });
          assert.deepEqual(got, await ids(ref!, next, { reusePrefix: true }));
          assert.equal(aot!.lastStats!.reusedTokens, ref!.lastStats!.reusedTokens);
          assert.equal(aot!.lastStats!.reusedTokens, name === "mixtral" ? 46 : 37);
          assert.deepEqual(got, await ids(aot!, next));
          assert.equal(aot!.lastStats!.reusedTokens, 0);
        },
      );
      if (jamba) {
        await t.step(
          "loaded cold, a short prompt runs through the decode step, to the same ids",
          async () => {
            // A device of its own: no pipeline compiled; load() compiles nothing by default.
            const fresh = await requestDevice();
            const cold = (await mod.load({ device: fresh })) as PrebuiltModel;
            try {
              assert.deepEqual(await ids(cold, long), await ids(ref!, long));
              assert.equal(cold.lastStats!.promptRun, "decode");
              assert.equal(ref!.lastStats!.promptRun, "prefill");
            } finally {
              cold.dispose();
              fresh.destroy();
            }
          },
        );
        await t.step("after a first prompt, no prompt length compiles: padded chunks", async () => {
          const fresh = await requestDevice();
          const cold = (await mod.load({ device: fresh })) as PrebuiltModel;
          try {
            cold.coldPromptTokens = 0;
            let compiles = 0;
            cold.onCompile = () => compiles++;
            // 40 tokens: one chunk padded up to 64, the bucket it compiles.
            assert.deepEqual(
              await ids(cold, long.slice(0, 40)),
              await ids(ref!, long.slice(0, 40)),
            );
            assert.ok(compiles > 0);
            compiles = 0;
            for (const n of [5, 23, 37, 50]) {
              const prompt = Array.from({ length: n }, (_, i) => (i * 11 + 2) % 60);
              assert.deepEqual(await ids(cold, prompt), await ids(ref!, prompt), `T ${n}`);
            }
            assert.equal(compiles, 0);
          } finally {
            cold.dispose();
            fresh.destroy();
          }
        });
        await t.step("a prebuilt sampling variant samples like loadModel", async () => {
          const opts = { ...NUCLEUS, seed: 5 };
          assert.deepEqual(await ids(aot!, MOE_PROMPT, opts), await ids(ref!, MOE_PROMPT, opts));
          await assert.rejects(
            ids(aot!, MOE_PROMPT, { temperature: 0.5 }),
            /no prebuilt plans for sampling \(temperature 0\.5, topK 0, topP 1\); prebuilt for/,
          );
        });
        await t.step("at run time it imports the runtime alone", async () => {
          const files = await runtimeImports(out);
          assert.ok(files.some((f) => f.endsWith("/runtime/prebuilt_model.ts")), files.join("\n"));
          const below = files.filter((f) => /\/(compiler|ops|models|app)\/|builder\.ts$/.test(f));
          assert.deepEqual(below, [], "compiler, model or app modules reached at run time");
        });
      }
      await t.step("inputs are checked as loadModel checks them", async () => {
        await assert.rejects(aot!.forward([]), /tokenIds is empty/);
        await assert.rejects(aot!.forward([1, 1e6]), /token 1 = 1000000 is outside/);
        await assert.rejects(ids(aot!, new Array(64).fill(1)), /fills maxSeq 64/);
      });
    } finally {
      aot?.dispose();
      ref?.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

// mamba2_bias_limit: a Δ limit only the prefill applies, so its prompts never take the
// decode step (the module says so in promptsViaDecode). granite_hybrid: its bundle holds
// the fused input_linear tensors' parts. nemotron_h: blocks without a token mixer, and a
// Δ floor that keeps its prompts off the decode step too. gpt_oss_mxfp4: sinks, expert
// biases, and MXFP4 experts bundled as their blocks. glm4_moe: sigmoid routing with a
// selection bias, shared experts, a partial RoPE. deepseek_v3: latent attention, its
// cache one latent row a token. ernie4_5_moe: pairwise RoPE, softmax + selection bias, an
// LM head bias. falcon_h1: attention and Mamba-2 side by side, each layer's two states.
// dots1_sliding_bias: per-head QK-norm with o_proj biases, sliding layers, grouped sigmoid
// routing. hunyuan_moe: per-head norms after RoPE, the NTK-alpha base, a shared MLP.
// minimax_m2: whole-projection QK-norms, partial RoPE, a Mixtral-layout selection bias.
// flex_olmo: norms after each sublayer. exaone_moe: global layers without RoPE.
// glm4_moe_lite: latent attention with a dense layer by mlp_layer_types. qwen3_next: Gated
// DeltaNet layers (their conv and delta-rule states) beside gated attention. lfm2_moe: short
// convolutions (a conv state alone) beside attention, sigmoid + bias experts.
for (
  const name of [
    "qwen2_moe",
    "olmoe",
    "mamba2_bias_limit",
    "granite_hybrid",
    "nemotron_h",
    "gpt_oss_mxfp4",
    "glm4_moe",
    "deepseek_v3",
    "ernie4_5_moe",
    "falcon_h1",
    "dots1_sliding_bias",
    "hunyuan_moe",
    "minimax_m2",
    "flex_olmo",
    "exaone_moe",
    "glm4_moe_lite",
    "qwen3_next",
    "lfm2_moe",
  ]
) {
  Deno.test(`an AOT module of transformers' tiny ${name} checkpoint generates transformers' greedy ids`, async () => {
    const src = new URL(`./fixtures/hf/${name}`, import.meta.url).pathname;
    const ref = JSON.parse(await Deno.readTextFile(join(src, "ref.json")));
    const dir = await Deno.makeTempDir({ prefix: `kiln_aot_${name}_` });
    const dev = await gpu();
    let aot: PrebuiltModel | undefined;
    try {
      const { mod } = await buildModule(src, join(dir, `${name}.aot.ts`), dev, [], false);
      aot = (await mod.load({ device: dev })) as PrebuiltModel;
      const floored = name === "mamba2_bias_limit" || name === "nemotron_h";
      assert.equal(aot.data.promptsViaDecode, floored ? false : undefined);
      // Equal up to the first near-tie, as loadModel is held to (hf_fixtures_test.ts).
      const want = tieFreeGreedy(ref);
      const got = await ids(aot, ref.ids, { maxTokens: ref.greedy.length });
      assert.deepEqual(got.slice(0, want.length), want);
    } finally {
      aot?.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
