/**
 * Hugging Face's `hidden_act` functions in float64, from their definitions
 * (transformers' `ACT2FN`): silu, the exact GELU x·Φ(x) with Φ integrated
 * here (no erf approximation shared with Kiln), GELU's tanh form and ReLU.
 *
 * @module
 */

/**
 * Φ(x), the standard normal CDF, by Simpson's rule over the density from 0
 * (4000 panels: error far below 1e-12 for any |x|; beyond 9, 1 to f64).
 *
 * @example
 * ```ts
 * import { normalCdf } from "./activation_reference.ts";
 * normalCdf(0); // 0.5
 * ```
 */
export function normalCdf(x: number): number {
  const a = Math.min(Math.abs(x), 9), n = 4000, h = a / n;
  const f = (t: number) => Math.exp(-0.5 * t * t) / Math.sqrt(2 * Math.PI);
  let s = f(0) + f(a);
  for (let i = 1; i < n; i++) s += (i % 2 ? 4 : 2) * f(i * h);
  const half = (s * h) / 3;
  return x < 0 ? 0.5 - half : 0.5 + half;
}

const geluTanh = (x: number) =>
  0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

const ACTS: Record<string, (x: number) => number> = {
  silu: (x) => x / (1 + Math.exp(-x)),
  swish: (x) => x / (1 + Math.exp(-x)),
  gelu: (x) => x * normalCdf(x),
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_fast: geluTanh,
  relu: (x) => (x > 0 ? x : 0),
  // transformers' QuickGELUActivation.
  quick_gelu: (x) => x / (1 + Math.exp(-1.702 * x)),
};

/**
 * The activation a config's `hidden_act` names (absent: silu).
 *
 * @example
 * ```ts
 * import { hfActivation } from "./activation_reference.ts";
 * hfActivation("relu")(-1); // 0
 * ```
 */
export function hfActivation(name: unknown): (x: number) => number {
  const act = ACTS[typeof name === "string" ? name : name === undefined ? "silu" : ""];
  if (!act) throw new RangeError(`config.json: hidden_act ${JSON.stringify(name)} is not known`);
  return act;
}
