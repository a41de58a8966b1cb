/**
 * The shipped default model (assets/default_model/, written by
 * examples/train_default_model.ts): it loads with loadModel, its tokenizer
 * round-trips text, greedy generation runs and decodes to printable text, and
 * `kiln generate` without `--model` uses it.
 */
import assert from "node:assert/strict";
import { loadModel } from "../mod.ts";
import { defaultModelPath, findDefaultModel } from "../app/default_model.ts";
import { gpu } from "./_util.ts";
import { kiln } from "./fixtures/kiln_cli.ts";

const dir = await findDefaultModel();

Deno.test("default model: found beside the sources, with every file loadModel needs", async () => {
  assert.ok(defaultModelPath()!.endsWith("/assets/default_model"), defaultModelPath());
  assert.ok(dir, `no default model at ${defaultModelPath()}`);
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "README.md"]) {
    assert.ok((await Deno.stat(`${dir}/${f}`)).size > 0, f);
  }
  const total = [...Deno.readDirSync(dir)].reduce(
    (n, e) => n + Deno.statSync(`${dir}/${e.name}`).size,
    0,
  );
  assert.ok(total <= 10 * 2 ** 20, `default model folder is ${total} bytes (limit 10 MiB)`);
});

Deno.test({
  name: "default model: loads, round-trips text, generates 8 greedy tokens of printable text",
  ignore: dir === undefined,
  fn: async () => {
    const model = await loadModel(dir!, { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      const tok = model.tokenizer!;
      const text = "Call me Ishmael. Some years ago—never mind how long precisely—\n\tthe whale!";
      const ids = tok.encode(text);
      assert.ok(ids.length > 0 && ids.length < text.length, `${ids.length} tokens`);
      assert.equal(tok.decode(ids), text);
      const prompt = tok.encode("Call me Ishmael.");
      const out: number[] = [];
      for await (const id of model.generateIds(prompt, { maxTokens: 8, temperature: 0 })) {
        out.push(id);
      }
      assert.equal(out.length, 8);
      const vocab = model.config.vocabSize;
      assert.ok(out.every((id) => Number.isInteger(id) && id >= 0 && id < vocab), `${out}`);
      const decoded = tok.decode(out);
      assert.ok(decoded.trim().length > 0, JSON.stringify(decoded));
      // Printable: no control characters but newlines/tabs, no replacement characters.
      const bad = [...decoded].filter((ch) => {
        const c = ch.codePointAt(0)!;
        return (c < 32 && ch !== "\n" && ch !== "\t") || c === 0x7f || c === 0xfffd;
      });
      assert.equal(bad.length, 0, JSON.stringify(decoded));
    } finally {
      model.dispose();
    }
  },
});

Deno.test({
  name: "default model: kiln generate without --model streams from it",
  ignore: dir === undefined,
  fn: async () => {
    const r = await kiln("generate", "--prompt", "Call me Ishmael.", "--max-tokens", "6");
    assert.equal(r.code, 0, r.stderr);
    // stdout is the generated text only (the prompt is not echoed).
    assert.ok(r.stdout.trim().length > 0, JSON.stringify(r.stdout));
  },
});
