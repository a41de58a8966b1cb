/**
 * One training step of the fused MLP block (`examples/fused_mlp.ts`) as a
 * graph: forward, the gradients `g.grad` adds to the same graph, and an AdamW
 * update of every weight held in device states. `deno task inspect
 * examples/train_step_graph.ts` prints the IR (the gradient nodes scoped
 * `….grad`) and the plan: the backward is fused and planned like any graph.
 */
import { adamw, buildTrainStep, TrainableBuilder } from "../mod.ts";

/** Builds the step; exported for `deno task inspect`. */
export function build(d = 64, ff = 256): TrainableBuilder {
  const g = new TrainableBuilder();
  const x = g.input("x", ["T", d]);
  const target = g.input("target", ["T", d]);
  const y = g.scope("mlp", () => {
    const h = x.rmsnorm(g.param("norm", [d]), 1e-6).matmul(g.param("w1", [ff, d]), {
      transB: true,
    }).silu();
    return h.matmul(g.param("w2", [d, ff]), { transB: true }).add(x);
  });
  const err = y.sub(target);
  const loss = err.mul(err).mean(-1).mean(0);
  buildTrainStep(g, loss, { optimizer: adamw(), schedule: { peak: 1e-3, decay: "constant" } });
  return g;
}

/** Dims `inspect` uses when none are given. */
export const dims = { T: 32 };
