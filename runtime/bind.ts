/**
 * A graph's interface (its named inputs, outputs, parameters and states with
 * their symbolic shapes) and the checks every executable makes against it:
 * inputs bound to symbol values, parameters and states checked before anything
 * is written. Kept apart from the graph so that a prebuilt module, which ships
 * only this interface and its plans, validates exactly as `compile` does.
 *
 * @module
 */

import type { DType, HostArray } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { type Dim, formatShape, numel } from "../core/shape.ts";
import { coerce, type TensorData, unpack } from "../core/host.ts";
import type { Plan } from "../compiler/plan_types.ts";
import type { BoundRun, StateType } from "./backend.ts";
import type { RunOptions } from "./run_options.ts";

/**
 * A named tensor of the interface: its shape (numbers and symbol names) and dtype.
 *
 * @example
 * ```ts
 * import type { TensorSpec } from "@kiln/kiln/runtime";
 * const x: TensorSpec = { name: "x", shape: ["T", 64], dtype: "f32" };
 * ```
 */
export interface TensorSpec {
  /** Its name in the graph. */
  readonly name: string;
  /** Shape; strings are symbolic dims bound at run time. */
  readonly shape: readonly Dim[];
  /** Element type. */
  readonly dtype: DType;
}

/**
 * What callers see of a graph, as plain data (JSON-safe).
 *
 * @example
 * ```ts
 * import type { GraphInterface } from "@kiln/kiln/runtime";
 * const iface: GraphInterface = {
 *   inputs: [{ name: "x", shape: ["N"], dtype: "f32" }],
 *   outputs: [{ name: "y", shape: ["N"], dtype: "f32" }],
 *   params: [],
 *   states: [],
 *   symbols: ["N"],
 * };
 * ```
 */
export interface GraphInterface {
  /** Inputs, in the order runs check them. */
  readonly inputs: readonly TensorSpec[];
  /** Outputs. */
  readonly outputs: readonly TensorSpec[];
  /** Parameters (weights). */
  readonly params: readonly TensorSpec[];
  /** Persistent states. */
  readonly states: readonly TensorSpec[];
  /** Every symbolic dim any value of the graph uses (plans are keyed by these). */
  readonly symbols: readonly string[];
}

/**
 * The interface of `graph`.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * import { graphInterface } from "./bind.ts";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["N"]).mul(2));
 * graphInterface(g.build()).symbols; // ["N"]
 * ```
 */
export function graphInterface(graph: Graph): GraphInterface {
  const specs = (m: ReadonlyMap<string, number>): TensorSpec[] =>
    [...m].map(([name, id]) => ({
      name,
      shape: [...graph.values[id].shape],
      dtype: graph.values[id].dtype,
    }));
  const symbols = new Set<string>();
  for (const v of graph.values) for (const d of v.shape) if (typeof d === "string") symbols.add(d);
  return {
    inputs: specs(graph.inputs),
    outputs: specs(graph.outputs),
    params: specs(graph.params),
    states: specs(graph.states),
    symbols: [...symbols],
  };
}

const names = (specs: readonly TensorSpec[]) => specs.map((s) => s.name).join(", ") || "none";

/**
 * Checks parameters by name against the interface and converts them to their
 * dtypes; unknown names and wrong sizes throw before anything is returned.
 *
 * @example
 * ```ts
 * import { checkParams, type GraphInterface } from "./bind.ts";
 * const iface: GraphInterface = {
 *   inputs: [], outputs: [], states: [], symbols: [],
 *   params: [{ name: "w", shape: [2], dtype: "f32" }],
 * };
 * checkParams(iface, { w: [1, 2] })[0][0]; // "w"
 * ```
 */
export function checkParams(
  iface: GraphInterface,
  params: Record<string, TensorData>,
): [string, HostArray][] {
  const checked: [string, HostArray][] = [];
  for (const [name, data] of Object.entries(params)) {
    const spec = iface.params.find((p) => p.name === name);
    if (!spec) throw new TypeError(`Unknown param "${name}" (known: ${names(iface.params)})`);
    const { values, shape } = unpack(data, `param "${name}"`);
    const n = numel(spec.shape as number[]);
    if (values.length !== n || (shape && formatShape(shape) !== formatShape(spec.shape))) {
      throw new RangeError(
        `Param "${name}" expects ${n} values of shape ${
          formatShape(spec.shape)
        }, got ${values.length}${shape ? ` of shape ${formatShape(shape)}` : ""}`,
      );
    }
    checked.push([name, coerce(values, spec.dtype, `param "${name}"`)]);
  }
  return checked;
}

/**
 * The values of the symbols the graph uses, out of `dims`.
 *
 * @example
 * ```ts
 * import { usedDims } from "./bind.ts";
 * usedDims(["T"], { T: 4, S: 9 }); // { T: 4 }
 * ```
 */
export function usedDims(
  symbols: readonly string[],
  dims: Record<string, number>,
): Record<string, number> {
  const used: Record<string, number> = {};
  for (const d of symbols) if (d in dims) used[d] = dims[d];
  return used;
}

/**
 * Binds symbolic dims from the inputs, checks every input and converts its data;
 * `hasParam` says which parameters have a value (all must).
 *
 * @example
 * ```ts
 * import { bindInputs, type GraphInterface } from "./bind.ts";
 * const iface: GraphInterface = {
 *   inputs: [{ name: "x", shape: ["N", 2], dtype: "f32" }],
 *   outputs: [], params: [], states: [], symbols: ["N"],
 * };
 * bindInputs(iface, { x: [1, 2, 3, 4] }, {}, () => true).dims; // { N: 2 }
 * ```
 */
