/**
 * The DSL: a `GraphBuilder` records ops on `Tensor` handles, checking shapes and
 * dtypes at every call so mistakes surface at the line that made them.
 *
 * @module
 */

import { checkDType, type DType } from "../core/dtype.ts";
import { atSite, callSite } from "../core/errors.ts";
import type { Attrs, Graph, Node, Value } from "../core/graph.ts";
import { checkShape, type Dim, formatShape } from "../core/shape.ts";
import { type OpAttrMap, type OpName, OPS } from "../ops/registry.ts";
import type { OpDef } from "../ops/types.ts";

import { Tensor, type TensorLike } from "./tensor.ts";
import { gradOf, type GradOptions } from "./grad/backward.ts";
export type { GradOptions };

export { type MatmulOptions, Tensor, type TensorLike } from "./tensor.ts";
export { TensorMath } from "./tensor_math.ts";

/**
 * Options of {@linkcode GraphBuilder.attention}.
 *
 * @example
 * ```ts
 * import { type AttentionOptions, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const opts: AttentionOptions = { causal: true, window: 4096 };
 * const q = g.input("q", ["T", 8, 64]);
 * const kv = g.input("kv", ["T", 2, 64]);
 * g.output("o", g.attention(q, kv, kv, undefined, opts));
 * ```
 */
export interface AttentionOptions {
  /** Multiplier of q·k; default 1/√headDim. */
  scale?: number;
  /** Causal mask (default true). */
  causal?: boolean;
  /** Sliding window: query at position i sees keys j with i − j < window; 0/absent = none. */
  window?: number;
  /** Key-range splits (flash-decoding); 0/absent chooses from the shape. */
  splits?: number;
}

/**
 * Records a graph. Declare inputs and parameters, call ops on the tensors, name the
 * outputs, then `build()`.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 16]);
 * const w = g.param("w", [32, 16]);
 * g.output("y", x.matmul(w, { transB: true }).silu());
 * const graph = g.build();
 * ```
 */
export class GraphBuilder {
  #nodes: Node[] = [];
  #values: Value[] = [];
  #inputs = new Map<string, number>();
  #params = new Map<string, number>();
  #outputs = new Map<string, number>();
  #states = new Map<string, number>();
  #assigns = new Map<string, number>();
  #constants = new Map<number, ArrayLike<number>>();
  #scopes: string[] = [];
  #recompute = false;
  #backward = false;
  #site?: string;

  /** The current scope, for new nodes. */
  get #scope(): { scope?: string; recompute?: true; backward?: true } {
    return {
      ...(this.#scopes.length ? { scope: this.#scopes.join(".") } : {}),
      ...(this.#recompute ? { recompute: true as const } : {}),
      // A recomputed forward node computes an activation again: not a backward value.
      ...(this.#backward && !this.#recompute ? { backward: true as const } : {}),
    };
  }

  /**
   * Builds the nodes `build` adds with `site` as their call site: `grad` gives
   * each gradient node the user's line of the forward node it differentiates.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const y = g.at("model.ts:12", () => g.input("x", [4]).exp());
   * g.output("y", y);
   * g.build().nodes.at(-1)!.site; // "model.ts:12"
   * ```
   */
  at<T>(site: string, build: () => T): T {
    const was = this.#site;
    this.#site = site;
    try {
      return build();
    } finally {
      this.#site = was;
    }
  }

  /**
   * Builds the nodes `build` adds as part of a backward or an update
   * (`Node.backward`; `grad` and a training step's optimizer build in here), so
   * `CompileOptions.activationDtype` tells their values from activations.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const w = g.param("w", [4]);
   * const next = g.backwardPhase(() => w.sub(0.1));
   * g.assign(w, next);
   * g.build().nodes.at(-1)!.backward; // true
   * ```
   */
  backwardPhase<T>(build: () => T): T {
    const was = this.#backward;
    this.#backward = true;
    try {
      return build();
    } finally {
      this.#backward = was;
    }
  }

  /**
   * Builds the nodes `build` adds as recomputed copies (`Node.recompute`): what
   * `grad` uses to re-run a checkpointed segment's forward in the backward.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", [4]);
   * const again = g.recomputing(() => x.exp()); // not merged with another x.exp()
   * g.output("y", again);
   * ```
   */
  recomputing<T>(build: () => T): T {
    const was = this.#recompute;
    this.#recompute = true;
    try {
      return build();
    } finally {
      this.#recompute = was;
    }
  }

  /**
   * Builds the nodes `build` adds inside the scope `name` (nested scopes join with
   * "."): every node, and so every planned kernel, then says which part of the model
   * it belongs to — as module paths do in PyTorch.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 8]);
   * const y = g.scope("model.layers.0.mlp", () => x.matmul(g.param("w", [8, 8]), { transB: true }).silu());
   * g.output("y", y);
   * g.build().nodes.at(-1)!.scope; // "model.layers.0.mlp"
   * ```
   */
  scope<T>(name: string, build: () => T): T {
    if (typeof name !== "string" || name.length === 0) {
      throw atSite(
        new TypeError(`scope name must be a non-empty string, got ${JSON.stringify(name)}`),
        callSite(),
      );
    }
    this.#scopes.push(name);
    try {
      return build();
    } finally {
      this.#scopes.pop();
    }
  }

  #leaf(
    op: "input" | "param" | "const" | "state",
    shape: Dim[],
    dtype: DType,
    attrs: Attrs,
  ): Tensor {
    const id = this.#values.length;
    const node: Node = {
      id: this.#nodes.length,
      op,
      inputs: [],
      attrs,
      outputs: [id],
      site: this.#site ?? callSite(),
      ...this.#scope,
    };
    this.#nodes.push(node);
    this.#values.push({ id, node: node.id, index: 0, shape, dtype });
    return new Tensor(this, id, shape, dtype);
  }

  #checkName(name: unknown, kind: string, map: Map<string, number>): string {
    if (typeof name !== "string" || name.length === 0) {
      throw atSite(
        new TypeError(`${kind} name must be a non-empty string, got ${JSON.stringify(name)}`),
        callSite(),
      );
    }
    if (map.has(name)) {
      throw atSite(new TypeError(`${kind} "${name}" is declared twice`), callSite());
    }
    return name;
  }

