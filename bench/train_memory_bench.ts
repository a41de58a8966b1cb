/**
 * Memory of a training step against the forward pass alone, read from the
 * plans (nothing runs): for the issue's ~20M-parameter Mamba, dense and MoE
 * models (`bench/train_models.ts`), the bytes of every buffer the step's plan
 * holds — parameters and optimizer state (device states), activations and
 * gradients (temporaries, shared by the planner), inputs — and the same for a
 * graph that only computes the loss. Also the largest temporary tensor, which
 * must stay far below an `[L, I, N]` scan state or a `[T, T]` score matrix.
 *
 * `--f16` compiles both with `activationDtype: "f16"` (forward activations in
 * f16 buffers, computed in f32).
 *
 *   deno run -A bench/train_memory_bench.ts [--seq 2048] [--batch 1] [--preset 20m] [--fused-xent] [--checkpoint] [--f16]
 */

import { parseArgs } from "node:util";
import { parseConfig } from "../models/architectures/mod.ts";
import { TrainableBuilder } from "../compiler/train/trainable.ts";
import { buildTrainingLM, layerCheckpoints } from "../models/causal_lm_train.ts";
import { buildTrainStep } from "../compiler/train/step.ts";
import { adamw } from "../compiler/train/optimizers.ts";
import { compile } from "../runtime/executable.ts";
import { requestDevice } from "../runtime/device.ts";
import type { Plan } from "../compiler/plan_types.ts";
import { trainModels } from "./train_models.ts";
import { crossEntropy } from "../compiler/cross_entropy.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seq: { type: "string" },
    batch: { type: "string" },
    preset: { type: "string" },
    "fused-xent": { type: "boolean" },
    checkpoint: { type: "boolean" },
    f16: { type: "boolean" },
  },
});
const seq = Number(values.seq ?? 2048), batch = Number(values.batch ?? 1);
const preset = values.preset === "small" ? "small" : "20m";
const device = await requestDevice();
// The fused LM-head cross-entropy never holds `[B·T, V]` logits.
const losses = values["fused-xent"] ? { headLoss: crossEntropy } : {};
const options = { activationDtype: values.f16 ? "f16" as const : "f32" as const };
const MiB = (b: number) => (b / 2 ** 20).toFixed(1);

function usage(plan: Plan) {
  const by: Record<string, number> = {};
  for (const s of plan.slots) by[s.kind] = (by[s.kind] ?? 0) + s.bytes;
  const total = Object.values(by).reduce((a, b) => a + b, 0);
  // Temp buffers may hold several tensors side by side: the largest tensor is the
  // largest range a kernel binds (or a copy moves).
  let largestTemp = 0;
  for (const k of plan.kernels) {
    for (const b of k.bindings) {
      if (plan.slots[b.slot].kind === "temp") largestTemp = Math.max(largestTemp, b.size);
    }
  }
  return { total, by, largestTemp };
}

console.log(
  `preset ${preset}, batch ${batch} × seq ${seq}, AdamW, ${
    values["fused-xent"] ? "fused" : "unfused"
  } cross-entropy, ${
    values.checkpoint ? "layers recomputed in the backward" : "no checkpointing"
  }, ${options.activationDtype} activations; bytes from the plans (MiB)\n`,
);
console.log(
  "| model | params | forward total | step total | step / forward | step: states | step: temporaries | largest temporary tensor |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const [name, config] of Object.entries(trainModels(preset))) {
  const cfg = parseConfig(config);
  const fwd = new TrainableBuilder();
  const lmF = buildTrainingLM(fwd, cfg, { batch, seq, ...losses });
  fwd.output("loss", lmF.loss);
  const fPlan = compile(fwd.build(), device, options).plan();
  const g = new TrainableBuilder();
  const lm = buildTrainingLM(g, cfg, { batch, seq, ...losses });
  const step = buildTrainStep(g, lm.loss, {
    checkpoint: values.checkpoint ? layerCheckpoints(cfg) : undefined,
    optimizer: adamw({}),
    schedule: { peak: 1e-3, decay: "constant" },
  });
  const sPlan = compile(g.build(), device, options).plan();
  const params = step.params.reduce(
    (a, n) => a + g.trainables.get(n)!.shape.reduce<number>((x, y) => x * (y as number), 1),
    0,
  );
  const f = usage(fPlan), s = usage(sPlan);
  console.log(
    `| ${name} | ${(params / 1e6).toFixed(1)}M | ${MiB(f.total)} | ${MiB(s.total)} | ${
      (s.total / f.total).toFixed(2)
    }× | ${MiB(s.by.state ?? 0)} | ${MiB(s.by.temp ?? 0)} | ${MiB(s.largestTemp)} |`,
  );
}
