/**
 * Memory planning: every value gets a buffer slot; temporaries reuse slots whose
 * last reader has run (best fit first), in-place ops take over their input's
 * buffer when nothing reads it later, and new state values are copied home at
 * the end of a run.
 *
 * @module
 */

import { paddedBytes } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { type DimBindings, numel } from "../core/shape.ts";
import type {
  BufferOp,
  Plan,
  PlannedKernel,
  PlannedTensor,
  Slot,
  SlotBinding,
  Work,
} from "./plan_types.ts";

/** Liveness-based memory planning: temps reuse freed slots, best fit first. */
export function allocate(graph: Graph, items: Work[], shapes: number[][], dims: DimBindings): Plan {
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
      // Not when this item also reads the input through a binding (a prologue, or
      // the same value as another operand): one buffer would be bound twice.
      const readHere = it.kernels.some((k) =>
        k.bindings.some((b) => "value" in b.ref && rootOf(b.ref.value) === r)
      );
      const mayTake = lastUse.get(r) === i && !readHere && !pinned.has(r) && !pinned.has(out) &&
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
        ...(k.name !== undefined ? { name: k.name } : {}),
        ...(k.scope !== undefined ? { scope: k.scope } : {}),
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
  const updates: BufferOp[] = [];
  for (const [name, v] of graph.assigns) {
    const h = home.get(rootOf(v));
    if (!h) throw new Error(`internal: state "${name}" value has no buffer`);
    const to = stateSlot.get(name)!;
    if (h.slot === to && h.offset === 0) continue;
    updates.push({
      kind: "copy",
      from: h.slot,
      fromOffset: h.offset,
      to,
      toOffset: 0,
      size: bytesOf(v),
    });
  }
  // An output living in a state's buffer (the state itself, or a reshape of it) is
  // the value before this run's update, as on the CPU: copy it out first.
  const overwritten = new Set(updates.map((op) => (op.kind === "copy" ? op.to : -1)));
  const outHome = new Map<number, { slot: number; offset: number }>();
  const early: BufferOp[] = [];
  for (const v of outputs) {
    const h = home.get(rootOf(v));
    if (!h || !overwritten.has(h.slot)) continue;
    outHome.set(v, { slot: slots.length, offset: 0 });
    early.push({
      kind: "copy",
      from: h.slot,
      fromOffset: h.offset,
      to: slots.length,
      toOffset: 0,
      size: bytesOf(v),
    });
    slots.push({ bytes: bytesOf(v), kind: "output", name: nameOf.get(v) });
  }
  const after: BufferOp[] = [...pending, ...early, ...updates];

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
    outputs: new Map(
      [...graph.outputs].map(([k, v]) => [k, { ...tensorAt(v), ...outHome.get(v) }]),
    ),
    params: mapOf(graph.params),
    states: mapOf(graph.states),
    after,
    peakBytes,
    unplannedBytes: unplanned,
  };
}
