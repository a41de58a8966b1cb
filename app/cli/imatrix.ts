/**
 * `kiln imatrix MODEL --text FILE -o OUT.gguf`: computes an importance matrix
 * as llama.cpp's `llama-imatrix` does (`app/imatrix.ts`: the model runs over
 * the text in chunks, every layer weight's input columns' squared activations
 * summed) and writes it in llama.cpp's GGUF layout, or the legacy layout for an
 * output ending in `.dat`, for `kiln quantize --imatrix` or `llama-quantize`.
 *
 * @module
 */

import { basename } from "node:path";
import { computeImatrix } from "../imatrix.ts";
import { writeImatrix } from "../gguf/imatrix.ts";
import { createProgress, type Progress } from "../progress.ts";
import { intOption, type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { checkWritable, modelFolder } from "./paths.ts";
import { usage } from "./usage.ts";

const SPEC: OptionSpec = {
  text: { type: "string" },
  o: { type: "string" },
  out: { type: "string" },
  "chunk-size": { type: "string" },
  chunks: { type: "string" },
  "process-output": { type: "boolean" },
  quiet: { type: "boolean" },
};

/**
 * Runs `kiln imatrix` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { imatrix } from "./imatrix.ts";
 * await imatrix(["./tiny-mixtral", "--text", "wiki.txt", "-o", "imatrix.gguf"]);
 * ```
 */
export async function imatrix(args: string[]): Promise<void> {
  const { values, positionals, help } = parseCommand("imatrix", args, SPEC, true);
  if (help) return console.log(usage("imatrix"));
  const model = positionals[0];
  if (!model) {
    throw new UsageError(
      "imatrix: give a model folder or a .gguf file, e.g. kiln imatrix ./model --text wiki.txt " +
        "-o imatrix.gguf",
    );
  }
  if (positionals.length > 1) {
    throw new UsageError(`imatrix: one model expected, got also "${positionals[1]}"`);
  }
  const text = values.text as string | undefined;
  if (!text) throw new UsageError("imatrix: give the calibration text with --text FILE");
  const out = (values.o ?? values.out) as string | undefined;
  if (!out) throw new UsageError("imatrix: give the output file with -o OUT.gguf (or OUT.dat)");
  if (!/\.(gguf|dat)$/i.test(out)) {
    throw new UsageError(`imatrix: -o ${out}: the output must be a .gguf (or legacy .dat) file`);
  }
  const chunkSize = values["chunk-size"] === undefined
    ? undefined
    : intOption(values["chunk-size"], "chunk-size", 16, 16, 1 << 20);
  const chunks = values.chunks === undefined
    ? undefined
    : intOption(values.chunks, "chunks", 1, 1, 1 << 30);
  const quiet = values.quiet === true;
  await modelFolder(model, "imatrix");
  let corpus: string;
  try {
    corpus = await Deno.readTextFile(text);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`imatrix: --text ${text}: no such file`);
    }
    throw e;
  }
  await checkWritable(out, "-o");
  let bar: Progress | undefined;
  const r = await computeImatrix(model, [corpus], {
    chunkSize,
    chunks,
    processOutput: values["process-output"] === true,
    onProgress: (_done, total) => {
      bar ??= createProgress({ total, label: "imatrix", unit: "chunks", quiet });
      bar.advance(1);
    },
  });
  bar?.done();
  const { written, skipped } = await writeImatrix(out, r.weights, {
    datasets: [basename(text)],
    chunkCount: r.chunks,
    chunkSize: r.chunkSize,
  });
  if (!quiet) {
    console.log(
      `wrote ${out}: ${written.length} weights from ${r.chunks} chunks of ${r.chunkSize} tokens` +
        (skipped.length ? ` (left out, no rows reached them: ${skipped.join(", ")})` : ""),
    );
  }
}
