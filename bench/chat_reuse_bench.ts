/**
 * A chat's turns with and without `reusePrefix`: each turn's prompt is the
 * conversation so far (the previous prompt, the reply, a new user line), as
 * `kiln generate --chat --interactive` builds it; the time to the first token
 * (`lastStats.prefillMs`) and the prompt tokens run, side by side in one
 * process, the two modes taking turns. Runs on Kiln's default model (Mamba:
 * recurrent states, so a turn reuses the whole previous prompt) and on a tiny
 * random Mixtral (attention: the previous prompt and the reply).
 *
 * ```sh
 * deno run -A bench/chat_reuse_bench.ts [--turns 4] [--rounds 3]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadModel, type Model } from "../app/model/mod.ts";
import { defaultModelPath } from "../app/default_model.ts";
import { writeTinyMixtral } from "../tests/fixtures/tiny_checkpoints.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { turns: { type: "string", default: "4" }, rounds: { type: "string", default: "3" } },
});
const turns = Number(values.turns), rounds = Number(values.rounds);
const LINES = [
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money",
  "in my purse, and nothing particular to interest me on shore, I thought I would sail about",
  "a little and see the watery part of the world. It is a way I have of driving off the spleen",
  "and regulating the circulation. Whenever I find myself growing grim about the mouth,",
  "whenever it is a damp, drizzly November in my soul, then I account it high time to get to sea.",
];

/** One conversation of `turns` turns; per turn [prefill ms, prompt tokens run]. */
async function chat(model: Model, reuse: boolean): Promise<[number, number][]> {
  const tok = model.tokenizer!;
  let conversation: number[] = [];
  const out: [number, number][] = [];
  for (let t = 0; t < turns; t++) {
    conversation = [...conversation, ...tok.encode(`user: ${LINES[t % LINES.length]}\nassistant:`)];
    const reply: number[] = [];
    // A conversation's first turn starts fresh (the other mode's run left it in the caches).
    const options = { maxTokens: 24, reusePrefix: reuse && t > 0 };
    for await (const id of model.generateIds(conversation, options)) {
      reply.push(id);
    }
    const s = model.lastStats!;
    out.push([s.prefillMs, s.promptTokens - s.reusedTokens]);
    conversation = [...conversation, ...reply];
  }
  return out;
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function bench(name: string, path: string): Promise<void> {
  const model = await loadModel(path, { quiet: true, maxSeq: 1024 });
  try {
    await model.warmUp();
    await chat(model, false); // compiles what a chat needs
    const runs: Record<"fresh" | "reused", [number, number][][]> = { fresh: [], reused: [] };
    for (let r = 0; r < rounds; r++) {
      runs.fresh.push(await chat(model, false));
      runs.reused.push(await chat(model, true));
    }
    console.log(`\n${name} (${model.config.architecture}), median of ${rounds} rounds`);
    console.log(
      "| turn | prompt tokens | run fresh: tokens, ms | reusePrefix: tokens, ms | ratio |",
    );
    console.log(
      "| ---- | ------------- | --------------------- | ----------------------- | ----- |",
    );
    for (let t = 0; t < turns; t++) {
      const f = median(runs.fresh.map((x) => x[t][0])), u = median(runs.reused.map((x) => x[t][0]));
      const ft = runs.fresh[0][t][1], ut = runs.reused[0][t][1];
      console.log(
        `| ${t + 1} | ${ft} | ${ft}, ${f.toFixed(0)} | ${ut}, ${u.toFixed(0)} | ${
          (u / f).toFixed(2)
        }× |`,
      );
    }
  } finally {
    model.dispose();
  }
}

await bench("default model", defaultModelPath()!);
const dir = await Deno.makeTempDir({ prefix: "kiln_chat_bench_" });
try {
  await writeTinyMixtral(dir, {
    seed: 1,
    tokenizer: "byte_level",
    config: { hidden_size: 256, intermediate_size: 512, num_hidden_layers: 4, vocab_size: 512 },
  });
  await bench("Mixtral-style, hidden 256, 4 layers", dir);
} finally {
  await Deno.remove(dir, { recursive: true });
}
