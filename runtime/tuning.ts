/**
 * Measured kernel choice for `matmul`: a bounded autotuner that, per distinct
 * matmul problem, compiles and times a small candidate set of tiles on a
 * device, and the graph rewrite that applies the choices (each tuned `matmul`
 * node gets its `tile` and `tileReason` attributes, so the plan's kernel label
 * and `choice` show the tuned tile and why). Storing the choices per device is
 * the app's (`app/tuning/cache.ts`).
 *
 * The rule: each candidate costs its compile time (pipeline creation and the
 * driver's first-dispatch compile, wall time of the first `prepare`) plus
 * `expectedRuns` × its run time (the median of `runs` runs: GPU time of the
 * matmul kernel from timestamp queries where the device has them, else the
 * wall time of a whole run, upload and readback included, which is the same
 * for every candidate); the cheapest wins. The op's own choice ("default") is
 * always measured first; the other candidates are tried while the budget lasts.
 *
 * On the `gpu` target the workgroup-tiled GEMM is the default and cannot be
 * named by a tile, so there the candidates are that default against the
 * portable register tiles.
 *
 * @module
 */

import type { Dim } from "../core/shape.ts";
import type { Graph, Node } from "../core/graph.ts";
import { GraphBuilder } from "../compiler/builder.ts";
import { parseTile } from "../ops/matmul/tiles.ts";
import { targetOf } from "../ops/targets.ts";
import type { GpuDevice } from "./device.ts";
import { compile } from "./executable.ts";

/**
 * One matmul problem: what a tile choice depends on.
 *
 * @example
 * ```ts
 * import type { MatmulProblem } from "./tuning.ts";
 * const p: MatmulProblem = {
 *   batch: 1, M: 64, N: 128, K: 256, transA: false, transB: true, dtype: "f32", bShared: true,
 * };
 * ```
 */
export interface MatmulProblem {
  /** Batch count (product of the output's leading dimensions). */
  readonly batch: number;
  /** Rows of the product. */
  readonly M: number;
  /** Columns of the product. */
  readonly N: number;
  /** Reduction length. */
  readonly K: number;
  /** A is stored [..., K, M]. */
  readonly transA: boolean;
  /** B is stored [..., N, K]. */
  readonly transB: boolean;
  /** Element type of the product. */
  readonly dtype: "f32" | "f16";
  /** B is one matrix shared by every batch (a weight). */
  readonly bShared: boolean;
}

/**
 * The key of a problem in tuning results and caches, e.g. `f32 b1 64x128x256 nt shared`.
 *
 * @example
 * ```ts
 * import { problemKey } from "./tuning.ts";
 * problemKey({ batch: 1, M: 64, N: 128, K: 256, transA: false, transB: true, dtype: "f32", bShared: true });
 * // "f32 b1 64x128x256 nt shared"
 * ```
 */
export function problemKey(p: MatmulProblem): string {
  return `${p.dtype} b${p.batch} ${p.M}x${p.N}x${p.K} ${p.transA ? "t" : "n"}${
    p.transB ? "t" : "n"
  }${p.bShared ? " shared" : ""}`;
}

/** The problem a `matmul` node computes at `dims`, or undefined where a dim is unbound. */
function nodeProblem(
  graph: Graph,
  node: Node,
  dims: Record<string, number>,
): MatmulProblem | undefined {
  const resolve = (s: readonly Dim[]) => s.map((d) => typeof d === "number" ? d : dims[d]);
  const a = resolve(graph.values[node.inputs[0]].shape);
  const b = resolve(graph.values[node.inputs[1]].shape);
  const outV = graph.values[node.outputs[0]];
  const out = resolve(outV.shape);
  if ([...a, ...b, ...out].some((d) => d === undefined)) return undefined;
  const transA = node.attrs.transA === true, transB = node.attrs.transB === true;
  const r = out.length;
  const batch = out.slice(0, r - 2).reduce((x, y) => x * y, 1);
  const bBatch = b.slice(0, b.length - 2).reduce((x, y) => x * y, 1);
  const dtype = outV.dtype === "f16" ? "f16" : "f32";
  if (outV.dtype !== "f16" && outV.dtype !== "f32") return undefined;
  return {
    batch,
    M: out[r - 2],
    N: out[r - 1],
    K: transA ? a[a.length - 2] : a[a.length - 1],
    transA,
    transB,
    dtype,
    bShared: bBatch === 1,
  };
}

/**
 * The distinct matmul problems of a graph at `dims` (nodes that force a `tile`
 * or have an unbound dimension are left out).
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../compiler/builder.ts";
 * import { matmulProblems } from "./tuning.ts";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 16]).matmul(g.param("w", [16, 8])));
 * matmulProblems(g.build(), { T: 4 }).length; // 1
 * ```
 */
