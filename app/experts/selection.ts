/**
 * The router's expert selection repeated on the host, for expert parallelism:
 * which experts a token's router kernel chose, and which it may have chosen.
 *
 * The softmax routers select by the logits themselves (strict `>` scanning
 * upwards, ties to the lower index; a group by its best logit), which the host
 * compares exactly as the kernel does. The `sigmoid_bias` router selects by `σ(logit) + bias`, within
 * the best groups when routing is group-limited, and `softmax_bias` by
 * `softmax(logits) + bias`; the host's σ and softmax (float64) can differ
 * from the kernel's (f32) in the last bits: a token whose choice hangs on a
 * margin that small may have chosen otherwise, so all its experts count as
 * possible and no device is skipped for it.
 *
 * @module
 */

import type { MoeRouterKind } from "../../ops/moe/mod.ts";

/**
 * How a layer routes, as the host repeats it.
 *
 * @example
 * ```ts
 * import type { HostRouting } from "./selection.ts";
 * const glm: HostRouting = { router: "sigmoid_bias", topK: 8, groups: { count: 1, kept: 1 } };
 * ```
 */
export interface HostRouting {
  /** Router kind (default `"softmax_topk"`). */
  router?: MoeRouterKind;
  /** Experts per token. */
  topK: number;
  /** Group-limited routing (absent: none): groups scored by their two best (`sigmoid_bias`) or best. */
  groups?: { count: number; kept: number };
}

/**
 * A score margin below which f32 and float64 sigmoids may order two experts
 * (or groups) differently: ~100× the f32 rounding of a value near 1.
 */
const SIGMOID_MARGIN = 1e-5;

/**
 * Token `t`'s routing: `chosen` (best first, as the kernel picks them) and
 * `possible` — `chosen`, or every expert when a near-tie could have changed
 * the choice (see the module notes). `logits` is `[T, E]`; `bias` the layer's
 * selection bias `[E]` (`sigmoid_bias` and `softmax_bias` only).
 *
 * @example
 * ```ts
 * import { routeOnHost } from "./selection.ts";
 * const r = routeOnHost({ topK: 1 }, Float32Array.of(0.1, 2, -1), 0, 3);
 * r.chosen; // [1]
 * ```
 */
export function routeOnHost(
  o: HostRouting,
  logits: Float32Array,
  t: number,
  E: number,
  bias?: Float32Array,
): { chosen: number[]; possible: readonly number[] } {
  const row = Array.from(logits.subarray(t * E, (t + 1) * E));
  if (o.router !== "sigmoid_bias" && o.router !== "softmax_bias") return select(row, o, 0, 1);
  if (!bias || bias.length !== E) {
    throw new RangeError(`routeOnHost: the ${o.router} router needs its ${E} selection biases`);
  }
  if (o.router === "softmax_bias") {
    const mx = Math.max(...row);
    const ex = row.map((z) => Math.exp(z - mx));
    const sum = ex.reduce((a, b) => a + b, 0);
    return select(ex.map((v, e) => v / sum + bias[e]), o, SIGMOID_MARGIN, 1);
  }
  return select(row.map((z, e) => 1 / (1 + Math.exp(-z)) + bias[e]), o, SIGMOID_MARGIN, 2);
}

/**
 * Top-k of `score` within the kept groups (each scored by its `best` top
 * scores, summed), and the possible set for `margin`.
 */
function select(
  score: number[],
  o: HostRouting,
  margin: number,
  best: number,
): { chosen: number[]; possible: readonly number[] } {
  const E = score.length;
  const all = Array.from({ length: E }, (_, e) => e);
  let allowed: (e: number) => boolean = () => true;
  let nearTie = false;
  const g = o.groups;
  if (g && g.kept < g.count) {
    const per = E / g.count;
    const groupScore = Array.from({ length: g.count }, (_, i) => {
      const s = score.slice(i * per, (i + 1) * per).sort((a, b) => b - a);
      return s.slice(0, best).reduce((a, b) => a + b, 0);
    });
    const order = top(groupScore, g.count);
    nearTie = groupScore[order[g.kept - 1]] - groupScore[order[g.kept]] <= margin && margin > 0;
    const kept = new Set(order.slice(0, g.kept));
    allowed = (e) => kept.has(Math.floor(e / per));
  }
  const masked = score.map((s, e) => (allowed(e) ? s : -Infinity));
  const order = top(masked, Math.min(E, o.topK + 1));
  const chosen = order.slice(0, o.topK);
  if (margin > 0 && order.length > o.topK && masked[order[o.topK]] !== -Infinity) {
    nearTie ||= masked[order[o.topK - 1]] - masked[order[o.topK]] <= margin;
  }
  return { chosen, possible: nearTie ? all : chosen };
}

/** Indices of the `n` largest values, best first; ties to the lower index (the kernel's rule). */
function top(v: readonly number[], n: number): number[] {
  const taken = new Uint8Array(v.length);
  const out: number[] = [];
  for (let j = 0; j < n; j++) {
    let best = -1;
    for (let i = 0; i < v.length; i++) {
      if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    }
    taken[best] = 1;
    out.push(best);
  }
  return out;
}
