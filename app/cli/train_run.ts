/**
 * The run behind `kiln train`: resolves the tokenizer (given, the model
 * folder's, the checkpoint's, or trained on the corpus), tokenizes and splits
 * the corpus (the tail held out), then trains in stretches between
 * evaluations and checkpoints, writing `OUT/checkpoint-N/` folders, the final
 * model in `OUT/` itself (a Hugging Face folder `loadModel` and `kiln
 * generate` read, resumable like a checkpoint), `OUT/loss.csv` and
 * `OUT/loss.svg`. The CLI's own settings and held-out losses go into each
 * folder as `kiln_train.json`, so `--resume` continues with the same split.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { readConfig } from "../config_file.ts";
import { fileError } from "../fs_errors.ts";
import { makeOutputDir, readCorpus, statPath } from "./paths.ts";
import { formatDuration } from "../progress.ts";
import { Tokenizer } from "../tokenizer/tokenizer.ts";
import { trainByteLevelBpe, WordCounts } from "../tokenizer/train.ts";
import { Trainer } from "../train/trainer.ts";
import { parseConfig } from "../../models/architectures/mod.ts";
import { UsageError } from "./errors.ts";
import { progressMode } from "./step_progress.ts";
import { createTrainProgress } from "./train_progress.ts";
import { type EvalRecord, writeLossReport } from "./train_report.ts";

/**
 * A checked `kiln train` command line.
 *
 * @example
 * ```ts ignore
 * import type { TrainPlan } from "./train_run.ts";
 * const plan: TrainPlan = { out: "run", corpora: ["a.txt"], config: {...}, vocabSize: 512, … };
 * ```
 */
export interface TrainPlan {
  /** Output folder (default with `resume`: the checkpoint's parent). */
  out?: string;
  /** Text files, tokenized in order. */
  corpora: string[];
  /** A fresh model's config.json object. */
  config?: Record<string, unknown>;
  /** A model folder to fine-tune. */
  from?: string;
  /** A checkpoint folder to continue. */
  resume?: string;
  /** A tokenizer.json file. */
  tokenizer?: string;
  /** Train a byte-level BPE of this size on the corpus first. */
  vocabSize?: number;
  /** Updates in all (default: 1000, or the checkpoint's schedule length). */
  steps?: number;
  /** Sequences per micro-batch. */
  batch: number;
  /** Tokens per sequence. */
  seq: number;
  /** Peak learning rate. */
  lr: number;
  /** Warmup updates. */
  warmup: number;
  /** AdamW's decoupled weight decay. */
  weightDecay: number;
  /** Global gradient-norm clip (0: none). */
  clip: number;
  /** Micro-batches per update. */
  accumulate: number;
  /** Recompute each layer in the backward (activation checkpointing). */
  recompute: boolean;
  /** The LM head's cross-entropy fused (no `[B·T, V]` logits). */
  fusedXent: boolean;
  /** Forward activations stored as f16 (`TrainerOptions.activationDtype`). */
  f16Activations: boolean;
  /** MoE load-balancing loss coefficient per layer (0: off). */
  auxLoss: number;
  /** MoE router z-loss coefficient per layer (0: off). */
  zLoss: number;
  /** γ of the sigmoid routers' bias balancing (`TrainerOptions.biasUpdateRate`; 0: off). */
  biasUpdateRate: number;
  /** Seed of the fresh weights. */
  seed: number;
  /** Fraction of the tokens held out (default 0.05, or the checkpoint's). */
  evalFraction?: number;
  /** Updates between held-out evaluations (default 100, or the checkpoint's). */
  evalEvery?: number;
  /** Updates between checkpoints (default 500, or the checkpoint's). */
  checkpointEvery?: number;
  /** Updates between loss readbacks. */
  logEvery: number;
  /** No progress, no summary. */
  quiet: boolean;
  /** Progress lines on a non-terminal stderr. */
  progress: boolean;
}

