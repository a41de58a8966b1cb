/**
 * Differential check of Kiln against Hugging Face transformers on random tiny
 * checkpoints. For each random config (`transformers_configs.ts`) transformers
 * builds, saves and runs the model (`transformers_reference.py`: float64
 * logits of a prompt, greedy ids from `generate(do_sample=False)`); Kiln loads
 * the folder and must give the same logits, `max |kiln − ref| / logit_rms` <
 * 1e-4, and the same greedy ids except after a step where transformers' own
 * top-1/top-2 margin is < 1e-4 · logit_rms (a tie f32 rounding may flip).
 *
 * A config Kiln refuses with a TypeError/RangeError/SyntaxError is counted as
 * refused, not failed: refusing math it does not implement is allowed, giving
 * other numbers is not. A config transformers itself rejects is skipped.
 * Each failing config is printed in full with, for the first few, which single
 * simplification makes it pass (the fields the defect needs).
 *
 * ```sh
 * deno run -A tools/transformers_differential.ts --python /tmp/tfenv/bin/python \
 *   [--cases 50] [--seed 1] [--arch MambaForCausalLM,...] [--prompt-len 4,40] [--via-gguf] \
 *   [--shrink 5] [--keep DIR]
 * ```
 *
 * `--via-gguf` runs each checkpoint through `kiln quantize --type f32` and loads
 * the .gguf instead: the GGUF writer and reader against transformers (a config
 * GGUF cannot hold, refused by name, counts as refused).
 *
 * @module
 */

import { join } from "node:path";
import { loadModel } from "../mod.ts";
import { quantize } from "../app/cli/quantize.ts";
import {
  type Architecture,
  ARCHITECTURES,
  type Case,
  randomCases,
  simplifications,
} from "./transformers_configs.ts";

/** What transformers_reference.py wrote to ref.json. */
interface Ref {
  ids: number[];
  vocab: number;
  greedy: number[];
  margins: number[];
  logit_rms: number;
  hf_f32_rel: number;
}

/**
 * The outcome of one case.
 *
 * @example
 * ```ts
 * const o: Outcome = { name: "c1_0_mamba", arch: "MambaForCausalLM", verdict: "pass", detail: "" };
 * ```
 */
export interface Outcome {
  name: string;
  arch: Architecture;
  verdict: "pass" | "fail" | "refused" | "hf_rejected";
  detail: string;
  err?: number;
}

const TOL = 1e-4;

/**
 * Compares Kiln with transformers' files in `dir`.
 *
 * @example
 * ```ts
 * const o = await compareCase(randomCases(1, 1)[0], "/tmp/out/c1_0_mixtral");
 * console.log(o.verdict, o.detail);
 * ```
 */
export async function compareCase(c: Case, dir: string, viaGguf = false): Promise<Outcome> {
  const base = { name: c.name, arch: c.arch };
  const ref = JSON.parse(await Deno.readTextFile(join(dir, "ref.json"))) as Ref;
  const bytes = await Deno.readFile(join(dir, "logits.f32"));
  const want = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let model;
  try {
    // --via-gguf: the folder converted as `kiln quantize --type f32` writes it, then
    // loaded from the .gguf (config rebuilt from its metadata).
    const path = viaGguf ? join(dir, "model.f32.gguf") : dir;
    if (viaGguf) await quantize([dir, "--type", "f32", "-o", path, "--quiet"]);
    // Room for the prompt and the greedy tokens: long prompts run as several prefill chunks.
    model = await loadModel(path, { quiet: true, maxSeq: Math.max(64, c.prompt_len + 32) });
  } catch (e) {
    const clean = e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError;
    return {
      ...base,
      verdict: clean ? "refused" : "fail",
      detail: `${(e as Error).name}: ${(e as Error).message}`,
    };
  }
  try {
    const got = await model.forward(ref.ids);
    let err = got.length === want.length ? 0 : Infinity;
    for (let i = 0; i < want.length && err !== Infinity; i++) {
      const d = Math.abs(got[i] - want[i]);
      err = Number.isNaN(d) ? Infinity : Math.max(err, d);
    }
    err /= ref.logit_rms;
    const ids: number[] = [];
    for await (const id of model.generateIds(ref.ids, { maxTokens: ref.greedy.length })) {
      ids.push(id);
    }
    const problems: string[] = [];
    if (!(err < TOL)) problems.push(`logits off by ${err.toExponential(2)} of the rms`);
    for (let i = 0; i < Math.max(ids.length, ref.greedy.length); i++) {
      if (ids[i] === ref.greedy[i]) continue;
      const margin = ref.margins[i] ?? Infinity;
      if (margin < TOL * ref.logit_rms) break; // a near-tie: what follows may differ
      problems.push(
        `greedy differs at step ${i}: kiln ${ids.join(",")} vs hf ${ref.greedy.join(",")}`,
      );
      break;
    }
    return {
      ...base,
      verdict: problems.length ? "fail" : "pass",
      detail: problems.join("; "),
      err,
    };
  } catch (e) {
    return {
      ...base,
      verdict: "fail",
      detail: `run threw ${(e as Error).name}: ${(e as Error).message}`,
    };
  } finally {
    model.dispose();
  }
}

