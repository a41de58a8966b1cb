/**
 * The `chat-templates` campaign of `deno task fuzz`: differential fuzzing of Kiln's Jinja
 * interpreter for chat templates (`app/chat_template/`) against transformers' own
 * rendering. Each seed gives a random template and context (`chat_templates_gen.ts`:
 * loops over messages dispatching on the role, namespaces, macros, tool calls through
 * `|tojson`, string methods and filters, tests, whitespace control under `trim_blocks`
 * and `lstrip_blocks`, …); the cases go in batches to one Python process running the
 * oracle `tools/chat_template_reference.py` (`chat_templates_oracle.ts`) and one by one
 * to Kiln; a disagreement is shrunk (`chat_templates_shrink.ts`) and printed as a case
 * ready to paste into `tests/fixtures/chat_templates/cases.json` (its `want` is what
 * `expected.json` would hold).
 *
 *     deno task fuzz chat-templates --python /tmp/tfenv/bin/python --cases 3000
 *     deno task fuzz chat-templates --python python3 --minutes 8 --seed 100000
 *
 * Left out on purpose (known, documented differences): integers at or past 2^53 and
 * integer-valued floats in contexts, and `lipsum`.
 *
 * @module
 */

import type { Campaign } from "../fuzz.ts";
import { type ChatTemplateCase, generateChatTemplateCase } from "./chat_templates_gen.ts";
import {
  compareOutcomes,
  type Mismatch,
  type Outcome,
  PythonOracle,
  runKiln,
} from "./chat_templates_oracle.ts";
import { shrinkChatTemplateCase } from "./chat_templates_shrink.ts";

/**
 * A failing case: its first mismatch, the shrunk case and its mismatch, and the case
 * as JSON to paste.
 *
 * @example
 * ```ts ignore
 * const f: ChatTemplateFailure = report.failures[0];
 * console.log(f.json);
 * ```
 */
export interface ChatTemplateFailure {
  seed: number;
  mismatch: Mismatch;
  shrunk: ChatTemplateCase;
  shrunkMismatch: Mismatch;
  /** `{name, template, context, want}` of the shrunk case, `want` being Python's result. */
  json: string;
}

/**
 * What a run did.
 *
 * @example
 * ```ts ignore
 * const r: ChatTemplateCampaignReport = await runChatTemplateCampaign({ python: "python3", cases: 10 });
 * r.cases; // 10
 * ```
 */
export interface ChatTemplateCampaignReport {
  cases: number;
  /** Cases Python rendered; the others raised (by class) or the oracle refused. */
  rendered: number;
  errors: Map<string, number>;
  refused: number;
  /** Feature (tag, filter, test, method, whitespace control) → cases using it. */
  features: Map<string, number>;
  failures: ChatTemplateFailure[];
  /** Failures past `maxShrink` or `perSignature`, by signature: counted, not shrunk. */
  unshrunk: Map<string, number[]>;
  firstSeed: number;
  lastSeed: number;
  seconds: number;
}

/**
 * Options of {@linkcode runChatTemplateCampaign}.
 *
 * @example
 * ```ts
 * import type { ChatTemplateCampaignOptions } from "./chat_templates.ts";
 * const o: ChatTemplateCampaignOptions = { python: "python3", seed: 1, cases: 500 };
 * ```
 */
export interface ChatTemplateCampaignOptions {
  /** A Python with transformers and jinja2. */
  python: string;
  /** First seed (default 1). */
  seed?: number;
  /** Seeds to run (default 1000, or unbounded with `minutes`). */
  cases?: number;
  /** Stop starting new batches after this many minutes. */
  minutes?: number;
  /** Shrink failures (default true). */
  shrink?: boolean;
  /** Most failures to shrink (default 40); later ones are counted by signature. */
  maxShrink?: number;
  /**
   * Most failures shrunk per signature (default 4; four times as many for "output
   * differs", which many causes share); later ones are counted.
   */
  perSignature?: number;
  /** Seconds one shrink may take (default 90). */
  shrinkSeconds?: number;
  /** Cases per Python round trip (default 250). */
  batch?: number;
  /** Progress and failure lines. */
  log?: (line: string) => void;
}

/**
 * What a template uses: tags, filters, tests, methods, whitespace control.
 *
 * @example
 * ```ts
 * import { templateFeatures } from "./chat_templates.ts";
 * [...templateFeatures("{%- if x is none %}{{ y|trim }}{% endif %}")].sort();
 * // ["filter:trim", "tag:endif", "tag:if", "test:none", "ws:{%-"]
 * ```
 */
