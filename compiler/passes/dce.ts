/**
 * Dead-code elimination: drops nodes no output depends on. Inputs and params stay
 * declared so callers may still pass them.
 *
 * @module
 */

import type { Graph } from "../../core/graph.ts";
import { Rewriter } from "./rewrite.ts";

/** Removes nodes that no graph output depends on. */
export function dce(graph: Graph): Graph {
  const live = new Set<number>();
  const stack = [...graph.outputs.values(), ...graph.assigns.values()].map((v) =>
    graph.values[v].node
  );
  while (stack.length) {
    const n = stack.pop()!;
    if (live.has(n)) continue;
    live.add(n);
    for (const v of graph.nodes[n].inputs) stack.push(graph.values[v].node);
  }
  const rw = new Rewriter(graph);
  for (const node of graph.nodes) {
    const leaf = node.op === "input" || node.op === "param" || node.op === "state";
    if (!live.has(node.id) && !leaf) continue;
    const n = rw.keep(node);
    if (node.op === "const") rw.constants.set(n.outputs[0], graph.constants.get(node.outputs[0])!);
  }
  return rw.finish();
}
