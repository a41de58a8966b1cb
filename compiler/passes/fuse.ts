/**
 * Fusion: groups the graph into kernels. Elementwise DAGs of one shape collapse
 * into a single kernel; an elementwise cluster that consumes a kernel op's output
 * becomes that kernel's epilogue, and one that only feeds a kernel op becomes its
 * load prologue. The result is a schedule of groups in dependency order.
 *
 * @module
 */

import type { DType } from "../../core/dtype.ts";
import { consumers, type Graph } from "../../core/graph.ts";
import { numel, sameShape, type Shape, symbolicSize } from "../../core/shape.ts";
import { isOp, opDef } from "../../ops/registry.ts";

/** Elements below which a group's outputs count as small (scheduled as soon as ready). */
const SMALL_OUTPUT = 4096;

/**
 * A set of elementwise nodes evaluated together at one flat index.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["N"]).mul(2).add(1).silu());
 * const { groups } = compile(g.build(), cpuDevice()).schedule;
 * const first = groups[0];
 * if (first.kind === "fused") first.cluster.nodes.length; // 3 elementwise nodes, one kernel
 * ```
 */
export interface Cluster {
  /** Node ids in topological order. */
  readonly nodes: readonly number[];
  /** Shape every node of the cluster produces. */
  readonly shape: Shape;
  /** Values the cluster must write to memory (used outside it or graph outputs). */
  readonly outputs: readonly number[];
  /**
   * Per view node: the cluster that computes the view's input, evaluated at the
   * view's remapped index instead of being written to memory (`x.mul(2).transpose()`
   * is one kernel).
   */
  readonly nested?: ReadonlyMap<number, Cluster>;
}

/**
 * One scheduled unit of work.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, type Group, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 16]);
 * g.output("y", x.matmul(g.param("w", [32, 16]), { transB: true }).silu());
 * const groups: readonly Group[] = compile(g.build(), cpuDevice()).schedule.groups;
 * groups.map((gr) => gr.kind); // ["kernel"]: silu is the matmul's epilogue
 * ```
 */
export type Group =
  | { readonly kind: "fused"; readonly cluster: Cluster }
  | {
    readonly kind: "kernel";
    /** The op node the kernel template implements. */
    readonly node: number;
    /** Per input of the op: a cluster computed inside its loads, if fused. */
    readonly prologues: readonly (Cluster | undefined)[];
    /** Cluster applied to output 0 before it is stored, if fused. */
    readonly epilogue?: Cluster;
    /** Reshapes of output 0 read by the epilogue: they stand for the same stored value. */
    readonly epilogueAliases?: readonly number[];
  }
  | { readonly kind: "alias"; readonly node: number };

/**
 * The fused graph: groups in an order that respects every dependency.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, GraphBuilder, type Schedule } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["N"]).exp().neg());
 * const schedule: Schedule = compile(g.build(), cpuDevice()).schedule;
 * schedule.groups.length; // 1
 * ```
 */
export interface Schedule {
  /** The graph the groups refer to. */
  readonly graph: Graph;
  /** Groups to run, in order. */
  readonly groups: readonly Group[];
  /**
   * Values whose buffers hold another dtype than the value (f32 activations
   * stored as f16: `CompileOptions.activationDtype`); kernels convert on load
   * and store.
   */
  readonly storage?: ReadonlyMap<number, DType>;
}

function loweringKind(op: string): "elementwise" | "kernel" | "alias" | "view" | "leaf" {
  if (!isOp(op)) return "leaf";
  return opDef(op).lower.kind;
}

/** Options of {@linkcode fuse}. */
export interface FuseOptions {
  /** Set false to give every op its own kernel (for comparisons and debugging). */
  readonly enabled?: boolean;
}

