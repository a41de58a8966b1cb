/**
 * Saves the selective scan's chunk states in the forward: a backward
 * `selective_scan_grad` over the same operands as an earlier `selective_scan`
 * would walk all of L forward again only to find the state entering each of
 * its chunks, which the forward passes through anyway. The pass has the
 * forward store them as one more output (`checkpoints`, `[B, ⌈L/S⌉, N, I]`)
 * and hands that to the backward as its last input, as mamba-ssm's fused
 * kernels save chunk states for their backward; the backward then starts at
 * its reverse walk.
 *
 * It leaves alone a forward with an initial or final state (their kernels
 * already bind eight buffers) or padded rows (`last`), and any L that is not
 * static.
 *
 * @module
 */

import type { Graph, Node } from "../../core/graph.ts";
import { checkpointShape, type ScanAttrs, scanSlots } from "../../ops/ssm/attrs.ts";
import { gradChunk } from "../../ops/ssm/scan_grad.ts";
import { Rewriter } from "./rewrite.ts";

/** The attributes a forward and its backward must share. */
const SHARED = ["gate", "deltaBias", "softplus", "initialState", "algorithm", "chunk"];

/** The key pairing a backward with its forward: operands and shared attributes. */
function keyOf(node: Node, operands: readonly number[]): string {
  return JSON.stringify([operands, SHARED.map((k) => node.attrs[k])]);
}

function eligible(graph: Graph, n: Node): boolean {
  const a = n.attrs;
  const L = graph.values[n.inputs[0]].shape[1];
  return !a.initialState && !a.finalState && a.last !== true && !a.checkpoints &&
    typeof L === "number";
}

/**
 * Pairs each `selective_scan_grad` with an earlier `selective_scan` over the
 * same operands and attributes, and has the forward save the states the
 * backward would recompute; a graph without such pairs comes back unchanged.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../builder.ts";
 * import { selectiveScan } from "../../models/mamba.ts";
 * import { scanCheckpoints } from "./scan_checkpoints.ts";
 * const g = new GraphBuilder();
 * const u = g.input("u", [1, 64, 8]), dt = g.input("dt", [1, 64, 8]);
 * const A = g.param("A", [8, 4]), D = g.param("D", [8]);
 * const B = g.input("B", [1, 64, 4]), C = g.input("C", [1, 64, 4]);
 * const [y] = selectiveScan(u, dt, A, B, C, D);
 * g.output("dA", g.grad(y.sum(-1).sum(-1).sum(0), [A])[0]);
 * const out = scanCheckpoints(g.build());
 * out.nodes.find((n) => n.op === "selective_scan")!.attrs.checkpoints; // 8
 * ```
 */
export function scanCheckpoints(graph: Graph): Graph {
  const forwards = new Map<string, Node>();
  const paired = new Map<number, Node>(); // forward node id → its backward
  for (const n of graph.nodes) {
    if (n.op === "selective_scan" && eligible(graph, n)) {
      const key = keyOf(n, n.inputs);
      if (!forwards.has(key)) forwards.set(key, n);
    } else if (n.op === "selective_scan_grad" && eligible(graph, n) && !n.attrs.finalGrad) {
      const { count } = scanSlots(n.attrs as ScanAttrs, false);
      const fwd = forwards.get(keyOf(n, n.inputs.slice(0, count)));
      if (fwd && !paired.has(fwd.id)) paired.set(fwd.id, n);
    }
  }
  if (paired.size === 0) return graph;
  const saved = new Map<number, { value: number; every: number }>(); // backward id → input
  const rw = new Rewriter(graph);
  for (const node of graph.nodes) {
    const bwd = paired.get(node.id);
    const hand = saved.get(node.id);
    if (bwd) {
      const L = graph.values[node.inputs[0]].shape[1] as number;
      const every = gradChunk(L, node.attrs.chunk as number);
      const n = rw.add(
        node.op,
        node.inputs.map((v) => rw.get(v)),
        { ...node.attrs, checkpoints: every },
        node.site,
        node.outputs,
        node,
      );
      const [B, , I] = graph.values[node.inputs[0]].shape;
      const N = graph.values[node.inputs[2]].shape[1];
      const value = rw.addOutput(n, checkpointShape(B, L, I, N, every), "f32");
      saved.set(bwd.id, { value, every });
    } else if (hand) {
      rw.add(
        node.op,
        [...node.inputs.map((v) => rw.get(v)), hand.value],
        { ...node.attrs, checkpoints: hand.every },
        node.site,
        node.outputs,
        node,
      );
    } else {
      const n = rw.keep(node);
      if (node.op === "const") {
        rw.constants.set(n.outputs[0], graph.constants.get(node.outputs[0])!);
      }
    }
  }
  return rw.finish();
}