/** The CLI's state beside each saved folder. */
const CLI_STATE = "kiln_train.json";

interface CliState {
  eval_fraction: number;
  eval_every: number;
  checkpoint_every: number;
  evals: EvalRecord[];
}

/**
 * Runs a checked plan to the end (see the module doc).
 *
 * @example
 * ```ts ignore
 * await runTraining(await parseTrainArgs(Deno.args));
 * ```
 */
export async function runTraining(plan: TrainPlan): Promise<void> {
  const start = plan.resume ? await readResumeState(plan.resume) : undefined;
  const out = plan.out ?? defaultOut(plan.resume!);
  const evalFraction = plan.evalFraction ?? start?.cli?.eval_fraction ?? 0.05;
  const evalEvery = plan.evalEvery ?? start?.cli?.eval_every ?? 100;
  const checkpointEvery = plan.checkpointEvery ?? start?.cli?.checkpoint_every ?? 500;
  const batch = start?.batch ?? plan.batch;
  const seq = start?.seq ?? plan.seq;

  // Everything on the host first: a mistake here costs no device time.
  const texts: string[] = [];
  for (const path of plan.corpora) texts.push((await readCorpus(path, false)).text);
  const { tokenizer, json: tokenizerJson } = await resolveTokenizer(plan, texts);
  let config = plan.config;
  if (config && config.vocab_size === undefined && plan.vocabSize !== undefined) {
    // A config written for the corpus's own tokenizer may leave the size to it.
    config = { ...config, vocab_size: plan.vocabSize };
  }
  if (config) {
    // The saved model states the ids its tokenizer uses: left out, a config class's
    // defaults (Mixtral's eos 2) would apply in loadModel and transformers alike.
    const c = config;
    const fill = (key: string, id: number | undefined) =>
      Object.hasOwn(c, key) ? {} : { [key]: id ?? null };
    config = {
      ...c,
      ...fill("bos_token_id", tokenizer.bosId),
      ...fill("eos_token_id", tokenizer.eosId),
    };
  }
  const modelVocab = config
    ? parseConfig(config).vocabSize
    : (await readConfig(plan.from ?? plan.resume!)).vocabSize;
  if (tokenizer.vocabSize > modelVocab) {
    throw new RangeError(
      `the tokenizer has ${tokenizer.vocabSize} tokens, more than the model's vocab_size ${modelVocab}`,
    );
  }
  const tokens = tokenize(tokenizer, texts, plan.corpora);
  texts.length = 0;
  const held = evalFraction > 0 ? Math.floor(tokens.length * evalFraction) : 0;
  const trainTokens = tokens.subarray(0, tokens.length - held);
  const evalTokens = held > 0 ? tokens.subarray(tokens.length - held) : undefined;
  if (trainTokens.length < seq + 1) {
    throw new RangeError(
      `the corpus gives ${trainTokens.length} training tokens, fewer than --seq ${seq} + 1`,
    );
  }
  if (evalTokens && evalTokens.length < seq + 1) {
    throw new RangeError(
      `--eval-fraction ${evalFraction} holds out ${held} tokens, fewer than --seq ${seq} + 1 ` +
        "(give more text, a larger --eval-fraction, or --eval-fraction 0)",
    );
  }
  const steps = plan.steps ?? start?.total ?? 1000;
  if (start && steps <= start.updates) {
    throw new RangeError(
      `--steps ${steps}: ${plan.resume} has done ${start.updates} updates already; ` +
        "give a larger --steps to train on",
    );
  }
  await makeOutputDir(out, "train");

  const trainer = start ? await Trainer.resume(plan.resume!) : await Trainer.create({
    ...(config ? { config } : { from: plan.from }),
    batch,
    seq,
    seed: plan.seed,
    optimizer: { kind: "adamw", weightDecay: plan.weightDecay },
    schedule: { peak: plan.lr, warmup: plan.warmup, total: steps, minRatio: 0.1 },
    clipNorm: plan.clip > 0 ? plan.clip : undefined,
    accumulate: plan.accumulate,
    checkpoint: plan.recompute,
    fusedCrossEntropy: plan.fusedXent,
    activationDtype: plan.f16Activations ? "f16" : "f32",
    auxLossCoef: plan.auxLoss,
    zLossCoef: plan.zLoss,
    biasUpdateRate: plan.biasUpdateRate,
    logEvery: plan.logEvery,
    tokenizerJson,
  });
  try {
    await trainLoop(trainer, {
      out,
      steps,
      trainTokens,
      evalTokens,
      evalEvery,
      checkpointEvery,
      batch,
      seq,
      state: {
        eval_fraction: evalFraction,
        eval_every: evalEvery,
        checkpoint_every: checkpointEvery,
      },
      evals: (start?.cli?.evals ?? []).filter((r) => r.step <= trainer.updates),
      plan,
    });
  } finally {
    trainer.dispose();
  }
}

