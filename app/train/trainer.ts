/**
 * Training a causal language model on the device: the training graph from the
 * model's architecture spec (`buildTrainingLM`) with the optimizer step
 * (`buildTrainStep`) compiled once; weights, moments and counters are device
 * states, each micro-batch is one `submit` (no readback), and the loss log is
 * read every `logEvery` updates. Checkpoints are Hugging Face folders that
 * `loadModel` loads, with the optimizer state beside them, so `resume` continues
 * a run exactly as if it had never stopped.
 *
 * @module
 */

import { TrainableBuilder } from "../../compiler/train/trainable.ts";
import { buildTrainStep, TRAIN_STATES, type TrainStep } from "../../compiler/train/step.ts";
import { adamw, type AdamWOptions, sgd, type SgdOptions } from "../../compiler/train/optimizers.ts";
import type { LrSchedule } from "../../compiler/train/schedule.ts";
import { parseConfig } from "../../models/architectures/mod.ts";
import {
  buildTrainingLM,
  frozenParams,
  layerCheckpoints,
  type TrainingLMOptions,
} from "../../models/causal_lm_train.ts";
import type { ModelConfig } from "../../models/config.ts";
import { isFloat } from "../../core/dtype.ts";
import { compile, type Executable } from "../../runtime/executable.ts";
import { defaultDevice, type KilnDevice } from "../../runtime/device.ts";
import {
  CHECKPOINT_FILES,
  loadWeightsIntoStates,
  readCheckpoint,
  writeCheckpoint,
} from "./checkpoint.ts";
import { microBatch } from "./data.ts";
import { balanceUpdates, lossHooks } from "./moe_terms.ts";
import { initParam } from "./init.ts";
import type { NamedTensor } from "./safetensors_write.ts";

/**
 * Which optimizer, with its settings (serializable: saved in checkpoints).
 *
 * @example
 * ```ts
 * import type { OptimizerSpec } from "@kiln/kiln";
 * const o: OptimizerSpec = { kind: "adamw", beta2: 0.95, weightDecay: 0.1 };
 * ```
 */
export type OptimizerSpec =
  | ({ kind: "adamw" } & Omit<AdamWOptions, "decay">)
  | ({ kind: "sgd" } & SgdOptions);

/**
 * Options of {@linkcode Trainer.create}.
 *
 * @example
 * ```ts
 * import type { TrainerOptions } from "@kiln/kiln";
 * const o: TrainerOptions = {
 *   config: { architectures: ["MambaForCausalLM"], vocab_size: 256, hidden_size: 64, num_hidden_layers: 2 },
 *   batch: 8, seq: 128, seed: 1, schedule: { peak: 1e-3, warmup: 20, total: 1000 }, clipNorm: 1,
 * };
 * ```
 */
export interface TrainerOptions {
  /** A config.json object: a fresh model, initialised as Hugging Face does for it (seeded). */
  config?: Record<string, unknown>;
  /** A Hugging Face model folder to fine-tune (config.json and weights), instead of `config`. */
  from?: string;
  /** Sequences per micro-batch. */
  batch: number;
  /** Tokens per sequence. */
  seq: number;
  /** Seed of the initial weights (default 0). */
  seed?: number;
  /** Optimizer (default AdamW with PyTorch's defaults). */
  optimizer?: OptimizerSpec;
  /** Learning rate by update. */
  schedule: LrSchedule;
  /** Clip the global gradient norm to this (default: none). */
  clipNorm?: number;
  /** Micro-batches per update (default 1). */
  accumulate?: number;
  /** Updates between loss readbacks (default 10). */
  logEvery?: number;
  /** tokenizer.json text to put in every checkpoint. */
  tokenizerJson?: string;
  /** Device (default: the shared default device). */
  device?: KilnDevice;
  /**
   * Recompute each layer's forward in the backward instead of keeping its
   * activations (activation checkpointing): less memory, about one more
   * forward of compute (default false).
   */
  checkpoint?: boolean;
  /**
   * The LM head's cross-entropy fused (`lm_head_xent`): no `[B·T, V]` logits
   * or probabilities are held; slower on CPU rasterisers (default false).
   */
  fusedCrossEntropy?: boolean;
  /** MoE load-balancing loss coefficient, per MoE layer (default 0: off, as HF's default). */
  auxLossCoef?: number;
  /** MoE router z-loss coefficient, per MoE layer (default 0). */
  zLossCoef?: number;
  /**
   * Auxiliary-loss-free balancing of a `sigmoid_bias` router (GLM-4.5,
   * DeepSeek-V3): after each update every MoE layer's selection bias moves by
   * this γ toward balance — `+γ` for an expert routed fewer tokens than the
   * layer's mean, `−γ` for more (DeepSeek-V3 trained with 0.001). Default 0:
   * the biases stay as loaded, as transformers keeps the buffer.
   */
  biasUpdateRate?: number;
  /**
   * Switch-style capacity factor of the MoE layers (> 0; default dropless):
   * an expert takes at most `⌊cf·N·k/E⌋` of a micro-batch's N tokens, in
   * training and in `evaluate` / `logits` alike (see `TrainingLMOptions`).
   */
  capacityFactor?: number;
  /**
   * Mixed precision: `"f16"` stores the training step's forward activations as
   * f16 (computing in f32; master weights, gradients and optimizer moments
   * stay f32): about half the step's activation memory, where the adapter has
   * `shader-f16` (a TypeError otherwise). `evaluate` and `logits` stay f32.
   * Default `"f32"`.
   */
  activationDtype?: "f32" | "f16";
  /** Loss hooks (replace the fused cross-entropy and router losses above); not saved in checkpoints. */
  losses?: Pick<TrainingLMOptions, "headLoss" | "moeLoss">;
}

