/**
 * The fixture of `tests/imatrix_compute_test.ts`: the importance matrix
 * llama.cpp's own `llama-imatrix` computes for the model, text and chunking
 * of `tests/fixtures/llama_cpp/imatrix_case.ts` (`writeImatrixModel`,
 * `IMATRIX_TEXT`, `IMATRIX_RUN`), the model converted to an f32 GGUF by Kiln.
 * Each weight's mean squared activation per column is stored (7 significant
 * digits) in `tests/fixtures/llama_cpp/imatrix_reference.json`.
 *
 * ```sh
 * cmake --build /tmp/llama.cpp/build --target llama-imatrix
 * deno run -A tools/llama_imatrix_reference.ts --llama /tmp/llama.cpp
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { quantize } from "../app/cli/quantize.ts";
import { readImatrix } from "../app/gguf/imatrix.ts";
import {
  IMATRIX_RUN,
  IMATRIX_TEXT,
  writeImatrixModel,
} from "../tests/fixtures/llama_cpp/imatrix_case.ts";

const { values } = parseArgs({ args: Deno.args, options: { llama: { type: "string" } } });
if (!values.llama) throw new Error("give --llama DIR (a llama.cpp checkout with llama-imatrix)");
const tmp = await Deno.makeTempDir({ prefix: "kiln_llama_imatrix_" });
try {
  const dir = join(tmp, "hf");
  await writeImatrixModel(dir);
  const f32 = join(tmp, "f32.gguf");
  await quantize([dir, "--type", "f32", "-o", f32, "--quiet"]);
  const text = join(tmp, "text.txt");
  await Deno.writeTextFile(text, IMATRIX_TEXT);
  const out = join(tmp, "imatrix.dat");
  const r = await new Deno.Command(join(values.llama, "build", "bin", "llama-imatrix"), {
    args: [
      "-m",
      f32,
      "-f",
      text,
      "-o",
      out,
      "-c",
      String(IMATRIX_RUN.chunkSize),
      "--chunks",
      String(IMATRIX_RUN.chunks),
      "-t",
      "2",
    ],
  }).output();
  if (!r.success) throw new Error(new TextDecoder().decode(r.stderr).slice(-3000));
  const m = await readImatrix(out);
  const entries: Record<string, number[]> = {};
  for (const [name, e] of [...m.entries].sort(([a], [b]) => a < b ? -1 : 1)) {
    entries[name] = Array.from(e.values, (v) => Number(v.toPrecision(7)));
  }
  const path = new URL("../tests/fixtures/llama_cpp/imatrix_reference.json", import.meta.url);
  await Deno.writeTextFile(
    path,
    JSON.stringify({ ...IMATRIX_RUN, chunkCount: m.chunkCount, entries }) + "\n",
  );
  console.log(`wrote ${path.pathname}: ${Object.keys(entries).length} weights`);
} finally {
  await Deno.remove(tmp, { recursive: true });
}
