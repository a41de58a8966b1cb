/**
 * Activation storage: which materialised values of a fused schedule may keep
 * their buffers in f16 while every kernel still computes in f32 — mixed
 * precision as memory sees it. Training keeps the forward's activations alive
 * until the backward reads them, so halving their bytes halves most of a
 * step's memory and of its activation traffic; parameters (the f32 master
 * weights), gradients, optimizer moments and states stay f32.
 *
 * A value qualifies when
 * - it is f32 and computed by a forward node (not `Node.backward`: gradients
 *   would underflow f16 without loss scaling) from the graph's inputs (what is
 *   computed from parameters alone, like Mamba's A = −exp(A_log), is a weight);
 * - it is no statistic: not a reduction's, top-k's, cumulative sum's or FFT's
 *   result, nor computed elementwise from statistics alone (a log-sum-exp, a
 *   token's loss, a norm's scale), which keep f32 as in PyTorch's autocast: a
 *   log-sum-exp of 10 in f16 is off by up to 0.005, and so every probability
 *   recomputed from it;
 * - it is no input, parameter, state, graph output or state update (the host
 *   reads those in their own dtype);
 * - whoever writes it can convert on store: a fused cluster, an epilogue, or
 *   output 0 of a kernel op that takes epilogues (so stores through a function);
 * - whoever reads it can convert on load: a fused cluster's leaf, a prologue's
 *   or epilogue's leaf, or a kernel input that takes a prologue. Inputs a
 *   kernel indexes raw (or updates in place) rule the value out.
 *
 * Reshapes share their input's buffer, so a reshape chain qualifies as one.
 * Values keep their graph dtype: only their buffers change (see
 * `compiler/emit.ts`, `bindValue`).
 *
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { isOp, opDef } from "../ops/registry.ts";
import type { Cluster, Schedule } from "./passes/fuse.ts";

/** Ops whose results are statistics (or sums whose precision f16 would lose). */
const STATISTIC_OPS = new Set([
  "sum",
  "mean",
  "max",
  "min",
  "logsumexp",
  "cumsum",
  "topk",
  "fft",
  "fft_conv",
]);

/** Values computed from the graph's inputs (the data), not from parameters and states alone. */
function fromData(graph: Graph): Set<number> {
  const data = new Set<number>(graph.inputs.values());
  for (const node of graph.nodes) {
    if (node.inputs.some((v) => data.has(v))) node.outputs.forEach((v) => data.add(v));
  }
  return data;
}

/**
 * Values that are statistics: a `STATISTIC_OPS` result, or an elementwise or
 * layout op's result whose inputs are statistics or constants only (at least
 * one statistic).
 */
function statistics(graph: Graph): Set<number> {
  const stats = new Set<number>();
  for (const node of graph.nodes) {
    if (STATISTIC_OPS.has(node.op)) {
      node.outputs.forEach((v) => stats.add(v));
      continue;
    }
    const kind = isOp(node.op) ? opDef(node.op).lower.kind : "leaf";
    if (kind === "kernel" || kind === "leaf" || node.inputs.length === 0) continue;
    const fromStats = node.inputs.some((v) => stats.has(v)) &&
      node.inputs.every((v) => stats.has(v) || graph.constants.has(v));
    if (fromStats) node.outputs.forEach((v) => stats.add(v));
  }
  return stats;
}

/**
 * The schedule's activations that can live as `dtype` (see the module doc):
 * value id → `dtype`. Empty for `"f32"`.
 *
 * @example
 * ```ts
 * import { activationStorage, compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [64, 128]);
 * const h = x.matmul(g.param("w", [128, 128])).silu();
 * g.output("y", h.matmul(g.param("v", [128, 16])));
 * const { schedule } = compile(g.build(), cpuDevice());
 * activationStorage(schedule, "f16").size; // 1: h, between the two matmuls
 * ```
 */
export function activationStorage(schedule: Schedule, dtype: "f32" | "f16"): Map<number, DType> {
  const out = new Map<number, DType>();
  if (dtype === "f32") return out;
  const graph = schedule.graph;
  const root = new Map<number, number>();
  const rootOf = (v: number): number => root.get(v) ?? v;
  for (const g of schedule.groups) {
    if (g.kind !== "alias") continue;
    const node = graph.nodes[g.node];
    root.set(node.outputs[0], rootOf(node.inputs[0]));
  }
  const hostSide = new Set<number>([
    ...graph.inputs.values(),
    ...graph.params.values(),
    ...graph.states.values(),
    ...graph.outputs.values(),
    ...graph.assigns.values(),
  ]);
  const converts = new Set<number>(); // roots whose writer converts
  const raw = new Set<number>(); // roots some reader or writer touches raw
  for (const v of hostSide) raw.add(rootOf(v));
  const clusterWrites = (c: Cluster) => c.outputs.forEach((v) => converts.add(rootOf(v)));
  for (const g of schedule.groups) {
    if (g.kind === "fused") clusterWrites(g.cluster);
    if (g.kind !== "kernel") continue;
    const node = graph.nodes[g.node];
    const lower = opDef(node.op).lower;
    if (lower.kind !== "kernel") continue;
    node.inputs.forEach((v, j) => {
      if (g.prologues[j]) return; // computed in the kernel; its leaves convert
      const takes = lower.prologue === true ||
        (Array.isArray(lower.prologue) && lower.prologue.includes(j));
      const inPlace = lower.inplace?.some(([, i]) => i === j) ?? false;
      if (!takes || inPlace) raw.add(rootOf(v));
    });
    node.outputs.forEach((v, j) => {
      if (j === 0 && g.epilogue) return clusterWrites(g.epilogue);
      const inPlace = lower.inplace?.some(([o]) => o === j) ?? false;
      if (j === 0 && lower.epilogue && !inPlace) converts.add(rootOf(v));
      else raw.add(rootOf(v));
    });
  }
  const stats = statistics(graph);
  const data = fromData(graph);
  const ok = (r: number): boolean => {
    const val = graph.values[r];
    if (val.dtype !== "f32" || !converts.has(r) || raw.has(r)) return false;
    if (stats.has(r) || !data.has(r)) return false;
    return graph.nodes[val.node].backward !== true;
  };
  for (const v of graph.values) {
    const r = rootOf(v.id);
    if (ok(r)) out.set(v.id, dtype);
  }
  return out;
}
