/**
 * GGUF files in the `loaders` fuzz campaign (`deno task fuzz loaders --format gguf`).
 *
 * Seeds are small valid GGUF files: tiny Mixtral, Mamba, Jamba and Qwen2-MoE
 * checkpoints (`tests/fixtures/tiny_checkpoints.ts`) converted with Kiln's own
 * `convertToGguf` at f32, f16, q8_0 and q4_k, with the `tokenizer.ggml.*`
 * metadata of their tokenizer.json (`ggufTokenizerMetadata`), and hand-made
 * files (`encodeGguf`) holding every metadata value type and every tensor type
 * Kiln reads. Each seed is decoded into its fields, and mutations aim at the
 * format's structure: the magic and version, the counts, string lengths and
 * UTF-8, value type ids, array element types, lengths and nesting, bool bytes,
 * `general.alignment`, tensor dimension counts, dimensions, ggml type ids and
 * offsets, truncation at every section boundary, the model's metadata keys
 * (`<arch>.block_count`, `.expert_count`, …), the `tokenizer.ggml.*` keys,
 * tensor shapes and names against the architecture, non-finite weights — plus
 * flipped, inserted and deleted header bytes. Some mutations keep the file
 * valid on purpose (a tensor re-encoded in another type, experts split into
 * llama.cpp's older per-expert tensors, another alignment) so the accepting
 * side is exercised too.
 *
 * The oracle: each mutant goes through `GgufFile.open` (and a read of every
 * tensor), `openGgufModel` and `GgufCheckpoint.open` (every tensor read in HF
 * layout and as f32), `readModelConfig`, `modelTokenizer` (and encoding texts
 * with the tokenizer) and, for a fraction of the cases, `loadModel` on the CPU
 * device and one `forward`. Every step must succeed or throw a Kiln error (see
 * `../fuzz_loaders/judge.ts`: TypeError, RangeError, SyntaxError or
 * `Deno.errors.*`, with a message that starts with the file's path and carries
 * no engine phrase such as "Invalid typed array length"), within the time
 * bound; logits must be finite; a mutation the format forbids (a bad magic, a
 * bool byte of 2, a misaligned offset, data cut short, NaN weights, …) must be
 * refused somewhere on the way; and an accepted file must read back as it was
 * written (version, every key with its type and value, every tensor's name,
 * dims, type and offset), whenever the fields describe it exactly.
 *
 * Cases run in workers (`./gguf/worker.ts`, loaded as one), so a hang is
 * ended by terminating the worker. A failing case of several mutations is shrunk to
 * the one that fails alone, and failures are grouped by their kind and message.
 * Bugs found outside the GGUF reader are listed in {@linkcode KNOWN_ISSUES} and
 * counted apart from the failures until they are fixed (`--no-known` counts
 * them as failures).
 *
 * The code is in `./gguf/`: the file as fields (`codec.ts`), the seeds
 * (`seeds.ts`), the mutations (`mutations_header.ts`, `mutations_tensors.ts`,
 * `mutations_model.ts`, put together in `mutations.ts`), the oracle
 * (`oracle.ts`), the worker (`worker.ts`) and the campaign (`campaign.ts`);
 * this module is the command line, and re-exports the campaign's API.
 *
 * Usage (one case: `--case=N`, with the `--seed` of the run):
 *
 * ```sh
 * deno run -A tools/fuzz/gguf_loaders.ts [--cases=2000] [--minutes=M] [--seed=1]
 *   [--timeout-ms=2000] [--run-fraction=0.125] [--case=N] [--no-known] [--verbose]
 * ```
 *
 * @module
 */

import { formatGgufReport, runGgufFuzz } from "./gguf/campaign.ts";

export {
  formatGgufReport,
  type GgufFailure,
  type GgufFailureGroup,
  type GgufFuzzOptions,
  type GgufFuzzReport,
  KNOWN_ISSUES,
  runGgufFuzz,
} from "./gguf/campaign.ts";
export type { GgufCaseResult } from "./gguf/oracle.ts";
export { type GgufSeed, writeGgufSeeds } from "./gguf/seeds.ts";

if (import.meta.main) {
  const args = new Map(
    Deno.args.map((a) => {
      const [k, v] = a.replace(/^--/, "").split("=");
      return [k, v ?? "true"] as const;
    }),
  );
  const one = args.get("case");
  const verbose = args.has("verbose");
  const seed = Number(args.get("seed") ?? 1);
  const report = await runGgufFuzz({
    minutes: args.has("minutes") ? Number(args.get("minutes")) : undefined,
    cases: one !== undefined ? 1 : args.has("cases") ? Number(args.get("cases")) : undefined,
    first: one === undefined ? 0 : Number(one),
    seed,
    timeoutMs: Number(args.get("timeout-ms") ?? 2000),
    runFraction: args.has("run-fraction") ? Number(args.get("run-fraction")) : undefined,
    known: !args.has("no-known"),
    onCase: (index, r) => {
      if (verbose || one !== undefined) {
        console.log(`gguf #${index} ${r.outcome}${r.step ? ` at ${r.step}` : ""}: ${r.what}`);
        if (r.errorClass) console.log(`  ${r.errorClass}: ${r.message}`);
        if (r.failure) console.log(`  failure: ${r.failure}`);
      }
    },
  });
  for (const line of formatGgufReport(report, seed)) console.log(line);
  console.log(`gguf: ${report.failures.length} failures in ${report.seconds.toFixed(1)} s`);
  if (report.failures.length) Deno.exit(1);
}