/** Trains to `steps`, evaluating, checkpointing and writing the report on the way. */
async function trainLoop(trainer: Trainer, o: {
  out: string;
  steps: number;
  trainTokens: Uint32Array;
  evalTokens?: Uint32Array;
  evalEvery: number;
  checkpointEvery: number;
  batch: number;
  seq: number;
  state: Omit<CliState, "evals">;
  evals: EvalRecord[];
  plan: TrainPlan;
}): Promise<void> {
  const { out, steps, evals } = o;
  const first = trainer.updates;
  const progress = createTrainProgress({
    mode: progressMode(o.plan.progress, o.plan.quiet),
    total: steps,
    first,
  });
  // Windows of the held-out tail: as many as it holds, up to 8 micro-batches.
  const evalBatches = o.evalTokens
    ? Math.max(1, Math.min(8, Math.floor((o.evalTokens.length - 1) / (o.batch * o.seq))))
    : 0;
  const next = (done: number, every: number) => (Math.floor(done / every) + 1) * every;
  const saveFolder = async (dir: string) => {
    await trainer.save(dir);
    const state: CliState = { ...o.state, evals };
    await Deno.writeTextFile(`${dir}/${CLI_STATE}`, JSON.stringify(state, null, 2) + "\n");
  };
  const t0 = performance.now();
  try {
    while (trainer.updates < steps) {
      const stop = Math.min(
        steps,
        next(trainer.updates, o.evalEvery),
        next(trainer.updates, o.checkpointEvery),
      );
      await trainer.train(o.trainTokens, {
        steps: stop,
        onLog: (records, tps) => {
          const r = records.at(-1);
          if (r) progress.update(r.step, r.loss, tps);
        },
      });
      const done = trainer.updates;
      if (o.evalTokens && (done % o.evalEvery === 0 || done === steps)) {
        const loss = await trainer.evaluate(o.evalTokens, evalBatches);
        evals.push({ step: done, loss });
        progress.note(`[kiln] train: step ${done}: held-out loss ${loss.toFixed(4)}`);
      }
      if (done % o.checkpointEvery === 0) await saveFolder(`${out}/checkpoint-${done}`);
      await writeLossReport(out, trainer.history, evals);
    }
    await saveFolder(out);
  } finally {
    progress.end();
  }
  if (o.plan.quiet) return;
  const seconds = (performance.now() - t0) / 1000;
  const trained = (steps - first) * trainer.step.accumulate * o.batch * o.seq;
  const h = trainer.history;
  const firstLoss = h.find((r) => r.step > first)?.loss ?? h[0]?.loss;
  const lastLoss = h.at(-1)?.loss;
  const heldOut = evals.at(-1);
  console.log(
    `trained ${steps - first} steps (${trained} tokens) in ${formatDuration(seconds)}, ` +
      `${Math.round(trained / Math.max(seconds, 1e-9))} tokens/s: loss ` +
      `${firstLoss?.toFixed(4)} → ${lastLoss?.toFixed(4)}` +
      (heldOut ? `, held-out ${heldOut.loss.toFixed(4)}` : "") +
      `; wrote ${out} (model, loss.csv, loss.svg)`,
  );
}

