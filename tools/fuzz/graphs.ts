/**
 * The graph campaign: generate, run on GPU and CPU, compare, shrink what fails,
 * and count what was covered. Used by `deno task fuzz graphs` (long runs) and by
 * `tests/differential_test.ts` (a fixed set of seeds).
 *
 * @module
 */

import type { Graph } from "../../core/graph.ts";
import { type GpuDevice, requestDevice } from "../../runtime/device.ts";
import { OPS } from "../../ops/registry.ts";
import { checkGraph, type CheckOptions, type CheckResult, type Failure } from "./check.ts";
import { caseToDsl } from "./dsl.ts";
import { generateCase, SKIPPED_OPS } from "./generate.ts";
import { shrinkCase } from "./shrink.ts";
import { buildGraph, dataSpecs, type FuzzCase, opsOf } from "./spec.ts";

/** Builds and checks a case; a graph the builder refuses is an `invalid` failure. *
 * @example
 * ```ts ignore
 * const { failures } = await checkCase(generateCase(7, { f16: dev.caps.f16 }), dev);
 * ```
 */
export async function checkCase(c: FuzzCase, device: GpuDevice): Promise<CheckResult> {
  let graph: Graph;
  try {
    graph = buildGraph(c.graph);
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    return {
      failures: [{ kind: "invalid", run: 0, what: "build", detail }],
      kernels: 0,
      labels: [],
    };
  }
  return await checkGraph(graph, device, {
    data: dataSpecs(c.graph),
    inputsSeed: c.inputsSeed,
    runs: c.runs,
  });
}

/** A failing case, before and after shrinking, with the shrunk case as DSL. */
export interface FoundFailure {
  /** The case as generated. */
  readonly original: FuzzCase;
  /** The smallest case that still fails the same way. */
  readonly shrunk: FuzzCase;
  /** What the shrunk case's check reported. */
  readonly failures: readonly Failure[];
  /** The shrunk case as code to paste into a test. */
  readonly dsl: string;
}

/** Options of {@linkcode runGraphCampaign}. */
export interface GraphCampaignOptions {
  /** The GPU to test. */
  readonly device: GpuDevice;
  /** Seeds to run, in order (default: `seed`, `seed + 1`, …). */
  readonly seeds?: readonly number[];
  /** First seed when `seeds` is absent (default 1). */
  readonly seed?: number;
  /** Most graphs (default: all `seeds`, else unbounded when `minutes` is given, else 100). */
  readonly graphs?: number;
  /** Stop starting new graphs after this many minutes. */
  readonly minutes?: number;
  /** Shrink failing cases (default true). */
  readonly shrink?: boolean;
  /** Progress and failure lines (default: none). */
  readonly log?: (line: string) => void;
  /** A progress line every this many graphs (default 100). */
  readonly every?: number;
  /** Limits `device` was requested with, so printed failures ask for the same. */
  readonly limits?: Readonly<{ maxBindingSize?: number }>;
}

/** What a campaign did. */
export interface GraphCampaignReport {
  /** Graphs generated and checked. */
  graphs: number;
  /** Runs (a graph runs once or several times in a row). */
  runs: number;
  /** Kernels in the graphs' last plans, summed. */
  kernels: number;
  /** For each op, how many graphs used it. */
  readonly ops: Map<string, number>;
  /** For each kernel variant (label with sizes blanked), how many ran. */
  readonly variants: Map<string, number>;
  /** Failing cases. */
  readonly failures: FoundFailure[];
  /** Graphs the planner refused for a device limit (not failures), with the first reason. */
  refused: { count: number; example?: string };
  /** Seeds run, first and last. */
  firstSeed: number;
  /** Last seed run. */
  lastSeed: number;
  /** Wall time. */
  seconds: number;
}

/**
 * Runs the campaign: every failing case is shrunk (the same kind of failure must
 * persist) and reported as DSL through `log` as soon as it is found.
 *
 * @example
 * ```ts ignore
 * const report = await runGraphCampaign({ device: await requestDevice(), graphs: 50 });
 * console.log(formatReport(report));
 * ```
 */
