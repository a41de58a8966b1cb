/**
 * The fixture of `tests/quant_mix_test.ts`: the tensor types llama-quantize
 * itself picks for each of Kiln's mixed types (`q4_k_m`…) on tiny checkpoints
 * of each architecture llama.cpp reads (Mixtral with 8 and with 4 experts,
 * tied and untied, widths of whole and of partial super-blocks; Qwen2-MoE with
 * a shared expert; OLMoE; Mamba). Each checkpoint is written with random
 * weights, converted to an f32 GGUF by Kiln, quantized by llama-quantize (the
 * IQ2 mixes with a seeded random importance matrix, which they need), and its
 * tensors' types read back; also with `--output-tensor-type` /
 * `--token-embedding-type` (`OVERRIDE_VARIANTS`).
 *
 * ```sh
 * deno run -A tools/llama_quantize_mixes.ts --llama /tmp/llama.cpp
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { convertToGguf, GGUF_MIXES } from "../app/gguf/arch.ts";
import { IMATRIX_MIXES } from "../app/gguf/quant_mix.ts";
import { GgufFile } from "../app/gguf/file.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import {
  MIX_CASES,
  OVERRIDE_VARIANTS,
  variantKey,
} from "../tests/fixtures/llama_cpp/quant_mix_cases.ts";
import { writeImatrixCase } from "../tests/fixtures/llama_cpp/imatrix_case.ts";

const { values } = parseArgs({ args: Deno.args, options: { llama: { type: "string" } } });
if (!values.llama) {
  throw new Error("give --llama DIR (a llama.cpp checkout with build/bin/llama-quantize)");
}
const quantizer = join(values.llama, "build", "bin", "llama-quantize");
const tmp = await Deno.makeTempDir({ prefix: "kiln_quant_mixes_" });
/** Case → its tensors' names (file order) and, per mix, their types (space-separated). */
const out: Record<string, { names: string[]; types: Record<string, string> }> = {};
try {
  for (const [name, config] of Object.entries(MIX_CASES)) {
    const dir = join(tmp, name);
    await writeRandomCheckpoint(dir, config, { seed: 1 });
    const f32 = join(tmp, `${name}.f32.gguf`);
    using ckpt = await Checkpoint.open(dir);
    await convertToGguf({ config, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) }, f32, {
      type: "f32",
    });
    out[name] = { names: [], types: {} };
    // The IQ2 mixes need an importance matrix (their types do not depend on its values).
    const imatrix = join(tmp, `${name}.imatrix.dat`);
    await writeImatrixCase(f32, imatrix);
    const runs: Array<[string, string[]]> = GGUF_MIXES.map((mix) => [
      mix,
      [...(IMATRIX_MIXES.includes(mix) ? ["--imatrix", imatrix] : []), mix.toUpperCase()],
    ]);
    // --output-tensor-type / --token-embedding-type.
    for (const v of OVERRIDE_VARIANTS) {
      runs.push([variantKey(v), [
        ...(v.output ? ["--output-tensor-type", v.output] : []),
        ...(v.embedding ? ["--token-embedding-type", v.embedding] : []),
        ...((GGUF_MIXES as readonly string[]).includes(v.type) ? [] : ["--pure"]),
        v.type.toUpperCase(),
      ]]);
    }
    for (const [key, args] of runs) {
      const q = join(tmp, `${name}.${key}.gguf`);
      const type = args.pop()!;
      const r = await new Deno.Command(quantizer, { args: [...args, f32, q, type] }).output();
      if (!r.success) throw new Error(`${name} ${key}: ${new TextDecoder().decode(r.stderr)}`);
      using file = await GgufFile.open(q);
      const tensors = [...file.tensors.values()];
      out[name].names = tensors.map((t) => t.name);
      out[name].types[key] = tensors.map((t) => t.type.name.toLowerCase()).join(" ");
      console.log(name, key, out[name].types[key]);
    }
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}
const path = new URL("../tests/fixtures/llama_cpp/quant_mixes.json", import.meta.url);
await Deno.writeTextFile(path, JSON.stringify(out, null, 2) + "\n");
console.log(`wrote ${path.pathname}`);
