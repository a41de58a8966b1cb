/**
 * The standard graph passes before fusion: constant folding, common
 * subexpression elimination, the backward pairings (attention's log-sum-exp
 * and the selective scan's chunk states saved by their forwards), dead code
 * elimination.
 *
 * @module
 */

import type { Graph } from "../core/graph.ts";
import { fold } from "./passes/fold.ts";
import { cse } from "./passes/cse.ts";
import { dce } from "./passes/dce.ts";
import { attentionLse } from "./passes/attention_lse.ts";
import { scanCheckpoints } from "./passes/scan_checkpoints.ts";

/**
 * Optimises a graph with the standard passes: fold, CSE, the backward
 * pairings, DCE.
 *
 * @example
 * ```ts
 * import { GraphBuilder, optimize } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [4]);
 * g.output("y", x.mul(2).add(x.mul(2))); // CSE computes x.mul(2) once
 * const graph = g.build();
 * optimize(graph).nodes.length < graph.nodes.length; // true
 * ```
 */
export function optimize(graph: Graph): Graph {
  return dce(scanCheckpoints(attentionLse(cse(fold(graph)))));
}
