/**
 * Reverse-mode differentiation on the graph IR: walks the recorded nodes from
 * the loss back to the wanted tensors, asking each op's rule (`./table.ts`)
 * for its operands' gradients and summing them where a value fans out. The
 * gradient nodes join the same graph, so fusion, planning and `inspect` see
 * them like any other.
 *
 * @module
 */

import { isFloat } from "../../core/dtype.ts";
import { atSite, callSite } from "../../core/errors.ts";
import { formatShape } from "../../core/shape.ts";
import type { OpAttrs } from "../../ops/types.ts";
import type { GraphBuilder } from "../builder.ts";
import { Tensor } from "../tensor.ts";
import { filled } from "./broadcast.ts";
import { GRAD_RULES } from "./table.ts";
import type { GradRule } from "./types.ts";

const LEAVES = new Set(["input", "param", "const", "state"]);

/**
 * The gradients of scalar `loss` with respect to `wrt`, built into `g`
 * (see `GraphBuilder.grad`).
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const w = g.param("w", [3]);
 * const [dw] = g.grad(w.mul(w).sum(0), [w]); // 2w
 * g.output("dw", dw);
 * ```
 */
export function gradOf(g: GraphBuilder, loss: Tensor, wrt: readonly Tensor[]): Tensor[] {
  const site = callSite();
  const fail = (e: Error) => atSite(e, site);
  if (!(loss instanceof Tensor) || loss.builder !== g) {
    throw fail(new TypeError("grad: loss must be a Tensor of this graph"));
  }
  if (!isFloat(loss.dtype) || !loss.shape.every((d) => d === 1)) {
    throw fail(
      new TypeError(
        `grad: loss must be a float scalar, got ${loss.dtype}${formatShape(loss.shape)}`,
      ),
    );
  }
  if (!Array.isArray(wrt)) throw fail(new TypeError("grad: wrt must be an array of Tensors"));
  for (const [i, w] of wrt.entries()) {
    if (!(w instanceof Tensor) || w.builder !== g) {
      throw fail(new TypeError(`grad: wrt[${i}] is not a Tensor of this graph`));
    }
    if (!isFloat(w.dtype)) {
      throw fail(new TypeError(`grad: wrt[${i}] is ${w.dtype}: only float tensors have gradients`));
    }
  }
  const graph = g.peek();
  const tensorOf = (id: number) => {
    const v = graph.values[id];
    return new Tensor(g, id, v.shape, v.dtype);
  };
  // Values on a path from a wanted tensor to the loss: only these get gradients.
  const fromWrt = new Set(wrt.map((w) => w.id));
  for (const n of graph.nodes) {
    if (n.inputs.some((v) => fromWrt.has(v))) {
      for (const o of n.outputs) if (isFloat(graph.values[o].dtype)) fromWrt.add(o);
    }
  }
  const lossNode = graph.values[loss.id].node;
  const toLoss = new Set([loss.id]);
  for (let k = lossNode; k >= 0; k--) {
    const n = graph.nodes[k];
    if (n.outputs.some((o) => toLoss.has(o))) { for (const v of n.inputs) toLoss.add(v); }
  }
  const live = (v: number) => fromWrt.has(v) && toLoss.has(v);

  const grads = new Map<number, Tensor>();
  grads.set(loss.id, filled(g, 1, loss.shape, loss.dtype));
  for (let k = lossNode; k >= 0; k--) {
    const node = graph.nodes[k];
    if (LEAVES.has(node.op)) continue;
    const outGrads = node.outputs.map((o) => grads.get(o));
    const needs = node.inputs.map(live);
    if (outGrads.every((x) => x === undefined) || !needs.some((x) => x)) continue;
    const rule = (GRAD_RULES as Record<string, GradRule<OpAttrs> | undefined>)[node.op];
    if (!rule) {
      throw fail(
        new TypeError(
          `grad: op "${node.op}" has no gradient rule (node %${node.outputs[0]}${
            node.scope ? ` in ${node.scope}` : ""
          }, built at ${node.site})`,
        ),
      );
    }
    const run = () =>
      rule({
        g,
        attrs: node.attrs as OpAttrs,
        inputs: node.inputs.map(tensorOf),
        outputs: node.outputs.map(tensorOf),
        grads: outGrads,
        needs,
      });
    const res = g.scope(node.scope ? `${node.scope}.grad` : "grad", run);
    node.inputs.forEach((v, i) => {
      const d = res[i];
      if (!needs[i] || d === undefined) return;
      const want = graph.values[v];
      if (d.dtype !== want.dtype || formatShape(d.shape) !== formatShape(want.shape)) {
        throw fail(
          new TypeError(
            `grad: the rule of "${node.op}" gave ${d.dtype}${
              formatShape(d.shape)
            } for operand ${i}, ` +
              `which is ${want.dtype}${formatShape(want.shape)}`,
          ),
        );
      }
      const prev = grads.get(v);
      grads.set(v, prev ? prev.add(d) : d);
    });
  }
  return wrt.map((w) => grads.get(w.id) ?? filled(g, 0, w.shape, w.dtype));
}
