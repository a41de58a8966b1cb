/**
 * Training causal language models on the device: the {@linkcode Trainer}
 * (fresh Hugging Face init or fine-tuning, a token stream, checkpoints that
 * `loadModel` loads, bit-exact resume) and its checkpoint files.
 *
 * @example
 * ```ts ignore
 * import { Trainer } from "@kiln/kiln";
 * const t = await Trainer.create({ config, batch: 4, seq: 64, schedule: { peak: 1e-3, total: 100 } });
 * await t.train(tokens, { steps: 100, checkpointEvery: 50, checkpointDir: "out" });
 * ```
 *
 * @module
 */

export {
  type LossRecord,
  type OptimizerSpec,
  Trainer,
  type TrainerOptions,
  type TrainLoopOptions,
} from "./trainer.ts";
export {
  CHECKPOINT_FILES,
  type CheckpointContents,
  fromCheckpointTensors,
  hfNames,
  readCheckpoint,
  toCheckpointTensors,
  writeCheckpoint,
} from "./checkpoint.ts";
export { initParam } from "./init.ts";
export { microBatch } from "./data.ts";
export { type NamedTensor, readSafetensors, writeSafetensors } from "./safetensors_write.ts";
