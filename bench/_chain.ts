import type { Tensor } from "../mod.ts";

/** The 10-op chain of the core benchmarks: mul, add, silu, sub, tanh, mul, abs, sqrt, add, log. */
export function chain(x: Tensor): Tensor {
  return x.mul(1.5).add(0.25).silu().sub(0.1).tanh().mul(x).abs().sqrt().add(1).log();
}
