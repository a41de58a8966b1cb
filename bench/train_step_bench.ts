/**
 * Training-step throughput of a Mamba, a dense Transformer (Mixtral with one
 * expert, k = 1) and a MoE (E = 8, k = 2, the same active expert width) through
 * the training API, side by side in one run: tokens per second over timed
 * updates after a warm-up (pipelines compiled), and the peak memory of the
 * step's plan.
 *
 *   deno run -A bench/train_step_bench.ts [small|20m] [updates] [f16]
 *
 * `small` (default) is ~1M parameters at B·T = 2·64, for a quick look on
 * lavapipe; `20m` is the issue's ~20M-parameter models at B·T = 4·256.
 * `f16` adds each model again with `activationDtype: "f16"` (forward
 * activations in f16 buffers), right after its f32 run.
 */

import { Trainer } from "../app/train/trainer.ts";
import { requestDevice } from "../runtime/device.ts";
import { trainModels } from "./train_models.ts";

const preset = Deno.args[0] ?? "small";
const updates = Number(Deno.args[1] ?? 5);
const big = preset === "20m";
const [batch, seq] = big ? [4, 256] : [2, 64];
const MODELS = trainModels(big ? "20m" : "small");
const vocab = MODELS.mamba.vocab_size as number;
const dtypes = Deno.args[2] === "f16" ? ["f32", "f16"] as const : ["f32"] as const;

const device = await requestDevice();
const tokens = Uint32Array.from({ length: batch * seq * 4 + 1 }, (_, i) => (i * 7919) % vocab);
console.log(`preset ${preset}: batch ${batch} × seq ${seq}, ${updates} timed updates`);
for (const [name, config] of Object.entries(MODELS)) {
  for (const activationDtype of dtypes) {
    const t = await Trainer.create({
      config,
      batch,
      seq,
      seed: 1,
      schedule: { peak: 1e-3, decay: "constant" },
      logEvery: 1,
      device,
      activationDtype,
    });
    const params = t.step.params.reduce(
      (a, n) =>
        a +
        t.exe.graph.values[t.exe.graph.states.get(n)!].shape.reduce<number>(
          (x, y) => x * (y as number),
          1,
        ),
      0,
    );
    const c0 = performance.now();
    await t.train(tokens, { steps: 2 }); // compiles every pipeline
    const compileS = (performance.now() - c0) / 1000;
    const t0 = performance.now();
    const history = await t.train(tokens, { steps: 2 + updates }); // reads the loss once per update
    const s = (performance.now() - t0) / 1000;
    const peak = t.exe.lastPlan?.peakBytes ?? NaN;
    t.dispose();
    console.log(
      `${name.padEnd(6)} ${activationDtype} ${(params / 1e6).toFixed(2)}M params  ${
        (updates * batch * seq / s).toFixed(0)
      } tokens/s  step peak ${(peak / 2 ** 20).toFixed(1)} MiB  first 2 updates ${
        compileS.toFixed(1)
      } s  loss ${history.at(-1)?.loss.toFixed(3)}`,
    );
  }
}
