/**
 * The fuzzer's own description of a graph: plain data that the generator writes,
 * the shrinker edits, the printer turns into DSL code and {@linkcode buildGraph}
 * turns into a real `Graph` through the public `GraphBuilder` — so every graph the
 * campaign runs went through the same checks a user's graph does.
 *
 * Input data is described, not stored: each input and parameter carries a
 * {@linkcode DataSpec} (a range the ops downstream are well-conditioned on), and a
 * seed draws the values, so a failing case is a few lines to paste.
 *
 * @module
 */

import type { DType, HostArray } from "../../core/dtype.ts";
import { allocHost } from "../../core/dtype.ts";
import type { AttrValue, Graph } from "../../core/graph.ts";
import { mulberry32 } from "../../core/random.ts";
import type { Dim } from "../../core/shape.ts";
import { GraphBuilder, type Tensor } from "../../compiler/builder.ts";
import type { OpAttrMap, OpName } from "../../ops/registry.ts";

/**
 * How an input's or parameter's values are drawn.
 *
 * - `uniform`: continuous floats in [lo, hi): the results downstream are inexact,
 *   compared with a tolerance, and perturbed to measure conditioning.
 * - `grid`: multiples of `step` (a power of two) in [lo, hi]: exactly
 *   representable, and so are sums and products of them while they stay small,
 *   which lets comparisons, casts to integers and ties be tested bit for bit.
 * - `int`: integers in [lo, hi] (any dtype; ids, positions, integer maths).
 *
 * @example
 * ```ts
 * import type { DataSpec } from "./spec.ts";
 * const positive: DataSpec = { kind: "uniform", lo: 0.5, hi: 3 };
 * ```
 */
export type DataSpec =
  | { readonly kind: "uniform"; readonly lo: number; readonly hi: number }
  | { readonly kind: "grid"; readonly lo: number; readonly hi: number; readonly step: number }
  | { readonly kind: "int"; readonly lo: number; readonly hi: number };

/** A value: result `out` of node `node`. */
export interface Ref {
  /** Index of the producing node. */
  readonly node: number;
  /** Which result of that node (topk has two). */
  readonly out: number;
}

/** A run-time input, a parameter (concrete shape) or a state (starts at zero). */
export interface LeafNode {
  /** Discriminant. */
  readonly kind: "input" | "param" | "state";
  /** Name in the graph (and the variable in printed DSL). */
  readonly name: string;
  /** Shape; strings are symbols bound per run. */
  readonly shape: readonly Dim[];
  /** Element type. */
  readonly dtype: DType;
  /** How its values are drawn (states: unused, they start at zero). */
  readonly data: DataSpec;
}

/** A constant tensor (a number lifted by a binary op is a `[]` constant). */
export interface ConstNode {
  /** Discriminant. */
  readonly kind: "const";
  /** Concrete shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Values, row-major. */
  readonly values: readonly number[];
}

