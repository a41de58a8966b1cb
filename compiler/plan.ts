/**
 * Specialises a fused schedule for concrete dimensions and a device: emits WGSL for
 * every group, splits kernels that would exceed the device's binding limits, and
 * plans memory so intermediate buffers are reused once their last reader has run.
 *
 * @module
 */

import { formatBytes } from "../core/format.ts";
import type { Graph } from "../core/graph.ts";
import { paddedBytes } from "../core/dtype.ts";
import { bindShape, type DimBindings, formatShape, numel } from "../core/shape.ts";
import type { Schedule } from "./passes/fuse.ts";
import type { DeviceCaps } from "../ops/types.ts";
import { emitGroup } from "./emit.ts";
import { allocate } from "./memory.ts";
import type { Plan, SlotBinding, Work } from "./plan_types.ts";

export type {
  BindingAccess,
  BufferOp,
  KernelTableName,
  Plan,
  PlannedKernel,
  PlannedTensor,
  Slot,
  SlotBinding,
  SlotKind,
} from "./plan_types.ts";

/** Builds the plan of `schedule` for `dims` on a device with `caps`. */
export function buildPlan(schedule: Schedule, dims: DimBindings, caps: DeviceCaps): Plan {
  const graph = schedule.graph;
  const storage = schedule.storage ?? new Map();
  if (!caps.f16) {
    const half = graph.values.find((v) => v.dtype === "f16" || storage.get(v.id) === "f16");
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
  for (const g of schedule.groups) {
    items.push(...emitGroup(graph, g, shapeOf, caps, outputs, storage));
  }
  const plan = allocate(graph, items, shapes, dims, storage);
  if (storage.size === 0) return plan;
  // Reshapes share their input's buffer: count each buffer's value once.
  const aliases = new Set(items.flatMap((it) => (it.alias ? [it.alias[0]] : [])));
  const held = [...storage].filter(([v]) => !aliases.has(v));
  const bytes = held.reduce((a, [v, d]) => a + paddedBytes(numel(shapes[v]), d), 0);
  return { ...plan, halfActivations: { values: held.length, bytes } };
}

function describeValue(graph: Graph, v: number): string {
  const node = graph.nodes[graph.values[v].node];
  for (const [name, id] of graph.inputs) if (id === v) return `input "${name}"`;
  return `${node.op} %${v} (at ${node.site})`;
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
      formatBytes(plan.peakBytes)
    } (unplanned intermediates ${formatBytes(plan.unplannedBytes)})`,
  );
  if (plan.halfActivations) {
    const { values, bytes } = plan.halfActivations;
    lines.push(`activations in f16 buffers: ${values} values, ${formatBytes(bytes)}`);
  }
  plan.kernels.forEach((k, i) => {
    const mode = (b: SlotBinding) => (b.access === "read_write" ? "w" : "r");
    const slotsUsed = k.bindings.map((b) => `${mode(b)}#${b.slot}`).join(" ");
    lines.push(`  [${i}] ${k.label}  grid ${k.workgroups.join("x")}  bufs ${slotsUsed}`);
    for (const op of k.ops) lines.push(`        ${op}`);
  });
  lines.push("buffers:");
  plan.slots.forEach((s, i) => {
    lines.push(`  #${i} ${s.kind}${s.name ? ` "${s.name}"` : ""} ${formatBytes(s.bytes)}`);
  });
  for (const [name, t] of plan.inputs) {
    lines.push(`input "${name}" ${t.dtype}${formatShape(t.shape)} → #${t.slot}`);
  }
  for (const [name, t] of plan.outputs) {
    lines.push(`output "${name}" ${t.dtype}${formatShape(t.shape)} ← #${t.slot}`);
  }
  return lines.join("\n");
}
