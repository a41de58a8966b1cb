/**
 * The MoE kernels' scratch buffers: which intermediates each path passes
 * between its kernels, their element types and sizes.
 *
 * @module
 */

import type { ScratchSpec } from "../types.ts";
import type { MoePath, ResolvedMoeConfig } from "./config.ts";

/**
 * The intermediates the kernels pass to each other through scratch buffers:
 * router probabilities, the routing (`topk_idx`, `topk_w`; outputs instead
 * when the op reports its routing), the expert-sorted rows of the prefill path
 * and the hidden activations of each path.
 *
 * @example
 * ```ts
 * import type { MoeScratchBuffer } from "./scratch.ts";
 * const b: MoeScratchBuffer = "sorted_token";
 * ```
 */
export type MoeScratchBuffer =
  | "probs"
  | "topk_idx"
  | "topk_w"
  | "sorted_token"
  | "sorted_w"
  | "tile_expert"
  | "slot_pos"
  | "h"
  | "o"
  | "hd"
  | "hdense";

/** Scratch buffers of each path, in scratch order, with their element types. */
const SCRATCH: Record<MoePath, readonly (readonly [MoeScratchBuffer, ScratchSpec["type"]])[]> = {
  prefill: [
    ["probs", "f32"],
    ["topk_idx", "u32"],
    ["topk_w", "f32"],
    ["sorted_token", "u32"],
    ["sorted_w", "f32"],
    ["tile_expert", "u32"],
    ["slot_pos", "u32"],
    ["h", "f32"],
    ["o", "f32"],
  ],
  decode: [["probs", "f32"], ["topk_idx", "u32"], ["topk_w", "f32"], ["hd", "f32"]],
  dense: [["probs", "f32"], ["topk_idx", "u32"], ["topk_w", "f32"], ["hdense", "f32"]],
};

/**
 * The scratch buffers of `path` in scratch order (`scratch{j}` is the j-th):
 * with `routing`, the routing lives in the op's outputs instead.
 *
 * @example
 * ```ts
 * import { moeScratchLayout } from "./scratch.ts";
 * moeScratchLayout("decode", false); // ["probs", "topk_idx", "topk_w", "hd"]
 * moeScratchLayout("decode", true); // ["probs", "hd"]
 * ```
 */
export function moeScratchLayout(path: MoePath, routing: boolean): MoeScratchBuffer[] {
  return moeScratchTypes(path, routing).map(([b]) => b);
}

function moeScratchTypes(
  path: MoePath,
  routing: boolean,
): (readonly [MoeScratchBuffer, ScratchSpec["type"]])[] {
  return SCRATCH[path].filter(([b]) => !(routing && (b === "topk_idx" || b === "topk_w")));
}

/**
 * Elements of each scratch buffer for a resolved config (the backward's
 * routing buffers share these sizes).
 *
 * @example
 * ```ts
 * import { moeScratchLength } from "./scratch.ts";
 * import { resolveMoeConfig } from "./config.ts";
 * const c = resolveMoeConfig({ T: 8, d: 16, ff: 32, E: 4, k: 2, router: "softmax_topk" });
 * moeScratchLength(c, "topk_idx"); // 16: T · k
 * ```
 */
export function moeScratchLength(c: ResolvedMoeConfig, b: MoeScratchBuffer): number {
  const { T, d, ff, E, k, rowsMax, tilesMax } = c;
  switch (b) {
    case "probs":
      return T * E;
    case "topk_idx":
    case "topk_w":
    case "slot_pos":
      return T * k;
    case "sorted_token":
    case "sorted_w":
      return rowsMax;
    case "tile_expert":
      return tilesMax;
    case "h":
      return rowsMax * ff;
    case "o":
      return rowsMax * d;
    case "hd":
      return T * k * ff;
    case "hdense":
      return E * Math.ceil(T / c.tile.rows) * c.tile.rows * ff;
  }
}

/**
 * The scratch buffers `path` needs for config `c`, in scratch order, and where
 * each intermediate sits among them.
 *
 * @example
 * ```ts
 * import { moeScratch } from "./scratch.ts";
 * import { resolveMoeConfig } from "./config.ts";
 * const c = resolveMoeConfig({ T: 8, d: 16, ff: 32, E: 4, k: 2, router: "softmax_topk" });
 * const { specs, at } = moeScratch(c, "prefill", false);
 * specs[at.h!].length; // rowsMax · ff
 * ```
 */
export function moeScratch(
  c: ResolvedMoeConfig,
  path: MoePath,
  routing: boolean,
): { specs: ScratchSpec[]; at: Partial<Record<MoeScratchBuffer, number>> } {
  const at: Partial<Record<MoeScratchBuffer, number>> = {};
  const specs = moeScratchTypes(path, routing).map(([b, type], j): ScratchSpec => {
    at[b] = j;
    return { length: Math.max(1, moeScratchLength(c, b)), type };
  });
  return { specs, at };
}
