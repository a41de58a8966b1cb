/**
 * Learning-rate schedules computed on the device from the step counter, so a
 * training loop never uploads a learning rate: linear warmup, then a cosine
 * decay to a floor (Hugging Face's `get_cosine_schedule_with_warmup` with a
 * minimum), or constant after warmup. A host twin of each gives the same
 * numbers for logs, tests and checkpoints.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../builder.ts";

/**
 * A learning-rate schedule over optimizer updates.
 *
 * @example
 * ```ts
 * import type { LrSchedule } from "@kiln/kiln";
 * const s: LrSchedule = { peak: 3e-4, warmup: 100, total: 10_000, decay: "cosine", minRatio: 0.1 };
 * ```
 */
export interface LrSchedule {
  /** Peak learning rate (after warmup). */
  peak: number;
  /** Updates of linear warmup from 0 (default 0): update s < warmup uses peak·s/warmup. */
  warmup?: number;
  /** Updates in the whole run (where the cosine reaches its floor); needed for `"cosine"`. */
  total?: number;
  /** `"cosine"` (default) or `"constant"` after warmup. */
  decay?: "cosine" | "constant";
  /** Floor of the cosine as a fraction of the peak (default 0). */
  minRatio?: number;
}

function checked(s: LrSchedule): Required<LrSchedule> {
  const peak = s?.peak;
  if (typeof peak !== "number" || !(peak >= 0) || !Number.isFinite(peak)) {
    throw new RangeError(`schedule: peak must be a finite number ≥ 0, got ${peak}`);
  }
  const warmup = s.warmup ?? 0;
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new RangeError(`schedule: warmup must be an integer ≥ 0, got ${warmup}`);
  }
  const decay = s.decay ?? "cosine";
  if (decay !== "cosine" && decay !== "constant") {
    throw new RangeError(`schedule: decay must be "cosine" or "constant", got ${decay}`);
  }
  const total = s.total ?? (decay === "cosine" ? NaN : warmup);
  if (!Number.isInteger(total) || total < warmup) {
    throw new RangeError(
      `schedule: total must be an integer ≥ warmup (${warmup}) for a cosine decay, got ${s.total}`,
    );
  }
  const minRatio = s.minRatio ?? 0;
  if (!(minRatio >= 0 && minRatio <= 1)) {
    throw new RangeError(`schedule: minRatio must be in [0, 1], got ${minRatio}`);
  }
  return { peak, warmup, total, decay, minRatio };
}

/**
 * The learning rate of update `step` (0-based) on the host, in float64.
 *
 * @example
 * ```ts
 * import { learningRateAt } from "@kiln/kiln";
 * learningRateAt({ peak: 1, warmup: 10, total: 110 }, 60); // 0.5
 * ```
 */
export function learningRateAt(schedule: LrSchedule, step: number): number {
  const s = checked(schedule);
  if (step < s.warmup) return s.peak * step / s.warmup;
  if (s.decay === "constant") return s.peak;
  const p = Math.min(1, (step - s.warmup) / Math.max(1, s.total - s.warmup));
  return s.peak * (s.minRatio + (1 - s.minRatio) * 0.5 * (1 + Math.cos(Math.PI * p)));
}

/** Taylor coefficients of sin t, t ∈ [−π/2, π/2], up to t¹⁵ (error below 3e-12). */
const SIN = [
  1,
  -1 / 6,
  1 / 120,
  -1 / 5040,
  1 / 362880,
  -1 / 39916800,
  1 / 6227020800,
  -1 /
  1307674368000,
];

/**
 * `cos(π·p)` for p ∈ [0, 1] from elementwise ops, as −sin(π(p − ½)) by its
 * Taylor series: Kiln has no cosine op, and this keeps the schedule one small
 * fused kernel with f32 accuracy.
 */
function cosPi(g: GraphBuilder, p: Tensor): Tensor {
  const t = p.sub(0.5).mul(Math.PI);
  const u = t.mul(t);
  let acc = g.lift(SIN[SIN.length - 1], "f32");
  for (let i = SIN.length - 2; i >= 0; i--) acc = acc.mul(u).add(SIN[i]);
  return acc.mul(t).neg();
}

/**
 * Builds the learning rate of update `step` (0-based, f32 `[1]`) as f32 `[1]`:
 * the device twin of {@linkcode learningRateAt}.
 *
 * @example
 * ```ts
 * import { GraphBuilder, learningRate } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const step = g.input("step", [1]);
 * g.output("lr", learningRate(g, step, { peak: 3e-4, warmup: 10, total: 100 }));
 * ```
 */
export function learningRate(g: GraphBuilder, step: Tensor, schedule: LrSchedule): Tensor {
  const s = checked(schedule);
  let after = step.mul(0).add(s.peak); // the step's shape
  if (s.decay === "cosine") {
    const p = step.sub(s.warmup).div(Math.max(1, s.total - s.warmup)).maximum(0).minimum(1);
    const c = cosPi(g, p).add(1).mul(0.5 * (1 - s.minRatio)).add(s.minRatio);
    after = c.mul(s.peak);
  }
  if (s.warmup === 0) return after;
  return step.mul(s.peak / s.warmup).where(step.less(s.warmup), after);
}
