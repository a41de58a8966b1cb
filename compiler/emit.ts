/**
 * Emission: every scheduled group becomes work items — WGSL kernels with their
 * bindings — shedding fusions or halving clusters where a kernel would exceed
 * the device's storage-buffer limit.
 *
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { numel } from "../core/shape.ts";
import { type Accessor, emitCluster, KernelBuilder } from "./codegen.ts";
import type { Cluster, Group } from "./passes/fuse.ts";
import { opDef } from "../ops/registry.ts";
import { isKernelTable, kernelTable } from "../core/kernel_tables.ts";
import { emitterOf, targetOf } from "../ops/targets.ts";
import type { DeviceCaps, KernelOperand } from "../ops/types.ts";
import { flatLaunch, flatMain } from "../ops/wgsl/grid.ts";
import { paddedBytes } from "../core/dtype.ts";
import type { Emitted, Work } from "./plan_types.ts";

function nodeLabel(graph: Graph, n: number): string {
  return `${graph.nodes[n].op}#${n} @ ${graph.nodes[n].site}`;
}

/** Emits one scheduled group as work items. */
export function emitGroup(
  graph: Graph,
  g: Group,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
  outputs: Set<number>,
  storage: Storage = NO_STORAGE,
): Work[] {
  if (g.kind === "alias") {
    const node = graph.nodes[g.node];
    return [{ kernels: [], scratch: [], writes: [], alias: [node.outputs[0], node.inputs[0]] }];
  }
  if (g.kind === "fused") return emitFusedSplit(graph, g.cluster, shapeOf, caps, outputs, storage);
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
    const work = emitKernelGroup(graph, attempt, shapeOf, caps, storage);
    if (work.kernels.every((k) => fitsStorage(k, caps))) {
      const before: Work[] = [];
      const after: Work[] = [];
      g.prologues.forEach((p, j) => {
        if (p && !attempt.prologues[j]) {
          before.push(...emitFusedSplit(graph, p, shapeOf, caps, outputs, storage));
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
        after.push(...emitFusedSplit(graph, g.epilogue, shapeOf, caps, outputs, storage));
      }
      return [...before, work, ...after];
    }
  }
  const node = graph.nodes[g.node];
  throw new RangeError(
    `${node.op} at ${node.site} needs more storage buffers than the device allows (${caps.maxStorageBuffers})`,
  );
}

/** Whether a kernel's storage bindings (uniform ones do not count) fit the device. */
function fitsStorage(k: Emitted, caps: DeviceCaps): boolean {
  return k.bindings.filter((b) => b.access !== "uniform").length <= caps.maxStorageBuffers;
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
  storage: Storage,
): Work[] {
  const work = emitFused(graph, cluster, shapeOf, caps, storage);
  if (work.kernels.every((k) => fitsStorage(k, caps))) return [work];
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
    ...emitFusedSplit(graph, a, shapeOf, caps, outputs, storage),
    ...emitFusedSplit(graph, b, shapeOf, caps, outputs, storage),
  ];
}

/**
 * Storage dtypes that differ from values' own (`activationStorage`): value id →
 * the dtype its buffer holds.
 */
type Storage = ReadonlyMap<number, DType>;
const NO_STORAGE: Storage = new Map();

/**
 * Binds value `v`'s buffer. Where its buffer holds another dtype than the value
 * (an f32 activation stored as f16), loads convert to the value's dtype and
 * stores to the buffer's, so the kernel computes as if nothing changed; such
 * an accessor is never direct (kernels index only raw arrays of their operand's
 * own dtype).
 */
function bindValue(
  kb: KernelBuilder,
  graph: Graph,
  storage: Storage,
  name: string,
  v: number,
  count: number,
  access: "read" | "read_write",
  declType?: string,
): Accessor {
  const dtype = graph.values[v].dtype;
  const held = storage.get(v);
  if (held === undefined || held === dtype) {
    return kb.bind(name, { value: v }, count, dtype, access, declType);
  }
  const acc = kb.bind(name, { value: v }, count, held, access);
  return {
    ...acc,
    direct: false,
    load: (i) => `${dtype}(${acc.load(i)})`,
    store: (i, x) => acc.store(i, `${held}(${x})`),
  };
}

