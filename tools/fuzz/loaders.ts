/**
 * The `loaders` campaign of `deno task fuzz`: mutation fuzzing of the
 * safetensors reader (single files and sharded folders), config.json and
 * tokenizer.json (see `tools/fuzz_loaders.ts`), and of GGUF files (see
 * `./gguf_loaders.ts`: header, metadata, tensor infos, model keys and
 * tokenizer, through to loading and running the model). Flags: `--cases N` per
 * loader (default 10,000 without `--minutes`), `--format gguf|safetensors|all`
 * (default all; `safetensors` is the four Hugging Face loaders), `--loader a,b`
 * to pick loaders (safetensors, sharded, config, tokenizer, gguf), `--full` to
 * mutate the whole real tokenizer files too.
 *
 * @module
 */

import type { Campaign } from "../fuzz.ts";
import { formatCounts, type LoaderName, LOADERS, runLoaderFuzz } from "../fuzz_loaders.ts";
import { formatGgufReport, runGgufFuzz } from "./gguf/campaign.ts";

/** The `--format` values. */
const FORMATS = ["all", "gguf", "safetensors"] as const;

/**
 * Loader fuzzing as a campaign.
 *
 * @example
 * ```ts ignore
 * import { loadersCampaign } from "./loaders.ts";
 * await loadersCampaign.run({ shrink: true, flags: { cases: "500" }, log: console.log });
 * ```
 */
export const loadersCampaign: Campaign = {
  name: "loaders",
  about: "mutated safetensors files, sharded folders, config.json, tokenizer.json and GGUF " +
    "files: each loads, or fails with a Kiln error naming the file",
  flags: {
    cases: { type: "string", help: "cases per loader (default 10000 without --minutes)" },
    format: {
      type: "string",
      help: "gguf, safetensors (the Hugging Face loaders) or all (default)",
    },
    loader: {
      type: "string",
      help: `loaders to fuzz, comma-separated (${[...LOADERS, "gguf"].join(", ")})`,
    },
    full: { type: "boolean", help: "also mutate the whole real tokenizer files (slow)" },
  },
  async run(o) {
    const format = typeof o.flags.format === "string" ? o.flags.format : "all";
    if (!(FORMATS as readonly string[]).includes(format)) {
      o.log(`loaders: unknown format ${format} (known: ${FORMATS.join(", ")})`);
      return false;
    }
    const picked = typeof o.flags.loader === "string" ? o.flags.loader.split(",") : undefined;
    const unknown = picked?.filter((l) => l !== "gguf" && !LOADERS.includes(l as LoaderName));
    if (unknown?.length) {
      o.log(
        `loaders: unknown loader ${unknown.join(", ")} (known: ${[...LOADERS, "gguf"].join(", ")})`,
      );
      return false;
    }
    const hf: LoaderName[] = format === "gguf"
      ? []
      : picked
      ? picked.filter((l) => l !== "gguf") as LoaderName[]
      : [...LOADERS];
    const gguf = format !== "safetensors" && (picked === undefined || picked.includes("gguf"));
    if (hf.length === 0 && !gguf) {
      o.log(`loaders: --loader ${picked?.join(",")} and --format ${format} leave nothing to run`);
      return false;
    }
    const cases = typeof o.flags.cases === "string" ? Number(o.flags.cases) : undefined;
    // --minutes is shared evenly by the loaders, GGUF counting as one.
    const share = (n: number) =>
      o.minutes === undefined ? undefined : o.minutes * n / (hf.length + (gguf ? 1 : 0));
    let failures = 0;
    if (hf.length) {
      const report = await runLoaderFuzz({
        loaders: hf,
        cases,
        minutes: share(hf.length),
        seed: o.seed,
        full: o.flags.full === true,
        onCase: (loader, index, r) => {
          if (r.outcome !== "failure") return;
          o.log(`FAIL loaders ${loader} #${index}: ${r.failure}\n  ${r.what}`);
          if (r.errorClass) o.log(`  ${r.errorClass}: ${r.message}`);
          o.log(
            `  replay: deno run -A tools/fuzz_loaders.ts --loader=${loader} --case=${index}` +
              (o.seed === undefined ? "" : ` --seed=${o.seed}`),
          );
        },
      });
      for (const [loader, c] of Object.entries(report.counts)) o.log(formatCounts(loader, c));
      o.log(`loaders: ${report.failures.length} failures in ${report.seconds.toFixed(1)} s`);
      failures += report.failures.length;
    }
    if (gguf) {
      // Failures are printed grouped and shrunk, once the run is over.
      const report = await runGgufFuzz({ cases, minutes: share(1), seed: o.seed });
      for (const line of formatGgufReport(report, o.seed ?? 1)) o.log(line);
      o.log(`gguf: ${report.failures.length} failures in ${report.seconds.toFixed(1)} s`);
      failures += report.failures.length;
    }
    return failures === 0;
  },
};