export function templateFeatures(t: string): Set<string> {
  const f = new Set<string>();
  for (const m of t.matchAll(/\{%[-+]?\s*(\w+)/g)) f.add(`tag:${m[1]}`);
  // Inside tags only, string literals blanked: `'<|im_end|>'` names no filter.
  t = (t.match(/\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}/g) ?? []).join(" ")
    .replace(/'(?:[^'\\]|\\[\s\S])*'|"(?:[^"\\]|\\[\s\S])*"/g, "''");
  for (const m of t.matchAll(/\|\s*(\w+)/g)) f.add(`filter:${m[1]}`);
  for (const m of t.matchAll(/\bis\s+(?:not\s+)?(\w+)/g)) f.add(`test:${m[1]}`);
  for (const m of t.matchAll(/\.(\w+)\(/g)) f.add(`method:${m[1]}`);
  for (const m of t.matchAll(/\{%[-+]|[-+]%\}|\{\{-|-\}\}/g)) f.add(`ws:${m[0]}`);
  return f;
}

/** The shrunk case as JSON to paste, with Python's result as `want`. */
function caseJson(c: ChatTemplateCase, python: Outcome): string {
  const want = python.error !== undefined ? { error: python.error } : { output: python.output };
  return JSON.stringify({ name: c.name, template: c.template, context: c.context, want });
}

function show(o: Outcome): string {
  const s = o.error !== undefined ? `raises ${o.error}` : JSON.stringify(o.output);
  return s.length > 400 ? s.slice(0, 400) + "…" : s;
}

/**
 * Renders each case with both sides; the mismatches by index.
 *
 * @example
 * ```ts ignore
 * const m = await checkChatTemplateCases(oracle, [generateChatTemplateCase(1)]);
 * ```
 */
export async function checkChatTemplateCases(
  oracle: PythonOracle,
  cases: readonly ChatTemplateCase[],
): Promise<{ python: Outcome[]; mismatches: (Mismatch | undefined)[] }> {
  const python = await oracle.render(cases);
  const mismatches = cases.map((c, i) => compareOutcomes(python[i], runKiln(c)));
  return { python, mismatches };
}

/**
 * Runs seeds `seed`, `seed + 1`, … in batches; each failure is shrunk and logged when
 * found.
 *
 * @example
 * ```ts ignore
 * const report = await runChatTemplateCampaign({ python: "python3", cases: 500, log: console.log });
 * console.log(formatChatTemplateReport(report));
 * ```
 */
export async function runChatTemplateCampaign(
  options: ChatTemplateCampaignOptions,
): Promise<ChatTemplateCampaignReport> {
  const log = options.log ?? (() => {});
  const start = Date.now();
  const deadline = options.minutes === undefined ? Infinity : start + options.minutes * 60_000;
  const limit = options.cases ?? (options.minutes === undefined ? 1000 : Infinity);
  const first = options.seed ?? 1;
  const batchSize = options.batch ?? 250;
  const maxShrink = options.maxShrink ?? 40;
  const perSignature = options.perSignature ?? 4;
  const report: ChatTemplateCampaignReport = {
    cases: 0,
    rendered: 0,
    errors: new Map(),
    refused: 0,
    features: new Map(),
    failures: [],
    unshrunk: new Map(),
    firstSeed: first,
    lastSeed: first,
    seconds: 0,
  };
  const oracle = new PythonOracle(options.python);
  try {
    for (let done = 0; done < limit && Date.now() < deadline;) {
      const n = Math.min(batchSize, limit - done);
      const cases = Array.from({ length: n }, (_, i) => generateChatTemplateCase(first + done + i));
      done += n;
      const { python, mismatches } = await checkChatTemplateCases(oracle, cases);
      for (let i = 0; i < n; i++) {
        const c = cases[i], p = python[i], mm = mismatches[i];
        report.cases++;
        report.lastSeed = c.seed;
        if (p.oracle !== undefined) report.refused++;
        else if (p.error !== undefined) {
          const cls = p.error.split(":")[0];
          report.errors.set(cls, (report.errors.get(cls) ?? 0) + 1);
        } else report.rendered++;
        for (const f of templateFeatures(c.template)) {
          report.features.set(f, (report.features.get(f) ?? 0) + 1);
        }
        if (!mm) continue;
        const same = report.failures.filter((f) => f.mismatch.signature === mm.signature).length;
        if (
          report.failures.length >= maxShrink ||
          same >= (mm.signature === "output differs" ? 4 : 1) * perSignature
        ) {
          report.unshrunk.set(mm.signature, [...(report.unshrunk.get(mm.signature) ?? []), c.seed]);
          log(`FAIL chat-templates seed ${c.seed}: ${mm.signature} (not shrunk)`);
          continue;
        }
        let shrunk = c, last = mm;
        if (options.shrink !== false) {
          shrunk = await shrinkChatTemplateCase(c, async (batch) => {
            const r = await checkChatTemplateCases(oracle, batch);
            return r.mismatches.map((x) => x?.signature === mm.signature);
          }, Date.now() + (options.shrinkSeconds ?? 90) * 1000);
          last = (await checkChatTemplateCases(oracle, [shrunk])).mismatches[0] ?? mm;
        }
        const failure: ChatTemplateFailure = {
          seed: c.seed,
          mismatch: mm,
          shrunk,
          shrunkMismatch: last,
          json: caseJson(shrunk, last.python),
        };
        report.failures.push(failure);
        log(`FAIL chat-templates seed ${c.seed}: ${mm.signature}`);
        log(
          `  ${options.shrink === false ? "" : "shrunk "}template: ${
            JSON.stringify(shrunk.template)
          }`,
        );
        log(`  python: ${show(last.python)}`);
        log(`  kiln:   ${show(last.kiln)}`);
        log(`  replay: deno task fuzz chat-templates --python PY --seed ${c.seed} --cases 1`);
        log(`  case: ${failure.json}`);
      }
      log(
        `${report.cases} cases, ${
          report.failures.length + [...report.unshrunk.values()].flat().length
        } ` +
          `failing, ${((Date.now() - start) / 1000).toFixed(0)} s`,
      );
    }
  } finally {
    await oracle.close();
  }
  report.seconds = (Date.now() - start) / 1000;
  return report;
}

