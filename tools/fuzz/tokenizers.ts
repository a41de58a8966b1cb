/**
 * The `tokenizers` campaign of `deno task fuzz`: differential fuzzing of Kiln's
 * tokenizer (`app/tokenizer/`) against Hugging Face `tokenizers` (the npm binding of the
 * Rust library). Each seed gives a random but valid `tokenizer.json` (`tokenizers_gen.ts`:
 * byte-level BPE in the GPT-2 / NeoX / Qwen2 / Llama-3 styles, SentencePiece-style BPE
 * with Metaspace or Prepend + Replace, byte fallback, unk and fuse_unk, ignore_merges,
 * added tokens with every flag, TemplateProcessing; merges learned on random text), some
 * random texts (`tokenizers_texts.ts`) and id sequences; `tokenizers_check.ts` compares
 * load, encode and decode; a failing case is shrunk (`tokenizers_shrink.ts`) and printed
 * with its replay line and a `Deno.test` to paste.
 *
 *     deno task fuzz tokenizers --cases 2000
 *     deno task fuzz tokenizers --minutes 3 --seed 10000
 *
 * Hugging Face panics on a few inputs, and a panic in the binding aborts the whole
 * process: an lstrip whitespace token inside an earlier rstrip's run, a normalized added
 * token its normalizer empties, a Strip decoder with `stop` over a short token. The
 * generator keeps clear of them (see `tokenizers_render.ts`, `tokenizers_gen.ts`); should
 * a run still end in "panicked", the last progress line bounds the seed (replay the
 * range with `--seed S --cases N` to find it).
 *
 * @module
 */

import type { Campaign } from "../fuzz.ts";
import { caseIds, checkTokenizerCase, type Difference } from "./tokenizers_check.ts";
import {
  generateTokenizerCase,
  renderTokenizerJson,
  type TokenizerCase,
} from "./tokenizers_gen.ts";
import { shrinkTokenizerCase } from "./tokenizers_shrink.ts";

/**
 * A failing case: the first difference, the shrunk case and a test to paste.
 *
 * @example
 * ```ts ignore
 * const f: TokenizerFailure = report.failures[0];
 * console.log(f.test);
 * ```
 */
export interface TokenizerFailure {
  seed: number;
  difference: Difference;
  /** The shrunk case's difference. */
  shrunk: Difference;
  /** What the shrunk case's configuration holds: groups failures by likely cause. */
  cause: string;
  /** A `Deno.test` reproducing the shrunk case. */
  test: string;
}

/**
 * What a run did.
 *
 * @example
 * ```ts ignore
 * const r: TokenizerCampaignReport = await runTokenizerCampaign({ cases: 10 });
 * r.cases; // 10
 * ```
 */
export interface TokenizerCampaignReport {
  cases: number;
  /** Cases whose file both sides refused (the deliberate faults, mostly). */
  refused: number;
  /** Feature → how many cases had it. */
  features: Map<string, number>;
  failures: TokenizerFailure[];
  firstSeed: number;
  lastSeed: number;
  seconds: number;
}

/**
 * Options of {@linkcode runTokenizerCampaign}.
 *
 * @example
 * ```ts ignore
 * const o: TokenizerCampaignOptions = { seed: 1, cases: 300, shrink: false };
 * ```
 */
export interface TokenizerCampaignOptions {
  /** First seed (default 1). */
  seed?: number;
  /** Seeds to run (default 300, or unbounded with `minutes`). */
  cases?: number;
  /** Stop starting new cases after this many minutes. */
  minutes?: number;
  /** Shrink failures (default true). */
  shrink?: boolean;
  /** Seeds to skip (reported, not yet fixed). */
  exclude?: ReadonlySet<number>;
  /** Progress and failure lines. */
  log?: (line: string) => void;
}

/**
 * What a case exercises: its scheme, components, model flags and added-token flags.
 *
 * @example
 * ```ts
 * import { generateTokenizerCase } from "./tokenizers_gen.ts";
 * import { tokenizerCaseFeatures } from "./tokenizers.ts";
 * tokenizerCaseFeatures(generateTokenizerCase(1)).size > 3; // true
 * ```
 */
