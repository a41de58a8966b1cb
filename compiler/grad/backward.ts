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
import type { OpName } from "../../ops/registry.ts";
import type { GraphBuilder } from "../builder.ts";
import { Tensor } from "../tensor.ts";
import { filled } from "./broadcast.ts";
import { GRAD_RULES, NO_GRADIENT } from "./table.ts";
import type { GradRule } from "./types.ts";

const LEAVES = new Set(["input", "param", "const", "state"]);

/**
 * Options of `GraphBuilder.grad`.
 *
 * @example
 * ```ts
 * import type { GradOptions } from "@kiln/kiln";
 * // One segment per layer: each layer's forward runs again in the backward.
 * const o: GradOptions = { checkpoint: /^model\.layers\.\d+/ };
 * ```
 */
export interface GradOptions {
  /**
   * Activation checkpointing. Nodes whose scope this matches form segments,
   * one per matched text (`/^model\.layers\.\d+/`: one per layer). A
   * segment's forward is built again in the backward, right before its
   * gradients, and the rules read those recomputed values: the forward's
   * activations inside the segment then die as the forward passes, and only
   * the values entering and leaving each segment stay until the backward.
   * Costs one more forward of the segments.
   */
  readonly checkpoint?: RegExp;
}

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
export function gradOf(
  g: GraphBuilder,
  loss: Tensor,
  wrt: readonly Tensor[],
  options: GradOptions = {},
): Tensor[] {
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

  // Checkpointed segments: their nodes, and the recomputed values once rebuilt.
  const segmentOf = (k: number): string | undefined => {
    const n = graph.nodes[k];
    if (!options.checkpoint || LEAVES.has(n.op) || n.scope === undefined) return undefined;
    return options.checkpoint.exec(n.scope)?.[0];
  };
  const segments = new Map<string, number[]>();
  for (let k = 0; k <= lossNode; k++) {
    const key = segmentOf(k);
    if (key !== undefined) segments.set(key, [...(segments.get(key) ?? []), k]);
  }
  const again = new Map<number, Tensor>();
  const rebuilt = new Set<string>();
  const rebuild = (key: string) => {
    if (rebuilt.has(key)) return;
    rebuilt.add(key);
    g.recomputing(() => {
      for (const k of segments.get(key)!) {
        const n = graph.nodes[k];
        const ins = n.inputs.map((v) => again.get(v) ?? tensorOf(v));
        const emit = () => g.at(n.site, () => g.apply(n.op as OpName, ins, n.attrs as never));
        const outs = n.scope ? g.scope(n.scope, emit) : emit();
        outs.forEach((t, i) => again.set(n.outputs[i], t));
      }
    });
  };

  const grads = new Map<number, Tensor>();
  grads.set(loss.id, filled(g, 1, loss.shape, loss.dtype));
  // Gradients of slices, kept as pieces until their input's gradient is needed:
  // slices that tile an axis (Mamba's x/z halves, attention's q/k/v) come back
  // as one concat instead of a zero-padded copy each, summed.
  const pieces = new Map<number, SlicePiece[]>();
  const gradOf = (v: number): Tensor | undefined => {
    const ps = pieces.get(v);
    if (!ps) return grads.get(v);
    pieces.delete(v);
    const x = tensorOf(v);
    const joined = joinSlices(g, x.shape as number[], x.dtype, ps);
    const prev = grads.get(v);
    const d = prev ? prev.add(joined) : joined;
    grads.set(v, d);
    return d;
  };
  for (let k = lossNode; k >= 0; k--) {
    const node = graph.nodes[k];
    if (LEAVES.has(node.op)) continue;
    const outGrads = node.outputs.map(gradOf);
    const needs = node.inputs.map(live);
    if (outGrads.every((x) => x === undefined) || !needs.some((x) => x)) continue;
    const sliced = node.op === "slice" && fixedAxis(graph.values[node.inputs[0]].shape, node.attrs);
    if (sliced) {
      const a = node.attrs as unknown as { axis: number; start: number; end: number };
      const rank = graph.values[node.inputs[0]].shape.length;
      const axis = a.axis < 0 ? a.axis + rank : a.axis;
      const list = pieces.get(node.inputs[0]) ?? [];
      list.push({
        axis,
        start: a.start,
        end: a.end,
        grad: outGrads[0]!,
        site: node.site,
        scope: node.scope,
      });
      pieces.set(node.inputs[0], list);
      continue;
    }
    const rule = (GRAD_RULES as Record<string, GradRule<OpAttrs> | undefined>)[node.op];
    if (!rule) {
      const why = (NO_GRADIENT as Record<string, string | undefined>)[node.op];
      throw fail(
        new TypeError(
          `grad: op "${node.op}" has no gradient rule${why ? ` (${why})` : ""} — node %${
            node.outputs[0]
          }${node.scope ? ` in ${node.scope}` : ""}, built at ${node.site}`,
        ),
      );
    }
    const segment = segmentOf(k);
    if (segment !== undefined) rebuild(segment);
    const view = (v: number) => (segment !== undefined && again.get(v)) || tensorOf(v);
    const run = () =>
      rule({
        g,
        attrs: node.attrs as OpAttrs,
        inputs: node.inputs.map(view),
        outputs: node.outputs.map(view),
        grads: outGrads,
        needs,
      });
    // Gradient nodes carry the forward node's call site: plans point at the user's line.
    const res = g.at(node.site, () => g.scope(node.scope ? `${node.scope}.grad` : "grad", run));
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
  return wrt.map((w) => gradOf(w.id) ?? filled(g, 0, w.shape, w.dtype));
}

/** The gradient of one slice of a value: `grad` covers `[start, end)` of `axis`. */
interface SlicePiece {
  axis: number;
  start: number;
  end: number;
  grad: Tensor;
  site: string;
  scope: string | undefined;
}

/** True when a slice node's input has a fixed length along the sliced axis. */
function fixedAxis(shape: readonly (number | string)[], attrs: unknown): boolean {
  const a = attrs as { axis: number };
  const axis = a.axis < 0 ? a.axis + shape.length : a.axis;
  return shape.every((d) => typeof d === "number") && axis >= 0 && axis < shape.length;
}

/**
 * The gradient of a value read through slices: pieces along one axis that do
 * not overlap are laid side by side with zeros in the gaps (one concat); other
 * pieces are each padded with zeros and summed.
 */
function joinSlices(
  g: GraphBuilder,
  shape: readonly number[],
  dtype: Tensor["dtype"],
  pieces: readonly SlicePiece[],
): Tensor {
  const zeros = (axis: number, n: number) => {
    const s = [...shape];
    s[axis] = n;
    return filled(g, 0, s, dtype);
  };
  const lay = (axis: number, ps: readonly SlicePiece[]) => {
    const parts: Tensor[] = [];
    let at = 0;
    for (const p of ps) {
      if (p.start > at) parts.push(zeros(axis, p.start - at));
      parts.push(p.grad);
      at = p.end;
    }
    if (at < shape[axis]) parts.push(zeros(axis, shape[axis] - at));
    return parts.length === 1 ? parts[0] : g.concat(parts, axis);
  };
  const build = () => {
    const axis = pieces[0].axis;
    const sorted = [...pieces].sort((a, b) => a.start - b.start);
    const disjoint = pieces.every((p) => p.axis === axis) &&
      sorted.every((p, i) => i === 0 || sorted[i - 1].end <= p.start);
    if (disjoint) return lay(axis, sorted);
    return pieces.map((p) => lay(p.axis, [p])).reduce((a, b) => a.add(b));
  };
  // Built where the last slice (in program order) was: its site and scope.
  const last = pieces[0];
  return g.at(last.site, () => g.scope(last.scope ? `${last.scope}.grad` : "grad", build));
}
