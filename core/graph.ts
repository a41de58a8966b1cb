/**
 * The graph IR: typed values produced by nodes, with symbolic shapes.
 *
 * The IR is pure data — no methods that mutate it outside the builder — so passes
 * can copy and rewrite it freely, and later passes (autodiff) can walk it.
 *
 * @module
 */

import type { DType } from "./dtype.ts";
import { formatShape, type Shape } from "./shape.ts";

/**
 * Type of one value: shape (possibly symbolic) and dtype.
 *
 * @example
 * ```ts
 * import type { TensorType } from "@kiln/kiln";
 * const t: TensorType = { shape: ["T", 512], dtype: "f32" };
 * ```
 */
export interface TensorType {
  /** Dimensions; strings are symbols bound at run time. */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: DType;
}

/**
 * Attribute values an op can carry.
 *
 * @example
 * ```ts
 * import type { AttrValue } from "@kiln/kiln";
 * const values: AttrValue[] = [-1, "softmax_topk", true, [1, 0, 2], ["T", 64], null];
 * ```
 */
export type AttrValue =
  | number
  | string
  | boolean
  | readonly number[]
  | readonly (number | string)[]
  | null;

/**
 * Op attributes.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [4, 8]).sum(-1));
 * const node = g.build().nodes.find((n) => n.op === "sum")!;
 * node.attrs; // { axis: -1, keepdims: false }
 * ```
 */
export type Attrs = Readonly<Record<string, AttrValue>>;

/**
 * A node: one op application with its inputs, attributes and produced values.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type Node } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [4]).exp());
 * const nodes: readonly Node[] = g.build().nodes;
 * nodes.map((n) => n.op); // ["input", "exp"]
 * ```
 */
export interface Node {
  /** Index in `Graph.nodes`. */
  readonly id: number;
  /** Op name from the registry, or `input`, `param`, `const`, `state`. */
  readonly op: string;
  /** Value ids consumed. */
  readonly inputs: readonly number[];
  /** Op attributes. */
  readonly attrs: Attrs;
  /** Value ids produced. */
  readonly outputs: readonly number[];
  /** `file:line` of the user's call that made this node. */
  readonly site: string;
  /**
   * Where in the model the node was built, as a dotted path
   * (`model.layers.3.self_attn`; see `GraphBuilder.scope`); absent at the top level.
   */
  readonly scope?: string;
  /**
   * True for a forward node recomputed inside the backward (activation
   * checkpointing, `GraphBuilder.grad`'s `checkpoint`): never merged with its
   * original, so the forward's activations can die before the backward runs.
   */
  readonly recompute?: true;
  /**
   * True for a node of a gradient or an update (`GraphBuilder.grad`, a training
   * step's optimizer): what it computes is not a forward activation, so
   * `CompileOptions.activationDtype` leaves its results at full precision.
   */
  readonly backward?: true;
}

/**
 * A value: the `index`th result of node `node`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type Value } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 8]).sum(-1));
 * const graph = g.build();
 * const y: Value = graph.values[graph.outputs.get("y")!];
 * [y.shape, y.dtype]; // [["T"], "f32"]
 * ```
 */
export interface Value extends TensorType {
  /** Index in `Graph.values`. */
  readonly id: number;
  /** Producing node. */
  readonly node: number;
  /** Which result of that node. */
  readonly index: number;
}

/**
 * A whole graph: nodes in topological order, named inputs, params and outputs.
 *
 * @example
 * ```ts
 * import { type Graph, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", [4]).mul(g.param("w", [4])));
 * const graph: Graph = g.build();
 * [...graph.inputs.keys(), ...graph.params.keys()]; // ["x", "w"]
 * ```
 */
export interface Graph {
  /** Nodes, topologically ordered (a node's inputs come from earlier nodes). */
  readonly nodes: readonly Node[];
  /** Values, indexed by id. */
  readonly values: readonly Value[];
  /** Input name → value id. */
  readonly inputs: ReadonlyMap<string, number>;
  /** Parameter (weight) name → value id. */
  readonly params: ReadonlyMap<string, number>;
  /** Output name → value id. */
  readonly outputs: ReadonlyMap<string, number>;
  /** Persistent state name → the value that reads it at the start of a run. */
  readonly states: ReadonlyMap<string, number>;
  /** State name → the value written back to it at the end of a run. */
  readonly assigns: ReadonlyMap<string, number>;
  /** Constant data by value id. */
  readonly constants: ReadonlyMap<number, ArrayLike<number>>;
}

/** Consumers of each value: value id → node ids, in order. */
export function consumers(graph: Graph): Map<number, number[]> {
  const uses = new Map<number, number[]>();
  for (const n of graph.nodes) {
    for (const v of n.inputs) {
      const list = uses.get(v);
      if (list) list.push(n.id);
      else uses.set(v, [n.id]);
    }
  }
  return uses;
}

function formatAttrs(attrs: Attrs): string {
  const parts = Object.entries(attrs).map(([k, v]) =>
    `${k}=${Array.isArray(v) ? `[${v.join(",")}]` : JSON.stringify(v)}`
  );
  return parts.length ? ` {${parts.join(", ")}}` : "";
}

/**
 * A readable text dump, one line per node:
 * `%3: f32[T, 512] = matmul(%1, %2) {transB=true}  # model.ts:12`.
 *
 * @example
 * ```ts
 * import { dumpGraph, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 8]).exp());
 * console.log(dumpGraph(g.build())); // one line per node, with the call site
 * ```
 */
export function dumpGraph(graph: Graph): string {
  const lines: string[] = [];
  const nameOf = new Map<number, string>();
  for (const [name, id] of graph.inputs) nameOf.set(id, `input "${name}"`);
  for (const [name, id] of graph.params) nameOf.set(id, `param "${name}"`);
  for (const [name, id] of graph.states) nameOf.set(id, `state "${name}"`);
  for (const n of graph.nodes) {
    const outs = n.outputs.map((v) => {
      const val = graph.values[v];
      return `%${v}: ${val.dtype}${formatShape(val.shape)}`;
    }).join(", ");
    const rhs = nameOf.get(n.outputs[0]) ??
      `${n.op}(${n.inputs.map((v) => `%${v}`).join(", ")})${formatAttrs(n.attrs)}`;
    const leaf = n.op === "input" || n.op === "param" || n.op === "state";
    const consts = n.op === "const" ? graph.constants.get(n.outputs[0]) : undefined;
    const shown = consts && consts.length <= 8 ? `const [${Array.from(consts).join(", ")}]` : rhs;
    lines.push(`${outs} = ${shown}${leaf ? "" : `  # ${n.site}`}`);
  }
  for (const [name, id] of graph.outputs) lines.push(`output "${name}" = %${id}`);
  for (const [name, id] of graph.assigns) lines.push(`state "${name}" ← %${id}`);
  return lines.join("\n");
}
