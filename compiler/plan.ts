/**
 * Specialises a fused schedule for concrete dimensions and a device: emits WGSL for
 * every group, splits kernels that would exceed the device's binding limits, and
 * plans memory so intermediate buffers are reused once their last reader has run.
 *
 * @module
 */

import { type DType, paddedBytes } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { bindShape, type DimBindings, formatShape, numel } from "../core/shape.ts";
import { type BufferRef, emitCluster, KernelBuilder } from "./codegen.ts";
import type { Cluster, Group, Schedule } from "./passes/fuse.ts";
import { opDef } from "../ops/registry.ts";
import { emitterOf, type Target, targetOf } from "../ops/targets.ts";
import type {
  DeviceCaps,
  KernelChoice,
  KernelOperand,
  KernelSymbol,
  ScratchSpec,
} from "../ops/types.ts";
import { flatLaunch, flatMain } from "../ops/wgsl/grid.ts";

/**
 * What a buffer slot holds.
 *
 * @example
 * ```ts
 * import type { SlotKind } from "@kiln/kiln";
 * const kind: SlotKind = "temp"; // only temp slots are shared between values
 * ```
 */
export type SlotKind = "input" | "output" | "param" | "const" | "state" | "temp";

/**
 * One device buffer of the plan.
 *
 * @example
 * ```ts ignore
 * import { compile, type Slot, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * const temps: Slot[] = plan.slots.filter((s) => s.kind === "temp");
 * ```
 */
export interface Slot {
  /** Size in bytes (multiple of 4). */
  bytes: number;
  /** Role; only `temp` slots are shared between values. */
  readonly kind: SlotKind;
  /** Input/output/param name, where it has one. */
  readonly name?: string;
  /** For `const` slots: the value id whose data fills it. */
  readonly value?: number;
}

/**
 * A resolved binding: a range of a slot.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * for (const b of plan.kernels[0].bindings) console.log(b.slot, b.offset, b.size, b.access);
 * ```
 */
export interface SlotBinding {
  /** Slot index. */
  readonly slot: number;
  /** Byte offset. */
  readonly offset: number;
  /** Byte size. */
  readonly size: number;
  /** Access mode. */
  readonly access: "read" | "read_write";
}

/**
 * A buffer operation recorded between dispatches.
 *
 * @example
 * ```ts
 * import type { BufferOp } from "@kiln/kiln";
 * const ops: BufferOp[] = [
 *   { kind: "zero", slot: 3, offset: 0, size: 256 },
 *   { kind: "copy", from: 1, fromOffset: 0, to: 2, toOffset: 0, size: 1024 },
 * ];
 * ```
 */
export type BufferOp =
  | { readonly kind: "zero"; readonly slot: number; readonly offset: number; readonly size: number }
  | {
    readonly kind: "copy";
    readonly from: number;
    readonly fromOffset: number;
    readonly to: number;
    readonly toOffset: number;
    readonly size: number;
  };

/**
 * One dispatch of the plan.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * const k = plan.kernels[0];
 * console.log(k.label, k.workgroups, k.ops); // "matmul+silu" …
 * console.log(k.code); // the WGSL
 * ```
 */
export interface PlannedKernel {
  /** Short name, e.g. `matmul+add+silu`. */
  readonly label: string;
  /** The op whose lowering emitted it, or `"fused"` for a fused elementwise cluster. */
  readonly op: string;
  /** Graph node of that op (of the cluster's first node when fused). */
  readonly node: number;
  /** Which step of the op this kernel is (e.g. MoE's `"router"`), where the op says. */
  readonly role?: string;
  /** The algorithm the lowering chose and why, where it chose. */
  readonly choice?: KernelChoice;
  /** The device class its kernel shapes were chosen for. */
  readonly target: Target;
  /** Ops fused into it with their node ids and call sites. */
  readonly ops: readonly string[];
  /** Full WGSL source. */
  readonly code: string;
  /** Workgroups dispatched. */
  readonly workgroups: readonly [number, number, number];
  /** Buffers bound, in binding order. */
  readonly bindings: readonly SlotBinding[];
  /** Buffer operations before this kernel: zeroing scratch, copies for in-place ops. */
  readonly before: readonly BufferOp[];
}