/** Loads of materialised values for a cluster; each load's binding or getter goes into `deps`. */
function leafBinder(
  kb: KernelBuilder,
  graph: Graph,
  shapeOf: (v: number) => readonly number[],
  prefix: string,
  deps: Set<string>,
  storage: Storage,
) {
  return (v: number, index: string): string => {
    const acc = bindValue(kb, graph, storage, `${prefix}${v}`, v, numel(shapeOf(v)), "read");
    deps.add(acc.loadSym);
    return acc.load(index);
  };
}

function emitFused(
  graph: Graph,
  cluster: Cluster,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
  storage: Storage,
): Work {
  const kb = new KernelBuilder(caps.maxBindingSize, caps.offsetAlignment);
  const shape = shapeOf(graph.nodes[cluster.nodes[0]].outputs[0]);
  const n = numel(shape);
  // Nothing to compute; a view's index over an empty axis would even divide by zero.
  if (n === 0) return { kernels: [], scratch: [], writes: cluster.outputs };
  const { wg, workgroups, index } = flatLaunch(n, caps);
  const roots = new Set<string>();
  const inplace = inPlaceStates(graph, cluster, shapeOf, caps, n);
  const outAcc = new Map(cluster.outputs.map((v) => {
    const acc = bindValue(kb, graph, storage, `y${v}`, v, n, "read_write");
    roots.add(acc.storeSym);
    return [v, acc] as const;
  }));
  // A state read only at the index being written is read through its new value's
  // binding: the planner can then update it in place (no second copy of it).
  const fromOut = new Map(inplace.map(([out, old]) => [old, outAcc.get(out)!]));
  const leaf = leafBinder(kb, graph, shapeOf, "x", roots, storage);
  const { lines, names, f16 } = emitCluster(graph, cluster, shapeOf, "i", (v, i) => {
    const acc = fromOut.get(v);
    if (!acc) return leaf(v, i);
    roots.add(acc.loadSym);
    return acc.load(i);
  });
  kb.useF16(f16);
  const stores = cluster.outputs.map((v) => `  ${outAcc.get(v)!.store("i", names.get(v)!)}`);
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
      ...(graph.nodes[cluster.nodes[0]].scope !== undefined
        ? { scope: graph.nodes[cluster.nodes[0]].scope }
        : {}),
      target: targetOf(caps),
      ops,
      code,
      workgroups,
      bindings,
    }],
    scratch: [],
    writes: cluster.outputs,
    ...(inplace.length ? { inplace } : {}),
  };
}

/**
 * `[new value, state value]` pairs of a cluster that writes a state's next value
 * and reads its current one only at the index it writes (an optimizer's update:
 * `w ← w − lr·u`, elementwise): each thread reads its element before it stores
 * it, so the two may share the state's buffer.
 */
function inPlaceStates(
  graph: Graph,
  cluster: Cluster,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
  n: number,
): [number, number][] {
  const assigned = new Map<number, number>();
  for (const [name, v] of graph.assigns) {
    const old = graph.states.get(name)!;
    if (cluster.outputs.includes(v) && graph.values[old].dtype === graph.values[v].dtype) {
      assigned.set(old, v);
    }
  }
  if (assigned.size === 0) return [];
  // Which indices the cluster reads each leaf at (a dry run of the emission).
  const at = new Map<number, Set<string>>();
  emitCluster(graph, cluster, shapeOf, "i", (v, i) => {
    at.set(v, (at.get(v) ?? new Set()).add(i));
    return leafBinder(
      new KernelBuilder(caps.maxBindingSize, caps.offsetAlignment),
      graph,
      shapeOf,
      "x",
      new Set(),
      NO_STORAGE,
    )(v, i);
  });
  return [...assigned].filter(([old]) => {
    const idx = at.get(old);
    return idx !== undefined && idx.size === 1 && idx.has("i") && numel(shapeOf(old)) === n;
  }).map(([old, v]) => [v, old]);
}

