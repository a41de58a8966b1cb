/**
 * Parameter accounting: how many weights a graph holds, and how many of them
 * one token actually uses (a routed MoE layer touches only k of its E experts).
 *
 * @module
 */

import type { Graph } from "../core/graph.ts";
import { consumers } from "../core/graph.ts";
import { isOp, opDef } from "../ops/registry.ts";

/**
 * One parameter's share of {@linkcode ParamCount}.
 *
 * @example
 * ```ts
 * import { countParams, GraphBuilder, type ParamUsage } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 16]).matmul(g.param("w", [32, 16]), { transB: true }));
 * const [w]: readonly ParamUsage[] = countParams(g.build()).byParam;
 * [w.name, w.total, w.fraction]; // ["w", 512, 1]
 * ```
 */
export interface ParamUsage {
  /** Parameter name. */
  readonly name: string;
  /** Its shape. */
  readonly shape: readonly number[];
  /** Elements. */
  readonly total: number;
  /** Elements one token uses (`total · fraction`). */
  readonly active: number;
  /** Fraction used per token (1 unless a consumer says otherwise). */
  readonly fraction: number;
}

/**
 * What {@linkcode countParams} returns.
 *
 * @example
 * ```ts
 * import { countParams, GraphBuilder, type ParamCount } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 16]).add(g.param("b", [16])));
 * const count: ParamCount = countParams(g.build());
 * [count.total, count.activePerToken]; // [16, 16]
 * ```
 */
export interface ParamCount {
  /** Elements of all parameters. */
  readonly total: number;
  /** Elements a single token's forward pass uses. */
  readonly activePerToken: number;
  /** Per parameter, in declaration order. */
  readonly byParam: readonly ParamUsage[];
}

// Ops that only move or convert elements: the fraction of the source a token
// uses is whatever the fraction of the result is.
const PASS_THROUGH = new Set(["reshape", "transpose", "cast"]);

/**
 * Counts the parameters of a graph, total and active per token. The active
 * fraction of a parameter comes from the ops that read it (`OpDef.activeFraction`,
 * e.g. `k/E` for a routed MoE's expert weights), looking through reshapes,
 * transposes and casts; a parameter read by several ops counts at the largest
 * fraction. Nothing is allocated: graphs with Mixtral-sized shapes are fine.
 *
 * @example
 * ```ts
 * import { countParams, GraphBuilder } from "../mod.ts";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 16]);
 * g.output("y", x.matmul(g.param("w", [32, 16]), { transB: true }));
 * countParams(g.build()).total; // 512
 * ```
 */
export function countParams(graph: Graph): ParamCount {
  const uses = consumers(graph);
  const fractionOf = (value: number, seen: Set<number>): number => {
    const readers = uses.get(value) ?? [];
    // A value nobody reads (say, a dead reshape) counts as fully used, like an unused param.
    if (readers.length === 0) return 1;
    if (seen.has(value)) return 0;
    seen.add(value);
    let best = 0;
    for (const n of readers) {
      const node = graph.nodes[n];
      if (PASS_THROUGH.has(node.op)) {
        for (const o of node.outputs) best = Math.max(best, fractionOf(o, seen));
        continue;
      }
      const hook = isOp(node.op) ? opDef(node.op).activeFraction : undefined;
      node.inputs.forEach((v, j) => {
        if (v === value) best = Math.max(best, hook ? hook(node.attrs, j) : 1);
      });
    }
    return best;
  };
  let total = 0, active = 0;
  const byParam: ParamUsage[] = [];
  for (const [name, id] of graph.params) {
    const shape = graph.values[id].shape as readonly number[];
    const n = shape.reduce((a, b) => a * b, 1);
    // An unused parameter still counts as used: it is loaded and would be in any checkpoint.
    const fraction = Math.min(1, fractionOf(id, new Set()));
    total += n;
    active += n * fraction;
    byParam.push({ name, shape, total: n, active: n * fraction, fraction });
  }
  return { total, activePerToken: active, byParam };
}