export async function runGraphCampaign(
  options: GraphCampaignOptions,
): Promise<GraphCampaignReport> {
  const log = options.log ?? (() => {});
  const start = Date.now();
  const deadline = options.minutes === undefined ? Infinity : start + options.minutes * 60_000;
  const limit = options.graphs ??
    (options.seeds ? options.seeds.length : options.minutes !== undefined ? Infinity : 100);
  const first = options.seed ?? 1;
  const report: GraphCampaignReport = {
    graphs: 0,
    runs: 0,
    kernels: 0,
    ops: new Map(),
    variants: new Map(),
    failures: [],
    refused: { count: 0 },
    firstSeed: options.seeds?.[0] ?? first,
    lastSeed: options.seeds?.[0] ?? first,
    seconds: 0,
  };
  const every = options.every ?? 100;
  for (let i = 0; i < limit && Date.now() < deadline; i++) {
    const seed = options.seeds ? options.seeds[i] : first + i;
    if (seed === undefined) break;
    const c = generateCase(seed, { f16: options.device.caps.f16 });
    const result = await checkCase(c, options.device);
    report.graphs++;
    report.runs += c.runs.length;
    report.kernels += result.kernels;
    report.lastSeed = seed;
    for (const op of opsOf(c.graph)) report.ops.set(op, (report.ops.get(op) ?? 0) + 1);
    for (const l of result.labels) {
      const v = variantOf(l);
      report.variants.set(v, (report.variants.get(v) ?? 0) + 1);
    }
    const refused = result.failures.find((f) => f.kind === "refused");
    if (refused && result.failures.length === 1) {
      report.refused.count++;
      report.refused.example ??= `seed ${seed}: ${refused.detail}`;
    } else if (result.failures.length) {
      log(`seed ${seed}: ${result.failures[0].kind} in ${result.failures[0].what}; shrinking…`);
      const found = await shrinkFailure(c, result.failures, options);
      report.failures.push(found);
      log(found.dsl);
    }
    if (report.graphs % every === 0) {
      log(
        `${report.graphs} graphs, ${report.failures.length} failing, ${
          ((Date.now() - start) / 1000).toFixed(0)
        } s`,
      );
    }
  }
  report.seconds = (Date.now() - start) / 1000;
  return report;
}

async function shrinkFailure(
  c: FuzzCase,
  failures: readonly Failure[],
  options: GraphCampaignOptions,
): Promise<FoundFailure> {
  const kind = failures[0].kind;
  let last = failures;
  let shrunk = c;
  if (options.shrink !== false && kind !== "invalid") {
    ({ shrunk } = await shrinkCase(c, async (x) => {
      const r = await checkCase(x, options.device);
      if (r.failures.some((f) => f.kind === kind)) {
        last = r.failures;
        return true;
      }
      return false;
    }));
    if (shrunk === c) last = failures;
  }
  return { original: c, shrunk, failures: last, dsl: caseToDsl(shrunk, last, options.limits) };
}

/**
 * What a case exercises beyond its ops: f16, states, symbols (bound to 0 in some
 * run), several runs, a long axis (row-per-workgroup and chunked kernels).
 *
 * @example
 * ```ts ignore
 * caseFeatures(generateCase(7, { f16: true })); // Set { "add", "matmul", "f16", … }
 * ```
 */
export function caseFeatures(c: FuzzCase): Set<string> {
  const f = new Set<string>(opsOf(c.graph));
  for (const n of c.graph.nodes) {
    if (n.kind === "op") continue;
    if (n.dtype === "f16") f.add("f16");
    if (n.kind === "state") f.add("state");
    if (n.shape.some((d) => typeof d === "number" && d >= 127)) f.add("long axis");
    if (n.shape.some((d) => typeof d === "string")) f.add("symbolic");
  }
  if (c.runs.length > 1) f.add("several runs");
  if (c.runs.some((r) => Object.values(r.dims).includes(0))) f.add("symbol = 0");
  return f;
}

/**
 * The quick run's seeds: walking seeds 1, 2, … in order, first every seed that
 * adds a feature not yet covered (an op, f16, a state, a zero-sized symbol, …),
 * within the first `limit` seeds; then the other seeds in order up to `count`.
 * Deterministic: the same generator gives the same seeds, and a generator
 * change keeps the coverage. `exclude` holds seeds of reported, not yet fixed
 * failures.
 *
 * @example
 * ```ts ignore
 * const seeds = quickSeeds({ f16: true, count: 40 }); // covers every generated op
 * ```
 */