export function tokenizerCaseFeatures(c: TokenizerCase): Set<string> {
  const s = c.spec;
  const f = new Set<string>([s.kind]);
  const walk = (v: unknown, prefix: string): void => {
    if (Array.isArray(v)) v.forEach((x) => walk(x, prefix));
    else if (v && typeof v === "object") {
      const o = v as Record<string, unknown>;
      if (typeof o.type === "string") f.add(`${prefix}:${o.type}`);
      if (o.type === "Metaspace") f.add(`${prefix}:Metaspace/${o.prepend_scheme}/split=${o.split}`);
      if (o.type === "ByteLevel" && prefix === "pre") {
        f.add(`pre:ByteLevel/prefix=${o.add_prefix_space}/regex=${o.use_regex}`);
      }
      if (o.type === "Split") f.add(`pre:Split/${o.behavior}`);
      for (const x of Object.values(o)) walk(x, prefix);
    }
  };
  walk(s.normalizer, "norm");
  walk(s.pre_tokenizer, "pre");
  walk(s.decoder, "dec");
  if (s.post) f.add(`post:${s.post.kind}`);
  for (const [k, v] of Object.entries(s.model)) if (v) f.add(`model:${k}`);
  for (const a of s.added) {
    for (const k of ["special", "normalized", "lstrip", "rstrip", "single_word"] as const) {
      if (a[k]) f.add(`added:${k}`);
    }
    if (/^\s+$/.test(a.content)) f.add("added:whitespace");
  }
  if (s.fault) f.add(`fault:${s.fault}`);
  return f;
}

/** The shrunk case's configuration in a few words: what a cause has in common. */
function causeOf(c: TokenizerCase, d: Difference): string {
  const types = (v: unknown): string => {
    if (!v || typeof v !== "object") return "-";
    const o = v as Record<string, unknown>;
    const list = o.normalizers ?? o.pretokenizers ?? o.decoders;
    return Array.isArray(list) ? `[${list.map(types).join(",")}]` : String(o.type);
  };
  const s = c.spec;
  const model = Object.entries(s.model).filter(([, v]) => v).map(([k]) => k).join(",");
  const added = s.added.map((a) =>
    Object.entries(a).filter(([k, v]) => k !== "content" && v === true).map(([k]) => k).join("+") ||
    "plain"
  );
  return `${d.kind}: ${s.kind} norm=${types(s.normalizer)} pre=${types(s.pre_tokenizer)} dec=${
    types(s.decoder)
  } post=${s.post?.kind ?? "-"} model=${model || "-"} added=[${added.join(" ")}]${
    s.fault ? ` fault=${s.fault}` : ""
  }`;
}

/** The shrunk case as a test to paste into tests/tokenizer_hf_semantics_test.ts. */
function testOf(c: TokenizerCase, d: Difference): string {
  const json = renderTokenizerJson(c.spec);
  const isText = d.kind !== "decode_ids" && d.kind !== "decode_ids_skip" && d.kind !== "load";
  const input = d.kind === "load"
    ? {}
    : isText
    ? { texts: [c.texts[d.at]] }
    : { ids: [caseIds(c)[d.at]] };
  return [
    `// import { assertMatchesHf } from "../tools/fuzz/tokenizers_check.ts";`,
    `Deno.test("tokenizers differential: seed ${c.seed}, ${d.kind}", async () => {`,
    `  // ${d.detail.replaceAll("\n", " ")}`,
    `  await assertMatchesHf(${JSON.stringify(json)}, ${JSON.stringify(input)});`,
    `});`,
  ].join("\n");
}

/**
 * Runs seeds `seed`, `seed + 1`, …: each failure is shrunk and logged when found.
 *
 * @example
 * ```ts ignore
 * const report = await runTokenizerCampaign({ cases: 100, log: console.log });
 * console.log(formatTokenizerReport(report));
 * ```
 */
