/**
 * Saves attention's log-sum-exp in the forward: a backward's `attention_lse`
 * (q, k, pos) recomputes a statistic its forward `attention` (q, k, v, pos, same
 * scale and masks) already had in registers, so the pass drops the recomputation
 * and has the forward write it as a second result (`lse` attribute) — one pass
 * over the keys fewer, as FlashAttention-2 saves L in its forward.
 *
 * @module
 */

import type { Graph, Node } from "../../core/graph.ts";
import { Rewriter } from "./rewrite.ts";

/** The key that pairs an `attention_lse` with the `attention` it repeats. */
function keyOf(node: Node, q: number, k: number, pos: number): string {
  const a = node.attrs as Record<string, unknown>;
  return JSON.stringify([q, k, pos, a.scale, a.causal, a.window]);
}

/**
 * Merges each `attention_lse` into an earlier `attention` over the same q, k and
 * positions with the same scale and masks; a graph without such pairs comes back
 * unchanged.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../builder.ts";
 * import { attentionLse } from "./attention_lse.ts";
 * const g = new GraphBuilder();
 * const q = g.input("q", [4, 2, 8]), k = g.input("k", [4, 1, 8]);
 * const o = g.attention(q, k, k);
 * g.output("dq", g.grad(o.sum(-1).sum(-1).sum(0), [q])[0]);
 * attentionLse(g.build()).nodes.some((n) => n.op === "attention_lse"); // false
 * ```
 */
export function attentionLse(graph: Graph): Graph {
  const forwards = new Map<string, Node>();
  const merged = new Map<number, Node>(); // attention node id → its attention_lse
  for (const n of graph.nodes) {
    if (n.op === "attention") {
      const key = keyOf(n, n.inputs[0], n.inputs[1], n.inputs[3]);
      if (!forwards.has(key)) forwards.set(key, n);
    } else if (n.op === "attention_lse") {
      const fwd = forwards.get(keyOf(n, n.inputs[0], n.inputs[1], n.inputs[2]));
      if (fwd && !merged.has(fwd.id)) merged.set(fwd.id, n);
    }
  }
  if (merged.size === 0) return graph;
  const dropped = new Set([...merged.values()].map((n) => n.id));
  const rw = new Rewriter(graph);
  for (const node of graph.nodes) {
    if (dropped.has(node.id)) continue; // its value now comes from the forward
    const lse = merged.get(node.id);
    if (!lse) {
      const n = rw.keep(node);
      if (node.op === "const") {
        rw.constants.set(n.outputs[0], graph.constants.get(node.outputs[0])!);
      }
      continue;
    }
    const outputs = [node.outputs[0], lse.outputs[0]];
    if (node.outputs.length === 2) {
      // Already saving it: the backward reads that result.
      rw.keep(node);
      rw.map.set(lse.outputs[0], rw.get(node.outputs[1]));
      continue;
    }
    rw.add(
      node.op,
      node.inputs.map((v) => rw.get(v)),
      { ...node.attrs, lse: true },
      node.site,
      outputs,
      node,
    );
  }
  return rw.finish();
}
