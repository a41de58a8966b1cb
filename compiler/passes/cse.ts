/**
 * Common-subexpression elimination: nodes with the same op, inputs and attributes
 * (and constants with the same data) are computed once.
 *
 * @module
 */

import type { Graph } from "../../core/graph.ts";
import { formatShape } from "../../core/shape.ts";
import { Rewriter } from "./rewrite.ts";

/** Merges structurally identical nodes. */
export function cse(graph: Graph): Graph {
  const rw = new Rewriter(graph);
  const seen = new Map<string, readonly number[]>();
  for (const node of graph.nodes) {
    if (node.op === "input" || node.op === "param" || node.op === "state") {
      rw.keep(node);
      continue;
    }
    const inputs = node.inputs.map((v) => rw.get(v));
    let key: string;
    if (node.op === "const") {
      const v = graph.values[node.outputs[0]];
      key = `const ${v.dtype}${formatShape(v.shape)} ${
        Array.from(graph.constants.get(v.id)!).join(",")
      }`;
    } else {
      // A recomputed copy must stay a copy: merging it with its original would keep
      // the forward's activation alive for the backward, which checkpointing avoids.
      key = `${node.op}(${inputs.join(",")}) ${JSON.stringify(node.attrs)}${
        node.recompute ? " recompute" : ""
      }`;
    }
    const prev = seen.get(key);
    if (prev) {
      node.outputs.forEach((old, i) => rw.map.set(old, prev[i]));
      continue;
    }
    const n = rw.keep(node);
    if (node.op === "const") rw.constants.set(n.outputs[0], graph.constants.get(node.outputs[0])!);
    seen.set(key, n.outputs);
  }
  return rw.finish();
}
