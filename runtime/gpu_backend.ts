/**
 * The WebGPU backend of `compile`: a `GpuRunner` whose plans the planner builds
 * per binding of the symbolic dims, from the fused schedule.
 *
 * @module
 */

import { toHost } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import type { Schedule } from "../compiler/passes/fuse.ts";
import { buildPlan } from "../compiler/plan.ts";
import type { GpuDevice } from "./device.ts";
import { GpuRunner, GpuStore } from "./gpu_runner.ts";

export { GpuStore };

/**
 * Runs a graph's plans on a WebGPU device, planning each binding of the dims on first use.
 *
 * @example
 * ```ts ignore
 * import { GpuBackend } from "./gpu_backend.ts";
 * const backend = new GpuBackend(graph, fuse(graph), await requestDevice());
 * ```
 */
export class GpuBackend extends GpuRunner {
  /** A backend for `graph` (fused as `schedule`) on `device`, keeping buffers in `store`. */
  constructor(graph: Graph, schedule: Schedule, device: GpuDevice, store?: GpuStore) {
    super(
      {
        plan: (dims) => buildPlan(schedule, dims, device.caps),
        constant: (v) => toHost(graph.constants.get(v)!, graph.values[v].dtype),
        paramDType: (name) => graph.values[graph.params.get(name)!].dtype,
      },
      device,
      store,
    );
  }
}