/**
 * One logged update.
 *
 * @example
 * ```ts
 * import type { LossRecord } from "@kiln/kiln";
 * const r: LossRecord = { step: 1, loss: 5.4 };
 * ```
 */
export interface LossRecord {
  /** Updates done when this loss was the latest (1-based). */
  readonly step: number;
  /** Mean training loss of that update. */
  readonly loss: number;
}

/**
 * Options of {@linkcode Trainer.train}.
 *
 * @example
 * ```ts
 * import type { TrainLoopOptions } from "@kiln/kiln";
 * const o: TrainLoopOptions = { steps: 100, checkpointEvery: 50, checkpointDir: "out" };
 * ```
 */
export interface TrainLoopOptions {
  /** Train until this many updates are done in all (a resumed run counts the earlier ones). */
  steps: number;
  /** Save `checkpointDir/checkpoint-<step>` every this many updates (and at the end). */
  checkpointEvery?: number;
  /** Where checkpoints go (needed with `checkpointEvery`). */
  checkpointDir?: string;
  /** Hears every loss read back (every `logEvery` updates), with tokens per second since the last. */
  onLog?: (records: readonly LossRecord[], tokensPerSecond: number) => void;
}

/** Options with their defaults filled in. */
type Resolved = TrainerOptions & { seed: number; optimizer: OptimizerSpec };

function positive(what: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < 1) {
    throw new RangeError(`Trainer: ${what} must be a positive integer, got ${v}`);
  }
  return x;
}

/**
 * A model being trained on one device.
 *
 * @example
 * ```ts ignore
 * import { loadModel, Trainer } from "@kiln/kiln";
 * const trainer = await Trainer.create({
 *   config: { architectures: ["MixtralForCausalLM"], vocab_size: 256, hidden_size: 64,
 *     intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
 *     num_key_value_heads: 2, num_local_experts: 4, num_experts_per_tok: 2 },
 *   batch: 4, seq: 64, seed: 1, schedule: { peak: 3e-3, warmup: 10, total: 200 }, clipNorm: 1,
 * });
 * await trainer.train(tokens, {
 *   steps: 200, checkpointEvery: 100, checkpointDir: "out",
 *   onLog: (r, tps) => console.log(r.at(-1), tps),
 * });
 * const model = await loadModel("out/checkpoint-200"); // a Hugging Face folder
 * const again = await Trainer.resume("out/checkpoint-100"); // continues bit for bit
 * ```
 */
export class Trainer {
  /** The model's config. */
  readonly cfg: ModelConfig;
  /** The config.json object written to checkpoints. */
  readonly config: Record<string, unknown>;
  /** The training executable (parameters and optimizer state live in its states). */
  readonly exe: Executable;
  /** The step's parameters and states. */
  readonly step: TrainStep;
  readonly #o: Resolved;
  readonly #shapes: Map<string, readonly number[]>;
  #updates = 0;
  #micro = 0;
  #logged = 0;
  #history: LossRecord[] = [];
  #eval = new Map<number, Executable>();
  #evalLoss?: Executable;