function emitKernelGroup(
  graph: Graph,
  g: Extract<Group, { kind: "kernel" }>,
  shapeOf: (v: number) => readonly number[],
  caps: DeviceCaps,
  storage: Storage,
): Work {
  const node = graph.nodes[g.node];
  const def = opDef(node.op);
  if (def.lower.kind !== "kernel") throw new Error(`internal: ${node.op} is not a kernel op`);
  const fits = (v: number, dtype: DType) =>
    paddedBytes(numel(shapeOf(v)), dtype) <= caps.maxBindingSize;
  // A value held in another dtype is read and written through its accessor's
  // converting functions, like a fused prologue or epilogue.
  const converted = (v: number) => storage.has(v);
  const inputs: KernelOperand[] = node.inputs.map((v, j) => {
    const val = graph.values[v];
    const raw = !g.prologues[j] && !converted(v);
    return {
      shape: shapeOf(v),
      dtype: val.dtype,
      direct: raw && fits(v, val.dtype),
      segmented: raw && !fits(v, val.dtype),
    };
  });
  const epilogue = g.epilogue;
  const read = readValues(graph);
  const outs: KernelOperand[] = node.outputs.map((v, j) => {
    const val = graph.values[v];
    return {
      shape: shapeOf(v),
      dtype: val.dtype,
      direct: !(j === 0 && epilogue) && !converted(v) && fits(v, val.dtype),
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
          leafBinder(kb, graph, shapeOf, `p${j}_`, deps, storage),
        );
        kb.useF16(f16);
        kb.loadFn(j, val.dtype, `${lines.join("\n")}\n  return ${names.get(v)};`, deps);
      } else {
        const acc = bindValue(
          kb,
          graph,
          storage,
          `in${j}`,
          v,
          numel(shapeOf(v)),
          "read",
          src.arrayTypes?.[`in${j}`],
        );
        kb.loadFn(j, val.dtype, `  return ${acc.load("i")};`, [acc.loadSym]);
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
          leafBinder(kb, graph, shapeOf, "e", deps, storage),
          new Map([
            [v, "v"],
            ...(g.epilogueAliases ?? []).map((a) => [a, "v"] as [number, string]),
          ]),
        );
        kb.useF16(f16);
        const stores = epilogue.outputs.map((o) => {
          const acc = bindValue(kb, graph, storage, `y${o}`, o, numel(shapeOf(o)), "read_write");
          deps.add(acc.storeSym);
          return `  ${acc.store("i", names.get(o)!)}`;
        });
        kb.storeFn(0, val.dtype, `${lines.join("\n")}\n${stores.join("\n")}`, deps);
      } else {
        const acc = bindValue(
          kb,
          graph,
          storage,
          `out${j}`,
          v,
          numel(shapeOf(v)),
          "read_write",
          src.arrayTypes?.[`out${j}`],
        );
        kb.storeFn(j, val.dtype, `  ${acc.store("i", "v")}`, [acc.storeSym]);
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
    for (const u of src.uses) {
      if (!u.startsWith("table_")) continue;
      const name = u.slice(6);
      if (!isKernelTable(name)) throw new Error(`internal: kernel uses unknown table "${name}"`);
      // A uniform buffer on CPU adapters (lavapipe looks it up several times
      // faster than storage); GPUs index it divergently, which uniform serialises.
      kb.table(name, kernelTable(name).length, caps.cpuCores > 0);
    }
    const { code, bindings } = kb.finish(src.code, src.uses);
    return {
      label: labelOf(emission.kernels.length > 1 ? `${node.op}:${src.label}` : src.label, g),
      op: node.op,
      node: g.node,
      ...(typeof node.attrs.name === "string" ? { name: node.attrs.name } : {}),
      ...(node.scope !== undefined ? { scope: node.scope } : {}),
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
