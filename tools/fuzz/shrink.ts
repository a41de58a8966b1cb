/**
 * The shrinker: given a failing case and a predicate that says whether a case
 * still fails (the same way), it tries smaller cases greedily until none of its
 * edits keeps the failure, or its budget runs out:
 *
 * 1. drop an output, a state update, or a run; move an output up to an operand
 *    of the op that computes it;
 * 2. cut the graph at a value: the value becomes a new input whose data has the
 *    range the value had (so downstream ops stay well-conditioned), and whatever
 *    only fed it disappears;
 * 3. bypass an op whose operand has its result's shape and dtype;
 * 4. shrink sizes: symbols to their minimum, 1 or half, and each concrete size
 *    everywhere it appears (shapes and reshape targets) to 1, 2 or half.
 *
 * Edits that do not give a valid graph (the builder throws) are skipped without
 * running anything.
 *
 * @module
 */

import { type DType, type HostArray, isFloat } from "../../core/dtype.ts";
import type { AttrValue } from "../../core/graph.ts";
import type { Dim } from "../../core/shape.ts";
import { drawLeaves, interpret } from "./check.ts";
import {
  buildGraph,
  type DataSpec,
  dataSpecs,
  type FuzzCase,
  type FuzzGraph,
  type FuzzNode,
  prune,
  type Ref,
} from "./spec.ts";

/** Budget of {@linkcode shrinkCase}. */
export interface ShrinkOptions {
  /** Most candidate cases run (default 200). */
  readonly maxTries?: number;
  /** Stop after this many milliseconds (default 120 000). */
  readonly maxMillis?: number;
}

/** A data spec that reproduces values like these (ints, a grid, or a continuous range). *
 * @example
 * ```ts ignore
 * specFor(new Int32Array([3, -1, 7]), "i32"); // { kind: "int", lo: -1, hi: 7 }
 * ```
 */