  /**
   * Declares a run-time input. Symbolic dims (strings) are bound when it runs.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const ids = g.input("ids", ["T"], "u32"); // length bound at run time
   * ```
   */
  input(name: string, shape: readonly Dim[], dtype: DType = "f32"): Tensor {
    this.#checkName(name, "Input", this.#inputs);
    const s = checkShape(shape, `input "${name}"`);
    const t = this.#leaf("input", [...s], checkDType(dtype, `input "${name}"`), { name });
    this.#inputs.set(name, t.id);
    return t;
  }

  /**
   * Declares a named parameter (weight), uploaded once and kept on the device.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const w = g.param("w", [32, 16]); // uploaded with compile(..., { params }) or setParams
   * ```
   */
  param(name: string, shape: readonly Dim[], dtype: DType = "f32"): Tensor {
    this.#checkName(name, "Param", this.#params);
    const s = checkShape(shape, `param "${name}"`);
    if (s.some((d) => typeof d === "string")) {
      throw atSite(
        new TypeError(`Param "${name}" must have a concrete shape, got ${formatShape(s)}`),
        callSite(),
      );
    }
    const t = this.#leaf("param", [...s], checkDType(dtype, `param "${name}"`), { name });
    this.#params.set(name, t.id);
    return t;
  }

  /**
   * Declares persistent device state (a KV cache, an SSM state): it keeps its value
   * between runs, starts at zero, and is updated with {@linkcode GraphBuilder.assign}.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const count = g.state("count", [1]);
   * g.assign(count, count.add(1)); // counts runs
   * g.output("n", count);
   * ```
   */
  state(name: string, shape: readonly Dim[], dtype: DType = "f32"): Tensor {
    this.#checkName(name, "State", this.#states);
    const s = checkShape(shape, `state "${name}"`);
    const t = this.#leaf("state", [...s], checkDType(dtype, `state "${name}"`), { name });
    this.#states.set(name, t.id);
    return t;
  }