/**
 * The report as text: counts, what Python did, features covered, and the failures
 * grouped by signature and shrunk template.
 *
 * @example
 * ```ts ignore
 * console.log(formatChatTemplateReport(await runChatTemplateCampaign({ python: "python3" })));
 * ```
 */
export function formatChatTemplateReport(r: ChatTemplateCampaignReport): string {
  const groups = new Map<string, number[]>();
  for (const f of r.failures) {
    const k = `${f.shrunkMismatch.signature}: ${JSON.stringify(f.shrunk.template)}`;
    groups.set(k, [...(groups.get(k) ?? []), f.seed]);
  }
  for (const [sig, seeds] of r.unshrunk) groups.set(`${sig} (not shrunk)`, seeds);
  const total = r.failures.length + [...r.unshrunk.values()].flat().length;
  const errors = [...r.errors].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`);
  return [
    `chat-templates: ${r.cases} cases (seeds ${r.firstSeed}..${r.lastSeed}), ${total} mismatches, ` +
    `${r.seconds.toFixed(1)} s`,
    `python: ${r.rendered} rendered, ${errors.join(", ")}${
      r.refused ? `, ${r.refused} refused by the oracle` : ""
    }`,
    `features: ${[...r.features].sort().map(([k, n]) => `${k} ${n}`).join(", ")}`,
    ...[...groups].map(([k, seeds]) =>
      `  ${seeds.length}× ${k} (seeds ${seeds.slice(0, 8).join(", ")}${
        seeds.length > 8 ? ", …" : ""
      })`
    ),
  ].join("\n");
}

/**
 * The campaign, as `deno task fuzz chat-templates` runs it.
 *
 * @example
 * ```ts ignore
 * import { chatTemplatesCampaign } from "./chat_templates.ts";
 * await chatTemplatesCampaign.run({
 *   shrink: true,
 *   flags: { python: "/tmp/tfenv/bin/python", cases: "200" },
 *   log: console.log,
 * });
 * ```
 */
export const chatTemplatesCampaign: Campaign = {
  name: "chat-templates",
  about: "random Jinja chat templates and contexts, Kiln's interpreter against transformers' " +
    "rendering (tools/chat_template_reference.py), mismatches shrunk",
  flags: {
    python: {
      type: "string",
      help: "a Python with transformers and jinja2 (chat-templates; default python3)",
    },
  },
  async run(o) {
    const cases = typeof o.flags.cases === "string" ? Number(o.flags.cases) : undefined;
    const python = typeof o.flags.python === "string" ? o.flags.python : "python3";
    let report;
    try {
      report = await runChatTemplateCampaign({
        python,
        seed: o.seed,
        cases,
        minutes: o.minutes,
        shrink: o.shrink,
        log: o.log,
      });
    } catch (e) {
      // No oracle (no Python, no transformers): say so, and count it as a failed run.
      o.log(e instanceof Error ? e.message : String(e));
      return false;
    }
    o.log(formatChatTemplateReport(report));
    return report.failures.length === 0 && report.unshrunk.size === 0;
  },
};
