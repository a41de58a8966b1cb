/**
 * The `loaders` campaign of `deno task fuzz`: mutation fuzzing of the
 * safetensors reader (single files and sharded folders), config.json and
 * tokenizer.json (see `tools/fuzz_loaders.ts`). Flags: `--cases N` per loader
 * (default 10,000 without `--minutes`), `--loader a,b` to pick loaders
 * (safetensors, sharded, config, tokenizer), `--full` to mutate the whole real
 * tokenizer files too.
 *
 * @module
 */

import type { Campaign } from "../fuzz.ts";
import { formatCounts, type LoaderName, LOADERS, runLoaderFuzz } from "../fuzz_loaders.ts";

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
  about: "mutated safetensors files, sharded folders, config.json and tokenizer.json: " +
    "each loads, or fails with a Kiln error naming the file",
  flags: {
    cases: { type: "string", help: "cases per loader (default 10000 without --minutes)" },
    loader: { type: "string", help: `loaders to fuzz, comma-separated (${LOADERS.join(", ")})` },
    full: { type: "boolean", help: "also mutate the whole real tokenizer files (slow)" },
  },
  async run(o) {
    const loaders = typeof o.flags.loader === "string"
      ? o.flags.loader.split(",") as LoaderName[]
      : undefined;
    const unknown = loaders?.filter((l) => !LOADERS.includes(l));
    if (unknown?.length) {
      o.log(`loaders: unknown loader ${unknown.join(", ")} (known: ${LOADERS.join(", ")})`);
      return false;
    }
    const report = await runLoaderFuzz({
      loaders,
      cases: typeof o.flags.cases === "string" ? Number(o.flags.cases) : undefined,
      minutes: o.minutes,
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
    return report.failures.length === 0;
  },
};