export function specFor(data: HostArray, dtype: DType): DataSpec {
  let lo = Infinity, hi = -Infinity, finite = true;
  for (const v of data) {
    if (!Number.isFinite(v)) finite = false;
    else {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!finite || lo > hi) {
    return isFloat(dtype) ? { kind: "uniform", lo: -1, hi: 1 } : { kind: "int", lo: 0, hi: 1 };
  }
  if (!isFloat(dtype)) return { kind: "int", lo, hi };
  let step = 1;
  const onGrid = (s: number) => data.every((v) => Number.isInteger(v / s));
  if (Math.max(-lo, hi) <= 256) {
    while (step >= 1 / 16 && !onGrid(step)) step /= 2;
    if (step >= 1 / 16) return { kind: "grid", lo, hi, step };
  }
  if (lo === hi) return { kind: "uniform", lo, hi: hi + Math.max(Math.abs(hi) * 1e-3, 1e-3) };
  return { kind: "uniform", lo, hi };
}

function retarget(fg: FuzzGraph, from: Ref, to: Ref): FuzzGraph {
  const m = (r: Ref) => (r.node === from.node && r.out === from.out ? to : r);
  return {
    ...fg,
    nodes: fg.nodes.map((n) => (n.kind === "op" ? { ...n, inputs: n.inputs.map(m) } : n)),
    outputs: fg.outputs.map((o) => ({ ...o, ref: m(o.ref) })),
    assigns: fg.assigns.map((a) => ({ ...a, ref: m(a.ref) })),
  };
}

function withGraph(c: FuzzCase, fg: FuzzGraph): FuzzCase {
  const graph = prune(fg);
  const runs = c.runs.map((r) => ({
    dims: Object.fromEntries(Object.entries(r.dims).filter(([s]) => s in graph.symbols)),
  }));
  return { ...c, graph, runs };
}

function resize(values: readonly number[], n: number): number[] {
  return Array.from({ length: n }, (_, i) => values[i % Math.max(values.length, 1)] ?? 0);
}

/** Every concrete size `d` replaced by `to` in shapes and reshape targets. */
function substitute(fg: FuzzGraph, d: number, to: number): FuzzGraph {
  const sub = (s: readonly Dim[]) => s.map((x) => (x === d ? to : x));
  const nodes = fg.nodes.map((n): FuzzNode => {
    if (n.kind === "const") {
      const shape = sub(n.shape) as number[];
      return { ...n, shape, values: resize(n.values, shape.reduce((a, b) => a * b, 1)) };
    }
    if (n.kind !== "op") return { ...n, shape: sub(n.shape) };
    if (n.op !== "reshape") return n;
    return { ...n, attrs: { ...n.attrs, shape: sub(n.attrs.shape as Dim[]) as AttrValue } };
  });
  return { ...fg, nodes };
}

/** Candidate smaller cases, biggest cuts first. */
function* candidates(c: FuzzCase): Generator<FuzzCase> {
  const fg = c.graph;
  if (fg.outputs.length + fg.assigns.length > 1) {
    for (let i = 0; i < fg.outputs.length; i++) {
      yield withGraph(c, { ...fg, outputs: fg.outputs.filter((_, j) => j !== i) });
    }
    for (let i = 0; i < fg.assigns.length; i++) {
      yield withGraph(c, { ...fg, assigns: fg.assigns.filter((_, j) => j !== i) });
    }
  }
  // An output moved up to an operand of its op: the op goes, whatever its shape.
  for (const [i, o] of fg.outputs.entries()) {
    const n = fg.nodes[o.ref.node];
    for (const r of n.kind === "op" ? n.inputs : []) {
      const outputs = fg.outputs.map((x, j) => (j === i ? { ...x, ref: r } : x));
      yield withGraph(c, { ...fg, outputs });
    }
  }
  for (let i = 0; c.runs.length > 1 && i < c.runs.length; i++) {
    yield { ...c, runs: c.runs.filter((_, j) => j !== i) };
  }
  // Cut at values, latest first: the value becomes an input with its observed range.
  let values: HostArray[][] | undefined;
  try {
    const graph = buildGraph(fg);
    const opts = { data: dataSpecs(fg), inputsSeed: c.inputsSeed, runs: c.runs };
    const all = interpret(graph, c.runs[0].dims, drawLeaves(graph, opts, 0), new Map());
    values = graph.nodes.map((n) => n.outputs.map((id) => all[id].data));
  } catch {
    values = undefined;
  }
  const graph = values ? buildGraph(fg) : undefined;
  for (let i = fg.nodes.length - 1; graph && i >= 0; i--) {
    const n = fg.nodes[i];
    if (n.kind !== "op" || graph.nodes[i].outputs.length !== 1) continue;
    const v = graph.values[graph.nodes[i].outputs[0]];
    const nodes = [...fg.nodes];
    let k = 0;
    while (fg.nodes.some((m) => m.kind !== "op" && m.kind !== "const" && m.name === `z${k}`)) k++;
    nodes[i] = {
      kind: "input",
      name: `z${k}`,
      shape: v.shape,
      dtype: v.dtype,
      data: specFor(values![i][0], v.dtype),
    };
    yield withGraph(c, { ...fg, nodes });
  }
  for (let i = fg.nodes.length - 1; graph && i >= 0; i--) {
    const n = fg.nodes[i];
    if (n.kind !== "op" || graph.nodes[i].outputs.length !== 1) continue;
    const out = graph.values[graph.nodes[i].outputs[0]];
    for (const r of n.inputs) {
      const v = graph.values[graph.nodes[r.node].outputs[r.out]];
      if (v.dtype === out.dtype && v.shape.join() === out.shape.join()) {
        yield withGraph(c, retarget(fg, { node: i, out: 0 }, r));
      }
    }
  }
  for (const [s, { min }] of Object.entries(fg.symbols)) {
    for (const r in c.runs) {
      const d = c.runs[r].dims[s];
      for (const to of new Set([min, Math.max(min, 1), Math.max(min, Math.floor(d / 2))])) {
        if (to >= d) continue;
        const runs = c.runs.map((x, j) => (String(j) === r ? { dims: { ...x.dims, [s]: to } } : x));
        yield { ...c, runs };
      }
    }
  }
  const sizes = new Set<number>();
  for (const n of fg.nodes) {
    if (n.kind !== "op") {
      for (const d of n.shape) if (typeof d === "number" && d > 1) sizes.add(d);
    }
  }
  for (const d of [...sizes].sort((a, b) => b - a)) {
    for (const to of new Set([1, 2, Math.floor(d / 2)])) {
      if (to < d) yield withGraph(c, substitute(fg, d, to));
    }
  }
}

function valid(c: FuzzCase): boolean {
  try {
    buildGraph(c.graph);
    return c.graph.outputs.length + c.graph.assigns.length > 0 && c.runs.length > 0;
  } catch {
    return false;
  }
}

/**
 * Shrinks `c` while `fails` holds. Returns the smallest failing case found and
 * how many candidates were run.
 *
 * @example
 * ```ts ignore
 * const { shrunk } = await shrinkCase(c, async (x) => (await checkCase(x, dev)).length > 0);
 * ```
 */
export async function shrinkCase(
  c: FuzzCase,
  fails: (c: FuzzCase) => Promise<boolean>,
  options: ShrinkOptions = {},
): Promise<{ shrunk: FuzzCase; tries: number }> {
  const maxTries = options.maxTries ?? 200;
  const deadline = Date.now() + (options.maxMillis ?? 120_000);
  let cur = c, tries = 0;
  outer: while (tries < maxTries && Date.now() < deadline) {
    for (const cand of candidates(cur)) {
      if (tries >= maxTries || Date.now() >= deadline) break outer;
      if (!valid(cand)) continue;
      tries++;
      if (await fails(cand)) {
        cur = cand;
        continue outer;
      }
    }
    break;
  }
  return { shrunk: cur, tries };
}