export function quickSeeds(
  options: { f16: boolean; count: number; limit?: number; exclude?: ReadonlySet<number> },
): number[] {
  const seen = new Set<string>();
  const seeds: number[] = [];
  const limit = options.limit ?? 500;
  for (let s = 1; s <= limit && seeds.length < options.count; s++) {
    if (options.exclude?.has(s)) continue;
    const fresh = [...caseFeatures(generateCase(s, { f16: options.f16 }))].filter((x) =>
      !seen.has(x)
    );
    if (!fresh.length) continue;
    fresh.forEach((x) => seen.add(x));
    seeds.push(s);
  }
  for (let s = 1; seeds.length < options.count; s++) {
    if (!seeds.includes(s) && !options.exclude?.has(s)) seeds.push(s);
  }
  return seeds.sort((a, b) => a - b);
}

/**
 * A kernel label with its sizes blanked (`matmul_rb4x7_wg1x1b_u1` →
 * `matmul_rb#x#_wg#x#b_u#`) and fused elementwise clusters as `fused`.
 */
function variantOf(label: string): string {
  return label.replace(/fused\([^)]*\)/, "fused").replace(/\d+/g, "#");
}

/** The report as text: counts, the ops covered (and left out), and every failure's DSL. *
 * @example
 * ```ts ignore
 * console.log(formatReport(await runGraphCampaign({ device, graphs: 20 })));
 * ```
 */
export function formatReport(r: GraphCampaignReport): string {
  const all = Object.keys(OPS);
  const covered = all.filter((op) => r.ops.has(op));
  const missed = all.filter((op) => !r.ops.has(op) && !(op in SKIPPED_OPS));
  const byKind = new Map<string, number>();
  for (const f of r.failures) {
    const k = f.failures[0]?.kind ?? "?";
    byKind.set(k, (byKind.get(k) ?? 0) + 1);
  }
  const lines = [
    `graphs tried: ${r.graphs} (seeds ${r.firstSeed}..${r.lastSeed}), runs: ${r.runs}, ` +
    `kernels: ${r.kernels}, ${r.seconds.toFixed(0)} s`,
    `ops covered: ${covered.length} of ${all.length} registered (${
      Object.keys(SKIPPED_OPS).length
    } skipped by design${missed.length ? `; not reached: ${missed.join(", ")}` : ""})`,
    `  ${covered.map((op) => `${op} ${r.ops.get(op)}`).join(", ")}`,
    `kernel variants run: ${r.variants.size}`,
    `  ${[...r.variants].sort((a, b) => b[1] - a[1]).map(([v, n]) => `${v} ${n}`).join(", ")}`,
    ...(r.refused.count
      ? [`refused for a device limit (not failures): ${r.refused.count}, e.g. ${r.refused.example}`]
      : []),
    `mismatches: ${r.failures.length}${
      byKind.size ? ` (${[...byKind].map(([k, n]) => `${k} ${n}`).join(", ")})` : ""
    }`,
  ];
  for (const f of r.failures) lines.push("", f.dsl);
  return lines.join("\n");
}

let shared: Promise<GpuDevice> | undefined;

/**
 * Checks a graph against the CPU reference on `device` (default: a device of its
 * own) and throws with every failure when they differ. This is the call the
 * printed DSL of a failing case ends with.
 *
 * @example
 * ```ts ignore
 * const g = new GraphBuilder();
 * const x0 = g.input("x0", ["T", 5]);
 * g.output("y0", x0.exp());
 * await assertMatchesReference(g.build(), {
 *   data: { x0: { kind: "uniform", lo: -2, hi: 2 } },
 *   inputsSeed: 1,
 *   runs: [{ dims: { T: 3 } }],
 * });
 * ```
 */
export async function assertMatchesReference(
  graph: Graph,
  options: CheckOptions,
  device?: GpuDevice,
): Promise<void> {
  const dev = device ?? await (shared ??= requestDevice());
  const { failures } = await checkGraph(graph, dev, options);
  if (failures.length) {
    throw new Error(
      `GPU differs from the CPU reference:\n${
        failures.map((f) => `  ${f.kind} in ${f.what} (run ${f.run}): ${f.detail}`).join("\n")
      }`,
    );
  }
}
