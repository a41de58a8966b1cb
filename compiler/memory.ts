/**
 * Memory planning: every value gets a buffer range. Temporaries are placed by
 * their known lifetimes — largest first, at the lowest free offset of a shared
 * buffer, never beside a tensor bound in the same dispatch; in-place ops take
 * over their input's buffer when nothing reads it later, and new state values
 * are copied home at the end of a run.
 *
 * @module
 */

import { type DType, paddedBytes } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { type DimBindings, numel } from "../core/shape.ts";
import type { KernelTableName } from "../core/kernel_tables.ts";
import type {
  BufferOp,
  Plan,
  PlannedKernel,
  PlannedTensor,
  Slot,
  SlotBinding,
  Work,
} from "./plan_types.ts";

/** Liveness-based memory planning: temporaries with disjoint lifetimes share slots. */
export function allocate(
  graph: Graph,
  items: Work[],
  shapes: number[][],
  dims: DimBindings,
  storage: ReadonlyMap<number, DType> = new Map(),
): Plan {
  const slots: Slot[] = [];
  const home = new Map<number, { slot: number; offset: number }>();
  // A buffer holds its storage dtype (an f16 activation of an f32 value).
  const bytesOf = (v: number) =>
    paddedBytes(numel(shapes[v]), storage.get(v) ?? graph.values[v].dtype);
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

  // Temporaries are planned in two steps: the walk below gives every buffer
  // request its own virtual slot with the span of items it is live over (an
  // in-place op extends its input's span), then `packTemps` folds virtual
  // slots with disjoint spans into shared physical ones, largest first. Knowing
  // every lifetime up front fits far tighter than reusing freed slots online.
  const born = new Map<number, number>(); // virtual temp slot → first item
  const died = new Map<number, number>(); // virtual temp slot → last item (absent: to the end)
  let cur = 0;
  const take = (bytes: number): number => {
    slots.push({ bytes, kind: "temp" });
    born.set(slots.length - 1, cur);
    return slots.length - 1;
  };
  const release = (slot: number, i: number) => {
    if (!died.has(slot)) died.set(slot, i);
  };

  // One buffer per constant table, shared by every kernel that names it.
  const tables = new Map<KernelTableName, number>();
  const tableSlot = (name: KernelTableName, bytes: number): number => {
    let slot = tables.get(name);
    if (slot === undefined) {
      slot = slots.push({ bytes, kind: "const", table: name }) - 1;
      tables.set(name, slot);
    }
    return slot;
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
    cur = i;
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
        if ("table" in b.ref) {
          return {
            slot: tableSlot(b.ref.table, b.size),
            offset: 0,
            size: b.size,
            access: b.access,
          };
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
      if (h && slots[h.slot].kind === "temp") release(h.slot, i);
    }
    for (const s of scratchSlots) release(s, i);
    // Values written but never read (dead outputs of multi-output ops) are free at once.
    for (const v of it.writes) {
      const h = home.get(v);
      if (
        h && !lastUse.has(v) && !pinned.has(v) && !assignOf.has(v) &&
        slots[h.slot].kind === "temp"
      ) release(h.slot, i);
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

  // Fold the virtual temporaries into shared slots and renumber every reference.
  // Temps bound together (one dispatch, or one copy) must not share a buffer:
  // WebGPU forbids read-only and writable use of one buffer in a dispatch.
  const together: number[][] = kernels.map((k) => k.bindings.map((b) => b.slot));
  for (const k of kernels) {
    for (const o of k.before) if (o.kind === "copy") together.push([o.from, o.to]);
  }
  for (const o of after) if (o.kind === "copy") together.push([o.from, o.to]);
  const re = packTemps(slots, born, died, items.length, together);
  const final = re.slots;
  const at = (h: { slot: number; offset: number }) => ({
    slot: re.map[h.slot],
    offset: h.offset + re.offset[h.slot],
  });
  const op = (o: BufferOp): BufferOp =>
    o.kind === "zero" ? { ...o, slot: re.map[o.slot], offset: o.offset + re.offset[o.slot] } : {
      ...o,
      from: re.map[o.from],
      fromOffset: o.fromOffset + re.offset[o.from],
      to: re.map[o.to],
      toOffset: o.toOffset + re.offset[o.to],
    };
  for (const [v, h] of home) home.set(v, at(h));
  for (const [v, h] of outHome) outHome.set(v, at(h));
  const planned = kernels.map((k) => ({
    ...k,
    bindings: k.bindings.map((b) => ({
      ...b,
      slot: re.map[b.slot],
      offset: b.offset + re.offset[b.slot],
    })),
    before: k.before.map(op),
  }));

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
  const peakBytes = final.filter((s) => s.kind !== "param").reduce((a, s) => a + s.bytes, 0);
  return {
    dims,
    kernels: planned,
    slots: final,
    inputs: mapOf(graph.inputs),
    outputs: new Map(
      [...graph.outputs].map(([k, v]) => [k, { ...tensorAt(v), ...outHome.get(v) }]),
    ),
    params: mapOf(graph.params),
    states: mapOf(graph.states),
    after: after.map(op),
    peakBytes,
    unplannedBytes: unplanned,
  };
}

/** Offsets of values sharing a buffer: WebGPU's largest storage offset alignment. */
const PLACE_ALIGN = 256;

/**
 * Packs virtual temporary slots (each live over items `[born, died]`, to the
 * end when it never died) into shared buffers: largest first, each at the
 * lowest offset of a buffer where nothing live at the same time sits (the
 * greedy-by-size offset planner of TFLite's arena), in the buffer that grows
 * least — but never beside a value it is bound together with (`together`:
 * the slots of one dispatch or copy). A few orders are tried and the smallest
 * total kept. Non-temp slots keep their order; `map`/`offset` take every old
 * slot index to its new slot and byte offset.
 */
function packTemps(
  slots: readonly Slot[],
  born: ReadonlyMap<number, number>,
  died: ReadonlyMap<number, number>,
  end: number,
  together: readonly (readonly number[])[],
): { slots: Slot[]; map: number[]; offset: number[] } {
  const partners = new Map<number, Set<number>>();
  for (const group of together) {
    for (const a of group) {
      if (!born.has(a)) continue;
      if (!partners.has(a)) partners.set(a, new Set());
      for (const b of group) if (b !== a && born.has(b)) partners.get(a)!.add(b);
    }
  }
  const span = (k: number) => (died.get(k) ?? end) - born.get(k)!;
  const orders: ((a: number, b: number) => number)[] = [
    (a, b) => slots[b].bytes - slots[a].bytes || born.get(a)! - born.get(b)! || a - b,
    (a, b) => slots[b].bytes - slots[a].bytes || span(b) - span(a) || a - b,
    (a, b) => slots[b].bytes * span(b) - slots[a].bytes * span(a) || a - b,
  ];
  let best: { slots: Slot[]; map: number[]; offset: number[]; bytes: number } | undefined;
  for (const order of orders) {
    const r = packInOrder(slots, [...born.keys()].sort(order), born, died, end, partners);
    const bytes = r.slots.reduce((a, s) => a + (s.kind === "temp" ? s.bytes : 0), 0);
    if (!best || bytes < best.bytes) best = { ...r, bytes };
  }
  return best!;
}

/** One greedy pass of {@linkcode packTemps} over the virtual temporaries in `order`. */
function packInOrder(
  slots: readonly Slot[],
  order: readonly number[],
  born: ReadonlyMap<number, number>,
  died: ReadonlyMap<number, number>,
  end: number,
  partners: ReadonlyMap<number, ReadonlySet<number>>,
): { slots: Slot[]; map: number[]; offset: number[] } {
  const out: Slot[] = [];
  const map = new Array<number>(slots.length);
  const offset = new Array<number>(slots.length).fill(0);
  slots.forEach((s, k) => {
    if (s.kind !== "temp") {
      map[k] = out.length;
      out.push(s);
    }
  });
  type Placed = { k: number; from: number; to: number; at: number; bytes: number };
  const buffers: { slot: number; placed: Placed[] }[] = [];
  const align = (n: number) => Math.ceil(n / PLACE_ALIGN) * PLACE_ALIGN;
  for (const k of order) {
    const from = born.get(k)!, to = died.get(k) ?? end, bytes = slots[k].bytes;
    const mates = partners.get(k);
    let pick: { buf: (typeof buffers)[number]; at: number; grow: number } | undefined;
    for (const buf of buffers) {
      if (mates && buf.placed.some((p) => mates.has(p.k))) continue;
      const live = buf.placed.filter((p) => !(to < p.from || p.to < from));
      // The lowest offset clear of everything live over the span.
      live.sort((a, b) => a.at - b.at);
      let at = 0;
      for (const p of live) {
        if (at + bytes <= p.at) break;
        at = Math.max(at, align(p.at + p.bytes));
      }
      const grow = Math.max(0, at + bytes - out[buf.slot].bytes);
      if (!pick || grow < pick.grow) pick = { buf, at, grow };
      if (grow === 0) break;
    }
    if (!pick || pick.grow >= bytes) {
      const buf = { slot: out.length, placed: [] as Placed[] };
      out.push({ bytes: 0, kind: "temp" });
      buffers.push(buf);
      pick = { buf, at: 0, grow: bytes };
    }
    const { buf, at } = pick;
    buf.placed.push({ k, from, to, at, bytes });
    out[buf.slot].bytes = Math.max(out[buf.slot].bytes, at + bytes);
    map[k] = buf.slot;
    offset[k] = at;
  }
  return { slots: out, map, offset };
}
