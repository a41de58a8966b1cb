/**
 * How many positions a run may use, checked before any long work: not past the
 * model's `max_position_embeddings` unless the user opts in (`--allow-long`), and
 * not more than the device can hold — the KV cache of each attention layer is one
 * buffer, bound to a kernel in pieces of at most the device's binding size.
 *
 * @module
 */

import { optimize } from "../../compiler/optimize.ts";
import { fuse } from "../../compiler/passes/fuse.ts";
import { buildPlan } from "../../compiler/plan.ts";
import { formatBytes } from "../../core/format.ts";
import type { DeviceCaps } from "../../core/types.ts";
import { buildCausalLM } from "../../models/causal_lm.ts";
import { hasAttention, type ModelConfig } from "../../models/config.ts";
import { UsageError } from "./errors.ts";

/** Positions a run uses by default: the model's own limit when it is smaller. */
export const DEFAULT_MAX_SEQ = 2048;

/**
 * The `--max-seq` of `generate`: the model's `max_position_embeddings` (at most
 * {@linkcode DEFAULT_MAX_SEQ}) when absent; a value past it is a
 * {@linkcode UsageError} unless `allowLong`. Returns the value and, when it
 * goes past the model's limit, the line to announce once every check passed.
 *
 * @example
 * ```ts ignore
 * import { maxSeqFor } from "./limits.ts";
 * const { maxSeq } = maxSeqFor(cfg, undefined, false); // min(2048, cfg.maxPositions)
 * ```
 */
export function maxSeqFor(
  cfg: ModelConfig,
  requested: number | undefined,
  allowLong: boolean,
): { maxSeq: number; announce?: string } {
  const max = cfg.maxPositions;
  if (requested === undefined) return { maxSeq: Math.min(DEFAULT_MAX_SEQ, max ?? DEFAULT_MAX_SEQ) };
  const announce = checkPositions(cfg, requested, `--max-seq ${requested}`, allowLong);
  return { maxSeq: requested, announce };
}

/**
 * Refuses `positions` past the model's `max_position_embeddings` (a
 * {@linkcode UsageError} naming both numbers) unless `allowLong`; then returns
 * the line announcing it (the caller prints it once every check passed).
 *
 * @example
 * ```ts ignore
 * import { checkPositions } from "./limits.ts";
 * const line = checkPositions(cfg, 100_032, "--prompt-tokens 100000 + --tokens 32", true);
 * ```
 */
export function checkPositions(
  cfg: ModelConfig,
  positions: number,
  what: string,
  allowLong: boolean,
): string | undefined {
  const max = cfg.maxPositions;
  if (max === undefined || positions <= max) return undefined;
  if (!allowLong) {
    throw new UsageError(
      `${what} is beyond the model's max_position_embeddings (${max}); ` +
        `lower it, or pass --allow-long to run past what the model was trained for`,
    );
  }
  return `kiln: --allow-long: ${what} runs past the model's max_position_embeddings ` +
    `(${max}); output past position ${max} may be meaningless`;
}

/**
 * Refuses a `maxSeq` whose per-sequence device state does not fit the device:
 * each attention layer's K cache and V cache (`maxSeq × kv heads × head dim`
 * at f32) and the generated-token log (`maxSeq` u32) are single buffers, at
 * most `maxBufferSize` bytes, and a kernel binds them in pieces of at most
 * `caps.maxBindingSize`, only so many at once. The binding count is checked by
 * planning the graphs, and only when a piece limit is crossed (planning costs
 * time on big models). The error names `option` and the bytes.
 *
 * @example
 * ```ts ignore
 * import { checkContextFits } from "./limits.ts";
 * checkContextFits(cfg, 1e9, "--max-seq", device.caps, device.device.limits.maxBufferSize);
 * ```
 */
export function checkContextFits(
  cfg: ModelConfig,
  maxSeq: number,
  option: string,
  caps: DeviceCaps,
  maxBufferSize: number,
): void {
  const a = cfg.attention;
  const layers = cfg.pattern.filter(hasAttention).length;
  // Latent attention caches one row of kvLoraRank + ropeDim values a token, for K and V.
  const row = a?.mla ? a.mla.kvLoraRank + a.mla.ropeDim : a ? a.kvHeads * a.headDim : 0;
  const cache = layers ? maxSeq * row * 4 : 0;
  const log = maxSeq * 4;
  const what = !cache
    ? `the log of generated tokens takes ${formatBytes(log)}`
    : a?.mla
    ? `the latent KV cache takes ${formatBytes(cache)} per attention layer ` +
      `(${formatBytes(layers * cache)} in all)`
    : `the KV cache takes ${formatBytes(cache)} per attention layer for K and as much for V ` +
      `(${formatBytes(2 * layers * cache)} in all)`;
  const largest = Math.max(cache, log);
  if (largest > maxBufferSize) {
    const fit = Math.floor(maxBufferSize / (largest / maxSeq));
    throw new UsageError(
      `${option} ${maxSeq}: ${what}, more than this device's largest buffer ` +
        `(${formatBytes(maxBufferSize)}, ${fit} positions); lower ${option}`,
    );
  }
  if (largest <= caps.maxBindingSize) return;
  try {
    for (const mode of ["decode", "prefill"] as const) {
      const g = buildCausalLM(cfg, { mode, maxSeq, maxNew: maxSeq });
      buildPlan(fuse(optimize(g)), mode === "prefill" ? { T: 1 } : {}, caps);
    }
  } catch (e) {
    if (!(e instanceof RangeError) || !/storage buffers/.test(e.message)) throw e;
    throw new UsageError(
      `${option} ${maxSeq}: ${what}, more than one kernel can bind on this device ` +
        `(${caps.maxStorageBuffers} storage buffers of at most ${
          formatBytes(caps.maxBindingSize)
        }); lower ${option}`,
    );
  }
}
