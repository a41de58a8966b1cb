/**
 * Running a MoE model whose experts do not all sit on one GPU: streaming them
 * through a slot pool under a memory budget (the expert scheduler), or
 * splitting them across several devices (expert parallelism).
 *
 * Files:
 * - `placement.ts`: where experts go under a memory budget ({@linkcode planExperts}),
 *   the routing statistics that steer it, byte budgets;
 * - `scheduler.ts`: the {@linkcode ExpertScheduler} — what moves into the
 *   slot pool when (streaming, the LRU / LFU cache, the naive baseline);
 * - `tiers.ts`: the slot pool and the host and disk tiers experts come from;
 * - `policy.ts`: the policies, prefetch predictors and window checks;
 * - `stats.ts`: the scheduler's counters, their summary and report;
 * - `router_kernel.ts`: where a MoE layer's router runs in a plan;
 * - `heatmap.ts`: an SVG of expert usage;
 * - `device_plan.ts`: which device holds each expert ({@linkcode planDevices});
 * - `selection.ts`: the router's selection repeated on the host;
 * - `parallel.ts`: {@linkcode ExpertParallel}, running the other devices'
 *   experts at host barriers.
 *
 * @example
 * ```ts ignore
 * import { loadModel } from "../../mod.ts";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB" });
 * for await (const text of model.generate("Hello", { maxTokens: 16 })) console.log(text);
 * console.log(model.experts?.report());
 * ```
 *
 * @module
 */

export { ExpertScheduler, SLOT_POOL } from "./scheduler.ts";
export {
  describeExpertPlan,
  type ExpertPlan,
  type ExpertPlanInput,
  minimumBudget,
  parseBytes,
  planExperts,
  readRoutingStats,
  ROUTING_STATS_FILE,
  type RoutingStats,
  writeRoutingStats,
} from "./placement.ts";
export {
  type ExpertPolicy,
  type ExpertPrefetch,
  NOT_RESIDENT,
  type WindowCheck,
} from "./policy.ts";
export { type ExpertStats, type ExpertStatsSummary } from "./stats.ts";
export { type ExpertFormats, type ExpertTensorName, type ExpertWeight } from "./tiers.ts";
export { moeRouterKernel } from "./router_kernel.ts";
export { usageHeatmapSvg } from "./heatmap.ts";
export {
  describeDevicePlan,
  type DevicePlan,
  type DevicePlanInput,
  planDevices,
} from "./device_plan.ts";
export {
  buildRemoteExperts,
  checkDevices,
  ExpertParallel,
  type ParallelStats,
  type RemoteRouting,
} from "./parallel.ts";
export { type HostRouting, routeOnHost } from "./selection.ts";
