/**
 * The fixture of `tests/quant_imatrix_test.ts`: the bytes llama-quantize writes
 * with an importance matrix (`--imatrix`), as a SHA-256 of each tensor's raw
 * data, for the small Mixtral of `tests/fixtures/llama_cpp/imatrix_case.ts`
 * (random weights written by Kiln as an f32 GGUF; a seeded legacy imatrix.dat)
 * in each of its types (the plain ones `--pure`, as Kiln's plain types are).
 *
 * ```sh
 * deno run -A tools/llama_quantize_imatrix.ts --llama /tmp/llama.cpp
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { convertToGguf, isGgufMix } from "../app/gguf/arch.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import {
  IMATRIX_CONFIG,
  IMATRIX_TYPES,
  writeImatrixCase,
} from "../tests/fixtures/llama_cpp/imatrix_case.ts";

const { values } = parseArgs({ args: Deno.args, options: { llama: { type: "string" } } });
if (!values.llama) {
  throw new Error("give --llama DIR (a llama.cpp checkout with build/bin/llama-quantize)");
}
const quantizer = join(values.llama, "build", "bin", "llama-quantize");
const tmp = await Deno.makeTempDir({ prefix: "kiln_quant_imatrix_" });
const out: Record<string, Record<string, string>> = {};
try {
  const dir = join(tmp, "hf");
  await writeRandomCheckpoint(dir, IMATRIX_CONFIG, { seed: 1 });
  const f32 = join(tmp, "f32.gguf");
  using ckpt = await Checkpoint.open(dir);
  await convertToGguf(
    { config: IMATRIX_CONFIG, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
    f32,
    { type: "f32" },
  );
  const imatrix = join(tmp, "imatrix.dat");
  await writeImatrixCase(f32, imatrix);
  for (const type of IMATRIX_TYPES) {
    const q = join(tmp, `${type}.gguf`);
    const pure = isGgufMix(type.toLowerCase()) ? [] : ["--pure"];
    const r = await new Deno.Command(quantizer, {
      args: ["--imatrix", imatrix, ...pure, f32, q, type],
    }).output();
    if (!r.success) throw new Error(`${type}: ${new TextDecoder().decode(r.stderr)}`);
    using file = await GgufFile.open(q);
    out[type] = {};
    for (const t of file.tensors.values()) {
      const data = new Uint8Array(await file.read(t.name));
      const sha = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
      out[type][t.name] = `${t.type.name.toLowerCase()} ` +
        Array.from(sha, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, 32);
    }
    console.log(type, Object.keys(out[type]).length, "tensors");
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}
const path = new URL("../tests/fixtures/llama_cpp/quant_imatrix.json", import.meta.url);
await Deno.writeTextFile(path, JSON.stringify(out, null, 2) + "\n");
console.log(`wrote ${path.pathname}`);
