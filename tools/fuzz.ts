/**
 * The fuzz and differential campaigns, one task:
 *
 *     deno task fuzz graphs --graphs 2000        # random graphs, GPU vs CPU reference
 *     deno task fuzz graphs --minutes 30 --seed 5000
 *     deno task fuzz all --minutes 10            # every registered campaign, in turn
 *
 * Common options: `--minutes N` (stop starting new cases after N minutes),
 * `--seed S` (first seed; a case is reproduced by its seed alone), `--no-shrink`.
 * Each campaign adds its own (`graphs`: `--graphs N`, default 200 when no
 * `--minutes` is given). Exit status 1 when any campaign found a failure; each
 * failure is printed as code to paste into a test.
 *
 *     deno task fuzz loaders --cases 10000       # mutated checkpoint and tokenizer files
 *     deno task fuzz tokenizers --minutes 3      # random tokenizer.json files, Kiln vs tokenizers
 *     deno task fuzz llama-tokenize --llama DIR  # random texts, Kiln vs llama.cpp's tokenizer
 *     deno task fuzz chat-templates --python PY  # random Jinja templates, Kiln vs transformers
 *
 * Adding a campaign: write a {@linkcode Campaign} in `tools/fuzz/<name>.ts` and
 * add it to {@linkcode CAMPAIGNS} below; `all` runs it too.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { requestDevice } from "../runtime/device.ts";
import { formatReport, runGraphCampaign } from "./fuzz/mod.ts";
import { loadersCampaign } from "./fuzz/loaders.ts";
import { tokenizersCampaign } from "./fuzz/tokenizers.ts";
import { llamaTokenizeCampaign } from "./fuzz/llama_tokenize.ts";
import { chatTemplatesCampaign } from "./fuzz/chat_templates.ts";

/** Options every campaign gets, plus its own flags' values in `flags`. */
export interface CampaignOptions {
  /** Stop starting new cases after this many minutes. */
  readonly minutes?: number;
  /** First seed. */
  readonly seed?: number;
  /** Shrink failing cases (default true). */
  readonly shrink: boolean;
  /** Values of the campaign's own flags. */
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  /** Where progress and the report go. */
  readonly log: (line: string) => void;
}

/** One fuzz campaign: `deno task fuzz <name>`. */
export interface Campaign {
  /** Subcommand name. */
  readonly name: string;
  /** One line for `--help`. */
  readonly about: string;
  /** Flags of its own (`--graphs`), with their types and help. */
  readonly flags: Readonly<Record<string, { type: "string" | "boolean"; help: string }>>;
  /** Runs it; resolves false when it found a failure. */
  run(options: CampaignOptions): Promise<boolean>;
}

/** Random graphs on the GPU against the CPU reference (tools/fuzz/graphs.ts). */
export const graphsCampaign: Campaign = {
  name: "graphs",
  about: "random valid graphs, run on the GPU and the CPU reference, compared, shrunk",
  flags: {
    graphs: { type: "string", help: "number of graphs (default 200 without --minutes)" },
    "max-binding": {
      type: "string",
      help: "lower the device's maxStorageBufferBindingSize to this many bytes " +
        "(operands bound in segments)",
    },
  },
  async run(o) {
    const maxBindingSize = o.flags["max-binding"] === undefined
      ? undefined
      : Number(o.flags["max-binding"]);
    const device = await requestDevice(maxBindingSize ? { limits: { maxBindingSize } } : {});
    o.log(
      `graphs: ${device.adapterName}, f16 ${device.caps.f16}, maxBindingSize ${device.caps.maxBindingSize}`,
    );
    const count = o.flags.graphs === undefined ? undefined : Number(o.flags.graphs);
    const report = await runGraphCampaign({
      device,
      graphs: count ?? (o.minutes === undefined ? 200 : undefined),
      minutes: o.minutes,
      seed: o.seed,
      shrink: o.shrink,
      log: o.log,
      limits: maxBindingSize ? { maxBindingSize } : {},
    });
    o.log(formatReport(report));
    device.destroy();
    return report.failures.length === 0;
  },
};

/** The campaigns `deno task fuzz` knows, in the order `all` runs them. */
export const CAMPAIGNS: readonly Campaign[] = [
  graphsCampaign,
  loadersCampaign,
  tokenizersCampaign,
  llamaTokenizeCampaign,
  chatTemplatesCampaign,
];

function usage(): string {
  const lines = [
    "usage: deno task fuzz <campaign|all> [--minutes N] [--seed S] [--no-shrink] [campaign flags]",
    "campaigns:",
    ...CAMPAIGNS.map((c) => `  ${c.name.padEnd(10)} ${c.about}`),
    "flags:",
    ...CAMPAIGNS.flatMap((c) =>
      Object.entries(c.flags).map(([f, d]) => `  --${f.padEnd(12)} (${c.name}) ${d.help}`)
    ),
  ];
  return lines.join("\n");
}

/** Parses `args` and runs the chosen campaigns; returns the exit status. */
export async function main(args: readonly string[]): Promise<number> {
  const options: Record<string, { type: "string" | "boolean" }> = {
    minutes: { type: "string" },
    seed: { type: "string" },
    "no-shrink": { type: "boolean" },
    help: { type: "boolean" },
  };
  for (const c of CAMPAIGNS) {
    for (const [f, d] of Object.entries(c.flags)) options[f] = { type: d.type };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true });
  } catch (e) {
    console.error(`${(e as Error).message}\n${usage()}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const which = positionals[0] ?? "graphs";
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const chosen = which === "all" ? CAMPAIGNS : CAMPAIGNS.filter((c) => c.name === which);
  if (!chosen.length) {
    console.error(`fuzz: no campaign "${which}"\n${usage()}`);
    return 2;
  }
  const num = (v: unknown, what: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) {
      throw new RangeError(`--${what} must be a number >= 0, got ${v}`);
    }
    return n;
  };
  let ok = true;
  for (const c of chosen) {
    ok = await c.run({
      minutes: num(values.minutes, "minutes"),
      seed: num(values.seed, "seed"),
      shrink: !values["no-shrink"],
      flags: values,
      log: (line) => console.log(line),
    }) && ok;
  }
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
