/**
 * Routed SwiGLU experts as the softmax-routed transformers classes compute
 * them (Mixtral, OLMoE, FlexOlmo, Hunyuan-A13B): per token the softmax of the
 * router logits, the top `k` (ties to the lower index), their probabilities
 * renormalised to sum 1 when `norm`, each chosen expert's SwiGLU weighted by
 * its probability.
 *
 * @module
 */

import { linear, swiglu, type SwigluWeights } from "./hf_reference.ts";

/**
 * The routed experts' output `[T, d]` on `x` `[T, d]` (router `[E, d]`,
 * experts `ff` wide).
 *
 * @example
 * ```ts ignore
 * const y = softmaxTopkExperts(x, T, d, ff, router, experts, 2, true);
 * ```
 */
export function softmaxTopkExperts(
  x: Float64Array,
  T: number,
  d: number,
  ff: number,
  router: Float64Array,
  experts: readonly SwigluWeights[],
  k: number,
  norm: boolean,
): Float64Array {
  const E = experts.length;
  const out = new Float64Array(T * d);
  const logits = linear(x, T, d, router, E);
  for (let t = 0; t < T; t++) {
    const z = logits.subarray(t * E, (t + 1) * E);
    const mx = Math.max(...z);
    const p = Array.from(z, (v) => Math.exp(v - mx));
    const sum = p.reduce((a, b) => a + b, 0);
    const chosen = p.map((_, e) => e).sort((a, b) => p[b] - p[a] || a - b).slice(0, k);
    const total = norm ? chosen.reduce((a, e) => a + p[e] / sum, 0) : 1;
    const xt = x.subarray(t * d, (t + 1) * d);
    for (const e of chosen) {
      const y = swiglu(xt, 1, d, ff, experts[e]);
      const wgt = p[e] / sum / total;
      for (let i = 0; i < d; i++) out[t * d + i] += wgt * y[i];
    }
  }
  return out;
}
