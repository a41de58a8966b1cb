/**
 * `reusePrefix` (runtime/prompt_cache.ts): a generation that keeps what the
 * previous one left in the caches gives the ids of a fresh run of the same
 * prompt, for attention (any common prefix), Mamba (the previous prompt
 * whole) and a hybrid; anything that ran in between (forward, step) or a
 * diverging prompt starts fresh.
 */
import assert from "node:assert/strict";
import { PromptCache } from "../runtime/prompt_cache.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice } from "../runtime/device.ts";
import { GraphBuilder } from "../compiler/builder.ts";
import { recurrentStateNames } from "../models/states.ts";
import type { GenerateOptions, Model } from "../app/model/mod.ts";
import { writeTinyJamba, writeTinyMamba, writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { withTinyModel } from "./_util.ts";

Deno.test("recurrentStateNames: everything but KV caches and the decode loop's states", () => {
  assert.deepEqual(
    recurrentStateNames([
      "token",
      "generated",
      "moe.usage",
      "moe.log",
      "model.layers.0.self_attn.k_cache",
      "model.layers.0.self_attn.v_cache",
      "model.layers.1.self_attn.kv_cache",
      "model.layers.2.mamba.conv_state",
      "model.layers.2.mamba.ssm_state",
      "model.layers.3.s4.state",
    ]),
    [
      "model.layers.2.mamba.conv_state",
      "model.layers.2.mamba.ssm_state",
      "model.layers.3.s4.state",
    ],
  );
});

Deno.test("PromptCache: what a next prompt may skip, and the states it restores", async () => {
  const g = new GraphBuilder();
  const s = g.state("s", [1]);
  g.assign(s, s.add(1));
  g.output("s", s);
  const exe = compile(g.build(), cpuDevice());
  const ids = (...a: number[]) => Uint32Array.from(a);

  // Attention only: any common prefix with the prompt and the generated ids that were run.
  const kv = new PromptCache([]);
  assert.equal(kv.reusable(ids(1, 2, 3)), 0, "nothing cached yet");
  kv.begin(exe, ids(1, 2, 3), 0);
  assert.equal(kv.reusable(ids(1, 2, 3, 4)), 0, "the prompt is not queued yet");
  kv.promptQueued(exe);
  kv.generated(7);
  assert.equal(kv.reusable(ids(1, 2, 3, 7, 9)), 3, "the last generated id was never run");
  kv.generated(8);
  assert.equal(kv.reusable(ids(1, 2, 3, 7, 8, 9)), 4);
  assert.equal(kv.reusable(ids(1, 2, 5)), 2);
  assert.equal(kv.reusable(ids(1, 2, 3)), 2, "one token is left to run for the first sample");
  assert.equal(kv.reusable(ids(9)), 0);
  assert.throws(() => kv.begin(exe, ids(1, 2, 5), 3), /3 tokens of this prompt are not cached/);
  kv.invalidate();
  assert.equal(kv.reusable(ids(1, 2, 3, 7, 8, 9)), 0);

  // Recurrent states: the previous prompt whole, restored from the copy kept after it ran.
  const rec = new PromptCache(["s"]);
  rec.begin(exe, ids(1, 2, 3), 0);
  await exe.run({}); // s = 1 after the "prompt"
  rec.promptQueued(exe);
  rec.generated(7);
  rec.generated(8);
  await exe.run({}); // s = 2: a decode step
  assert.equal(rec.reusable(ids(1, 2, 3, 7, 8)), 3);
  assert.equal(rec.reusable(ids(1, 2, 3)), 0, "nothing left to run");
  assert.equal(rec.reusable(ids(1, 2, 4, 7)), 0, "diverges inside the prompt");
  rec.begin(exe, ids(1, 2, 3, 7, 8), 3);
  assert.deepEqual([...(await exe.readState("s")).data], [1]);
  rec.begin(exe, ids(5), 0);
  assert.deepEqual([...(await exe.readState("s")).data], [0]);

  // Unknown states (a module built before they were recorded): never.
  const unknown = new PromptCache(undefined);
  unknown.begin(exe, ids(1, 2, 3), 0);
  unknown.promptQueued(exe);
  assert.equal(unknown.reusable(ids(1, 2, 3, 4)), 0);
});

async function ids(model: Model, prompt: readonly number[], o: GenerateOptions): Promise<number[]> {
  const out: number[] = [];
  for await (const id of model.generateIds(prompt, { maxTokens: 6, readEvery: 4, ...o })) {
    out.push(id);
  }
  return out;
}

const P1 = [5, 17, 3, 99, 42, 7, 250, 11, 0, 64, 31, 8, 120, 9, 77, 13, 2, 180, 45];

for (
  const [arch, write, recurrent] of [
    ["Mixtral", writeTinyMixtral, false],
    ["Mamba", writeTinyMamba, true],
    ["Jamba", writeTinyJamba, true],
  ] as const
) {
  Deno.test(`reusePrefix (${arch}): each turn equals a fresh run of its whole prompt`, async () => {
    await withTinyModel(write, { seed: 3 }, async (model) => {
      const V = model.config.vocabSize;
      const extra = [21, 34, 55, 89].map((t) => t % V);
      for (const sampling of [{}, { temperature: 0.8, topK: 20, seed: 5 }] as GenerateOptions[]) {
        // Without reusePrefix a run starts fresh, and what it leaves is reusable after it.
        const first = await ids(model, P1, sampling);
        assert.equal(model.lastStats!.reusedTokens, 0);
        // The next turn: the prompt, the reply (all of it), then something new.
        const p2 = [...P1, ...first, ...extra];
        const reused = await ids(model, p2, { ...sampling, reusePrefix: true });
        const want = recurrent ? P1.length : P1.length + first.length - 1;
        assert.equal(model.lastStats!.reusedTokens, want, arch);
        assert.equal(model.lastStats!.promptTokens, p2.length);
        const fresh = await ids(model, p2, sampling);
        assert.equal(model.lastStats!.reusedTokens, 0);
        assert.deepEqual(reused, fresh, `${arch} ${JSON.stringify(sampling)}`);

        // A prompt diverging inside the first: attention keeps the common part, Mamba nothing.
        await ids(model, p2, { ...sampling, reusePrefix: true });
        const p3 = [...P1.slice(0, 10), 1, 2, 3];
        const diverged = await ids(model, p3, { ...sampling, reusePrefix: true });
        assert.equal(model.lastStats!.reusedTokens, recurrent ? 0 : 10);
        assert.deepEqual(diverged, await ids(model, p3, sampling));

        // The same prompt again: attention runs its last token only.
        await ids(model, p3, { ...sampling, reusePrefix: true });
        const again = await ids(model, p3, { ...sampling, reusePrefix: true });
        assert.equal(model.lastStats!.reusedTokens, recurrent ? 0 : p3.length - 1);
        assert.deepEqual(again, diverged);

        // forward() ran on the states in between: nothing is reused.
        await model.forward(P1);
        await ids(model, [...P1, 4], { ...sampling, reusePrefix: true });
        assert.equal(model.lastStats!.reusedTokens, 0);
      }
    });
  });
}