/** Runs the reference on `cases`, calling `each` on every case as transformers finishes it. */
async function reference(
  python: string,
  cases: Case[],
  out: string,
  each: (c: Case, res: { ok: boolean; error?: string }) => Promise<void>,
): Promise<void> {
  const file = join(out, `cases_${crypto.randomUUID()}.json`);
  await Deno.writeTextFile(file, JSON.stringify(cases));
  const script = new URL("./transformers_reference.py", import.meta.url).pathname;
  const child = new Deno.Command(python, {
    args: [script, file, out],
    stdout: "piped",
    stderr: "null",
  })
    .spawn();
  const byName = new Map(cases.map((c) => [c.name, c]));
  // Kiln checks case k while transformers builds case k + 1: the two overlap.
  let pending = Promise.resolve();
  let buffered = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    const lines = (buffered + chunk).split("\n");
    buffered = lines.pop()!;
    for (const line of lines.filter((l) => l.startsWith("{"))) {
      const res = JSON.parse(line) as { name: string; ok: boolean; error?: string };
      const c = byName.get(res.name)!;
      pending = pending.then(() => each(c, res));
    }
  }
  await pending;
  const status = await child.status;
  if (!status.success) throw new Error(`transformers_reference.py exited with ${status.code}`);
}

function parseArgs(args: string[]) {
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : args[i + 1];
  };
  const python = opt("--python");
  if (!python) {
    throw new TypeError("--python PATH (a Python with torch and transformers) is required");
  }
  const n = Number(opt("--cases") ?? 25),
    seed = Number(opt("--seed") ?? 1),
    shrink = Number(opt("--shrink") ?? 5);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`--cases must be a positive integer`);
  if (!Number.isInteger(seed)) throw new RangeError(`--seed must be an integer`);
  const archs = (opt("--arch")?.split(",") ?? [...ARCHITECTURES]) as Architecture[];
  for (const a of archs) {
    if (!ARCHITECTURES.includes(a)) throw new RangeError(`--arch: unknown architecture "${a}"`);
  }
  const lengths = (opt("--prompt-len") ?? "4,40").split(",").map(Number);
  if (
    lengths.length !== 2 || !lengths.every((v) => Number.isInteger(v) && v >= 1) ||
    lengths[0] > lengths[1]
  ) {
    throw new RangeError(
      `--prompt-len must be MIN,MAX (positive integers), got ${opt("--prompt-len")}`,
    );
  }
  const promptLengths = lengths as [number, number];
  const viaGguf = args.includes("--via-gguf");
  return { python, n, seed, shrink, archs, promptLengths, viaGguf, keep: opt("--keep") };
}

async function main(): Promise<void> {
  const { python, n, seed, shrink, archs, promptLengths, viaGguf, keep } = parseArgs(Deno.args);
  const out = keep ?? await Deno.makeTempDir({ prefix: "kiln_tf_diff_" });
  await Deno.mkdir(out, { recursive: true });
  const cases = randomCases(n, seed, archs, promptLengths);
  const outcomes: Outcome[] = [];
  const t0 = performance.now();
  await reference(python, cases, out, async (c, res) => {
    const o: Outcome = res.ok
      ? await compareCase(c, join(out, c.name), viaGguf)
      : { name: c.name, arch: c.arch, verdict: "hf_rejected", detail: res.error ?? "" };
    outcomes.push(o);
    const err = o.err === undefined ? "" : ` err ${o.err.toExponential(1)}`;
    console.log(`${o.verdict.padEnd(11)} ${c.name}${err} ${o.detail}`);
    if (o.verdict === "fail") {
      console.log(`  config: ${JSON.stringify(c.config)} prompt_len ${c.prompt_len}`);
    }
  });

  // One round of shrinking: which single simplification makes a failure pass.
  const failing = outcomes.filter((o) => o.verdict === "fail").slice(0, shrink);
  for (const f of failing) {
    const c = cases.find((x) => x.name === f.name)!;
    const variants = simplifications(c);
    const needed: string[] = [];
    await reference(python, variants.map((v) => v.case), out, async (vc, res) => {
      if (!res.ok) return;
      const o = await compareCase(vc, join(out, vc.name), viaGguf);
      if (o.verdict === "pass") needed.push(variants.find((v) => v.case.name === vc.name)!.dropped);
    });
    console.log(`shrink ${c.name}: passes without any one of [${needed.join(", ")}]`);
  }

  console.log(
    `\n${n} cases in ${((performance.now() - t0) / 1000).toFixed(0)} s (files in ${out})`,
  );
  for (const arch of archs) {
    const mine = outcomes.filter((o) => o.arch === arch);
    const count = (v: Outcome["verdict"]) => mine.filter((o) => o.verdict === v).length;
    console.log(
      `${arch.padEnd(20)} pass ${count("pass")}  refused ${count("refused")}  fail ${
        count("fail")
      }  hf_rejected ${count("hf_rejected")}`,
    );
  }
  if (!keep) await Deno.remove(out, { recursive: true });
  if (outcomes.some((o) => o.verdict === "fail")) Deno.exitCode = 1;
}

const USAGE = "usage: deno run -A tools/transformers_differential.ts --python PATH " +
  "[--cases 25] [--seed 1] [--arch MixtralForCausalLM,…] [--prompt-len 4,40] [--via-gguf] " +
  "[--shrink 5] [--keep DIR]";

if (import.meta.main) {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(USAGE);
  } else {
    try {
      await main();
    } catch (e) {
      // A usage mistake is one line, not a stack trace.
      if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
      console.error(`transformers_differential: ${e.message}\n${USAGE}`);
      Deno.exitCode = 2;
    }
  }
}
