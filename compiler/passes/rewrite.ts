/**
 * A small graph rebuilder the passes share: walks nodes in order, lets the pass
 * keep, drop or replace each one, and renumbers values densely.
 *
 * @module
 */

import type { Graph, Node, Value } from "../../core/graph.ts";

/** Mutable state of a rebuild. */
export class Rewriter {
  readonly nodes: Node[] = [];
  readonly values: Value[] = [];
  readonly constants = new Map<number, ArrayLike<number>>();
  /** Old value id → new value id. */
  readonly map = new Map<number, number>();
  readonly source: Graph;

  constructor(source: Graph) {
    this.source = source;
  }

  /** New id of an old value (throws if it was dropped: a pass bug). */
  get(old: number): number {
    const v = this.map.get(old);
    if (v === undefined) throw new Error(`internal: value %${old} was dropped but is still used`);
    return v;
  }

  /** Copies `node` with inputs remapped; returns the new node. */
  keep(node: Node): Node {
    return this.add(
      node.op,
      node.inputs.map((v) => this.get(v)),
      node.attrs,
      node.site,
      node.outputs,
      node,
    );
  }

  /** Adds a node whose outputs take the types of `oldOutputs` and map them. */
  add(
    op: string,
    inputs: number[],
    attrs: Node["attrs"],
    site: string,
    oldOutputs: readonly number[],
    like: Pick<Node, "scope" | "recompute" | "backward"> = {},
  ): Node {
    const { scope, recompute, backward } = like;
    const id = this.nodes.length;
    const outputs = oldOutputs.map((old, index) => {
      const src = this.source.values[old];
      const vid = this.values.length;
      this.values.push({ id: vid, node: id, index, shape: src.shape, dtype: src.dtype });
      this.map.set(old, vid);
      return vid;
    });
    const node: Node = {
      id,
      op,
      inputs,
      attrs,
      outputs,
      site,
      ...(scope ? { scope } : {}),
      ...(recompute ? { recompute } : {}),
      ...(backward ? { backward } : {}),
    };
    this.nodes.push(node);
    return node;
  }

  /**
   * Gives the node just added one more output, a value new to the graph;
   * returns its id.
   */
  addOutput(node: Node, shape: Value["shape"], dtype: Value["dtype"]): number {
    if (this.nodes[this.nodes.length - 1] !== node) {
      throw new Error(`internal: addOutput on node ${node.id}, which is not the last one added`);
    }
    const vid = this.values.length;
    this.values.push({ id: vid, node: node.id, index: node.outputs.length, shape, dtype });
    this.nodes[node.id] = { ...node, outputs: [...node.outputs, vid] };
    return vid;
  }

  /** Adds a constant node producing the old value `old` with `data`. */
  constant(old: number, data: ArrayLike<number>, site: string, scope?: string): void {
    const n = this.add("const", [], {}, site, [old], { scope });
    this.constants.set(n.outputs[0], data);
  }

  /** The rebuilt graph with remapped inputs, params and outputs. */
  finish(): Graph {
    const remap = (m: ReadonlyMap<string, number>) => {
      const out = new Map<string, number>();
      for (const [k, v] of m) if (this.map.has(v)) out.set(k, this.get(v));
      return out;
    };
    return {
      nodes: this.nodes,
      values: this.values,
      inputs: remap(this.source.inputs),
      params: remap(this.source.params),
      outputs: remap(this.source.outputs),
      states: remap(this.source.states),
      assigns: remap(this.source.assigns),
      constants: this.constants,
    };
  }
}