/**
 * Where a named input or output lives and what it looks like.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * const y = plan.outputs.get("y")!;
 * [y.shape, y.dtype]; // [[128, 1024], "f32"]
 * ```
 */
export interface PlannedTensor {
  /** Value id. */
  readonly value: number;
  /** Slot index. */
  readonly slot: number;
  /** Byte offset in the slot. */
  readonly offset: number;
  /** Concrete shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/**
 * A compiled, device-specific execution plan for one binding of the symbolic dims.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * console.log(plan.kernels.length, plan.peakBytes);
 * ```
 */
export interface Plan {
  /** Symbol values this plan was built for. */
  readonly dims: DimBindings;
  /** Dispatches in order. */
  readonly kernels: readonly PlannedKernel[];
  /** Buffers. */
  readonly slots: readonly Slot[];
  /** Named inputs. */
  readonly inputs: ReadonlyMap<string, PlannedTensor>;
  /** Named outputs. */
  readonly outputs: ReadonlyMap<string, PlannedTensor>;
  /** Named params. */
  readonly params: ReadonlyMap<string, PlannedTensor>;
  /** Named persistent states. */
  readonly states: ReadonlyMap<string, PlannedTensor>;
  /** Copies after the last kernel: new state values into their state buffers. */
  readonly after: readonly BufferOp[];
  /** Bytes of all non-param buffers (inputs, outputs, intermediates, constants). */
  readonly peakBytes: number;
  /** Bytes of intermediates if nothing were reused, for comparison. */
  readonly unplannedBytes: number;
}

interface Emitted {
  readonly label: string;
  readonly op: string;
  readonly node: number;
  readonly role?: string;
  readonly choice?: KernelChoice;
  readonly target: Target;
  readonly ops: string[];
  readonly code: string;
  readonly workgroups: readonly [number, number, number];
  readonly bindings: readonly {
    ref: BufferRef;
    offset: number;
    size: number;
    access: "read" | "read_write";
  }[];
}

interface Work {
  readonly kernels: Emitted[];
  readonly scratch: readonly ScratchSpec[];
  /** Values written (materialised) by this work item. */
  readonly writes: readonly number[];
  /** For alias items: [output, input]. */
  readonly alias?: readonly [number, number];
  /** In-place pairs [output value, input value] of a kernel op. */
  readonly inplace?: readonly (readonly [number, number])[];
}

/** Builds the plan of `schedule` for `dims` on a device with `caps`. */
export function buildPlan(schedule: Schedule, dims: DimBindings, caps: DeviceCaps): Plan {
  const graph = schedule.graph;
  if (!caps.f16) {
    const half = graph.values.find((v) => v.dtype === "f16");
    if (half) {
      throw new TypeError(
        `${
          describeValue(graph, half.id)
        } is f16, but this adapter lacks the shader-f16 feature: use f32`,
      );
    }
  }
  const shapes = graph.values.map((v) => bindShape(v.shape, dims, describeValue(graph, v.id)));
  const shapeOf = (v: number) => shapes[v];
  const outputs = new Set(graph.outputs.values());
  const items: Work[] = [];
  for (const g of schedule.groups) items.push(...emitGroup(graph, g, shapeOf, caps, outputs));
  return allocate(graph, items, shapes, dims);
}

function describeValue(graph: Graph, v: number): string {
  const node = graph.nodes[graph.values[v].node];
  for (const [name, id] of graph.inputs) if (id === v) return `input "${name}"`;
  return `${node.op} %${v} (at ${node.site})`;
}

function nodeLabel(graph: Graph, n: number): string {
  return `${graph.nodes[n].op}#${n} @ ${graph.nodes[n].site}`;
}

function emitGroup(
  graph: Graph,
  g: Group,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
  outputs: Set<number>,
): Work[] {
  if (g.kind === "alias") {
    const node = graph.nodes[g.node];
    return [{ kernels: [], scratch: [], writes: [], alias: [node.outputs[0], node.inputs[0]] }];
  }
  if (g.kind === "fused") return emitFusedSplit(graph, g.cluster, shapeOf, caps, outputs);
  // Kernel template: try fully fused, then shed the epilogue, then the prologues.
  const attempts: Group[] = [g];
  if (g.epilogue) attempts.push({ ...g, epilogue: undefined, epilogueAliases: undefined });
  if (g.prologues.some((p) => p)) {
    attempts.push({
      ...g,
      epilogue: undefined,
      epilogueAliases: undefined,
      prologues: g.prologues.map(() => undefined),
    });
  }
  for (const attempt of attempts) {
    if (attempt.kind !== "kernel") continue;
    const work = emitKernelGroup(graph, attempt, shapeOf, caps);
    if (work.kernels.every((k) => k.bindings.length <= caps.maxStorageBuffers)) {
      const before: Work[] = [];
      const after: Work[] = [];
      g.prologues.forEach((p, j) => {
        if (p && !attempt.prologues[j]) {
          before.push(...emitFusedSplit(graph, p, shapeOf, caps, outputs));
        }
      });
      if (g.epilogue && !attempt.epilogue) {
        // The reshapes the epilogue read become views of the stored result again.
        for (const a of g.epilogueAliases ?? []) {
          after.push({
            kernels: [],
            scratch: [],
            writes: [],
            alias: [a, graph.nodes[g.node].outputs[0]],
          });
        }
        after.push(...emitFusedSplit(graph, g.epilogue, shapeOf, caps, outputs));
      }
      return [...before, work, ...after];
    }
  }
  const node = graph.nodes[g.node];
  throw new RangeError(
    `${node.op} at ${node.site} needs more storage buffers than the device allows (${caps.maxStorageBuffers})`,
  );
}

/** Nodes of a cluster and of the clusters nested in its views, for labels. */
function clusterNodes(c: Cluster): number[] {
  return [...[...(c.nested?.values() ?? [])].flatMap(clusterNodes), ...c.nodes];
}

function subCluster(
  graph: Graph,
  nodes: number[],
  shape: Cluster["shape"],
  outputs: Set<number>,
  nestedAll?: ReadonlyMap<number, Cluster>,
): Cluster {
  const set = new Set(nodes);
  const outs: number[] = [];
  for (const n of nodes) {
    for (const v of graph.nodes[n].outputs) {
      // A value leaves this part if a node outside the part reads it, or it was an output of the whole.
      const external = graph.nodes.some((c) => !set.has(c.id) && c.inputs.includes(v));
      if (external || outputs.has(v)) outs.push(v);
    }
  }
  const nested = new Map([...(nestedAll ?? [])].filter(([n]) => set.has(n)));
  return { nodes, shape, outputs: outs, ...(nested.size ? { nested } : {}) };
}

/** Emits a fused cluster, halving it until each part fits the binding limit. */
function emitFusedSplit(
  graph: Graph,
  cluster: Cluster,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
  outputs: Set<number>,
): Work[] {
  const work = emitFused(graph, cluster, shapeOf, caps);
  if (work.kernels[0].bindings.length <= caps.maxStorageBuffers) return [work];
  if (cluster.nodes.length === 1) {
    throw new RangeError(
      `${nodeLabel(graph, cluster.nodes[0])} needs more storage buffers than the device allows`,
    );
  }
  const mid = Math.ceil(cluster.nodes.length / 2);
  // A value used outside the original cluster stays an output of whichever half makes it.
  const keep = new Set([...outputs, ...cluster.outputs]);
  const a = subCluster(graph, cluster.nodes.slice(0, mid), cluster.shape, keep, cluster.nested);
  const b = subCluster(graph, cluster.nodes.slice(mid), cluster.shape, keep, cluster.nested);
  return [
    ...emitFusedSplit(graph, a, shapeOf, caps, outputs),
    ...emitFusedSplit(graph, b, shapeOf, caps, outputs),
  ];
}

/** Loads of materialised values for a cluster; each load's binding or getter goes into `deps`. */
function leafBinder(
  kb: KernelBuilder,
  graph: Graph,
  shapeOf: (v: number) => readonly number[],
  prefix: string,
  deps: Set<string>,
) {
  return (v: number, index: string): string => {
    const val = graph.values[v];
    const acc = kb.bind(`${prefix}${v}`, { value: v }, numel(shapeOf(v)), val.dtype, "read");
    deps.add(acc.loadSym);
    return acc.load(index);
  };
}

function emitFused(
  graph: Graph,
  cluster: Cluster,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
): Work {
  const kb = new KernelBuilder(caps.maxBindingSize, caps.offsetAlignment);
  const shape = shapeOf(graph.nodes[cluster.nodes[0]].outputs[0]);
  const n = numel(shape);
  const { wg, workgroups, index } = flatLaunch(n, caps);
  const roots = new Set<string>();
  const { lines, names, f16 } = emitCluster(
    graph,
    cluster,
    shapeOf,
    "i",
    leafBinder(kb, graph, shapeOf, "x", roots),
  );
  kb.useF16(f16);
  const stores = cluster.outputs.map((v) => {
    const acc = kb.bind(`y${v}`, { value: v }, n, graph.values[v].dtype, "read_write");
    roots.add(acc.storeSym);
    return `  ${acc.store("i", names.get(v)!)}`;
  });
  const body = flatMain(wg, index, n, `${lines.join("\n")}\n${stores.join("\n")}`);
  const { code, bindings } = kb.finish(body, roots);
  const ops = clusterNodes(cluster).map((id) => nodeLabel(graph, id));
  const label = cluster.nodes.length === 1
    ? graph.nodes[cluster.nodes[0]].op
    : `fused(${cluster.nodes.map((id) => graph.nodes[id].op).join(",")})`;
  return {
    kernels: [{
      label,
      op: "fused",
      node: cluster.nodes[0],
      target: targetOf(caps),
      ops,
      code,
      workgroups,
      bindings,
    }],
    scratch: [],
    writes: cluster.outputs,
  };
}

function emitKernelGroup(
  graph: Graph,
  g: Extract<Group, { kind: "kernel" }>,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
): Work {
  const node = graph.nodes[g.node];
  const def = opDef(node.op);
  if (def.lower.kind !== "kernel") throw new Error(`internal: ${node.op} is not a kernel op`);
  const fits = (v: number, dtype: DType) =>
    paddedBytes(numel(shapeOf(v)), dtype) <= caps.maxBindingSize;
  const inputs: KernelOperand[] = node.inputs.map((v, j) => {
    const val = graph.values[v];
    return {
      shape: shapeOf(v),
      dtype: val.dtype,
      direct: !g.prologues[j] && fits(v, val.dtype),
      segmented: !g.prologues[j] && !fits(v, val.dtype),
    };
  });
  const epilogue = g.epilogue;
  const read = readValues(graph);
  const outs: KernelOperand[] = node.outputs.map((v, j) => {
    const val = graph.values[v];
    return {
      shape: shapeOf(v),
      dtype: val.dtype,
      direct: !(j === 0 && epilogue) && fits(v, val.dtype),
      used: read.has(v),
    };
  });
  const target = targetOf(caps);
  const emission = emitterOf(node.op, target)({ attrs: node.attrs, inputs, outputs: outs, caps });
  const scratch = emission.scratch ?? [];
  const writes: number[] = node.outputs.filter((_, j) => !(j === 0 && epilogue));
  if (epilogue) writes.push(...epilogue.outputs);
  const ops = [nodeLabel(graph, g.node)];
  g.prologues.forEach((p) => p && clusterNodes(p).forEach((n) => ops.unshift(nodeLabel(graph, n))));
  if (epilogue) clusterNodes(epilogue).forEach((n) => ops.push(nodeLabel(graph, n)));
  const halfOperands = [...node.inputs, ...node.outputs].some((v) =>
    graph.values[v].dtype === "f16"
  );
  const kernels = emission.kernels.map((src): Emitted => {
    const kb = new KernelBuilder(caps.maxBindingSize, caps.offsetAlignment);
    kb.useF16(halfOperands || src.f16 === true);
    node.inputs.forEach((v, j) => {
      const val = graph.values[v];
      const pro = g.prologues[j];
      if (pro) {
        const deps = new Set<string>();
        const { lines, names, f16 } = emitCluster(
          graph,
          pro,
          shapeOf,
          "i",
          leafBinder(kb, graph, shapeOf, `p${j}_`, deps),
        );
        kb.useF16(f16);
        kb.fn(
          `in${j}_load`,
          `fn in${j}_load(i: u32) -> ${val.dtype} {\n${lines.join("\n")}\n  return ${
            names.get(v)
          };\n}`,
          deps,
        );
      } else {
        const acc = kb.bind(
          `in${j}`,
          { value: v },
          numel(shapeOf(v)),
          val.dtype,
          "read",
          src.arrayTypes?.[`in${j}`],
        );
        kb.fn(
          `in${j}_load`,
          `fn in${j}_load(i: u32) -> ${val.dtype} { return ${acc.load("i")}; }`,
          [acc.loadSym],
        );
      }
    });
    node.outputs.forEach((v, j) => {
      const val = graph.values[v];
      if (j === 0 && epilogue) {
        const deps = new Set<string>();
        const { lines, names, f16 } = emitCluster(
          graph,
          epilogue,
          shapeOf,
          "i",
          leafBinder(kb, graph, shapeOf, "e", deps),
          new Map([
            [v, "v"],
            ...(g.epilogueAliases ?? []).map((a) => [a, "v"] as [number, string]),
          ]),
        );
        kb.useF16(f16);
        const stores = epilogue.outputs.map((o) => {
          const acc = kb.bind(
            `y${o}`,
            { value: o },
            numel(shapeOf(o)),
            graph.values[o].dtype,
            "read_write",
          );
          deps.add(acc.storeSym);
          return `  ${acc.store("i", names.get(o)!)}`;
        });
        kb.fn(
          `out0_store`,
          `fn out0_store(i: u32, v: ${val.dtype}) {\n${lines.join("\n")}\n${stores.join("\n")}\n}`,
          deps,
        );
      } else {
        const acc = kb.bind(
          `out${j}`,
          { value: v },
          numel(shapeOf(v)),
          val.dtype,
          "read_write",
          src.arrayTypes?.[`out${j}`],
        );
        kb.fn(
          `out${j}_store`,
          `fn out${j}_store(i: u32, v: ${val.dtype}) { ${acc.store("i", "v")} }`,
          [acc.storeSym],
        );
      }
    });
    scratch.forEach((s, j) => {
      kb.bind(
        `scratch${j}`,
        { scratch: j },
        s.length,
        s.type,
        "read_write",
        src.arrayTypes?.[`scratch${j}`],
      );
    });
    const { code, bindings } = kb.finish(src.code, src.uses ?? legacyUses(src.code));
    return {
      label: labelOf(emission.kernels.length > 1 ? `${node.op}:${src.label}` : src.label, g),
      op: node.op,
      node: g.node,
      ...(src.role !== undefined ? { role: src.role } : {}),
      ...(src.choice !== undefined ? { choice: src.choice } : {}),
      target,
      ops,
      code,
      workgroups: src.workgroups,
      bindings,
    };
  });
  const inplace = (def.lower.inplace ?? []).map(([o, i]) =>
    [node.outputs[o], node.inputs[i]] as const
  );
  return { kernels, scratch, writes, inplace };
}

/**
 * Operand names a template uses, for templates that do not record them yet
 * (found in the text; every op moves to `KernelIo`).
 */
function legacyUses(code: string): KernelSymbol[] {
  const found = code.match(/\b(?:in\d+(?:_load|_vget)?|out\d+(?:_store)?|scratch\d+)\b/g) ?? [];
  return [...new Set(found)] as KernelSymbol[];
}

const readCache = new WeakMap<Graph, Set<number>>();

/** Values something reads: consumed by a node, a graph output, or written back to a state. */
function readValues(graph: Graph): Set<number> {
  let set = readCache.get(graph);
  if (!set) {
    set = new Set([...graph.outputs.values(), ...graph.assigns.values()]);
    for (const n of graph.nodes) for (const v of n.inputs) set.add(v);
    readCache.set(graph, set);
  }
  return set;
}

function labelOf(base: string, g: Extract<Group, { kind: "kernel" }>): string {
  const pro = g.prologues.some((p) => p) ? "prologue+" : "";
  const epi = g.epilogue ? `+${g.epilogue.nodes.length}ew` : "";
  return `${pro}${base}${epi}`;
}

/** Liveness-based memory planning: temps reuse freed slots, best fit first. */
function allocate(graph: Graph, items: Work[], shapes: number[][], dims: DimBindings): Plan {
  const slots: Slot[] = [];
  const home = new Map<number, { slot: number; offset: number }>();
  const bytesOf = (v: number) => paddedBytes(numel(shapes[v]), graph.values[v].dtype);
  const outputs = new Set(graph.outputs.values());
  const nameOf = new Map<number, string>();
  for (const [name, v] of graph.outputs) nameOf.set(v, name);

  // Alias roots: a reshape's output lives where its (root) input lives.
  const root = new Map<number, number>();
  const rootOf = (v: number): number => root.get(v) ?? v;
  for (const it of items) if (it.alias) root.set(it.alias[0], rootOf(it.alias[1]));
  const pinned = new Set<number>();
  for (const v of outputs) pinned.add(rootOf(v));

  for (const [name, v] of graph.inputs) {
    home.set(v, { slot: slots.length, offset: 0 });
    slots.push({ bytes: bytesOf(v), kind: "input", name });
  }
  for (const [name, v] of graph.params) {
    home.set(v, { slot: slots.length, offset: 0 });
    slots.push({ bytes: bytesOf(v), kind: "param", name });
  }
  const stateSlot = new Map<string, number>();
  for (const [name, v] of graph.states) {
    home.set(v, { slot: slots.length, offset: 0 });
    stateSlot.set(name, slots.length);
    slots.push({ bytes: bytesOf(v), kind: "state", name });
  }
  const assignOf = new Map<number, string>();
  for (const [name, v] of graph.assigns) assignOf.set(v, name);
  const stateValue = (name: string) => graph.states.get(name)!;
  // Constants get a buffer only if some kernel binds them or they are outputs
  // (scalars are inlined as WGSL literals and need none).
  const boundConsts = new Set<number>([...outputs, ...graph.assigns.values()]);
  for (const it of items) {
    for (const k of it.kernels) {
      for (const b of k.bindings) if ("value" in b.ref) boundConsts.add(b.ref.value);
    }
    for (const [, inp] of it.inplace ?? []) boundConsts.add(inp);
  }
  for (const node of graph.nodes) {
    if (node.op !== "const") continue;
    const v = node.outputs[0];
    if (!boundConsts.has(rootOf(v)) && !boundConsts.has(v)) continue;
    home.set(v, { slot: slots.length, offset: 0 });
    slots.push({ bytes: bytesOf(v), kind: "const", value: v });
  }

  // Last item that reads each root value (an in-place op reads its input).
  const lastUse = new Map<number, number>();
  const use = (v: number, i: number) => lastUse.set(v, Math.max(lastUse.get(v) ?? i, i));
  items.forEach((it, i) => {
    for (const k of it.kernels) {
      for (const b of k.bindings) if ("value" in b.ref) use(rootOf(b.ref.value), i);
    }
    for (const [, inp] of it.inplace ?? []) use(rootOf(inp), i);
    if (it.alias) use(rootOf(it.alias[1]), i);
  });
  for (const v of outputs) use(rootOf(v), items.length);

  const free: number[] = [];
  const take = (bytes: number): number => {
    let best = -1;
    for (const [k, s] of free.entries()) {
      if (slots[s].bytes >= bytes && (best < 0 || slots[s].bytes < slots[free[best]].bytes)) {
        best = k;
      }
    }
    if (best < 0 && free.length) {
      // Grow the largest free slot rather than adding another.
      best = free.reduce((m, s, k) => (slots[s].bytes > slots[free[m]].bytes ? k : m), 0);
      slots[free[best]].bytes = bytes;
    }
    if (best >= 0) return free.splice(best, 1)[0];
    slots.push({ bytes, kind: "temp" });
    return slots.length - 1;
  };

  let unplanned = 0;
  const kernels: PlannedKernel[] = [];
  let pending: BufferOp[] = [];
  /** Where value v goes: a state it is assigned to (once that state's old value is dead), an output slot, or a temp. */
  const place = (v: number, i: number) => {
    const st = assignOf.get(v);
    if (st !== undefined && !pinned.has(v)) {
      const old = rootOf(stateValue(st));
      if ((lastUse.get(old) ?? -1) < i) {
        home.set(v, { slot: stateSlot.get(st)!, offset: 0 });
        return;
      }
    }
    if (pinned.has(v)) {
      home.set(v, { slot: slots.length, offset: 0 });
      slots.push({ bytes: bytesOf(v), kind: "output", name: nameOf.get(v) });
    } else {
      unplanned += bytesOf(v);
      home.set(v, { slot: take(bytesOf(v)), offset: 0 });
    }
  };
  const transferred = new Set<number>();
  const bound = new Set([...graph.assigns.values()].map(rootOf));
  items.forEach((it, i) => {
    for (const [out, inp] of it.inplace ?? []) {
      // The output may take over the input's buffer when nothing reads the input
      // later: a temp, or a state whose new value is exactly this output.
      const r = rootOf(inp);
      const h = home.get(r)!;
      const kind = slots[h.slot].kind;
      const st = assignOf.get(out);
      const mayTake = lastUse.get(r) === i && !pinned.has(r) && !pinned.has(out) &&
        (kind === "temp" || (kind === "state" && st !== undefined && stateSlot.get(st) === h.slot));
      if (mayTake) {
        home.set(out, h);
        transferred.add(r);
      } else {
        place(out, i);
        const to = home.get(out)!;
        pending.push({
          kind: "copy",
          from: h.slot,
          fromOffset: h.offset,
          to: to.slot,
          toOffset: to.offset,
          size: bytesOf(out),
        });
      }
    }
    for (const v of it.writes) if (!home.has(v)) place(v, i);
    if (it.alias) home.set(it.alias[0], home.get(rootOf(it.alias[1]))!);
    const scratchSlots = it.scratch.map((s) => {
      const bytes = paddedBytes(s.length, s.type === "f16" ? "f16" : "f32");
      unplanned += bytes;
      return take(bytes);
    });
    it.scratch.forEach((s, j) => {
      if (s.zero) {
        pending.push({
          kind: "zero",
          slot: scratchSlots[j],
          offset: 0,
          size: slots[scratchSlots[j]].bytes,
        });
      }
    });
    for (const k of it.kernels) {
      const bindings = k.bindings.map((b): SlotBinding => {
        if ("value" in b.ref) {
          const h = home.get(rootOf(b.ref.value));
          if (!h) throw new Error(`internal: %${b.ref.value} read before it was written`);
          return { slot: h.slot, offset: h.offset + b.offset, size: b.size, access: b.access };
        }
        return {
          slot: scratchSlots[b.ref.scratch],
          offset: b.offset,
          size: b.size,
          access: b.access,
        };
      });
      kernels.push({
        label: k.label,
        op: k.op,
        node: k.node,
        ...(k.role !== undefined ? { role: k.role } : {}),
        ...(k.choice !== undefined ? { choice: k.choice } : {}),
        target: k.target,
        ops: k.ops,
        code: k.code,
        workgroups: k.workgroups,
        bindings,
        before: pending,
      });
      pending = [];
    }
    // Free temps whose last reader was this item (after allocating its outputs, so a
    // kernel never reads and writes the same buffer).
    for (const [v, last] of lastUse) {
      // Values bound for a state stay until the end-of-run copy.
      if (last !== i || pinned.has(v) || transferred.has(v) || bound.has(v)) continue;
      const h = home.get(v);
      if (h && slots[h.slot].kind === "temp" && !free.includes(h.slot)) free.push(h.slot);
    }
    for (const s of scratchSlots) if (!free.includes(s)) free.push(s);
    // Values written but never read (dead outputs of multi-output ops) are free at once.
    for (const v of it.writes) {
      const h = home.get(v);
      if (
        h && !lastUse.has(v) && !pinned.has(v) && !assignOf.has(v) &&
        slots[h.slot].kind === "temp" &&
        !free.includes(h.slot)
      ) free.push(h.slot);
    }
  });
  // New state values that could not be written in place are copied at the end.
  const after: BufferOp[] = [...pending];
  for (const [name, v] of graph.assigns) {
    const h = home.get(rootOf(v));
    if (!h) throw new Error(`internal: state "${name}" value has no buffer`);
    const to = stateSlot.get(name)!;
    if (h.slot === to && h.offset === 0) continue;
    after.push({
      kind: "copy",
      from: h.slot,
      fromOffset: h.offset,
      to,
      toOffset: 0,
      size: bytesOf(v),
    });
  }

  const tensorAt = (v: number): PlannedTensor => {
    const h = home.get(rootOf(v));
    if (!h) throw new Error(`internal: %${v} has no buffer`);
    return {
      value: v,
      slot: h.slot,
      offset: h.offset,
      shape: shapes[v],
      dtype: graph.values[v].dtype,
    };
  };
  const mapOf = (m: ReadonlyMap<string, number>) =>
    new Map([...m].map(([k, v]) => [k, tensorAt(v)]));
  const peakBytes = slots.filter((s) => s.kind !== "param").reduce((a, s) => a + s.bytes, 0);
  return {
    dims,
    kernels,
    slots,
    inputs: mapOf(graph.inputs),
    outputs: mapOf(graph.outputs),
    params: mapOf(graph.params),
    states: mapOf(graph.states),
    after,
    peakBytes,
    unplannedBytes: unplanned,
  };
}

/**
 * One line per kernel and a buffer table: what `inspect` prints.
 *
 * @example
 * ```ts ignore
 * import { compile, describePlan, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 64]).mul(2).silu());
 * const exe = compile(g.build(), await requestDevice());
 * console.log(describePlan(exe.plan({ T: 128 }))); // same text as exe.inspect({ T: 128 })
 * ```
 */
export function describePlan(plan: Plan): string {
  const lines: string[] = [];
  const dims = Object.entries(plan.dims).map(([k, v]) => `${k}=${v}`).join(", ");
  lines.push(
    `plan${dims ? ` (${dims})` : ""}: ${plan.kernels.length} kernels, peak ${
      fmtBytes(plan.peakBytes)
    } (unplanned intermediates ${fmtBytes(plan.unplannedBytes)})`,
  );
  plan.kernels.forEach((k, i) => {
    const slotsUsed = k.bindings.map((b) => `${b.access === "read" ? "r" : "w"}#${b.slot}`).join(
      " ",
    );
    lines.push(`  [${i}] ${k.label}  grid ${k.workgroups.join("x")}  bufs ${slotsUsed}`);
    for (const op of k.ops) lines.push(`        ${op}`);
  });
  lines.push("buffers:");
  plan.slots.forEach((s, i) => {
    lines.push(`  #${i} ${s.kind}${s.name ? ` "${s.name}"` : ""} ${fmtBytes(s.bytes)}`);
  });
  for (const [name, t] of plan.inputs) {
    lines.push(`input "${name}" ${t.dtype}${formatShape(t.shape)} → #${t.slot}`);
  }
  for (const [name, t] of plan.outputs) {
    lines.push(`output "${name}" ${t.dtype}${formatShape(t.shape)} ← #${t.slot}`);
  }
  return lines.join("\n");
}

/** Human-readable bytes. */
export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}
