/**
 * The CPU backend: interprets the optimised graph node by node with each op's
 * CPU reference (the oracle of every GPU test, and a device for tiny work).
 *
 * @module
 */

import { allocHost, type DType, type HostArray, toHost } from "../core/dtype.ts";
import type { Graph, Node } from "../core/graph.ts";
import type { HostTensor } from "../core/types.ts";
import type { Plan } from "../compiler/plan_types.ts";
import { opDef } from "../ops/registry.ts";
import type { Backend, BoundRun, StateType } from "./backend.ts";
import type { GpuExecutable } from "./gpu_executor.ts";

/** Parameters and states of CPU executables (shared by those compiled with `shareWith`). */
export class CpuStore {
  /** Parameter data by name. */
  readonly params: Map<string, HostArray> = new Map();
  /** State data by name. */
  readonly states: Map<string, HostArray> = new Map();
  /** Executables using this store; the last one to be disposed empties it. */
  users = 0;
}

/**
 * Hears each op node the CPU interpreter runs, after it ran: the node, its
 * input tensors and its output tensors (the interpreter's own arrays: read
 * them, do not keep or change them).
 *
 * @example
 * ```ts
 * import type { CpuObserver } from "./cpu_backend.ts";
 * const seen: string[] = [];
 * const observer: CpuObserver = (node) => seen.push(node.op);
 * ```
 */
export type CpuObserver = (
  node: Node,
  inputs: readonly HostTensor[],
  outputs: readonly HostTensor[],
) => void;

/** Runs a graph with the ops' CPU references. */
export class CpuBackend implements Backend {
  readonly #graph: Graph;
  readonly store: CpuStore;
  /** Hears every node run (`Executable.observe`). */
  observer?: CpuObserver;
  /** Copies kept by `copyStates`. */
  readonly #saved = new Map<string, HostArray>();

  /** A backend for `graph` keeping parameters and states in `store`. */
  constructor(graph: Graph, store: CpuStore = new CpuStore()) {
    this.#graph = graph;
    this.store = store;
    this.store.users++;
  }

  setParam(name: string, data: HostArray): void {
    this.store.params.set(name, data);
  }

  hasParam(name: string): boolean {
    return this.store.params.has(name);
  }

  plan(): Plan {
    throw new TypeError("Plans exist only for GPU devices; the CPU device interprets the graph");
  }

  get lastPlan(): Plan | undefined {
    return undefined;
  }

  run(bound: BoundRun): Promise<{ outputs: Record<string, HostTensor> }> {
    const outputs = runCpu(
      this.#graph,
      bound.dims,
      bound.data,
      this.store.params,
      this.store.states,
      this.observer,
    );
    return Promise.resolve({ outputs });
  }

  async submit(bound: BoundRun): Promise<void> {
    await this.run(bound);
  }

  compiled(): boolean {
    return true; // the interpreter compiles nothing
  }

  prepare(): Promise<GpuExecutable> {
    return Promise.reject(
      new TypeError("prepare() needs a GPU device; the CPU device has no plan"),
    );
  }

  readStates(
    states: readonly (StateType & { name: string })[],
  ): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const { name, shape, dtype } of states) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = this.store.states.get(name) ?? allocHost(dtype, n);
      out[name] = { data: data.slice(), shape, dtype };
    }
    return Promise.resolve(out);
  }

  writeState(name: string, data: HostArray): void {
    this.store.states.set(name, data.slice());
  }

  resetStates(): void {
    this.store.states.clear();
  }

  copyStates(
    states: readonly (StateType & { name: string })[],
    direction: "save" | "restore",
  ): void {
    if (direction === "restore") {
      const missing = states.find((s) => !this.#saved.has(s.name));
      if (missing) throw new TypeError(`restoreStates: state "${missing.name}" was never saved`);
    }
    for (const { name, shape, dtype } of states) {
      if (direction === "restore") this.store.states.set(name, this.#saved.get(name)!.slice());
      else {
        const n = shape.reduce((a, b) => a * b, 1);
        this.#saved.set(name, (this.store.states.get(name) ?? allocHost(dtype, n)).slice());
      }
    }
  }

  paramBuffer(): GPUBuffer | undefined {
    return undefined;
  }

  dispose(): void {
    // Drop the host copies of weights and states so they can be collected.
    if (--this.store.users === 0) {
      this.store.params.clear();
      this.store.states.clear();
    }
  }
}

/** Interprets a graph on the CPU with each op's reference; `observer` hears each op node run. */
export function runCpu(
  graph: Graph,
  dims: Record<string, number>,
  inputs: ReadonlyMap<string, HostArray>,
  params: ReadonlyMap<string, HostArray>,
  states: Map<string, HostArray> = new Map(),
  observer?: CpuObserver,
): Record<string, HostTensor> {
  const vals = new Map<number, HostTensor>();
  const shapeOf = (id: number) =>
    graph.values[id].shape.map((d) => (typeof d === "number" ? d : dims[d]));
  for (const [name, id] of graph.inputs) {
    vals.set(id, { data: inputs.get(name)!, shape: shapeOf(id), dtype: graph.values[id].dtype });
  }
  for (const [name, id] of graph.params) {
    vals.set(id, { data: params.get(name)!, shape: shapeOf(id), dtype: graph.values[id].dtype });
  }
  for (const [name, id] of graph.states) {
    const v = graph.values[id];
    const shape = shapeOf(id);
    let data = states.get(name);
    if (!data || data.length !== shape.reduce((a, b) => a * b, 1)) {
      data = allocHost(v.dtype, shape.reduce((a, b) => a * b, 1));
      states.set(name, data);
    }
    vals.set(id, { data, shape, dtype: v.dtype });
  }
  for (const node of graph.nodes) {
    if (node.op === "input" || node.op === "param" || node.op === "state") continue;
    if (node.op === "const") {
      const v = graph.values[node.outputs[0]];
      vals.set(v.id, {
        data: toHost(graph.constants.get(v.id)!, v.dtype),
        shape: shapeOf(v.id),
        dtype: v.dtype,
      });
      continue;
    }
    const outs = node.outputs.map((id) => ({
      shape: shapeOf(id),
      dtype: graph.values[id].dtype as DType,
    }));
    const ins = node.inputs.map((v) => vals.get(v)!);
    const res = opDef(node.op).reference(ins, node.attrs, outs);
    const produced = node.outputs.map((id, i) => {
      const t = { data: res[i], shape: outs[i].shape, dtype: outs[i].dtype };
      vals.set(id, t);
      return t;
    });
    observer?.(node, ins, produced);
  }
  const out: Record<string, HostTensor> = {};
  for (const [name, id] of graph.outputs) out[name] = vals.get(id)!;
  // States update after every output was taken, as on the device.
  for (const [name, id] of graph.assigns) states.set(name, vals.get(id)!.data.slice());
  return out;
}
