/**
 * Constant folding: ops whose inputs are all constants run once on the CPU
 * reference at compile time and become constants.
 *
 * @module
 */

import { toHost } from "../../core/dtype.ts";
import type { Graph } from "../../core/graph.ts";
import { isConcrete, numel } from "../../core/shape.ts";
import { opDef } from "../../ops/registry.ts";
import type { HostTensor } from "../../core/types.ts";
import { Rewriter } from "./rewrite.ts";

/** Largest folded result, in elements: beyond this, computing on the device is cheaper than uploading. */
export const FOLD_LIMIT = 1 << 16;

/** Replaces all-constant subgraphs by their values. */
export function fold(graph: Graph): Graph {
  const rw = new Rewriter(graph);
  const data = new Map<number, HostTensor>();
  for (const node of graph.nodes) {
    if (node.op === "const") {
      const v = graph.values[node.outputs[0]];
      const values = graph.constants.get(v.id)!;
      const n = rw.keep(node);
      rw.constants.set(n.outputs[0], values);
      data.set(v.id, { data: toHost(values, v.dtype), shape: v.shape as number[], dtype: v.dtype });
      continue;
    }
    const ins = node.inputs.map((v) => data.get(v));
    const outs = node.outputs.map((v) => graph.values[v]);
    const leaf = node.op === "input" || node.op === "param" || node.op === "state";
    const def = leaf ? undefined : opDef(node.op);
    const foldable = def && def.foldable !== false && node.inputs.length > 0 &&
      ins.every((t) => t !== undefined) &&
      outs.every((o) => isConcrete(o.shape) && numel(o.shape) <= FOLD_LIMIT);
    if (!foldable) {
      rw.keep(node);
      continue;
    }
    const results = def.reference(
      ins as HostTensor[],
      node.attrs,
      outs.map((o) => ({ shape: o.shape as number[], dtype: o.dtype })),
    );
    outs.forEach((o, i) => {
      rw.constant(o.id, results[i], node.site, node.scope);
      data.set(o.id, { data: results[i], shape: o.shape as number[], dtype: o.dtype });
    });
  }
  return rw.finish();
}