  /**
   * At the end of each run, `state` takes `value` (same shape and dtype).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const total = g.state("total", [4]);
   * const x = g.input("x", [4]);
   * g.assign(total, total.add(x)); // running sum across runs
   * g.output("total", total);
   * ```
   */
  assign(state: Tensor, value: Tensor): void {
    const site = callSite();
    const name = [...this.#states].find(([, id]) => id === state?.id && state.builder === this)
      ?.[0];
    if (name === undefined) {
      throw atSite(
        new TypeError("assign: first argument must be a state tensor of this graph"),
        site,
      );
    }
    if (!(value instanceof Tensor) || value.builder !== this) {
      throw atSite(
        new TypeError(`assign: value for state "${name}" is not a Tensor of this graph`),
        site,
      );
    }
    if (formatShape(value.shape) !== formatShape(state.shape) || value.dtype !== state.dtype) {
      throw atSite(
        new RangeError(
          `assign: state "${name}" is ${state.dtype}${
            formatShape(state.shape)
          } but the value is ${value.dtype}${formatShape(value.shape)}`,
        ),
        site,
      );
    }
    if (this.#assigns.has(name)) {
      throw atSite(new TypeError(`assign: state "${name}" is assigned twice`), site);
    }
    this.#assigns.set(name, value.id);
  }

  /**
   * A constant tensor; a single number makes a scalar of shape `[]`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const table = g.constant([1, 2, 3, 4, 5, 6], [2, 3]);
   * const half = g.constant(0.5); // scalar, shape []
   * g.output("y", table.mul(half));
   * ```
   */
  constant(
    data: ArrayLike<number> | number,
    shape?: readonly number[],
    dtype: DType = "f32",
  ): Tensor {
    const values = typeof data === "number" ? [data] : Array.from(data);
    const s = checkShape(shape ?? (typeof data === "number" ? [] : [values.length]), "constant");
    const n = (s as number[]).reduce((a, b) => a * b, 1);
    if (n !== values.length) {
      throw atSite(
        new RangeError(
          `Constant has ${values.length} values but shape ${formatShape(s)} holds ${n}`,
        ),
        callSite(),
      );
    }
    const t = this.#leaf("const", [...s], checkDType(dtype, "constant"), {});
    this.#constants.set(t.id, values);
    return t;
  }

  /**
   * Lifts a number to a scalar constant of `dtype`; tensors pass through.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const one = g.lift(1, "f32"); // scalar constant
   * g.output("y", g.input("x", [4]).add(one));
   * ```
   */
  lift(x: TensorLike, dtype: DType): Tensor {
    if (x instanceof Tensor) {
      if (x.builder !== this) {
        throw atSite(new TypeError(`Tensor ${x} belongs to another graph`), callSite());
      }
      return x;
    }
    if (typeof x !== "number") {
      throw atSite(new TypeError(`Expected a Tensor or a number, got ${typeof x}`), callSite());
    }
    return this.constant(x, [], dtype);
  }

  /**
   * Joins tensors along `axis` (all other dims equal).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const a = g.input("a", [2, 3]);
   * const b = g.input("b", [4, 3]);
   * g.output("ab", g.concat([a, b], 0)); // f32[6, 3]
   * ```
   */
  concat(xs: readonly Tensor[], axis = 0): Tensor {
    return this.apply("concat", [...xs], { axis })[0];
  }

  /**
   * Fused attention (online softmax, no score matrix in memory) of q `[T, Hq, D]`
   * over k, v `[S, Hkv, D]` with grouped-query heads. Query t sits at position
   * `pos[0] + t`, key j at j; keys at or past `pos[0] + T` are ignored (a KV cache of
   * capacity S). `pos` defaults to a constant 0.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const q = g.input("q", ["T", 8, 64]);
   * const k = g.input("k", ["T", 2, 64]);
   * const v = g.input("v", ["T", 2, 64]);
   * g.output("o", g.attention(q, k, v, undefined, { causal: true, window: 4096 }));
   * ```
   */
  attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pos?: Tensor,
    options: AttentionOptions = {},
  ): Tensor {
    const d = q?.shape?.[q.shape.length - 1];
    const p = pos ?? this.constant([0], [1], "u32");
    return this.apply("attention", [q, k, v, p], {
      scale: options.scale ?? (typeof d === "number" && d > 0 ? 1 / Math.sqrt(d) : 1),
      causal: options.causal ?? true,
      window: options.window ?? 0,
      splits: options.splits ?? 0,
    })[0];
  }

  /**
   * Names `t` as a graph output.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).relu());
   * ```
   */
  output(name: string, t: Tensor): void {
    this.#checkName(name, "Output", this.#outputs);
    if (!(t instanceof Tensor) || t.builder !== this) {
      throw atSite(new TypeError(`Output "${name}" must be a Tensor of this graph`), callSite());
    }
    this.#outputs.set(name, t.id);
  }

