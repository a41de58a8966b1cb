/**
 * The choices a scheduled MoE model's decode loop runs under: how experts that
 * are not pinned reach the GPU, how a cache window predicts its uploads, and
 * what checking a window against the routing log finds.
 *
 * @module
 */

/**
 * How non-pinned experts reach the GPU:
 * - `lru` / `lfu` (cache): the rotating slots are a cache of (layer, expert)
 *   entries shared by every MoE layer, managed on the host with least-recently
 *   used or frequency (LFU with aging) replacement. Before each window of decode
 *   steps the host uploads the experts it predicts (the last known step's
 *   experts per layer: temporal locality); a step whose router picks a
 *   non-resident expert is a miss, found at the window's readback from the
 *   per-step routing log, and is re-run streamed (exact).
 * - `stream`: every non-pinned expert is copied into the rotating slots right
 *   before its layer on every step (no round trips, all non-resident bytes per
 *   token).
 * - `naive`: on-demand loading without a cache (the baseline): every step starts
 *   with no non-pinned expert resident, runs, reads its routing back, uploads
 *   the experts it chose and runs again until no chosen expert was missing.
 *
 * @example
 * ```ts ignore
 * import { type ExpertPolicy, loadModel } from "@kiln/kiln";
 * const expertPolicy: ExpertPolicy = "lfu";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB", expertPolicy });
 * ```
 */
export type ExpertPolicy = "lru" | "lfu" | "stream" | "naive";

/**
 * How a cache window predicts the experts to upload before it runs:
 * - `temporal`: the last step's experts of every layer (temporal locality);
 * - `lookahead`: Mixtral-offloading's router lookahead — each MoE layer's
 *   experts as predicted on the GPU during the last step by applying its router
 *   to the previous MoE layer's input (logged in `moe.lookahead`, read back with
 *   the window's routing log: no extra round trip); the first MoE layer keeps
 *   the temporal prediction;
 * - `both`: the union (more uploads, fewer misses).
 *
 * @example
 * ```ts ignore
 * import { type ExpertPrefetch, loadModel } from "@kiln/kiln";
 * const prefetch: ExpertPrefetch = "lookahead";
 * const model = await loadModel("./Mixtral-8x7B-v0.1", { memoryBudget: "24GiB", prefetch });
 * ```
 */
export type ExpertPrefetch = "temporal" | "lookahead" | "both";

/**
 * Slot table value of an expert that is not resident (the MoE kernels skip
 * its pairs).
 *
 * @example
 * ```ts
 * import { NOT_RESIDENT } from "./policy.ts";
 * const table = new Uint32Array(8).fill(NOT_RESIDENT); // no expert of the layer resident
 * ```
 */
export const NOT_RESIDENT = 0xffffffff;

/**
 * The outcome of checking a window of cache-mode steps against the routing log.
 *
 * @example
 * ```ts
 * import type { WindowCheck } from "@kiln/kiln";
 * const clean: WindowCheck = { missStep: -1, missLayer: -1 }; // every step hit the cache
 * ```
 */
export interface WindowCheck {
  /** First step that used a non-resident expert, or -1. */
  missStep: number;
  /** Its first MoE layer with a missing expert (layers up to it routed exactly). */
  missLayer: number;
}