export function bindInputs(
  iface: GraphInterface,
  inputs: Record<string, TensorData>,
  options: RunOptions,
  hasParam: (name: string) => boolean,
): BoundRun {
  const dims: Record<string, number> = { ...(options.dims ?? {}) };
  for (const [k, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v < 0) {
      throw new RangeError(`Dimension "${k}" must be an integer >= 0, got ${v}`);
    }
  }
  for (const name of Object.keys(inputs)) {
    if (!iface.inputs.some((s) => s.name === name)) {
      throw new TypeError(`Unknown input "${name}" (inputs: ${names(iface.inputs)})`);
    }
  }
  const data = new Map<string, HostArray>();
  const pending: [TensorSpec, HostArray | readonly number[]][] = [];
  for (const spec of iface.inputs) {
    const { name } = spec;
    if (!(name in inputs)) {
      throw new TypeError(`Missing input "${name}" of shape ${formatShape(spec.shape)}`);
    }
    const { values, shape } = unpack(inputs[name], `input "${name}"`);
    if (shape) {
      const wrong = () =>
        new RangeError(
          `Input "${name}" has shape ${formatShape(shape)}, expected ${formatShape(spec.shape)}`,
        );
      if (shape.length !== spec.shape.length) throw wrong();
      spec.shape.forEach((d, k) => {
        if (typeof d === "number") {
          if (d !== shape[k]) throw wrong();
        } else if (dims[d] !== undefined && dims[d] !== shape[k]) {
          throw new RangeError(
            `Input "${name}" binds "${d}" = ${shape[k]} but it is already ${dims[d]}`,
          );
        } else dims[d] = shape[k];
      });
    }
    pending.push([spec, values]);
  }
  // Inputs given as flat arrays: solve for at most one unknown symbol by length.
  for (const [spec, values] of pending) {
    let known = 1;
    const unknown: string[] = [];
    for (const d of spec.shape) {
      if (typeof d === "number") known *= d;
      else if (dims[d] !== undefined) known *= dims[d];
      else unknown.push(d);
    }
    const show = `Input "${spec.name}" ${formatShape(spec.shape)}`;
    if (unknown.length === 1 && known > 0) {
      if (values.length % known !== 0) {
        // No value of the symbol fits: say what would, not "expects NaN values".
        throw new RangeError(
          `${show} expects a multiple of ${known} values (${
            unknown[0]
          } unknown), got ${values.length}`,
        );
      }
      dims[unknown[0]] = values.length / known;
    } else if (unknown.length > 0) {
      // Several unknown symbols, or one beside a zero dimension: any value would do.
      throw new RangeError(`${show}: pass { data, shape } or dims for ${unknown.join(", ")}`);
    }
    const n = spec.shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : dims[d]), 1);
    if (values.length !== n) {
      const syms = [...new Set(spec.shape.filter((d) => typeof d === "string"))];
      const bound = syms.length ? ` (${syms.map((d) => `${d} = ${dims[d]}`).join(", ")})` : "";
      throw new RangeError(`${show} expects ${n} values${bound}, got ${values.length}`);
    }
    data.set(spec.name, coerce(values, spec.dtype, `input "${spec.name}"`));
  }
  for (const p of iface.params) {
    if (!hasParam(p.name)) {
      throw new TypeError(`Param "${p.name}" has no value: pass it with setParams()`);
    }
  }
  return { dims: usedDims(iface.symbols, dims), data };
}

/**
 * The concrete shape and dtype of state `name`: from the last plan run, else
 * from the interface when the state's shape has no symbols.
 *
 * @example
 * ```ts
 * import { type GraphInterface, stateType } from "./bind.ts";
 * const iface: GraphInterface = {
 *   inputs: [], outputs: [], params: [], symbols: [],
 *   states: [{ name: "n", shape: [1], dtype: "u32" }],
 * };
 * stateType(iface, "n", undefined).dtype; // "u32"
 * ```
 */
export function stateType(
  iface: GraphInterface,
  name: string,
  lastPlan: Plan | undefined,
): StateType {
  const spec = iface.states.find((s) => s.name === name);
  if (!spec) throw new TypeError(`Unknown state "${name}" (states: ${names(iface.states)})`);
  const planned = lastPlan?.states.get(name);
  if (planned) return { shape: planned.shape, dtype: spec.dtype };
  if (spec.shape.some((d) => typeof d === "string")) {
    throw new RangeError(
      `State "${name}" ${formatShape(spec.shape)} has no size yet: run the graph first`,
    );
  }
  return { shape: spec.shape as number[], dtype: spec.dtype };
}

/**
 * Checks data for state `name` (of resolved `type`) and converts it.
 *
 * @example
 * ```ts
 * import { checkState } from "./bind.ts";
 * checkState("n", { shape: [1], dtype: "u32" }, [41])[0]; // 41
 * ```
 */
export function checkState(name: string, type: StateType, data: TensorData): HostArray {
  const { values } = unpack(data, `state "${name}"`);
  const n = numel(type.shape);
  if (values.length !== n) {
    throw new RangeError(
      `State "${name}" ${formatShape(type.shape)} expects ${n} values, got ${values.length}`,
    );
  }
  return coerce(values, type.dtype, `state "${name}"`);
}