  /**
   * Applies a registered op: checks arity, attribute names and the shape/dtype rule,
   * and records the node. Errors name the op, operands and the caller's line.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 16]);
   * const [y] = g.apply("softmax", [x], { axis: -1 }); // same as x.softmax(-1)
   * g.output("y", y);
   * ```
   */
  apply<K extends OpName>(op: K, inputs: readonly Tensor[], attrs: OpAttrMap[K]): Tensor[] {
    const site = this.#site ?? callSite();
    const def = (OPS as unknown as Record<string, OpDef<OpAttrMap[K]>>)[op];
    const [lo, hi] = typeof def.arity === "number" ? [def.arity, def.arity] : def.arity;
    if (inputs.length < lo || inputs.length > hi) {
      throw atSite(
        new RangeError(
          `${op}: expects ${lo === hi ? lo : `${lo}..${hi}`} inputs, got ${inputs.length}`,
        ),
        site,
      );
    }
    for (const key of Object.keys(attrs)) {
      if (!def.attrNames.includes(key)) {
        throw atSite(
          new TypeError(
            `${op}: unknown attribute "${key}" (known: ${def.attrNames.join(", ") || "none"})`,
          ),
          site,
        );
      }
    }
    for (const [key, v] of Object.entries(attrs)) {
      // A non-finite attribute would reach a shader as `inf`/`nan` text and fail
      // there as a pipeline error: refuse it here, at the user's call.
      const bad = typeof v === "number"
        ? !Number.isFinite(v)
        : Array.isArray(v) && v.some((x) => typeof x === "number" && !Number.isFinite(x));
      if (bad) {
        throw atSite(
          new RangeError(
            `${op}: attribute "${key}" must be finite, got ${
              Array.isArray(v) ? `[${v.join(", ")}]` : v
            }`,
          ),
          site,
        );
      }
    }
    for (const [i, t] of inputs.entries()) {
      if (!(t instanceof Tensor) || t.builder !== this) {
        throw atSite(new TypeError(`${op}: operand ${i} is not a Tensor of this graph`), site);
      }
    }
    let outs;
    try {
      outs = def.infer(inputs.map((t) => this.#values[t.id]), attrs);
    } catch (e) {
      if (e instanceof Error) throw atSite(e, site);
      throw e;
    }
    const node: Node = {
      id: this.#nodes.length,
      op,
      inputs: inputs.map((t) => t.id),
      attrs: attrs as Attrs,
      outputs: outs.map((_, i) => this.#values.length + i),
      site,
      ...this.#scope,
    };
    this.#nodes.push(node);
    return outs.map((o, i) => {
      const id = node.outputs[i];
      this.#values.push({ id, node: node.id, index: i, shape: o.shape, dtype: o.dtype });
      return new Tensor(this, id, o.shape, o.dtype);
    });
  }

  /**
   * Gradients of the scalar `loss` with respect to each of `wrt`, built as new
   * nodes of this graph (reverse mode, one rule per op: `compiler/grad/`), so
   * the same passes fuse them and the same planner places them. A tensor the
   * loss does not depend on gets zeros; an op on the path without a gradient
   * rule is a TypeError naming it. `checkpoint` recomputes the activations of
   * scopes it matches in the backward instead of keeping them (see
   * {@linkcode GradOptions}).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", [4]);
   * const w = g.param("w", [4]);
   * const [dw] = g.grad(x.mul(w).sum(0), [w]); // = x
   * g.output("dw", dw);
   * ```
   */
  grad(loss: Tensor, wrt: readonly Tensor[], options: GradOptions = {}): Tensor[] {
    return this.backwardPhase(() => gradOf(this, loss, wrt, options));
  }

  /**
   * The graph recorded so far, named outputs or not (what `grad` walks).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.input("x", [4]).exp();
   * g.peek().nodes.length; // 2
   * ```
   */
  peek(): Graph {
    return {
      nodes: [...this.#nodes],
      values: [...this.#values],
      inputs: new Map(this.#inputs),
      params: new Map(this.#params),
      outputs: new Map(this.#outputs),
      states: new Map(this.#states),
      assigns: new Map(this.#assigns),
      constants: new Map(this.#constants),
    };
  }

  /**
   * Freezes the recorded graph. Throws if no output was named.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).exp());
   * const graph = g.build();
   * graph.outputs.has("y"); // true
   * ```
   */
  build(): Graph {
    if (this.#outputs.size === 0 && this.#assigns.size === 0) {
      throw atSite(
        new TypeError("Graph has no outputs: name at least one with output()"),
        callSite(),
      );
    }
    return this.peek();
  }
}
