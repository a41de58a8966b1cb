/**
 * The other direction of `transformers_differential.ts`: Kiln writes a random
 * checkpoint (`writeRandomCheckpoint`: config.json as Kiln's training
 * checkpoints write it, `model.safetensors` under the names Kiln maps) for each
 * random config of `transformers_configs.ts`, transformers loads the folder
 * (`transformers_logits.py`, float64), and both compute the logits of one
 * prompt: they must agree to `max |kiln − ref| / logit_rms` < 1e-4. A config
 * Kiln refuses is counted as refused; a folder transformers refuses is a
 * failure (Kiln wrote something transformers cannot load).
 *
 * ```sh
 * deno run -A tools/transformers_kiln_written.ts --python /tmp/tfenv/bin/python \
 *   [--cases 20] [--seed 1] [--arch MambaForCausalLM,...]
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { loadModel } from "../mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { type Architecture, ARCHITECTURES, randomCases } from "./transformers_configs.ts";
import { relToRms } from "../tests/fixtures/transformers_ref.ts";

const opt = (name: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : undefined;
};
const python = opt("--python");
if (!python) throw new Error("give --python PY (a Python with torch and transformers)");
const cases = Number(opt("--cases") ?? 20);
const seed = Number(opt("--seed") ?? 1);
const archs = (opt("--arch")?.split(",") ?? [...ARCHITECTURES]) as Architecture[];
const script = new URL("./transformers_logits.py", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "kiln_written_" });
const tally = new Map<string, { pass: number; refused: number; fail: number }>();
try {
  for (const c of randomCases(cases, seed, archs)) {
    const t = tally.get(c.arch) ?? { pass: 0, refused: 0, fail: 0 };
    tally.set(c.arch, t);
    const dir = join(tmp, c.name);
    const config = { architectures: [c.arch], ...c.config };
    try {
      await writeRandomCheckpoint(dir, config, { seed: c.seed });
    } catch (e) {
      if (e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError) {
        t.refused++;
        console.log(`refused     ${c.name} ${(e as Error).message.slice(0, 160)}`);
        continue;
      }
      throw e;
    }
    const vocab = Number(c.config.vocab_size);
    const ids = Array.from({ length: c.prompt_len }, (_, i) => (i * 7919 + c.seed) % vocab);
    const out = join(dir, "ref.json");
    const p = await new Deno.Command(python, { args: [script, dir, ids.join(","), out] }).output();
    if (!p.success) throw new Error(new TextDecoder().decode(p.stderr));
    const ref = JSON.parse(await Deno.readTextFile(out));
    if (ref.error) {
      t.fail++;
      console.log(`FAIL        ${c.name} transformers refused Kiln's folder: ${ref.error}`);
      continue;
    }
    const model = await loadModel(dir, { quiet: true, maxSeq: c.prompt_len });
    try {
      const got = await model.forward(ids);
      const want: number[] = ref.logits;
      const rms = Math.sqrt(want.reduce((a, v) => a + v * v, 0) / want.length);
      const rel = relToRms(got, want, rms);
      const ok = rel < 1e-4;
      if (ok) t.pass++;
      else t.fail++;
      console.log(`${ok ? "pass" : "FAIL"}        ${c.name} err ${rel.toExponential(1)}`);
      if (!ok) console.log(JSON.stringify(config));
    } finally {
      model.dispose();
    }
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}
console.log();
for (const [arch, t] of tally) {
  console.log(`${arch.padEnd(24)} pass ${t.pass}  refused ${t.refused}  fail ${t.fail}`);
}
if ([...tally.values()].some((t) => t.fail > 0)) Deno.exit(1);