  private constructor(
    cfg: ModelConfig,
    config: Record<string, unknown>,
    device: KilnDevice,
    o: Resolved,
  ) {
    this.cfg = cfg;
    this.config = config;
    this.#o = o;
    const g = new TrainableBuilder();
    // buildTrainingLM checks capacityFactor (a RangeError naming it).
    const lm = buildTrainingLM(g, cfg, {
      batch: o.batch,
      seq: o.seq,
      capacityFactor: o.capacityFactor,
      ...lossHooks(o),
    });
    const spec = o.optimizer;
    const kind: unknown = spec?.kind;
    if (kind !== "sgd" && kind !== "adamw") {
      throw new TypeError(
        `Trainer: optimizer.kind must be "sgd" or "adamw", got ${JSON.stringify(kind)}`,
      );
    }
    const optimizer = spec.kind === "sgd" ? sgd(spec) : adamw(spec);
    // Every float parameter is initialised, loaded and saved; the frozen ones are not updated.
    const all = [...g.trainables].filter(([, t]) => isFloat(t.dtype)).map(([n]) => n);
    const frozen = frozenParams(cfg);
    this.step = buildTrainStep(g, lm.loss, {
      params: all.filter((n) => !frozen.has(n)),
      optimizer,
      schedule: o.schedule,
      clipNorm: o.clipNorm,
      accumulate: o.accumulate,
      logEvery: o.logEvery ?? 10,
      checkpoint: o.checkpoint ? layerCheckpoints(cfg) : undefined,
      balance: balanceUpdates(cfg, g, lm.moe, o.biasUpdateRate ?? 0),
    });
    this.#shapes = new Map(all.map((n) => [n, g.trainables.get(n)!.shape as number[]]));
    this.exe = compile(g.build(), device, { activationDtype: o.activationDtype });
  }

  /**
   * A trainer for a fresh model (`config`, seeded Hugging Face init) or a
   * checkpoint to fine-tune (`from`).
   *
   * @example
   * ```ts ignore
   * const t = await Trainer.create({ from: "./mamba-130m-hf", batch: 4, seq: 256,
   *   schedule: { peak: 1e-4, decay: "constant" } });
   * ```
   */
  static async create(options: TrainerOptions): Promise<Trainer> {
    positive("batch", options.batch, 0);
    positive("seq", options.seq, 0);
    if ((options.config === undefined) === (options.from === undefined)) {
      throw new TypeError(
        "Trainer.create: give exactly one of config (fresh) and from (fine-tune)",
      );
    }
    const given = options.config ??
      JSON.parse(await Deno.readTextFile(`${options.from}/${CHECKPOINT_FILES.config}`));
    const cfg = parseConfig(given);
    // Checkpoints hold float weights: a quantized source's quantization_config is not theirs.
    const config = cfg.quantization ? withoutKey(given, "quantization_config") : given;
    const device = options.device ?? await defaultDevice();
    const o = {
      ...options,
      seed: options.seed ?? 0,
      optimizer: options.optimizer ?? { kind: "adamw" as const },
    };
    const t = new Trainer(cfg, config, device, o);
    if (options.from === undefined) {
      const range = config.initializer_range;
      for (const [name, shape] of t.#shapes) {
        t.exe.writeState(
          name,
          initParam(cfg, name, shape, {
            seed: o.seed,
            initializerRange: typeof range === "number" ? range : undefined,
          }),
        );
      }
    } else {
      await loadWeightsIntoStates(t.exe, cfg, options.from);
    }
    return t;
  }