export async function runTokenizerCampaign(
  options: TokenizerCampaignOptions = {},
): Promise<TokenizerCampaignReport> {
  const log = options.log ?? (() => {});
  const start = Date.now();
  const deadline = options.minutes === undefined ? Infinity : start + options.minutes * 60_000;
  const limit = options.cases ?? (options.minutes === undefined ? 300 : Infinity);
  const first = options.seed ?? 1;
  const report: TokenizerCampaignReport = {
    cases: 0,
    refused: 0,
    features: new Map(),
    failures: [],
    firstSeed: first,
    lastSeed: first,
    seconds: 0,
  };
  for (let i = 0; i < limit && Date.now() < deadline; i++) {
    const seed = first + i;
    if (options.exclude?.has(seed)) continue;
    const c = generateTokenizerCase(seed);
    const diffs = await checkTokenizerCase(c);
    report.cases++;
    report.lastSeed = seed;
    for (const f of tokenizerCaseFeatures(c)) {
      report.features.set(f, (report.features.get(f) ?? 0) + 1);
    }
    if (c.spec.fault && diffs.length === 0) report.refused++;
    if (diffs.length === 0) {
      if (report.cases % 500 === 0) {
        log(
          `${report.cases} cases, ${report.failures.length} failing, ${
            (Date.now() - start) / 1000
          } s`,
        );
      }
      continue;
    }
    const d = diffs[0];
    let shrunk = c, at = d.at, last = d;
    if (options.shrink !== false) {
      ({ shrunk, at } = await shrinkTokenizerCase(c, d.kind, d.at, async (x) => {
        const found = (await checkTokenizerCase(x)).find((y) => y.kind === d.kind);
        if (found) last = found;
        return found?.at;
      }));
      last = (await checkTokenizerCase(shrunk)).find((y) => y.kind === d.kind) ?? d;
      at = last.at;
    }
    const failure: TokenizerFailure = {
      seed,
      difference: d,
      shrunk: last,
      cause: causeOf(shrunk, last),
      test: testOf(shrunk, { ...last, at }),
    };
    report.failures.push(failure);
    log(`FAIL tokenizers seed ${seed}: ${d.kind}: ${d.detail}`);
    log(`  shrunk: ${last.detail}`);
    log(`  cause: ${failure.cause}`);
    log(`  replay: deno task fuzz tokenizers --seed ${seed} --cases 1`);
    log(failure.test);
  }
  report.seconds = (Date.now() - start) / 1000;
  return report;
}

/**
 * The report as text: counts, features covered, and the failures grouped by cause.
 *
 * @example
 * ```ts ignore
 * console.log(formatTokenizerReport(await runTokenizerCampaign({ cases: 50 })));
 * ```
 */
export function formatTokenizerReport(r: TokenizerCampaignReport): string {
  const groups = new Map<string, number[]>();
  for (const f of r.failures) groups.set(f.cause, [...(groups.get(f.cause) ?? []), f.seed]);
  return [
    `tokenizers: ${r.cases} cases (seeds ${r.firstSeed}..${r.lastSeed}), ${r.refused} files ` +
    `refused by both, ${r.failures.length} differences, ${r.seconds.toFixed(1)} s`,
    `features: ${[...r.features].sort().map(([k, n]) => `${k} ${n}`).join(", ")}`,
    ...[...groups].map(([cause, seeds]) =>
      `  ${seeds.length}× ${cause} (seeds ${seeds.slice(0, 8).join(", ")}${
        seeds.length > 8 ? ", …" : ""
      })`
    ),
  ].join("\n");
}

/**
 * The campaign, as `deno task fuzz tokenizers` runs it.
 *
 * @example
 * ```ts ignore
 * import { tokenizersCampaign } from "./tokenizers.ts";
 * await tokenizersCampaign.run({ shrink: true, flags: { cases: "200" }, log: console.log });
 * ```
 */
export const tokenizersCampaign: Campaign = {
  name: "tokenizers",
  about: "random tokenizer.json files and texts, Kiln's tokenizer against Hugging Face " +
    "tokenizers (encode, decode, load), differences shrunk",
  flags: {
    cases: { type: "string", help: "cases (default 300 without --minutes; loaders: per loader)" },
  },
  async run(o) {
    const cases = typeof o.flags.cases === "string" ? Number(o.flags.cases) : undefined;
    const report = await runTokenizerCampaign({
      seed: o.seed,
      cases,
      minutes: o.minutes,
      shrink: o.shrink,
      log: o.log,
    });
    o.log(formatTokenizerReport(report));
    return report.failures.length === 0;
  },
};