/** `OUT` for `OUT/checkpoint-N`; a final folder (`OUT` itself) goes on in place. */
function defaultOut(resume: string): string {
  const dir = resume.replace(/\/+$/, "");
  return /^checkpoint-\d+$/.test(basename(dir)) ? dirname(dir) : dir;
}

/** What a checkpoint to resume says about the run, read before the device is touched. */
async function readResumeState(dir: string): Promise<{
  updates: number;
  total?: number;
  batch: number;
  seq: number;
  cli?: CliState;
}> {
  const file = `${dir.replace(/\/+$/, "")}/trainer_state.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new TypeError(
        `--resume ${dir}: no trainer_state.json there (a training checkpoint such as OUT/checkpoint-100)`,
      );
    }
    throw fileError(e, file, "a training checkpoint's trainer_state.json");
  }
  const s = JSON.parse(text) as {
    updates?: number;
    options?: { batch?: number; seq?: number; schedule?: { total?: number } };
  };
  if (
    !Number.isInteger(s.updates) || !Number.isInteger(s.options?.batch) ||
    !Number.isInteger(s.options?.seq)
  ) {
    throw new TypeError(`${file}: needs updates and options.batch, options.seq`);
  }
  let cli: CliState | undefined;
  try {
    cli = JSON.parse(await Deno.readTextFile(`${dir}/${CLI_STATE}`));
  } catch { /* a checkpoint saved by the API, not the CLI: the defaults apply */ }
  return {
    updates: s.updates!,
    total: s.options!.schedule?.total,
    batch: s.options!.batch!,
    seq: s.options!.seq!,
    cli,
  };
}

/** The tokenizer and its tokenizer.json text. */
async function resolveTokenizer(
  plan: TrainPlan,
  texts: readonly string[],
): Promise<{ tokenizer: Tokenizer; json: string }> {
  if (plan.resume !== undefined && plan.tokenizer !== undefined) {
    const saved = `${plan.resume.replace(/\/+$/, "")}/tokenizer.json`;
    if (await statPath(saved, "a checkpoint's tokenizer.json")) {
      throw new UsageError(
        `train: --tokenizer cannot change with --resume: ${saved} is the run's tokenizer`,
      );
    }
  }
  if (plan.vocabSize !== undefined) {
    const words = new WordCounts();
    for (const t of texts) words.add(t);
    const json = trainByteLevelBpe(words, { vocabSize: plan.vocabSize }).json();
    return { tokenizer: Tokenizer.fromJSON(json, { source: "the trained tokenizer" }), json };
  }
  const path = plan.tokenizer ??
    `${(plan.from ?? plan.resume)!.replace(/\/+$/, "")}/tokenizer.json`;
  let json: string;
  try {
    json = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && plan.tokenizer === undefined) {
      throw new TypeError(
        `${path}: not found; give --tokenizer FILE to tokenize the corpus`,
      );
    }
    throw fileError(e, path, "a tokenizer.json for --tokenizer");
  }
  return { tokenizer: Tokenizer.fromJSON(json, { source: path }), json };
}

/** Every corpus file's tokens in order, each followed by EOS where the tokenizer has one. */
function tokenize(tokenizer: Tokenizer, texts: readonly string[], paths: string[]): Uint32Array {
  const parts: number[][] = [];
  let n = 0;
  texts.forEach((text, i) => {
    const ids = tokenizer.encode(text);
    if (tokenizer.eosId !== undefined) ids.push(tokenizer.eosId);
    if (ids.length === 0) throw new RangeError(`${paths[i]}: gives no tokens`);
    parts.push(ids);
    n += ids.length;
  });
  const out = new Uint32Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