/** Builds the fused schedule of a graph. */
export function fuse(graph: Graph, options: FuseOptions = {}): Schedule {
  const enabled = options.enabled ?? true;
  const uses = consumers(graph);
  // Values written back to state must be materialised, like outputs.
  const outputs = new Set([...graph.outputs.values(), ...graph.assigns.values()]);
  const producer = (v: number) => graph.values[v].node;

  // --- 1. elementwise clusters -------------------------------------------------
  const clusterOf = new Map<number, number>();
  const members = new Map<number, Set<number>>();
  const shapeOf = new Map<number, Shape>();

  /** Does any input of `xs` from outside `xs ∪ ys` transitively depend on a node of `ys`? */
  const reaches = (xs: Set<number>, ys: Set<number>): boolean => {
    const seen = new Set<number>();
    const stack: number[] = [];
    for (const n of xs) {
      for (const v of graph.nodes[n].inputs) {
        const p = producer(v);
        if (!xs.has(p) && !ys.has(p)) stack.push(p);
      }
    }
    while (stack.length) {
      const n = stack.pop()!;
      if (seen.has(n)) continue;
      seen.add(n);
      for (const v of graph.nodes[n].inputs) {
        const p = producer(v);
        if (ys.has(p)) return true;
        if (!xs.has(p)) stack.push(p);
      }
    }
    return false;
  };
  // A view reads its input at a remapped index, so that input must come from
  // memory: a cluster may never hold a view together with its input's producer.
  const viewConflict = (a: Set<number>, b: Set<number>): boolean => {
    for (const set of [a, b]) {
      for (const n of set) {
        if (loweringKind(graph.nodes[n].op) !== "view") continue;
        const p = producer(graph.nodes[n].inputs[0]);
        if (a.has(p) || b.has(p)) return true;
      }
    }
    return false;
  };
  // Recomputed copies (activation checkpointing) run in the backward: fused into a
  // forward kernel they would run in the forward and keep their results alive.
  const recomputed = (n: number) => graph.nodes[n].recompute === true;
  const sameRun = (a: Iterable<number>, b: Iterable<number>) => {
    const [x] = a, [y] = b;
    return x === undefined || y === undefined || recomputed(x) === recomputed(y);
  };
  const assignedState = new Map<number, number>();
  for (const [name, v] of graph.assigns) assignedState.set(v, graph.states.get(name)!);
  const updatesItsState = (set: Set<number>) =>
    [...set].some((n) =>
      graph.nodes[n].outputs.some((v) => {
        const old = assignedState.get(v);
        return old !== undefined && [...set].some((m) => graph.nodes[m].inputs.includes(old));
      })
    );
  const canMerge = (a: Set<number>, b: Set<number>) =>
    sameRun(a, b) && !reaches(a, b) && !reaches(b, a) && !viewConflict(a, b);

  for (const node of graph.nodes) {
    const kind = loweringKind(node.op);
    if (kind !== "elementwise" && kind !== "view") continue;
    const shape = graph.values[node.outputs[0]].shape;
    let cid = node.id;
    members.set(cid, new Set([node.id]));
    shapeOf.set(cid, shape);
    clusterOf.set(node.id, cid);
    for (const v of enabled ? node.inputs : []) {
      const other = clusterOf.get(producer(v));
      if (other === undefined || other === cid || !sameShape(shapeOf.get(other)!, shape)) continue;
      const a = members.get(other)!, b = members.get(cid)!;
      if (!canMerge(a, b)) continue;
      for (const n of b) {
        a.add(n);
        clusterOf.set(n, other);
      }
      members.delete(cid);
      cid = other;
    }
  }

  const clusterInfo = (cid: number): Cluster => {
    const nodes = [...members.get(cid)!].sort((x, y) => x - y);
    const set = members.get(cid)!;
    const outs: number[] = [];
    for (const n of nodes) {
      for (const v of graph.nodes[n].outputs) {
        const external = (uses.get(v) ?? []).some((c) => !set.has(c));
        if (external || outputs.has(v)) outs.push(v);
      }
    }
    const nested = new Map<number, Cluster>();
    for (const n of nodes) {
      const inner = nestedOf.get(n);
      if (inner !== undefined) nested.set(n, clusterInfo(inner));
    }
    return { nodes, shape: shapeOf.get(cid)!, outputs: outs, ...(nested.size ? { nested } : {}) };
  };
  /** Members of a cluster and of the clusters nested in it. */
  const allMembers = (cid: number): Set<number> => {
    const out = new Set(members.get(cid)!);
    for (const n of members.get(cid)!) {
      const inner = nestedOf.get(n);
      if (inner !== undefined) allMembers(inner).forEach((m) => out.add(m));
    }
    return out;
  };

  // --- 1b. views absorb the cluster computing their input, when only they read it
  const absorbed = new Set<number>();
  const nestedOf = new Map<number, number>();
  for (const node of enabled ? graph.nodes : []) {
    if (loweringKind(node.op) !== "view") continue;
    const u = node.inputs[0];
    const pc = clusterOf.get(producer(u));
    const own = clusterOf.get(node.id);
    if (pc === undefined || pc === own || absorbed.has(pc) || outputs.has(u)) continue;
    if (!sameRun(members.get(pc)!, [node.id])) continue;
    const users = uses.get(u) ?? [];
    if (users.length !== 1 || users[0] !== node.id) continue;
    const info = clusterInfo(pc);
    if (info.outputs.length !== 1 || info.outputs[0] !== u) continue;
    nestedOf.set(node.id, pc);
    absorbed.add(pc);
  }

  // --- 2. epilogues, then prologues ---------------------------------------------
  const epilogueOf = new Map<number, number>();
  const epilogueAliasesOf = new Map<number, number[]>();
  const prologuesOf = new Map<number, (number | undefined)[]>();
  for (const node of enabled ? graph.nodes : []) {
    if (loweringKind(node.op) !== "kernel") continue;
    const lower = opDef(node.op).lower;
    if (lower.kind !== "kernel" || !lower.epilogue) continue;
    // An in-place output is written through its raw buffer, so no epilogue can wrap it.
    if (lower.inplace?.some(([o]) => o === 0)) continue;
    const v = node.outputs[0];
    if (outputs.has(v)) continue;
    // Look through reshapes: they keep the flat order, so the epilogue can read the
    // kernel's result for them at the same index (`y.reshape(...).add(x)` fuses).
    const aliasNodes: number[] = [];
    const users: number[] = [];
    for (const u of uses.get(v) ?? []) {
      const un = graph.nodes[u];
      if (loweringKind(un.op) === "alias" && !outputs.has(un.outputs[0])) {
        aliasNodes.push(u);
        users.push(...(uses.get(un.outputs[0]) ?? []));
      } else users.push(u);
    }
    const cids = new Set(users.map((u) => clusterOf.get(u)));
    if (cids.size !== 1) continue;
    const cid = [...cids][0];
    if (cid === undefined || absorbed.has(cid) || !sameRun(members.get(cid)!, [node.id])) continue;
    // A state update that reads the state it replaces (an optimizer step) stays a
    // cluster of its own, which codegen can run in place in the state's buffer.
    if (updatesItsState(members.get(cid)!)) continue;
    const clusterShape = shapeOf.get(cid)!;
    const fits = aliasNodes.length
      ? symbolicSize(clusterShape) === symbolicSize(graph.values[v].shape)
      : sameShape(clusterShape, graph.values[v].shape);
    if (!fits) continue;
    // A reshape read at a broadcast index would not be the same element.
    if (
      aliasNodes.some((a) =>
        !sameShape(graph.values[graph.nodes[a].outputs[0]].shape, clusterShape)
      )
    ) continue;
    // The cluster's other inputs must be computable before this kernel runs.
    if (reaches(new Set([...members.get(cid)!, ...aliasNodes]), new Set([node.id]))) continue;
    // An epilogue sees the kernel's result only at the index being stored (also
    // through the reshapes it looks through).
    const seen = new Set([v, ...aliasNodes.map((a) => graph.nodes[a].outputs[0])]);
    const viewsIt = [...members.get(cid)!].some((n) =>
      loweringKind(graph.nodes[n].op) === "view" && seen.has(graph.nodes[n].inputs[0])
    );
    if (viewsIt) continue;
    absorbed.add(cid);
    epilogueOf.set(node.id, cid);
    if (aliasNodes.length) epilogueAliasesOf.set(node.id, aliasNodes);
  }
  for (const node of enabled ? graph.nodes : []) {
    if (loweringKind(node.op) !== "kernel") continue;
    const lower = opDef(node.op).lower;
    if (lower.kind !== "kernel" || lower.prologue === false) continue;
    const pro: (number | undefined)[] = node.inputs.map((v, j) => {
      const allowed =
        (lower.prologue === true || (lower.prologue as readonly number[]).includes(j)) &&
        !lower.inplace?.some(([, i]) => i === j);
      const cid = clusterOf.get(producer(v));
      if (!allowed || cid === undefined || absorbed.has(cid) || outputs.has(v)) return undefined;
      if (!sameRun(members.get(cid)!, [node.id])) return undefined;
      const info = clusterInfo(cid);
      const onlyHere = info.outputs.length === 1 && info.outputs[0] === v &&
        (uses.get(v) ?? []).every((c) => c === node.id) &&
        node.inputs.filter((x) => x === v).length === 1;
      return onlyHere ? cid : undefined;
    });
    pro.forEach((cid) => cid !== undefined && absorbed.add(cid));
    if (pro.some((c) => c !== undefined)) prologuesOf.set(node.id, pro);
  }

  // --- 3. groups in dependency order --------------------------------------------
  interface Pending {
    group: Group;
    order: number;
    nodes: Set<number>;
  }
  const pending: Pending[] = [];
  for (const [cid, set] of members) {
    if (absorbed.has(cid)) continue;
    pending.push({
      group: { kind: "fused", cluster: clusterInfo(cid) },
      order: Math.min(...set),
      nodes: allMembers(cid),
    });
  }
  for (const node of graph.nodes) {
    const kind = loweringKind(node.op);
    if (kind === "alias") {
      if ([...epilogueAliasesOf.values()].some((a) => a.includes(node.id))) continue;
      pending.push({
        group: { kind: "alias", node: node.id },
        order: node.id,
        nodes: new Set([node.id]),
      });
    } else if (kind === "kernel") {
      const nodes = new Set([node.id]);
      const pro = (prologuesOf.get(node.id) ?? node.inputs.map(() => undefined)).map((cid) => {
        if (cid === undefined) return undefined;
        allMembers(cid).forEach((n) => nodes.add(n));
        return clusterInfo(cid);
      });
      const ecid = epilogueOf.get(node.id);
      let epilogue: Cluster | undefined;
      const aliasNodes = epilogueAliasesOf.get(node.id) ?? [];
      if (ecid !== undefined) {
        allMembers(ecid).forEach((n) => nodes.add(n));
        aliasNodes.forEach((n) => nodes.add(n));
        epilogue = clusterInfo(ecid);
      }
      pending.push({
        group: {
          kind: "kernel",
          node: node.id,
          prologues: pro,
          epilogue,
          ...(aliasNodes.length
            ? { epilogueAliases: aliasNodes.map((a) => graph.nodes[a].outputs[0]) }
            : {}),
        },
        order: node.id,
        nodes,
      });
    }
  }
  // Fusing by local rules can still tie groups into a cycle (kernel A's epilogue
  // needs kernel B's, whose epilogue needs a reduction of A's output: common in
  // gradient graphs). Each cycle is broken by splitting one of its groups back into
  // single nodes, which cannot form one: the node graph is acyclic.
  for (;;) {
    const order = scheduleOrder(pending.map((p) => p.nodes), pending.map((p) => p.order));
    if (!Array.isArray(order)) {
      const [split] = order.cycle.filter((i) => pending[i].nodes.size > 1);
      if (split === undefined) throw new Error("internal: fusion produced a dependency cycle");
      pending.splice(split, 1, ...singletons(pending[split]));
      continue;
    }
    return { graph, groups: order.map((i) => pending[i].group) };
  }

  /** A group's nodes as groups of one node each. */
  function singletons(p: Pending): Pending[] {
    return [...p.nodes].map((n) => {
      const node = graph.nodes[n];
      const kind = loweringKind(node.op);
      const nodes = new Set([n]);
      if (kind === "kernel") {
        const prologues = node.inputs.map(() => undefined);
        return { group: { kind: "kernel", node: n, prologues }, order: n, nodes };
      }
      if (kind === "alias") return { group: { kind: "alias", node: n }, order: n, nodes };
      const outs = node.outputs.filter((v) => outputs.has(v) || (uses.get(v) ?? []).length > 0);
      const shape = graph.values[node.outputs[0]].shape;
      return {
        group: { kind: "fused", cluster: { nodes: [n], shape, outputs: outs } },
        order: n,
        nodes,
      };
    });
  }

  /** Groups in dependency order (ties by `order`), or the groups of one cycle. */
  function scheduleOrder(
    sets: readonly Set<number>[],
    orders: readonly number[],
  ): number[] | { cycle: number[] } {
    const groupOfNode = new Map<number, number>();
    sets.forEach((set, i) => set.forEach((n) => groupOfNode.set(n, i)));
    const deps = sets.map((set, i) => {
      const d = new Set<number>();
      for (const n of set) {
        for (const v of graph.nodes[n].inputs) {
          const g = groupOfNode.get(producer(v));
          if (g !== undefined && g !== i) d.add(g);
        }
      }
      return d;
    });
    // A group runs as early as the earliest group that needs it: work built late
    // but needed early (a learning rate computed after the whole backward was
    // built, read by every weight update) must not wait until everything built
    // before it has run, holding the activations its consumers would free.
    const users = sets.map(() => [] as number[]);
    deps.forEach((d, i) => d.forEach((j) => users[j].push(i)));
    // Memory: a group nothing reads (a state update, an output) or one with only
    // small outputs (a learning rate, a norm's partial sum) runs as soon as it is
    // ready, so the large values it reads last (a weight's gradient) die early
    // instead of all living until the end of a training step. A state update
    // first waits for every other reader of the value it replaces, so the planner
    // can write it in place.
    const outs = sets.map((set) => [...set].flatMap((n) => graph.nodes[n].outputs));
    const small = (v: number) =>
      graph.values[v].shape.every((d) => typeof d === "number") &&
      numel(graph.values[v].shape as number[]) <= SMALL_OUTPUT;
    // Sinks: nothing reads them, but through reshapes (views of the same buffer).
    const alias = sets.map((set) =>
      set.size === 1 && loweringKind(graph.nodes[[...set][0]].op) === "alias"
    );
    const sink = users.map((u) => u.length === 0);
    for (let changed = true; changed;) {
      changed = false;
      users.forEach((u, i) => {
        if (!sink[i] && u.every((j) => alias[j] && sink[j])) sink[i] = changed = true;
      });
    }
    const eager = sets.map((_, i) => sink[i] || outs[i].every(small));
    // A state update (or a view) read only by eager groups is one too: AdamW's
    // moments, read by the weight's update; an update fused with the squared
    // gradient a norm's partial sum reads.
    const assigned = new Set(graph.assigns.values());
    const updates = outs.map((o) => o.some((v) => assigned.has(v)));
    for (let changed = true; changed;) {
      changed = false;
      sets.forEach((_, i) => {
        if (eager[i] || !(alias[i] || updates[i])) return;
        if (users[i].every((u) => eager[u])) eager[i] = changed = true;
      });
    }
    const readers = new Map<number, Set<number>>(); // value → groups reading it (through reshapes)
    sets.forEach((set, i) => {
      for (const n of set) {
        for (const v of graph.nodes[n].inputs) {
          if (!readers.has(v)) readers.set(v, new Set());
          readers.get(v)!.add(i);
        }
      }
    });
    const readersOf = (v: number, acc: Set<number> = new Set()): Set<number> => {
      for (const i of readers.get(v) ?? []) {
        acc.add(i);
        for (const n of sets[i]) {
          const node = graph.nodes[n];
          if (node.op === "reshape" && node.inputs[0] === v) readersOf(node.outputs[0], acc);
        }
      }
      return acc;
    };
    for (const [name, v] of graph.assigns) {
      const i = groupOfNode.get(producer(v));
      if (i === undefined || !sink[i]) continue;
      for (const j of readersOf(graph.states.get(name)!)) if (j !== i && !sink[j]) deps[i].add(j);
    }
    const due = orders.slice();
    const seen = new Set<number>();
    const settle = (i: number): number => {
      if (seen.has(i)) return due[i];
      seen.add(i);
      for (const u of users[i]) due[i] = Math.min(due[i], settle(u));
      return due[i];
    };
    sets.forEach((_, i) => settle(i));
    const first = (i: number, j: number) =>
      due[i] !== due[j] ? due[i] < due[j] : orders[i] < orders[j];
    const done = new Set<number>();
    const out: number[] = [];
    while (done.size < sets.length) {
      let best = -1;
      for (let i = 0; i < sets.length; i++) {
        if (done.has(i) || [...deps[i]].some((d) => !done.has(d))) continue;
        if (
          best < 0 || (eager[i] && !eager[best]) || (eager[i] === eager[best] && first(i, best))
        ) {
          best = i;
        }
      }
      if (best < 0) {
        // Walk unfinished dependencies from any stuck group until one repeats.
        const path: number[] = [];
        const at = new Map<number, number>();
        let i = [...sets.keys()].find((k) => !done.has(k))!;
        while (!at.has(i)) {
          at.set(i, path.length);
          path.push(i);
          i = [...deps[i]].find((d) => !done.has(d))!;
        }
        return { cycle: path.slice(at.get(i)) };
      }
      done.add(best);
      out.push(best);
    }
    return out;
  }
}