/** An op from the registry applied to earlier values. */
export interface OpNode {
  /** Discriminant. */
  readonly kind: "op";
  /** Registered op. */
  readonly op: OpName;
  /** Operands. */
  readonly inputs: readonly Ref[];
  /** Attributes, as `GraphBuilder.apply` takes them. */
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

/** Any node. */
export type FuzzNode = LeafNode | ConstNode | OpNode;

/** A graph as the fuzzer sees it. Nodes are topologically ordered. */
export interface FuzzGraph {
  /** Nodes; an op's inputs refer to earlier nodes. */
  readonly nodes: readonly FuzzNode[];
  /** Named outputs. */
  readonly outputs: readonly { readonly name: string; readonly ref: Ref }[];
  /** State updates: `state` is a state node's index. */
  readonly assigns: readonly { readonly state: number; readonly ref: Ref }[];
  /** Symbols and the sizes they may take (min from the ops that need it). */
  readonly symbols: Readonly<Record<string, { readonly min: number; readonly max: number }>>;
}

/** A graph with everything needed to run it: bindings per run and the inputs' seed. */
export interface FuzzCase {
  /** Seed the graph was generated from. */
  readonly seed: number;
  /** Seed the input values are drawn from (run r draws from `inputsSeed + r`). */
  readonly inputsSeed: number;
  /** The graph. */
  readonly graph: FuzzGraph;
  /** One entry per run in a row (stateful graphs run several): the symbols' sizes. */
  readonly runs: readonly { readonly dims: Readonly<Record<string, number>> }[];
}

/**
 * Builds a `Graph` through the DSL; throws (with the builder's message) when the
 * description is not a valid graph — the shrinker relies on that to reject edits.
 *
 * @example
 * ```ts ignore
 * const graph = buildGraph(generateCase(7, { f16: false }).graph);
 * ```
 */
export function buildGraph(fg: FuzzGraph): Graph {
  const g = new GraphBuilder();
  const tensors: Tensor[][] = [];
  for (const n of fg.nodes) {
    if (n.kind === "input") tensors.push([g.input(n.name, n.shape, n.dtype)]);
    else if (n.kind === "param") tensors.push([g.param(n.name, n.shape, n.dtype)]);
    else if (n.kind === "state") tensors.push([g.state(n.name, n.shape, n.dtype)]);
    else if (n.kind === "const") tensors.push([g.constant(n.values, n.shape, n.dtype)]);
    else if (n.kind === "op") {
      const ins = n.inputs.map((r) => tensors[r.node][r.out]);
      tensors.push(g.apply(n.op, ins, n.attrs as OpAttrMap[OpName]));
    }
  }
  for (const o of fg.outputs) g.output(o.name, tensors[o.ref.node][o.ref.out]);
  for (const a of fg.assigns) g.assign(tensors[a.state][0], tensors[a.ref.node][a.ref.out]);
  return g.build();
}

/** The data specs of a graph's inputs and parameters, by name. *
 * @example
 * ```ts ignore
 * dataSpecs(c.graph); // { x0: { kind: "uniform", lo: -2, hi: 2 }, … }
 * ```
 */
export function dataSpecs(fg: FuzzGraph): Record<string, DataSpec> {
  const out: Record<string, DataSpec> = {};
  for (const n of fg.nodes) {
    if (n.kind === "input" || n.kind === "param") out[n.name] = n.data;
  }
  return out;
}

/** A seed for one named tensor of one run, so adding an input does not reshuffle the others. */
export function tensorSeed(seed: number, name: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Draws `n` values of `dtype` as `spec` says (f16 rounds on storing, which keeps
 * grid values exact since the generator only puts small grids in f16).
 *
 * @example
 * ```ts ignore
 * drawData({ kind: "int", lo: 0, hi: 9 }, 4, "u32", 1); // Uint32Array of 4 ids in 0..9
 * ```
 */
export function drawData(spec: DataSpec, n: number, dtype: DType, seed: number): HostArray {
  const r = mulberry32(seed);
  const out = allocHost(dtype, n);
  for (let i = 0; i < n; i++) {
    const u = r();
    if (spec.kind === "uniform") out[i] = spec.lo + (spec.hi - spec.lo) * u;
    else if (spec.kind === "grid") {
      const steps = Math.floor((spec.hi - spec.lo) / spec.step);
      out[i] = spec.lo + spec.step * Math.min(steps, Math.floor(u * (steps + 1)));
    } else {
      const span = spec.hi - spec.lo + 1;
      out[i] = spec.lo + Math.min(span - 1, Math.floor(u * span));
    }
  }
  return out;
}

/** A shape with its symbols replaced by their sizes. */
export function bind(shape: readonly Dim[], dims: Readonly<Record<string, number>>): number[] {
  return shape.map((d) => {
    if (typeof d === "number") return d;
    const v = dims[d];
    if (v === undefined) throw new RangeError(`symbol "${d}" has no size`);
    return v;
  });
}

/** The refs a node reads. */
export function refsOf(n: FuzzNode): readonly Ref[] {
  return n.kind === "op" ? n.inputs : [];
}

/** Drops nodes nothing reachable from the outputs and assigns reads; renumbers refs. *
 * @example
 * ```ts ignore
 * const smaller = prune({ ...fg, outputs: fg.outputs.slice(1) }); // drops what only fed output 0
 * ```
 */
export function prune(fg: FuzzGraph): FuzzGraph {
  const live = new Set<number>();
  const stack = [...fg.outputs.map((o) => o.ref.node), ...fg.assigns.map((a) => a.ref.node)];
  for (const a of fg.assigns) stack.push(a.state);
  while (stack.length) {
    const i = stack.pop()!;
    if (live.has(i)) continue;
    live.add(i);
    for (const r of refsOf(fg.nodes[i])) stack.push(r.node);
  }
  const map = new Map<number, number>();
  const nodes: FuzzNode[] = [];
  fg.nodes.forEach((n, i) => {
    if (!live.has(i)) return;
    map.set(i, nodes.length);
    const m = (r: Ref): Ref => ({ node: map.get(r.node)!, out: r.out });
    nodes.push(n.kind === "op" ? { ...n, inputs: n.inputs.map(m) } : n);
  });
  const m = (r: Ref): Ref => ({ node: map.get(r.node)!, out: r.out });
  const used = new Set<string>();
  for (const n of nodes) {
    if (n.kind !== "op" && n.kind !== "const") {
      for (const d of n.shape) if (typeof d === "string") used.add(d);
    }
  }
  const symbols: Record<string, { min: number; max: number }> = {};
  for (const [s, v] of Object.entries(fg.symbols)) if (used.has(s)) symbols[s] = v;
  return {
    nodes,
    outputs: fg.outputs.map((o) => ({ name: o.name, ref: m(o.ref) })),
    assigns: fg.assigns.map((a) => ({ state: map.get(a.state)!, ref: m(a.ref) })),
    symbols,
  };
}

/** Ops this node list uses, each once. *
 * @example
 * ```ts ignore
 * opsOf(c.graph).has("matmul");
 * ```
 */
export function opsOf(fg: FuzzGraph): Set<OpName> {
  const s = new Set<OpName>();
  for (const n of fg.nodes) if (n.kind === "op") s.add(n.op);
  return s;
}