export function matmulProblems(graph: Graph, dims: Record<string, number> = {}): MatmulProblem[] {
  const seen = new Map<string, MatmulProblem>();
  for (const n of graph.nodes) {
    if (n.op !== "matmul" || n.attrs.tile !== undefined) continue;
    const p = nodeProblem(graph, n, dims);
    if (p && p.batch * p.M * p.N * p.K > 0) seen.set(problemKey(p), p);
  }
  return [...seen.values()];
}

/**
 * One candidate's measurement.
 *
 * @example
 * ```ts
 * import type { TileTiming } from "./tuning.ts";
 * const t: TileTiming = { tile: "rb8x16_wg1x16b_u1", compileMs: 250, runMs: 3.1 };
 * ```
 */
export interface TileTiming {
  /** The kernel's label without `matmul_` (the default's is what the op chose). */
  readonly tile: string;
  /** Compile time in ms (pipeline creation and first-dispatch compile). */
  readonly compileMs: number;
  /** Median run time in ms. */
  readonly runMs: number;
}

/**
 * The tuner's choice for one problem.
 *
 * @example
 * ```ts
 * import type { TuneChoice } from "./tuning.ts";
 * const c: TuneChoice = {
 *   tile: "rb16x16_wg1x16b_u1", reason: "tuned: 2.0 ms vs default 3.0 ms", timings: [],
 *   timing: "gpu",
 * };
 * ```
 */
export interface TuneChoice {
  /** The tile to force, or undefined when the op's default won. */
  readonly tile?: string;
  /** Why, for the plan's `choice.reason`. */
  readonly reason: string;
  /** Every candidate measured, the default first. */
  readonly timings: readonly TileTiming[];
  /** `"gpu"`: timestamp queries; `"wall"`: wall time of whole runs. */
  readonly timing: "gpu" | "wall";
}

/**
 * Options of {@linkcode tuneMatmul}.
 *
 * @example
 * ```ts
 * import type { TuneOptions } from "./tuning.ts";
 * const o: TuneOptions = { budgetMs: 20_000, maxCandidates: 3, expectedRuns: 1000 };
 * ```
 */
export interface TuneOptions {
  /** Tile names to try besides the default (default: {@linkcode defaultCandidates}). */
  candidates?: readonly string[];
  /** Total time budget in ms; no candidate starts after it (default 60 000). */
  budgetMs?: number;
  /** At most this many candidates per problem besides the default (default 4). */
  maxCandidates?: number;
  /** Runs the choice is amortised over (default 100). */
  expectedRuns?: number;
  /** Timed runs per candidate, median taken (default 3). */
  runs?: number;
}

/**
 * The tiles tried by default on a device class: register blocks of 8 to 32
 * rows by 16 columns, 16 invocations per workgroup.
 *
 * @example
 * ```ts
 * import { defaultCandidates } from "./tuning.ts";
 * defaultCandidates("cpu_raster")[0]; // "rb8x16_wg1x16b_u1"
 * ```
 */
export function defaultCandidates(target: "cpu_raster" | "gpu"): string[] {
  const rows = target === "cpu_raster" ? [8, 16, 24, 32] : [8, 16];
  return rows.map((r) => `rb${r}x16_wg1x16b_u1`);
}

const ms = (x: number) => x.toFixed(x < 10 ? 2 : 1);

/** Compiles and times one candidate (`tile` undefined: the op's default). */
async function measure(
  device: GpuDevice,
  p: MatmulProblem,
  tile: string | undefined,
  runs: number,
): Promise<TileTiming> {
  const g = new GraphBuilder();
  const lead = p.batch > 1 ? [p.batch] : [];
  const aShape = [...lead, ...(p.transA ? [p.K, p.M] : [p.M, p.K])];
  const bShape = [...(p.bShared ? [] : lead), ...(p.transB ? [p.N, p.K] : [p.K, p.N])];
  const a = g.input("a", aShape, p.dtype);
  const b = g.param("b", bShape, p.dtype);
  const attrs = { transA: p.transA, transB: p.transB, ...(tile ? { tile } : {}) };
  const [y] = g.apply("matmul", [a, b], attrs);
  g.output("y", y);
  const size = (s: number[]) => s.reduce((x, z) => x * z, 1);
  const bData = new Float32Array(size(bShape)).fill(0.01);
  const aData = { a: new Float32Array(size(aShape)).fill(1) };
  const exe = compile(g.build(), device, { params: { b: bData } });
  try {
    let t = performance.now();
    await exe.prepare(aData);
    const compileMs = performance.now() - t;
    const label = exe.plan({}).kernels.find((k) => k.op === "matmul")?.label ?? "matmul";
    const times: number[] = [];
    for (let r = 0; r < runs; r++) {
      if (device.timestamps) {
        const { kernels } = await exe.profile(aData);
        times.push(kernels.reduce((s, k) => s + k.ns, 0) / 1e6);
      } else {
        t = performance.now();
        await exe.run(aData);
        times.push(performance.now() - t);
      }
    }
    times.sort((x, z) => x - z);
    return { tile: label.replace(/^matmul_/, ""), compileMs, runMs: times[times.length >> 1] };
  } finally {
    exe.dispose();
  }
}