  /**
   * Continues the run saved in checkpoint folder `dir` (weights, optimizer
   * state, counters, settings and loss history): training on from here gives
   * the same losses and weights, bit for bit, as the run that saved it.
   *
   * @example
   * ```ts ignore
   * const t = await Trainer.resume("out/checkpoint-100");
   * await t.train(tokens, { steps: 200 });
   * ```
   */
  static async resume(
    dir: string,
    options: { device?: KilnDevice; losses?: TrainerOptions["losses"] } = {},
  ): Promise<Trainer> {
    const config = JSON.parse(await Deno.readTextFile(`${dir}/${CHECKPOINT_FILES.config}`));
    const cfg = parseConfig(config);
    const { weights, optimizer, trainerState } = await readCheckpoint(dir, cfg);
    if (!optimizer || !trainerState) {
      throw new TypeError(
        `Trainer.resume: ${dir} has no ${CHECKPOINT_FILES.optimizer} / ${CHECKPOINT_FILES.state} ` +
          "(a model folder, not a training checkpoint: fine-tune it with Trainer.create({ from }))",
      );
    }
    const s = trainerState as {
      options: Resolved;
      updates: number;
      micro_batches: number;
      log_history: LossRecord[];
    };
    const count = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
    if (
      typeof s.options !== "object" || s.options === null || !count(s.updates) ||
      !count(s.micro_batches) || !Array.isArray(s.log_history)
    ) {
      throw new TypeError(
        `Trainer.resume: ${dir}/${CHECKPOINT_FILES.state} needs options, updates, micro_batches and log_history`,
      );
    }
    let tokenizerJson: string | undefined;
    try {
      tokenizerJson = await Deno.readTextFile(`${dir}/${CHECKPOINT_FILES.tokenizer}`);
    } catch { /* no tokenizer saved */ }
    const device = options.device ?? await defaultDevice();
    const t = new Trainer(cfg, config, device, {
      ...s.options,
      tokenizerJson,
      losses: options.losses,
    });
    for (const [name, data] of weights) t.exe.writeState(name, data);
    for (const name of [...t.step.optimizerStates, ...t.step.counterStates]) {
      const v = optimizer.get(name);
      if (!v) throw new TypeError(`Trainer.resume: ${dir}: optimizer state "${name}" is missing`);
      t.exe.writeState(name, v.data);
    }
    t.#updates = s.updates;
    t.#micro = s.micro_batches;
    t.#logged = s.updates;
    t.#history = [...s.log_history];
    return t;
  }

  /** Optimizer updates done. */
  get updates(): number {
    return this.#updates;
  }

  /** Every loss read back so far. */
  get history(): readonly LossRecord[] {
    return this.#history;
  }

