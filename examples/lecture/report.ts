/**
 * Where the lecture experiments put their results: an SVG plot and a
 * markdown table per experiment, under `docs/lecture/` by default (`--out DIR`
 * elsewhere), and a `--quick` flag for the ≤ 1 minute smoke run.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** Command-line options every experiment takes. */
export interface ExperimentArgs {
  /** Small sizes: a smoke run of at most a minute. */
  quick: boolean;
  /** Output folder. */
  out: string;
}

/** Parses `--quick` and `--out DIR` (default `docs/lecture`). */
export function experimentArgs(args: readonly string[] = Deno.args): ExperimentArgs {
  const { values } = parseArgs({
    args: [...args],
    options: { quick: { type: "boolean" }, out: { type: "string" } },
  });
  return { quick: values.quick === true, out: values.out ?? "docs/lecture" };
}

/** A markdown table from a header and rows. */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n") + "\n";
}

/** Writes `name.svg` and `name.md` under the output folder and says where. */
export async function writeResults(
  args: ExperimentArgs,
  name: string,
  files: { svg?: string; md: string },
): Promise<void> {
  await Deno.mkdir(args.out, { recursive: true });
  if (files.svg) await Deno.writeTextFile(`${args.out}/${name}.svg`, files.svg);
  await Deno.writeTextFile(`${args.out}/${name}.md`, files.md);
  console.log(`\nwrote ${args.out}/${name}.md${files.svg ? ` and ${name}.svg` : ""}`);
}