/**
 * Tunes the tile of each problem on `device` (see the module doc for the rule
 * and the bound): problem key → choice. A problem the budget left no time for
 * is absent.
 *
 * @example
 * ```ts ignore
 * import { requestDevice } from "./device.ts";
 * import { tuneMatmul } from "./tuning.ts";
 * const dev = await requestDevice();
 * const problem = { batch: 1, M: 64, N: 64, K: 64, transA: false, transB: false, dtype: "f32", bShared: true } as const;
 * const choices = await tuneMatmul(dev, [problem], { budgetMs: 10_000 });
 * console.log(choices.get("f32 b1 64x64x64 nn shared")?.reason);
 * ```
 */
export async function tuneMatmul(
  device: GpuDevice,
  problems: readonly MatmulProblem[],
  options: TuneOptions = {},
): Promise<Map<string, TuneChoice>> {
  const target = targetOf(device.caps);
  const budgetMs = options.budgetMs ?? 60_000;
  const maxCandidates = options.maxCandidates ?? 4;
  const expectedRuns = options.expectedRuns ?? 100;
  const runs = Math.max(1, options.runs ?? 3);
  const names = options.candidates ?? defaultCandidates(target);
  for (const n of names) {
    if (!parseTile(n)) throw new RangeError(`tuneMatmul: "${n}" is not a tile name`);
  }
  const start = performance.now();
  const out = new Map<string, TuneChoice>();
  const cost = (t: TileTiming) => t.compileMs + expectedRuns * t.runMs;
  for (const p of problems) {
    const key = problemKey(p);
    if (out.has(key) || performance.now() - start > budgetMs) continue;
    const timings = [await measure(device, p, undefined, runs)];
    // Tiles with more rows per invocation than M only pad; the smallest stays.
    const fit = names.filter((n, i) => i === 0 || parseTile(n)!.rowsPerThread <= p.M);
    for (const name of fit.slice(0, maxCandidates)) {
      if (performance.now() - start > budgetMs) break;
      if (timings.some((t) => t.tile === name)) continue;
      timings.push(await measure(device, p, name, runs));
    }
    const def = timings[0];
    const best = timings.reduce((x, y) => cost(y) < cost(x) ? y : x);
    const how = device.timestamps ? "gpu" : "wall";
    const said = (t: TileTiming) =>
      `${t.tile} ${ms(t.runMs)} ms/run + ${ms(t.compileMs)} ms compile`;
    const reason = best === def
      ? `tuned (${how} time, ${expectedRuns} runs): default ${
        said(def)
      } was fastest of ${timings.length}`
      : `tuned (${how} time, ${expectedRuns} runs): ${said(best)} vs default ${said(def)}`;
    out.set(key, {
      ...(best === def ? {} : { tile: best.tile }),
      reason,
      timings,
      timing: how,
    });
  }
  return out;
}

/**
 * A copy of `graph` whose `matmul` nodes (those without a forced `tile`) get
 * the tuned tile of their problem at `dims` and its reason: compile the copy.
 * Nodes whose default won get only the reason.
 *
 * A tile is a node attribute, so it then holds at every binding of the
 * symbolic dims, not only at `dims` (a tile tuned at T = 64 also forces the
 * tiled kernel at T = 1, where the default would take the decode GEMV): tune
 * and apply per binding, e.g. to one prefill chunk graph at a time.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../compiler/builder.ts";
 * import { applyTuning } from "./tuning.ts";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [8, 16]).matmul(g.param("w", [16, 8])));
 * const tuned = applyTuning(g.build(), new Map([
 *   ["f32 b1 8x8x16 nn shared", { tile: "rb8x8_wg1x1b_u1", reason: "tuned" }],
 * ]));
 * tuned.nodes.find((n) => n.op === "matmul")?.attrs.tile; // "rb8x8_wg1x1b_u1"
 * ```
 */
export function applyTuning(
  graph: Graph,
  choices: ReadonlyMap<string, { readonly tile?: string; readonly reason: string }>,
  dims: Record<string, number> = {},
): Graph {
  const nodes = graph.nodes.map((n) => {
    if (n.op !== "matmul" || n.attrs.tile !== undefined) return n;
    const p = nodeProblem(graph, n, dims);
    const c = p && choices.get(problemKey(p));
    if (!c) return n;
    const attrs = { ...n.attrs, ...(c.tile ? { tile: c.tile } : {}), tileReason: c.reason };
    return { ...n, attrs };
  });
  return { ...graph, nodes };
}
