/**
 * Makes the GGUF files of `tests/fixtures/llama_cpp/converted/` with llama.cpp's own
 * tools: each transformers checkpoint of `CONVERTED_SOURCES` is written by transformers
 * (`tools/transformers_reference.py`, which also stores transformers' logits), converted
 * by `convert_hf_to_gguf.py` (through `tools/llama_cpp_convert.py`) and, for the
 * quantized recipes, passed through `llama-quantize` (or, for the types llama.cpp c392e50
 * predates, a recent ggml's quantizer: `tools/ggml_reference.ts`). Run by
 * `tools/llama_cpp_reference.ts --python P` before it asks llama.cpp about the files.
 *
 * Needs, besides llama.cpp's library: `cmake --build build --target llama-quantize
 * llama-imatrix`,
 * and a Python with torch, transformers, sentencepiece, tokenizers, numpy and pyyaml.
 *
 * @module
 */

import { join } from "node:path";
import {
  CONVERTED_DIR,
  CONVERTED_RECIPES,
  CONVERTED_SOURCES,
  type ConvertedRecipe,
  type ConvertedSource,
} from "../tests/fixtures/llama_cpp/converted.ts";
import { ggmlDriver } from "./ggml_reference.ts";

const TOOLS = new URL("./", import.meta.url).pathname;

/** Runs a command; its output is shown only when it fails. */
async function run(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  const out = dec.decode(r.stdout) + dec.decode(r.stderr);
  if (!r.success) throw new Error(`${cmd} ${args.join(" ")} failed:\n${out.slice(-3000)}`);
  return out;
}

/** The converter's file of `source` in `outtype`, made once per run. */
async function converted(
  opts: { llama: string; python: string; tmp: string },
  source: ConvertedSource,
  outtype: ConvertedRecipe["outtype"],
): Promise<string> {
  const out = join(opts.tmp, `${source.name}.${outtype}.gguf`);
  try {
    await Deno.stat(out);
    return out;
  } catch {
    // not made yet
  }
  const args = [
    join(TOOLS, "llama_cpp_convert.py"),
    opts.llama,
    join(opts.tmp, "hf", source.name),
    out,
    "--outtype",
    outtype,
    "--tokenizer",
    source.tokenizer,
  ];
  if (source.pre) args.push("--pre", source.pre);
  await run(opts.python, args);
  return out;
}

/** llama-imatrix of the f32 file `f32` over the BPE corpus, made once per file. */
async function importanceMatrix(
  opts: { tmp: string },
  bin: string,
  f32: string,
): Promise<string> {
  const out = f32.replace(/\.gguf$/, ".imatrix");
  try {
    await Deno.stat(out);
    return out;
  } catch {
    // not made yet
  }
  // 40 chunks of 128 tokens: the corpus repeated until it holds them.
  const corpus = await Deno.readTextFile(join(TOOLS, "../tests/fixtures/hf_bpe/corpus.txt"));
  const text = join(opts.tmp, "imatrix_corpus.txt");
  await Deno.writeTextFile(text, corpus.repeat(8));
  await run(join(bin, "llama-imatrix"), [
    "-m",
    f32,
    "-f",
    text,
    "-o",
    out,
    "-c",
    "128",
    "--chunks",
    "40",
    "-t",
    "2",
  ]);
  return out;
}

/**
 * Writes every converted file and each source's transformers reference into
 * `tests/fixtures/llama_cpp/converted/`; `only` limits the recipes.
 *
 * @example
 * ```ts ignore
 * await makeConvertedFiles({ llama: "/tmp/llama.cpp", python: "python3", tmp: "/tmp/x" });
 * ```
 */
export async function makeConvertedFiles(
  opts: { llama: string; python: string; tmp: string; ggmlDriver?: string },
  only: (name: string) => boolean = () => true,
): Promise<void> {
  // Without a recent ggml the files only it can write stay as checked in.
  const recipes = CONVERTED_RECIPES.filter((r) =>
    only(r.name) && (r.ggmlQuantize === undefined || opts.ggmlDriver !== undefined)
  );
  if (recipes.length === 0) return;
  await Deno.mkdir(CONVERTED_DIR, { recursive: true });
  const sources = CONVERTED_SOURCES.filter((s) => recipes.some((r) => r.source === s.name));
  const cases = join(opts.tmp, "cases.json");
  await Deno.writeTextFile(
    cases,
    JSON.stringify(sources.map(({ tokenizer: _, pre: __, ...c }) => c)),
  );
  const hf = join(opts.tmp, "hf");
  const lines = await run(opts.python, [join(TOOLS, "transformers_reference.py"), cases, hf]);
  for (const s of sources) {
    if (!lines.includes(`"name": "${s.name}", "ok": true`)) {
      throw new Error(`transformers did not write ${s.name}:\n${lines.slice(-2000)}`);
    }
    await Deno.copyFile(join(hf, s.name, "ref.json"), join(CONVERTED_DIR, `${s.name}.ref.json`));
    if (recipes.some((r) => r.source === s.name && r.transformersTolerance !== undefined)) {
      await Deno.copyFile(
        join(hf, s.name, "logits.f32"),
        join(CONVERTED_DIR, `${s.name}.logits.f32`),
      );
    }
  }
  const bin = join(opts.llama, "build", "bin");
  for (const r of recipes) {
    const source = sources.find((s) => s.name === r.source)!;
    const target = join(CONVERTED_DIR, `${r.name}.gguf`);
    if (r.ggmlQuantize) {
      const f32 = await converted(opts, source, "f32");
      await ggmlDriver(opts.ggmlDriver!, ["requant", f32, target, r.ggmlQuantize]);
    } else if (r.quantize) {
      const f32 = await converted(opts, source, "f32");
      const imatrix = r.imatrix ? ["--imatrix", await importanceMatrix(opts, bin, f32)] : [];
      await run(join(bin, "llama-quantize"), [...imatrix, f32, target, r.quantize]);
    } else {
      await Deno.copyFile(await converted(opts, source, r.outtype), target);
    }
    console.log(`wrote converted/${r.name}.gguf`);
  }
}