  /**
   * Runs micro-batches of `tokens` until `steps` updates are done (see
   * {@linkcode TrainLoopOptions}); returns the loss history.
   *
   * @example
   * ```ts ignore
   * const history = await trainer.train(tokens, { steps: 100 });
   * history.at(-1)?.loss;
   * ```
   */
  async train(
    tokens: ArrayLike<number>,
    options: TrainLoopOptions,
  ): Promise<readonly LossRecord[]> {
    const steps = options.steps;
    if (!Number.isInteger(steps) || steps < 0) {
      throw new RangeError(`Trainer.train: steps must be an integer ≥ 0, got ${steps}`);
    }
    const every = options.checkpointEvery;
    if (every !== undefined && (!Number.isInteger(every) || every < 1 || !options.checkpointDir)) {
      throw new RangeError(
        "Trainer.train: checkpointEvery needs a positive integer and checkpointDir",
      );
    }
    const { batch, seq } = this.#o;
    const V = this.cfg.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      // An id past the vocabulary would read outside the embedding on the device.
      if (!(Number.isInteger(id) && id >= 0 && id < V)) {
        throw new RangeError(
          `Trainer.train: token ${i} is ${id}, outside the vocabulary [0, ${V})`,
        );
      }
    }
    const acc = this.step.accumulate;
    let t0 = performance.now(), tokensSince = 0;
    while (this.#updates < steps) {
      for (let m = 0; m < acc; m++) {
        await this.exe.submit(microBatch(tokens, this.#micro++, batch, seq));
      }
      this.#updates++;
      tokensSince += acc * batch * seq;
      if (this.#updates % this.step.logEvery === 0 || this.#updates === steps) {
        const records = await this.#readLosses();
        const now = performance.now();
        options.onLog?.(records, tokensSince / ((now - t0) / 1000));
        t0 = now;
        tokensSince = 0;
      }
      if (every && (this.#updates % every === 0 || this.#updates === steps)) {
        await this.save(`${options.checkpointDir}/checkpoint-${this.#updates}`);
      }
    }
    return this.#history;
  }

  /** Reads the losses logged since the last read. */
  async #readLosses(): Promise<LossRecord[]> {
    if (this.#logged === this.#updates) return [];
    const log = (await this.exe.readState(TRAIN_STATES.losses)).data;
    const out: LossRecord[] = [];
    for (let s = this.#logged; s < this.#updates; s++) {
      out.push({ step: s + 1, loss: log[s % this.step.logEvery] });
    }
    this.#logged = this.#updates;
    this.#history.push(...out);
    return out;
  }

  /**
   * Saves a checkpoint folder: the Hugging Face files `loadModel` reads, the
   * optimizer state and the trainer state. Call between updates (a window of
   * accumulated micro-batches is saved as it stands).
   *
   * @example
   * ```ts ignore
   * await trainer.save("out/final");
   * ```
   */
  async save(dir: string): Promise<void> {
    await this.#readLosses();
    const extra = [...this.step.optimizerStates, ...this.step.counterStates];
    const names = [...this.#shapes.keys()];
    const st = await this.exe.readStates([...names, ...extra]);
    const weights = new Map(names.map((n) => [n, st[n].data as Float32Array]));
    const optimizer: NamedTensor[] = extra.map((name) => ({
      name,
      shape: st[name].shape as number[],
      data: st[name].data as Float32Array | Uint32Array,
    }));
    const { losses: _, device: __, tokenizerJson, ...saved } = this.#o;
    await writeCheckpoint(dir, {
      config: this.config,
      cfg: this.cfg,
      weights,
      shapes: this.#shapes,
      tokenizerJson,
      optimizer,
      trainerState: {
        updates: this.#updates,
        micro_batches: this.#micro,
        options: { ...saved, from: undefined, config: undefined },
        log_history: this.#history,
      },
    });
  }

  /**
   * The current model's logits `[T, vocab]` for one sequence (an evaluation
   * graph sharing the training executable's weights; nothing is copied).
   *
   * @example
   * ```ts ignore
   * const logits = await trainer.logits([1, 2, 3]);
   * ```
   */
  async logits(ids: readonly number[]): Promise<Float32Array> {
    const T = ids.length;
    let exe = this.#eval.get(T);
    if (!exe) {
      const g = new TrainableBuilder();
      const lm = buildTrainingLM(g, this.cfg, {
        batch: 1,
        seq: T,
        capacityFactor: this.#o.capacityFactor,
      });
      g.output("logits", lm.logits());
      exe = compile(g.build(), this.exe.device, { shareWith: this.exe });
      this.#eval.set(T, exe);
    }
    const r = await exe.run({ ids: Uint32Array.from(ids), targets: new Uint32Array(T) });
    return r.logits.data as Float32Array;
  }

  /**
   * Mean cross-entropy (nats) of the current model on `batches` micro-batches
   * of held-out `tokens` (the training batch and sequence shape, windows as in
   * training), on a graph sharing the training executable's weights.
   *
   * @example
   * ```ts ignore
   * const valLoss = await trainer.evaluate(heldOut, 4);
   * ```
   */
  async evaluate(tokens: ArrayLike<number>, batches = 1): Promise<number> {
    positive("evaluate batches", batches, 1);
    if (!this.#evalLoss) {
      const g = new TrainableBuilder();
      const lm = buildTrainingLM(g, this.cfg, {
        batch: this.#o.batch,
        seq: this.#o.seq,
        capacityFactor: this.#o.capacityFactor,
      });
      g.output("loss", lm.crossEntropy);
      this.#evalLoss = compile(g.build(), this.exe.device, { shareWith: this.exe });
    }
    let sum = 0;
    for (let k = 0; k < batches; k++) {
      const r = await this.#evalLoss.run(microBatch(tokens, k, this.#o.batch, this.#o.seq));
      sum += r.loss.data[0];
    }
    return sum / batches;
  }

  /**
   * Frees the executables (the weights and optimizer state with them).
   *
   * @example
   * ```ts ignore
   * trainer.dispose();
   * ```
   */
  dispose(): void {
    for (const e of this.#eval.values()) e.dispose();
    this.#evalLoss?.dispose();
    this.exe.dispose();
  }
}

function withoutKey(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _, ...rest } = o;
  return rest;
}
