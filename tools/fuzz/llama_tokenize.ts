/**
 * The `llama-tokenize` campaign of `deno task fuzz`: Kiln's tokenizer for GGUF files
 * against llama.cpp's own `llama_tokenize` / `llama_detokenize`, on random texts
 * (`tokenizers_texts.ts`, with each vocabulary's special tokens mixed in) for every
 * vocabulary of `tests/fixtures/llama_cpp/` — the Kiln-written SentencePiece and
 * byte-level ones, the `tokenizer.ggml.pre` families, and those llama.cpp's converter
 * wrote — held to the same rules as the stored fixtures (`tokenize_check.ts`).
 *
 *     deno task fuzz llama-tokenize --llama /tmp/llama.cpp --texts 1500 --seed 7
 *
 * Needs a llama.cpp build (see `tools/llama_cpp_reference.ts`); without `--llama` the
 * campaign says so and passes, so `deno task fuzz all` runs where none is built.
 *
 * @module
 */

import { join } from "node:path";
import type { Campaign } from "../fuzz.ts";
import { modelTokenizer } from "../../app/model/source.ts";
import { mulberry32 } from "../../core/random.ts";
import { TOKENIZER_RECIPES } from "../../tests/fixtures/llama_cpp/recipes.ts";
import { tokenizeDifferences } from "../../tests/fixtures/llama_cpp/tokenize_check.ts";
import { buildProbe, type Env, hex, probe, unhex } from "../llama_cpp_reference.ts";
import { Rand, randomText } from "./tokenizers_texts.ts";

/** Special-token texts and whitespace runs the random texts embed. */
const EXTRAS = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<pad>", "    ", "  "];

/**
 * Kiln against llama.cpp's tokenizer on random texts (see the module comment).
 *
 * @example
 * ```ts ignore
 * await llamaTokenizeCampaign.run({ shrink: false, flags: { llama: "/tmp/llama.cpp" }, log: console.log });
 * ```
 */
export const llamaTokenizeCampaign: Campaign = {
  name: "llama-tokenize",
  about: "random texts through llama.cpp's tokenizer and Kiln's, for every GGUF vocabulary",
  flags: {
    llama: {
      type: "string",
      help: "a llama.cpp checkout built as tools/llama_cpp_reference.ts says",
    },
    texts: { type: "string", help: "texts per vocabulary (default 500)" },
  },
  async run(o) {
    const llama = o.flags.llama as string | undefined;
    if (!llama) {
      o.log("llama-tokenize: skipped (no --llama DIR with a llama.cpp build)");
      return true;
    }
    const n = Number(o.flags.texts ?? 500);
    const seed = o.seed ?? 1;
    const deadline = o.minutes === undefined ? Infinity : Date.now() + o.minutes * 60_000;
    const tmp = await Deno.makeTempDir({ prefix: "kiln_llama_tokenize_" });
    let failed = 0, cases = 0;
    try {
      const env: Env = { probe: await buildProbe(llama, tmp), llama, commit: "", tmp };
      for (const [k, recipe] of TOKENIZER_RECIPES.entries()) {
        if (Date.now() > deadline) break;
        const dir = await Deno.makeTempDir({ dir: tmp });
        const path = await recipe.build(dir);
        const tok = await modelTokenizer(path);
        if (!tok) throw new Error(`${recipe.name}: Kiln reads no tokenizer`);
        const r = new Rand(mulberry32(seed * 7919 + k));
        const texts = Array.from({ length: n }, () => randomText(r, EXTRAS));
        const file = join(dir, "texts.hex");
        await Deno.writeTextFile(file, texts.map(hex).join("\n") + "\n");
        const answer = await probe(env, ["tokenize", path, file]);
        if ("refused" in answer) throw new Error(`${recipe.name}: ${answer.refused}`);
        const [, ...lines] = answer.out.trim().split("\n").map((l) => JSON.parse(l));
        const problems = texts.flatMap((text, i) =>
          tokenizeDifferences(tok, {
            text,
            special: lines[i].special,
            plain: lines[i].plain,
            detok: unhex(lines[i].detok),
            detok_special: unhex(lines[i].detok_special),
            pieces: unhex(lines[i].pieces),
          })
        );
        cases += texts.length;
        failed += problems.length;
        o.log(`${recipe.name}: ${problems.length} difference(s) in ${texts.length} texts`);
        for (const p of problems.slice(0, 3)) o.log(`    ${p.slice(0, 600)}`);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
    o.log(`llama-tokenize: ${cases} texts (seed ${seed}), ${failed} difference(s)`);
    return failed === 0;
  },
};
